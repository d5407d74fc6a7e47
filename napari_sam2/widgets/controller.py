"""Layers <-> engine, without Qt: everything the dock widget does except drawing itself.

The controller owns one *target*: an image layer, the tracked axis and the three prompt
layers made for it (clicks, boxes, masks). Work is split in three steps so the engine
never runs on the GUI thread and layer data is only touched on it:

``plan_*`` (GUI thread) reads the layers -> ``run_*`` (worker thread) calls the engine
-> ``apply_*`` (GUI thread) writes the results into the Labels layer.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .geometry import TrackGeometry
from .masks import labels_dtype, masks_to_plane, merge_plane
from .objects import ObjectRegistry, format_frames
from .prompts import NEGATIVE, OBJECT, POLARITY, POSITIVE, FramePrompt, PromptProblem, collect_prompts

__all__ = [
    "Sam2Controller",
    "Target",
    "SyncPlan",
    "SyncResult",
    "PropagationPlan",
    "ObjectRow",
    "STATE_KEY",
    "POSITIVE_COLOR",
    "NEGATIVE_COLOR",
]

STATE_KEY = "napari_sam2"
"""Key in a layer's metadata: the role of our layers, object names and hand edits."""
POSITIVE_COLOR = "#2ecc40"
NEGATIVE_COLOR = "#ff4136"
ROLES = ("clicks", "boxes", "masks")
BIG_LABELS_BYTES = 1 << 30  # above this the masks are kept in a compressed zarr array
NO_IMAGE = "Open an image first (File > Open, or File > Open Sample > SAM 2), then choose it in the SAM 2 panel."

PromptKey = tuple[int, int]  # (frame, object)
PlaneKey = tuple[int, ...]  # non-spatial indices of one 2D plane of the labels array


# ---------------------------------------------------------------------------- data
@dataclass
class Target:
    """An image and the layers made to segment it."""

    image: Any
    points: Any
    boxes: Any
    labels: Any
    axis: int | None

    @property
    def state(self) -> dict:
        return self.labels.metadata.setdefault(STATE_KEY, {})

    @property
    def registry(self) -> ObjectRegistry:
        return ObjectRegistry(self.state.setdefault("objects", {}))

    @property
    def painted(self) -> dict[tuple[PlaneKey, int], int]:
        """(plane, object) -> edit generation: planes the user painted an object on."""
        return self.state.setdefault("painted", {})


@dataclass
class SyncPlan:
    """Prompt changes to send to the engine (made on the GUI thread)."""

    geometry: TrackGeometry
    session_key: tuple
    session: Any  # None: a new session must be made from ``frames``
    frames: Any
    contrast_limits: tuple[float, float] | None
    changes: list[tuple[PromptKey, FramePrompt]]
    masks: dict[PromptKey, np.ndarray]
    dtype: np.dtype


@dataclass
class SyncResult:
    session: Any
    planes: dict[PromptKey, np.ndarray | None]  # None: prompts cleared, remove the mask
    applied: list[tuple[PromptKey, FramePrompt]]
    errors: list[str] = field(default_factory=list)


@dataclass
class PropagationPlan:
    """One propagation request: passes over the video and how many frames they cover."""

    geometry: TrackGeometry
    session: Any
    passes: list[tuple[int | None, bool, int | None, int, int]]  # start, reverse, max_frames, lo, hi
    total: int
    dtype: np.dtype
    objects: tuple[int, ...]


@dataclass(frozen=True)
class ObjectRow:
    obj_id: int
    name: str
    color: tuple[float, float, float, float]
    frames: str
    prompted: tuple[int, ...]


