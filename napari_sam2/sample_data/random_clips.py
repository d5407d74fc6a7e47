"""One entry point for training and scoring: ``seed -> SyntheticClip`` for each kind of scene."""

from __future__ import annotations

from typing import Callable

import numpy as np

from .clip import SyntheticClip
from .fluorescence import fluorescence_clip
from .objects import objects_clip
from .phase import phase_contrast_clip
from .zstack import nuclei_stack

__all__ = ["CLIP_KINDS", "TRAINING_KINDS", "random_clip"]

_MAKERS: dict[str, Callable[..., SyntheticClip]] = {
    "fluorescence": fluorescence_clip,  # uint16 time-lapse, divisions, entering and leaving cells
    "nuclei": nuclei_stack,  # uint16 z-stack: objects appear, grow, shrink and vanish through z
    "rgb": objects_clip,  # uint8 RGB: textured objects, occlusions, look-alike distractors
    "phase": phase_contrast_clip,  # uint8/uint16 phase contrast: the "new domain" for fine-tuning
}
CLIP_KINDS: tuple[str, ...] = tuple(_MAKERS)
TRAINING_KINDS: tuple[str, ...] = ("fluorescence", "nuclei", "rgb")
"""What the demo model learns from; "phase" is kept out to measure fine-tuning on a new domain."""


def random_clip(
    kind: str,
    seed: int | np.random.Generator,
    num_frames: int = 8,
    size: int | tuple[int, int] | None = None,
) -> SyntheticClip:
    """A clip of ``kind`` whose every parameter is drawn from ``seed`` (deterministic per seed).

    ``size`` (int or (height, width)) fixes the frame size; by default each side is drawn
    from 96..384 pixels. For a z-stack ``num_frames`` is the number of planes.
    """
    try:
        make = _MAKERS[kind]
    except KeyError:
        raise ValueError(f"unknown clip kind {kind!r}; known kinds: {', '.join(CLIP_KINDS)}") from None
    if isinstance(seed, (int, np.integer)) and seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    return make(seed, num_frames=num_frames, size=size)
