"""The training loop: deterministic, cancellable, resumable.

Every clip of step ``s`` is drawn with ``numpy.random.default_rng([seed, s, k])``, so a
run is a pure function of its seed and settings, and a resumed run draws exactly the
clips the uninterrupted one would have. Cancel (a callable, an event, or Ctrl-C in the
main thread) finishes the current step, writes the resumable state and the model, and
returns; nothing done so far is lost.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from ..model.checkpoint import autocast_dtype
from ..model.saved import save_checkpoint
from ..model.sam2 import Sam2, upsample_masks
from .clips import ClipSampler
from .config import RESUMABLE_CHANGES, TrainConfig
from .data import TrainingData
from .errors import TrainingError
from .forward import FrameStep, clip_forward, encode_clip
from .guidance import guidance_loss
from .losses import LossWeights, step_loss
from .optim import apply_lr, param_groups, set_trainable
from .prompts import plan_prompts
from .state import load_state, save_state, state_path_for

__all__ = ["TrainProgress", "TrainResult", "train", "clip_loss", "check_outputs", "mean_loss"]


@dataclass
class TrainProgress:
    """Reported after every step (and after each validation)."""

    step: int  # steps finished
    steps: int
    loss: float
    lr: float
    elapsed: float  # seconds since this call started
    terms: dict[str, float] = field(default_factory=dict)
    validation: dict[str, float] | None = None


@dataclass
class TrainResult:
    """What a call of :func:`train` did and where it left its files."""

    output: Path | None
    state: Path
    step: int
    steps: int
    cancelled: bool
    history: list[list[float]]  # [step, loss, lr]
    validation: list[dict[str, float]] = field(default_factory=list)
    model: Sam2 | None = None

    @property
    def finished(self) -> bool:
        return self.step >= self.steps


def clip_loss(steps: list[FrameStep], masks: torch.Tensor, weights: LossWeights) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum of :func:`~.losses.step_loss` over every supervised prediction of a clip.

    Each step's full-resolution loss is recomputed in the backward pass instead of kept,
    so memory holds only the low-resolution logits.
    """
    size = masks.shape[-1]

    def one(low: torch.Tensor, ious: torch.Tensor, scores: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
        terms = step_loss(upsample_masks(low.float(), size), ious.float(), scores.float(), target, weights)
        return terms["total"], terms["focal"], terms["dice"], terms["iou"], terms["presence"]

    total = masks.new_zeros((), dtype=torch.float32)
    sums = {"focal": 0.0, "dice": 0.0, "iou": 0.0, "presence": 0.0}
    for s in steps:
        head = s.head
        target = masks[s.frame].to(head.low_res_multimasks.device)
        args = (head.low_res_multimasks, head.ious, head.object_score_logits, target)
        out = checkpoint(one, *args, use_reentrant=False) if head.low_res_multimasks.requires_grad else one(*args)
        total = total + out[0]
        for key, value in zip(sums, out[1:]):
            sums[key] += float(value.detach())
    return total, sums


def check_outputs(output: str | os.PathLike | None, state: Path, overwrite: bool, resume: bool) -> None:
    """Fail before training if an output exists (without overwrite) or cannot be written."""
    targets = [Path(output)] if output is not None else []
    if not resume:
        targets.append(state)
    for path in targets:
        if path.is_dir():
            raise TrainingError(f"{path} is a folder; give a file name for the model")
        if path.exists() and not overwrite:
            raise TrainingError(f"{path} already exists; choose another name or allow overwriting it")
    for folder in {p.parent for p in targets + [state]}:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".write-test-{os.getpid()}-{threading.get_ident()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise TrainingError(f"cannot write to {folder}: {err.strerror or err}") from None


class _Stop:
    """Cancel requests from a callable, an event, or Ctrl-C (first one: stop after this step)."""

    def __init__(self, cancel: Callable[[], bool] | threading.Event | None) -> None:
        self.cancel = cancel
        self.interrupted = False

    def __call__(self) -> bool:
        if self.interrupted:
            return True
        if self.cancel is None:
            return False
        if isinstance(self.cancel, threading.Event):
            return self.cancel.is_set()
        return bool(self.cancel())

    @contextlib.contextmanager
    def catching_sigint(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum, frame):  # noqa: ARG001
            if self.interrupted:  # a second Ctrl-C: give up at once
                signal.signal(signal.SIGINT, previous)
                raise KeyboardInterrupt
            self.interrupted = True

        signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def _autocast(model: Sam2, precision: str):
    device = model.device
    if precision == "float32" or device.type == "cpu":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bfloat16" else autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def train(
    model: Sam2 | None,
    data: TrainingData,
    config: TrainConfig | None = None,
    output: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
    resume: bool = False,
    state_path: str | os.PathLike | None = None,
    val_data: Any = None,
    progress: Callable[[TrainProgress], None] | None = None,
    cancel: Callable[[], bool] | threading.Event | None = None,
    device: str | torch.device | None = None,
    metadata: dict[str, Any] | None = None,
) -> TrainResult:
    """Fine-tune (or train) ``model`` on clips of ``data``.

    ``output``: the inference checkpoint written at the end (and when stopped); the
    resumable state goes to ``state_path`` (default ``NAME.resume.pt`` next to it).
    ``resume``: continue from the state file; ``model`` may then be ``None`` (rebuilt
    from the state) and ``config`` ``None`` (the saved settings). ``val_data``: videos
    with truth (an :class:`~.evaluation.EvalSet`, :class:`~.data.VideoData`, or
    :class:`~.data.SyntheticData` with held-out seeds) for J&F every
    ``config.validate_every`` steps.
    ``progress`` is called after every step; ``cancel`` stops after the current step.
    Returns a :class:`TrainResult` whose ``model`` is the trained model in eval mode.
    """
    if output is None and state_path is None:
        raise TrainingError("give an output file for the trained model")
    state_file = Path(state_path) if state_path is not None else state_path_for(output)  # type: ignore[arg-type]
    check_outputs(output, state_file, overwrite, resume)
    saved = None
    if resume:
        if not state_file.is_file():
            raise TrainingError(f"cannot resume: there is no training state at {state_file}")
        saved = load_state(state_file)
        if config is not None:
            changed = [d for d in saved.config.differences(config) if d not in RESUMABLE_CHANGES]
            if changed:
                raise TrainingError(
                    f"cannot resume with other settings ({', '.join(changed)}); the run was started with different ones"
                )
        else:
            config = saved.config
        if model is None:
            model = Sam2(saved.model_config)
            model.automatic_thresholds = dict(saved.automatic_thresholds)
        elif model.config != saved.model_config:
            raise TrainingError(
                f"the saved run trains a {saved.model_config.name} model at {saved.model_config.image_size} px, "
                f"not the given {model.config.name} at {model.config.image_size} px"
            )
        model.load_state_dict(saved.model_state, strict=True)
    if model is None or config is None:
        raise TrainingError("give a model and training settings (or resume a saved run)")
    if not isinstance(model, Sam2):
        raise TrainingError(f"the model must be a SAM 2 model built with build_sam2, got {type(model).__name__}")
    if device is not None:
        model.to(torch.device(device))
    set_trainable(model, config.trainable)
    model.train()
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(param_groups(model, config.optim), betas=config.optim.betas)
    step, history = 0, []
    if saved is not None:
        optimizer.load_state_dict(saved.optimizer)
        step, history = saved.step, saved.history
        torch.set_rng_state(saved.torch_rng)
    sampler = ClipSampler(data, model.image_size, config.clip)
    if val_data is not None:
        from .evaluation import eval_set_from

        val_data = eval_set_from(val_data)  # generated once: every validation sees the same clips
    train_encoder = config.trainable == "all"
    stop = _Stop(cancel)
    validations: list[dict[str, float]] = []
    started = time.perf_counter()
    meta = {"trainable": config.trainable, "steps": config.steps, **(metadata or {})}

    def save_all(final: bool) -> None:
        save_state(state_file, model, optimizer, step, config, history)
        if output is not None and (final or step > 0):
            model.eval()
            save_checkpoint(model, output, {**meta, "step": step}, overwrite=True)
            model.train()

    updating = False
    try:
        with stop.catching_sigint():
            while step < config.steps and not stop():
                lr = apply_lr(optimizer, step, config.steps, config.optim)
                optimizer.zero_grad(set_to_none=True)
                loss_sum, terms = 0.0, {"focal": 0.0, "dice": 0.0, "iou": 0.0, "presence": 0.0}
                if config.loss.attention > 0 or config.loss.memory_attention > 0:
                    terms["guidance"] = 0.0
                for k in range(config.clips_per_step):
                    rng = np.random.default_rng([config.seed, step, k])
                    clip = sampler.sample(rng)
                    plan = plan_prompts(clip.masks, config.prompts, rng)
                    frames = clip.frames.to(model.device)
                    guide = config.loss.attention > 0 or config.loss.memory_attention > 0  # from scratch: see .guidance
                    memory_losses: list[torch.Tensor] | None = [] if config.loss.memory_attention > 0 else None
                    with _autocast(model, config.precision):
                        feats = encode_clip(model, frames, train_encoder, config.grad_checkpoint)
                        steps_out = clip_forward(
                            model, clip, plan, config.prompts, rng, feats, config.grad_checkpoint, memory_losses
                        )
                        guided = feats[0].vision.new_zeros(())
                        if config.loss.attention > 0:
                            guided, _ = guidance_loss(model, feats[0], clip.masks[0].to(model.device), rng, config.loss)
                    loss, parts = clip_loss(steps_out, clip.masks, config.loss)
                    if guide:
                        if memory_losses:
                            guided = guided + config.loss.memory_attention * torch.stack(memory_losses).mean()
                        loss, parts = loss + guided, {**parts, "guidance": float(guided.detach())}
                    if loss.requires_grad:
                        (loss / config.clips_per_step).backward()
                    loss_sum += float(loss.detach()) / config.clips_per_step
                    for key in terms:
                        terms[key] += parts[key] / config.clips_per_step
                if not np.isfinite(loss_sum):
                    raise TrainingError(
                        f"the loss became {loss_sum} at step {step + 1}; lower the learning rate"
                    )
                updating = True  # an interrupt from here on leaves the weights half-updated
                if config.optim.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(trained, config.optim.grad_clip)
                optimizer.step()
                step += 1
                updating = False
                history.append([step, loss_sum, lr])
                val = None
                if val_data is not None and config.validate_every and step % config.validate_every == 0:
                    val = _validate(model, val_data)
                    validations.append({"step": step, **val})
                if progress is not None:
                    progress(TrainProgress(step, config.steps, loss_sum, lr, time.perf_counter() - started, terms, val))
                if config.checkpoint_every and step % config.checkpoint_every == 0 and step < config.steps:
                    save_state(state_file, model, optimizer, step, config, history)
    except KeyboardInterrupt:
        model.zero_grad(set_to_none=True)
        if not updating:  # between steps or mid-clip: the weights are those of step `step`
            save_all(final=True)
        raise
    model.zero_grad(set_to_none=True)
    save_all(final=True)
    model.eval()
    model.requires_grad_(False)
    return TrainResult(
        Path(output) if output is not None else None, state_file, step, config.steps,
        cancelled=step < config.steps, history=history, validation=validations, model=model,
    )


