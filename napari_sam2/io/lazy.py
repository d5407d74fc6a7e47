"""A base for read-only array-likes that decode one frame at a time.

Readers (image folders, video files) subclass :class:`LazyFrames`, set ``shape`` and
``dtype`` and implement ``_read``; numpy-style indexing on the first axis, ``len``,
iteration and ``np.asarray`` come from here, so napari, dask and the engine can use
them like arrays without anything being decoded up front.
"""

from __future__ import annotations

import operator
from typing import Any, Iterator

import numpy as np

__all__ = ["LazyFrames"]


class LazyFrames:
    """A read-only (T, ...) array-like; frames are decoded on demand by ``_read``."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def _read(self, index: int) -> np.ndarray:
        """Frame ``index`` (0 <= index < len(self))."""
        raise NotImplementedError

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def get_frame(self, index: int) -> np.ndarray:
        """Frame ``index`` (negative counts from the end)."""
        return self._read(self._normalize_index(index))

    def _normalize_index(self, index: int) -> int:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"frame index {index} out of range for {n} frames")
        return index

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        if key and key[0] is Ellipsis:
            key = (slice(None),) * (self.ndim - len(key) + 1) + key[1:]
        first, rest = (key[0], key[1:]) if key else (slice(None), ())
        if first is None:
            raise IndexError(f"{type(self).__name__} does not support adding axes with None")
        if isinstance(first, slice):
            return self._stack(range(*first.indices(len(self))), rest)
        if isinstance(first, (list, np.ndarray)):
            arr = np.asarray(first)
            if arr.dtype == bool:
                arr = np.flatnonzero(arr)
            return self._stack([self._normalize_index(int(i)) for i in arr.ravel()], rest)
        frame = self.get_frame(operator.index(first))
        return frame[rest] if rest else frame

    def _stack(self, indices: Any, rest: tuple) -> np.ndarray:
        frames = [self._read(i)[rest] if rest else self._read(i) for i in indices]
        if not frames:
            empty = np.empty((0, *self.shape[1:]), dtype=self.dtype)
            return empty[(slice(None),) + rest] if rest else empty
        return np.stack(frames)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        data = self[:]
        return data.astype(dtype) if dtype is not None else data

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self._read(i)
