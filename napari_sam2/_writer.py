"""napari writer hook: a Labels layer -> one compressed multi-page TIFF.

The export reads one plane at a time, so masks held in a lazy or zarr array are never
loaded whole. Stacks with more than one leading axis (e.g. t, z) are written as one
page per plane in C order.
"""

from __future__ import annotations

from typing import Any

__all__ = ["write_labels"]


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write ``data`` (a Labels layer's array) to ``path``; napari already asked about
    replacing an existing file."""
    from napari_sam2.io import write_labels_tiff
    from napari_sam2.tracking.axes import PlaneStack

    if getattr(data, "ndim", len(data.shape)) > 3:
        data = PlaneStack(data)
    written = write_labels_tiff(path, data, overwrite=True)
    return [str(written)]
