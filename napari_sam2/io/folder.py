"""Lazy stack over a folder of image files (one frame per file, natural sort order).

Folders of exported frames ('frame_2.png' before 'frame_10.png') are a common way to
hand a video or a time-lapse around; only the file names are listed up front, each
frame is decoded when it is indexed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ReadError, describe
from .lazy import LazyFrames

__all__ = ["IMAGE_SUFFIXES", "ImageFolder", "natural_key", "read_image", "read_folder"]

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
_TIFF = (".tif", ".tiff")
_MODES = {"1": "L", "P": "RGBA", "LA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "PA": "RGBA", "HSV": "RGB", "LAB": "RGB"}


def natural_key(name: str) -> list[Any]:
    """Sort key that orders embedded numbers numerically: 'f2' < 'f10'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def read_image(path: str | os.PathLike) -> np.ndarray:
    """One image file as an array: (H, W) or (H, W, C), in the file's own bit depth.

    TIFF files go through tifffile (16-bit and float data, multi-sample pages);
    everything else through Pillow, with palette and bilevel images expanded.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in _TIFF:
            import tifffile

            return np.asarray(tifffile.imread(path, key=0))
        from PIL import Image

        with Image.open(path) as image:
            mode = image.mode
            if mode in _MODES:
                target = _MODES[mode]
                if mode == "P" and "transparency" not in image.info:
                    target = "RGB"
                image = image.convert(target)
            elif mode.startswith("I;16"):
                return np.asarray(image).astype(np.uint16)
            return np.asarray(image)
    except (FileNotFoundError, MemoryError):
        raise
    except Exception as err:  # truncated or corrupted files fail in many ways inside the decoders
        raise ReadError(f"cannot read image {path}: {describe(err)}", path) from err


class ImageFolder(LazyFrames):
    """A read-only (T, H, W[, C]) array-like whose frames are the image files of a folder.

    Shape and dtype come from the first file; a file that differs is reported when it
    is read, naming the file. Hidden files and other suffixes are ignored.
    """

    def __init__(self, path: str | os.PathLike, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"no such folder: {self.path}")
        names = [
            entry.name
            for entry in os.scandir(self.path)
            if entry.is_file() and not entry.name.startswith(".") and entry.name.lower().endswith(suffixes)
        ]
        if not names:
            raise ReadError(
                f"no images in {self.path}; expected files ending in {', '.join(suffixes)}", self.path
            )
        names.sort(key=natural_key)
        self.files: list[Path] = [self.path / name for name in names]
        first = read_image(self.files[0])
        self._frame_shape = first.shape
        self.dtype = first.dtype
        self.shape = (len(self.files), *first.shape)

    def __repr__(self) -> str:
        return f"ImageFolder({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"

    def _read(self, index: int) -> np.ndarray:
        path = self.files[index]
        try:
            frame = read_image(path)
        except FileNotFoundError:
            raise ReadError(f"frame {index} of {self.path}: {path.name} has disappeared", path, index) from None
        except ReadError as err:
            raise ReadError(f"frame {index} of {self.path}: {err}", path, index) from err
        if frame.ndim == 2 and self._frame_shape == (*frame.shape, 3):
            frame = np.repeat(frame[..., None], 3, axis=-1)  # a gray JPEG among colour ones
        if frame.shape != self._frame_shape:
            raise ReadError(
                f"frame {index} of {self.path}: {path.name} has shape {frame.shape} but {self.files[0].name} "
                f"has {self._frame_shape}; all images of a folder must have the same size and channels",
                path, index,
            )
        if frame.dtype != self.dtype:
            raise ReadError(
                f"frame {index} of {self.path}: {path.name} has dtype {frame.dtype} but {self.files[0].name} "
                f"has {self.dtype}", path, index,
            )
        return frame


def read_folder(path: str | os.PathLike) -> tuple[ImageFolder, dict[str, Any]]:
    """Open a folder of images lazily; returns ``(frames, metadata)`` like the other readers."""
    frames = ImageFolder(path)
    rgb = frames.ndim == 4 and frames.shape[-1] in (3, 4)
    metadata = {
        "path": str(frames.path),
        "format": "folder",
        "axes": "TYXS" if frames.ndim == 4 else "TYX",
        "shape": frames.shape,
        "dtype": str(frames.dtype),
        "frame_axis": 0,
        "rgb": rgb,
        "storage": "files",
        "scale": {},
        "units": {},
        "fps": None,
        "files": [str(f) for f in frames.files],
    }
    return frames, metadata