def _validate(model: Sam2, val_data: Any) -> dict[str, float]:
    from .evaluation import evaluate

    model.eval()
    try:
        report = evaluate(model, val_data)
    finally:
        model.train()
    return {"J": report.J, "F": report.F, "J&F": report.JF}


def mean_loss(model: Sam2, data: TrainingData, config: TrainConfig, draws: int = 8, seed: int = 2**20) -> float:
    """Mean clip loss over ``draws`` fixed clips and prompts (no update), to compare models.

    The draws use their own seed, distinct from the training clips' by default.
    """
    sampler = ClipSampler(data, model.image_size, config.clip)
    was_training = model.training
    model.train()  # the training-time behaviour of the heads, as the loss was defined
    total = 0.0
    try:
        with torch.no_grad():
            for k in range(draws):
                rng = np.random.default_rng([seed, k])
                clip = sampler.sample(rng)
                plan = plan_prompts(clip.masks, config.prompts, rng)
                with _autocast(model, config.precision):
                    feats = encode_clip(model, clip.frames.to(model.device), False)
                    steps_out = clip_forward(model, clip, plan, config.prompts, rng, feats, config.grad_checkpoint)
                total += float(clip_loss(steps_out, clip.masks, config.loss)[0])
    finally:
        model.train(was_training)
    return total / draws
