"""Lazy TIFF / OME-TIFF / ImageJ stack reader.

Time-lapses are often larger than memory, so the pixels are never read up front:
uncompressed contiguous files are memory-mapped (the OS pages frames in on demand),
everything else (compressed, tiled, scattered pages) goes through tifffile's zarr store
wrapped in a dask array with one chunk per plane, so reading a frame decodes only it.

Damaged files give :class:`~napari_sam2.io.errors.ReadError` naming the file (and the
plane, when one cannot be decoded); :func:`check_tiff` finds truncation up front.
"""

from __future__ import annotations

import contextlib
import logging
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import ReadError, describe

__all__ = ["TIFF_SUFFIXES", "read_tiff", "check_tiff", "guess_frame_axis"]

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
            ser = _series(tif, path, series, level)
            axes = ser.axes
            shape = tuple(int(s) for s in ser.shape)
            dtype = np.dtype(ser.dtype)
            contiguous = ser.dataoffset is not None
            if contiguous and ser.dataoffset + ser.nbytes > os.path.getsize(path):
                raise ReadError(_truncated(path, ser.dataoffset + ser.nbytes), path)
            kind = "ome-tiff" if tif.is_ome else "imagej" if tif.is_imagej else "tiff"
            scale, units = _physical_scale(tif, axes)
            seconds = _to_seconds(scale.get("T"), units.get("T", "s"))
            fps = 1.0 / seconds if seconds else None
    except (FileNotFoundError, ReadError, MemoryError):
        raise
    except Exception as err:  # damaged files fail in many ways inside tifffile
        raise ReadError(f"cannot read {path} as a TIFF file: {describe(err)}", path) from err

    array: Any = None
    storage = "zarr"
    if contiguous:
        try:
            array = tifffile.memmap(path, series=series, level=level, mode="r")
            storage = "memmap"
        except ValueError:  # e.g. not memory-mappable after all (byte-order or layout quirks)
            array = None
    if array is None:
        try:
            array = _zarr_backed(path, series, level, axes)
        except (FileNotFoundError, MemoryError):
            raise
        except Exception as err:
            raise ReadError(f"cannot read {path} as a TIFF file: {describe(err)}", path) from err
    if tuple(array.shape) != shape:  # tifffile squeezes consistently, but be explicit
        raise ReadError(f"{path}: unexpected data shape {array.shape}, expected {shape}", path)

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


def _series(tif: Any, path: Path, series: int, level: int) -> Any:
    if not tif.series:
        raise ReadError(f"{path} contains no image data", path)
    if not 0 <= series < len(tif.series):
        raise ReadError(f"{path} has {len(tif.series)} image series; series {series} does not exist", path)
    ser = tif.series[series]
    if not 0 <= level < len(ser.levels):
        raise ReadError(f"series {series} of {path} has {len(ser.levels)} resolution levels, not {level + 1}", path)
    return ser.levels[level]


def _truncated(path: Path, needed: int) -> str:
    return (
        f"{path} is truncated: its image data runs to byte {needed} but the file has "
        f"{os.path.getsize(path)} bytes (an interrupted copy or save?)"
    )


class _Damage(logging.Handler):
    """Collects what tifffile logs while it works around a damaged file structure."""

    _SIGNS = ("offset", "corrupt", "truncat", "invalid")

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if any(sign in text.lower() for sign in self._SIGNS):
            self.messages.append(text)


@contextlib.contextmanager
def _watch_tifffile() -> Iterator[_Damage]:
    """Catch tifffile's warnings for the duration, whatever its logger's level.

    They are kept from the application's handlers meanwhile: what matters is raised.
    """
    logger = logging.getLogger("tifffile")
    handler = _Damage()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def check_tiff(path: str | os.PathLike, series: int = 0, level: int = 0) -> None:
    """Raise :class:`ReadError` if a TIFF file's structure is damaged or its data truncated.

    Reads only the file's directories (no pixels): every plane of the series must be
    present and end within the file, and tifffile must not have had to skip broken
    page or tag offsets (a cut-off file often still parses as fewer, or one, plane).
    """
    import tifffile

    path = Path(path)
    size = os.path.getsize(path)
    try:
        with _watch_tifffile() as damage, tifffile.TiffFile(path) as tif:
            ser = _series(tif, path, series, level)
            if ser.dataoffset is not None:
                if ser.dataoffset + ser.nbytes > size:
                    raise ReadError(_truncated(path, ser.dataoffset + ser.nbytes), path)
            else:
                for index, page in enumerate(ser.pages):
                    if page is None:
                        raise ReadError(f"{path}: plane {index} of the series is missing (truncated file?)", path)
                    ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts) if c]
                    if ends and max(ends) > size:
                        raise ReadError(_truncated(path, max(ends)), path)
    except (FileNotFoundError, ReadError, MemoryError):
        raise
    except Exception as err:
        raise ReadError(f"cannot read {path} as a TIFF file: {describe(err)}", path) from err
    if damage.messages:
        raise ReadError(f"{path} is damaged (truncated or corrupted): {damage.messages[0]}", path)


class _GuardedPlanes:
    """Array-like over tifffile's zarr view whose read errors name the file and plane."""

    def __init__(self, z: Any, path: Path, axes: str) -> None:
        self._z, self._path = z, path
        self.shape, self.dtype, self.ndim = tuple(z.shape), z.dtype, z.ndim
        self._stack_axes = [i for i, name in enumerate(axes) if name not in _SPATIAL]

    def __getitem__(self, key: Any) -> np.ndarray:
        try:
            return np.asarray(self._z[key])
        except MemoryError:
            raise
        except Exception as err:
            raise ReadError(f"cannot read {self._where(key)} of {self._path}: {describe(err)}", self._path,
                            self._frame(key)) from err

    def _start(self, key: Any, axis: int) -> int:
        item = key[axis] if isinstance(key, tuple) and axis < len(key) else slice(None)
        return int(item.start or 0) if isinstance(item, slice) else int(item)

    def _frame(self, key: Any) -> int | None:
        return self._start(key, self._stack_axes[0]) if self._stack_axes else None

    def _where(self, key: Any) -> str:
        if not self._stack_axes:
            return "the image"
        if len(self._stack_axes) == 1:
            return f"frame {self._frame(key)}"
        return "plane " + str(tuple(self._start(key, a) for a in self._stack_axes))


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
    name = f"tiff-{path.name}-{os.stat(path).st_mtime_ns}-{series}-{level}"
    return da.from_array(_GuardedPlanes(z, path, axes), chunks=chunks, name=name, asarray=True, fancy=False)


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
