"""Prompt layers' data, reduced to what the engine needs per (frame, object).

The layers are the single source of truth: after any edit (add, move, delete, undo) the
widget re-reads them, compares with what the engine was last told and re-sends only the
(frame, object) pairs that changed. This makes every kind of edit work the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from napari_sam2.tracking.axes import TrackGeometry
from napari_sam2.tracking.interactive import FramePrompt

__all__ = ["PromptProblem", "collect_prompts", "OBJECT", "POLARITY", "POSITIVE", "NEGATIVE"]

OBJECT = "object"
"""Feature column (Points and Shapes) holding the object id a prompt belongs to."""
POLARITY = "prompt"
"""Points feature column: ``POSITIVE`` (inside the object) or ``NEGATIVE`` (outside)."""
POSITIVE = "positive"
NEGATIVE = "negative"


@dataclass(frozen=True)
class PromptProblem:
    """A prompt the engine cannot use, and which layer row it came from."""

    kind: str  # "point" or "box"
    index: int
    message: str


@dataclass
class _Builder:
    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None


def _column(features: object, name: str, n: int, default: object) -> list:
    try:
        values = list(features[name])  # type: ignore[index]
    except (KeyError, TypeError):
        return [default] * n
    return values if len(values) == n else [default] * n


def collect_prompts(
    geometry: TrackGeometry,
    points: np.ndarray | None = None,
    point_features: object = None,
    boxes: Sequence[np.ndarray] = (),
    box_features: object = None,
    box_types: Sequence[str] | None = None,
    painted: Iterable[tuple[int, int]] = (),
) -> tuple[dict[tuple[int, int], FramePrompt], list[PromptProblem]]:
    """Group layer data by (frame, object) for the slice ``geometry`` describes.

    ``points``: (N, ndim) data coordinates; ``point_features`` has ``object`` and
    ``prompt`` columns. ``boxes``: shape vertex arrays (rectangles; other shape types are
    reported as problems). ``painted``: (frame, object) pairs painted by hand.
    Prompts on other slices of a 4D stack are silently skipped; prompts outside the
    image are returned as problems instead of being sent to the engine.
    """
    height, width = geometry.frame_shape
    grouped: dict[tuple[int, int], _Builder] = {}
    problems: list[PromptProblem] = []

    if points is not None and len(points):
        n = len(points)
        objects = _column(point_features, OBJECT, n, 1)
        polarity = _column(point_features, POLARITY, n, POSITIVE)
        for i, coord in enumerate(np.asarray(points, float)):
            frame, row, col = geometry.locate(coord)
            if frame is None:
                continue
            if not (-0.5 <= row < height - 0.5 and -0.5 <= col < width - 0.5):
                problems.append(
                    PromptProblem("point", i, f"the click at ({row:.0f}, {col:.0f}) is outside the {height} x {width} image")
                )
                continue
            obj = int(objects[i])
            if obj <= 0:
                problems.append(PromptProblem("point", i, f"a click belongs to object {obj}; object ids start at 1"))
                continue
            b = grouped.setdefault((frame, obj), _Builder())
            b.points.append((float(row), float(col)))
            b.labels.append(1 if str(polarity[i]) == POSITIVE else 0)

    n_boxes = len(boxes)
    if n_boxes:
        objects = _column(box_features, OBJECT, n_boxes, 1)
        types = list(box_types) if box_types is not None else ["rectangle"] * n_boxes
        for i, vertices in enumerate(boxes):
            vertices = np.asarray(vertices, float)
            if types[i] != "rectangle":
                problems.append(PromptProblem("box", i, f"a {types[i]} is not a box; draw rectangles only"))
                continue
            frames = {geometry.locate(v)[0] for v in vertices}
            if len(frames) != 1 or None in frames:
                continue  # on another slice (or spread over frames: not a 2D box)
            frame = frames.pop()
            r0, c0 = vertices[:, -2].min(), vertices[:, -1].min()
            r1, c1 = vertices[:, -2].max(), vertices[:, -1].max()
            # clip to the image; a box entirely outside is a problem
            cr0, cc0 = max(r0, 0.0), max(c0, 0.0)
            cr1, cc1 = min(r1, height - 1.0), min(c1, width - 1.0)
            if cr1 <= cr0 or cc1 <= cc0:
                problems.append(PromptProblem("box", i, f"the box at ({r0:.0f}, {c0:.0f}) is outside the {height} x {width} image"))
                continue
            obj = int(objects[i])
            if obj <= 0:
                problems.append(PromptProblem("box", i, f"a box belongs to object {obj}; object ids start at 1"))
                continue
            # one box per object and frame: the latest drawn wins
            grouped.setdefault((frame, obj), _Builder()).box = (float(cr0), float(cc0), float(cr1), float(cc1))

    prompts = {
        key: FramePrompt(tuple(b.points), tuple(b.labels), b.box) for key, b in grouped.items()
    }
    for frame, obj in painted:
        old = prompts.get((frame, obj), FramePrompt())
        prompts[(frame, obj)] = FramePrompt(old.points, old.labels, old.box, painted=1)
    return prompts, problems
