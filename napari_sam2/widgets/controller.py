"""Layers <-> the tracking layer, without Qt: everything the dock widget does except drawing.

The controller owns one *target*: an image layer, the tracked axis and the three prompt
layers made for it (clicks, boxes, masks). It reads prompts from the layers and writes
masks into the Labels layer; the engine work itself is a
:class:`~napari_sam2.tracking.interactive.LiveSession` (plan on the GUI thread, run on a
worker, accept on the GUI thread).
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from napari_sam2.tracking.axes import TrackGeometry
from napari_sam2.tracking.interactive import FramePrompt, LiveSession, PromptKey, PropagationPlan, SyncPlan, SyncResult
from napari_sam2.tracking.labels import merge_plane

from .layers import NO_IMAGE, Target, color_tuple, first_vertices, image_data, image_shape, make_layers, planes_in_atom
from .objects import ObjectRow, object_rows
from .prompts import NEGATIVE, OBJECT, POLARITY, POSITIVE, PromptProblem, collect_prompts

__all__ = ["Sam2Controller", "NO_IMAGE"]

PlaneKey = tuple[int, ...]


# ---------------------------------------------------------------------------- controller
class Sam2Controller:
    """Translates between napari layers and a SAM 2 video session for one viewer."""

    def __init__(self, viewer: Any, on_prompts_changed: Callable[[], None] | None = None,
                 on_objects_changed: Callable[[], None] | None = None) -> None:
        self.viewer = viewer
        self.on_prompts_changed = on_prompts_changed or (lambda: None)
        self.on_objects_changed = on_objects_changed or (lambda: None)
        self.target: Target | None = None
        self.live = LiveSession()
        self.positive = True  # polarity of a plain left click
        self.use_display_contrast = True
        self.problems: list[PromptProblem] = []
        self._connected: list[tuple[Any, Callable]] = []

    # what the engine knows (read-only views of the live session)
    model = property(lambda self: self.live.model)
    session = property(lambda self: self.live.session)
    session_key = property(lambda self: self.live.session_key)
    synced = property(lambda self: self.live.synced)

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
        data_shape = image_shape(image)
        if len(data_shape) < 2:
            raise ValueError(f"{image.name!r} has fewer than two axes and cannot be segmented.")
        layers = make_layers(self.viewer, image, data_shape)
        self.target = Target(image, layers["clicks"], layers["boxes"], layers["masks"], axis)
        self._connect()
        self.reset_session()
        self.target.registry.ensure(int(self.target.labels.selected_label))
        self.sync_layer_defaults()
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
        self.live.reset()

    def set_model(self, model: Any) -> None:
        self.live.set_model(model)

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
            planes, values = planes_in_atom(atom, ndim)
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
        self.sync_layer_defaults()
        self.on_objects_changed()

    def _on_colormap(self, event: Any = None) -> None:
        self._refresh_prompt_colors()
        self.on_objects_changed()

    def sync_layer_defaults(self) -> None:
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
        return color_tuple(self.target.labels.get_color(int(obj)))

    def data_position(self) -> np.ndarray:
        """The viewer's current position in the image's data coordinates."""
        assert self.target is not None
        return np.asarray(self.target.image.world_to_data(self.viewer.dims.point), float)

    def geometry(self) -> TrackGeometry:
        """The slice tracked now: the chosen axis, other axes at the viewer's position."""
        t = self.target
        if t is None:
            raise ValueError(NO_IMAGE)
        shape = image_shape(t.image)
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
            prompts = self.prompts(self.geometry())
        except ValueError:
            prompts = {}
        record = t.track_record
        return object_rows(t.registry, prompts, self.object_color, record.lineage if record is not None else None)

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
        self.live.remove_object(obj)
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
                for i, (coord, o) in enumerate(zip(first_vertices(layer), layer.features[OBJECT]))
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

    def relabel_prompts(self, old: int, new: int, from_frame: int = 0) -> bool:
        """Clicks, boxes and hand edits of ``old`` on frames from ``from_frame`` on now
        belong to ``new`` (after a merge or a split of tracks); True if any moved."""
        t = self.target
        if t is None:
            return False
        geometry = self.geometry()
        changed = False
        for layer in (t.points, t.boxes):
            if not len(layer.data) or OBJECT not in layer.features:
                continue
            rows = []
            for i, (coord, o) in enumerate(zip(first_vertices(layer), layer.features[OBJECT])):
                frame = geometry.locate(coord)[0]
                if int(o) == old and frame is not None and frame >= from_frame:
                    rows.append(i)
            if rows:
                features = layer.features.copy()
                features.loc[features.index[rows], OBJECT] = int(new)
                layer.features = features
                changed = True
        for (plane, obj) in list(t.painted):
            frame = geometry.frame_of_plane(plane)
            if obj == old and frame is not None and frame >= from_frame:
                t.painted[(plane, int(new))] = t.painted.pop((plane, obj))
                changed = True
        if changed:
            t.registry.ensure(int(new))
            self._refresh_prompt_colors()
            self.on_objects_changed()
            self.on_prompts_changed()
        return changed

    def toggle_polarity(self) -> bool:
        """Swap what a plain click adds (positive <-> negative); returns the new state."""
        self.positive = not self.positive
        self.sync_layer_defaults()
        return self.positive

    # ------------------------------------------------------------------ sync
    def contrast_limits(self) -> tuple[float, float] | None:
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
        prompts = self.prompts(geometry)

        def painted_mask(frame: int, obj: int) -> np.ndarray:
            return np.asarray(t.labels.data[geometry.labels_index(frame)]) == obj

        return self.live.plan_sync(
            geometry, prompts, geometry.frames(image_data(t.image)), self.contrast_limits(), painted_mask, t.labels.data.dtype
        )

    def run_sync(self, plan: SyncPlan) -> SyncResult:
        """Worker thread: make the session if needed and send each change to the engine."""
        return self.live.run_sync(plan)

    def apply_sync(self, plan: SyncPlan, result: SyncResult) -> None:
        """GUI thread: remember what the engine knows and show the new masks."""
        t = self.target
        if t is None:
            return
        self.live.accept_sync(plan, result)
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
        if self.target is None:
            raise ValueError(NO_IMAGE)
        return self.live.plan_propagation(self.geometry(), direction, first, last, self.target.labels.data.dtype)

    @staticmethod
    def run_propagation(plan: PropagationPlan) -> Iterator[tuple[int, np.ndarray, tuple[int, ...]]]:
        """Worker thread: yields (frame, proposed plane, objects) as frames finish."""
        return LiveSession.run_propagation(plan)

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
