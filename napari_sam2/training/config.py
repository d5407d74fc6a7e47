"""The settings of a training run, as one plain-data record saved with every checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .clips import ClipSettings
from .errors import TrainingError
from .losses import LossWeights
from .optim import TRAINABLE, OptimSettings
from .prompts import PromptSettings

__all__ = ["TrainConfig"]

_NESTED = {"clip": ClipSettings, "prompts": PromptSettings, "optim": OptimSettings, "loss": LossWeights}
# settings that may change when a run is resumed (they do not alter what is learned)
RESUMABLE_CHANGES = ("checkpoint_every", "validate_every", "precision")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a run learns.

    ``steps``: optimiser steps; each sees ``clips_per_step`` clips (gradients summed).
    ``trainable``: ``"decoder"``, ``"memory"`` or ``"all"`` (see :mod:`.optim`).
    ``checkpoint_every``: save the resumable state every so many steps (0: only at the
    end and when stopped). ``validate_every``: J&F on the validation data every so many
    steps (0: never). ``grad_checkpoint``: recompute image-encoder activations in the
    backward pass (trains ``all`` in far less memory). ``precision``: ``"auto"`` uses
    bfloat16 autocast on GPUs that support it and float32 elsewhere.
    """

    steps: int = 1000
    trainable: str = "decoder"
    seed: int = 0
    clips_per_step: int = 1
    clip: ClipSettings = field(default_factory=ClipSettings)
    prompts: PromptSettings = field(default_factory=PromptSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)
    loss: LossWeights = field(default_factory=LossWeights)
    checkpoint_every: int = 100
    validate_every: int = 0
    grad_checkpoint: bool = True
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise TrainingError(f"the number of training steps must be at least 1, got {self.steps}")
        if self.trainable not in TRAINABLE:
            raise TrainingError(f"what to train must be one of {', '.join(TRAINABLE)}; got {self.trainable!r}")
        if self.clips_per_step < 1:
            raise TrainingError(f"clips per step must be at least 1, got {self.clips_per_step}")
        if self.checkpoint_every < 0 or self.validate_every < 0:
            raise TrainingError("checkpoint and validation intervals must be 0 (never) or positive")
        if self.precision not in ("auto", "float32", "bfloat16"):
            raise TrainingError(f"precision must be 'auto', 'float32' or 'bfloat16', got {self.precision!r}")
        p = self.prompts
        if not (0 <= p.prob_mask and 0 <= p.prob_box and p.prob_mask + p.prob_box <= 1):
            raise TrainingError("prompt probabilities must be non-negative and sum to at most 1")
        if p.max_cond_frames < 1 or p.max_correct_frames < 1 or p.correction_rounds < 0:
            raise TrainingError("at least one conditioning and one corrected frame; rounds must be >= 0")
        if self.loss.attention < 0 or self.loss.memory_attention < 0:
            raise TrainingError("attention guidance weights must be 0 (off) or positive")
        if self.loss.memory_attention > 0 and self.grad_checkpoint:
            raise TrainingError("memory attention guidance needs grad_checkpoint=False (its probe sees one forward pass)")
        if self.optim.lr <= 0:
            raise TrainingError(f"the learning rate must be positive, got {self.optim.lr}")

    def to_dict(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, (tuple, list)):
                return [plain(v) for v in value]
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return value

        return plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        kwargs: dict[str, Any] = {}
        names = {f.name for f in dataclasses.fields(cls)}
        for key, value in data.items():
            if key not in names:
                raise TrainingError(f"the saved training settings have an unknown entry {key!r}")
            if key in _NESTED:
                sub = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
                kwargs[key] = _NESTED[key](**sub)
            else:
                kwargs[key] = value
        return cls(**kwargs)

    def differences(self, other: "TrainConfig") -> list[str]:
        """Names of top-level settings that differ (nested ones as ``clip.num_frames``)."""
        out = []
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if dataclasses.is_dataclass(a):
                out += [f"{f.name}.{g.name}" for g in dataclasses.fields(a) if getattr(a, g.name) != getattr(b, g.name)]
            elif a != b:
                out.append(f.name)
        return out
