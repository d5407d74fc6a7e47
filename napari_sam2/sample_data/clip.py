"""The container every synthetic generator returns: pixels plus the truth they came from."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["SyntheticClip", "centers_from_labels"]

Center = tuple[float, float]


@dataclass(frozen=True)
class SyntheticClip:
    """Pixels plus the truth they were drawn from.

    First and last frame of each object follow from ``centers`` (or ``labels``); they are
    not stored twice.
    """

    image: np.ndarray
    labels: np.ndarray  # same leading shape as ``image`` (no colour axis), 0 = background
    centers: dict[int, list[Center | None]] = field(default_factory=dict)
    """Per label: a (row, col) inside its visible pixels on each frame, ``None`` where absent."""
    parents: dict[int, int] = field(default_factory=dict)
    """Daughter label -> mother label: the mother's last frame is the one before the daughters' first."""
    occluded: dict[int, list[float]] = field(default_factory=dict)
    """Per label and frame: the share of the object hidden by objects in front (depth-ordered scenes)."""
    kind: str = ""

    @property
    def num_frames(self) -> int:
        return int(self.labels.shape[0])

    def span(self, label: int) -> tuple[int, int]:
        """First and last frame on which ``label`` is visible."""
        present = [t for t, c in enumerate(self.centers[label]) if c is not None]
        if not present:
            raise ValueError(f"label {label} is never visible in this clip")
        return present[0], present[-1]

    def lineage(self) -> list[tuple[int, int, int, int]]:
        """Rows ``(label, first, last, parent)`` as in the Cell Tracking Challenge's res_track.txt."""
        rows = []
        for label in sorted(self.centers):
            if any(c is not None for c in self.centers[label]):
                first, last = self.span(label)
                rows.append((label, first, last, self.parents.get(label, 0)))
        return rows


def centers_from_labels(labels: np.ndarray, ids: list[int] | None = None) -> dict[int, list[Center | None]]:
    """A click point per label and frame: the centroid, or the visible pixel nearest to it.

    The centroid of a concave or partly hidden object can fall outside it; tests and
    prompt simulation need a point that is really on the object.
    """
    num_frames, height, width = labels.shape[:3]
    if ids is None:
        ids = [int(v) for v in np.unique(labels) if v != 0]
    top = max(ids, default=0) + 1
    centers: dict[int, list[Center | None]] = {i: [None] * num_frames for i in ids}
    # one pass over the labelled pixels of all frames: key = frame * top + label
    flat = labels.reshape(-1)
    where = np.flatnonzero(flat)
    values = flat[where].astype(np.int64)
    keep = values < top
    where, values = where[keep], values[keep]
    frame, pixel = np.divmod(where, height * width)
    keys = frame * top + values
    count = np.bincount(keys, minlength=num_frames * top).reshape(num_frames, top)
    r_sum = np.bincount(keys, weights=pixel // width, minlength=num_frames * top).reshape(num_frames, top)
    c_sum = np.bincount(keys, weights=pixel % width, minlength=num_frames * top).reshape(num_frames, top)
    for i in ids:
        for t in np.nonzero(count[:, i])[0]:
            r, c = r_sum[t, i] / count[t, i], c_sum[t, i] / count[t, i]
            ri, ci = min(int(round(r)), height - 1), min(int(round(c)), width - 1)
            if labels[t, ri, ci] != i:
                rr, cc = np.nonzero(labels[t] == i)
                k = int(np.argmin((rr - r) ** 2 + (cc - c) ** 2))
                r, c = float(rr[k]), float(cc[k])
            centers[i][int(t)] = (float(r), float(c))
    return centers
