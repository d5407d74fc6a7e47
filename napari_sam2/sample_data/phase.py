"""Random phase-contrast-like time-lapses: dark cells with bright halos on a bright background.

A different imaging domain from fluorescence (inverted contrast, halos, textured bright
background), for measuring how well fine-tuning adapts a model trained on fluorescence.
Same cell population model, so the labels and lineage mean the same thing.
"""

from __future__ import annotations

import numpy as np

from ._paint import paint_cells
from ._population import draw_params, settle_lineage, simulate
from ._render import binomial_blur, draw_size, fractal_noise, loguniform
from .clip import SyntheticClip, centers_from_labels

__all__ = ["phase_contrast_clip"]


def phase_contrast_clip(
    seed: int | np.random.Generator,
    num_frames: int = 8,
    size: int | tuple[int, int] | None = None,
    *,
    radius: float | None = None,
    density: float | None = None,
    division_rate: float | None = None,
) -> SyntheticClip:
    """uint8 or 12-bit-in-uint16 frames; dividing cells round up and turn phase-bright."""
    rng = np.random.default_rng(seed)
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    height, width = draw_size(rng, size)
    if radius is None:
        radius = min(loguniform(rng, 7.0, 26.0), min(height, width) / 6.0)
    params = draw_params(rng, height, width, num_frames, radius, density, division_rate)
    states, parents = simulate(rng, height, width, num_frames, params)

    level = float(rng.uniform(0.55, 0.8))  # background, as a fraction of full scale
    texture = 1.0 + float(rng.uniform(0.02, 0.08)) * fractal_noise(rng, (height, width), params.radius * 1.5, 3)
    rows = np.linspace(-1, 1, height, dtype=np.float32)[:, None]
    cols = np.linspace(-1, 1, width, dtype=np.float32)[None, :]
    tilt = 1.0 + float(rng.uniform(-0.12, 0.12)) * rows + float(rng.uniform(-0.12, 0.12)) * cols
    background = level * texture * tilt
    darkness, halo_gain = float(rng.uniform(0.25, 0.6)), float(rng.uniform(0.15, 0.5))
    halo_width = float(rng.uniform(1.0, 3.5))
    edge, grain, dome = float(rng.uniform(0.4, 1.2)), float(rng.uniform(0.1, 0.5)), float(rng.uniform(-0.4, 0.3))
    noise, passes = float(rng.uniform(0.006, 0.025)), int(rng.integers(0, 2))
    sixteen = rng.random() < 0.4

    labels = np.zeros((num_frames, height, width), np.uint16)
    frames = np.empty((num_frames, height, width), np.float32)
    for t in range(num_frames):
        cells = states[t]
        mitosis = np.array([c.mitosis for c in cells], np.float32)
        gains = np.array([c.gain for c in cells], np.float32) ** 0.5
        # interphase cells are dark; rounding (mitotic) cells turn bright with a strong halo
        weights = darkness * gains * (1.0 - 1.8 * mitosis)
        halos = halo_gain * (1.0 + mitosis)
        body, halo = paint_cells((height, width), cells, labels[t], edge, grain, dome, weights, (halo_width, halos))
        frames[t] = background * (1.0 - body + halo)
    if passes:
        frames = binomial_blur(frames, passes)
    frames += noise * rng.standard_normal(frames.shape, dtype=np.float32)
    scale = 4095.0 if sixteen else 255.0
    image = np.clip(np.rint(frames * scale), 0, scale).astype(np.uint16 if sixteen else np.uint8)
    ids = sorted({s.label for frame in states for s in frame})
    centers = centers_from_labels(labels, ids)
    centers = {k: v for k, v in centers.items() if any(c is not None for c in v)}
    return SyntheticClip(image, labels, centers, settle_lineage(parents, centers), kind="phase")
