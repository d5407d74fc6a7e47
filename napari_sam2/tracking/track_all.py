"""Track everything: every object of a stack, new objects, divisions and a lineage.

SAM 2 follows the objects it is told about. Track-all adds what a time-lapse needs:

- **Seeds** on the first frame: a labels image (Cellpose, StarDist, painted by hand;
  one object per label, the label is the object id) or automatic mask generation
  (:class:`AutomaticDetector`), plus any prompts the user gave.
- **All objects propagate together**: the engine batches objects that share a memory
  layout (those seeded on the same frame), so 200 seeds cost one batched step per frame.
- **New objects**: every ``redetect_every`` frames, on the last frame and on frames
  asked for, the detector runs again; a detection that tracked masks do not already
  cover becomes a new object, tracked back over the frames since the last search.
- **Ends**: an object smaller than ``min_size`` pixels on ``end_after`` frames in a row
  ends on the last frame it was seen, and is no longer computed.
- **Divisions**: a tracked mask that splits into two parts of real size, or a detection
  appearing beside an object that has just shrunk, ends the mother on the frame before
  and starts two daughters whose parent is the mother.

Tracking runs forward from the seed frame. Everything is written into a label array one
frame at a time, so memory does not grow with the number of frames; the lineage and
the mask each new track started from are kept to save a session that can be replayed.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import numpy as np
from scipy import ndimage

from ..io.lineage import Lineage, Track
from .errors import UsageError
from .exports import Progress
from .labels import logits_to_labels

if TYPE_CHECKING:
    from ..io.prompts import Prompt, PromptSet

__all__ = [
    "AUTOMATIC_THRESHOLDS",
    "Detector",
    "TrackAllSettings",
    "TrackAllResult",
    "AutomaticDetector",
    "seed_plane",
    "non_overlapping",
    "split_parts",
    "track_all",
]

Detector = Callable[[int], np.ndarray]
"""Frame index -> labels plane (H, W) of the objects found there, without overlaps (0 = none)."""

_MAX_ID = int(np.iinfo(np.uint16).max)  # CTC masks are uint16

#: detection thresholds for the official weights (those of automatic mask generation)
AUTOMATIC_THRESHOLDS = {"pred_iou_thresh": 0.8, "stability_score_thresh": 0.9}


@dataclass(frozen=True)
class TrackAllSettings:
    """How track-all finds, ends and divides objects. Areas are pixels of the original frames.

    ``redetect_every``: frames between searches for new objects (0: never).
    ``min_size``: smaller detections, division parts and objects are ignored; an object
    below it counts as absent. ``end_after``: absent frames in a row that end an object.
    ``max_covered``: a detection already covered by tracked masks over more than this
    share of its area is not new. ``divisions``: look for divisions at all.
    ``division_share``: each part of a split must hold this share of the mother's area.
    ``division_shrink``/``division_gap``: a new detection within ``division_gap`` pixels
    of an object whose area fell by ``division_shrink`` is its sister.
    Automatic detection: ``points_per_side``, ``points_per_batch``, ``pred_iou_thresh``,
    ``stability_score_thresh``, ``crop_n_layers`` as in automatic mask generation, and
    ``max_area_share``: masks over this share of the frame are background, not objects.
    The two thresholds left at ``None`` are the model's own (see :meth:`for_model`): a
    model's predicted IoU and stability are calibrated differently for each set of weights.
    """

    redetect_every: int = 5
    min_size: int = 20
    end_after: int = 3
    max_covered: float = 0.3
    divisions: bool = True
    division_share: float = 0.25
    division_shrink: float = 0.3
    division_gap: int = 3
    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float | None = None
    stability_score_thresh: float | None = None
    crop_n_layers: int = 0
    max_area_share: float = 0.25

    def __post_init__(self) -> None:
        def need(ok: bool, option: str, what: str, value: Any) -> None:
            if not ok:
                raise UsageError(f"{option.replace('_', '-')} must be {what}, got {value!r}", option=option.replace("_", "-"))

        for name in ("redetect_every", "min_size", "division_gap", "crop_n_layers"):
            value = getattr(self, name)
            need(isinstance(value, (int, np.integer)) and value >= 0, name, "an integer >= 0", value)
        for name in ("end_after", "points_per_side", "points_per_batch"):
            value = getattr(self, name)
            need(isinstance(value, (int, np.integer)) and value >= 1, name, "an integer >= 1", value)
        for name in ("max_covered", "division_share", "division_shrink", "pred_iou_thresh", "stability_score_thresh"):
            value = getattr(self, name)
            if value is None and name in AUTOMATIC_THRESHOLDS:
                continue
            need(isinstance(value, (int, float, np.number)) and 0.0 <= float(value) <= 1.0, name, "between 0 and 1", value)
        need(0.0 < float(self.max_area_share) <= 1.0, "max_area_share", "above 0 and at most 1", self.max_area_share)

    def for_model(self, model: Any) -> "TrackAllSettings":
        """These settings with the detection thresholds left at ``None`` filled in: the
        model's own (``model.automatic_thresholds``, set for the bundled demo model), else
        the values that suit the official weights."""
        own = dict(getattr(model, "automatic_thresholds", None) or {})
        chosen = {name: own.get(name, default) for name, default in AUTOMATIC_THRESHOLDS.items() if getattr(self, name) is None}
        return replace(self, **chosen) if chosen else self


@dataclass
class TrackAllResult:
    """What :func:`track_all` did. ``starts``: the mask each track made here began from,
    as ``{id: (frame, COCO RLE)}`` (tracks from the user's prompts keep their prompts)."""

    lineage: Lineage
    frames: tuple[int, int]
    frames_tracked: int = 0
    seeded: int = 0
    added: int = 0
    divisions: int = 0
    ended: int = 0
    detections: int = 0
    seconds_seeding: float = 0.0
    seconds_detecting: float = 0.0
    seconds_total: float = 0.0
    cancelled: bool = False
    starts: dict[int, tuple[int, dict]] = field(default_factory=dict)

    @property
    def seconds_per_detection(self) -> float:
        return self.seconds_detecting / self.detections if self.detections else 0.0

    def session_prompts(self, base: "PromptSet | None" = None) -> "PromptSet":
        """A prompt/session file that replays this run: the user's prompts (``base``),
        a mask prompt on the first frame of every track made here, and the lineage."""
        import copy

        from ..io.prompts import PromptSet
        from ..io.rle import decode_mask

        prompts = copy.deepcopy(base) if base is not None else PromptSet()
        for obj_id, (frame, rle) in sorted(self.starts.items()):
            prompts.set_prompt(obj_id, frame, mask=decode_mask(rle))
        prompts.lineage = self.lineage.copy()
        return prompts


# ---------------------------------------------------------------------- seeds


def seed_plane(labels: Any, frame_shape: tuple[int, int], taken: Iterable[int] = ()) -> np.ndarray:
    """The checked seed labels of one frame: one object per label value above 0.

    ``taken``: object ids already used (e.g. by a prompt file); a seed label equal to
    one of them is an error, since both would become the same object.
    """
    arr = np.asarray(labels)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise UsageError(f"seed labels must be one (H, W) labels image, got an array of shape {arr.shape}", option="seed-labels")
    if tuple(arr.shape) != tuple(frame_shape):
        raise UsageError(
            f"the seed labels are {arr.shape[0]}x{arr.shape[1]} pixels, but the frames are "
            f"{frame_shape[0]}x{frame_shape[1]}",
            option="seed-labels",
        )
    if arr.dtype.kind not in "iub":
        raise UsageError(f"seed labels must be an integer labels image, got dtype {arr.dtype}", option="seed-labels")
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    if arr.size and int(arr.min()) < 0:
        raise UsageError("seed labels must not be negative", option="seed-labels")
    ids = np.unique(arr)
    ids = ids[ids > 0]
    if ids.size == 0:
        raise UsageError("the seed labels image is empty: no pixel has a label above 0", option="seed-labels")
    if int(ids[-1]) > _MAX_ID:
        raise UsageError(f"seed label {int(ids[-1])} is above {_MAX_ID}, the largest track id", option="seed-labels")
    if not _looks_like_labels(arr):
        raise UsageError(
            "the seed labels do not look like a labels image: neighbouring pixels rarely share a label. "
            "Is it the image itself? Give a segmentation (one integer per object, 0 = background)",
            option="seed-labels",
        )
    clash = sorted(set(ids.tolist()) & {int(i) for i in taken})
    if clash:
        shown = ", ".join(map(str, clash[:10])) + (" ..." if len(clash) > 10 else "")
        raise UsageError(
            f"seed labels {shown} are also object ids of the prompt file; relabel the seeds or the prompts",
            option="seed-labels",
        )
    return arr.astype(np.uint32, copy=False)


def _looks_like_labels(plane: np.ndarray) -> bool:
    """Objects are regions: in a labels image two neighbouring object pixels mostly share
    their label (however small the objects), while in intensities (a wrong file)
    neighbours rarely have equal values."""
    same = total = 0
    for a, b in ((plane[1:, :], plane[:-1, :]), (plane[:, 1:], plane[:, :-1])):
        inside = (a > 0) & (b > 0)
        total += int(inside.sum())
        same += int((inside & (a == b)).sum())
    return total == 0 or same >= 0.5 * total


def non_overlapping(masks: np.ndarray, min_size: int, max_area: int | None = None,
                    scores: np.ndarray | None = None) -> np.ndarray:
    """One labels plane from overlapping candidate masks ``(N, H, W)``.

    With ``scores`` (the model's confidence in each mask), the most confident masks claim
    their pixels first: a whole cell beats the fragments of it a weaker model also
    offers, and single cells beat a mask of their cluster unless the model trusts the
    cluster more. Without scores, small masks claim first (single cells over clusters).
    A mask keeps its label only if at least half of it (and ``min_size`` pixels) is
    still free. Masks larger than ``max_area`` are background and dropped.
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    plane = np.zeros(masks.shape[1:], np.uint32)
    areas = masks.reshape(len(masks), plane.size).sum(axis=1)  # -1 fails with no masks
    if scores is None:
        order = np.argsort(areas, kind="stable")
    else:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if scores.shape != (len(masks),):
            raise ValueError(f"scores must hold one value per mask ({len(masks)}), got shape {scores.shape}")
        order = np.lexsort((areas, -scores))  # most confident first; the smaller on a tie
    label = 0
    for i in order:
        area = int(areas[i])
        if area < max(min_size, 1) or (max_area is not None and area > max_area):
            continue
        free = masks[i] & (plane == 0)
        kept = int(free.sum())
        if kept >= max(min_size, 1) and kept * 2 >= area:
            label += 1
            plane[free] = label
    return plane


def split_parts(mask: np.ndarray, min_size: int, share: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The two largest connected parts of ``mask`` if both are real (``min_size`` pixels
    and ``share`` of the whole), else None."""
    parts, count = ndimage.label(mask)
    if count < 2:
        return None
    sizes = np.bincount(parts.ravel())[1:]
    order = np.argsort(sizes)[::-1]
    need = max(min_size, share * float(mask.sum()), 1)
    if sizes[order[1]] < need:
        return None
    return parts == order[0] + 1, parts == order[1] + 1


class AutomaticDetector:
    """Automatic mask generation on a frame, as a labels plane without overlaps.

    ``frames``: the session's frame source (or any ``(T, H, W[, 3])`` array).
    ``seconds`` and ``calls`` say what detection has cost.
    """

    def __init__(self, model: Any, frames: Any, settings: TrackAllSettings = TrackAllSettings(),
                 contrast_limits: tuple[float, float] | None = None, precision: str = "auto") -> None:
        from ..model.automatic import AutomaticMaskGenerator

        settings = settings.for_model(model)
        self.generator = AutomaticMaskGenerator(
            model,
            points_per_side=settings.points_per_side,
            points_per_batch=settings.points_per_batch,
            pred_iou_thresh=settings.pred_iou_thresh,
            stability_score_thresh=settings.stability_score_thresh,
            crop_n_layers=settings.crop_n_layers,
            min_area=settings.min_size,
            precision=precision,
        )
        self.frames = frames
        self.settings = settings
        self.contrast_limits = contrast_limits if contrast_limits is not None else getattr(frames, "contrast_limits", None)
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, frame: int) -> np.ndarray:
        began = time.perf_counter()
        raw = self.frames.raw(frame) if hasattr(self.frames, "raw") else np.asarray(self.frames[frame])
        found = self.generator.generate(raw, self.contrast_limits)
        height, width = raw.shape[:2]
        confidence = found.predicted_iou * found.stability_score
        plane = non_overlapping(found.masks, self.settings.min_size, int(self.settings.max_area_share * height * width),
                                scores=confidence)
        self.seconds += time.perf_counter() - began
        self.calls += 1
        return plane


