"""Export a label stack as one compressed multi-page TIFF, frame by frame."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_output, check_output
from .labels import Progress, check_labels, iter_frames

__all__ = ["write_labels_tiff"]

_DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32}
_CLASSIC_TIFF_LIMIT = 2**32 - 2**25  # leave room for the page directories


def _choose_dtype(labels: Any, source: np.dtype, num_frames: int) -> np.dtype:
    """uint16 when every label fits (a scan only when the source type is wider), else uint32."""
    if source == bool or (source.kind == "u" and source.itemsize <= 2) or (source.kind == "i" and source.itemsize <= 2):
        return np.dtype(np.uint16)
    largest = 0
    for frame in iter_frames(labels, num_frames):
        if frame.size:
            largest = max(largest, int(frame.max()))
    if largest <= np.iinfo(np.uint16).max:
        return np.dtype(np.uint16)
    if largest <= np.iinfo(np.uint32).max:
        return np.dtype(np.uint32)
    raise ValueError(f"label {largest} does not fit in 32 bits")


def write_labels_tiff(
    path: str | os.PathLike,
    labels: Any,
    dtype: str | np.dtype | None = None,
    compression: str | None = "zlib",
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Write a (T, H, W) label stack to a compressed TIFF, one page per frame.

    ``dtype`` is chosen from the largest label (uint16, or uint32 beyond 65535) unless
    given ('uint8', 'uint16' or 'uint32'); a label that does not fit a forced type
    raises. Frames are read one at a time, so any lazy array-like works. The file has
    axes 'TYX' ('YX' for a single 2D image) and is written atomically; an existing file is only replaced with
    ``overwrite=True``.
    """
    import tifffile

    path = check_output(path, overwrite)
    single_image = len(getattr(labels, "shape", np.shape(labels))) == 2
    labels, num_frames, height, width = check_labels(labels)
    if dtype is None:
        out_dtype = _choose_dtype(labels, np.dtype(labels.dtype), num_frames)
    else:
        key = np.dtype(dtype).name
        if key not in _DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}; got {dtype!r}")
        out_dtype = np.dtype(_DTYPES[key])
    limit = np.iinfo(out_dtype).max

    def pages():
        for t, frame in enumerate(iter_frames(labels, num_frames)):
            if frame.size and int(frame.max()) > limit:
                raise ValueError(f"frame {t} has label {int(frame.max())}, which does not fit in {out_dtype}")
            if progress is not None and t:
                progress(t, num_frames)  # the writer has taken the previous frame
            yield np.ascontiguousarray(frame, dtype=out_dtype)

    raw_bytes = num_frames * height * width * out_dtype.itemsize
    with atomic_output(path, overwrite=overwrite) as temp:
        with tifffile.TiffWriter(temp, bigtiff=raw_bytes > _CLASSIC_TIFF_LIMIT) as writer:
            writer.write(
                pages(),
                shape=(height, width) if single_image else (num_frames, height, width),
                dtype=out_dtype,
                compression=compression,
                photometric="minisblack",
                metadata={"axes": "YX" if single_image else "TYX"},
            )
    if progress is not None:
        progress(num_frames, num_frames)
    return path
