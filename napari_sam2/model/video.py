"""Streaming video sessions: prompts on any frame, masklets through the whole stack.

:class:`VideoSession` reproduces the behaviour of SAM 2's video predictor (per-object
inference with its video post-processing settings) on our engine, and adds what long
microscopy stacks need:

* frames are read lazily, one at a time (:class:`~.frames.FrameSource`);
* image features live in an LRU cache bounded in bytes, so re-propagation and clicks on
  visited frames skip the image encoder;
* per-frame results live in a :class:`~.store.RecordStore` (RAM up to a budget, then a
  temporary file), so memory does not grow with the number of frames;
* every result remembers the exact inputs it was computed from; a frame whose inputs
  did not change is reused instead of recomputed (e.g. existing objects when a new
  object is added), and a refinement click on a propagated frame reuses the
  memory-conditioned features computed during propagation;
* objects that share a frame's memory layout are processed as one batch.

Coordinates are napari's (row, col) pixels of the original frames; object ids are the
label values shown in napari.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import autocast_dtype
from .frames import FrameSource
from .allocator import FrameTrimmer
from .budgets import CacheBudgets, default_budgets
from .postprocess import fill_holes, remove_small_regions
from .sam2 import HeadOutput, ImageFeatures, Sam2, upsample_masks
from .store import FrameRecord, LRUCache, RecordStore

__all__ = ["VideoSession", "ObjectPrompts"]

_versions = itertools.count(1)
Outputs = dict[int, np.ndarray]


@dataclass
class ObjectPrompts:
    """What the user gave for one object on one frame (in original-frame pixels)."""

    points: np.ndarray | None = None  # (N, 2) rows, cols
    labels: np.ndarray | None = None  # (N,) 1 positive, 0 negative
    box: tuple[float, float, float, float] | None = None  # r0, c0, r1, c1
    mask: np.ndarray | None = None  # (H, W) bool


@dataclass
class _Track:
    """Per-object state. Dicts keep insertion order, which fixes memory-token order."""

    obj_id: int
    prompts: dict[int, ObjectPrompts] = field(default_factory=dict)
    point_inputs: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    mask_inputs: dict[int, torch.Tensor] = field(default_factory=dict)
    cond: dict[int, FrameRecord] = field(default_factory=dict)
    pending: dict[bool, dict[int, FrameRecord]] = field(default_factory=lambda: {True: {}, False: {}})
    tracked: dict[int, bool] = field(default_factory=dict)  # frame -> tracked in reverse


@dataclass(frozen=True)
class _MemoryPlan:
    """Which past results a frame attends to, by reference (no tensors loaded)."""

    spatial: tuple[tuple[int, str, int, int], ...]  # (t_pos, "cond"|"track", frame, version)
    pointers: tuple[tuple[int, str, int, int], ...]  # (distance, kind, frame, version)
    reverse: bool

    @property
    def layout(self) -> tuple:
        """What must be equal for objects to share one batched computation."""
        return (tuple(s[0] for s in self.spatial), tuple(p[0] for p in self.pointers))

    @property
    def signature(self) -> int:
        return hash(("track", self.reverse, self.spatial, self.pointers))


class VideoSession:
    """Interactive segmentation and tracking of objects through a stack of frames.

    ``frames``: any array-like (T, H, W) or (T, H, W, 3), read lazily.
    ``fill_hole_area``: fill background holes up to this many pixels (at the model's
    low mask resolution) as SAM 2's video post-processing does. The default, 8, is
    what Meta's video predictor asks for (it applies it where its CUDA extension is
    built); 0 disables it, as the reference does without the extension.
    ``remove_area``: remove foreground specks up to this many pixels; 0 disables it.
    ``corrections_as_prompts``: a click on an already tracked frame makes it a prompted
    (conditioning) frame, so the correction is kept and steers all later propagation.
    With False, corrections behave like the reference predictor's default, where a
    later propagation over the frame recomputes it.
    ``feature_cache_bytes``, ``conditioned_cache_bytes``, ``record_ram_bytes``: RAM
    budgets of the image-feature cache, the memory-conditioned feature cache and the
    results kept in RAM (results beyond go to a temporary file in ``spill_dir``).
    Left out, they are sized to the machine (:func:`~napari_sam2.model.budgets.default_budgets`:
    5 % of its memory together, 256 MiB to 2 GiB); ``session.budgets`` says what they are.
    ``precision``: "auto" runs in bfloat16 autocast on GPUs that support it and float32
    elsewhere; "float32" or "bfloat16" force one.
    """

    def __init__(
        self,
        model: Sam2,
        frames,
        fill_hole_area: int = 8,
        *,
        remove_area: int = 0,
        contrast_limits: tuple[float, float] | None = None,
        corrections_as_prompts: bool = True,
        feature_cache_bytes: int | None = None,
        conditioned_cache_bytes: int | None = None,
        record_ram_bytes: int | None = None,
        spill_dir: str | None = None,
        prefetch: bool = True,
        precision: str = "auto",
    ) -> None:
        if not isinstance(model, Sam2):
            raise TypeError(f"model must be a Sam2 built with build_sam2, got {type(model).__name__}")
        if fill_hole_area < 0 or remove_area < 0:
            raise ValueError("fill_hole_area and remove_area must be >= 0")
        self.model = model
        self.frames = frames if isinstance(frames, FrameSource) else FrameSource(
            frames, image_size=model.image_size, contrast_limits=contrast_limits, prefetch=prefetch
        )
        if self.frames.image_size != model.image_size:
            raise ValueError(
                f"the frame source prepares {self.frames.image_size}px inputs but the model expects {model.image_size}px"
            )
        if precision not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"precision must be 'auto', 'float32' or 'bfloat16', got {precision!r}")
        self.precision = precision
        self.fill_hole_area = int(fill_hole_area)
        self.remove_area = int(remove_area)
        self.corrections_as_prompts = bool(corrections_as_prompts)
        defaults = default_budgets()
        self.budgets = CacheBudgets(
            features=defaults.features if feature_cache_bytes is None else int(feature_cache_bytes),
            conditioned=defaults.conditioned if conditioned_cache_bytes is None else int(conditioned_cache_bytes),
            records=defaults.records if record_ram_bytes is None else int(record_ram_bytes),
        )
        self._tracks: dict[int, _Track] = {}
        self._records = RecordStore(self.budgets.records, spill_dir)
        self._features: LRUCache[int, ImageFeatures] = LRUCache(self.budgets.features, ImageFeatures.nbytes)
        self._conditioned: LRUCache[tuple[int, int], tuple[int, torch.Tensor]] = LRUCache(
            self.budgets.conditioned, lambda v: v[1].numel() * v[1].element_size()
        )
        self._lock = threading.RLock()
        self._closed = False

    # ------------------------------------------------------------------ info
    @property
    def num_frames(self) -> int:
        return self.frames.num_frames

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self.frames.height, self.frames.width

    @property
    def obj_ids(self) -> list[int]:
        return list(self._tracks)

    def prompted_frames(self, obj_id: int) -> list[int]:
        """Frames on which ``obj_id`` has clicks, a box or a mask."""
        track = self._tracks.get(obj_id)
        return sorted(track.prompts) if track else []

    def prompts(self, obj_id: int) -> dict[int, ObjectPrompts]:
        """A copy of the prompts of ``obj_id`` by frame."""
        track = self._tracks.get(obj_id)
        return dict(track.prompts) if track else {}

    def tracked_frames(self, obj_id: int) -> list[int]:
        track = self._tracks.get(obj_id)
        return sorted(track.tracked) if track else []

    # ------------------------------------------------------------------ prompts
    def add_points(
        self, frame: int, obj_id: int, points: Sequence[Sequence[float]], labels: Sequence[int]
    ) -> Outputs:
        """Clicks for ``obj_id`` on ``frame``: (row, col) points, labels 1 = object, 0 = not.

        Replaces the object's earlier clicks (and box) on that frame: pass all clicks.
        Returns ``{obj_id: logits (H, W)}`` for every object with a result on the frame.
        """
        frame, obj_id = self._check_frame(frame), self._check_obj_id(obj_id)
        pts, lbl = self._check_points(points, labels, required=True)
        return self._add_prompt(frame, obj_id, ObjectPrompts(points=pts, labels=lbl))

    def add_box(
        self,
        frame: int,
        obj_id: int,
        box: Sequence[float],
        points: Sequence[Sequence[float]] | None = None,
        labels: Sequence[int] | None = None,
    ) -> Outputs:
        """A box (r0, c0, r1, c1) for ``obj_id`` on ``frame``, optionally with clicks."""
        frame, obj_id = self._check_frame(frame), self._check_obj_id(obj_id)
        box_t = self._check_box(box)
        pts, lbl = self._check_points(points, labels, required=False)
        return self._add_prompt(frame, obj_id, ObjectPrompts(points=pts, labels=lbl, box=box_t))

    def add_mask(self, frame: int, obj_id: int, mask) -> Outputs:
        """A mask (H, W), bool or 0/1, for ``obj_id`` on ``frame`` (e.g. painted labels)."""
        frame, obj_id = self._check_frame(frame), self._check_obj_id(obj_id)
        arr = np.asarray(mask)
        if arr.shape != self.frame_shape:
            raise ValueError(f"mask has shape {arr.shape}; frames are {self.frame_shape}")
        if arr.dtype != bool:
            if not np.issubdtype(arr.dtype, np.number):
                raise ValueError(f"mask must be boolean or numeric, got dtype {arr.dtype}")
            arr = arr != 0
        return self._add_prompt(frame, obj_id, ObjectPrompts(mask=arr.copy()))

    def clear_prompts(self, frame: int, obj_id: int) -> Outputs:
        """Remove ``obj_id``'s prompts on ``frame``; its result there becomes a tracked one."""
        frame, obj_id = self._check_frame(frame), self._check_obj_id(obj_id)
        with self._lock:
            track = self._tracks.get(obj_id)
            if track is None:
                raise ValueError(f"there is no object {obj_id}; objects: {self.obj_ids}")
            self._clear_prompts(track, frame)
            is_cond = any(frame in t.pending[True] for t in self._tracks.values())
            return self._frame_outputs(frame, is_cond)

    def remove_object(self, obj_id: int) -> None:
        """Forget an object and everything computed for it."""
        with self._lock:
            track = self._tracks.pop(obj_id, None)
            if track is None:
                raise ValueError(f"there is no object {obj_id}; objects: {self.obj_ids}")
            for key in [k for k in self._records.keys() if k[0] == obj_id]:
                self._records.pop(key)
            for key in [k for k in self._conditioned.keys() if k[0] == obj_id]:
                self._conditioned.pop(key)

    def reset(self) -> None:
        """Remove all objects and results (cached image features are kept)."""
        with self._lock:
            self._tracks.clear()
            self._records.clear()
            self._conditioned.clear()

    def close(self) -> None:
        """Release the frame reader, caches and the temporary file."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._records.close()
            self._features.clear()
            self._conditioned.clear()
            close = getattr(self.frames, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> "VideoSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ propagation
    def propagate(
        self,
        start: int | None = None,
        reverse: bool = False,
        max_frames: int | None = None,
        obj_ids: Iterable[int] | None = None,
    ) -> Iterator[tuple[int, Outputs]]:
        """Track every object frame by frame, yielding ``(frame, {obj_id: logits})``.

        Starts at ``start`` (default: the earliest prompted frame) and goes forward, or
        backward with ``reverse``, over at most ``max_frames + 1`` frames (all by
        default). Results are committed before each yield, so closing the generator
        part-way keeps every finished frame. ``obj_ids``: track only these objects
        (e.g. a new object back over frames the others are done with).
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("this session is closed")
            if not self._tracks:
                raise ValueError("nothing to propagate: add points, a box or a mask first")
            if start is not None:
                start = self._check_frame(start)
            if max_frames is not None and (not isinstance(max_frames, (int, np.integer)) or max_frames < 0):
                raise ValueError(f"max_frames must be a non-negative integer, got {max_frames!r}")
            only = None
            if obj_ids is not None:
                only = {self._check_obj_id(i) for i in obj_ids}
                unknown = sorted(only - set(self._tracks))
                if unknown or not only:
                    raise ValueError(f"no objects {unknown or '(none given)'} to propagate; objects: {self.obj_ids}")
            self._consolidate()
            if start is None:
                start = min(f for t in self._tracks.values() if only is None or t.obj_id in only for f in t.cond)
            n = self.num_frames if max_frames is None else int(max_frames)
            if reverse:
                end = max(start - n, 0)
                order = list(range(start, end - 1, -1)) if start > 0 else []
            else:
                end = min(start + n, self.num_frames - 1)
                order = list(range(start, end + 1))
        return self._propagate_frames(order, bool(reverse), only)

    def _propagate_frames(self, order: list[int], reverse: bool, only: set[int] | None = None) -> Iterator[tuple[int, Outputs]]:
        trimmer = FrameTrimmer()  # freed heap memory back to the system every few frames
        for frame in order:
            with self._lock, self._inference():
                outputs = self._track_frame(frame, reverse, only)
            trimmer.frame_done()
            yield frame, outputs

    # ------------------------------------------------------------------ validation
    def _check_frame(self, frame) -> int:
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)):
            raise ValueError(f"frame index must be an integer, got {frame!r}")
        if not 0 <= frame < self.num_frames:
            raise ValueError(f"frame index {frame} is out of range: the stack has {self.num_frames} frames (0..{self.num_frames - 1})")
        return int(frame)

    @staticmethod
    def _check_obj_id(obj_id) -> int:
        if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer)) or obj_id <= 0:
            raise ValueError(f"object ids must be positive integers (they are label values), got {obj_id!r}")
        return int(obj_id)

    def _check_points(self, points, labels, required: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
        if points is None and labels is None:
            if required:
                raise ValueError("no points given: pass at least one (row, col) click")
            return None, None
        if points is None or labels is None:
            raise ValueError("points and labels must be given together")
        pts = np.asarray(points, dtype=np.float64)
        lbl = np.asarray(labels)
        if pts.size == 0:
            if required:
                raise ValueError("no points given: pass at least one (row, col) click")
            if lbl.size:
                raise ValueError("labels given without points")
            return None, None
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise ValueError(f"points must be a list of (row, col) pairs, got shape {pts.shape}")
        if lbl.ndim != 1 or lbl.shape[0] != pts.shape[0]:
            raise ValueError(f"got {pts.shape[0]} points but {lbl.size} labels: give one label per point")
        if not np.all(np.isfinite(pts)):
            raise ValueError("points must be finite numbers")
        if not np.isin(lbl, (0, 1)).all():
            raise ValueError(f"labels must be 1 (object) or 0 (background), got {sorted(set(lbl.tolist()))}")
        self._check_inside(pts, "point")
        return pts, lbl.astype(np.int32)

    def _check_inside(self, rc: np.ndarray, what: str) -> None:
        h, w = self.frame_shape
        bad = (rc[:, 0] < -0.5) | (rc[:, 0] > h - 0.5) | (rc[:, 1] < -0.5) | (rc[:, 1] > w - 0.5)
        if bad.any():
            r, c = rc[np.argmax(bad)]
            raise ValueError(f"{what} (row {r:g}, col {c:g}) is outside the {h}x{w} frame")

    def _check_box(self, box) -> tuple[float, float, float, float]:
        arr = np.asarray(box, dtype=np.float64).reshape(-1)
        if arr.shape != (4,) or not np.all(np.isfinite(arr)):
            raise ValueError(f"box must be four numbers (r0, c0, r1, c1), got {box!r}")
        r0, c0, r1, c1 = arr
        r0, r1 = min(r0, r1), max(r0, r1)
        c0, c1 = min(c0, c1), max(c0, c1)
        if r1 - r0 <= 0 or c1 - c0 <= 0:
            raise ValueError(f"box {tuple(arr)} has zero area")
        self._check_inside(np.array([[r0, c0], [r1, c1]]), "box corner")
        return (float(r0), float(c0), float(r1), float(c1))

    # ------------------------------------------------------------------ internals
    @contextlib.contextmanager
    def _inference(self):
        if self.precision == "auto":
            dtype = autocast_dtype(self.model.device)
        else:
            dtype = torch.bfloat16 if self.precision == "bfloat16" else None
        with torch.inference_mode():
            if dtype is None:
                yield
            else:
                with torch.autocast(self.model.device.type, dtype=dtype):
                    yield

    def _features_of(self, frame: int) -> ImageFeatures:
        feats = self._features.get(frame)
        if feats is None:
            image = self.frames.model_input(frame).to(self.model.device).unsqueeze(0)
            feats = self.model.encode_image(image)
            self._features.put(frame, feats)
        return feats

    def _model_points(self, prompt: ObjectPrompts) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(x, y) model-input coordinates as SAM 2 expects them, box corners first."""
        coords: list[list[float]] = []
        labels: list[int] = []
        if prompt.box is not None:
            r0, c0, r1, c1 = prompt.box
            coords += [[c0, r0], [c1, r1]]
            labels += [2, 3]
        if prompt.points is not None:
            coords += [[c, r] for r, c in prompt.points.tolist()]
            labels += prompt.labels.tolist()  # type: ignore[union-attr]
        if not coords:
            return None
        h, w = self.frame_shape
        pts = torch.tensor(coords, dtype=torch.float32)
        pts = pts / torch.tensor([w, h]) * self.model.image_size
        return pts.unsqueeze(0).to(self.model.device), torch.tensor([labels], dtype=torch.int32, device=self.model.device)

    def _model_mask(self, mask: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(mask).to(self.model.device)[None, None].float()
        size = self.model.image_size
        if t.shape[-2:] != (size, size):
            t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            t = (t >= 0.5).float()
        return t

    def _add_prompt(self, frame: int, obj_id: int, prompt: ObjectPrompts) -> Outputs:
        with self._lock, self._inference():
            track = self._tracks.get(obj_id) or _Track(obj_id)
            is_init = frame not in track.tracked
            reverse = False if is_init else track.tracked[frame]
            is_cond = is_init or self.corrections_as_prompts
            feats = self._features_of(frame)
            if prompt.mask is not None:
                mask_t = self._model_mask(prompt.mask)
                point_t = None
                if self.model.config.use_mask_input_as_output_without_sam:
                    # the mask is taken as the answer; its pointer comes from raw features
                    head = self.model.mask_as_output(feats.vision, feats.expanded_high_res(1), mask_t)
                else:
                    pix = self._conditioned_features(track, frame, feats, is_init, reverse)
                    head = self.model.run_heads(
                        pix, feats.expanded_high_res(1), mask_inputs=mask_t,
                        multimask=self.model.use_multimask(is_init, 0),
                    )
            else:
                mask_t = None
                point_t = self._model_points(prompt)
                prev = self._previous_logits(track, frame, is_cond)
                pix = self._conditioned_features(track, frame, feats, is_init, reverse)
                num_points = int(point_t[1].shape[1])
                head = self.model.run_heads(
                    pix, feats.expanded_high_res(1), point_t[0], point_t[1], mask_inputs=prev,
                    multimask=self.model.use_multimask(is_init, num_points),
                )
            record = self._record(head, maskmem=None)
            # commit only now: a failure above leaves the session as it was
            self._tracks[obj_id] = track
            if mask_t is not None:
                track.mask_inputs[frame] = mask_t
                track.point_inputs.pop(frame, None)
            else:
                track.point_inputs[frame] = point_t  # type: ignore[assignment]
                track.mask_inputs.pop(frame, None)
            track.prompts[frame] = prompt
            track.pending[is_cond][frame] = record
            return self._frame_outputs(frame, is_cond)

    def _previous_logits(self, track: _Track, frame: int, is_cond: bool) -> torch.Tensor | None:
        """The object's latest low-res logits on ``frame``, fed back with new clicks."""
        rec = track.pending[is_cond].get(frame) or track.cond.get(frame) or self._records.get((track.obj_id, frame))
        if rec is None:
            return None
        return torch.clamp(rec.pred_masks.to(self.model.device), -32.0, 32.0)

    def _record(self, head: HeadOutput, maskmem: torch.Tensor | None, signature: int | None = None, index: int = 0) -> FrameRecord:
        pred = head.low_res_masks[index : index + 1]
        pred = self._postprocess(pred)
        mem = None if maskmem is None else maskmem[index : index + 1].to(torch.bfloat16).cpu()
        return FrameRecord(
            pred_masks=pred.float().cpu(),
            obj_ptr=head.obj_ptr[index : index + 1].float().cpu(),
            score=head.object_score_logits[index : index + 1].float().cpu(),
            maskmem=mem,
            version=next(_versions),
            signature=signature,
        )

    def _postprocess(self, logits: torch.Tensor) -> torch.Tensor:
        if self.fill_hole_area > 0:
            logits = fill_holes(logits, self.fill_hole_area)
        if self.remove_area > 0:
            logits = remove_small_regions(logits, self.remove_area)
        return logits

    def _memory_plan(self, track: _Track, frame: int, reverse: bool) -> _MemoryPlan:
        """The memories and pointers SAM 2 attends to when tracking ``frame``."""
        c = self.model.config
        obj = track.obj_id
        selected, unselected = _select_cond_frames(frame, track.cond, c.max_cond_frames_in_attn)

        def past(f: int) -> tuple[str, int, int] | None:
            entry = self._records.entry((obj, f))
            if entry is not None:
                return ("track", f, entry[0])
            if f in unselected:
                return ("cond", f, unselected[f].version)
            return None

        spatial: list[tuple[int, str, int, int]] = [(0, "cond", f, rec.version) for f, rec in selected.items()]
        r = c.memory_temporal_stride_for_eval
        for t_pos in range(1, c.num_maskmem):
            t_rel = c.num_maskmem - t_pos
            if t_rel == 1:
                prev = frame + 1 if reverse else frame - 1
            elif not reverse:
                prev = ((frame - 2) // r) * r - (t_rel - 2) * r
            else:
                prev = -(-(frame + 2) // r) * r + (t_rel - 2) * r
            ref = past(prev)
            if ref is not None:
                spatial.append((t_pos,) + ref)
        pointers: list[tuple[int, str, int, int]] = []
        if c.use_obj_ptrs_in_encoder:
            max_ptrs = min(self.num_frames, c.max_obj_ptrs_in_encoder)
            for f, rec in selected.items():
                if c.only_obj_ptrs_in_the_past_for_eval and (f < frame if reverse else f > frame):
                    continue
                dist = (frame - f) * (-1 if reverse else 1) if c.use_signed_tpos_enc_to_obj_ptrs else abs(frame - f)
                pointers.append((dist, "cond", f, rec.version))
            for d in range(1, max_ptrs):
                f = frame + d if reverse else frame - d
                if f < 0 or f >= self.num_frames:
                    break
                ref = past(f)
                if ref is not None:
                    pointers.append((d,) + ref)
        return _MemoryPlan(tuple(spatial), tuple(pointers), reverse)

    def _load(self, obj: int, kind: str, frame: int) -> FrameRecord:
        if kind == "cond":
            return self._tracks[obj].cond[frame]
        rec = self._records.get((obj, frame))
        assert rec is not None
        return rec

    def _memory_tokens(self, tracks: list[_Track], plans: list[_MemoryPlan], size: tuple[int, int]):
        """Batched memory tokens of several objects that share one layout."""
        device = self.model.device
        first = plans[0]
        spatial = []
        for i, (t_pos, *_rest) in enumerate(first.spatial):
            mems = [self._load(t.obj_id, p.spatial[i][1], p.spatial[i][2]).maskmem for t, p in zip(tracks, plans)]
            spatial.append((t_pos, torch.cat(mems, dim=0).to(device)))  # type: ignore[arg-type]
        pointers = []
        for i, (dist, *_rest) in enumerate(first.pointers):
            ptrs = [self._load(t.obj_id, p.pointers[i][1], p.pointers[i][2]).obj_ptr for t, p in zip(tracks, plans)]
            pointers.append((dist, torch.cat(ptrs, dim=0).to(device)))
        max_ptrs = min(self.num_frames, self.model.config.max_obj_ptrs_in_encoder)
        return self.model.memory_tokens(spatial, pointers, max_ptrs, self.model.maskmem_pos(size))

    def _conditioned_features(
        self, track: _Track, frame: int, feats: ImageFeatures, is_init: bool, reverse: bool
    ) -> torch.Tensor:
        """Memory-conditioned features of one object on a frame, (1, C, h, w)."""
        if is_init:
            return self.model.no_memory_features(feats, 1)
        plan = self._memory_plan(track, frame, reverse)
        cached = self._conditioned.get((track.obj_id, frame))
        if cached is not None and cached[0] == plan.signature:
            return cached[1].to(self.model.device)
        tokens = self._memory_tokens([track], [plan], feats.size)
        pix = self.model.condition_on_memory(feats, tokens)
        self._conditioned.put((track.obj_id, frame), (plan.signature, pix.detach()))
        return pix

    def _frame_outputs(self, frame: int, is_cond: bool) -> Outputs:
        """Video-resolution logits of every object that has a result on ``frame``."""
        out: Outputs = {}
        h, w = self.frame_shape
        for obj_id, track in self._tracks.items():
            rec = (
                track.pending[is_cond].get(frame)
                or track.cond.get(frame)
                or self._records.get((obj_id, frame))
            )
            if rec is not None:
                out[obj_id] = self._to_video(rec.pred_masks)
        return out

    def _to_video(self, pred_masks: torch.Tensor) -> np.ndarray:
        h, w = self.frame_shape
        logits = pred_masks.to(self.model.device)
        if tuple(logits.shape[-2:]) != (h, w):
            logits = upsample_masks(logits, (h, w))
        return logits[0, 0].float().cpu().numpy()

    def _clear_prompts(self, track: _Track, frame: int) -> None:
        track.prompts.pop(frame, None)
        track.point_inputs.pop(frame, None)
        track.mask_inputs.pop(frame, None)
        track.pending[True].pop(frame, None)
        track.pending[False].pop(frame, None)
        rec = track.cond.pop(frame, None)
        if rec is not None:
            # no longer prompted: keep its result as an ordinary tracked frame
            if rec.maskmem is not None:
                self._records.put((track.obj_id, frame), rec)
            track.tracked.pop(frame, None)

    def _consolidate(self) -> None:
        """Encode memories of newly prompted frames and move them into the bank."""
        for track in self._tracks.values():
            if not track.cond and not track.pending[True]:
                raise ValueError(
                    f"object {track.obj_id} has no prompts left; add a prompt for it or remove it"
                )
        with self._inference():
            for track in self._tracks.values():
                for is_cond in (False, True):
                    for frame, rec in track.pending[is_cond].items():
                        if rec.maskmem is None:
                            feats = self._features_of(frame)
                            high = upsample_masks(rec.pred_masks.to(self.model.device), self.model.image_size)
                            mem = self.model.encode_memory(
                                feats, high, rec.score.to(self.model.device), binarize=self.model.config.binarize_mask_from_pts_for_mem_enc
                            )
                            rec.maskmem = mem.to(torch.bfloat16).cpu()
                        if is_cond:
                            track.cond[frame] = rec
                        else:
                            self._records.put((track.obj_id, frame), rec)
                    track.pending[is_cond].clear()
                for frame in track.cond:
                    self._records.pop((track.obj_id, frame))

    def _track_frame(self, frame: int, reverse: bool, only: set[int] | None = None) -> Outputs:
        """Run (or reuse) every object's result (or those in ``only``) on one frame and commit it."""
        chosen = {i: t for i, t in self._tracks.items() if only is None or i in only}
        todo: dict[tuple, list[tuple[_Track, _MemoryPlan]]] = {}
        for track in chosen.values():
            if frame in track.cond:
                continue
            plan = self._memory_plan(track, frame, reverse)
            entry = self._records.entry((track.obj_id, frame))
            if entry is not None and entry[1] == plan.signature:
                continue  # inputs unchanged since it was computed: the result stands
            todo.setdefault(plan.layout, []).append((track, plan))
        if todo:
            feats = self._features_of(frame)
            new: list[tuple[int, FrameRecord]] = []
            for group in todo.values():
                tracks = [g[0] for g in group]
                plans = [g[1] for g in group]
                new.extend(self._track_group(frame, feats, tracks, plans))
            for obj_id, rec in new:
                self._records.put((obj_id, frame), rec)
        out: Outputs = {}
        for obj_id, track in chosen.items():
            track.tracked[frame] = reverse
            rec = track.cond.get(frame) or self._records.get((obj_id, frame))
            assert rec is not None
            out[obj_id] = self._to_video(rec.pred_masks)
        return out

    def _track_group(
        self, frame: int, feats: ImageFeatures, tracks: list[_Track], plans: list[_MemoryPlan]
    ) -> list[tuple[int, FrameRecord]]:
        model = self.model
        batch = len(tracks)
        tokens = self._memory_tokens(tracks, plans, feats.size)
        pix = model.condition_on_memory(feats, tokens)
        head = model.run_heads(pix, feats.expanded_high_res(batch), multimask=model.use_multimask(False, 0))
        mem = model.encode_memory(feats, head.high_res_masks(), head.object_score_logits, binarize=False)
        results = []
        for i, (track, plan) in enumerate(zip(tracks, plans)):
            self._conditioned.put((track.obj_id, frame), (plan.signature, pix[i : i + 1].detach()))
            results.append((track.obj_id, self._record(head, mem, plan.signature, index=i)))
        return results


def _select_cond_frames(
    frame: int, cond: dict[int, FrameRecord], max_num: int
) -> tuple[dict[int, FrameRecord], dict[int, FrameRecord]]:
    """Up to ``max_num`` prompted frames closest in time (-1: all), and the rest."""
    if max_num == -1 or len(cond) <= max_num:
        return cond, {}
    selected: dict[int, FrameRecord] = {}
    before = max((t for t in cond if t < frame), default=None)
    if before is not None:
        selected[before] = cond[before]
    after = min((t for t in cond if t >= frame), default=None)
    if after is not None:
        selected[after] = cond[after]
    rest = sorted((t for t in cond if t not in selected), key=lambda t: abs(t - frame))
    for t in rest[: max_num - len(selected)]:
        selected[t] = cond[t]
    return selected, {t: r for t, r in cond.items() if t not in selected}
