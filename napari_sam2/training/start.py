"""The model a run starts from: an official variant, or a checkpoint file."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..model.checkpoint import CheckpointError
from ..model.config import MODEL_NAMES, Sam2Config
from ..model.sam2 import Sam2, build_sam2
from .errors import TrainingError

__all__ = ["start_model"]


def start_model(
    model: str | Sam2Config | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    image_size: int | None = None,
    device: str | torch.device | None = None,
) -> Sam2:
    """Build the starting model with clear errors.

    ``model``: an official variant name (its official weights unless ``checkpoint``
    is given; ``checkpoint="none"`` starts from random weights), a :class:`Sam2Config`
    (random weights unless ``checkpoint``), or the path of a checkpoint file that
    records its architecture. ``image_size``: train and run at this input size.
    """
    try:
        if isinstance(model, Sam2Config):
            ckpt = None if checkpoint in (None, "none") else checkpoint
            return build_sam2(model, checkpoint=ckpt, device=device, image_size=image_size)
        text = str(model)
        if text in MODEL_NAMES or text == "demo":
            ckpt = "official" if checkpoint is None else (None if str(checkpoint) == "none" else checkpoint)
            if text == "demo" and ckpt == "official":
                ckpt = None
            return build_sam2(text, checkpoint=ckpt, device=device, image_size=image_size)
        path = Path(text).expanduser()
        if not path.is_file():
            known = ", ".join(MODEL_NAMES)
            raise TrainingError(f"{text!r} is neither a model name ({known}) nor a checkpoint file")
        if checkpoint is not None:
            raise TrainingError("give either a checkpoint file or a model name with its checkpoint, not two files")
        return build_sam2(checkpoint=path, device=device, image_size=image_size)
    except CheckpointError as err:
        raise TrainingError(f"cannot load the starting model: {err}") from None
    except ValueError as err:
        if isinstance(err, TrainingError):
            raise
        raise TrainingError(f"cannot build the starting model: {err}") from None
