"""A population of cells through time: motion, touching, divisions, entering and leaving.

Only geometry and lineage live here; the fluorescence and phase-contrast generators
render the same population in their own way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._render import Shape, loguniform


@dataclass(frozen=True)
class CellState:
    """One cell on one frame, as the renderers need it."""

    label: int
    shape: Shape
    gain: float  # brightness relative to the clip's typical cell
    texture: tuple[float, float, float, float]  # two spatial frequencies and phases, shape-local
    mitosis: float  # 0 = interphase, rising to 1 on the frame before it divides


@dataclass(frozen=True)
class PopulationParams:
    """What a clip's population looks like; drawn from the seed unless given."""

    radius: float  # typical mean radius in pixels
    density: float  # share of the frame covered by cells at the start
    jitter: float  # random-walk step, pixels per frame
    persistence: float  # directed-motion speed, pixels per frame
    drift: tuple[float, float]  # stage drift shared by all cells, pixels per frame
    division_rate: float  # probability that a cell present at the start divides in the clip
    entering: float  # expected number of cells that swim in during the clip
    elongation: float  # spread of aspect ratios
    irregularity: float  # amplitude of the wavy outline
    max_cells: int = 90


def draw_params(
    rng: np.random.Generator,
    height: int,
    width: int,
    num_frames: int,
    radius: float | None = None,
    density: float | None = None,
    division_rate: float | None = None,
) -> PopulationParams:
    """Random population parameters: small to large cells, sparse to crowded, calm to busy."""
    if radius is None:
        radius = min(loguniform(rng, 5.0, 24.0), min(height, width) / 6.0)
    if density is None:
        density = float(rng.uniform(0.05, 0.4))
    if division_rate is None:
        division_rate = float(rng.uniform(0.0, 0.35))
    drift = rng.normal(0.0, 0.05 * radius, 2) if rng.random() < 0.5 else np.zeros(2)
    return PopulationParams(
        radius=float(radius),
        density=float(density),
        jitter=radius * loguniform(rng, 0.02, 0.12),
        persistence=radius * float(rng.uniform(0.0, 0.12)),
        drift=(float(drift[0]), float(drift[1])),
        division_rate=float(division_rate),
        entering=float(rng.uniform(0.0, 1.5)) * max(num_frames, 1) / 8.0,
        elongation=float(rng.uniform(0.0, 0.45)),
        irregularity=float(rng.uniform(0.0, 0.1)),
    )


@dataclass
class _Cell:
    label: int
    pos: np.ndarray  # (row, col)
    vel: np.ndarray
    persist: np.ndarray
    radius: float
    aspect: float
    angle: float
    amps: np.ndarray
    phases: np.ndarray
    gain: float
    texture: tuple[float, float, float, float]
    birth: int
    divide_at: int | None = None


