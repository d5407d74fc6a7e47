"""Small deterministic clips to try the plugin on, generated in well under a second.

They are generated rather than bundled so the wheel stays small and every run sees the
same pixels (seeded numpy only, no scipy). Each generator also returns the ground-truth
labels, which the tests use to place clicks and to check what was written. These are the
fixed scenes of the sample menu; the random generators for training and scoring live in
their own modules (see :func:`napari_sam2.sample_data.random_clip`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .clip import SyntheticClip, centers_from_labels

__all__ = ["SyntheticClip", "cells_timelapse", "rgb_clip", "nuclei_zstack"]


def _soft_ellipse(
    shape: tuple[int, int],
    center: tuple[float, float],
    radii: tuple[float, float],
    angle: float,
    sharpness: float = 6.0,
) -> tuple[tuple[slice, slice], np.ndarray]:
    """A smooth 0..1 ellipse: a logistic edge stands in for optical blur.

    Only the window around the ellipse is computed (it is ~0 further out); returns that
    window's slices and the profile inside it.
    """
    reach = 2.0 * max(radii)
    r0, r1 = max(0, int(center[0] - reach)), min(shape[0], int(center[0] + reach) + 2)
    c0, c1 = max(0, int(center[1] - reach)), min(shape[1], int(center[1] + reach) + 2)
    window = (slice(r0, max(r0, r1)), slice(c0, max(c0, c1)))
    rows = np.arange(window[0].start, window[0].stop, dtype=np.float32)[:, None] - float(center[0])
    cols = np.arange(window[1].start, window[1].stop, dtype=np.float32)[None, :] - float(center[1])
    cos, sin = float(np.cos(angle)), float(np.sin(angle))
    u = (rows * cos + cols * sin) / float(radii[0])
    v = (-rows * sin + cols * cos) / float(radii[1])
    dist = np.sqrt(u * u + v * v)
    return window, 1.0 / (1.0 + np.exp(np.clip((dist - 1.0) * sharpness, -50.0, 50.0)))


@dataclass
class _Cell:
    label: int
    pos: np.ndarray  # (row, col)
    vel: np.ndarray
    radii: tuple[float, float]
    angle: float
    brightness: float
    birth: int = 0
    death: int | None = None  # first frame without the cell


def cells_timelapse(
    num_frames: int = 48,
    size: int = 256,
    seed: int = 0,
) -> SyntheticClip:
    """A 16-bit fluorescence time-lapse: cells drift, one divides and one leaves the field.

    Label 1 swells and, two thirds of the way in, divides: it ends and its daughters 8 and 9
    start on the next frame (``parents`` says so). Label 2 swims out of the right edge; the
    others wander. Photon (Poisson) noise on a camera offset of 100 counts gives the grainy
    look of real widefield data.
    """
    rng = np.random.default_rng(seed)
    scale = size / 256.0
    starts = [(128, 110), (70, 190), (60, 60), (190, 60), (200, 185), (120, 215), (45, 130)]
    cells: list[_Cell] = []
    for i, (r, c) in enumerate(starts, start=1):
        cells.append(
            _Cell(
                label=i,
                pos=np.array([r, c], float) * scale,
                vel=rng.normal(0, 1.0, 2) * scale,
                radii=(rng.uniform(11, 15) * scale, rng.uniform(8, 11) * scale),
                angle=float(rng.uniform(0, np.pi)),
                brightness=float(rng.uniform(900, 1500)),
            )
        )
    leaving = cells[1]
    leaving.vel = np.array([0.3, 3.2]) * scale * 48 / max(num_frames, 1)
    divide_at = (2 * num_frames) // 3
    mother = cells[0]
    mother.vel = np.zeros(2)

    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    illumination = 1.0 - 0.25 * (((rows - size / 2) ** 2 + (cols - size / 2) ** 2) / (size**2 / 2))
    image = np.empty((num_frames, size, size), np.uint16)
    labels = np.zeros((num_frames, size, size), np.uint8)
    daughters = (len(starts) + 1, len(starts) + 2)

    for t in range(num_frames):
        if t == divide_at and t > 0:
            axis = np.array([np.cos(mother.angle), np.sin(mother.angle)])
            for label, sign in zip(daughters, (1.0, -1.0)):
                cells.append(
                    _Cell(
                        label=label,
                        pos=mother.pos + sign * axis * mother.radii[0] * 0.55,
                        vel=sign * axis * 1.1 * scale,
                        radii=(mother.radii[0] * 0.75, mother.radii[1]),
                        angle=mother.angle,
                        brightness=mother.brightness * 0.8,
                        birth=t,
                    )
                )
            cells.remove(mother)
        signal = np.zeros((size, size), np.float32)
        best = np.zeros((size, size), np.float32)
        for cell in cells:
            if t < cell.birth:
                continue
            if cell is mother and t < divide_at:
                # the mother swells into a dumbbell before it splits
                growth = 1.0 + 0.35 * t / max(divide_at, 1)
                radii = (cell.radii[0] * growth, cell.radii[1])
            else:
                radii = cell.radii
            win, profile = _soft_ellipse((size, size), tuple(cell.pos), radii, cell.angle)
            signal[win] += profile * cell.brightness
            inside = (profile > 0.5) & (profile > best[win])
            labels[t][win][inside] = cell.label
            best[win] = np.maximum(best[win], profile)
            # move: a smooth random walk that stays inside, except the leaving cell
            cell.vel = 0.9 * cell.vel + rng.normal(0, 0.4, 2) * scale
            cell.angle += float(rng.normal(0, 0.03))
            if cell is not leaving:
                margin = 30 * scale
                for k in range(2):
                    if cell.pos[k] < margin:
                        cell.vel[k] = abs(cell.vel[k])
                    elif cell.pos[k] > size - margin:
                        cell.vel[k] = -abs(cell.vel[k])
            else:
                cell.vel = np.array([0.0, 3.2 * scale * 48 / max(num_frames, 1)])
            cell.pos = cell.pos + cell.vel
        expected = 100.0 + 60.0 * illumination + signal * illumination
        counts = rng.poisson(expected).astype(np.float32) + rng.normal(0, 3, expected.shape)
        image[t] = np.clip(counts, 0, 65535).astype(np.uint16)
    centers = centers_from_labels(labels, list(range(1, len(starts) + 3)))
    parents = {d: mother.label for d in daughters if 0 < divide_at < num_frames}
    return SyntheticClip(image=image, labels=labels, centers=centers, parents=parents, kind="fluorescence")


def _texture(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A calm, colourful background made of a few low-frequency waves plus grain."""
    rows = np.arange(height, dtype=np.float32)[:, None]
    cols = np.arange(width, dtype=np.float32)[None, :]
    out = np.zeros((height, width, 3), np.float32)
    for ch in range(3):
        for _ in range(3):
            fr, fc = rng.uniform(-0.008, 0.008, 2)
            phase = rng.uniform(0, 2 * np.pi)
            out[..., ch] += np.sin(rows * fr * 2 * np.pi + cols * fc * 2 * np.pi + phase)
    out = 100 + 22 * out + rng.normal(0, 4, out.shape)
    return out


