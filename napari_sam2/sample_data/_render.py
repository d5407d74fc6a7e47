"""Drawing primitives shared by the generators: shapes, smooth noise, blur, camera noise.

Everything works on small windows or whole arrays with numpy alone, so a clip is drawn in
milliseconds and the sample menu needs neither scipy nor torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np



@dataclass(frozen=True)
class Shape:
    """A blob: an ellipse (or rounded rectangle) with a wavy outline, in pixels of the frame."""

    row: float
    col: float
    radii: tuple[float, float]  # semi-axes along the shape's own u (major) and v axes
    angle: float = 0.0
    amps: tuple[float, ...] = ()  # relative amplitude of the outline's harmonics 2, 3, ...
    phases: tuple[float, ...] = ()
    power: float = 2.0  # 2 = ellipse; larger = rounder rectangle (superellipse)


@dataclass(frozen=True)
class Fields:
    """Shapes evaluated on equal square windows: signed distance to the outline, local coordinates.

    Window ``i`` covers frame rows ``top[i]:top[i]+size`` and columns ``left[i]:left[i]+size``,
    possibly beyond the frame (a :class:`Canvas` is padded for that).
    """

    top: np.ndarray  # (N,) int
    left: np.ndarray
    size: int
    sdist: np.ndarray  # (N, S, S) ~pixels, > 0 inside
    u: np.ndarray  # shape-local coordinates, -1..1 across the shape (they move and turn with it)
    v: np.ndarray
    rho: np.ndarray  # 0 at the centre, ~1 on the outline


def reach(shape: Shape) -> float:
    """How far from its centre a shape can reach (a superellipse's corners reach furthest)."""
    corner = 1.42 if shape.power > 2 else 1.0
    return max(shape.radii) * (1.0 + sum(abs(a) for a in shape.amps)) * corner


def size_groups(shapes: list[Shape], ratio: float = 1.3) -> list[list[int]]:
    """Indices of shapes of similar reach, so a few large shapes do not inflate every window."""
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(shapes):
        groups.setdefault(int(np.log(max(reach(s), 1.0)) / np.log(ratio)), []).append(i)
    return [groups[k] for k in sorted(groups)]


def shape_fields(shapes: list[Shape], margin: float = 4.0) -> Fields:
    """Evaluate many shapes at once: one vectorised pass instead of a Python loop per shape."""
    n = len(shapes)
    harmonics = max((len(s.amps) for s in shapes), default=0)
    amps = np.zeros((n, harmonics), np.float32)
    phases = np.zeros((n, harmonics), np.float32)
    for i, s in enumerate(shapes):
        amps[i, : len(s.amps)] = s.amps
        phases[i, : len(s.phases)] = s.phases
    center = np.array([(s.row, s.col) for s in shapes], np.float64).reshape(n, 2)
    radii = np.array([s.radii for s in shapes], np.float32).reshape(n, 2)
    power = np.array([s.power for s in shapes], np.float32)
    size = 2 * int(np.ceil(max((reach(s) for s in shapes), default=1.0) + margin)) + 2
    origin = np.floor(center).astype(np.int64) - size // 2
    local = np.arange(size, dtype=np.float32)
    rows = (origin[:, 0, None] - center[:, 0, None]).astype(np.float32) + local  # (N, S)
    cols = (origin[:, 1, None] - center[:, 1, None]).astype(np.float32) + local
    angle = np.array([s.angle for s in shapes], np.float32)
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    r, c = rows[:, :, None], cols[:, None, :]
    u = (r * cos + c * sin) / radii[:, 0, None, None]
    v = (-r * sin + c * cos) / radii[:, 1, None, None]
    radial = np.sqrt(u * u + v * v)
    if np.all(power == 2):
        rho = radial
    else:
        p = power[:, None, None]
        rho = (np.abs(u) ** p + np.abs(v) ** p) ** (1 / p)
    outline = np.ones_like(rho)
    if harmonics:  # outline(theta) = 1 + sum_k a_k cos(k theta + phi_k), by the angle-addition recurrence
        inv = 1.0 / (radial + np.float32(1e-6))
        c1, s1 = u * inv, v * inv
        ck, sk = c1, s1
        for k in range(harmonics):
            ck, sk = ck * c1 - sk * s1, sk * c1 + ck * s1  # cos, sin of (k + 2) theta
            a_cos = (amps[:, k] * np.cos(phases[:, k]))[:, None, None]
            a_sin = (amps[:, k] * np.sin(phases[:, k]))[:, None, None]
            outline += ck * a_cos - sk * a_sin
    mean_radius = np.sqrt(radii[:, 0] * radii[:, 1])[:, None, None]
    sdist = (outline - rho) * mean_radius
    return Fields(origin[:, 0], origin[:, 1], size, sdist, u, v, rho)


class Canvas:
    """Frame-sized arrays padded so that every shape window fits; the frame comes back as a view."""

    def __init__(self, height: int, width: int, pad: int, dtypes: dict[str, type]):
        self.height, self.width, self.pad = height, width, pad
        self.arrays = {name: np.zeros((height + 2 * pad, width + 2 * pad), dt) for name, dt in dtypes.items()}

    def window(self, name: str, top: int, left: int, size: int) -> np.ndarray:
        """The view under a shape window (windows far outside the frame are clamped to the pad)."""
        p = self.pad
        r0 = min(max(top + p, 0), self.height + 2 * p - size)
        c0 = min(max(left + p, 0), self.width + 2 * p - size)
        return self.arrays[name][r0 : r0 + size, c0 : c0 + size]

    def frame(self, name: str) -> np.ndarray:
        p = self.pad
        return self.arrays[name][p : p + self.height, p : p + self.width]

def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30.0, 30.0)))


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Zero-mean, unit-scale noise that varies over ``cell`` pixels (bilinear upsampling)."""
    height, width = shape
    gh, gw = int(np.ceil(height / cell)) + 2, int(np.ceil(width / cell)) + 2
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    r = np.arange(height, dtype=np.float32) / np.float32(cell)
    c = np.arange(width, dtype=np.float32) / np.float32(cell)
    r0, c0 = r.astype(np.int64), c.astype(np.int64)
    fr, fc = (r - r0)[:, None], (c - c0)[None, :]
    top = grid[r0][:, c0] * (1 - fc) + grid[r0][:, c0 + 1] * fc
    bottom = grid[r0 + 1][:, c0] * (1 - fc) + grid[r0 + 1][:, c0 + 1] * fc
    return top * (1 - fr) + bottom * fr


def fractal_noise(rng: np.random.Generator, shape: tuple[int, int], largest: float, octaves: int = 3) -> np.ndarray:
    """Sum of smooth noises at halving scales: clouds, uneven illumination, textured surfaces."""
    out = np.zeros(shape, np.float32)
    cell, weight = largest, 1.0
    for _ in range(octaves):
        out += np.float32(weight) * smooth_noise(rng, shape, max(cell, 1.5))
        cell, weight = cell / 2.0, weight * 0.55
    return out


def binomial_blur(image: np.ndarray, passes: int) -> np.ndarray:
    """Approximate Gaussian blur (sigma^2 = passes / 2) over the last two axes, edges clamped."""
    out = image.astype(np.float32, copy=True)
    tmp = np.empty_like(out)
    for _ in range(passes):
        for axis in (-2, -1):
            a = np.moveaxis(out, axis, -1)
            t = np.moveaxis(tmp, axis, -1)
            t[..., 1:-1] = a[..., :-2] + a[..., 2:]
            t[..., 0] = a[..., 0] + a[..., 1]  # edges clamped
            t[..., -1] = a[..., -1] + a[..., -2]
            t *= 0.25
            a *= 0.5
            a += t
    return out


def camera(
    rng: np.random.Generator,
    photons: np.ndarray,
    offset: float,
    gain: float,
    read_noise: float,
    dtype: type = np.uint16,
) -> np.ndarray:
    """Shot noise (Poisson, as its normal approximation: variance = mean), gain, offset, read noise.

    Both noises are Gaussian then, so one draw of the summed variance serves (half the cost).
    """
    photons = np.maximum(photons, 0.0, dtype=np.float32)
    spread = np.sqrt(np.float32(gain * gain) * photons + np.float32(read_noise * read_noise))
    counts = np.float32(offset + 0.5) + np.float32(gain) * photons
    counts += spread * rng.standard_normal(photons.shape, dtype=np.float32)
    info = np.iinfo(dtype)
    np.clip(counts, info.min, info.max, out=counts)
    return counts.astype(dtype)  # truncation after the +0.5 above rounds


def draw_size(rng: np.random.Generator, size: int | tuple[int, int] | None, lo: int = 96, hi: int = 384) -> tuple[int, int]:
    """The frame size: given, or drawn (each side independently, so aspect ratios vary too)."""
    if size is None:
        return int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    height, width = (int(s) for s in size)
    if height < 16 or width < 16:
        raise ValueError(f"frames must be at least 16x16 pixels, got {height}x{width}")
    return height, width


def loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
