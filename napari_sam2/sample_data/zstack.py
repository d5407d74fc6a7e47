"""Random nuclei z-stacks (uint16): ellipsoids that appear, grow, shrink and vanish through z.

Each plane shows the nuclei's cross-sections in focus plus out-of-focus light from the
planes around (a blur along z), as in a widefield or spinning-disk stack.
"""

from __future__ import annotations

import numpy as np

from ._paint import paint_cells
from ._population import CellState
from ._render import Shape, binomial_blur, camera, draw_size, fractal_noise, loguniform
from .clip import SyntheticClip, centers_from_labels

__all__ = ["nuclei_stack"]


def nuclei_stack(
    seed: int | np.random.Generator,
    num_frames: int = 8,
    size: int | tuple[int, int] | None = None,
) -> SyntheticClip:
    """A z-stack of ``num_frames`` planes; labels are the in-focus cross-sections of each nucleus."""
    rng = np.random.default_rng(seed)
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    depth = num_frames
    height, width = draw_size(rng, size)
    radius = min(loguniform(rng, 6.0, 28.0), min(height, width) / 5.0)
    density = float(rng.uniform(0.05, 0.35))
    count = int(np.clip(round(density * height * width / (np.pi * radius**2)), 1, 60))
    irregularity, elongation = float(rng.uniform(0.0, 0.08)), float(rng.uniform(0.0, 0.4))
    nuclei = []
    for label in range(1, count + 1):
        r = radius * float(np.exp(rng.normal(0.0, 0.2)))
        nuclei.append(
            dict(
                label=label,
                pos=rng.uniform([-0.5 * r, -0.5 * r], [height + 0.5 * r, width + 0.5 * r]),
                z=float(rng.uniform(-0.2, 1.2) * (depth - 1)),
                rz=max(0.8, float(rng.uniform(0.15, 0.5)) * depth),
                tilt=rng.normal(0.0, 0.04 * r, 2),
                r=r,
                aspect=1.0 + elongation * abs(float(rng.normal())),
                angle=float(rng.uniform(0, np.pi)),
                amps=tuple(irregularity * rng.normal(0.0, 1.0, 3) / np.arange(2, 5) * 2.0),
                phases=tuple(rng.uniform(0, 2 * np.pi, 3)),
                gain=float(np.exp(rng.normal(0.0, 0.3))),
                texture=(float(rng.uniform(0.5, 2.5)), float(rng.uniform(0.5, 2.5)), float(rng.uniform(0, 6.3)), float(rng.uniform(0, 6.3))),
            )
        )
    peak = loguniform(rng, 30.0, 3000.0)
    background = peak * loguniform(rng, 0.02, 0.4)
    illumination = np.clip(1.0 + float(rng.uniform(0.0, 0.3)) * fractal_noise(rng, (height, width), max(height, width) * 0.6, 2), 0.3, None)
    edge, texture, dome = float(rng.uniform(0.4, 1.5)), float(rng.uniform(0.0, 0.3)), float(rng.uniform(0.0, 0.5))
    z_passes, xy_passes = int(rng.integers(1, 4)), int(rng.integers(0, 3))
    offset, gain, read = float(rng.uniform(0, 400)), float(rng.uniform(0.5, 5.0)), float(rng.uniform(0.5, 8.0))

    labels = np.zeros((depth, height, width), np.uint16)
    signal = np.empty((depth, height, width), np.float32)
    for z in range(depth):
        states = []
        for n in nuclei:
            f = 1.0 - ((z - n["z"]) / n["rz"]) ** 2
            if f <= 0.04:
                continue
            scale = float(np.sqrt(f))
            row, col = n["pos"] + n["tilt"] * (z - n["z"])
            radii = (n["r"] * np.sqrt(n["aspect"]) * scale, n["r"] / np.sqrt(n["aspect"]) * scale)
            shape = Shape(float(row), float(col), radii, n["angle"] + 0.02 * (z - n["z"]), n["amps"], n["phases"])
            states.append(CellState(n["label"], shape, n["gain"], n["texture"], 0.0))
        signal[z], _ = paint_cells((height, width), states, labels[z], edge, texture, dome)
    # out-of-focus light: blur along z (a binomial filter over the stack axis), then in xy
    for _ in range(z_passes):
        padded = np.concatenate([signal[:1], signal, signal[-1:]])
        signal = 0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:]
    if xy_passes:
        signal = binomial_blur(signal, xy_passes)
    photons = background * illumination + signal * (peak * illumination)
    image = camera(rng, photons, offset, gain, read)
    centers = centers_from_labels(labels, [n["label"] for n in nuclei])
    centers = {k: v for k, v in centers.items() if any(c is not None for c in v)}
    return SyntheticClip(image, labels, centers, kind="nuclei")
