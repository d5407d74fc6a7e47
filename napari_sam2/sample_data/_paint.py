"""Painting a frame's cells: body brightness, optional halo, and the labels where they touch."""

from __future__ import annotations

import numpy as np

from ._population import CellState
from ._render import Canvas, reach, shape_fields, sigmoid, size_groups


def paint_cells(
    frame_shape: tuple[int, int],
    states: list[CellState],
    labels: np.ndarray,
    edge: float,
    texture: float,
    dome: float,
    weights: np.ndarray | None = None,
    halo: tuple[float, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Summed cell bodies (1 = a typical cell's centre, times ``weights``, default each cell's
    gain) and, with ``halo=(width, weights)``, a bright ring just outside each cell.

    ``labels`` is written in place; where cells touch, each pixel goes to the cell it is
    deepest inside.
    """
    height, width = frame_shape
    if weights is None:
        weights = np.array([c.gain for c in states], np.float32)
    halo_width = halo[0] if halo else 0.0
    margin = 3 * edge + 2.5 * halo_width + 1
    pad = max(int(np.ceil(max((reach(c.shape) for c in states), default=1.0) + margin)) * 2 + 2, 1)
    names = {"body": np.float32, "depth": np.float32, "labels": labels.dtype}
    if halo:
        names["halo"] = np.float32
    canvas = Canvas(height, width, pad, names)
    for group in size_groups([c.shape for c in states]):
        cells = [states[i] for i in group]
        f = shape_fields([c.shape for c in cells], margin=margin)
        tex = np.array([c.texture for c in cells], np.float32)[:, :, None, None]
        grain = 1.0 + texture * 0.5 * (np.sin(tex[:, 0] * np.pi * f.u + tex[:, 2]) + np.sin(tex[:, 1] * np.pi * f.v + tex[:, 3]))
        w = np.asarray(weights, np.float32)[group][:, None, None]
        body = sigmoid(f.sdist / edge) * (1.0 - dome * np.minimum(f.rho, 1.0) ** 2) * grain * w
        ring = None
        if halo:
            outside = np.minimum(f.sdist, 0.0) + 0.5 * halo_width
            ring = np.exp(-((outside / halo_width) ** 2)) * sigmoid(-f.sdist / edge) * np.asarray(halo[1], np.float32)[group][:, None, None]
        for i, cell in enumerate(cells):
            top, left = int(f.top[i]), int(f.left[i])
            canvas.window("body", top, left, f.size)[...] += body[i]
            if ring is not None:
                view = canvas.window("halo", top, left, f.size)
                np.maximum(view, ring[i], out=view)
            depth = canvas.window("depth", top, left, f.size)
            inside = f.sdist[i] > depth  # depth starts at 0, so only pixels inside the cell
            canvas.window("labels", top, left, f.size)[inside] = cell.label
            np.maximum(depth, f.sdist[i], out=depth)
    labels[...] = canvas.frame("labels")
    return canvas.frame("body"), (canvas.frame("halo") if halo else None)