class _Simulation:
    """Steps the cells frame by frame and records each frame's states."""

    def __init__(self, rng: np.random.Generator, height: int, width: int, num_frames: int, params: PopulationParams):
        self.rng, self.h, self.w, self.t_max, self.p = rng, height, width, num_frames, params
        self.cells: list[_Cell] = []
        self.parents: dict[int, int] = {}
        self.next_label = 1

    # --- making cells -------------------------------------------------------------
    def _new(self, pos: np.ndarray, radius: float, birth: int, persist: np.ndarray | None = None) -> _Cell:
        rng, p = self.rng, self.p
        amps = p.irregularity * rng.normal(0.0, 1.0, 4) / np.arange(2, 6) * 2.0
        if persist is None:
            angle = rng.uniform(0, 2 * np.pi)
            persist = p.persistence * rng.uniform(0.0, 1.0) * np.array([np.cos(angle), np.sin(angle)])
        cell = _Cell(
            label=self.next_label,
            pos=np.asarray(pos, float),
            vel=np.zeros(2),
            persist=np.asarray(persist, float),
            radius=radius,
            aspect=1.0 + p.elongation * abs(float(rng.normal())),
            angle=float(rng.uniform(0, np.pi)),
            amps=amps,
            phases=rng.uniform(0, 2 * np.pi, 4),
            gain=float(np.exp(rng.normal(0.0, 0.3))),
            texture=(float(rng.uniform(0.5, 2.5)), float(rng.uniform(0.5, 2.5)), float(rng.uniform(0, 6.3)), float(rng.uniform(0, 6.3))),
            birth=birth,
        )
        self.next_label += 1
        last = self.t_max - 1
        # cells present at the start may divide at once; newborn ones (daughters, newcomers) rarely soon
        chance, earliest = (p.division_rate, 1) if birth == 0 else (p.division_rate * 0.3, birth + 5)
        if rng.random() < chance and earliest <= last:
            cell.divide_at = int(rng.integers(earliest, last + 1))
        self.cells.append(cell)
        return cell

    def seed_cells(self) -> None:
        rng, p = self.rng, self.p
        count = int(np.clip(round(p.density * self.h * self.w / (np.pi * p.radius**2)), 1, p.max_cells))
        placed = np.empty((count, 3))  # row, col, radius of the cells placed so far
        n = 0
        for _ in range(count):
            radius = p.radius * float(np.exp(rng.normal(0.0, 0.2)))
            for _attempt in range(20):
                pos = rng.uniform([-radius, -radius], [self.h + radius, self.w + radius])
                gaps = np.hypot(placed[:n, 0] - pos[0], placed[:n, 1] - pos[1]) - 0.9 * (radius + placed[:n, 2])
                if n == 0 or gaps.min() > 0:
                    self._new(pos, radius, 0)
                    placed[n] = (pos[0], pos[1], radius)
                    n += 1
                    break
        # a few cells near an edge swim out
        for cell in self.cells:
            gap = min(cell.pos[0], self.h - cell.pos[0], cell.pos[1], self.w - cell.pos[1])
            if gap < 2.5 * cell.radius and rng.random() < 0.35:
                outward = self._outward(cell.pos)
                cell.persist = outward * cell.radius * rng.uniform(0.12, 0.3)
        # and others swim in later
        for _ in range(int(rng.poisson(p.entering)) if self.t_max > 1 else 0):
            side = int(rng.integers(4))
            radius = p.radius * float(np.exp(rng.normal(0.0, 0.2)))
            along = rng.uniform(0.1, 0.9)
            out = 1.1 * radius
            pos = [(-out, along * self.w), (self.h + out, along * self.w), (along * self.h, -out), (along * self.h, self.w + out)][side]
            inward = [(1, 0), (-1, 0), (0, 1), (0, -1)][side]
            birth = int(rng.integers(1, self.t_max))
            cell = self._new(np.array(pos), radius, birth, np.array(inward, float) * radius * rng.uniform(0.2, 0.4))
            cell.birth = birth

    def _outward(self, pos: np.ndarray) -> np.ndarray:
        gaps = [pos[0], self.h - pos[0], pos[1], self.w - pos[1]]
        return np.array([(-1, 0), (1, 0), (0, -1), (0, 1)][int(np.argmin(gaps))], float)

    def _divide(self, mother: _Cell, t: int) -> None:
        rng = self.rng
        axis = np.array([np.cos(mother.angle), np.sin(mother.angle)])
        for sign in (1.0, -1.0):
            radius = mother.radius * float(rng.uniform(0.68, 0.8))
            pos = mother.pos + sign * axis * mother.radius * 0.62
            persist = mother.persist + sign * axis * mother.radius * 0.08
            daughter = self._new(pos, radius, t, persist)
            daughter.angle = mother.angle + float(rng.normal(0, 0.3))
            daughter.vel = sign * axis * mother.radius * 0.12
            daughter.gain = mother.gain * float(rng.uniform(0.85, 1.1))
            self.parents[daughter.label] = mother.label

    # --- stepping -----------------------------------------------------------------
    def _state(self, cell: _Cell, t: int) -> CellState:
        mitosis = 0.0
        radii = (cell.radius * np.sqrt(cell.aspect), cell.radius / np.sqrt(cell.aspect))
        amps, phases = tuple(cell.amps), tuple(cell.phases)
        if cell.divide_at is not None and cell.divide_at - t <= 3:
            # mitosis: the cell rounds up and brightens, then stretches and pinches in the middle
            mitosis = (4 - (cell.divide_at - t)) / 3.0  # 1/3, 2/3, 1
            stretch = 1.0 + 0.55 * max(0.0, 3.0 * mitosis - 1.0) / 2.0
            radii = (cell.radius * stretch, cell.radius * (1.0 - 0.1 * mitosis))
            pinch = 0.09 * max(0.0, 3.0 * mitosis - 1.0) / 2.0
            amps = (0.0, 0.0, -pinch)  # harmonic 4 against the axes: a waist across the middle
            phases = (0.0, 0.0, 0.0)
        shape = Shape(float(cell.pos[0]), float(cell.pos[1]), (float(radii[0]), float(radii[1])), cell.angle, amps, phases)
        return CellState(cell.label, shape, cell.gain * (1.0 + 0.35 * mitosis), cell.texture, mitosis)

    def _move(self, t: int) -> None:
        rng, p = self.rng, self.p
        drift = np.asarray(p.drift)
        for cell in self.cells:
            if cell.birth > t:
                continue
            cell.vel = 0.6 * cell.vel + rng.normal(0.0, p.jitter, 2)
            cell.pos = cell.pos + cell.vel + cell.persist + drift
            cell.angle += float(rng.normal(0.0, 0.05))
            cell.phases = cell.phases + rng.normal(0.0, 0.08, 4)
        if len(self.cells) > 1:  # touching, not piling up: push overlapping pairs apart
            pos = np.array([c.pos for c in self.cells])
            rad = np.array([c.radius for c in self.cells])
            diff = pos[:, None, :] - pos[None, :, :]
            dist = np.sqrt((diff**2).sum(-1)) + np.eye(len(pos)) * 1e9
            overlap = np.clip(0.85 * (rad[:, None] + rad[None, :]) - dist, 0.0, None)
            push = (diff / dist[..., None] * overlap[..., None] * 0.25).sum(1)
            for cell, dp in zip(self.cells, push):
                cell.pos = cell.pos + dp
        # cells that swam well out of the field are gone for good
        self.cells = [
            c for c in self.cells
            if -2.5 * c.radius < c.pos[0] < self.h + 2.5 * c.radius and -2.5 * c.radius < c.pos[1] < self.w + 2.5 * c.radius
        ]

    def run(self) -> list[list[CellState]]:
        self.seed_cells()
        frames: list[list[CellState]] = []
        for t in range(self.t_max):
            for mother in [c for c in self.cells if c.divide_at == t]:
                self.cells.remove(mother)
                self._divide(mother, t)
            frames.append([self._state(c, t) for c in self.cells if c.birth <= t])
            self._move(t)
        return frames


def simulate(
    rng: np.random.Generator, height: int, width: int, num_frames: int, params: PopulationParams
) -> tuple[list[list[CellState]], dict[int, int]]:
    """Per frame, the states of the cells present; and daughter -> mother for every division."""
    sim = _Simulation(rng, height, width, num_frames, params)
    frames = sim.run()
    return frames, sim.parents


def settle_lineage(parents: dict[int, int], centers: dict[int, list]) -> dict[int, int]:
    """Keep the divisions that are visible: mother on the frame before, daughter from that frame on."""
    kept = {}
    for daughter, mother in parents.items():
        d, m = centers.get(daughter), centers.get(mother)
        if not d or not m:
            continue
        first = next((t for t, c in enumerate(d) if c is not None), None)
        last = max((t for t, c in enumerate(m) if c is not None), default=None)
        if first is not None and last is not None and first >= 1 and last == first - 1:
            kept[daughter] = mother
    return kept