# ---------------------------------------------------------------------------- helpers
def _new_labels_data(shape: tuple[int, ...], dtype: np.dtype) -> Any:
    """Zeros for the masks: numpy, or a compressed in-memory zarr array for huge stacks."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if nbytes <= BIG_LABELS_BYTES:
        return np.zeros(shape, dtype)
    import zarr

    chunks = (1,) * (len(shape) - 2) + tuple(shape[-2:])
    return zarr.zeros(shape, chunks=chunks, dtype=dtype)


def _planes_in_atom(atom: Any, ndim: int) -> tuple[list[PlaneKey], set[int]]:
    """Planes and label values touched by one napari paint-history atom."""
    if hasattr(atom, "slice_key"):  # napari >= 0.6: a masked atom (slice box + values)
        ranges = [range(s.start or 0, s.stop) for s in atom.slice_key[: ndim - 2]]
        planes = [tuple(p) for p in itertools.product(*ranges)]
        values = {int(v) for v in np.unique(np.asarray(atom.old_values))} | {int(atom.new_value)}
        return planes, values
    indices, old, new = atom  # older napari: fancy indices, old and new values
    if ndim > 2:
        stacked = np.stack([np.asarray(i).ravel() for i in indices[: ndim - 2]], axis=1)
        planes = [tuple(int(v) for v in row) for row in np.unique(stacked, axis=0)]
    else:
        planes = [()]
    values = {int(v) for v in np.unique(np.asarray(old))} | {int(v) for v in np.unique(np.asarray(new))}
    return planes, values


def _color_tuple(color: Any) -> tuple[float, float, float, float]:
    c = np.asarray(color, float).ravel()
    if c.size == 3:
        c = np.append(c, 1.0)
    return tuple(float(v) for v in c[:4])  # type: ignore[return-value]


# ---------------------------------------------------------------------------- controller
class Sam2Controller:
    """Translates between napari layers and a SAM 2 video session for one viewer."""

    def __init__(self, viewer: Any, on_prompts_changed: Callable[[], None] | None = None,
                 on_objects_changed: Callable[[], None] | None = None) -> None:
        self.viewer = viewer
        self.on_prompts_changed = on_prompts_changed or (lambda: None)
        self.on_objects_changed = on_objects_changed or (lambda: None)
        self.target: Target | None = None
        self.model: Any = None
        self.session: Any = None
        self.session_key: tuple | None = None
        self.synced: dict[PromptKey, FramePrompt] = {}
        self.positive = True  # polarity of a plain left click
        self.use_display_contrast = True
        self.problems: list[PromptProblem] = []
        self._connected: list[tuple[Any, Callable]] = []
        self._press_modifiers: tuple = ()

    # ------------------------------------------------------------------ set-up
    def setup(self, image: Any, axis: int | None) -> Target:
        """Make (or find again) the prompt layers for ``image`` and track along ``axis``."""
        if image is None:
            raise ValueError(NO_IMAGE)
        if self.target is not None and self.target.image is image:
            if self.target.axis != axis:
                self.target.axis = axis
                self.reset_session()
            return self.target
        self.teardown()
        data_shape = self._image_shape(image)
        if len(data_shape) < 2:
            raise ValueError(f"{image.name!r} has fewer than two axes and cannot be segmented.")
        layers = {role: self._find_layer(image, role, data_shape) for role in ROLES}
        if layers["masks"] is None:
            layers["masks"] = self._make_labels(image, data_shape)
        if layers["boxes"] is None:
            layers["boxes"] = self._make_boxes(image, data_shape)
        if layers["clicks"] is None:
            layers["clicks"] = self._make_points(image, data_shape)
        self.target = Target(image, layers["clicks"], layers["boxes"], layers["masks"], axis)
        self._connect()
        self.reset_session()
        self.target.registry.ensure(int(self.target.labels.selected_label))
        self._sync_layer_defaults()
        self.viewer.layers.selection.active = self.target.points
        self.target.points.mode = "add"
        return self.target

    def teardown(self) -> None:
        """Disconnect from the layers (they stay in the viewer with everything on them)."""
        for emitter, callback in self._connected:
            try:
                emitter.disconnect(callback)
            except Exception:  # the layer may already be gone
                pass
        self._connected.clear()
        if self.target is not None:
            for layer, cb in ((self.target.points, self._on_points_press), (self.target.boxes, self._on_boxes_press)):
                if cb in layer.mouse_drag_callbacks:
                    layer.mouse_drag_callbacks.remove(cb)
        self.target = None
        self.reset_session()

    def reset_session(self) -> None:
        """Forget the engine state; prompts are re-sent from the layers on the next action."""
        self._close_session(self.session)
        self.session = None
        self.session_key = None
        self.synced = {}

    @staticmethod
    def _close_session(session: Any) -> None:
        close = getattr(session, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # a session that cannot close cleanly is dropped anyway
                pass

    def set_model(self, model: Any) -> None:
        self.model = model
        self.reset_session()

    @staticmethod
    def _image_shape(image: Any) -> tuple[int, ...]:
        data = image.data[0] if getattr(image, "multiscale", False) else image.data
        shape = tuple(int(s) for s in data.shape)
        return shape[:-1] if image.rgb else shape

    @staticmethod
    def image_data(image: Any) -> Any:
        return image.data[0] if getattr(image, "multiscale", False) else image.data

    def _find_layer(self, image: Any, role: str, shape: tuple[int, ...]) -> Any:
        for layer in self.viewer.layers:
            meta = layer.metadata.get(STATE_KEY) if isinstance(layer.metadata, dict) else None
            if not meta or meta.get("role") != role or meta.get("image") != image.name:
                continue
            if role == "masks" and tuple(layer.data.shape) != shape:
                continue
            if role != "masks" and layer.ndim != len(shape):
                continue
            return layer
        return None

    def _layer_kwargs(self, image: Any, role: str) -> dict:
        kwargs = {
            "name": f"{image.name} {role}",
            "scale": image.scale,
            "translate": image.translate,
            "affine": image.affine.affine_matrix,
            "metadata": {STATE_KEY: {"role": role, "image": image.name}},
        }
        labels = getattr(image, "axis_labels", None)
        if labels is not None:
            kwargs["axis_labels"] = labels
        return kwargs

    def _unique_name(self, name: str) -> str:
        names = {layer.name for layer in self.viewer.layers}
        if name not in names:
            return name
        for i in itertools.count(2):
            if f"{name} [{i}]" not in names:
                return f"{name} [{i}]"
        raise AssertionError  # pragma: no cover

    def _make_labels(self, image: Any, shape: tuple[int, ...]) -> Any:
        kwargs = self._layer_kwargs(image, "masks")
        kwargs["name"] = self._unique_name(kwargs["name"])
        layer = self.viewer.add_labels(_new_labels_data(shape, labels_dtype()), opacity=0.55, **kwargs)
        layer.selected_label = 1
        return layer

    def _make_boxes(self, image: Any, shape: tuple[int, ...]) -> Any:
        import pandas as pd

        kwargs = self._layer_kwargs(image, "boxes")
        kwargs["name"] = self._unique_name(kwargs["name"])
        layer = self.viewer.add_shapes(
            ndim=len(shape),
            features=pd.DataFrame({OBJECT: pd.Series([], dtype=int)}),
            edge_width=max(1.5, min(shape[-2:]) / 90),
            face_color="transparent",
            **kwargs,
        )
        layer.mode = "add_rectangle"
        return layer

    def _make_points(self, image: Any, shape: tuple[int, ...]) -> Any:
        import pandas as pd

        kwargs = self._layer_kwargs(image, "clicks")
        kwargs["name"] = self._unique_name(kwargs["name"])
        features = pd.DataFrame(
            {
                OBJECT: pd.Series([], dtype=int),
                POLARITY: pd.Categorical([], categories=[POSITIVE, NEGATIVE]),
            }
        )
        layer = self.viewer.add_points(
            ndim=len(shape),
            features=features,
            face_color=POLARITY,
            face_color_cycle={POSITIVE: POSITIVE_COLOR, NEGATIVE: NEGATIVE_COLOR},
            border_color="white",
            border_width=0.15,
            size=max(5.0, round(min(shape[-2:]) / 28)),
            **kwargs,
        )
        return layer

    def _connect(self) -> None:
        t = self.target
        assert t is not None
        pairs = [
            (t.points.events.data, self._on_prompt_data),
            (t.boxes.events.data, self._on_prompt_data),
            (t.labels.events.paint, self._on_paint),
            (t.labels.events.selected_label, self._on_selected_label),
            (t.labels.events.colormap, self._on_colormap),
        ]
        for emitter, callback in pairs:
            emitter.connect(callback)
            self._connected.append((emitter, callback))
        t.points.mouse_drag_callbacks.insert(0, self._on_points_press)
        t.boxes.mouse_drag_callbacks.insert(0, self._on_boxes_press)

    # ------------------------------------------------------------------ layer events
    def _on_points_press(self, layer: Any, event: Any) -> None:
        """Before napari adds a click: give it the current object and its polarity.

        A plain left click uses the chosen polarity; Shift+click or a right click adds
        the opposite one (a negative click, by default).
        """
        opposite = "Shift" in event.modifiers or getattr(event, "button", 1) == 2
        positive = self.positive != opposite
        if layer.mode == "add":
            layer.selected_data = set()
            layer.feature_defaults = {
                OBJECT: self.current_object,
                POLARITY: POSITIVE if positive else NEGATIVE,
            }

    def _on_boxes_press(self, layer: Any, event: Any) -> None:
        if str(layer.mode).startswith("add"):
            layer.selected_data = set()
            layer.feature_defaults = {OBJECT: self.current_object}

    def _on_prompt_data(self, event: Any) -> None:
        action = str(getattr(event, "action", "changed"))
        if action.endswith("ing"):  # 'adding', 'removing', 'changing': wait for the result
            return
        if self.target is not None:
            self._register_prompt_objects()
            self._refresh_prompt_colors()
        self.on_prompts_changed()

    def _on_paint(self, event: Any) -> None:
        """The user painted, filled or erased: those (frame, object) pairs are now theirs."""
        t = self.target
        if t is None:
            return
        ndim = t.labels.ndim
        touched: set[tuple[PlaneKey, int]] = set()
        for atom in event.value:
            planes, values = _planes_in_atom(atom, ndim)
            touched.update((p, v) for p in planes for v in values if v > 0)
        registry = t.registry
        for plane, obj in touched:
            t.painted[(plane, obj)] = t.painted.get((plane, obj), 0) + 1
            registry.ensure(obj)
        if touched:
            self.on_objects_changed()
            self.on_prompts_changed()

    def _on_selected_label(self, event: Any = None) -> None:
        if self.target is None:
            return
        obj = self.current_object
        if obj > 0:
            self.target.registry.ensure(obj)
        self._sync_layer_defaults()
        self.on_objects_changed()

    def _on_colormap(self, event: Any = None) -> None:
        self._refresh_prompt_colors()
        self.on_objects_changed()

    def _sync_layer_defaults(self) -> None:
        t = self.target
        if t is None:
            return
        obj = max(self.current_object, 1)
        # only defaults for new prompts: no selection may be recoloured or reassigned
        t.points.selected_data = set()
        t.points.feature_defaults = {OBJECT: obj, POLARITY: POSITIVE if self.positive else NEGATIVE}
        t.boxes.selected_data = set()
        t.boxes.feature_defaults = {OBJECT: obj}
        t.boxes.current_edge_color = self.object_color(obj)
        self._refresh_prompt_colors()

    def _register_prompt_objects(self) -> None:
        t = self.target
        assert t is not None
        registry = t.registry
        changed = False
        for layer in (t.points, t.boxes):
            if OBJECT in layer.features:
                for obj in set(int(v) for v in layer.features[OBJECT]):
                    if obj > 0:
                        changed |= registry.ensure(obj)
        if changed:
            self.on_objects_changed()

    def _refresh_prompt_colors(self) -> None:
        """Borders of clicks and edges of boxes take their object's label colour."""
        t = self.target
        if t is None:
            return
        if len(t.points.data):
            colors = np.array([self.object_color(int(o)) for o in t.points.features[OBJECT]])
            current = np.asarray(t.points.border_color)
            if current.shape != colors.shape or not np.allclose(current, colors):
                t.points.border_color = colors
        if len(t.boxes.data):
            colors = np.array([self.object_color(int(o)) for o in t.boxes.features[OBJECT]])
            current = np.asarray(t.boxes.edge_color)
            if current.shape != colors.shape or not np.allclose(current, colors):
                t.boxes.edge_color = colors

    # ------------------------------------------------------------------ state
    @property
    def current_object(self) -> int:
        return int(self.target.labels.selected_label) if self.target is not None else 1

    @current_object.setter
    def current_object(self, obj: int) -> None:
        if self.target is not None:
            self.target.labels.selected_label = int(obj)

    def object_color(self, obj: int) -> tuple[float, float, float, float]:
        if self.target is None:
            return (1.0, 1.0, 1.0, 1.0)
        return _color_tuple(self.target.labels.get_color(int(obj)))

    def data_position(self) -> np.ndarray:
        """The viewer's current position in the image's data coordinates."""
        assert self.target is not None
        return np.asarray(self.target.image.world_to_data(self.viewer.dims.point), float)

    def geometry(self) -> TrackGeometry:
        """The slice tracked now: the chosen axis, other axes at the viewer's position."""
        t = self.target
        if t is None:
            raise ValueError(NO_IMAGE)
        shape = self._image_shape(t.image)
        axis = t.axis if len(shape) > 2 else None
        if axis is None and len(shape) > 2:
            raise ValueError("Choose which axis is time or z.")
        return TrackGeometry.from_position(shape, axis, self.data_position(), rgb=bool(t.image.rgb))

    def current_frame(self) -> int:
        return self.geometry().frame_from_position(self.data_position())

    def painted_on(self, geometry: TrackGeometry) -> dict[PromptKey, int]:
        """Hand-edited (frame, object) pairs of this slice, with their edit generation."""
        assert self.target is not None
        out: dict[PromptKey, int] = {}
        for (plane, obj), generation in self.target.painted.items():
            frame = geometry.frame_of_plane(plane)
            if frame is not None:
                out[(frame, obj)] = generation
        return out

    def prompts(self, geometry: TrackGeometry | None = None) -> dict[PromptKey, FramePrompt]:
        """The prompts of the tracked slice, as the layers hold them now."""
        t = self.target
        if t is None:
            return {}
        geometry = geometry or self.geometry()
        boxes = t.boxes
        prompts, problems = collect_prompts(
            geometry,
            points=np.asarray(t.points.data),
            point_features=t.points.features,
            boxes=list(boxes.data),
            box_features=boxes.features,
            box_types=list(boxes.shape_type),
            painted=(),
        )
        for key, generation in self.painted_on(geometry).items():
            old = prompts.get(key, FramePrompt())
            prompts[key] = FramePrompt(old.points, old.labels, old.box, painted=generation)  # type: ignore[arg-type]
        self.problems = problems
        return prompts

    def object_rows(self) -> list[ObjectRow]:
        """What the object list shows: id, name, colour and prompted frames."""
        t = self.target
        if t is None:
            return []
        try:
            geometry = self.geometry()
            prompts = self.prompts(geometry)
        except ValueError:
            prompts = {}
        frames: dict[int, set[int]] = {}
        for frame, obj in prompts:
            frames.setdefault(obj, set()).add(frame)
        registry = t.registry
        for obj in frames:
            registry.ensure(obj)
        return [
            ObjectRow(obj, registry.name(obj), self.object_color(obj), format_frames(frames.get(obj, ())),
                      tuple(sorted(frames.get(obj, ()))))
            for obj in registry.ids()
        ]

    # ------------------------------------------------------------------ objects
    def new_object(self) -> int:
        """Select a fresh object id (one above every id in use)."""
        t = self.target
        if t is None:
            raise ValueError(NO_IMAGE)
        used = set(t.registry.ids())
        for layer in (t.points, t.boxes):
            if OBJECT in layer.features and len(layer.features):
                used |= {int(v) for v in layer.features[OBJECT]}
        obj = t.registry.next_free_id(used)
        t.registry.ensure(obj)
        self.current_object = obj
        self.on_objects_changed()
        return obj

    def rename_object(self, obj: int, name: str) -> None:
        if self.target is not None:
            self.target.registry.rename(obj, name)
            self.on_objects_changed()

    def step_object(self, step: int) -> int:
        """Select the next (+1) or previous (-1) object in the list."""
        t = self.target
        if t is None:
            return 1
        ids = t.registry.ids() or [1]
        current = self.current_object
        if current in ids:
            obj = ids[(ids.index(current) + step) % len(ids)]
        else:
            obj = ids[0] if step > 0 else ids[-1]
        self.current_object = obj
        return obj

    def delete_object(self, obj: int) -> None:
        """Remove an object everywhere: its clicks, boxes, hand edits and masks.

        Must not run while an engine job is in flight (the widget makes sure).
        """
        t = self.target
        if t is None:
            return
        obj = int(obj)
        for layer in (t.points, t.boxes):
            if len(layer.data) and OBJECT in layer.features:
                rows = np.flatnonzero(np.asarray(layer.features[OBJECT]) == obj)
                if rows.size:
                    layer.selected_data = set(int(r) for r in rows)
                    layer.remove_selected()
        for key in [k for k in t.painted if k[1] == obj]:
            del t.painted[key]
        self._erase_label_everywhere(obj)
        if self.session is not None and obj in getattr(self.session, "obj_ids", ()):
            try:
                self.session.remove_object(obj)
            except Exception:
                self.reset_session()
        self.synced = {k: v for k, v in self.synced.items() if k[1] != obj}
        t.registry.remove(obj)
        if self.current_object == obj:
            ids = t.registry.ids()
            self.current_object = ids[0] if ids else t.registry.next_free_id()
        self.on_objects_changed()

    def _erase_label_everywhere(self, obj: int) -> None:
        t = self.target
        assert t is not None
        data = t.labels.data
        planes = itertools.product(*(range(s) for s in data.shape[:-2]))
        for plane in planes:
            current = np.asarray(data[plane])
            hit = current == obj
            if hit.any():
                current = current.copy()
                current[hit] = 0
                data[plane] = current
        t.labels.refresh()

    def clear_frame(self, frame: int | None = None, obj: int | None = None) -> None:
        """Remove the current object's prompts, hand edits and mask on one frame."""
        t = self.target
        if t is None:
            return
        geometry = self.geometry()
        frame = self.current_frame() if frame is None else frame
        obj = self.current_object if obj is None else obj
        for layer in (t.points, t.boxes):
            if not len(layer.data):
                continue
            rows = [
                i
                for i, (coord, o) in enumerate(zip(self._first_vertices(layer), layer.features[OBJECT]))
                if int(o) == obj and geometry.locate(coord)[0] == frame
            ]
            if rows:
                layer.selected_data = set(rows)
                layer.remove_selected()
        t.painted.pop((geometry.plane_key(frame), obj), None)
        index = geometry.labels_index(frame)
        plane = np.asarray(t.labels.data[index]).copy()
        plane[plane == obj] = 0
        t.labels.data[index] = plane
        t.labels.refresh()
        self.on_objects_changed()
        self.on_prompts_changed()

    @staticmethod
    def _first_vertices(layer: Any) -> list[np.ndarray]:
        if hasattr(layer, "shape_type"):
            return [np.asarray(v)[0] for v in layer.data]
        return list(np.asarray(layer.data))

    def toggle_polarity(self) -> bool:
        """Swap what a plain click adds (positive <-> negative); returns the new state."""
        self.positive = not self.positive
        self._sync_layer_defaults()
        return self.positive

    # ------------------------------------------------------------------ prompt files
    def export_prompts(self, model: str | None = None, image_size: int | None = None) -> Any:
        """The prompts of the tracked slice as a ``PromptSet`` (for JSON and the CLI)."""
        from napari_sam2.io.prompts import PromptSet

        t = self.target
        if t is None:
            raise ValueError(NO_IMAGE)
        geometry = self.geometry()
        prompts = self.prompts(geometry)
        if self.problems:
            raise ValueError("; ".join(p.message for p in self.problems) + ": fix or remove it first")
        data = self.image_data(t.image)
        frames_shape = (geometry.num_frames, *geometry.frame_shape) + ((3,) if t.image.rgb else ())
        result = PromptSet(
            model=model,
            image_size=image_size,
            frames_shape=frames_shape,
            frames_dtype=str(np.dtype(data.dtype)),
            contrast_limits=self._contrast_limits(),
        )
        registry = t.registry
        for (frame, obj), prompt in sorted(prompts.items()):
            result.object(obj, registry.name(obj))
            if prompt.painted:
                mask = np.asarray(t.labels.data[geometry.labels_index(frame)]) == obj
                result.set_prompt(obj, frame, mask=mask)
            else:
                result.set_prompt(obj, frame, points=list(prompt.points) or None,
                                  labels=list(prompt.labels) or None, box=prompt.box)
        return result

    def import_prompts(self, prompt_set: Any) -> int:
        """Put a ``PromptSet``'s prompts on the layers of the tracked slice.

        Clicks go to the clicks layer, boxes to the boxes layer and masks into the masks
        layer as hand-painted frames; the next sync sends them to the engine. Returns
        the number of prompts added. Raises ``ValueError`` when they do not fit.
        """
        t = self.target
        if t is None:
            raise ValueError(NO_IMAGE)
        geometry = self.geometry()
        prompt_set.validate_against((geometry.num_frames, *geometry.frame_shape))
        registry = t.registry
        base = np.array([float(i) for i in geometry.labels_index(0)[:-2]] + [0.0, 0.0])
        count = 0
        for obj, prompt in prompt_set.iter_prompts():
            registry.ensure(obj.id)
            if obj.name:
                registry.rename(obj.id, obj.name)
            coord = base.copy()
            if geometry.axis is not None:
                coord[geometry.axis] = prompt.frame
            if prompt.mask is not None:
                index = geometry.labels_index(prompt.frame)
                plane = np.asarray(t.labels.data[index]).copy()
                plane[plane == obj.id] = 0
                plane[np.asarray(prompt.mask, bool)] = obj.id
                t.labels.data[index] = plane
                key = (geometry.plane_key(prompt.frame), obj.id)
                t.painted[key] = t.painted.get(key, 0) + 1
            for (r, c), label in zip(prompt.points, prompt.labels):
                point = coord.copy()
                point[-2:] = (r, c)
                t.points.selected_data = set()
                t.points.feature_defaults = {OBJECT: obj.id, POLARITY: POSITIVE if label else NEGATIVE}
                t.points.add(point[None])
            if prompt.box is not None:
                r0, c0, r1, c1 = prompt.box
                corners = np.repeat(coord[None], 4, axis=0)
                corners[:, -2:] = [(r0, c0), (r0, c1), (r1, c1), (r1, c0)]
                t.boxes.selected_data = set()
                t.boxes.feature_defaults = {OBJECT: obj.id}
                t.boxes.add_rectangles(corners)
            count += 1
        t.labels.refresh()
        self._sync_layer_defaults()
        self.on_objects_changed()
        self.on_prompts_changed()
        return count

    # ------------------------------------------------------------------ sync
    def _contrast_limits(self) -> tuple[float, float] | None:
        t = self.target
        assert t is not None
        if t.image.rgb or not self.use_display_contrast:
            return None
        lo, hi = (float(v) for v in t.image.contrast_limits)
        return (lo, hi) if hi > lo else None

    def plan_sync(self) -> SyncPlan | None:
        """The prompt changes the engine has not seen yet (None: nothing to do)."""
        t = self.target
        if t is None:
            raise ValueError(NO_IMAGE)
        if self.model is None:
            raise RuntimeError("no model loaded")
        geometry = self.geometry()
        contrast = self._contrast_limits()
        key = (geometry.key, contrast, id(self.model))
        prompts = self.prompts(geometry)
        fresh = self.session is None or self.session_key != key
        synced = {} if fresh else self.synced
        changes = [
            (k, prompts.get(k, FramePrompt()))
            for k in sorted(set(prompts) | set(synced))
            if prompts.get(k, FramePrompt()) != synced.get(k, FramePrompt())
        ]
        if not changes and not fresh:
            return None
        if not changes and not prompts:
            return None  # nothing prompted yet: no need for a session
        masks = {}
        for k, prompt in changes:
            if prompt.painted:
                frame, obj = k
                masks[k] = np.asarray(t.labels.data[geometry.labels_index(frame)]) == obj
        return SyncPlan(
            geometry=geometry,
            session_key=key,
            session=None if fresh else self.session,
            frames=geometry.frames(self.image_data(t.image)),
            contrast_limits=contrast,
            changes=changes,
            masks=masks,
            dtype=np.dtype(t.labels.data.dtype),
        )

    def run_sync(self, plan: SyncPlan) -> SyncResult:
        """Worker thread: make the session if needed and send each change to the engine."""
        session = plan.session
        if session is None:
            from napari_sam2.model import VideoSession

            session = VideoSession(self.model, plan.frames, contrast_limits=plan.contrast_limits)
        result = SyncResult(session, {}, [])
        for key, prompt in plan.changes:
            frame, obj = key
            try:
                if prompt.painted:
                    out = session.add_mask(frame, obj, plan.masks[key])
                elif prompt.box is not None:
                    out = session.add_box(
                        frame, obj, box=prompt.box,
                        points=[list(p) for p in prompt.points] or None,
                        labels=list(prompt.labels) or None,
                    )
                elif prompt.points:
                    out = session.add_points(frame, obj, points=[list(p) for p in prompt.points],
                                             labels=list(prompt.labels))
                else:
                    if obj in session.obj_ids:
                        session.clear_prompts(frame, obj)
                    out = None
            except ValueError as exc:
                # remembered as sent, so one bad prompt is reported once, not on every edit
                result.errors.append(str(exc))
                result.applied.append((key, prompt))
                continue
            if out is None:
                result.planes[key] = None
            elif not prompt.painted and obj in out:
                result.planes[key] = masks_to_plane({obj: out[obj]}, plan.dtype)
            result.applied.append((key, prompt))
        return result

    def apply_sync(self, plan: SyncPlan, result: SyncResult) -> None:
        """GUI thread: remember what the engine knows and show the new masks."""
        t = self.target
        if t is None:
            return
        if plan.session is None:
            if self.session is not None and self.session is not result.session:
                self._close_session(self.session)
            self.synced = {}
        self.session = result.session
        self.session_key = plan.session_key
        for key, prompt in result.applied:
            if prompt.empty:
                self.synced.pop(key, None)
            else:
                self.synced[key] = prompt
        painted = self.painted_on(plan.geometry)
        for (frame, obj), plane in result.planes.items():
            if (frame, obj) in painted:
                continue  # never overwrite a hand-painted mask
            locked = {o for (f, o) in painted if f == frame}
            if plane is None:
                plane = np.zeros(plan.geometry.frame_shape, plan.dtype)
            self._write_plane(plan.geometry, frame, plane, (obj,), locked, claim_others=True)

    def _write_plane(self, geometry: TrackGeometry, frame: int, proposal: np.ndarray,
                     objects: Sequence[int], locked: set[int], claim_others: bool) -> None:
        t = self.target
        assert t is not None
        index = geometry.labels_index(frame)
        current = np.asarray(t.labels.data[index])
        merged = merge_plane(current, proposal, objects, locked, claim_others)
        if not np.array_equal(merged, current):
            t.labels.data[index] = merged
            if self._is_displayed(geometry, frame):
                t.labels.refresh()

    def _is_displayed(self, geometry: TrackGeometry, frame: int) -> bool:
        if geometry.axis is None:
            return True
        try:
            position = self.data_position()
        except Exception:
            return True
        plane = geometry.plane_key(frame)
        here = tuple(int(np.round(position[a])) for a in range(len(plane)))
        return here == plane

    # ------------------------------------------------------------------ propagation
    def plan_propagation(self, direction: str = "both", first: int | None = None,
                         last: int | None = None) -> PropagationPlan:
        """Passes for ``direction`` ('forward', 'backward', 'both') over [first, last].

        ``first``/``last`` default to the whole axis. Must follow a completed sync.
        """
        if direction not in ("forward", "backward", "both"):
            raise ValueError(f"unknown direction {direction!r}; use forward, backward or both")
        if self.session is None or not self.synced:
            raise ValueError("Nothing to propagate yet: click on an object, draw a box or paint a mask first.")
        geometry = self.geometry()
        n = geometry.num_frames
        lo = 0 if first is None else int(np.clip(first, 0, n - 1))
        hi = n - 1 if last is None else int(np.clip(last, 0, n - 1))
        if hi < lo:
            lo, hi = hi, lo
        inside = sorted({f for f, _ in self.synced if lo <= f <= hi})
        # start where the user prompted: forward from the first prompt, backward from the
        # last one (or from the first after a forward pass); without prompts in the
        # range, from its edge (memories of prompts elsewhere still guide the tracking)
        first_anchor = inside[0] if inside else lo
        last_anchor = inside[-1] if inside else hi
        passes: list[tuple[int | None, bool, int | None, int, int]] = []
        total = 0
        if direction in ("forward", "both"):
            passes.append((first_anchor, False, hi - first_anchor, first_anchor, hi))
            total += hi - first_anchor + 1
        if direction in ("backward", "both"):
            start = first_anchor if direction == "both" else last_anchor
            if start > lo:  # the engine yields nothing when walking back from frame 0
                passes.append((start, True, start - lo, lo, start))
                total += start - lo + 1
        if not passes:
            raise ValueError("Nothing to propagate: walking backward from the first frame covers no frames.")
        objects = tuple(sorted({o for _, o in self.synced}))
        return PropagationPlan(geometry, self.session, passes, total, np.dtype(self.target.labels.data.dtype), objects)

    @staticmethod
    def run_propagation(plan: PropagationPlan) -> Iterator[tuple[int, np.ndarray, tuple[int, ...]]]:
        """Worker thread: yields (frame, proposed plane, objects) as frames finish.

        Closing the generator (Cancel) closes the engine's one; finished frames stay.
        """
        for start, reverse, max_frames, lo, hi in plan.passes:
            frames = plan.session.propagate(start=start, reverse=reverse, max_frames=max_frames)
            try:
                for frame, out in frames:
                    if not lo <= frame <= hi:
                        break
                    objects = tuple(sorted(out))
                    plane = masks_to_plane(out, plan.dtype) if out else np.zeros(plan.geometry.frame_shape, plan.dtype)
                    yield int(frame), plane, objects
            finally:
                frames.close()

    def apply_frame(self, plan: PropagationPlan, frame: int, plane: np.ndarray, objects: Sequence[int]) -> bool:
        """GUI thread: write one propagated frame; returns False for a frame left alone.

        A frame the user painted on is never changed by propagation (their painting is
        a mask prompt instead); clicks and explicit clearing still work there.
        """
        if self.target is None:
            return False
        if frame in {f for f, _ in self.painted_on(plan.geometry)}:
            return False
        self._write_plane(plan.geometry, frame, plane, tuple(objects) or plan.objects, set(), claim_others=False)
        return True
