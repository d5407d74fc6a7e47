"""Resumable training state: model, optimiser, step, RNG state and settings in one file.

Separate from the inference export (weights + architecture only, see
:mod:`napari_sam2.model.saved`), but readable the same way: the file also holds the
official ``"model"`` key and the recorded architecture, so ``build_sam2(checkpoint=
state_file)`` loads the weights of an interrupted run too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..model.checkpoint import CheckpointError
from ..model.config import Sam2Config
from ..model.saved import (
    FORMAT_KEY,
    checkpoint_payload,
    config_from_dict,
    read_checkpoint,
    recorded_thresholds,
    thresholds_metadata,
    write_atomic,
)
from .config import TrainConfig
from .errors import TrainingError

__all__ = ["StateSummary", "TrainingState", "save_state", "load_state", "read_state_summary", "state_path_for"]

STATE_KEY = "training"


def state_path_for(output: str | os.PathLike) -> Path:
    """Where the resumable state of a run exporting ``output`` lives: ``NAME.resume.pt``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.resume.pt")


@dataclass
class TrainingState:
    """Everything needed to continue a run exactly where it stopped."""

    model_state: dict[str, torch.Tensor]
    model_config: Sam2Config
    optimizer: dict[str, Any]
    step: int
    config: TrainConfig
    torch_rng: torch.Tensor
    history: list[list[float]]  # [step, loss, lr] per finished step
    automatic_thresholds: dict[str, float] = field(default_factory=dict)  # the model's, see model.saved


def save_state(path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
               config: TrainConfig, history: list[list[float]]) -> None:
    """Write the resumable state atomically (an interrupted write keeps the old file)."""
    metadata = {"step": step, "trainable": config.trainable, **thresholds_metadata(model)}
    payload = checkpoint_payload(model.state_dict(), model.config, metadata)
    payload[STATE_KEY] = {
        "optimizer": optimizer.state_dict(),
        "step": int(step),
        "config": config.to_dict(),
        "torch_rng": torch.get_rng_state(),
        "history": [list(map(float, h)) for h in history],
    }
    write_atomic(payload, path)


def load_state(path: str | os.PathLike) -> TrainingState:
    """Read a state written by :func:`save_state`, with clear errors for other files."""
    try:
        saved = read_checkpoint(path)
    except CheckpointError as err:
        raise TrainingError(f"cannot resume: {err}") from None
    record = saved.payload.get(STATE_KEY)
    if saved.config is None or not isinstance(record, dict):
        raise TrainingError(f"{path} is a model checkpoint, not the resumable state of a training run")
    try:
        return TrainingState(
            model_state=saved.state,
            model_config=saved.config,
            optimizer=record["optimizer"],
            step=int(record["step"]),
            config=TrainConfig.from_dict(record["config"]),
            torch_rng=record["torch_rng"],
            history=[list(h) for h in record.get("history", [])],
            automatic_thresholds=recorded_thresholds(saved.metadata),
        )
    except (KeyError, TypeError) as err:
        raise TrainingError(f"{path}: the training state is damaged ({err})") from None


@dataclass
class StateSummary:
    """Where a saved run stands, without its weights: see :func:`read_state_summary`."""

    step: int
    config: TrainConfig
    model_config: Sam2Config | None
    history: list[list[float]]


def read_state_summary(path: str | os.PathLike) -> StateSummary:
    """Step, settings, architecture and loss history of a state written by :func:`save_state`.

    The tensors are memory-mapped and never read, so this is quick even for the state
    of a large model (a panel can call it whenever the chosen output changes).
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # not a zip checkpoint, truncated, another kind of file
        raise TrainingError(
            f"{path} is not the readable state of a training run: {type(exc).__name__}: {exc}"
        ) from None
    record = payload.get(STATE_KEY) if isinstance(payload, dict) else None
    if not isinstance(record, dict):
        raise TrainingError(f"{path} is a model checkpoint, not the resumable state of a training run")
    try:
        arch = payload.get(FORMAT_KEY)
        model_config = config_from_dict(arch["config"]) if isinstance(arch, dict) and "config" in arch else None
        return StateSummary(
            step=int(record["step"]),
            config=TrainConfig.from_dict(record["config"]),
            model_config=model_config,
            history=[list(map(float, h)) for h in record.get("history", [])],
        )
    except (KeyError, TypeError, ValueError, CheckpointError) as err:
        raise TrainingError(f"{path}: the training state is damaged ({err})") from None