# ---------------------------------------------------------------------- the run


class _Run:
    """The state of one track-all run (one object per call of :func:`track_all`)."""

    def __init__(self, session: Any, out: Any, first: int, last: int, settings: TrackAllSettings,
                 detector: Detector | None, redetect_frames: set[int], ends: Mapping[int, int],
                 result: TrackAllResult) -> None:
        self.session = session
        self.out = out
        self.first, self.last = first, last
        self.settings = settings
        self.detector = detector
        self.redetect_frames = redetect_frames
        self.ends = dict(ends)
        self.result = result
        self.lineage = result.lineage
        self.active: set[int] = set()
        self.absent: dict[int, int] = {}
        self.seen: dict[int, int] = {}  # id -> last frame with pixels
        self.areas: dict[int, deque[int]] = {}
        self.next_id = 1

    # ------------------------------------------------------------ objects
    def new_id(self) -> int:
        obj = self.next_id
        if obj > _MAX_ID:
            raise UsageError(f"more than {_MAX_ID} tracks: raise min-size or the detection thresholds", option="min-size")
        self.next_id += 1
        return obj

    def reserve(self, ids: Iterable[int]) -> None:
        for obj in ids:
            self.next_id = max(self.next_id, int(obj) + 1)

    def start(self, obj: int, frame: int, mask: np.ndarray, parent: int = 0, painted: bool = True) -> None:
        """A new track from ``mask`` on ``frame`` (a seed, a new object or a daughter);
        ``painted``: the mask is already in that frame's labels."""
        from ..io.rle import encode_mask

        self.session.add_mask(frame, obj, mask)
        self.lineage.add(Track(obj, frame, frame, parent))
        self.active.add(obj)
        self.absent[obj] = 0
        if painted:
            self.seen[obj] = frame
        self.areas[obj] = deque(maxlen=max(self.settings.redetect_every, 1) + 2)
        self.result.starts[obj] = (frame, encode_mask(mask))

    def join(self, obj: int, frame: int) -> None:
        """An object of the user's prompts enters the run on ``frame``."""
        if obj not in self.lineage:
            self.lineage.add(Track(obj, frame, frame))
        self.active.add(obj)
        self.absent[obj] = 0
        self.areas.setdefault(obj, deque(maxlen=max(self.settings.redetect_every, 1) + 2))

    def stop(self, obj: int) -> None:
        """No more computing for ``obj`` (ended, divided or past its recorded end)."""
        self.active.discard(obj)
        if obj in self.session.obj_ids:
            self.session.remove_object(obj)

    # ------------------------------------------------------------ one frame
    def process(self, frame: int, plane: np.ndarray) -> bool:
        """Ends, divisions and new objects on ``frame``; edits ``plane`` in place.
        Returns True when objects were added (propagation must restart here)."""
        s = self.settings
        boxes = ndimage.find_objects(plane) if plane.any() else []
        added = False
        present: dict[int, tuple[slice, slice]] = {}
        for obj in sorted(self.active):
            box = boxes[obj - 1] if obj - 1 < len(boxes) else None
            past_end = obj in self.ends and frame > self.ends[obj]
            area = 0 if box is None else int((plane[box] == obj).sum())
            if past_end or area < max(s.min_size, 1):
                if box is not None:
                    view = plane[box]
                    view[view == obj] = 0
                self.absent[obj] = self.absent.get(obj, 0) + 1
                if past_end or self.absent[obj] >= s.end_after:
                    self.stop(obj)
                    self.result.ended += 1
                continue
            self.absent[obj] = 0
            self.seen[obj] = frame
            t = self.lineage[obj]
            self.lineage.replace(Track(obj, t.first, frame, t.parent))
            present[obj] = box  # type: ignore[assignment]
        if s.divisions:
            for obj, box in present.items():
                if self.lineage[obj].first >= frame:
                    continue  # started here: nothing to divide from
                parts = split_parts(plane[box] == obj, s.min_size, s.division_share)
                if parts is None:
                    self.areas[obj].append(int((plane[box] == obj).sum()))
                    continue
                self.divide(obj, frame, plane, [_full(p, box, plane.shape) for p in parts])
                added = True
            for obj in list(present):
                if obj not in self.active:
                    present.pop(obj)
        detect = self.detector is not None and frame != self.first and (
            frame in self.redetect_frames
            or (s.redetect_every and ((frame - self.first) % s.redetect_every == 0 or frame == self.last))
        )
        if detect:
            added |= self.detect(frame, plane, present)
        return added

    def divide(self, mother: int, frame: int, plane: np.ndarray, daughters: list[np.ndarray]) -> None:
        """``mother`` ends and ``daughters`` (masks on ``frame``) start. With a detector,
        the frames just before are searched for the moment the two cells appeared."""
        t = self.lineage[mother]
        self.stop(mother)
        plane[plane == mother] = 0
        ids = []
        for mask in daughters:
            obj = self.new_id()
            plane[mask] = obj
            self.start(obj, frame, mask, parent=mother)
            ids.append(obj)
        began = self.earlier_division(mother, t.first, frame, plane, ids) if self.detector is not None else frame
        self.lineage.replace(Track(mother, t.first, began - 1, t.parent))
        for obj in ids:
            d = self.lineage[obj]
            self.lineage.replace(Track(obj, began, d.last, mother))
        self.result.divisions += 1

    def found_on(self, frame: int) -> np.ndarray:
        """The detector's plane of ``frame`` (timed and counted)."""
        assert self.detector is not None
        began = time.perf_counter()
        found = np.asarray(self.detector(frame))
        self.result.seconds_detecting += time.perf_counter() - began
        self.result.detections += 1
        return found

    def earlier_division(self, mother: int, mother_first: int, frame: int, plane: np.ndarray, daughters: list[int]) -> int:
        """The first frame the division shows, searched back (by bisection) over up to
        ``2 * redetect_every`` frames, and at least 16: a division seen late (daughters that still touched, or a detection frame
        after it) is dated to when the detector first sees two cells in the mother's
        mask. Those frames are relabelled; returns the daughters' first frame."""
        from ..io.rle import encode_mask

        s = self.settings
        low = max(mother_first + 1, frame - max(2 * s.redetect_every, 16) + 1, self.first + 1)
        if low >= frame:
            return frame
        planes: dict[int, np.ndarray] = {}

        def two_cells(d: int) -> bool:
            planes[d] = np.array(self.out[d - self.first])
            region = planes[d] == mother
            if not region.any():
                return False
            box = ndimage.find_objects(region.astype(np.uint8))[0]
            found = self.found_on(d)
            return _cells_within(region[box], box, found, ndimage.find_objects(found), s) is not None

        high = frame  # the division shows on ``frame``; it stays visible once it does
        while low < high:
            mid = (low + high) // 2
            if two_cells(mid):
                high = mid
            else:
                low = mid + 1
        if high == frame:
            return frame
        seeds = np.zeros(plane.shape, np.int64)
        for i, obj in enumerate(daughters):
            seeds[plane == obj] = i + 1
        _, nearest = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
        owner = np.asarray(daughters)[seeds[nearest[0], nearest[1]] - 1]
        for d in range(high, frame):
            labels = planes.get(d)
            if labels is None:
                labels = np.array(self.out[d - self.first])
            region = labels == mother
            labels[region] = owner[region]
            self.out[d - self.first] = labels
            if d == high:
                for obj in daughters:
                    self.result.starts[obj] = (d, encode_mask(labels == obj))
        return high

    def detect(self, frame: int, plane: np.ndarray, present: dict[int, Any]) -> bool:
        assert self.detector is not None
        s = self.settings
        found = self.found_on(frame)
        if found.shape != plane.shape:
            raise ValueError(f"the detector gave a {found.shape} plane for {plane.shape} frames")
        added = False
        newcomers: list[int] = []
        boxes = ndimage.find_objects(found)
        used: set[int] = set()
        if s.divisions:
            for obj in list(present):
                cells = self.cells_inside(obj, frame, plane, present[obj], found, boxes)
                if cells is None:
                    continue
                keep = (plane == 0) | (plane == obj)
                daughters = [_full(found[boxes[d - 1]] == d, boxes[d - 1], plane.shape) & keep for d in cells]
                self.divide(obj, frame, plane, daughters)
                present.pop(obj)
                used.update(cells)
                added = True
        for index, box in enumerate(boxes):
            if box is None or index + 1 in used:
                continue
            mask = found[box] == index + 1
            area = int(mask.sum())
            covered = int((plane[box][mask] > 0).sum())
            if area < max(s.min_size, 1) or covered > s.max_covered * area:
                continue
            free = mask & (plane[box] == 0)
            if int(free.sum()) < max(s.min_size, 1):
                continue
            new = _full(free, box, plane.shape)
            mother = self.sister_of(new, plane, present) if s.divisions else None
            if mother is not None:
                self.divide(mother, frame, plane, [plane == mother, new])
                present.pop(mother, None)
            else:
                obj = self.new_id()
                plane[new] = obj
                self.start(obj, frame, new)
                self.result.added += 1
                newcomers.append(obj)
            added = True
        if newcomers:
            self.backfill(newcomers, frame)
        return added

    def backfill(self, objs: list[int], frame: int) -> None:
        """Track objects found on a detection frame back over the frames since the
        previous one, so a cell that entered in between is not missed there. Only the
        new objects are computed, and only on pixels no other object has."""
        from ..io.rle import encode_mask

        s = self.settings
        low = max(self.first, frame - max(s.redetect_every, 1) + 1)
        if low >= frame:
            return
        going = set(objs)
        frames = self.session.propagate(start=frame, reverse=True, max_frames=frame - low, obj_ids=objs)
        try:
            for f, outs in frames:
                if f == frame:
                    continue
                labels = np.array(self.out[f - self.first])
                for obj in sorted(going):
                    logits = outs.get(obj)
                    mask = (np.asarray(logits) > 0) & (labels == 0) if logits is not None else None
                    if mask is None or int(mask.sum()) < max(s.min_size, 1):
                        going.discard(obj)  # not there yet: nothing earlier either
                        continue
                    labels[mask] = obj
                    t = self.lineage[obj]
                    self.lineage.replace(Track(obj, f, t.last, t.parent))
                    self.result.starts[obj] = (f, encode_mask(mask))
                self.out[f - self.first] = labels
                if not going:
                    break
        finally:
            frames.close()

    def cells_inside(self, obj: int, frame: int, plane: np.ndarray, box: Any, found: np.ndarray,
                     boxes: list) -> list[int] | None:
        """The two detections within one tracked mask (daughters that still touch)."""
        if obj not in self.active or self.lineage[obj].first >= frame:
            return None
        return _cells_within(plane[box] == obj, box, found, boxes, self.settings)

    def sister_of(self, new: np.ndarray, plane: np.ndarray, present: dict[int, Any]) -> int | None:
        """The tracked object a new detection split from: near it, just shrunk, and the
        two together about as large as it was. An object at the frame's edge shrinks by
        leaving, so it is never taken for a mother here."""
        s = self.settings
        grown = ndimage.binary_dilation(new, iterations=max(s.division_gap, 1))
        best, best_fall = None, 0.0
        for obj in np.unique(plane[grown & ~new]).tolist():
            if obj == 0 or obj not in present or _touches_edge(plane[present[obj]] == obj, present[obj], plane.shape):
                continue
            history = self.areas.get(obj)
            if not history or len(history) < 2:
                continue
            before = float(max(list(history)[:-1]))
            now = float(history[-1])
            fall = 1.0 - now / before if before > 0 else 0.0
            size = float(new.sum())
            conserved = 0.6 * before <= now + size <= 1.5 * before
            if fall >= s.division_shrink and size >= 0.5 * now and conserved and fall > best_fall:
                best, best_fall = int(obj), fall
        return best


