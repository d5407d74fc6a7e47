"""Random fluorescence time-lapses (uint16) with a known lineage, for training and scoring.

Every parameter (frame size, cell size, density, brightness, background, blur, noise,
motion, divisions, cells entering and leaving) is drawn from the seed, so a stream of
seeds covers a broad range of what widefield time-lapses look like.
"""

from __future__ import annotations

import numpy as np

from ._paint import paint_cells
from ._population import draw_params, settle_lineage, simulate
from ._render import binomial_blur, camera, draw_size, fractal_noise, loguniform
from .clip import SyntheticClip, centers_from_labels

__all__ = ["fluorescence_clip"]


def fluorescence_clip(
    seed: int | np.random.Generator,
    num_frames: int = 8,
    size: int | tuple[int, int] | None = None,
    *,
    radius: float | None = None,
    density: float | None = None,
    division_rate: float | None = None,
) -> SyntheticClip:
    """Cells in a widefield fluorescence time-lapse: uint16 image, uint16 labels, lineage.

    ``size`` (an int or (height, width)) fixes the frame size, otherwise each side is drawn
    from 96..384 px. ``radius``, ``density`` and ``division_rate`` fix those parameters
    (e.g. a busy clip for a lineage benchmark); the rest is always drawn.
    """
    rng = np.random.default_rng(seed)
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    height, width = draw_size(rng, size)
    params = draw_params(rng, height, width, num_frames, radius, density, division_rate)
    states, parents = simulate(rng, height, width, num_frames, params)

    # optics and camera of this clip
    peak = loguniform(rng, 20.0, 3000.0)  # photons at a typical cell's centre
    background = peak * loguniform(rng, 0.03, 0.6)
    illumination = 1.0 + float(rng.uniform(0.0, 0.35)) * fractal_noise(rng, (height, width), max(height, width) * 0.6, 2)
    rows = np.linspace(-1, 1, height, dtype=np.float32)[:, None]
    cols = np.linspace(-1, 1, width, dtype=np.float32)[None, :]
    illumination = illumination * (1.0 - float(rng.uniform(0.0, 0.35)) * (rows**2 + cols**2) / 2)
    illumination += float(rng.uniform(-0.2, 0.2)) * rows + float(rng.uniform(-0.2, 0.2)) * cols
    illumination = np.clip(illumination, 0.3, None)
    haze = 1.0 + float(rng.uniform(0.0, 0.3)) * fractal_noise(rng, (height, width), params.radius * 3, 2)
    edge = float(rng.uniform(0.35, 1.5))
    texture, dome = float(rng.uniform(0.0, 0.35)), float(rng.uniform(0.0, 0.6))
    bleach = float(rng.uniform(0.0, 0.03))
    passes = int(rng.integers(0, 4))
    offset, gain, read = float(rng.uniform(0, 400)), float(rng.uniform(0.5, 5.0)), float(rng.uniform(0.5, 8.0))

    labels = np.zeros((num_frames, height, width), np.uint16)
    photons = np.empty((num_frames, height, width), np.float32)
    base = background * illumination * np.clip(haze, 0.2, None)
    for t in range(num_frames):
        signal, _ = paint_cells((height, width), states[t], labels[t], edge, texture, dome)
        photons[t] = base + signal * (peak * np.exp(-bleach * t)) * illumination
    if passes:
        photons = binomial_blur(photons, passes)
    image = camera(rng, photons, offset, gain, read)
    ids = sorted({s.label for frame in states for s in frame})
    centers = centers_from_labels(labels, ids)
    centers = {k: v for k, v in centers.items() if any(c is not None for c in v)}
    return SyntheticClip(image, labels, centers, settle_lineage(parents, centers), kind="fluorescence")
