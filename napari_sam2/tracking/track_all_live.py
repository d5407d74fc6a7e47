"""Track-all from an interactive viewer: what the layers hand to :func:`~.track_all.track_all`,
which frames it would replace, and a run that reports each frame as it is written.

The widget's masks layer already holds objects the user prompted. They keep their ids and
go on being tracked with the seeds (their prompts are passed along, and an object on the
start frame without a prompt there starts from its mask), and seeds or detections that
are one of them are not tracked twice. Work is split as in :mod:`.interactive`:
:func:`plan_track_all` and :func:`frames_to_replace` on the GUI thread,
:func:`run_track_all` on a worker, :func:`keep_locked` on the GUI thread for each frame.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import numpy as np

from .axes import TrackGeometry
from .errors import UsageError
from .lineage_view import plane_centroids
from .track_all import TrackAllResult, TrackAllSettings, seed_plane, track_all

if TYPE_CHECKING:
    from ..io.prompts import PromptSet

__all__ = [
    "TrackAllPlan",
    "seeds_from_layer",
    "drop_covered",
    "plan_track_all",
    "frames_to_replace",
    "keep_locked",
    "run_track_all",
]

Emit = Callable[[tuple], None]
"""Receives ``("frame", frame, plane, centroid rows)`` and ``("stage", stage, done, total)``."""


def seeds_from_layer(data: Any, geometry: TrackGeometry, frame: int) -> np.ndarray:
    """The seed plane a labels layer gives for ``frame``: a 2D layer is the plane; a layer
    shaped like the image gives the tracked slice's plane; a (T, H, W) one its plane."""
    shape = tuple(int(s) for s in data.shape)
    height, width = geometry.frame_shape
    if len(shape) == 2:
        plane = data
    elif shape == tuple(geometry.shape):
        plane = data[geometry.labels_index(frame)]
    elif len(shape) == 3 and shape[1:] == (height, width) and shape[0] == geometry.num_frames:
        plane = data[frame]
    else:
        raise UsageError(
            f"the seed labels have shape {shape}; they need one {height}x{width} plane, one per frame "
            f"({geometry.num_frames}), or the image's shape {tuple(geometry.shape)}",
            option="seed-labels",
        )
    return np.array(plane, copy=True)


def drop_covered(plane: np.ndarray, covered: np.ndarray, share: float) -> np.ndarray:
    """``plane`` without the labels that ``covered`` holds over more than ``share`` of
    their area (a seed or detection of an object the user already has)."""
    plane = np.array(plane, copy=True)
    nonzero = plane != 0
    if not nonzero.any() or not covered.any():
        return plane
    ids, inverse, area = np.unique(plane[nonzero], return_inverse=True, return_counts=True)
    inside = np.bincount(inverse, weights=covered[nonzero].astype(float), minlength=ids.size)
    gone = ids[inside > share * area]
    if gone.size:
        plane[np.isin(plane, gone)] = 0
    return plane


@dataclass
class TrackAllPlan:
    """One track-all request, made on the GUI thread from the layers."""

    geometry: TrackGeometry
    frames: Any  # the slice's (T, H, W[, C]) frames, read lazily
    contrast_limits: tuple[float, float] | None
    first: int
    last: int
    settings: TrackAllSettings
    dtype: np.dtype
    automatic: bool
    seeds: np.ndarray | None = None
    prompts: "PromptSet | None" = None
    carried: np.ndarray | None = None  # pixels of the user's objects on the first frame (seeds there are theirs)
    allowed: dict[int, set[int]] = field(default_factory=dict)  # frame -> ids it may hold already

    @property
    def total(self) -> int:
        return self.last - self.first + 1