def _cells_within(region: np.ndarray, box: Any, found: np.ndarray, boxes: list, s: TrackAllSettings) -> list[int] | None:
    """Labels of the two largest detections lying within ``region`` (an object's mask in
    ``box``), when the detector sees two cells where one object is tracked, else None."""
    area = int(region.sum())
    inside = found[box][region]
    ids, counts = np.unique(inside[inside > 0], return_counts=True)
    cells = []
    for d, count in zip(ids.tolist(), counts.tolist()):
        d_area = int((found[boxes[d - 1]] == d).sum())
        if count >= (1.0 - s.max_covered) * d_area and count >= max(s.min_size, s.division_share * area, 1):
            cells.append((count, d))
    if len(cells) < 2:
        return None
    return [d for _, d in sorted(cells, reverse=True)[:2]]


def _touches_edge(region: np.ndarray, box: tuple[slice, ...], shape: tuple[int, ...]) -> bool:
    """Whether a mask (``region`` within ``box``) has a pixel on the frame's border."""
    rows, cols = box[0], box[1]
    return bool(
        (rows.start == 0 and region[0].any())
        or (cols.start == 0 and region[:, 0].any())
        or (rows.stop == shape[0] and region[-1].any())
        or (cols.stop == shape[1] and region[:, -1].any())
    )


