"""Random RGB clips: textured objects that move, turn, hide behind each other, and look alike.

Every object is labelled, the look-alike distractors too (each with its own label); where
objects overlap, the one in front owns the pixels and ``occluded`` records how much of
each object is hidden.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ._render import Shape, binomial_blur, draw_size, fractal_noise, loguniform, shape_fields, sigmoid, size_groups
from .clip import SyntheticClip, centers_from_labels

__all__ = ["objects_clip"]


@dataclass(frozen=True)
class _Look:
    """How an object is painted, in its own coordinates (so the pattern moves with it)."""

    color: np.ndarray  # (3,) 0..255
    second: np.ndarray  # (3,) the pattern's other colour
    pattern: int  # 0 flat, 1 stripes, 2 checks, 3 blotches, 4 rings
    freq: float
    phase: float
    shading: float  # brightness gradient across the object, as if lit from one side
    light: float  # direction of that light


def _random_look(rng: np.random.Generator) -> _Look:
    color = rng.uniform(0, 255, 3)
    second = np.clip(color * rng.uniform(0.3, 0.8) + rng.normal(0, 40, 3), 0, 255) if rng.random() < 0.5 else rng.uniform(0, 255, 3)
    return _Look(color, second, int(rng.integers(0, 5)), float(rng.uniform(1.0, 4.0)), float(rng.uniform(0, 6.3)),
                 float(rng.uniform(0.0, 0.35)), float(rng.uniform(0, 6.3)))


def _alike(rng: np.random.Generator, look: _Look) -> _Look:
    """A distractor's look: the same pattern and colours, slightly off."""
    jitter = rng.normal(0, 8, 3)
    return replace(look, color=np.clip(look.color + jitter, 0, 255), second=np.clip(look.second + jitter, 0, 255),
                   phase=float(rng.uniform(0, 6.3)))


