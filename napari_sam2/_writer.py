"""napari writer hook: a Labels layer -> one compressed multi-page TIFF.

The export reads one plane at a time, so masks held in a lazy or zarr array are never
loaded whole. Stacks with more than one leading axis (e.g. t, z) are written as one
page per plane in C order.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

__all__ = ["write_labels"]


class _Planes:
    """A (N, H, W) view of an n-D label array whose leading axes are flattened."""

    def __init__(self, data: Any) -> None:
        self._data = data
        self._index = list(itertools.product(*(range(int(s)) for s in data.shape[:-2])))
        self.shape = (len(self._index), int(data.shape[-2]), int(data.shape[-1]))
        self.dtype = data.dtype
        self.ndim = 3

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, i: int) -> np.ndarray:
        return np.asarray(self._data[self._index[i]])


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write ``data`` (a Labels layer's array) to ``path``; napari already asked about
    replacing an existing file."""
    from napari_sam2.io import write_labels_tiff

    if getattr(data, "ndim", len(data.shape)) > 3:
        data = _Planes(data)
    written = write_labels_tiff(path, data, overwrite=True)
    return [str(written)]