def _full(part: np.ndarray, box: tuple[slice, ...], shape: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[box] = part
    return mask


def track_all(
    session: Any,
    out: Any,
    first: int,
    last: int,
    *,
    seeds: Any = None,
    detector: Detector | None = None,
    settings: TrackAllSettings = TrackAllSettings(),
    prompts: "PromptSet | None" = None,
    redetect_frames: Iterable[int] = (),
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> TrackAllResult:
    """Track every object from frame ``first`` to ``last`` and write labels to ``out``.

    ``session``: a :class:`~napari_sam2.model.VideoSession` with no objects yet.
    ``out[t - first]`` receives the labels of frame ``t`` (numpy, zarr, a writable memory
    map); it must be readable too, since dating a division back or tracking a new object
    back revises frames already written.
    Seeds on ``first``: ``seeds`` (a labels plane, see :func:`seed_plane`), else what
    ``detector`` finds there. ``prompts``: objects the user prompted, tracked with the
    rest from their first prompted frame on; when it carries a lineage, its tracks end
    where the lineage says (a replay). ``redetect_frames``: extra frames to search for
    new objects on. ``cancel`` is asked after every frame; a cancelled run keeps what
    it wrote. Progress stages: 'seeding', 'track'.
    """
    began = time.perf_counter()
    if not 0 <= first <= last < session.num_frames:
        raise UsageError(f"frames {first}..{last} are not within the stack's {session.num_frames} frames", option="frames")
    if session.obj_ids:
        raise ValueError("track_all needs a session without objects")
    shape = tuple(session.frame_shape)
    user_ids = [obj.id for obj in prompts.objects] if prompts is not None else []
    if prompts is not None:
        prompts.validate_against((session.num_frames, *shape))
    recorded = getattr(prompts, "lineage", None) if prompts is not None else None
    lineage = Lineage()
    ends: dict[int, int] = {}
    if recorded is not None:
        ends = {t.id: t.last for t in recorded}
    result = TrackAllResult(lineage, (first, last))
    run = _Run(session, out, first, last, settings, detector, {int(f) for f in redetect_frames}, ends, result)
    run.reserve(user_ids)
    if recorded is not None:
        run.reserve(recorded.ids)

    by_frame: dict[int, list[tuple[Any, "Prompt"]]] = {}
    if prompts is not None:
        for obj, prompt in prompts.iter_prompts():
            if first <= prompt.frame <= last:
                by_frame.setdefault(prompt.frame, []).append((obj, prompt))
    replayed_parents = {t.id: t.parent for t in recorded} if recorded is not None else {}

    # seeds on the first frame
    if progress is not None:
        progress("seeding", 0, 1)
    t0 = time.perf_counter()
    plane0 = None
    automatic = False
    if seeds is not None:
        plane0 = seed_plane(seeds, shape, user_ids)
        run.reserve([int(plane0.max())])
    elif detector is not None and recorded is None:
        plane0 = np.asarray(detector(first))
        result.detections += 1
        automatic = True
    if plane0 is not None:
        prompted = None
        if automatic and first in by_frame:
            # what the user prompted on this frame is not found a second time
            prompted = logits_to_labels(_apply_prompts(run, by_frame.pop(first), first, replayed_parents) or {},
                                        shape, np.uint32)
        boxes = ndimage.find_objects(plane0)
        for index, box in enumerate(boxes):
            if box is None:
                continue
            mask = plane0[box] == index + 1
            if prompted is not None:
                taken = prompted[box] > 0
                if int((mask & taken).sum()) > settings.max_covered * int(mask.sum()):
                    continue
                mask &= ~taken
                if int(mask.sum()) < max(settings.min_size, 1):
                    continue
            # automatic seeds are numbered after the user's ids; seed labels keep theirs
            obj = run.new_id() if automatic else index + 1
            run.start(obj, first, _full(mask, box, shape), painted=False)
            result.seeded += 1
    result.seconds_seeding = time.perf_counter() - t0
    if detector is not None and plane0 is not None and seeds is None:
        result.seconds_detecting += result.seconds_seeding
    if progress is not None:
        progress("seeding", 1, 1)
    if not run.active and not by_frame and detector is None:
        raise UsageError("nothing to track: give seed labels, automatic seeding or prompts")

    total = last - first + 1
    frame = first
    done: set[int] = set()
    while frame <= last:
        if cancel is not None and cancel():
            result.cancelled = True
            break
        outputs = _apply_prompts(run, by_frame.pop(frame, []), frame, replayed_parents)
        if not run.active:
            outputs = {k: v for k, v in (outputs or {}).items() if frame <= run.ends.get(k, frame)}
            plane = logits_to_labels(outputs, shape, out.dtype)
            run.process(frame, plane)  # may find new objects
            out[frame - first] = plane
            done.add(frame)
            if progress is not None:
                progress("track", len(done), total)
            frame += 1
            continue
        restart = None
        frames = session.propagate(start=frame, max_frames=last - frame)
        try:
            for f, outs in frames:
                if f in done:
                    continue  # the frame a restart begins on is finished
                if f != frame and f in by_frame:
                    restart = f  # the user's prompts on this frame come first
                    break
                outs = {k: v for k, v in outs.items() if k in run.active and f <= run.ends.get(k, f)}
                plane = logits_to_labels(outs, shape, out.dtype) if outs else np.zeros(shape, out.dtype)
                added = run.process(f, plane)
                out[f - first] = plane
                done.add(f)
                if progress is not None:
                    progress("track", len(done), total)
                if cancel is not None and cancel():
                    result.cancelled = True
                    break
                if added or not run.active:
                    restart = f + 1 if not run.active else f
                    break
        finally:
            frames.close()
        if result.cancelled or restart is None:
            break
        frame = restart
    result.frames_tracked = len(done)
    # tracks that never showed a pixel have nothing to export
    for t in list(lineage):
        if t.id not in run.seen:
            lineage.remove(t.id)
    result.seconds_total = time.perf_counter() - began
    return result


def _apply_prompts(run: _Run, todo: list, frame: int, parents: Mapping[int, int]) -> dict | None:
    """The user's prompts on ``frame``; returns the engine's outputs there, if any."""
    outputs: dict | None = None
    for obj, prompt in todo:
        points = [[float(r), float(c)] for r, c in prompt.points]
        if prompt.mask is not None:
            answer = run.session.add_mask(frame, obj.id, prompt.mask)
        elif prompt.box is not None:
            extra = {"points": points, "labels": list(prompt.labels)} if points else {}
            answer = run.session.add_box(frame, obj.id, box=tuple(prompt.box), **extra)
        else:
            answer = run.session.add_points(frame, obj.id, points=points, labels=list(prompt.labels))
        outputs = {**(outputs or {}), **answer}
        if obj.id not in run.lineage:
            run.lineage.add(Track(obj.id, frame, frame, parents.get(obj.id, 0)))
        run.join(obj.id, frame)
    return outputs
