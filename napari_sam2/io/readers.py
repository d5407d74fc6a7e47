"""One entry point that opens any supported stack lazily: ``open_stack(path)``.

The widget, the command line and napari's reader hook all go through here, so the
choice of reader and the error messages for unsupported input live in one place.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ReadError, describe
from .folder import IMAGE_SUFFIXES, read_folder, read_image
from .tiff import TIFF_SUFFIXES, check_tiff, guess_frame_axis, read_tiff
from .video import VIDEO_SUFFIXES, read_video

__all__ = ["open_stack", "check_readable", "supported_formats", "is_supported", "ReadError"]

_ARRAY_SUFFIXES = (".npy", ".zarr")


def supported_formats() -> str:
    """Human-readable list of what :func:`open_stack` reads."""
    return (
        f"TIFF/OME-TIFF/ImageJ stacks ({', '.join(TIFF_SUFFIXES)}), "
        f"videos ({', '.join(VIDEO_SUFFIXES)}), "
        f"single images ({', '.join(s for s in IMAGE_SUFFIXES if s not in TIFF_SUFFIXES)}), "
        "folders of images, numpy .npy files and zarr arrays"
    )


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for compound in (".ome.tiff", ".ome.tif"):
        if name.endswith(compound):
            return compound
    return path.suffix.lower()


def is_supported(path: str | os.PathLike) -> bool:
    """Whether :func:`open_stack` would try to read ``path`` (by name; nothing is opened)."""
    path = Path(path)
    if path.is_dir():
        return True
    suffix = _suffix(path)
    return suffix in TIFF_SUFFIXES or suffix in VIDEO_SUFFIXES or suffix in IMAGE_SUFFIXES or suffix in _ARRAY_SUFFIXES


def open_stack(path: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
    """Open a stack or a video without reading its pixels; returns ``(array_like, metadata)``.

    The array-like has ``shape``, ``dtype``, ``ndim``, ``len`` and numpy indexing, and
    serves as napari layer data and as input to the engine's frame source. The
    metadata always has ``path``, ``format``, ``axes`` (tifffile letters: T time,
    Z depth, Y, X, S colour samples, C channels, Q/I unnamed), ``shape``, ``dtype``,
    ``frame_axis`` (the axis to walk, or ``None`` for a single image), ``rgb``,
    ``storage``, ``scale``, ``units`` and ``fps``.

    Raises ``FileNotFoundError`` for a missing path and :class:`ReadError` (a
    ``ValueError``) for unknown or unreadable files, naming the path and the supported
    formats.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    suffix = _suffix(path)
    if path.is_dir():
        if suffix == ".zarr" or (path / ".zarray").exists() or (path / "zarr.json").exists():
            return _read_zarr(path)
        return read_folder(path)
    if suffix in TIFF_SUFFIXES:
        return read_tiff(path)
    if suffix in VIDEO_SUFFIXES:
        return read_video(path)
    if suffix in IMAGE_SUFFIXES:
        image = read_image(path)
        return image, _array_metadata(path, image, "image", "YXS" if image.ndim == 3 else "YX", "memory")
    if suffix == ".npy":
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as err:
            raise ReadError(f"cannot read {path} as a numpy array: {describe(err)}", path) from err
        return array, _array_metadata(path, array, "npy", _default_axes(array), "memmap")
    raise ReadError(f"cannot open {path}: unknown file type {suffix or '(no suffix)'!r}. Supported: {supported_formats()}")


def check_readable(path: str | os.PathLike) -> dict[str, Any]:
    """Check cheaply that a stack can be read, before any model is loaded; returns its metadata.

    Opens it as :func:`open_stack` does, checks a TIFF file's structure for truncation
    (directories only), and decodes the first and the last plane, so a damaged or cut-off
    file is reported in a second rather than after the model has loaded or half-way
    through tracking. Raises ``FileNotFoundError`` or :class:`ReadError` naming the file
    (and the frame). Damage in the middle of a compressed stack or a video is only
    found when that frame is read, which raises :class:`ReadError` too.
    """
    path = Path(path).expanduser()
    array, metadata = open_stack(path)
    if metadata["format"] in ("tiff", "ome-tiff", "imagej"):
        check_tiff(path)
    shape = tuple(metadata["shape"])
    axes = metadata["axes"]
    stack_axes = [i for i, name in enumerate(axes) if name not in "YXS"] if len(axes) == len(shape) else [0]
    if metadata["format"] == "image" or not stack_axes or 0 in shape:
        return metadata
    frame_axis = metadata["frame_axis"] if metadata["frame_axis"] is not None else stack_axes[0]
    for position in (0, -1):
        index = tuple(
            (shape[a] - 1 if position else 0) if a in stack_axes else slice(None) for a in range(len(shape))
        )
        frame = index[frame_axis]
        try:
            np.asarray(array[index])
        except (ReadError, MemoryError):
            raise
        except Exception as err:
            raise ReadError(f"cannot read frame {frame} of {path}: {describe(err)}", path, frame) from err
    truncation = getattr(array, "truncation", None)
    message = truncation() if callable(truncation) else None
    if message:  # a video cut off between whole frames
        raise ReadError(f"{path} seems truncated: {message}", path)
    if getattr(array, "substituted", None):  # a video whose last frames cannot be decoded
        frame = max(array.substituted)
        raise ReadError(f"cannot decode frame {frame} of {path}; the file seems truncated or damaged", path, frame)
    return metadata


def _read_zarr(path: Path) -> tuple[Any, dict[str, Any]]:
    import zarr

    try:
        array = zarr.open_array(str(path), mode="r")
    except Exception as err:
        raise ReadError(f"cannot read {path} as a zarr array: {describe(err)}", path) from err
    return array, _array_metadata(path, array, "zarr", _default_axes(array), "zarr")


def _default_axes(array: Any) -> str:
    """Axis letters for a plain array: leading axes are T, Z, C, then unnamed (Q)."""
    shape = tuple(array.shape)
    spatial = "YXS" if len(shape) >= 3 and shape[-1] in (3, 4) else "YX"
    if len(shape) < len(spatial):
        return "YX"[: len(shape)]
    extra = len(shape) - len(spatial)
    leading = "TZC"[:extra] + "Q" * max(0, extra - 3)
    return leading + spatial


def _array_metadata(path: Path, array: Any, kind: str, axes: str, storage: str) -> dict[str, Any]:
    shape = tuple(int(s) for s in array.shape)
    return {
        "path": str(path),
        "format": kind,
        "axes": axes,
        "shape": shape,
        "dtype": str(np.dtype(array.dtype)),
        "frame_axis": guess_frame_axis(axes),
        "rgb": axes.endswith("S") and shape[-1] in (3, 4),
        "storage": storage,
        "scale": {},
        "units": {},
        "fps": None,
    }
