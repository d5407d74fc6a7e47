"""Track everything in a file: the napari-free pipeline behind ``napari-sam2 track --auto``
and ``--seed-labels`` (and their batch form).

It is :func:`~.pipeline.track_file` for :func:`~.track_all.track_all`: everything cheap
(format, output, session file, input, prompts, frame range, the seed labels' shape,
emptiness and ids) is checked before the model is loaded, so a wrong request costs
nothing and writes nothing. Labels go frame by frame into a temporary zarr array next
to the output, the export receives the lineage (CTC ``res_track.txt`` parents, GEFF
division edges), and a session file that replays the run can be written beside it.

Track-all runs forward from the first frame of the range, where the seeds are.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ..io.lineage import Lineage
from .choice import ModelChoice
from .errors import UsageError, with_option
from .exports import Progress, check_destination, export_labels, resolve_format
from .labels import labels_dtype
from .pipeline import GuardedFrames, TrackOptions, TrackReport, build_model, close_stack, read_prompt_file
from .selection import resolve_range, select_frames
from .stores import LabelStore
from .track_all import TrackAllSettings, seed_plane

if TYPE_CHECKING:  # pragma: no cover
    from ..io.prompts import PromptSet
    from ..model.sam2 import Sam2
    from .models import LoadedModel

__all__ = ["TrackAllReport", "read_seed_labels", "track_all_file"]

_TRACK_IDS = int(np.iinfo(np.uint16).max)  # track-all ids stay within CTC's 16-bit labels


@dataclass(frozen=True)
class TrackAllReport(TrackReport):
    """What :func:`track_all_file` did: a :class:`TrackReport` (so batch and callers treat
    both alike) plus the numbers of the track-all run.

    ``object_frames`` counts the frames where each track has pixels; ``session`` is the
    session file written, if any.
    """

    lineage: Lineage = field(default_factory=Lineage)
    seeded: int = 0
    added: int = 0
    divisions: int = 0
    ended: int = 0
    detections: int = 0
    seconds_seeding: float = 0.0
    seconds_detecting: float = 0.0
    session: Path | None = None

    @property
    def tracks(self) -> int:
        return len(self.lineage)

    @property
    def seconds_per_detection(self) -> float:
        return self.seconds_detecting / self.detections if self.detections else 0.0

    def summary(self) -> str:
        """One line of counts and timings (the command line prints it)."""
        timing = f"seeding {self.seconds_seeding:.1f} s"
        if self.detections:
            timing += f", {self.seconds_per_detection:.2f} s per detection ({self.detections})"
        return (
            f"{self.tracks} tracks: {self.seeded} seeded, {self.added} new objects, {self.divisions} divisions, "
            f"{self.ended} ended; {timing}"
        )


def read_seed_labels(
    path: str | os.PathLike, num_frames: int, frame_shape: tuple[int, int], frame: int, taken: Sequence[int] = ()
) -> np.ndarray:
    """The checked seed labels for ``frame`` from a labels file.

    The file holds one (H, W) labels image, or a (T, H, W) stack with one plane per
    frame of the stack (e.g. a segmentation of every frame), of which the plane of
    ``frame`` is used. ``taken``: ids of the prompt file, which seeds must not reuse.
    Errors name the file; they come before any model is loaded.
    """
    from ..io.readers import check_readable, open_stack

    path = Path(path).expanduser()
    if not path.exists():
        raise with_option(FileNotFoundError(f"no such seed labels file: {path}"), "seed-labels")
    check_readable(path)
    array, metadata = open_stack(path)
    try:
        shape = tuple(int(s) for s in array.shape)
        if metadata.get("rgb"):
            raise UsageError(f"{path.name} is an RGB image; seed labels are one integer label per pixel", option="seed-labels")
        if len(shape) == 2:
            plane = np.array(array)
        elif len(shape) == 3 and shape[0] == 1:
            plane = np.array(array[0])
        elif len(shape) == 3 and shape[0] == num_frames:
            plane = np.array(array[frame])
        elif len(shape) == 3:
            raise UsageError(
                f"{path.name} holds {shape[0]} label planes, but the stack has {num_frames} frames; "
                "give one (H, W) labels image or one plane per frame",
                option="seed-labels",
            )
        else:
            raise UsageError(
                f"{path.name} has shape {shape}; seed labels are one (H, W) labels image or a (T, H, W) stack",
                option="seed-labels",
            )
    finally:
        close_stack(array)
    try:
        return seed_plane(plane, frame_shape, taken)
    except UsageError as err:
        raise UsageError(f"{path.name}: {err}", option="seed-labels") from None


class _CountingStore:
    """The label store as track-all's ``out``: writes each plane and notes which ids it
    holds, so the report can say how many frames each track has without reading the
    store back (a frame written again, when track-all revises it, is counted anew)."""

    def __init__(self, array: Any) -> None:
        self.array = array
        self.dtype = np.dtype(array.dtype)
        self.shape = tuple(array.shape)
        self.ids: dict[int, np.ndarray] = {}  # frame -> ids on it

    def __getitem__(self, index: Any) -> np.ndarray:  # track-all reads frames back to revise them
        return self.array[index]

    def __setitem__(self, index: int, plane: np.ndarray) -> None:
        self.array[index] = plane
        ids = np.unique(plane)
        self.ids[int(index)] = ids[ids > 0]

    def object_frames(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for ids in self.ids.values():
            for obj in ids.tolist():
                counts[obj] = counts.get(obj, 0) + 1
        return dict(sorted(counts.items()))


def track_all_file(
    input: str | os.PathLike,
    output: str | os.PathLike,
    *,
    auto: bool = False,
    seed_labels: str | os.PathLike | None = None,
    seed_frame: int | None = None,
    prompts: str | os.PathLike | None = None,
    settings: TrackAllSettings = TrackAllSettings(),
    format: str | None = None,
    model: "Sam2 | LoadedModel | ModelChoice | None" = None,
    options: TrackOptions = TrackOptions(),
    overwrite: bool = False,
    progress: Progress | None = None,
    notify: Callable[[str], None] | None = None,
    loader: "Callable[[ModelChoice], Sam2 | LoadedModel] | None" = None,
    warn: Callable[[str], None] | None = None,
    session_out: str | os.PathLike | None = None,
) -> TrackAllReport:
    """Track every object of a stack forward from the first frame of the range and export
    the labels with their lineage.

    Seeds on that frame: ``seed_labels`` (a labels file, see :func:`read_seed_labels`),
    else with ``auto`` automatic mask generation. ``auto`` also searches for new objects
    every ``settings.redetect_every`` frames (with seed labels too). ``prompts``: a
    prompt file whose objects are tracked with the rest (its ids must differ from the
    seeds'); a session file with a lineage is replayed. ``seed_frame``: the frame the
    seeds are on, where tracking starts (default: the first of ``options.frames``).
    ``session_out``: also write a session file that replays the run (masks where each
    track began, and the lineage). Model, ``notify``, ``warn``, ``loader`` and
    ``progress`` are as for :func:`~.pipeline.track_file`.
    """
    from ..io.readers import check_readable, open_stack
    from ..model.video import VideoSession
    from .track_all import AutomaticDetector, track_all

    began = time.perf_counter()
    say = notify or (lambda message: None)
    warned: list[str] = []

    def alert(message: str) -> None:
        warned.append(message)
        (warn or say)(message)

    if not auto and seed_labels is None and prompts is None:
        raise UsageError("nothing to track: give seed labels, automatic seeding or a prompt file", option="seeds")
    if options.direction == "backward":
        raise UsageError("track-all runs forward from the first frame of the range, not backward", option="direction")
    fmt = resolve_format(format, output)
    output = check_destination(output, fmt, overwrite)
    input = Path(input).expanduser()
    session_path = None
    if session_out is not None:
        session_path = Path(session_out).expanduser()
        if session_path.absolute() in (output.absolute(), input.absolute()):
            raise UsageError("the session file must not be the input or the output", option="session")
        if (session_path.exists() or session_path.is_symlink()) and not overwrite:
            raise with_option(
                FileExistsError(f"{session_path} already exists; it is replaced only when overwriting is asked for"), "overwrite"
            )
    check_readable(input)  # a damaged or cut-off file fails here, not after the model has loaded
    array, metadata = open_stack(input)
    try:
        selection = select_frames(array, metadata, options.axis, options.at)
        for note in selection.notes:
            say(note)
        prompt_set = None if prompts is None else read_prompt_file(prompts, selection.shape)
        num_frames = selection.shape[0]
        first, last = resolve_range(options.frames, num_frames)
        if seed_frame is not None:
            if options.frames is not None and options.frames[0] is not None and first != seed_frame:
                raise UsageError(
                    f"the seeds are on frame {seed_frame}, but the range starts on frame {first}; "
                    "track-all starts where the seeds are",
                    option="seed-frame",
                )
            if not 0 <= seed_frame <= last:
                raise UsageError(f"seed frame {seed_frame} is not within frames 0..{last}", option="seed-frame")
            first = seed_frame
        height, width = selection.shape[1:3]
        user_ids = [] if prompt_set is None else [obj.id for obj in prompt_set.objects]
        seeds = None
        if seed_labels is not None:
            seeds = read_seed_labels(seed_labels, num_frames, (height, width), first, user_ids)
        if prompt_set is not None:
            _check_prompt_frames(prompt_set, first, last, alert)
        net, description, used = build_model(model, prompt_set, progress, loader, say, alert)
        how = "seeds from " + Path(seed_labels).name if seed_labels is not None else "automatic seeds" if auto else "the prompts"
        if auto and seed_labels is not None:
            how += " and automatic detection"
        say(f"tracking everything in {selection.description}, forward over frames {first}-{last} ({how}), with {description}")
        limits = options.contrast_limits or (None if prompt_set is None else prompt_set.contrast_limits)
        dtype = labels_dtype(max([_TRACK_IDS, *user_ids]))
        with LabelStore((last - first + 1, height, width), dtype, options.temp_dir or output.parent, prefix=f".{output.name}.tracking-") as store:
            session = VideoSession(
                net,
                GuardedFrames(selection.frames, input.name),
                fill_hole_area=options.fill_holes,
                remove_area=options.remove_small,
                contrast_limits=None if limits is None else tuple(limits),  # type: ignore[arg-type]
                precision=options.precision,
                spill_dir=str(store.path),
            )
            out = _CountingStore(store.array)
            try:
                detector = AutomaticDetector(net, session.frames, settings, precision=options.precision) if auto else None
                result = track_all(
                    session, out, first, last, seeds=seeds, detector=detector, settings=settings,
                    prompts=prompt_set, progress=progress,
                )
                used_limits = session.frames.contrast_limits
            finally:
                session.close()
            if not result.lineage:
                alert("nothing was tracked: no object was found or kept (see min-size and the detection thresholds)")
            names = {} if prompt_set is None else {obj.id: obj.name for obj in prompt_set.objects if obj.name}
            export_labels(
                store.array, output, fmt, overwrite=overwrite, progress=progress, names=names,
                frame_offset=first, object_ids=result.lineage.ids, feather=options.feather, lineage=result.lineage,
            )
        if session_path is not None:
            saved = result.session_prompts(prompt_set)
            saved.model = used if _known_model(used) else None  # a factory's or a given model's name replays nothing
            saved.image_size = int(net.image_size)
            saved.frames_shape = tuple(selection.shape)
            saved.frames_dtype = str(np.dtype(selection.frames.dtype))
            saved.contrast_limits = None if used_limits is None else (float(used_limits[0]), float(used_limits[1]))
            saved.to_json(session_path, overwrite=overwrite)
    finally:
        close_stack(array)
    return TrackAllReport(
        input=input,
        output=output,
        format=fmt,
        frames=(first, last),
        frames_tracked=result.frames_tracked,
        object_frames=out.object_frames(),
        selection=selection.description,
        model=description,
        seconds=time.perf_counter() - began,
        model_name=used,
        warnings=tuple(warned),
        lineage=result.lineage,
        seeded=result.seeded,
        added=result.added,
        divisions=result.divisions,
        ended=result.ended,
        detections=result.detections,
        seconds_seeding=result.seconds_seeding,
        seconds_detecting=result.seconds_detecting,
        session=session_path,
    )


def _check_prompt_frames(prompts: "PromptSet", first: int, last: int, alert: Callable[[str], None]) -> None:
    """Say which prompts a forward run from ``first`` cannot use (they would silently do nothing)."""
    before = sorted({p.frame for obj in prompts.objects for p in obj.prompts if p.frame < first})
    after = sorted({p.frame for obj in prompts.objects for p in obj.prompts if p.frame > last})
    if before:
        alert(f"prompts on frames {_frames(before)} are not used: track-all runs forward from frame {first}")
    if after:
        alert(f"prompts on frames {_frames(after)} are not used: the range ends on frame {last}")


def _known_model(name: str | None) -> bool:
    from ..model.bundled import BUNDLED_MODELS
    from ..model.config import MODEL_NAMES

    return name is not None and (name in MODEL_NAMES or name in BUNDLED_MODELS)


def _frames(frames: list[int]) -> str:
    return ", ".join(map(str, frames[:8])) + (" ..." if len(frames) > 8 else "")
