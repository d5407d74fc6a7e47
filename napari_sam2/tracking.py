"""Headless tracking: a stack on disk plus a prompt file in, an exported label stack out.

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
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .io.prompts import PromptSet
    from .model.sam2 import Sam2

__all__ = [
    "FORMATS",
    "DIRECTIONS",
    "UsageError",
    "SetupError",
    "Progress",
    "ModelChoice",
    "TrackOptions",
    "TrackReport",
    "FrameSelection",
    "resolve_format",
    "output_name",
    "check_destination",
    "parse_frame_range",
    "select_frames",
    "load_prompts",
    "load_model",
    "resolve_factory",
    "plan_passes",
    "logits_to_labels",
    "LabelStore",
    "track_frames",
    "export_labels",
    "track_file",
    "describe_error",
]

FORMATS: dict[str, str] = {
    "tiff": "one compressed multi-page TIFF of labels (T, H, W)",
    "ctc": "a Cell Tracking Challenge result folder (maskTTT.tif + res_track.txt)",
    "coco": "one COCO JSON file with an RLE annotation per object and frame",
    "mattes": "a folder of per-object PNG alpha mattes (<id>/<frame>.png)",
}
_FOLDER_FORMATS = ("ctc", "mattes")
_OUTPUT_SUFFIX = {"tiff": ".labels.tif", "ctc": "_RES", "coco": ".coco.json", "mattes": "_mattes"}
DIRECTIONS = ("both", "forward", "backward")

Progress = Callable[[str, int, int], None]
"""Progress callback ``(stage, done, total)``; stages: 'download' (bytes), 'prompts',
'track' and 'export' (frames)."""


class UsageError(ValueError):
    """The request itself is wrong (an option value, a format, an axis): fix the command."""


class SetupError(RuntimeError):
    """This machine cannot do what was asked (e.g. a GPU that is not there)."""


# ----------------------------------------------------------------------------- formats
def resolve_format(fmt: str | None, output: str | os.PathLike) -> str:
    """The export format: ``fmt`` if given, else guessed from the output name.

    A ``.tif``/``.tiff`` name means 'tiff', ``.json`` means 'coco'; folders (CTC, mattes)
    need an explicit format. A name that clearly belongs to another format is refused,
    since writing a folder called ``out.tif`` is never what was meant.
    """
    name = Path(output).name.lower()
    guessed = "tiff" if name.endswith((".tif", ".tiff")) else "coco" if name.endswith(".json") else None
    if fmt is None:
        if guessed is None:
            raise UsageError(
                f"cannot tell the export format from the output name {Path(output).name!r}; "
                f"choose one with --format ({', '.join(FORMATS)})"
            )
        return guessed
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if guessed is not None and guessed != fmt:
        kind = "a TIFF file" if guessed == "tiff" else "a JSON file"
        raise UsageError(f"the output {Path(output).name!r} looks like {kind}, but the format is {fmt!r}")
    return fmt


def output_name(stem: str, fmt: str) -> str:
    """Default output name for an input stem: 'a.labels.tif', 'a_RES', 'a.coco.json', 'a_mattes'."""
    return stem + _OUTPUT_SUFFIX[fmt]


def check_destination(output: str | os.PathLike, fmt: str, overwrite: bool) -> Path:
    """Refuse an output that would be refused at export time, before any tracking work.

    The exporters check again when they write; this only moves the error to the start.
    """
    from .io.ctc import _is_ctc_folder
    from .io.mattes import _is_matte_folder

    path = Path(output).expanduser()
    if not (path.exists() or path.is_symlink()):
        return path
    folder = fmt in _FOLDER_FORMATS
    if folder and path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
        return path  # an empty folder holds nothing to lose
    if not overwrite:
        raise FileExistsError(f"{path} already exists; use --overwrite (overwrite=True) to replace it")
    if path.is_dir() != folder or path.is_symlink():
        kind = "folder" if path.is_dir() else "file"
        raise FileExistsError(f"{path} exists and is a {kind}; refusing to replace it with a {fmt} export")
    if folder:
        ours = _is_ctc_folder if fmt == "ctc" else _is_matte_folder
        if not ours(path):
            raise FileExistsError(
                f"{path} is a folder with other content; refusing to replace it. Choose a new or empty folder."
            )
    return path


# ----------------------------------------------------------------------------- frames
def parse_frame_range(text: str | None) -> tuple[int | None, int | None] | None:
    """'START:END' (END exclusive, either side optional) or a single frame 'N'."""
    if text is None or text.strip() in ("", ":"):
        return None
    try:
        if ":" not in text:
            index = int(text)
            return index, index + 1
        start, end = text.split(":", 1)
        return (int(start) if start.strip() else None, int(end) if end.strip() else None)
    except ValueError:
        raise UsageError(f"--frames must look like START:END (e.g. 0:100, 50:, :20) or one frame, got {text!r}") from None


def _resolve_range(frame_range: tuple[int | None, int | None] | None, num_frames: int) -> tuple[int, int]:
    """Inclusive (first, last) of a START:END range; negative values count from the end."""
    if frame_range is None:
        return 0, num_frames - 1
    start, end = frame_range
    lo = 0 if start is None else (start + num_frames if start < 0 else start)
    stop = num_frames if end is None else (end + num_frames if end < 0 else end)
    if not 0 <= lo < num_frames or not lo < stop <= num_frames:
        shown = f"{'' if start is None else start}:{'' if end is None else end}"
        raise UsageError(f"the frame range {shown} is empty or outside the stack ({num_frames} frames, 0..{num_frames - 1})")
    return lo, stop - 1


@dataclass(frozen=True)
class FrameSelection:
    """Frames (T, H, W[, C]) picked out of an n-D stack, and how they were picked."""

    frames: Any
    shape: tuple[int, ...]  # (T, H, W) or (T, H, W, C); T = 1 for a single image
    description: str
    notes: tuple[str, ...] = ()


class _AxisView:
    """Read-only (T, H, W[, C]) view of an n-D array-like, reading one plane per index."""

    def __init__(self, data: Any, axis: int, fixed: Mapping[int, int], shape: tuple[int, ...]) -> None:
        self._data = data
        self._axis = axis
        self._fixed = dict(fixed)
        spatial = shape[len(fixed) + 1 :]
        self.shape = (shape[axis], *spatial)
        self.dtype = np.dtype(data.dtype)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            return np.stack([self[i] for i in range(*key.indices(self.shape[0]))])
        index = int(key)
        if index < 0:
            index += self.shape[0]
        if not 0 <= index < self.shape[0]:
            raise IndexError(f"frame {key} is outside 0..{self.shape[0] - 1}")
        where = [self._fixed.get(a, index if a == self._axis else slice(None)) for a in range(len(self._fixed) + 1)]
        return np.asarray(self._data[tuple(where)])


class _Guarded:
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


def select_frames(
    array: Any, metadata: Mapping[str, Any], axis: str | int | None = None, at: Mapping[str, int] | None = None
) -> FrameSelection:
    """Walk one axis (time or z) of an n-D stack and hold every other stack axis at one index.

    ``axis`` is an axis letter from the file ('T', 'Z', ...) or an index; by default the
    time axis, else z, else the first stack axis. ``at`` holds other axes, e.g.
    ``{'Z': 3}`` (letters or indices as strings); unnamed ones are held at 0 with a note.
    """
    shape = tuple(int(s) for s in array.shape)
    axes = str(metadata.get("axes") or "")
    rgb = bool(metadata.get("rgb"))
    spatial = 3 if rgb else 2
    if len(axes) != len(shape):
        axes = "Q" * (len(shape) - spatial) + "YXS"[:spatial]
    stack_axes = list(range(len(shape) - spatial))
    names = axes.upper()

    def resolve(key: str | int, what: str) -> int:
        text = str(key).strip()
        if text.lstrip("-").isdigit():
            index = int(text)
            if not -len(shape) <= index < len(shape):
                raise UsageError(f"{what} {text} does not exist: the stack has {len(shape)} axes ({axes}, shape {shape})")
            index %= len(shape)
        elif len(text) == 1 and text.upper() in names:
            if names.count(text.upper()) > 1:
                raise UsageError(f"axis letter {text!r} is ambiguous in {axes}; give the axis index instead")
            index = names.index(text.upper())
        else:
            raise UsageError(f"{what} {text!r} not found: the stack has axes {axes} (shape {shape})")
        if index not in stack_axes:
            raise UsageError(f"{what} {text!r} is a spatial or colour axis of {axes}; choose one of {_describe_axes(axes, shape, stack_axes)}")
        return index

    if axis is not None:
        tracked: int | None = resolve(axis, "axis")
    elif not stack_axes:
        tracked = None
    else:
        guess = metadata.get("frame_axis")
        tracked = guess if guess in stack_axes else stack_axes[0]
    held: dict[int, int] = {}
    for key, value in (at or {}).items():
        index = resolve(key, "axis")
        if index == tracked:
            raise UsageError(f"axis {axes[index]} is the tracked axis; it cannot also be held at {value}")
        if not 0 <= int(value) < shape[index]:
            raise UsageError(f"index {value} is outside axis {axes[index]} (0..{shape[index] - 1})")
        held[index] = int(value)
    notes = []
    for a in stack_axes:
        if a != tracked and a not in held:
            held[a] = 0
            if shape[a] > 1:
                notes.append(f"holding axis {axes[a]} at index 0 of {shape[a]} (choose another with --at {axes[a]}=INDEX)")
    plane = shape[len(shape) - spatial :]
    if tracked is None:
        return FrameSelection(array, (1, *plane), "a single image", tuple(notes))
    out_shape = (shape[tracked], *plane)
    frames = array if (tracked == 0 and not held) else _AxisView(array, tracked, held, shape)
    description = f"axis {axes[tracked]} ({shape[tracked]} frames)"
    if held:
        description += " at " + ", ".join(f"{axes[a]}={i}" for a, i in sorted(held.items()))
    return FrameSelection(frames, out_shape, description, tuple(notes))


def _describe_axes(axes: str, shape: tuple[int, ...], indices: Sequence[int]) -> str:
    return ", ".join(f"{axes[i]} ({shape[i]})" for i in indices) or "none (a single image)"


# ----------------------------------------------------------------------------- prompts
def load_prompts(path: str | os.PathLike, shape: Sequence[int] | None = None) -> "PromptSet":
    """Read a prompt file and check it against frames of ``shape``; errors name the file."""
    from .io.prompts import PromptError, PromptSet

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


# ----------------------------------------------------------------------------- model
@dataclass(frozen=True)
class ModelChoice:
    """Which model to run; picklable, so batch workers can build it themselves.

    ``name``: an official variant; ``None`` takes the one recorded in the prompt file,
    else sam2.1_hiera_base_plus on a GPU and sam2.1_hiera_tiny elsewhere.
    ``checkpoint``: ``"official"`` (cached, downloaded on first use), a ``.pt`` path
    (its variant is read from the weights), or ``None`` for untrained weights.
    ``factory``: instead of all that, a callable or a ``"module:function"`` /
    ``"file.py:function"`` spec returning a model (custom or fine-tuned architectures);
    it is called with ``image_size=`` when one is set.
    ``image_size``: ``None`` takes the prompt file's, else the model's own (1024).
    ``torch_threads``: CPU threads for torch (``None`` leaves torch's default).
    ``quantize``: ``"int8"`` for the approximate, faster CPU mode (see the README).
    """

    name: str | None = None
    checkpoint: str | None = "official"
    factory: str | Callable[..., Any] | None = None
    device: str | None = None
    image_size: int | None = None
    torch_threads: int | None = None
    quantize: str | None = None

    def resolved(self, prompts: "PromptSet | None" = None) -> "ModelChoice":
        """Fill the unset name and input size from the prompt file and the device."""
        choice = self
        if choice.factory is None and choice.name is None and not _is_path(choice.checkpoint):
            default = prompts.model if prompts is not None and prompts.model else None
            if default is None:
                default = "sam2.1_hiera_base_plus" if _device(choice.device).type == "cuda" else "sam2.1_hiera_tiny"
            choice = replace(choice, name=default)
        if choice.image_size is None and prompts is not None and prompts.image_size:
            choice = replace(choice, image_size=int(prompts.image_size))
        return choice

    def key(self) -> tuple:
        """Identifies the model to build (for per-process caches)."""
        factory = self.factory
        if callable(factory):
            qualname = getattr(factory, "__qualname__", "")
            factory = f"{getattr(factory, '__module__', '')}:{qualname}" if "<" not in qualname else f"id:{id(factory)}"
        return (self.name, self.checkpoint, factory, self.device, self.image_size, self.quantize)

    def describe(self) -> str:
        if self.factory is not None:
            what = self.factory if isinstance(self.factory, str) else getattr(self.factory, "__qualname__", "factory")
            return f"model from {what}"
        weights = "official weights" if self.checkpoint == "official" else "untrained weights" if self.checkpoint is None else Path(str(self.checkpoint)).name
        return f"{self.name or 'auto'} ({weights})"


def _is_path(checkpoint: str | None) -> bool:
    return checkpoint is not None and checkpoint != "official"


def _device(device: str | None) -> Any:
    """A torch device: the best available one for None/'auto', else the one named."""
    import torch

    from .model.checkpoint import default_device

    if device is None or device == "auto":
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SetupError(f"device {device!r} was requested, but torch sees no CUDA GPU on this machine")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise SetupError(f"device {device!r} was requested, but Apple MPS is not available on this machine")
    return dev


def resolve_factory(spec: str | Callable[..., Any]) -> Callable[..., Any]:
    """The callable named by ``"package.module:function"`` or ``"path/to/file.py:function"``."""
    if callable(spec):
        return spec
    import importlib
    import importlib.util

    module_name, sep, attr = str(spec).rpartition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"a model factory must look like 'package.module:function' or 'file.py:function', got {spec!r}")
    if module_name.endswith(".py"):
        path = Path(module_name).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"model factory file not found: {path}")
        loader_spec = importlib.util.spec_from_file_location(f"_napari_sam2_factory_{path.stem}", path)
        assert loader_spec is not None and loader_spec.loader is not None
        module = importlib.util.module_from_spec(loader_spec)
        loader_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise UsageError(f"cannot import the model factory module {module_name!r}: {err}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UsageError(f"{module_name} has no callable {attr!r}")
    return factory


def load_model(
    choice: ModelChoice,
    progress: Progress | None = None,
    notify: Callable[[str], None] | None = None,
) -> "Sam2":
    """Build the model ``choice`` describes (call :meth:`ModelChoice.resolved` first)."""
    if choice.quantize not in (None, "int8"):
        raise UsageError(f"unknown quantization {choice.quantize!r}; the only one is int8")
    if choice.quantize and _device(choice.device).type != "cpu":
        raise UsageError("int8 quantization is a CPU mode; on a GPU leave it out (bfloat16 is used there)")
    model = _load_float_model(choice, progress)
    if choice.quantize:
        from .model.quantize import quantize_int8

        model = quantize_int8(model)
    return model


def _load_float_model(choice: ModelChoice, progress: Progress | None) -> "Sam2":
    import torch

    from .model import build_sam2
    from .model.checkpoint import CheckpointError, download_checkpoint, read_state_dict
    from .model.sam2 import Sam2, matching_variants

    device = _device(choice.device)
    if choice.torch_threads:
        torch.set_num_threads(int(choice.torch_threads))
    if choice.factory is not None:
        factory = resolve_factory(choice.factory)
        kwargs = {} if choice.image_size is None else {"image_size": int(choice.image_size)}
        model = factory(**kwargs)
        if not isinstance(model, Sam2):
            raise TypeError(f"the model factory returned {type(model).__name__}, not a SAM 2 model built with build_sam2")
        return model.to(device)
    if choice.checkpoint is None or choice.checkpoint == "official":
        if choice.name is None:
            raise UsageError("no model name given")
        path = None
        if choice.checkpoint == "official":
            callback = None if progress is None else (lambda done, total: progress("download", done, total))
            path = download_checkpoint(choice.name, progress=callback or False)
        return build_sam2(choice.name, checkpoint=path, device=device, image_size=choice.image_size)
    path = Path(choice.checkpoint).expanduser()
    state = read_state_dict(path)
    fits = matching_variants(state)
    if not fits:
        raise CheckpointError(f"{path.name} is not a SAM 2 or SAM 2.1 checkpoint: its weights match none of the official variants")
    name = fits[0]
    if choice.name is not None and choice.name not in fits:
        raise CheckpointError(f"{path.name} holds {name} weights, not {choice.name}; drop --model or pass --model {name}")
    model = build_sam2(name, checkpoint=None, device=device, image_size=choice.image_size)
    model.load_official_state_dict(state, source=str(path))
    model.eval()
    return model


# ----------------------------------------------------------------------------- tracking
def plan_passes(prompted: Sequence[int], first: int, last: int, direction: str) -> list[tuple[int, bool, int]]:
    """Propagation passes ``(start, reverse, max_frames)`` covering frames first..last.

    Forward starts at the earliest prompted frame in the range and runs to ``last``;
    backward starts at the latest one ('backward') or, for 'both', at the earliest, so
    that every frame of the range is tracked exactly once and frames between prompts
    see all of them (SAM 2 attends to every prompted frame). Without a prompt in the
    range, passes start at its edge and are guided by the prompts outside it.
    """
    if direction not in DIRECTIONS:
        raise UsageError(f"unknown direction {direction!r}; choose one of: {', '.join(DIRECTIONS)}")
    inside = sorted({f for f in prompted if first <= f <= last})
    earliest = inside[0] if inside else first
    latest = inside[-1] if inside else last
    passes: list[tuple[int, bool, int]] = []
    if direction in ("forward", "both"):
        passes.append((earliest, False, last - earliest))
    if direction in ("backward", "both"):
        start = earliest if direction == "both" else latest
        if start > first:
            passes.append((start, True, start - first))
        elif not passes:  # walking back from the range's first frame covers just that frame
            passes.append((start, False, 0))
    return passes


def logits_to_labels(outputs: Mapping[int, np.ndarray], shape: tuple[int, int], dtype: Any = np.uint16) -> np.ndarray:
    """One plane of object ids: each pixel goes to the object with the highest positive logit."""
    plane = np.zeros(shape, dtype=dtype)
    if not outputs:
        return plane
    ids = sorted(outputs)
    if len(ids) == 1:
        plane[np.asarray(outputs[ids[0]]) > 0] = ids[0]
        return plane
    stack = np.stack([np.asarray(outputs[i], dtype=np.float32) for i in ids])
    best = stack.argmax(axis=0)
    claimed = np.take_along_axis(stack, best[None], axis=0)[0] > 0
    plane[claimed] = np.asarray(ids, dtype=dtype)[best[claimed]]
    return plane


class LabelStore:
    """A compressed (T, H, W) zarr array in a hidden temporary folder; removed by :meth:`close`.

    One chunk per frame, so writing a frame and reading it back touch only that frame,
    and frames never written read as 0.
    """

    def __init__(self, shape: tuple[int, int, int], dtype: Any, directory: str | os.PathLike | None = None, prefix: str = ".napari-sam2-") -> None:
        import zarr

        if directory is not None:
            Path(directory).mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=directory))
        try:
            self.array = zarr.open_array(
                str(self.path / "labels.zarr"), mode="w", shape=shape, chunks=(1, *shape[1:]), dtype=dtype, fill_value=0
            )
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> "LabelStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
    total = sum(n + 1 for _, _, n in passes)
    writer = _FrameWriter(out, first, [obj.id for obj in prompts.objects])
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


class _FrameWriter:
    """Turns each frame's logits into a label plane and writes it, on one background thread.

    Conversion and compression of frame t then overlap the model's work on frame t + 1.
    At most ``depth`` frames wait in the queue, so memory stays bounded; an error on the
    thread is raised by the next :meth:`put` or by :meth:`close`.
    """

    def __init__(self, out: Any, first: int, obj_ids: Sequence[int], depth: int = 2) -> None:
        import queue
        import threading

        self._out = out
        self._first = first
        self._dtype = np.dtype(out.dtype)
        self._shape = tuple(int(s) for s in out.shape[1:3])
        self.seen: dict[int, set[int]] = {obj: set() for obj in obj_ids}
        self.written: set[int] = set()
        self._queue: "queue.Queue[tuple[int, Mapping[int, np.ndarray]] | None]" = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._abort = False
        self._thread = threading.Thread(target=self._run, name="napari-sam2-labels", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None or self._abort:
                return
            frame, outputs = item
            try:
                self._out[frame - self._first] = logits_to_labels(outputs, self._shape, self._dtype)  # type: ignore[arg-type]
                for obj, logits in outputs.items():
                    present = self.seen.setdefault(obj, set())
                    if (np.asarray(logits) > 0).any():
                        present.add(frame)
                    else:
                        present.discard(frame)
                self.written.add(frame)
            except BaseException as err:  # handed to the caller's thread
                self._error = err
                return

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, frame: int, outputs: Mapping[int, np.ndarray]) -> None:
        import queue

        while True:
            self._check()
            try:
                self._queue.put((frame, outputs), timeout=0.2)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    self._check()
                    raise RuntimeError("the label writer stopped unexpectedly")

    def close(self) -> None:
        """Wait for the queued frames (all of them after success, none after an error)."""
        import sys

        failing = sys.exc_info()[0] is not None
        self._abort = failing
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.2)
                break
            except Exception:
                continue
        self._thread.join()
        if not failing:
            self._check()


def export_labels(
    labels: Any,
    output: str | os.PathLike,
    fmt: str,
    overwrite: bool = False,
    progress: Progress | None = None,
    names: Mapping[int, str] | None = None,
    frame_offset: int = 0,
    object_ids: Sequence[int] | None = None,
    feather: float = 0.0,
) -> Path:
    """Write a (T, H, W) label stack with the exporter for ``fmt`` (atomically)."""
    from .io.coco import write_coco_rle
    from .io.ctc import write_ctc
    from .io.labels_tiff import write_labels_tiff
    from .io.mattes import write_mattes

    callback = None if progress is None else (lambda done, total: progress("export", done, total))
    num_frames = int(labels.shape[0])
    if fmt == "tiff":
        return write_labels_tiff(output, labels, overwrite=overwrite, progress=callback)
    if fmt == "ctc":
        return write_ctc(output, labels, overwrite=overwrite, progress=callback).path
    if fmt == "coco":
        image_names = [f"frame_{frame_offset + t:05d}" for t in range(num_frames)]
        return write_coco_rle(output, labels, names=names, image_names=image_names, overwrite=overwrite, progress=callback)
    if fmt == "mattes":
        write_mattes(output, labels, obj_ids=object_ids, feather=feather, overwrite=overwrite, progress=callback)
        return Path(output)
    raise UsageError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")


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
    fill_holes: int = 0
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


def track_file(
    input: str | os.PathLike,
    prompts: str | os.PathLike,
    output: str | os.PathLike,
    *,
    format: str | None = None,
    model: "Sam2 | ModelChoice | None" = None,
    options: TrackOptions = TrackOptions(),
    overwrite: bool = False,
    progress: Progress | None = None,
    notify: Callable[[str], None] | None = None,
    loader: Callable[[ModelChoice], "Sam2"] | None = None,
) -> TrackReport:
    """Track the objects of a prompt file through a stack and export the labels.

    Everything that can be checked cheaply (format, output, input, prompts, frame
    range) is checked before the model is loaded. ``model`` is a built model or a
    :class:`ModelChoice` (default: ``ModelChoice()``), which is completed from the
    prompt file and built with ``loader`` (default :func:`load_model`; batch workers
    pass a per-process cache). ``notify`` receives one-line notes for the user.
    """
    from .io.readers import open_stack
    from .model.sam2 import Sam2
    from .model.video import VideoSession

    began = time.perf_counter()
    say = notify or (lambda message: None)
    fmt = resolve_format(format, output)
    output = check_destination(output, fmt, overwrite)
    input = Path(input).expanduser()
    array, metadata = open_stack(input)
    try:
        selection = select_frames(array, metadata, options.axis, options.at)
        for note in selection.notes:
            say(note)
        prompt_set = load_prompts(prompts, selection.shape)
        first, last = _resolve_range(options.frames, selection.shape[0])
        if isinstance(model, Sam2):
            net, description = model, f"{model.config.name} (given)"
        else:
            choice = (model or ModelChoice()).resolved(prompt_set)
            if prompt_set.model and choice.name and choice.factory is None and choice.name != prompt_set.model:
                say(f"the prompts were made with {prompt_set.model}; tracking with {choice.name}")
            net = (loader or (lambda c: load_model(c, progress, notify)))(choice)
            description = choice.describe()
        description += f" on {net.device.type} at {net.image_size} px"
        say(f"tracking {selection.description}, frames {first}-{last}, with {description}")
        limits = options.contrast_limits or prompt_set.contrast_limits
        ids = [obj.id for obj in prompt_set.objects]
        dtype = np.uint16 if max(ids) <= np.iinfo(np.uint16).max else np.uint32
        height, width = selection.shape[1:3]
        with LabelStore((last - first + 1, height, width), dtype, options.temp_dir or output.parent, prefix=f".{output.name}.tracking-") as store:
            session = VideoSession(
                net,
                _Guarded(selection.frames, input.name),
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
        close = getattr(array, "close", None)
        if callable(close):
            close()
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
    )


# ----------------------------------------------------------------------------- errors
def expected_errors() -> tuple[type[BaseException], ...]:
    """Errors a user can cause (and fix); they are reported without a traceback."""
    from .io.prompts import PromptError
    from .model.checkpoint import CheckpointError

    return (UsageError, SetupError, PromptError, CheckpointError, OSError, ValueError)


def describe_error(exc: BaseException) -> str:
    """One line for the user: the message of an expected error, else its type and message."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, FileNotFoundError) and exc.filename and str(exc.filename) not in text:
        text = f"{text}: {exc.filename}"
    if isinstance(exc, expected_errors()):
        return text
    return f"unexpected {type(exc).__name__}: {text}"
