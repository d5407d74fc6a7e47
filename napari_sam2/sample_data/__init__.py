"""Sample data registered in the napari manifest (File > Open Sample > napari-sam2).

The functions return napari ``LayerData`` tuples, so this module needs neither napari
nor torch to import.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .clip import SyntheticClip
from .fluorescence import fluorescence_clip
from .objects import objects_clip
from .phase import phase_contrast_clip
from .random_clips import CLIP_KINDS, TRAINING_KINDS, random_clip
from .synthetic import cells_timelapse, nuclei_zstack, rgb_clip
from .zstack import nuclei_stack

__all__ = [
    "SyntheticClip",
    "CLIP_KINDS",
    "TRAINING_KINDS",
    "random_clip",
    "fluorescence_clip",
    "nuclei_stack",
    "objects_clip",
    "phase_contrast_clip",
    "cells_timelapse",
    "rgb_clip",
    "nuclei_zstack",
    "cells_sample",
    "rgb_sample",
    "nuclei_sample",
]

LayerData = tuple[Any, dict[str, Any], str]


def _limits(image: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(image[:: max(1, len(image) // 8)], (0.5, 99.8))
    return float(lo), float(hi)


def cells_sample() -> list[LayerData]:
    """Fluorescent cells over 48 frames (uint16): they drift, one divides, one leaves."""
    clip = cells_timelapse()
    meta = {
        "name": "cells (synthetic)",
        "colormap": "gray",
        "contrast_limits": _limits(clip.image),
        "axis_labels": ("t", "y", "x"),
    }
    return [(clip.image, meta, "image")]


def rgb_sample() -> list[LayerData]:
    """A 36-frame RGB clip with three moving coloured shapes on a textured background."""
    clip = rgb_clip()
    return [(clip.image, {"name": "shapes clip (synthetic)", "rgb": True, "axis_labels": ("t", "y", "x")}, "image")]


def nuclei_sample() -> list[LayerData]:
    """A 32-plane z-stack of blurred nuclei (uint16), to track objects through z."""
    clip = nuclei_zstack()
    meta = {
        "name": "nuclei z-stack (synthetic)",
        "colormap": "gray",
        "contrast_limits": _limits(clip.image),
        "axis_labels": ("z", "y", "x"),
    }
    return [(clip.image, meta, "image")]
