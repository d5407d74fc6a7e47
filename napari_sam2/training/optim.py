"""What is trained, and how: parameter sets, AdamW groups, the learning-rate schedule.

* ``decoder``: mask decoder + prompt encoder (the SAM heads).
* ``memory``: the heads plus memory attention, memory encoder, object pointers and the
  learned memory embeddings: everything but the image encoder.
* ``all``: everything, the image encoder at a lower learning rate with layer-wise
  decay (earlier Hiera blocks learn slower, as in SAM 2's recipe).

No weight decay on biases, norms, embeddings and other 1-D parameters. The schedule is
a linear warm-up followed by a cosine decay to ``min_lr_ratio`` of the peak; it is a
pure function of the step, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..model.sam2 import Sam2
from .errors import TrainingError

__all__ = ["TRAINABLE", "set_trainable", "param_groups", "lr_factor", "OptimSettings"]

TRAINABLE = ("decoder", "memory", "all")
_HEADS = ("sam_mask_decoder.", "sam_prompt_encoder.")


@dataclass(frozen=True)
class OptimSettings:
    lr: float = 1e-4
    encoder_lr_scale: float = 0.6  # SAM 2.1 fine-tuning: 3e-6 for vision vs 5e-6
    layer_decay: float = 0.9
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int | None = None  # default: 5% of the steps
    min_lr_ratio: float = 0.1
    grad_clip: float = 0.1


def is_trained(name: str, trainable: str) -> bool:
    if trainable == "all":
        return True
    if trainable == "memory":
        return not name.startswith("image_encoder.")
    return name.startswith(_HEADS)


def set_trainable(model: Sam2, trainable: str) -> list[str]:
    """Switch gradients on for the chosen set only; returns the trained parameter names."""
    if trainable not in TRAINABLE:
        raise TrainingError(f"what to train must be one of {', '.join(TRAINABLE)}; got {trainable!r}")
    names = []
    for name, param in model.named_parameters():
        on = is_trained(name, trainable)
        param.requires_grad_(on)
        if on:
            names.append(name)
    return names


def _encoder_depth(model: Sam2) -> int:
    return len(model.image_encoder.trunk.blocks)


def _layer_scale(name: str, depth: int, decay: float) -> float:
    """Layer-wise decay inside the image encoder: patch embedding slowest, neck fastest."""
    if name.startswith("image_encoder.trunk.blocks."):
        layer = int(name.split(".")[3]) + 1
    elif name.startswith("image_encoder.trunk."):
        layer = 0
    else:  # the neck
        layer = depth + 1
    return decay ** (depth + 1 - layer)


def _no_decay(name: str, param: torch.Tensor) -> bool:
    return param.ndim <= 1 or name.endswith(".bias") or "pos_embed" in name or "norm" in name


def param_groups(model: Sam2, settings: OptimSettings) -> list[dict]:
    """AdamW parameter groups; each records its peak learning rate as ``base_lr``."""
    depth = _encoder_depth(model)
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        scale = 1.0
        if name.startswith("image_encoder."):
            scale = settings.encoder_lr_scale * _layer_scale(name, depth, settings.layer_decay)
        decay = 0.0 if _no_decay(name, param) else settings.weight_decay
        groups.setdefault((round(scale, 12), decay), []).append(param)
    if not groups:
        raise TrainingError("nothing to train: no parameter of the model is trainable")
    return [
        {"params": params, "lr": settings.lr * scale, "base_lr": settings.lr * scale, "weight_decay": decay}
        for (scale, decay), params in sorted(groups.items(), key=lambda kv: kv[0])
    ]


def warmup_steps(settings: OptimSettings, total: int) -> int:
    if settings.warmup_steps is not None:
        return max(0, int(settings.warmup_steps))
    return max(1, round(0.05 * total)) if total > 1 else 0


def lr_factor(step: int, total: int, settings: OptimSettings) -> float:
    """Multiplier of the peak learning rate for optimiser step ``step`` (0-based)."""
    warm = warmup_steps(settings, total)
    if step < warm:
        return (step + 1) / (warm + 1)
    span = max(1, total - warm)
    progress = min(1.0, (step - warm) / span)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return settings.min_lr_ratio + (1.0 - settings.min_lr_ratio) * cosine


def apply_lr(optimizer: torch.optim.Optimizer, step: int, total: int, settings: OptimSettings) -> float:
    """Set every group's learning rate for ``step``; returns the peak group's value."""
    factor = lr_factor(step, total, settings)
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    return settings.lr * factor
