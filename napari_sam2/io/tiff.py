"""Lazy TIFF / OME-TIFF / ImageJ stack reader.

Time-lapses are often larger than memory, so the pixels are never read up front:
uncompressed contiguous files are memory-mapped (the OS pages frames in on demand),
everything else (compressed, tiled, scattered pages) goes through tifffile's zarr store
wrapped in a dask array with one chunk per plane, so reading a frame decodes only it.
"""

from __future__ import annotations

import os
import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TIFF_SUFFIXES", "read_tiff", "guess_frame_axis"]

TIFF_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".btf", ".tf2", ".tf8", ".ome.tif", ".ome.tiff")
_SPATIAL = "YXS"  # plane axes: rows, columns, samples (RGB)


def guess_frame_axis(axes: str) -> int | None:
    """Index of the axis to walk through: time, else z, else the first generic stack axis.

    Returns ``None`` for a single plane (e.g. 'YX' or 'YXS').
    """
    for name in "TZ":
        if name in axes:
            return axes.index(name)
    for i, name in enumerate(axes):
        if name not in _SPATIAL + "C":
            return i  # 'I', 'Q' and friends: an unnamed stack of pages
    return None


def read_tiff(path: str | os.PathLike, series: int = 0, level: int = 0) -> tuple[Any, dict[str, Any]]:
    """Open one series (full resolution by default) of a TIFF file without reading its pixels.

    Returns ``(array, metadata)`` where ``array`` is a read-only ``np.memmap`` for
    uncompressed contiguous data and a dask array (one chunk per plane) otherwise.
    ``metadata`` holds ``axes`` (tifffile's axis letters, e.g. 'TZYX' or 'YXS'),
    ``frame_axis`` (see :func:`guess_frame_axis`), ``rgb``, ``format`` ('ome-tiff',
    'imagej' or 'tiff'), ``storage`` ('memmap' or 'zarr') and physical ``scale`` /
    ``units`` per axis where the file records them.
    """
    import tifffile

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ValueError(f"{path} contains no image data")
            if not 0 <= series < len(tif.series):
                raise ValueError(f"{path} has {len(tif.series)} image series; series {series} does not exist")
            ser = tif.series[series]
            if not 0 <= level < len(ser.levels):
                raise ValueError(f"series {series} of {path} has {len(ser.levels)} resolution levels, not {level + 1}")
            ser = ser.levels[level]
            axes = ser.axes
            shape = tuple(int(s) for s in ser.shape)
            dtype = np.dtype(ser.dtype)
            contiguous = ser.dataoffset is not None
            kind = "ome-tiff" if tif.is_ome else "imagej" if tif.is_imagej else "tiff"
            scale, units = _physical_scale(tif, axes)
            seconds = _to_seconds(scale.get("T"), units.get("T", "s"))
            fps = 1.0 / seconds if seconds else None
    except (tifffile.TiffFileError, struct.error, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(f"cannot read {path} as a TIFF file: {err}") from err

    array: Any = None
    storage = "zarr"
    if contiguous:
        try:
            array = tifffile.memmap(path, series=series, level=level, mode="r")
            storage = "memmap"
        except ValueError:  # e.g. not memory-mappable after all (byte-order or layout quirks)
            array = None
    if array is None:
        array = _zarr_backed(path, series, level, axes)
    if tuple(array.shape) != shape:  # tifffile squeezes consistently, but be explicit
        raise ValueError(f"{path}: unexpected data shape {array.shape}, expected {shape}")

    metadata: dict[str, Any] = {
        "path": str(path),
        "format": kind,
        "axes": axes,
        "shape": shape,
        "dtype": str(dtype),
        "frame_axis": guess_frame_axis(axes),
        "rgb": axes.endswith("S") and shape[-1] in (3, 4),
        "storage": storage,
        "scale": scale,
        "units": units,
        "fps": fps,
    }
    return array, metadata


def _zarr_backed(path: Path, series: int, level: int, axes: str) -> Any:
    """A dask array over tifffile's zarr store with one chunk per image plane."""
    import dask.array as da
    import tifffile
    import zarr

    store = tifffile.imread(path, aszarr=True, series=series, level=level)
    try:
        z = zarr.open_array(store, mode="r")
    except Exception:
        store.close()
        raise
    chunks = tuple(
        full if name in _SPATIAL else 1 for name, full in zip(axes, z.shape)
    )
    # the store decodes with its own file-handle lock, so dask may read planes in parallel
    return da.from_zarr(z, chunks=chunks, name=f"tiff-{path.name}-{os.stat(path).st_mtime_ns}-{series}-{level}")


_SECONDS = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3, "msec": 1e-3, "µs": 1e-6, "us": 1e-6,
             "min": 60.0, "minute": 60.0, "minutes": 60.0, "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0}


def _to_seconds(value: float | None, unit: str) -> float | None:
    """A frame interval in seconds, if its unit is a known time unit."""
    factor = _SECONDS.get(unit.strip().lower())
    if value is None or factor is None or not value > 0:
        return None
    return value * factor


def _physical_scale(tif: Any, axes: str) -> tuple[dict[str, float], dict[str, str]]:
    """Pixel size, z step and frame interval, where the file records them."""
    scale: dict[str, float] = {}
    units: dict[str, str] = {}
    try:
        if tif.is_ome and tif.ome_metadata:
            pixels = _ome_pixels(tif.ome_metadata)
            if pixels is not None:
                for axis, attr in (("X", "PhysicalSizeX"), ("Y", "PhysicalSizeY"), ("Z", "PhysicalSizeZ"), ("T", "TimeIncrement")):
                    value = pixels.get(attr)
                    if value is not None and float(value) > 0:
                        scale[axis] = float(value)
                        unit = pixels.get(attr + "Unit") or pixels.get("TimeIncrementUnit" if axis == "T" else "")
                        units[axis] = unit or ("s" if axis == "T" else "µm")
        elif tif.is_imagej:
            meta = tif.imagej_metadata or {}
            unit = meta.get("unit")
            page = tif.pages.first
            xres = page.tags.get("XResolution")
            yres = page.tags.get("YResolution")
            for axis, tag in (("X", xres), ("Y", yres)):
                if tag is not None and unit:
                    num, den = tag.value
                    if num and den:
                        scale[axis] = den / num
                        units[axis] = str(unit)
            if meta.get("spacing"):
                scale["Z"] = float(meta["spacing"])
                if unit:
                    units["Z"] = str(unit)
            if meta.get("finterval"):
                scale["T"] = float(meta["finterval"])
                units["T"] = str(meta.get("tunit", "s"))
    except Exception:  # metadata is a convenience; never fail a read because of it
        return {}, {}
    return {k: v for k, v in scale.items() if k in axes}, {k: v for k, v in units.items() if k in axes}


def _ome_pixels(xml: str) -> dict[str, str] | None:
    root = ET.fromstring(xml)
    for element in root.iter():
        if element.tag.endswith("}Pixels") or element.tag == "Pixels":
            return dict(element.attrib)
    return None
