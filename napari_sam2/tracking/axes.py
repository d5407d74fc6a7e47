"""Axes of N-D stacks: how an n-D array maps onto the engine's (T, H, W[, C]) frames and back.

One tracked axis (time or z) is walked; the last two non-colour axes are the frame's
rows and columns; every other axis is held at one index (the viewer's position in the
widget, ``at=`` on the command line). Nothing here copies image data:
:class:`AxisView` reads one frame at a time and :class:`PlaneStack` one plane.
"""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["TrackGeometry", "AxisView", "PlaneStack", "tracked_axis_choices"]


def tracked_axis_choices(ndim: int) -> list[int]:
    """Axes of an ``ndim``-D (non-colour) image that can be tracked along: all but Y and X."""
    return list(range(max(ndim - 2, 0)))


@dataclass(frozen=True)
class TrackGeometry:
    """One 2D+1 slice of an n-D image: the tracked axis and where the others are held.

    ``shape`` is the image shape without the colour axis (= the Labels layer's shape).
    ``axis`` is ``None`` for a plain 2D image (a one-frame video). ``fixed`` gives an
    index for every other non-spatial axis, as ``((axis, index), ...)``.
    """

    shape: tuple[int, ...]
    axis: int | None
    fixed: tuple[tuple[int, int], ...] = ()
    rgb: bool = False

    def __post_init__(self) -> None:
        ndim = len(self.shape)
        if ndim < 2:
            raise ValueError(f"an image needs at least two axes, got shape {self.shape}")
        if self.axis is None:
            if ndim != 2 and len(self.fixed) != ndim - 2:
                raise ValueError("choose which axis is time or z")
        elif not 0 <= self.axis < ndim - 2:
            raise ValueError(f"axis {self.axis} is not a time or z axis of a {ndim}D image")
        expected = set(range(ndim - 2)) - ({self.axis} if self.axis is not None else set())
        if {a for a, _ in self.fixed} != expected:
            raise ValueError(f"indices are needed for axes {sorted(expected)}, got {self.fixed}")
        for a, i in self.fixed:
            if not 0 <= i < self.shape[a]:
                raise ValueError(f"index {i} is outside axis {a} of length {self.shape[a]}")

    @classmethod
    def from_position(
        cls, shape: Sequence[int], axis: int | None, position: Sequence[float], rgb: bool = False
    ) -> "TrackGeometry":
        """Geometry whose other axes are held at ``position`` (data coordinates)."""
        shape = tuple(int(s) for s in shape)
        fixed = []
        for a in range(len(shape) - 2):
            if a == axis:
                continue
            index = int(np.clip(np.round(position[a]), 0, shape[a] - 1))
            fixed.append((a, index))
        return cls(shape, axis, tuple(fixed), rgb)

    # ----------------------------------------------------------------- sizes
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def num_frames(self) -> int:
        return 1 if self.axis is None else self.shape[self.axis]

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self.shape[-2], self.shape[-1]

    @property
    def key(self) -> tuple:
        """Identifies the slice: a session is valid for one key only."""
        return (self.shape, self.axis, self.fixed)

    def describe(self, axis_labels: Sequence[str] | None = None) -> str:
        """Short text such as ``'t (48 frames) at z=5'`` for the status line."""
        name = (lambda a: str(axis_labels[a]) if axis_labels and a < len(axis_labels) else f"axis {a}")
        if self.axis is None:
            text = "single image"
        else:
            text = f"{name(self.axis)} ({self.num_frames} frames)"
        if self.fixed:
            text += " at " + ", ".join(f"{name(a)}={i}" for a, i in self.fixed)
        return text

    # ----------------------------------------------------------------- indexing
    def labels_index(self, frame: int) -> tuple[int | slice, ...]:
        """Index of one frame's (H, W) plane in the full labels array."""
        index: list[int | slice] = [slice(None)] * self.ndim
        for a, i in self.fixed:
            index[a] = i
        if self.axis is not None:
            if not 0 <= frame < self.num_frames:
                raise IndexError(f"frame {frame} is outside 0..{self.num_frames - 1}")
            index[self.axis] = int(frame)
        elif frame != 0:
            raise IndexError("a single image has only frame 0")
        return tuple(index)

    def plane_key(self, frame: int) -> tuple[int, ...]:
        """All non-spatial indices of a frame's plane: identifies it across sessions."""
        return tuple(i for i in self.labels_index(frame)[:-2])  # type: ignore[misc]

    def frame_of_plane(self, plane: Sequence[int]) -> int | None:
        """Frame index of a plane key, or ``None`` when the plane is not on this slice."""
        for a, i in self.fixed:
            if plane[a] != i:
                return None
        return 0 if self.axis is None else int(plane[self.axis])

    def locate(self, coord: Sequence[float]) -> tuple[int | None, float, float]:
        """(frame, row, col) of a point in data coordinates.

        ``frame`` is ``None`` when the point lies on another slice (another z of a 4D
        stack than the one held) or outside the tracked axis.
        """
        coord = [float(c) for c in coord]
        for a, i in self.fixed:
            if int(np.round(coord[a])) != i:
                return None, coord[-2], coord[-1]
        if self.axis is None:
            return 0, coord[-2], coord[-1]
        frame = int(np.round(coord[self.axis]))
        if not 0 <= frame < self.num_frames:
            return None, coord[-2], coord[-1]
        return frame, coord[-2], coord[-1]

    def frame_from_position(self, position: Sequence[float]) -> int:
        """The frame shown at a viewer position (data coordinates), clipped to range."""
        if self.axis is None:
            return 0
        return int(np.clip(np.round(position[self.axis]), 0, self.num_frames - 1))

    def frames(self, data: Any) -> Any:
        """The image as (T, H, W[, C]) frames, without reading pixels."""
        if isinstance(data, np.ndarray):
            index: list[Any] = [slice(None)] * data.ndim
            for a, i in self.fixed:
                index[a] = i
            view = data[tuple(index)]
            if self.axis is None:
                return view[None]
            return view  # the tracked axis is the only non-spatial axis left, and first
        return AxisView(data, self)