def _paint(f_u: np.ndarray, f_v: np.ndarray, rho: np.ndarray, look: _Look) -> np.ndarray:
    """RGB of an object on its window."""
    if look.pattern == 1:
        mix = 0.5 + 0.5 * np.sin(look.freq * np.pi * f_u + look.phase)
    elif look.pattern == 2:
        mix = (np.sin(look.freq * np.pi * f_u + look.phase) * np.sin(look.freq * np.pi * f_v) > 0).astype(np.float32)
    elif look.pattern == 3:
        mix = 0.5 + 0.25 * (np.sin(look.freq * 2.1 * f_u + look.phase) + np.sin(look.freq * 1.7 * f_v - look.phase))
    elif look.pattern == 4:
        mix = 0.5 + 0.5 * np.sin(look.freq * np.pi * rho + look.phase)
    else:
        mix = np.zeros_like(f_u)
    mix = mix[..., None]
    rgb = look.color.astype(np.float32) * (1 - mix) + look.second.astype(np.float32) * mix
    shade = 1.0 + look.shading * (np.cos(look.light) * f_u + np.sin(look.light) * f_v)
    return rgb * np.clip(shade, 0.3, 1.7)[..., None]


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A textured scene behind the objects: colour clouds plus a fine pattern or grain."""
    base = rng.uniform(30, 220, 3).astype(np.float32)
    out = np.empty((height, width, 3), np.float32)
    large = max(height, width) * float(rng.uniform(0.15, 0.5))
    for ch in range(3):
        out[..., ch] = base[ch] + float(rng.uniform(15, 45)) * fractal_noise(rng, (height, width), large, 3)
    kind = int(rng.integers(0, 3))
    if kind == 1:  # a regular pattern (floor tiles, fabric)
        rows = np.arange(height, dtype=np.float32)[:, None]
        cols = np.arange(width, dtype=np.float32)[None, :]
        a, period = float(rng.uniform(0, np.pi)), float(rng.uniform(6, 30))
        wave = np.sin((rows * np.cos(a) + cols * np.sin(a)) * 2 * np.pi / period)
        out += float(rng.uniform(8, 30)) * wave[..., None] * rng.uniform(0.5, 1.0, 3).astype(np.float32)
    elif kind == 2:  # fine clutter
        out += float(rng.uniform(8, 25)) * fractal_noise(rng, (height, width), 4.0, 2)[..., None]
    return out


def objects_clip(
    seed: int | np.random.Generator,
    num_frames: int = 8,
    size: int | tuple[int, int] | None = None,
) -> SyntheticClip:
    """An 8-bit RGB clip of 2-6 textured objects plus look-alikes, with depth order and occlusions."""
    rng = np.random.default_rng(seed)
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    height, width = draw_size(rng, size)
    short = min(height, width)
    pan = rng.normal(0, 0.5, 2)  # the camera drifts a little
    margin = int(np.ceil(np.abs(pan).max() * num_frames)) + 2
    background = _background(rng, height + 2 * margin, width + 2 * margin)

    objects: list[dict] = []
    for _ in range(int(rng.integers(2, 7))):
        r = short * loguniform(rng, 0.05, 0.2)
        objects.append(dict(
            look=_random_look(rng),
            radii=(r * float(rng.uniform(1.0, 1.6)), r / float(rng.uniform(1.0, 1.4))),
            power=2.0 if rng.random() < 0.55 else float(rng.uniform(3.0, 8.0)),
            amps=tuple(rng.uniform(0, 0.12) * rng.normal(0, 1, 3) / np.arange(1, 4)),
            phases=tuple(rng.uniform(0, 6.3, 3)),
        ))
    if rng.random() < 0.65:  # look-alikes: same shape and pattern, own label, own path
        for source in rng.choice(len(objects), size=min(len(objects), int(rng.integers(1, 3))), replace=False):
            for _ in range(int(rng.integers(1, 3))):
                o = objects[int(source)]
                k = float(rng.uniform(0.85, 1.15))
                objects.append(dict(o, look=_alike(rng, o["look"]), radii=(o["radii"][0] * k, o["radii"][1] * k)))
    for o in objects:
        o["pos"] = rng.uniform([0.1 * height, 0.1 * width], [0.9 * height, 0.9 * width])
        angle = rng.uniform(0, 2 * np.pi)
        o["vel"] = max(o["radii"]) * loguniform(rng, 0.04, 0.35) * np.array([np.cos(angle), np.sin(angle)])
        o["angle"], o["spin"] = float(rng.uniform(0, np.pi)), float(rng.normal(0, 0.06))
    mid = num_frames / 2.0
    for _ in range(int(rng.integers(1, 3)) if len(objects) > 1 else 0):  # paths that cross half-way
        i, j = rng.choice(len(objects), 2, replace=False)
        meet = objects[i]["pos"] + objects[i]["vel"] * mid
        objects[j]["pos"] = meet - objects[j]["vel"] * mid + rng.normal(0, 0.2 * max(objects[j]["radii"]), 2)
    order = rng.permutation(len(objects))  # back to front
    edge = float(rng.uniform(0.4, 1.3))
    noise, passes = float(rng.uniform(1.0, 8.0)), int(rng.integers(0, 2))

    image = np.empty((num_frames, height, width, 3), np.uint8)
    labels = np.zeros((num_frames, height, width), np.uint16)
    amodal = np.zeros((len(objects) + 1, num_frames))
    for t in range(num_frames):
        shift = np.rint(pan * t).astype(int) + margin
        frame = background[shift[0] : shift[0] + height, shift[1] : shift[1] + width].copy()
        shapes = [Shape(float(o["pos"][0]), float(o["pos"][1]), o["radii"], o["angle"], o["amps"], o["phases"], o["power"])
                  for o in objects]
        fields = {}
        for group in size_groups(shapes):
            f = shape_fields([shapes[i] for i in group], margin=3 * edge + 1)
            fields.update({i: (f, k) for k, i in enumerate(group)})
        pad = max(f.size for f, _ in fields.values())
        canvas = np.zeros((height + 2 * pad, width + 2 * pad, 3), np.float32)
        canvas[pad:-pad, pad:-pad] = frame
        owner = np.zeros(canvas.shape[:2], np.uint16)
        for i in order:
            f, k = fields[i]
            sd = f.sdist[k]
            near = sd > -4 * edge  # paint only the object's own bounding box
            rows, cols = np.flatnonzero(near.any(1)), np.flatnonzero(near.any(0))
            if not len(rows):
                continue
            wr, wc = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
            top = min(max(int(f.top[k]) + pad, 0), height + 2 * pad - f.size)
            left = min(max(int(f.left[k]) + pad, 0), width + 2 * pad - f.size)
            view = canvas[top : top + f.size, left : left + f.size][wr, wc]
            alpha = sigmoid(sd[wr, wc] / edge)[..., None]
            view += alpha * (_paint(f.u[k][wr, wc], f.v[k][wr, wc], f.rho[k][wr, wc], objects[i]["look"]) - view)
            owner[top : top + f.size, left : left + f.size][wr, wc][sd[wr, wc] > 0] = i + 1
            r0, c0 = int(f.top[k]), int(f.left[k])
            r_lo, r_hi, c_lo, c_hi = max(r0, 0), min(r0 + f.size, height), max(c0, 0), min(c0 + f.size, width)
            if r_hi > r_lo and c_hi > c_lo:  # the whole object's area inside the frame, hidden parts too
                amodal[i + 1, t] = (sd[r_lo - r0 : r_hi - r0, c_lo - c0 : c_hi - c0] > 0).sum()
        rgb = canvas[pad:-pad, pad:-pad]
        if passes:
            rgb = np.moveaxis(binomial_blur(np.moveaxis(rgb, -1, 0), passes), 0, -1)
        gain = 1.0 + rng.normal(0, 0.02)
        image[t] = np.clip(rgb * gain + noise * rng.standard_normal(rgb.shape, dtype=np.float32), 0, 255).astype(np.uint8)
        labels[t] = owner[pad:-pad, pad:-pad]
        for o in objects:  # move, bouncing off the frame's edges
            o["pos"] = o["pos"] + o["vel"]
            o["angle"] += o["spin"]
            for k, extent in enumerate((height, width)):
                if not 0 <= o["pos"][k] <= extent:
                    o["vel"][k] = -o["vel"][k]
                    o["pos"][k] = float(np.clip(o["pos"][k], 0, extent))
    ids = list(range(1, len(objects) + 1))
    centers = centers_from_labels(labels, ids)
    visible = _visible_areas(labels, len(objects))
    occluded = {
        i: [float(1.0 - visible[i, t] / amodal[i, t]) if amodal[i, t] > 0 else 0.0 for t in range(num_frames)]
        for i in ids
    }
    keep = [i for i in ids if any(c is not None for c in centers[i])]
    return SyntheticClip(image, labels, {i: centers[i] for i in keep}, occluded={i: occluded[i] for i in keep}, kind="rgb")


def _visible_areas(labels: np.ndarray, count: int) -> np.ndarray:
    """(count + 1, T) pixel counts per label and frame."""
    return np.stack([np.bincount(frame.ravel(), minlength=count + 1)[: count + 1] for frame in labels], 1)
