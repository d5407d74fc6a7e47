"""Fine-tuning for the widget and the command line: one set of rules, no Qt.

What this adds to :mod:`napari_sam2.training`: training data from the files and
layers a user has (image + labels stacks, CTC folders, the frames painted or corrected
in the viewer, frozen so later edits do not change a running job), settings from a few
user-facing values (a resumed run keeps the saved ones unless a value is given), a
check of the output before anything is loaded, and training on a *copy* of the model in
use, so tracking goes on with the old weights until the new ones are chosen.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from .errors import UsageError, with_option

if TYPE_CHECKING:  # pragma: no cover
    from ..model.config import Sam2Config
    from ..model.sam2 import Sam2
    from ..training import EvalReport, TrainConfig, TrainingData, TrainProgress, TrainResult

__all__ = [
    "TRAINABLE_CHOICES",
    "FineTuneSettings",
    "FrozenLabels",
    "ResumableRun",
    "check_output",
    "data_from_files",
    "data_from_layers",
    "evaluate_model",
    "evaluation_protocol",
    "fine_tune",
    "labelled_frames",
    "model_copy",
    "resumable_run",
    "resume_state_path",
    "saved_step",
    "setting_conflicts",
]

TRAINABLE_CHOICES = {
    "decoder": "mask decoder and prompt encoder (fast, least data)",
    "memory": "decoder + memory attention and encoder (better tracking through time)",
    "all": "everything, the image encoder more gently (new kinds of images; slowest)",
}


@dataclass(frozen=True)
class FineTuneSettings:
    """The user-facing settings of a run; ``None`` means the default (or, when resuming,
    the value the run was started with)."""

    steps: int | None = None
    trainable: str | None = None
    lr: float | None = None
    seed: int | None = None
    clip_frames: int | None = None
    checkpoint_every: int | None = None
    validate_every: int | None = None
    precision: str | None = None

    def config(self, saved: "TrainConfig | None" = None) -> "TrainConfig":
        """The :class:`~napari_sam2.training.TrainConfig`: defaults, or ``saved`` with the given values."""
        from ..training import TrainConfig

        base = saved if saved is not None else TrainConfig(steps=self.steps or 1000)
        top = {k: v for k, v in (("steps", self.steps), ("trainable", self.trainable), ("seed", self.seed),
                                 ("checkpoint_every", self.checkpoint_every), ("validate_every", self.validate_every),
                                 ("precision", self.precision)) if v is not None}
        if self.lr is not None:
            top["optim"] = dataclasses.replace(base.optim, lr=float(self.lr))
        if self.clip_frames is not None:
            top["clip"] = dataclasses.replace(base.clip, num_frames=int(self.clip_frames))
        return dataclasses.replace(base, **top)


def resume_state_path(output: str | os.PathLike) -> Path:
    """Where a run writing ``output`` keeps its resumable state (``NAME.resume.pt``)."""
    from ..training import state_path_for

    return state_path_for(Path(output).expanduser())


def saved_step(output: str | os.PathLike) -> int:
    """Steps an interrupted run writing ``output`` has done (from its resumable state)."""
    from ..training import load_state

    return load_state(resume_state_path(Path(output).expanduser())).step


@dataclass(frozen=True)
class ResumableRun:
    """A stopped run writing ``output`` that can go on: where it stands and how it was started."""

    output: Path
    state: Path
    step: int  # steps done
    steps: int  # steps planned
    config: "TrainConfig"  # the settings it was started with
    model_config: "Sam2Config | None"
    history: tuple[tuple[float, float, float], ...]  # (step, loss, lr) per finished step

    @property
    def trainable(self) -> str:
        return self.config.trainable

    def describe(self) -> str:
        """E.g. ``step 40 of 1000, training memory``."""
        return f"step {self.step} of {self.steps}, training {self.trainable}"

    def settings(self) -> FineTuneSettings:
        """The user-facing settings the run was started with."""
        c = self.config
        return FineTuneSettings(steps=c.steps, trainable=c.trainable, lr=c.optim.lr, seed=c.seed,
                                clip_frames=c.clip.num_frames, checkpoint_every=c.checkpoint_every,
                                validate_every=c.validate_every, precision=c.precision)

    def conflicts(self, settings: FineTuneSettings) -> list[str]:
        """The given values that differ from the run's and cannot change on resume, in words
        (``["steps 1000 (not 200)"]``); empty when ``settings`` can go on with this run."""
        return setting_conflicts(self.config, settings.config(self.config))


def resumable_run(output: str | os.PathLike) -> ResumableRun | None:
    """The stopped run writing ``output`` that can go on, or ``None``.

    ``None`` when there is no state next to ``output`` (``NAME.resume.pt``) or its run
    finished (the state of a finished run is kept, but there is nothing to go on with).
    A state that cannot be read raises :class:`~napari_sam2.training.TrainingError`:
    it is there, so starting over must replace it knowingly. Reads no weights.
    """
    from ..training.state import read_state_summary

    path = Path(output).expanduser()
    state = resume_state_path(path)
    if path.is_dir() or not state.is_file():
        return None
    summary = read_state_summary(state)
    if summary.step >= summary.config.steps:
        return None
    return ResumableRun(path, state, summary.step, summary.config.steps, summary.config, summary.model_config,
                        tuple((int(h[0]), float(h[1]), float(h[2])) for h in summary.history))


def evaluation_protocol() -> str:
    """How :func:`evaluate_model` scores, in one sentence (to print next to the scores)."""
    from ..training.evaluation import PROTOCOL

    return PROTOCOL


def check_output(output: str | os.PathLike, overwrite: bool, resume: bool) -> Path:
    """Refuse a bad output before any work: a folder, a missing or unwritable folder, an
    existing file (unless overwriting), or a run to resume that is not there."""
    path = Path(output).expanduser()
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name for the model, e.g. {path / 'tuned.pt'}")
    if path.suffix.lower() not in (".pt", ".pth"):
        raise ValueError(f"the model file name should end in .pt, got {path.name}")
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path.name}: the folder {folder} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".napari-sam2-write-test-"):
            pass
    except OSError as err:
        raise PermissionError(f"cannot write to the folder {folder}: {err.strerror or err}") from None
    state = resume_state_path(path)
    if resume:
        if not state.is_file():
            raise FileNotFoundError(f"there is no interrupted run to go on with: {state} does not exist")
        return path
    for existing in (path, state):
        if existing.exists() and not overwrite:
            raise with_option(FileExistsError(f"{existing} already exists"), "overwrite")
    return path


# ----------------------------------------------------------------------------- data
def data_from_files(
    images: Sequence[str | os.PathLike] = (),
    labels: Sequence[str | os.PathLike] = (),
    ctc: Sequence[str | os.PathLike] = (),
    sequence: str | None = None,
) -> "TrainingData":
    """Image stacks with their label stacks (in pairs) and CTC folders, as one source."""
    from ..training import from_ctc, from_files
    from ..training.data import VideoData

    if len(images) != len(labels):
        raise UsageError(f"{len(images)} image stack(s) but {len(labels)} label stack(s); give them in pairs", option="labels")
    if not images and not ctc:
        raise UsageError("no training data: give an image stack with its labels, or a CTC folder", option="data")
    videos = []
    if images:
        videos += from_files(list(images), list(labels)).videos
    for folder in ctc:
        videos += from_ctc(folder, sequence).videos
    return VideoData(videos)


class FrozenLabels:
    """A (T, H, W) labels stack that holds copies of chosen frames and zeros elsewhere.

    The widget trains on this instead of the live Labels layer, so painting during a
    run does not change what the run learns; only the chosen frames take memory.
    """

    def __init__(self, labels: Any, frames: Iterable[int]) -> None:
        self.shape = tuple(int(s) for s in labels.shape)
        self.dtype = np.dtype(labels.dtype)
        self.ndim = 3
        self._frames = {int(t): np.array(labels[int(t)], copy=True) for t in sorted(set(frames))}

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, t: Any) -> np.ndarray:
        t = int(t)
        frame = self._frames.get(t)
        return frame if frame is not None else np.zeros(self.shape[1:], self.dtype)


def labelled_frames(labels: Any) -> list[int]:
    """Frames of a (T, H, W) labels stack with at least one object (reads every frame)."""
    return [t for t in range(int(labels.shape[0])) if np.any(np.asarray(labels[t]))]


def data_from_layers(
    image: Any,
    labels: Any,
    frames: Sequence[int] | None,
    contrast_limits: tuple[float, float] | None = None,
    name: str = "image",
) -> "TrainingData":
    """Training data from an image's (T, H, W[, 3]) frames and its labels (T, H, W).

    ``frames``: the trusted frames (painted or corrected by the user); ``None`` takes
    every frame that holds a label. The labels of those frames are copied now.
    """
    from ..training import from_arrays

    chosen = labelled_frames(labels) if frames is None else sorted({int(t) for t in frames})
    if not chosen:
        what = "no frame holds a label" if frames is None else "no frame was painted or corrected"
        raise ValueError(f"nothing to learn from: {what}; paint or correct some masks first")
    frozen = FrozenLabels(labels, chosen)
    return from_arrays(image, frozen, contrast_limits=contrast_limits, name=name, frames=chosen)


# ----------------------------------------------------------------------------- training
def model_copy(model: "Sam2") -> "Sam2":
    """An independent copy of ``model`` (same architecture, weights and device)."""
    from ..model.sam2 import Sam2

    copy = Sam2(model.config)
    copy.load_state_dict(model.state_dict(), strict=True)
    return copy.to(model.device)


def fine_tune(
    model: "Sam2 | None",
    data: "TrainingData",
    settings: FineTuneSettings,
    output: str | os.PathLike,
    *,
    overwrite: bool = False,
    resume: bool = False,
    val_data: "TrainingData | None" = None,
    progress: Callable[["TrainProgress"], None] | None = None,
    cancel: Callable[[], bool] | threading.Event | None = None,
    metadata: dict[str, Any] | None = None,
    device: Any = None,
) -> "TrainResult":
    """Fine-tune a copy of ``model`` (``None`` when resuming: the saved one) into ``output``.

    The run stops after the current step when ``cancel`` fires (or on Ctrl-C), and then
    too the model so far and the resumable state are written. ``device``: where to
    train (default: the model's; a resumed run without ``model`` trains on the CPU).
    """
    from ..training import train
    from ..training.state import read_state_summary

    path = check_output(output, overwrite, resume)
    saved = read_state_summary(resume_state_path(path)).config if resume else None
    config = settings.config(saved)
    if saved is not None:
        _check_resumable(saved, config)
    if val_data is not None and config.validate_every == 0 and settings.validate_every is None:
        config = dataclasses.replace(config, validate_every=max(1, config.steps // 4))
    start = model_copy(model) if model is not None else None
    return train(start, data, config, output=path, overwrite=overwrite or resume, resume=resume,
                 val_data=val_data, progress=progress, cancel=cancel, metadata=metadata, device=device)


def setting_conflicts(saved: "TrainConfig", config: "TrainConfig") -> list[str]:
    """Settings of ``config`` that differ from a stopped run's ``saved`` ones and cannot
    change on resume, in words: ``"steps 1000 (not 200)"``."""
    from ..training.config import RESUMABLE_CHANGES

    def value(cfg: Any, name: str) -> Any:
        for part in name.split("."):
            cfg = getattr(cfg, part)
        return cfg

    return [f"{name} {value(saved, name)} (not {value(config, name)})"
            for name in saved.differences(config) if name not in RESUMABLE_CHANGES]


def _check_resumable(saved: "TrainConfig", config: "TrainConfig") -> None:
    """A resumed run keeps its settings; say which given value differs from the saved one."""
    changed = setting_conflicts(saved, config)
    if changed:
        raise ValueError(f"the interrupted run was started with {', '.join(changed)}; "
                         "give the same values or leave them out")


def evaluate_model(
    model: "Sam2",
    data: "TrainingData",
    *,
    max_frames: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | threading.Event | None = None,
) -> "EvalReport":
    """J, F and J&F of ``model`` on videos with truth, by the evaluation protocol."""
    from ..training import evaluate

    return evaluate(model, data, max_frames=max_frames, progress=progress, cancel=cancel)