def plan_track_all(
    geometry: TrackGeometry,
    frames: Any,
    contrast_limits: tuple[float, float] | None,
    first: int,
    last: int,
    *,
    output: np.ndarray,
    seeds: np.ndarray | None,
    seeds_are_output: bool = False,
    prompts: "PromptSet | None" = None,
    settings: TrackAllSettings = TrackAllSettings(),
    dtype: Any = np.uint16,
) -> TrackAllPlan:
    """Seeds and prompts for a run from ``first`` to ``last``.

    ``output``: the masks layer's plane on ``first``; ``seeds``: the seed plane (None:
    automatic detection); ``seeds_are_output``: the seeds are the masks layer itself.
    Prompted objects on ``first`` are carried on (a mask prompt from ``output`` where they
    have no prompt there); seed labels that are theirs are dropped. Raises
    :class:`UsageError` with a message for the user when the request cannot run.
    """
    n = geometry.num_frames
    if not 0 <= first <= last < n:
        raise UsageError(f"frames {first}..{last} are not within the {n} frames", option="frames")
    output = np.asarray(output)
    prompts = copy.deepcopy(prompts) if prompts is not None else None
    prompted = {obj.id for obj in prompts.objects} if prompts is not None else set()
    allowed: dict[int, set[int]] = {}
    if prompts is not None:
        for obj, prompt in prompts.iter_prompts():
            allowed.setdefault(prompt.frame, set()).add(obj.id)
    present = set(np.unique(output).tolist()) - {0}
    carried_ids = sorted(prompted & present)
    if prompts is not None:
        for obj_id in carried_ids:
            if first not in {p.frame for p in prompts.object(obj_id).prompts}:
                prompts.set_prompt(obj_id, first, mask=output == obj_id)
    carried = np.isin(output, carried_ids) if carried_ids else None
    allowed.setdefault(first, set()).update(carried_ids)

    plan_seeds: np.ndarray | None = None
    if seeds is not None:
        seeds = np.asarray(seeds)
        if seeds_are_output:
            plan_seeds = np.where(np.isin(seeds, sorted(prompted)), 0, seeds) if prompted else np.array(seeds)
            allowed[first] |= set(np.unique(seeds).tolist()) - {0}
        elif carried is not None and tuple(seeds.shape) == tuple(carried.shape):
            plan_seeds = drop_covered(seeds, carried, settings.max_covered)
        else:
            plan_seeds = np.array(seeds)
        if plan_seeds.size and plan_seeds.any():
            clash = sorted((set(np.unique(plan_seeds).tolist()) - {0}) & prompted)
            if clash:
                shown = ", ".join(map(str, clash[:10])) + (" ..." if len(clash) > 10 else "")
                raise UsageError(
                    f"seed labels {shown} are also ids of objects you prompted elsewhere; "
                    "relabel the seeds or delete those objects",
                    option="seed-labels",
                )
            plan_seeds = seed_plane(plan_seeds, geometry.frame_shape, prompted)
        elif seeds.any() and carried_ids:
            plan_seeds = None  # every seed is an object the user prompted: tracked from its prompts
        else:
            raise UsageError(f"the seed labels are empty on frame {first}: no pixel has a label above 0", option="seed-labels")
    has_prompts = prompts is not None and any(first <= p.frame <= last for _, p in prompts.iter_prompts())
    if seeds is None:
        pass  # automatic: the detector seeds the first frame
    elif plan_seeds is None and not has_prompts:
        raise UsageError("nothing to track: give seed labels, automatic seeding or prompts")
    return TrackAllPlan(
        geometry=geometry,
        frames=frames,
        contrast_limits=contrast_limits,
        first=first,
        last=last,
        settings=settings,
        dtype=np.dtype(dtype),
        automatic=seeds is None,
        seeds=plan_seeds,
        prompts=prompts if prompts is not None and prompts.objects else None,
        carried=carried,
        allowed=allowed,
    )


def frames_to_replace(planes: Any, first: int, last: int, allowed: Mapping[int, Iterable[int]] | None = None) -> list[int]:
    """Frames of ``first..last`` that hold labels a run would replace (read one at a time).

    ``allowed``: per frame, the ids that may be there already (objects prompted there,
    whose masks the run makes again, and the seeds on the first frame).
    """
    allowed = allowed or {}
    out = []
    for frame in range(first, last + 1):
        ids = set(np.unique(planes[frame]).tolist()) - {0}
        if ids - {int(i) for i in allowed.get(frame, ())}:
            out.append(frame)
    return out