def rgb_clip(num_frames: int = 36, height: int = 240, width: int = 320, seed: int = 1) -> SyntheticClip:
    """An 8-bit RGB clip: a red ball bounces, a blue tile slides, a yellow ellipse turns.

    Labels: 1 ball, 2 tile, 3 ellipse (the ball passes in front of the others).
    """
    rng = np.random.default_rng(seed)
    background = _texture(height, width, rng)
    rows = np.arange(height, dtype=np.float32)[:, None]
    cols = np.arange(width, dtype=np.float32)[None, :]
    image = np.empty((num_frames, height, width, 3), np.uint8)
    labels = np.zeros((num_frames, height, width), np.uint8)
    for t in range(num_frames):
        s = t / max(num_frames - 1, 1)
        frame = background.copy()
        ell_c = (0.72 * height, 0.25 * width + 0.1 * width * float(np.sin(2 * np.pi * s)))
        tile_c = (0.3 * height + 0.35 * height * s, 0.75 * width - 0.3 * width * s)
        half = 0.12 * height
        tile = (
            1 / (1 + np.exp(np.clip((np.abs(rows - tile_c[0]) - half) * 1.5, -50, 50)))
        ) * (1 / (1 + np.exp(np.clip((np.abs(cols - tile_c[1]) - half) * 1.5, -50, 50))))
        ball_c = (0.25 * height + 0.5 * height * abs(float(np.sin(1.5 * np.pi * s))), 0.1 * width + 0.8 * width * s)
        radius = 0.09 * height
        shapes = (  # drawn back to front
            ((3, ell_c, (235, 200, 40)), _soft_ellipse((height, width), ell_c, (0.09 * height, 0.16 * width), np.pi * s, 10)),
            ((2, tile_c, (40, 70, 220)), ((slice(0, height), slice(0, width)), tile)),
            ((1, ball_c, (220, 40, 35)), _soft_ellipse((height, width), ball_c, (radius, radius), 0.0, 10)),
        )
        for (label, center, color), (win, mask) in shapes:
            paint = np.broadcast_to(np.asarray(color, np.float32), mask.shape + (3,))
            if label == 1:  # a little shading makes the ball look round
                shade = 0.85 + 0.15 * np.clip((center[0] - rows[win[0]]) / radius, -1, 1)
                paint = paint * shade[..., None]
            alpha = mask[..., None]
            frame[win] = frame[win] * (1 - alpha) + paint * alpha
            labels[t][win][mask > 0.5] = label
        image[t] = np.clip(frame + rng.normal(0, 3, frame.shape), 0, 255).astype(np.uint8)
    return SyntheticClip(image=image, labels=labels, centers=centers_from_labels(labels, [1, 2, 3]), kind="rgb")


def nuclei_zstack(depth: int = 32, size: int = 128, seed: int = 2) -> SyntheticClip:
    """A 16-bit z-stack of a few blurred ellipsoidal nuclei, for tracking through z."""
    rng = np.random.default_rng(seed)
    zz, rr, cc = np.mgrid[0:depth, 0:size, 0:size].astype(np.float32)
    signal = np.zeros((depth, size, size), np.float32)
    labels = np.zeros((depth, size, size), np.uint8)
    best = np.zeros_like(signal)
    spots = [(0.5, 0.3, 0.35), (0.45, 0.65, 0.6), (0.6, 0.35, 0.75), (0.4, 0.75, 0.25)]
    for label, (fz, fr, fc) in enumerate(spots, start=1):
        cz, cr, cc0 = fz * depth, fr * size, fc * size
        rz, rad = depth * rng.uniform(0.22, 0.3), size * rng.uniform(0.1, 0.14)
        dist = np.sqrt(((zz - cz) / rz) ** 2 + ((rr - cr) / rad) ** 2 + ((cc - cc0) / rad) ** 2)
        profile = 1 / (1 + np.exp(np.clip((dist - 1) * 6, -50, 50)))
        signal += profile * rng.uniform(1500, 2500)
        inside = (profile > 0.5) & (profile > best)
        labels[inside] = label
        best = np.maximum(best, profile)
    counts = rng.poisson(120 + signal).astype(np.float32)
    centers = centers_from_labels(labels, list(range(1, len(spots) + 1)))
    return SyntheticClip(np.clip(counts, 0, 65535).astype(np.uint16), labels, centers, kind="nuclei")
