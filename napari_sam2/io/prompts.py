"""Session prompts as versioned JSON, so that a segmentation can be reproduced.

A prompt file records which model ran at which input size on which frames (shape,
dtype, contrast limits) and, per object, the clicks, boxes and painted masks given on
each frame. Coordinates are napari's (row, col) in pixels of the original frame.
Masks are stored as COCO RLE (see :mod:`napari_sam2.io.rle`). Version 1 schema::

    {"version": 1, "model": "sam2.1_hiera_tiny" | null, "image_size": 1024 | null,
     "frames": {"shape": [T, H, W], "dtype": "uint16"} | null,
     "contrast_limits": [lo, hi] | null,
     "objects": [{"id": 1, "name": "cell 1", "prompts": [
         {"frame": 0, "points": [[r, c], ...], "labels": [1, 0, ...],
          "box": [r0, c0, r1, c1] | null, "mask_rle": {"size": [H, W], "counts": "..."} | null}]}],
     "lineage": [{"id": 2, "first": 5, "last": 9, "parent": 1}, ...]}

``lineage`` (optional, written only when there is one, so files without it are read by
every version-1 reader) records the tracks of a track-all run: each object id's first
and last frame and the id it divided from (see :mod:`napari_sam2.io.lineage`).

A prompt holds points and/or a box, or a mask alone; each object has at most one
prompt per frame (the engine replaces an object's clicks on a frame with each call).

Files come from users and other programs, so reading one never fails with anything
but :class:`PromptError` (the message names the file, object and frame), and a mask
is decoded only after its declared size has been checked against the frame size (the
``shape`` given to :meth:`PromptSet.from_json`, else the one the file records).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .atomic import atomic_output, check_output
from .lineage import Lineage, LineageError
from .rle import _short, decode_mask, encode_mask, rle_size

__all__ = ["SCHEMA_VERSION", "MAX_OBJECT_ID", "Prompt", "PromptedObject", "PromptSet", "PromptError"]

SCHEMA_VERSION = 1
MAX_OBJECT_ID = 2**32 - 1  # ids are label values; napari's and our label arrays are at most uint32
# a mask read without any known frame size may not be larger than this (bool bytes)
MAX_MASK_PIXELS = 2**28


class PromptError(ValueError):
    """A prompt file or prompt set is invalid; the message names the object and frame."""


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    """A finite int or float; ints too large for a float (hundreds of digits) are not."""
    if not (_is_int(value) or isinstance(value, (float, np.floating))):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _is_object_id(value: Any) -> bool:
    return _is_int(value) and 1 <= value <= MAX_OBJECT_ID


def _frame_size(shape: Sequence[Any] | None) -> tuple[int, int] | None:
    """(H, W) of frames of shape (H, W), (T, H, W) or (T, H, W, C), if it is one."""
    if shape is None or not 2 <= len(shape) <= 4 or not all(_is_int(s) and s > 0 for s in shape):
        return None
    return (int(shape[0]), int(shape[1])) if len(shape) == 2 else (int(shape[1]), int(shape[2]))


class _MaskLimit:
    """The size every mask of one file must have, known before any mask is decoded.

    With no frame size given or recorded, the first mask's size (bounded by
    ``MAX_MASK_PIXELS``) becomes the size for the others: all masks are frame-sized.
    """

    def __init__(self, size: tuple[int, int] | None) -> None:
        self.size = size

    def decode(self, rle: Any) -> np.ndarray:
        if self.size is None:
            height, width = rle_size(rle)
            if height * width > MAX_MASK_PIXELS:
                raise ValueError(
                    f"the mask is {height} x {width}, larger than {MAX_MASK_PIXELS} pixels; "
                    "give the frames' shape to read it"
                )
            self.size = (height, width)
        return decode_mask(rle, shape=self.size)


@dataclass
class Prompt:
    """What was given for one object on one frame."""

    frame: int
    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)  # 1 = positive click, 0 = negative
    box: tuple[float, float, float, float] | None = None  # (r0, c0, r1, c1)
    mask: np.ndarray | None = None  # bool (H, W)

    def check(self, where: str) -> None:
        """Raise :class:`PromptError` (prefixed with ``where``) if the prompt is malformed."""
        if not _is_int(self.frame) or self.frame < 0:
            raise PromptError(f"{where}: frame must be an integer >= 0, got {_short(self.frame)}")
        where = f"{where}, prompt on frame {self.frame}"
        for i, point in enumerate(self.points):
            if len(point) != 2 or not all(_is_number(v) for v in point):
                raise PromptError(f"{where}: point {i} must be [row, col] finite numbers, got {_short(point)}")
        if len(self.labels) != len(self.points):
            raise PromptError(f"{where}: {len(self.labels)} labels for {len(self.points)} points")
        for i, label in enumerate(self.labels):
            if not _is_int(label) or label not in (0, 1):
                raise PromptError(f"{where}: label {i} must be 1 (positive) or 0 (negative), got {_short(label)}")
        if self.box is not None:
            box = self.box
            if len(box) != 4 or not all(_is_number(v) for v in box):
                raise PromptError(f"{where}: box must be [r0, c0, r1, c1] finite numbers, got {_short(box)}")
            if box[0] > box[2] or box[1] > box[3]:
                raise PromptError(f"{where}: box {list(box)} must have r0 <= r1 and c0 <= c1")
        if self.mask is not None:
            mask = np.asarray(self.mask)
            if mask.ndim != 2 or mask.dtype != bool:
                raise PromptError(f"{where}: mask must be a 2D bool array, got {mask.dtype} {mask.shape}")
            if self.points or self.box is not None:
                raise PromptError(f"{where}: a mask prompt cannot be combined with points or a box on the same frame")
        elif not self.points and self.box is None:
            raise PromptError(f"{where}: the prompt has no points, box or mask")

    def to_dict(self) -> dict[str, Any]:
        return {
            "frame": int(self.frame),
            "points": [[float(r), float(c)] for r, c in self.points],
            "labels": [int(v) for v in self.labels],
            "box": None if self.box is None else [float(v) for v in self.box],
            "mask_rle": None if self.mask is None else encode_mask(self.mask),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str, masks: _MaskLimit | None = None) -> "Prompt":
        """Parse one prompt; ``masks`` holds the size its mask must have (checked before decoding)."""
        if not isinstance(data, dict):
            raise PromptError(f"{where}: each prompt must be a JSON object, got {type(data).__name__}")
        unknown = set(data) - {"frame", "points", "labels", "box", "mask_rle"}
        if unknown:
            raise PromptError(f"{where}: unknown prompt field(s) {sorted(unknown)}")
        if "frame" not in data:
            raise PromptError(f"{where}: a prompt needs a 'frame'")
        frame = data["frame"]
        if not _is_int(frame) or frame < 0:
            raise PromptError(f"{where}: frame must be an integer >= 0, got {_short(frame)}")
        inner = f"{where}, prompt on frame {frame}"
        points = data.get("points")
        points = [] if points is None else points  # null = none; false, 0 or "" are errors
        labels = data.get("labels")
        labels = [] if labels is None else labels
        if not isinstance(points, list) or not all(isinstance(p, list) for p in points):
            raise PromptError(f"{inner}: points must be a list of [row, col] pairs, got {_short(points)}")
        if not isinstance(labels, list):
            raise PromptError(f"{inner}: labels must be a list, got {_short(labels)}")
        box = data.get("box")
        if box is not None and not isinstance(box, list):
            raise PromptError(f"{inner}: box must be [r0, c0, r1, c1] or null, got {_short(box)}")
        mask = None
        if data.get("mask_rle") is not None:
            if not isinstance(data["mask_rle"], dict):
                raise PromptError(f"{inner}: mask_rle must be {{\"size\": [H, W], \"counts\": ...}} or null")
            if points or box is not None:
                raise PromptError(f"{inner}: a mask prompt cannot be combined with points or a box on the same frame")
            try:
                mask = (masks or _MaskLimit(None)).decode(data["mask_rle"])
            except ValueError as err:
                raise PromptError(f"{inner}: invalid mask_rle: {err}") from None
        prompt = cls(
            frame=frame,
            points=[tuple(p) for p in points],  # type: ignore[misc]
            labels=list(labels),
            box=None if box is None else tuple(box),  # type: ignore[arg-type]
            mask=mask,
        )
        prompt.check(where)
        return prompt


@dataclass
class PromptedObject:
    """One object (its id is its label value) and its prompts, at most one per frame."""

    id: int
    name: str = ""
    prompts: list[Prompt] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"object {_short(self.id)}" + (f" ({_short(self.name)})" if self.name else "")

    def check(self) -> None:
        if not _is_object_id(self.id):
            raise PromptError(f"object ids must be integers from 1 to {MAX_OBJECT_ID}, got {_short(self.id)}")
        if not isinstance(self.name, str):
            raise PromptError(f"{self.where}: name must be a string")
        frames: set[int] = set()
        for prompt in self.prompts:
            prompt.check(self.where)
            if prompt.frame in frames:
                raise PromptError(f"{self.where} has more than one prompt on frame {prompt.frame}; merge them")
            frames.add(prompt.frame)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": int(self.id),
            "name": self.name,
            "prompts": [p.to_dict() for p in sorted(self.prompts, key=lambda p: p.frame)],
        }

    @classmethod
    def from_dict(cls, data: Any, position: int, masks: _MaskLimit | None = None) -> "PromptedObject":
        if not isinstance(data, dict):
            raise PromptError(f"objects[{position}] must be a JSON object")
        unknown = set(data) - {"id", "name", "prompts"}
        if unknown:
            raise PromptError(f"objects[{position}]: unknown field(s) {sorted(unknown)}")
        obj_id = data.get("id")
        if not _is_object_id(obj_id):
            raise PromptError(
                f"objects[{position}]: id must be a positive integer up to {MAX_OBJECT_ID} (a label value), "
                f"got {_short(obj_id)}"
            )
        name = data.get("name")
        name = "" if name is None else name
        if not isinstance(name, str):
            raise PromptError(f"object {obj_id}: name must be a string, got {_short(name)}")
        prompts = data.get("prompts")
        prompts = [] if prompts is None else prompts
        if not isinstance(prompts, list):
            raise PromptError(f"object {obj_id}: prompts must be a list, got {_short(prompts)}")
        obj = cls(obj_id, name, [])
        obj.prompts = [Prompt.from_dict(p, obj.where, masks) for p in prompts]
        obj.check()
        return obj


@dataclass
class PromptSet:
    """All prompts of a session plus what is needed to reproduce it."""

    objects: list[PromptedObject] = field(default_factory=list)
    model: str | None = None
    image_size: int | None = None
    frames_shape: tuple[int, ...] | None = None
    frames_dtype: str | None = None
    contrast_limits: tuple[float, float] | None = None
    lineage: Lineage | None = None  # tracks and divisions of a track-all run

    # ------------------------------------------------------------------ building
    def object(self, obj_id: int, name: str | None = None) -> PromptedObject:
        """The object with this id, created if needed."""
        for obj in self.objects:
            if obj.id == obj_id:
                if name is not None:
                    obj.name = name
                return obj
        obj = PromptedObject(obj_id, name or "")
        self.objects.append(obj)
        return obj

    def set_prompt(
        self,
        obj_id: int,
        frame: int,
        points: Sequence[Sequence[float]] | None = None,
        labels: Sequence[int] | None = None,
        box: Sequence[float] | None = None,
        mask: np.ndarray | None = None,
    ) -> Prompt:
        """Record the prompt of an object on a frame, replacing an earlier one there."""
        prompt = Prompt(
            frame=frame,
            points=[(float(r), float(c)) for r, c in (points or [])],
            labels=[int(v) for v in (labels or [])],
            box=None if box is None else tuple(float(v) for v in box),  # type: ignore[arg-type]
            mask=None if mask is None else np.asarray(mask, dtype=bool),
        )
        obj = self.object(obj_id)
        prompt.check(obj.where)
        obj.prompts = [p for p in obj.prompts if p.frame != frame] + [prompt]
        return prompt

    def remove_object(self, obj_id: int) -> None:
        self.objects = [obj for obj in self.objects if obj.id != obj_id]

    def iter_prompts(self) -> Iterator[tuple[PromptedObject, Prompt]]:
        """(object, prompt) pairs in the order they are applied: by frame, then object id."""
        pairs = [(obj, prompt) for obj in self.objects for prompt in obj.prompts]
        return iter(sorted(pairs, key=lambda pair: (pair[1].frame, pair[0].id)))

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check every field; raises :class:`PromptError` naming the offending object and frame."""
        if self.model is not None:
            from ..model.bundled import BUNDLED_MODELS
            from ..model.config import MODEL_NAMES

            known = tuple(MODEL_NAMES) + tuple(BUNDLED_MODELS)
            if self.model not in known:
                raise PromptError(f"unknown model {self.model!r}; known models: {', '.join(known)}")
        if self.image_size is not None and (
            not _is_int(self.image_size) or not 0 < self.image_size <= 16384 or self.image_size % 32
        ):
            raise PromptError(f"image_size must be a positive multiple of 32 up to 16384, got {_short(self.image_size)}")
        if self.frames_shape is not None:
            shape = self.frames_shape
            if not 2 <= len(shape) <= 4 or not all(_is_int(s) and s > 0 for s in shape):
                raise PromptError(f"frames shape must be 2 to 4 positive integers, got {_short(list(shape))}")
        if self.frames_dtype is not None:
            try:
                np.dtype(self.frames_dtype)
            except (TypeError, ValueError, OverflowError, SyntaxError):
                raise PromptError(f"frames dtype {_short(self.frames_dtype)} is not a numpy dtype") from None
        if self.contrast_limits is not None:
            limits = self.contrast_limits
            if len(limits) != 2 or not all(_is_number(v) for v in limits) or not limits[0] < limits[1]:
                raise PromptError(f"contrast_limits must be [low, high] finite numbers with low < high, got {_short(list(limits))}")
        ids: set[int] = set()
        for obj in self.objects:
            obj.check()
            if obj.id in ids:
                raise PromptError(f"object id {obj.id} is used twice")
            ids.add(obj.id)
        self._check_lineage(None)

    def _check_lineage(self, num_frames: int | None) -> None:
        """The lineage is consistent, its ids are label values and its frames exist."""
        if self.lineage is None:
            return
        if not isinstance(self.lineage, Lineage):
            raise PromptError(f"lineage must be a Lineage or None, got {type(self.lineage).__name__}")
        for track in self.lineage:
            if track.id > MAX_OBJECT_ID:
                raise PromptError(f"lineage: track ids are label values up to {MAX_OBJECT_ID}, got {track.id}")
        try:
            self.lineage.check(num_frames)
        except LineageError as err:
            raise PromptError(f"lineage: {err}") from None

    def validate_against(self, shape: Sequence[int]) -> None:
        """Check that every prompt fits frames of ``shape`` ((T, H, W) or (T, H, W, C)).

        Frame indices must exist; points and boxes must lie on the frame (napari pixel
        extents, -0.5 to size - 0.5); masks must have the frame's size; lineage tracks
        must end on an existing frame. If the file recorded the frames' shape, it must match.
        """
        shape = tuple(int(s) for s in shape)
        if len(shape) == 2:
            shape = (1, *shape)
        if len(shape) not in (3, 4):
            raise PromptError(f"frames must have shape (T, H, W) or (T, H, W, C), got {shape}")
        num_frames, height, width = shape[:3]
        self.validate()
        if self.frames_shape is not None:
            recorded = tuple(self.frames_shape)
            recorded = (1, *recorded) if len(recorded) == 2 else recorded
            if recorded[:3] != shape[:3]:
                raise PromptError(
                    f"these prompts were made on frames of shape {recorded[:3]}, "
                    f"but the frames have shape {shape[:3]} (T, H, W)"
                )
        self._check_lineage(num_frames)
        for obj, prompt in self.iter_prompts():
            where = f"{obj.where}, prompt on frame {prompt.frame}"
            if prompt.frame >= num_frames:
                raise PromptError(f"{where}: frame index out of range for {num_frames} frames")
            for r, c in prompt.points:
                if not (-0.5 <= r <= height - 0.5 and -0.5 <= c <= width - 0.5):
                    raise PromptError(f"{where}: point ({_short(r, 30)}, {_short(c, 30)}) lies outside the {height} x {width} frame")
            if prompt.box is not None:
                r0, c0, r1, c1 = prompt.box
                if not (-0.5 <= r0 and r1 <= height - 0.5 and -0.5 <= c0 and c1 <= width - 0.5):
                    raise PromptError(f"{where}: box {_short(list(prompt.box))} lies outside the {height} x {width} frame")
            if prompt.mask is not None and prompt.mask.shape != (height, width):
                raise PromptError(f"{where}: mask of shape {prompt.mask.shape} does not match the {height} x {width} frame")

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        self.validate()
        frames = None
        if self.frames_shape is not None or self.frames_dtype is not None:
            frames = {
                "shape": None if self.frames_shape is None else [int(s) for s in self.frames_shape],
                "dtype": self.frames_dtype,
            }
        data: dict[str, Any] = {
            "version": SCHEMA_VERSION,
            "model": self.model,
            "image_size": None if self.image_size is None else int(self.image_size),
            "frames": frames,
            "contrast_limits": None if self.contrast_limits is None else [float(v) for v in self.contrast_limits],
            "objects": [obj.to_dict() for obj in sorted(self.objects, key=lambda o: o.id)],
        }
        if self.lineage is not None:  # left out otherwise: the file stays what it always was
            data["lineage"] = self.lineage.to_list()
        return data

    @classmethod
    def from_dict(cls, data: Any, shape: Sequence[int] | None = None) -> "PromptSet":
        """Parse a prompt document; raises only :class:`PromptError`.

        ``shape``: the frames the prompts are for ((T, H, W[, C]) or (H, W)); when
        given, everything is checked against it (:meth:`validate_against`) and masks
        are checked against its frame size before they are decoded. Without it, the
        frames' shape recorded in the document plays that role.
        """
        if not isinstance(data, dict):
            raise PromptError("a prompt file must contain a JSON object")
        version = data.get("version")
        if not _is_int(version):
            raise PromptError(f"missing or invalid schema 'version' (expected {SCHEMA_VERSION}), got {_short(version)}")
        if version > SCHEMA_VERSION:
            raise PromptError(f"prompt file version {version} is newer than this napari-sam2 reads ({SCHEMA_VERSION}); please update")
        if version < 1:
            raise PromptError(f"invalid schema version {version}")
        unknown = set(data) - {"version", "model", "image_size", "frames", "contrast_limits", "objects", "lineage"}
        if unknown:
            raise PromptError(f"unknown top-level field(s) {_short(sorted(unknown), 200)}")
        model = data.get("model")
        if model is not None and not isinstance(model, str):
            raise PromptError(f"model must be a model name or null, got {_short(model)}")
        frames = data.get("frames")
        recorded = dtype = None
        if frames is not None:
            if not isinstance(frames, dict) or set(frames) - {"shape", "dtype"}:
                raise PromptError('frames must be {"shape": [...], "dtype": "..."} or null')
            recorded = frames.get("shape")
            if recorded is not None and not isinstance(recorded, list):
                raise PromptError(f"frames shape must be a list of integers, got {_short(recorded)}")
            dtype = frames.get("dtype")
            if dtype is not None and not isinstance(dtype, str):
                raise PromptError(f"frames dtype must be a string, got {_short(dtype)}")
        limits = data.get("contrast_limits")
        if limits is not None and not isinstance(limits, list):
            raise PromptError(f"contrast_limits must be [low, high] or null, got {_short(limits)}")
        objects = data.get("objects")
        objects = [] if objects is None else objects
        if not isinstance(objects, list):
            raise PromptError(f"objects must be a list, got {_short(objects)}")
        lineage = None
        if data.get("lineage") is not None:
            try:
                lineage = Lineage.from_list(data["lineage"], "lineage")
            except LineageError as err:
                raise PromptError(str(err)) from None
        result = cls(
            objects=[],
            model=model,
            image_size=data.get("image_size"),
            frames_shape=None if recorded is None else tuple(recorded),
            frames_dtype=dtype,
            contrast_limits=None if limits is None else tuple(limits),  # type: ignore[arg-type]
            lineage=lineage,
        )
        # the header first: the frame size it records (or the caller's) bounds every mask
        if shape is not None:
            result.validate_against(shape)
        else:
            result.validate()
        masks = _MaskLimit(_frame_size(tuple(shape) if shape is not None else result.frames_shape))
        result.objects = [PromptedObject.from_dict(obj, i, masks) for i, obj in enumerate(objects)]
        if shape is not None:
            result.validate_against(shape)
        else:
            result.validate()
        return result

    def to_json(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the prompts (atomically); an existing file is only replaced with ``overwrite=True``."""
        path = check_output(path, overwrite)
        text = json.dumps(self.to_dict(), indent=1)
        with atomic_output(path, overwrite=overwrite) as temp:
            temp.write_text(text + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_json(cls, path: str | os.PathLike, shape: Sequence[int] | None = None) -> "PromptSet":
        """Read a prompt file; anything wrong with its content raises :class:`PromptError` naming it.

        ``shape``: the frames' shape, see :meth:`from_dict` (pass it: masks are then
        checked against the real frame size before they are decoded).
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FileNotFoundError(f"no such prompt file: {path}") from None
        except UnicodeDecodeError as err:
            raise PromptError(f"{path} is not valid JSON: {err}") from None
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, ValueError, RecursionError) as err:
            # ValueError: an integer of more than 4300 digits; RecursionError: absurd nesting
            detail = "nested too deeply" if isinstance(err, RecursionError) else str(err)
            raise PromptError(f"{path} is not valid JSON: {detail}") from None
        try:
            return cls.from_dict(data, shape)
        except PromptError as err:
            raise PromptError(f"{path}: {err}") from None

    # ------------------------------------------------------------------ replay
    def apply(self, session: Any, check: bool = True) -> int:
        """Replay every prompt into an engine session, by frame then object id.

        Uses the engine API: ``add_points(frame, obj_id, points=, labels=)``,
        ``add_box(frame, obj_id, box=[, points=, labels=])`` and
        ``add_mask(frame, obj_id, mask)``. With ``check`` the prompts are first
        validated against the session's frames when it exposes their shape.
        Returns the number of calls made.
        """
        if check:
            shape = _session_shape(session)
            if shape is not None:
                self.validate_against(shape)
            else:
                self.validate()
        calls = 0
        for obj, prompt in self.iter_prompts():
            points = [[float(r), float(c)] for r, c in prompt.points]
            if prompt.mask is not None:
                session.add_mask(prompt.frame, obj.id, prompt.mask)
            elif prompt.box is not None:
                box = tuple(float(v) for v in prompt.box)
                if points:
                    session.add_box(prompt.frame, obj.id, box=box, points=points, labels=list(prompt.labels))
                else:
                    session.add_box(prompt.frame, obj.id, box=box)
            else:
                session.add_points(prompt.frame, obj.id, points=points, labels=list(prompt.labels))
            calls += 1
        return calls


def _session_shape(session: Any) -> tuple[int, ...] | None:
    """The (T, H, W) of a session's frames, if it exposes them in a known way."""
    for owner in (session, getattr(session, "frames", None), getattr(session, "frame_source", None)):
        if owner is None:
            continue
        if all(isinstance(getattr(owner, a, None), (int, np.integer)) for a in ("num_frames", "height", "width")):
            return (int(owner.num_frames), int(owner.height), int(owner.width))
        shape = getattr(owner, "shape", None)
        if isinstance(shape, tuple) and len(shape) in (3, 4) and all(isinstance(s, (int, np.integer)) for s in shape):
            return tuple(int(s) for s in shape)
    return None
