"""Shared checks for label stacks handed to the exporters.

Exports accept any (T, H, W) array-like (numpy, zarr, dask, memory-mapped TIFF) and
read it one frame at a time, so they work on results larger than memory.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np

__all__ = ["Progress", "check_labels", "iter_frames", "scan_labels"]

Progress = Callable[[int, int], None]
"""Progress callback: called with (frames done, total frames)."""


def check_labels(labels: Any) -> tuple[Any, int, int, int]:
    """Validate a label stack; returns ``(stack, T, H, W)`` with a 2D image as one frame."""
    if not (hasattr(labels, "shape") and hasattr(labels, "dtype") and hasattr(labels, "__getitem__")):
        labels = np.asarray(labels)
    shape = tuple(int(s) for s in labels.shape)
    if len(shape) == 2:
        labels = labels[None] if isinstance(labels, np.ndarray) else _OneFrame(labels)
        shape = (1, *shape)
    if len(shape) != 3:
        raise ValueError(f"labels must have shape (T, H, W) or (H, W); got shape {shape}")
    dtype = np.dtype(labels.dtype)
    if dtype != bool and dtype.kind not in "ui":
        raise ValueError(f"labels must be integers (or bool); got dtype {dtype}")
    if 0 in shape:
        raise ValueError(f"labels are empty: shape {shape}")
    return labels, shape[0], shape[1], shape[2]


def iter_frames(labels: Any, num_frames: int, progress: Progress | None = None) -> Iterator[np.ndarray]:
    """Frames one at a time as numpy arrays; rejects negative labels."""
    for t in range(num_frames):
        frame = np.asarray(labels[t])
        if frame.dtype == bool:
            frame = frame.view(np.uint8)
        elif frame.dtype.kind == "i" and frame.size and frame.min() < 0:
            raise ValueError(f"labels must not be negative; frame {t} has {frame.min()}")
        yield frame
        if progress is not None:
            progress(t + 1, num_frames)


def scan_labels(labels: Any, num_frames: int) -> tuple[list[np.ndarray], int]:
    """Object ids present on each frame and the largest id, in one pass over the frames."""
    present: list[np.ndarray] = []
    largest = 0
    for frame in iter_frames(labels, num_frames):
        ids = np.unique(frame)
        ids = ids[ids != 0].astype(np.int64)
        present.append(ids)
        if ids.size:
            largest = max(largest, int(ids[-1]))
    return present, largest


class _OneFrame:
    """A 2D array-like seen as a stack of one frame, without reading it."""

    def __init__(self, image: Any) -> None:
        self._image = image
        self.shape = (1, *image.shape)
        self.dtype = image.dtype

    def __getitem__(self, index: int) -> np.ndarray:
        if index not in (0, -1):
            raise IndexError(index)
        return np.asarray(self._image)
