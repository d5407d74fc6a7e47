"""An engine session driven by edits: what the engine was told, what changed, what to send.

The widget's layers are the single source of truth for prompts. After any edit it reads
them into ``{(frame, object): FramePrompt}``; :class:`LiveSession` compares that with
what the engine was last told and sends only the pairs that changed. Work is split so
the engine never runs on the GUI thread and nothing here touches a layer:

``plan_*`` (GUI thread) -> ``run_*`` (worker thread) -> ``accept_sync`` (GUI thread).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from .axes import TrackGeometry
from .labels import logits_to_labels
from .plan import Pass, frames_covered, plan_passes

__all__ = ["FramePrompt", "PromptKey", "SyncPlan", "SyncResult", "PropagationPlan", "LiveSession", "NOTHING_TO_PROPAGATE"]

PromptKey = tuple[int, int]  # (frame, object)
NOTHING_TO_PROPAGATE = "Nothing to propagate yet: click on an object, draw a box or paint a mask first."


@dataclass(frozen=True)
class FramePrompt:
    """Everything one object is prompted with on one frame (comparable, hashable).

    ``painted`` is 0 for none, else the edit generation of a hand-painted mask (so a
    repainted mask compares unequal and is sent again).
    """

    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None
    painted: int = 0

    @property
    def empty(self) -> bool:
        return not self.points and self.box is None and not self.painted


@dataclass
class SyncPlan:
    """Prompt changes to send to the engine (made on the GUI thread)."""

    geometry: TrackGeometry
    session_key: tuple
    session: Any  # None: a new session must be made from ``frames``
    frames: Any
    contrast_limits: tuple[float, float] | None
    changes: list[tuple[PromptKey, FramePrompt]]
    masks: dict[PromptKey, np.ndarray]
    dtype: np.dtype


@dataclass
class SyncResult:
    session: Any
    planes: dict[PromptKey, np.ndarray | None]  # None: prompts cleared, remove the mask
    applied: list[tuple[PromptKey, FramePrompt]]
    errors: list[str] = field(default_factory=list)


@dataclass
class PropagationPlan:
    """One propagation request: passes over the frames and how many frames they yield."""

    geometry: TrackGeometry
    session: Any
    passes: list[Pass]
    total: int
    dtype: np.dtype
    objects: tuple[int, ...]


class LiveSession:
    """The model, its video session for one slice, and the prompts it has been told."""

    def __init__(self) -> None:
        self.model: Any = None
        self.session: Any = None
        self.session_key: tuple | None = None
        self.synced: dict[PromptKey, FramePrompt] = {}

    def reset(self) -> None:
        """Forget the engine state; prompts are sent again on the next sync."""
        _close(self.session)
        self.session = None
        self.session_key = None
        self.synced = {}

    def set_model(self, model: Any) -> None:
        self.model = model
        self.reset()

    def remove_object(self, obj: int) -> None:
        """Drop an object from the engine (or the whole session if that fails)."""
        if self.session is not None and obj in getattr(self.session, "obj_ids", ()):
            try:
                self.session.remove_object(obj)
            except Exception:
                self.reset()
        self.synced = {k: v for k, v in self.synced.items() if k[1] != obj}

    # ------------------------------------------------------------------ sync
    def plan_sync(
        self,
        geometry: TrackGeometry,
        prompts: dict[PromptKey, FramePrompt],
        frames: Any,
        contrast_limits: tuple[float, float] | None,
        painted_mask: Any,
        dtype: Any,
    ) -> SyncPlan | None:
        """The prompt changes the engine has not seen yet (None: nothing to do).

        ``painted_mask(frame, obj)`` returns the hand-painted mask of a changed
        painted prompt; ``frames`` the (T, H, W[, C]) frames for a new session.
        """
        if self.model is None:
            raise RuntimeError("no model loaded")
        key = (geometry.key, contrast_limits, id(self.model))
        fresh = self.session is None or self.session_key != key
        synced = {} if fresh else self.synced
        changes = [
            (k, prompts.get(k, FramePrompt()))
            for k in sorted(set(prompts) | set(synced))
            if prompts.get(k, FramePrompt()) != synced.get(k, FramePrompt())
        ]
        if not changes and not fresh:
            return None
        if not changes and not prompts:
            return None  # nothing prompted yet: no need for a session
        masks = {k: painted_mask(*k) for k, prompt in changes if prompt.painted}
        return SyncPlan(geometry, key, None if fresh else self.session, frames, contrast_limits, changes, masks, np.dtype(dtype))

    def run_sync(self, plan: SyncPlan) -> SyncResult:
        """Worker thread: make the session if needed and send each change to the engine."""
        session = plan.session
        if session is None:
            from ..model import VideoSession

            session = VideoSession(self.model, plan.frames, contrast_limits=plan.contrast_limits)
        result = SyncResult(session, {}, [])
        for key, prompt in plan.changes:
            frame, obj = key
            try:
                out = _send(session, frame, obj, prompt, plan.masks.get(key))
            except ValueError as exc:
                # remembered as sent, so one bad prompt is reported once, not on every edit
                result.errors.append(str(exc))
                result.applied.append((key, prompt))
                continue
            if out is None:
                result.planes[key] = None
            elif not prompt.painted and obj in out:
                result.planes[key] = logits_to_labels({obj: out[obj]}, dtype=plan.dtype)
            result.applied.append((key, prompt))
        return result

    def accept_sync(self, plan: SyncPlan, result: SyncResult) -> None:
        """GUI thread: remember what the engine now knows."""
        if plan.session is None:
            if self.session is not None and self.session is not result.session:
                _close(self.session)
            self.synced = {}
        self.session = result.session
        self.session_key = plan.session_key
        for key, prompt in result.applied:
            if prompt.empty:
                self.synced.pop(key, None)
            else:
                self.synced[key] = prompt

    # ------------------------------------------------------------------ propagation
    def plan_propagation(
        self, geometry: TrackGeometry, direction: str, first: int | None, last: int | None, dtype: Any
    ) -> PropagationPlan:
        """Passes for ``direction`` over frames first..last (default: all); after a sync."""
        if self.session is None or not self.synced:
            raise ValueError(NOTHING_TO_PROPAGATE)
        n = geometry.num_frames
        lo = 0 if first is None else int(np.clip(first, 0, n - 1))
        hi = n - 1 if last is None else int(np.clip(last, 0, n - 1))
        lo, hi = min(lo, hi), max(lo, hi)
        passes = plan_passes([f for f, _ in self.synced], lo, hi, direction)
        objects = tuple(sorted({o for _, o in self.synced}))
        return PropagationPlan(geometry, self.session, passes, frames_covered(passes), np.dtype(dtype), objects)

    @staticmethod
    def run_propagation(plan: PropagationPlan) -> Iterator[tuple[int, np.ndarray, tuple[int, ...]]]:
        """Worker thread: yields (frame, proposed plane, objects) as frames finish.

        Closing the generator (Cancel) closes the engine's one; finished frames stay.
        """
        for start, reverse, max_frames in plan.passes:
            p = Pass(start, reverse, max_frames)
            frames = plan.session.propagate(start=start, reverse=reverse, max_frames=max_frames)
            try:
                for frame, out in frames:
                    if not p.first <= frame <= p.last:
                        break
                    plane = logits_to_labels(out, plan.geometry.frame_shape, plan.dtype)
                    yield int(frame), plane, tuple(sorted(out))
            finally:
                frames.close()


def _send(session: Any, frame: int, obj: int, prompt: FramePrompt, mask: np.ndarray | None) -> Any:
    """One prompt to the engine; None when the prompts were cleared."""
    if prompt.painted:
        return session.add_mask(frame, obj, mask)
    points = [list(p) for p in prompt.points]
    if prompt.box is not None:
        return session.add_box(frame, obj, box=prompt.box, points=points or None, labels=list(prompt.labels) or None)
    if prompt.points:
        return session.add_points(frame, obj, points=points, labels=list(prompt.labels))
    if obj in session.obj_ids:
        session.clear_prompts(frame, obj)
    return None


def _close(session: Any) -> None:
    close = getattr(session, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # a session that cannot close cleanly is dropped anyway
            pass
