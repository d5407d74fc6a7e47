"""The track-a-file pipeline: a stack on disk plus a prompt file in, an exported label stack out.

This is the napari-free pipeline behind ``napari-sam2 track`` and ``napari-sam2 batch``
(and usable from Python). It keeps memory flat for long stacks: frames are read lazily,
each propagated frame becomes one plane of object ids that is written at once into a
compressed temporary zarr array next to the output, and the chosen exporter then reads
that array frame by frame and writes the result atomically. An interrupted run leaves
no output that looks complete: the export appears only once it is whole, and the
temporary array is removed on any error.

Object ids are the label values. Where two objects' masks overlap, the pixel goes to
the object with the higher logit.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from .choice import ModelChoice
from .errors import describe_error
from .exports import Progress, check_destination, export_labels, resolve_format
from .labels import labels_dtype
from .plan import frames_covered, plan_passes
from .selection import resolve_range, select_frames
from .stores import FrameWriter, LabelStore

if TYPE_CHECKING:  # pragma: no cover
    from ..io.prompts import PromptSet
    from ..model.sam2 import Sam2
    from .models import LoadedModel

__all__ = [
    "read_prompt_file", "GuardedFrames", "TrackStats", "track_frames", "TrackOptions", "TrackReport", "track_file", "build_model",
]


def read_prompt_file(path: str | os.PathLike, shape: Sequence[int] | None = None) -> "PromptSet":
    """Read a prompt file and check it against frames of ``shape``; errors name the file."""
    from ..io.prompts import PromptError, PromptSet

    path = Path(path).expanduser()
    prompts = PromptSet.from_json(path)
    if not prompts.objects or not any(obj.prompts for obj in prompts.objects):
        raise PromptError(f"{path.name}: the file has no prompts (no object has a click, box or mask)")
    if shape is not None:
        try:
            prompts.validate_against(shape)
        except PromptError as err:
            raise PromptError(f"{path.name}: {err}") from None
    return prompts


class GuardedFrames:
    """Frames whose read errors name the file and the frame (a corrupt or truncated stack
    often fails only when a damaged frame is reached, deep inside the tracking)."""

    def __init__(self, frames: Any, name: str) -> None:
        self._frames = frames
        self._name = name
        self.shape = tuple(int(s) for s in frames.shape)
        self.dtype = np.dtype(frames.dtype)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        try:
            return np.asarray(self._frames[key])
        except IndexError:
            raise
        except Exception as err:
            raise OSError(f"cannot read frame {key} of {self._name}: {describe_error(err)}") from err

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        try:
            data = np.asarray(self._frames)
        except Exception as err:
            raise OSError(f"cannot read {self._name}: {describe_error(err)}") from err
        return data if dtype is None else data.astype(dtype)


@dataclass
class TrackStats:
    """What a tracking run produced."""

    frames_tracked: int = 0
    object_frames: dict[int, int] = field(default_factory=dict)  # object id -> frames where it has a mask


def track_frames(
    session: Any,
    prompts: "PromptSet",
    out: Any,
    first: int,
    last: int,
    direction: str = "both",
    progress: Progress | None = None,
) -> TrackStats:
    """Replay ``prompts`` into ``session`` and write frames first..last into ``out`` as labels.

    ``out[t - first]`` receives frame ``t``. Frames a pass does not reach stay 0.
    """
    calls = sum(len(obj.prompts) for obj in prompts.objects)
    done = 0

    class _Counted:  # counts prompt calls for the progress bar
        def add_points(self, *a: Any, **k: Any) -> Any:
            return self._step(session.add_points(*a, **k))

        def add_box(self, *a: Any, **k: Any) -> Any:
            return self._step(session.add_box(*a, **k))

        def add_mask(self, *a: Any, **k: Any) -> Any:
            return self._step(session.add_mask(*a, **k))

        def _step(self, result: Any) -> Any:
            nonlocal done
            done += 1
            if progress is not None:
                progress("prompts", done, calls)
            return result

    prompts.apply(_Counted(), check=False)
    prompted = sorted({p.frame for obj in prompts.objects for p in obj.prompts})
    passes = plan_passes(prompted, first, last, direction)
    total = frames_covered(passes)
    writer = FrameWriter(out, first, [obj.id for obj in prompts.objects])
    step = 0
    try:
        for start, reverse, max_frames in passes:
            frames = session.propagate(start=start, reverse=reverse, max_frames=max_frames)
            try:
                for frame, outputs in frames:
                    if not first <= frame <= last:
                        break
                    writer.put(frame, outputs)
                    step += 1
                    if progress is not None:
                        progress("track", step, total)
            finally:
                frames.close()
    finally:
        writer.close()
    return TrackStats(len(writer.written), {obj: len(f) for obj, f in sorted(writer.seen.items())})


@dataclass(frozen=True)
class TrackOptions:
    """How to track and export; every field has the command line's default.

    ``frames``: (start, end) with end exclusive, as ``parse_frame_range`` returns.
    ``axis``/``at``: see :func:`select_frames`. ``fill_holes``/``remove_small``: areas in
    pixels at the model's mask resolution. ``contrast_limits``: None takes the prompt
    file's, else a robust estimate. ``feather``: soft matte edge (mattes only).
    ``precision``: 'auto', 'float32' or 'bfloat16' (see the engine's session).
    ``temp_dir``: where the temporary label array goes (default: next to the output).
    """

    direction: str = "both"
    frames: tuple[int | None, int | None] | None = None
    axis: str | int | None = None
    at: Mapping[str, int] | None = None
    fill_holes: int = 8  # Meta's video predictor default (fill_hole_area=8)
    remove_small: int = 0
    contrast_limits: tuple[float, float] | None = None
    feather: float = 0.0
    precision: str = "auto"
    temp_dir: str | None = None


@dataclass(frozen=True)
class TrackReport:
    """What :func:`track_file` did."""

    input: Path
    output: Path
    format: str
    frames: tuple[int, int]  # first and last input frame exported (inclusive)
    frames_tracked: int
    object_frames: dict[int, int]
    selection: str
    model: str
    seconds: float
    model_name: str | None = None  # the model that really ran ("demo" after a fallback)
    warnings: tuple[str, ...] = ()  # what the user was warned about (e.g. the demo fallback)


def track_file(
    input: str | os.PathLike,
    prompts: str | os.PathLike,
    output: str | os.PathLike,
    *,
    format: str | None = None,
    model: "Sam2 | LoadedModel | ModelChoice | None" = None,
    options: TrackOptions = TrackOptions(),
    overwrite: bool = False,
    progress: Progress | None = None,
    notify: Callable[[str], None] | None = None,
    loader: "Callable[[ModelChoice], Sam2 | LoadedModel] | None" = None,
    warn: Callable[[str], None] | None = None,
) -> TrackReport:
    """Track the objects of a prompt file through a stack and export the labels.

    Everything that can be checked cheaply (format, output, input, prompts, frame
    range) is checked before the model is loaded. ``model`` is a built model (or a
    :class:`~.models.LoadedModel`) or a :class:`ModelChoice` (default: ``ModelChoice()``),
    which is completed from the prompt file and built with ``loader`` (default
    :meth:`.models.LoadedModel.load`, which falls back to the bundled demo model when
    official weights cannot be downloaded; batch workers pass a per-process cache).
    ``notify`` receives one-line notes for the user, ``warn`` (default: ``notify``)
    what the user must see, such as that fallback.
    """
    from ..io.readers import check_readable, open_stack
    from ..model.video import VideoSession

    began = time.perf_counter()
    say = notify or (lambda message: None)
    warned: list[str] = []

    def alert(message: str) -> None:
        warned.append(message)
        (warn or say)(message)

    fmt = resolve_format(format, output)
    output = check_destination(output, fmt, overwrite)
    input = Path(input).expanduser()
    check_readable(input)  # a damaged or cut-off file fails here, not after the model has loaded
    array, metadata = open_stack(input)
    try:
        selection = select_frames(array, metadata, options.axis, options.at)
        for note in selection.notes:
            say(note)
        prompt_set = read_prompt_file(prompts, selection.shape)
        first, last = resolve_range(options.frames, selection.shape[0])
        net, description, used = build_model(model, prompt_set, progress, loader, say, alert)
        say(f"tracking {selection.description}, frames {first}-{last}, with {description}")
        limits = options.contrast_limits or prompt_set.contrast_limits
        ids = [obj.id for obj in prompt_set.objects]
        dtype = labels_dtype(max(ids))
        height, width = selection.shape[1:3]
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
            try:
                stats = track_frames(session, prompt_set, store.array, first, last, options.direction, progress)
            finally:
                session.close()
            names = {obj.id: obj.name for obj in prompt_set.objects if obj.name}
            export_labels(
                store.array, output, fmt, overwrite=overwrite, progress=progress, names=names,
                frame_offset=first, object_ids=ids, feather=options.feather,
            )
    finally:
        close_stack(array)
    return TrackReport(
        input=input,
        output=output,
        format=fmt,
        frames=(first, last),
        frames_tracked=stats.frames_tracked,
        object_frames=stats.object_frames,
        selection=selection.description,
        model=description,
        seconds=time.perf_counter() - began,
        model_name=used,
        warnings=tuple(warned),
    )


def build_model(
    model: "Sam2 | LoadedModel | ModelChoice | None",
    prompts: "PromptSet | None",
    progress: Progress | None,
    loader: "Callable[[ModelChoice], Sam2 | LoadedModel] | None",
    say: Callable[[str], None],
    alert: Callable[[str], None],
) -> "tuple[Sam2, str, str | None]":
    """The network to run, its description for the user and the model name that really
    ran; shared by the pipelines so that model choice, fallback and warnings agree."""
    from ..model.sam2 import Sam2
    from .models import LoadedModel

    if isinstance(model, Sam2):
        net, description, used = model, f"{model.config.name} (given)", model.config.name
    elif isinstance(model, LoadedModel):
        net, description, used = model.model, model.choice.describe(), model.choice.name
        if model.warning:
            alert(model.warning)
    else:
        choice = (model or ModelChoice()).resolved(prompts)
        if prompts is not None and prompts.model and choice.name and choice.factory is None and choice.name != prompts.model:
            say(f"the prompts were made with {prompts.model}; tracking with {choice.name}")
        built = (loader or (lambda c: _load(c, progress)))(choice)
        if isinstance(built, LoadedModel):
            if built.warning:
                alert(built.warning)
            net, choice = built.model, built.choice
        else:
            net = built
        description, used = choice.describe(), choice.name or getattr(getattr(net, "config", None), "name", None)
    description += f" on {net.device.type} at {net.image_size} px"
    return net, description, used


def close_stack(array: Any) -> None:
    """Release what :func:`~napari_sam2.io.readers.open_stack` opened, if it holds anything."""
    close = getattr(array, "close", None)
    if callable(close):
        close()


def _load(choice: ModelChoice, progress: Progress | None) -> "LoadedModel":
    from .models import LoadedModel

    callback = None if progress is None else (lambda done, total: progress("download", done, total))
    return LoadedModel.load(choice, callback)
