"""Per-object alpha mattes for compositing: ``<out>/<object id>/<frame:05d>.png``.

Video editors import an image sequence per object as a track matte. Mattes are
grayscale PNGs (8-bit by default, 16-bit for smooth feathered ramps), hard (0 / max)
or feathered with a Gaussian soft edge centred on the mask outline. Every object gets
a file for every frame (all zero where it is absent) so sequences stay continuous.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .atomic import atomic_output
from .labels import Progress, check_labels, iter_frames, scan_labels

__all__ = ["write_mattes", "feather_mask", "matte_name", "is_matte_folder"]

_PNG_RE = re.compile(r"^\d+\.png$")


def matte_name(frame: int, num_frames: int) -> str:
    """'00042.png' (more digits only beyond 99999 frames)."""
    return f"{frame:0{max(5, len(str(num_frames - 1)))}d}.png"


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).astype(np.float32)


def _blur_axis(data: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    radius = kernel.size // 2
    pad = [(0, 0), (0, 0)]
    pad[axis] = (radius, radius)
    padded = np.pad(data, pad, mode="edge")  # the object continues past the frame border
    out = np.zeros_like(data)
    length = data.shape[axis]
    for offset, weight in enumerate(kernel):
        window = padded[offset : offset + length] if axis == 0 else padded[:, offset : offset + length]
        out += weight * window
    return out


def feather_mask(mask: np.ndarray, radius: float) -> np.ndarray:
    """Soft alpha in [0, 1] from a binary mask: a Gaussian edge about ``radius`` pixels wide each side.

    The Gaussian has sigma = radius / 2, so alpha falls from ~0.98 to ~0.02 over
    ``radius`` pixels inside to ``radius`` pixels outside the outline (0.5 on it).
    Only the object's bounding box plus a margin is filtered.
    """
    mask = np.asarray(mask, dtype=bool)
    alpha = np.zeros(mask.shape, dtype=np.float32)
    if radius <= 0:
        alpha[mask] = 1.0
        return alpha
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return alpha
    cols = np.flatnonzero(mask.any(axis=0))
    kernel = _gaussian_kernel(radius / 2.0)
    margin = kernel.size // 2 + 1
    r0, r1 = max(0, rows[0] - margin), min(mask.shape[0], rows[-1] + margin + 1)
    c0, c1 = max(0, cols[0] - margin), min(mask.shape[1], cols[-1] + margin + 1)
    crop = mask[r0:r1, c0:c1].astype(np.float32)
    soft = _blur_axis(_blur_axis(crop, kernel, 0), kernel, 1)
    alpha[r0:r1, c0:c1] = np.clip(soft, 0.0, 1.0)
    return alpha


def is_matte_folder(path: Path) -> bool:
    """True for a folder that holds only per-object matte folders (safe to replace)."""
    for child in path.iterdir():
        if not (child.is_dir() and child.name.isdigit()):
            return False
        if not all(f.is_file() and _PNG_RE.match(f.name) for f in child.iterdir()):
            return False
    return True


def write_mattes(
    path: str | os.PathLike,
    labels: Any,
    obj_ids: Iterable[int] | None = None,
    feather: float = 0.0,
    bit_depth: int = 8,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict[int, Path]:
    """Write one PNG sequence per object; returns {object id: its folder}.

    ``feather`` is the soft-edge radius in pixels (0 = hard 0/255 mattes).
    ``bit_depth`` is 8 or 16. ``obj_ids`` defaults to every label in the stack (found
    with an extra pass over the frames). The folder appears only when complete.
    """
    from PIL import Image

    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16; got {bit_depth}")
    feather = float(feather)
    if not feather >= 0 or not math.isfinite(feather):
        raise ValueError(f"feather must be a radius >= 0 pixels; got {feather}")
    labels, num_frames, _, _ = check_labels(labels)
    if obj_ids is None:
        present, _ = scan_labels(labels, num_frames)
        ids = sorted({int(i) for frame_ids in present for i in frame_ids.tolist()})
    else:
        ids = sorted({int(i) for i in obj_ids})
        if any(i <= 0 for i in ids):
            raise ValueError(f"object ids must be positive; got {ids}")
    if not ids:
        raise ValueError("there are no objects to export (the labels are all zero)")
    dtype, scale = (np.uint8, 255.0) if bit_depth == 8 else (np.uint16, 65535.0)

    with atomic_output(path, overwrite=overwrite, directory=True, replaceable=is_matte_folder) as temp:
        for obj in ids:
            (temp / str(obj)).mkdir()
        for t, frame in enumerate(iter_frames(labels, num_frames, progress)):
            name = matte_name(t, num_frames)
            for obj in ids:
                mask = frame == obj
                if feather > 0:
                    values = np.rint(feather_mask(mask, feather) * scale).astype(dtype)
                else:
                    values = mask.astype(dtype) * dtype(scale)
                Image.fromarray(values).save(temp / str(obj) / name, compress_level=3)
    out = Path(path)
    return {obj: out / str(obj) for obj in ids}
