"""A stand-in for the engine that follows the ground truth, to test track-all's bookkeeping.

Track-all's own logic (seeding, new objects, ends, divisions, the lineage, the exports)
must be right whatever the model. These stand-ins take the model out: the session
propagates each object by following the true labels, and a dividing cell stays one
object covering both daughters, as SAM 2 does; the detector returns the true cells of
a frame. Quality with a real model is measured separately, with the demo model.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import numpy as np

INSIDE, OUTSIDE, ABSENT = 10.0, -10.0, -1024.0


class OracleSession:
    """The engine calls track-all uses (``add_mask``, ``add_points``, ``propagate``,
    ``remove_object``...), answered from ``labels`` (T, H, W) and ``parents``."""

    def __init__(self, labels: np.ndarray, parents: Mapping[int, int]) -> None:
        self.labels = np.asarray(labels)
        self.num_frames = int(self.labels.shape[0])
        self.frame_shape = tuple(self.labels.shape[1:3])
        self.children: dict[int, list[int]] = {}
        for daughter, mother in parents.items():
            self.children.setdefault(int(mother), []).append(int(daughter))
        self._follow: dict[int, set[int]] = {}  # object -> true labels it covers
        self._start: dict[int, tuple[int, np.ndarray]] = {}
        self.calls: list[tuple[str, int, int]] = []

    @property
    def obj_ids(self) -> list[int]:
        return sorted(self._follow)

    def _truth_under(self, frame: int, mask: np.ndarray) -> set[int]:
        values, counts = np.unique(self.labels[frame][mask], return_counts=True)
        keep = {int(v) for v, c in zip(values, counts) if v and c * 2 >= (self.labels[frame] == v).sum()}
        if not keep and len(values):
            best = [int(v) for v, c in sorted(zip(values, counts), key=lambda x: -x[1]) if v]
            keep = set(best[:1])
        return keep

    def add_mask(self, frame: int, obj_id: int, mask: np.ndarray) -> dict[int, np.ndarray]:
        mask = np.asarray(mask, bool)
        self.calls.append(("mask", frame, obj_id))
        self._follow[obj_id] = self._truth_under(frame, mask)
        self._start[obj_id] = (frame, mask)
        return {obj_id: np.where(mask, INSIDE, OUTSIDE).astype(np.float32)}

    def add_points(self, frame: int, obj_id: int, points: Any, labels: Any) -> dict[int, np.ndarray]:
        r, c = (int(round(v)) for v in points[0])
        value = int(self.labels[frame][r, c])
        return self.add_mask(frame, obj_id, self.labels[frame] == value if value else np.zeros(self.frame_shape, bool))

    def remove_object(self, obj_id: int) -> None:
        self.calls.append(("remove", -1, obj_id))
        del self._follow[obj_id]
        del self._start[obj_id]

    def _step(self, obj: int, frame: int) -> np.ndarray:
        start, mask = self._start[obj]
        if frame == start:
            return mask
        present = {int(v) for v in np.unique(self.labels[frame])}
        now: set[int] = set()
        todo = list(self._follow[obj])
        while todo:
            label = todo.pop()
            if label in present:
                now.add(label)
            else:
                todo.extend(self.children.get(label, []))
        if now:
            self._follow[obj] = now
        return np.isin(self.labels[frame], sorted(now)) if now else np.zeros(self.frame_shape, bool)

    def propagate(self, start: int | None = None, reverse: bool = False, max_frames: int | None = None,
                  obj_ids: Any = None) -> Iterator[tuple[int, dict[int, np.ndarray]]]:
        if not self._follow:
            raise ValueError("nothing to propagate")
        objs = list(self._follow) if obj_ids is None else list(obj_ids)
        start = min(self._start[o][0] for o in objs) if start is None else start
        if reverse:
            end = 0 if max_frames is None else max(start - max_frames, 0)
            order = list(range(start, end - 1, -1))
        else:
            end = self.num_frames - 1 if max_frames is None else min(start + max_frames, self.num_frames - 1)
            order = list(range(start, end + 1))

        def run() -> Iterator[tuple[int, dict[int, np.ndarray]]]:
            for frame in order:
                out = {}
                for obj in objs:
                    if obj not in self._follow or (not reverse and self._start[obj][0] > frame):
                        continue
                    if reverse:  # back in time: the same cells while they are there
                        mask = np.isin(self.labels[frame], sorted(self._follow[obj]))
                        if frame == self._start[obj][0]:
                            mask = self._start[obj][1]
                    else:
                        mask = self._step(obj, frame)
                    out[obj] = np.where(mask, INSIDE, OUTSIDE if mask.any() else ABSENT).astype(np.float32)
                yield frame, out

        return run()


class OracleDetector:
    """The true cells of a frame as a labels plane (what a perfect detector would find)."""

    def __init__(self, labels: np.ndarray, min_size: int = 0) -> None:
        self.labels = np.asarray(labels)
        self.min_size = min_size
        self.calls = 0

    def __call__(self, frame: int) -> np.ndarray:
        self.calls += 1
        plane = self.labels[frame]
        out = np.zeros(plane.shape, np.uint32)
        for new, value in enumerate(v for v in np.unique(plane) if v):
            mask = plane == value
            if mask.sum() >= self.min_size:
                out[mask] = new + 1
        return out