class AxisView:
    """A read-only (T, H, W[, C]) view of an n-D array-like; reads one frame per index.

    Works for anything indexable with integers and slices (dask, zarr, memory-mapped
    TIFF pages, napari's own lazy arrays) and never loads more than the frame asked for.
    """

    def __init__(self, data: Any, geometry: TrackGeometry) -> None:
        self._data = data
        self._geometry = geometry
        channels = tuple(int(s) for s in data.shape[geometry.ndim :])
        self.shape: tuple[int, ...] = (geometry.num_frames, *geometry.frame_shape, *channels)
        self.dtype = np.dtype(data.dtype)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"AxisView(shape={self.shape}, dtype={self.dtype})"

    def _read(self, frame: int) -> np.ndarray:
        if frame < 0:
            frame += self.shape[0]
        if not 0 <= frame < self.shape[0]:
            raise IndexError(f"frame {frame} is outside 0..{self.shape[0] - 1}")
        plane = np.asarray(self._data[self._geometry.labels_index(frame)])
        return plane

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):
            first, rest = (key[0], key[1:]) if key else (slice(None), ())
        else:
            first, rest = key, ()
        if isinstance(first, slice):
            frames = [self._read(i) for i in range(*first.indices(self.shape[0]))]
            stacked = np.stack(frames) if frames else np.empty((0, *self.shape[1:]), self.dtype)
            return stacked[(slice(None), *rest)] if rest else stacked
        frame = self._read(operator.index(first))
        return frame[rest] if rest else frame

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out.astype(dtype) if dtype is not None else out


class PlaneStack:
    """A read-only (N, H, W) view of an n-D label array whose leading axes are flattened
    in C order (e.g. (t, z) -> t * Z + z); reads one plane per index."""

    def __init__(self, data: Any) -> None:
        self._data = data
        self._index = list(itertools.product(*(range(int(s)) for s in data.shape[:-2])))
        self.shape = (len(self._index), int(data.shape[-2]), int(data.shape[-1]))
        self.dtype = np.dtype(data.dtype)
        self.ndim = 3

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, i: int) -> np.ndarray:
        return np.asarray(self._data[self._index[i]])