def keep_locked(current: np.ndarray, proposal: np.ndarray, locked: Iterable[int]) -> np.ndarray:
    """The plane to write: ``proposal``, except that objects painted by hand on this frame
    (``locked``) stay exactly as painted."""
    locked = np.asarray(sorted({int(i) for i in locked}), dtype=np.int64)
    out = np.array(proposal, dtype=np.asarray(current).dtype, copy=True)
    if locked.size == 0:
        return out
    out[np.isin(out, locked)] = 0
    mine = np.isin(current, locked)
    out[mine] = np.asarray(current)[mine]
    return out


class _Reporter:
    """The ``out`` of :func:`track_all`: frames go to a temporary on-disk store (track-all
    reads recent frames back to revise them) and each write, first or revised, is handed
    to ``emit`` with its centroids, computed here on the worker."""

    def __init__(self, emit: Emit, first: int, dtype: np.dtype, count: int, frame_shape: tuple[int, int]) -> None:
        from .stores import LabelStore

        self.emit = emit
        self.first = first
        self.dtype = np.dtype(dtype)
        self.store = LabelStore((count, *frame_shape), self.dtype)
        self.shape = tuple(self.store.array.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int) -> np.ndarray:
        return np.asarray(self.store.array[int(index)])

    def __setitem__(self, index: int, plane: np.ndarray) -> None:
        frame = self.first + int(index)
        plane = np.array(plane, self.dtype, copy=True)
        self.store.array[int(index)] = plane
        self.emit(("frame", frame, plane, plane_centroids(plane, frame)))

    def close(self) -> None:
        self.store.close()


class _StartFrameDetector:
    """The detector, except on the first frame when the seeds are labels: those are the
    objects there (all the user's own, when every seed was dropped as one of theirs).
    With automatic seeds, track-all itself skips detections of the user's objects."""

    def __init__(self, detector: Callable[[int], np.ndarray], plan: TrackAllPlan) -> None:
        self.detector = detector
        self.plan = plan

    def __call__(self, frame: int) -> np.ndarray:
        if frame == self.plan.first and not self.plan.automatic:
            return np.zeros(self.plan.geometry.frame_shape, np.uint32)
        return np.asarray(self.detector(frame))


def run_track_all(plan: TrackAllPlan, model: Any, emit: Emit, cancel: Callable[[], bool] | None = None,
                  detector: Callable[[int], np.ndarray] | None = None) -> TrackAllResult:
    """Worker thread: a fresh engine session on the plan's frames, track-all, each frame
    handed to ``emit`` as it is written. ``detector`` replaces automatic mask generation
    (tests). The session is closed at the end, also when cancelled or failing."""
    from ..model import VideoSession

    session = VideoSession(model, plan.frames, contrast_limits=plan.contrast_limits)
    closing: list[Any] = [session]
    try:
        wanted = plan.automatic or plan.settings.redetect_every > 0
        if wanted and detector is None:
            from .track_all import AutomaticDetector

            detector = AutomaticDetector(model, session.frames, plan.settings, contrast_limits=plan.contrast_limits)
        found = _StartFrameDetector(detector, plan) if (wanted and detector is not None) else None
        out = _Reporter(emit, plan.first, plan.dtype, plan.total, plan.geometry.frame_shape)
        closing.append(out)
        return track_all(
            session,
            out,
            plan.first,
            plan.last,
            seeds=plan.seeds,
            detector=found,
            settings=plan.settings,
            prompts=plan.prompts,
            progress=lambda stage, done, total: emit(("stage", stage, done, total)),
            cancel=cancel,
        )
    finally:
        for thing in reversed(closing):
            thing.close()
