"""Self-describing checkpoints: weights plus the architecture they belong to.

An official SAM 2 file is ``{"model": state_dict}`` and only loads into a variant the
caller names. Checkpoints written here add the :class:`~.config.Sam2Config` (as plain
data) under the key ``"napari_sam2"``, so a reduced architecture or a model trained at
another input size loads with ``build_sam2(checkpoint=path)`` alone. The state-dict
keys stay the official ones, so fine-tunes of official variants remain loadable by name
(and by the reference implementation).

Everything is stored as tensors, strings, numbers, lists and dicts, so files are read
with ``torch.load(weights_only=True)``: loading a checkpoint never runs code.
"""

from __future__ import annotations

import dataclasses
import os
import typing
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checkpoint import CheckpointError
from .config import HieraConfig, MemoryAttentionConfig, MemoryEncoderConfig, NeckConfig, Sam2Config

__all__ = [
    "FORMAT_KEY",
    "FORMAT_VERSION",
    "THRESHOLDS_KEY",
    "recorded_thresholds",
    "thresholds_metadata",
    "SavedCheckpoint",
    "config_to_dict",
    "config_from_dict",
    "read_checkpoint",
    "checkpoint_payload",
    "save_checkpoint",
    "write_atomic",
]

FORMAT_KEY = "napari_sam2"
FORMAT_VERSION = 1
THRESHOLDS_KEY = "automatic_thresholds"  # metadata: the model's own automatic-detection thresholds
_NESTED = {
    "hiera": HieraConfig,
    "neck": NeckConfig,
    "memory_attention": MemoryAttentionConfig,
    "memory_encoder": MemoryEncoderConfig,
}


@dataclass
class SavedCheckpoint:
    """What a checkpoint file holds: weights, and (if recorded) their architecture."""

    state: dict[str, torch.Tensor]
    config: Sam2Config | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    payload: dict[str, Any] = field(default_factory=dict)  # the whole file, for training state


def config_to_dict(config: Sam2Config) -> dict[str, Any]:
    """A :class:`Sam2Config` as plain data (tuples become lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    """Construct dataclass ``cls`` from plain data, with list fields back as tuples."""
    if not isinstance(data, dict):
        raise CheckpointError(f"the recorded architecture is damaged: {where} is not a mapping")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise CheckpointError(
            f"the recorded architecture has settings this version does not know ({where}: {', '.join(unknown)}); "
            "it was written by a newer napari-sam2"
        )
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name in _NESTED and cls is Sam2Config:
            kwargs[name] = _build(_NESTED[name], value, f"{where}.{name}")
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
        hint = str(hints.get(name, ""))
        if hint.startswith("tuple") and not isinstance(kwargs[name], tuple):
            raise CheckpointError(f"the recorded architecture is damaged: {where}.{name} = {value!r}")
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise CheckpointError(f"the recorded architecture is incomplete ({where}): {err}") from None


def config_from_dict(data: dict[str, Any]) -> Sam2Config:
    """Inverse of :func:`config_to_dict`; raises :class:`CheckpointError` if damaged."""
    config = _build(Sam2Config, data, "config")
    if config.image_size <= 0 or config.image_size % 32 != 0:
        raise CheckpointError(f"the recorded input size {config.image_size} is not a positive multiple of 32")
    return config


def checkpoint_payload(
    state: dict[str, torch.Tensor], config: Sam2Config, metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The dict saved to disk: official ``"model"`` key plus the recorded architecture."""
    return {
        "model": {k: v.detach().cpu().contiguous() for k, v in state.items()},
        FORMAT_KEY: {
            "format": FORMAT_VERSION,
            "config": config_to_dict(config),
            "image_size": int(config.image_size),
            "metadata": dict(metadata or {}),
        },
    }


def save_checkpoint(
    model: torch.nn.Module,
    path: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an inference checkpoint of ``model`` (weights + architecture) atomically."""
    config = getattr(model, "config", None)
    if not isinstance(config, Sam2Config):
        raise TypeError("save_checkpoint needs a Sam2 model built with build_sam2")
    metadata = {**thresholds_metadata(model), **(metadata or {})}
    payload = checkpoint_payload(model.state_dict(), config, metadata)
    path = Path(path).expanduser()
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
    write_atomic(payload, path)
    return path


def write_atomic(payload: Any, path: str | os.PathLike) -> None:
    """``torch.save`` under a temporary name next to ``path``, then rename into place.

    An interrupted write never leaves a file that looks complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f".{path.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        torch.save(payload, temp)
        with open(temp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def read_checkpoint(path: str | os.PathLike) -> SavedCheckpoint:
    """Read an official or self-describing checkpoint (never executes code)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path} is not a readable SAM 2 checkpoint (it may be truncated or another "
            f"kind of file): {type(exc).__name__}: {exc}"
        ) from None
    if isinstance(payload, dict) and isinstance(payload.get("model"), dict):
        state = payload["model"]
    elif isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
        state, payload = payload, {"model": payload}
    else:
        raise CheckpointError(f"{path} does not hold a SAM 2 state dict (expected {{'model': state_dict}})")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not tensors: {bad[:5]}")
    record = payload.get(FORMAT_KEY)
    if record is None:
        return SavedCheckpoint(state, None, {}, payload)
    if not isinstance(record, dict) or "config" not in record:
        raise CheckpointError(f"{path}: the recorded architecture is missing or damaged")
    version = record.get("format")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written in checkpoint format {version!r}, newer than this napari-sam2 reads")
    try:
        config = config_from_dict(record["config"])
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    return SavedCheckpoint(state, config, dict(record.get("metadata") or {}), payload)


def thresholds_metadata(model: Any) -> dict[str, Any]:
    """The metadata entry recording ``model``'s detection thresholds (none when it has
    none), so a fine-tune keeps the thresholds calibrated for the model it came from."""
    thresholds = getattr(model, "automatic_thresholds", None)
    return {THRESHOLDS_KEY: {k: float(v) for k, v in thresholds.items()}} if thresholds else {}


def recorded_thresholds(metadata: dict[str, Any]) -> dict[str, float]:
    """The automatic-detection thresholds a checkpoint records (only well-formed entries)."""
    recorded = metadata.get(THRESHOLDS_KEY)
    if not isinstance(recorded, dict):
        return {}
    return {
        name: float(value)
        for name, value in recorded.items()
        if name in ("pred_iou_thresh", "stability_score_thresh")
        and isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= float(value) <= 1.0
    }
