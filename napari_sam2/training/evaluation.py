"""Evaluation of a model on videos with ground truth, with one fixed protocol.

Protocol: every object gets one positive click at its most interior pixel (farthest
from the background, first in raster order on ties) on the first frame it appears
on; a :class:`~napari_sam2.model.VideoSession` then propagates forward from the
earliest click. Each frame's predictions become one label image as the plugin writes
them (the object with the highest logit wins a pixel claimed by several; an object is
not drawn before its clicked frame). Per object, J and F are averaged over the frames
from its clicked frame to the end (``max_frames`` caps it); the report gives them per
object and their means over objects, and J&F = (J + F) / 2. For Cell Tracking
Challenge truth, SEG is computed on the frames that have SEG masks.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..model.sam2 import Sam2
from .data import SyntheticData, TrainingData, Video, VideoData
from .errors import TrainingError
from .metrics import boundary_f, jaccard, seg_matches

__all__ = ["EvalSet", "ObjectScore", "EvalReport", "eval_set_from", "evaluate", "interior_point", "PROTOCOL"]

PROTOCOL = (
    "one positive click at each object's most interior pixel on its first frame, "
    "then forward propagation; J and F (DAVIS, boundary tolerance 0.008 of the diagonal) "
    "per object over its frames from the click on, averaged over objects"
)


@dataclass
class EvalSet:
    """Videos to evaluate on (built once, so every evaluation sees the same pixels)."""

    videos: list[Video]


def eval_set_from(
    data: TrainingData | Sequence[Video], seeds: Sequence[int] | None = None
) -> EvalSet:
    """An :class:`EvalSet` from training data: its videos, or generated clips for ``seeds``."""
    if isinstance(data, EvalSet):
        return data
    if isinstance(data, SyntheticData):
        chosen = seeds if seeds is not None else data.seeds
        if chosen is None:
            raise TrainingError("give the seeds of the synthetic clips to evaluate on (held out from training)")
        return EvalSet([data.make(int(s)) for s in chosen])
    if isinstance(data, VideoData):
        return EvalSet(list(data.videos))
    videos = list(data)  # type: ignore[arg-type]
    if not all(isinstance(v, Video) for v in videos):
        raise TrainingError("evaluation needs videos with ground truth")
    return EvalSet(videos)


@dataclass
class ObjectScore:
    video: str
    obj_id: int
    first_frame: int
    frames: int
    J: float
    F: float

    @property
    def JF(self) -> float:
        return (self.J + self.F) / 2


@dataclass
class EvalReport:
    objects: list[ObjectScore]
    seg: float | None = None
    protocol: str = PROTOCOL
    extra: dict[str, Any] = field(default_factory=dict)

    def _mean(self, attr: str) -> float:
        return float(np.mean([getattr(o, attr) for o in self.objects])) if self.objects else float("nan")

    @property
    def J(self) -> float:
        return self._mean("J")

    @property
    def F(self) -> float:
        return self._mean("F")

    @property
    def JF(self) -> float:
        return self._mean("JF")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"J": self.J, "F": self.F, "J&F": self.JF, "objects": len(self.objects), "protocol": self.protocol}
        if self.seg is not None:
            out["SEG"] = self.seg
        out["per_object"] = [
            {"video": o.video, "object": o.obj_id, "first_frame": o.first_frame, "frames": o.frames,
             "J": o.J, "F": o.F, "J&F": o.JF}
            for o in self.objects
        ]
        return out

    def table(self) -> str:
        """A plain-text table: one line per object, then the means."""
        lines = [f"{'video':<24} {'object':>6} {'frames':>6} {'J':>6} {'F':>6} {'J&F':>6}"]
        for o in self.objects:
            lines.append(f"{o.video[:24]:<24} {o.obj_id:>6} {o.frames:>6} {o.J:6.3f} {o.F:6.3f} {o.JF:6.3f}")
        lines.append(f"{'mean':<24} {len(self.objects):>6} {'':>6} {self.J:6.3f} {self.F:6.3f} {self.JF:6.3f}")
        if self.seg is not None:
            lines.append(f"CTC SEG: {self.seg:.3f}")
        return "\n".join(lines)


def interior_point(mask: np.ndarray) -> tuple[int, int]:
    """(row, col) of the pixel farthest (chessboard distance) from the background.

    Computed by repeated 3x3 erosion: the last surviving pixels are the deepest; the
    first of them in raster order is returned.
    """
    current = np.asarray(mask, bool)
    if not current.any():
        raise ValueError("empty mask")
    while True:
        padded = np.pad(current, 1, constant_values=False)
        eroded = current.copy()
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                eroded &= padded[1 + dr : 1 + dr + current.shape[0], 1 + dc : 1 + dc + current.shape[1]]
        if not eroded.any():
            r, c = np.argwhere(current)[0]
            return int(r), int(c)
        current = eroded


def _evaluate_video(
    model: Sam2, video: Video, max_frames: int | None, cancel: Callable[[], bool]
) -> tuple[list[ObjectScore], list[float]]:
    from ..model.video import VideoSession

    first: dict[int, int] = {}
    for t, ids in enumerate(video.objects):
        for i in ids.tolist():
            first.setdefault(int(i), t)
    if not first:
        return [], []
    start = min(first.values())
    end = video.num_frames if max_frames is None else min(video.num_frames, start + max_frames)
    first = {o: f for o, f in first.items() if f < end}
    j_sum = {o: 0.0 for o in first}
    f_sum = {o: 0.0 for o in first}
    count = {o: 0 for o in first}
    seg_scores: list[float] = []
    seg_truth = video.seg_truth or {}
    with VideoSession(model, video.image, contrast_limits=video.contrast_limits) as session:
        for obj, t in first.items():
            r, c = interior_point(video.label_frame(t) == obj)
            session.add_points(t, obj, [[r, c]], [1])
        for t, outputs in session.propagate(start=start, max_frames=end - start - 1):
            if cancel():
                break
            truth = video.label_frame(t)
            ids = [o for o in outputs if first.get(o, end) <= t]
            pred = np.zeros(truth.shape, dtype=np.int64)
            if ids:
                stack = np.stack([outputs[o] for o in ids])
                best = stack.argmax(0)
                pred = np.where(stack.max(0) > 0, np.asarray(ids)[best], 0)
            for o in ids:
                j_sum[o] += jaccard(pred == o, truth == o)
                f_sum[o] += boundary_f(pred == o, truth == o)
                count[o] += 1
            if t in seg_truth:
                import tifffile

                seg_scores += seg_matches(pred, tifffile.imread(seg_truth[t]))
    scores = [
        ObjectScore(video.name, o, first[o], count[o], j_sum[o] / count[o], f_sum[o] / count[o])
        for o in sorted(first)
        if count[o]
    ]
    return scores, seg_scores


def evaluate(
    model: Sam2,
    data: EvalSet | TrainingData | Sequence[Video],
    *,
    seeds: Sequence[int] | None = None,
    max_frames: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | threading.Event | None = None,
) -> EvalReport:
    """J, F and J&F of ``model`` on videos with ground truth (see the module's protocol).

    ``seeds`` select held-out clips of a synthetic source. ``progress(done, total)`` is
    called per video; ``cancel`` stops early (the report covers what was done).
    """
    if not isinstance(model, Sam2):
        raise TrainingError(f"the model must be a SAM 2 model built with build_sam2, got {type(model).__name__}")
    evalset = eval_set_from(data, seeds)  # type: ignore[arg-type]
    if isinstance(cancel, threading.Event):
        event = cancel
        stop: Callable[[], bool] = event.is_set
    else:
        stop = cancel or (lambda: False)
    was_training = model.training
    model.eval()
    objects: list[ObjectScore] = []
    seg: list[float] = []
    has_seg = False
    try:
        with torch.inference_mode():
            for i, video in enumerate(evalset.videos):
                if stop():
                    break
                scores, seg_scores = _evaluate_video(model, video, max_frames, stop)
                objects += scores
                seg += seg_scores
                has_seg = has_seg or bool(video.seg_truth)
                if progress is not None:
                    progress(i + 1, len(evalset.videos))
    finally:
        model.train(was_training)
    return EvalReport(objects, float(np.mean(seg)) if has_seg and seg else None)
