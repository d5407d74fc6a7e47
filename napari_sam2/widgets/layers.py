"""The napari layers of one target image: finding, making and reading them.

Every image gets three prompt layers (clicks, boxes, masks), tagged in their metadata
so they are found again when the panel is reopened.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_sam2.tracking.labels import labels_dtype
from napari_sam2.tracking.stores import new_labels_array

from .objects import ObjectRegistry
from .prompts import NEGATIVE, OBJECT, POLARITY, POSITIVE

__all__ = [
    "STATE_KEY",
    "POSITIVE_COLOR",
    "NEGATIVE_COLOR",
    "ROLES",
    "NO_IMAGE",
    "first_vertices",
    "Target",
    "image_data",
    "image_shape",
    "find_layer",
    "make_layers",
    "planes_in_atom",
    "color_tuple",
]

STATE_KEY = "napari_sam2"
"""Key in a layer's metadata: the role of our layers, object names and hand edits."""
POSITIVE_COLOR = "#2ecc40"
NEGATIVE_COLOR = "#ff4136"
ROLES = ("clicks", "boxes", "masks")
NO_IMAGE = "Open an image first (File > Open, or File > Open Sample > SAM 2), then choose it in the SAM 2 panel."

PlaneKey = tuple[int, ...]  # non-spatial indices of one 2D plane of the labels array


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

    @property
    def track_record(self) -> Any:
        """What the last track-all run made (a ``TrackAllResult``: lineage and the mask
        each track started from), kept up to date by lineage edits; None before a run."""
        return self.state.get("track_all")

    @track_record.setter
    def track_record(self, record: Any) -> None:
        self.state["track_all"] = record

    @property
    def track_rows(self) -> np.ndarray | None:
        """Centroid rows ``(id, t, y, x)`` of the tracked slice (the Tracks layer's data)."""
        return self.state.get("track_rows")

    @track_rows.setter
    def track_rows(self, rows: np.ndarray | None) -> None:
        self.state["track_rows"] = rows


def image_data(image: Any) -> Any:
    """The full-resolution array of an image layer."""
    return image.data[0] if getattr(image, "multiscale", False) else image.data


def image_shape(image: Any) -> tuple[int, ...]:
    """The image's shape without the colour axis (= the masks layer's shape)."""
    shape = tuple(int(s) for s in image_data(image).shape)
    return shape[:-1] if image.rgb else shape


def find_layer(viewer: Any, image: Any, role: str, shape: tuple[int, ...]) -> Any:
    """The layer made earlier for ``image`` in ``role``, if it is still there and fits."""
    for layer in viewer.layers:
        meta = layer.metadata.get(STATE_KEY) if isinstance(layer.metadata, dict) else None
        if not meta or meta.get("role") != role or meta.get("image") != image.name:
            continue
        if role == "masks" and tuple(layer.data.shape) != shape:
            continue
        if role != "masks" and layer.ndim != len(shape):
            continue
        return layer
    return None


def make_layers(viewer: Any, image: Any, shape: tuple[int, ...]) -> dict[str, Any]:
    """The clicks, boxes and masks layers of ``image``: found again, or made."""
    layers = {role: find_layer(viewer, image, role, shape) for role in ROLES}
    if layers["masks"] is None:
        layers["masks"] = _make_labels(viewer, image, shape)
    if layers["boxes"] is None:
        layers["boxes"] = _make_boxes(viewer, image, shape)
    if layers["clicks"] is None:
        layers["clicks"] = _make_points(viewer, image, shape)
    return layers


def _layer_kwargs(viewer: Any, image: Any, role: str) -> dict:
    kwargs = {
        "name": _unique_name(viewer, f"{image.name} {role}"),
        "scale": image.scale,
        "translate": image.translate,
        "affine": image.affine.affine_matrix,
        "metadata": {STATE_KEY: {"role": role, "image": image.name}},
    }
    labels = getattr(image, "axis_labels", None)
    if labels is not None:
        kwargs["axis_labels"] = labels
    return kwargs


def _unique_name(viewer: Any, name: str) -> str:
    names = {layer.name for layer in viewer.layers}
    if name not in names:
        return name
    for i in itertools.count(2):
        if f"{name} [{i}]" not in names:
            return f"{name} [{i}]"
    raise AssertionError  # pragma: no cover


def _make_labels(viewer: Any, image: Any, shape: tuple[int, ...]) -> Any:
    layer = viewer.add_labels(new_labels_array(shape, labels_dtype()), opacity=0.55, **_layer_kwargs(viewer, image, "masks"))
    layer.selected_label = 1
    return layer


def _make_boxes(viewer: Any, image: Any, shape: tuple[int, ...]) -> Any:
    import pandas as pd

    layer = viewer.add_shapes(
        ndim=len(shape),
        features=pd.DataFrame({OBJECT: pd.Series([], dtype=int)}),
        edge_width=max(1.5, min(shape[-2:]) / 90),
        face_color="transparent",
        **_layer_kwargs(viewer, image, "boxes"),
    )
    layer.mode = "add_rectangle"
    return layer


def _make_points(viewer: Any, image: Any, shape: tuple[int, ...]) -> Any:
    import pandas as pd

    features = pd.DataFrame(
        {OBJECT: pd.Series([], dtype=int), POLARITY: pd.Categorical([], categories=[POSITIVE, NEGATIVE])}
    )
    return viewer.add_points(
        ndim=len(shape),
        features=features,
        face_color=POLARITY,
        face_color_cycle={POSITIVE: POSITIVE_COLOR, NEGATIVE: NEGATIVE_COLOR},
        border_color="white",
        border_width=0.15,
        size=max(5.0, round(min(shape[-2:]) / 28)),
        **_layer_kwargs(viewer, image, "clicks"),
    )


def planes_in_atom(atom: Any, ndim: int) -> tuple[list[PlaneKey], set[int]]:
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


def color_tuple(color: Any) -> tuple[float, float, float, float]:
    c = np.asarray(color, float).ravel()
    if c.size == 3:
        c = np.append(c, 1.0)
    return tuple(float(v) for v in c[:4])  # type: ignore[return-value]


def first_vertices(layer: Any) -> list[np.ndarray]:
    """One coordinate per row of a Points or Shapes layer (a shape's first vertex)."""
    if hasattr(layer, "shape_type"):
        return [np.asarray(v)[0] for v in layer.data]
    return list(np.asarray(layer.data))
