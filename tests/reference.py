"""The reference SAM 2 (Meta's ``sam2==1.1.0``) as a test oracle.

It is installed for the tests only (see ``.ci/run``); our package never imports it.
Models are built with random weights from the reference's own configs. The object-score
head's bias is raised so that objects are predicted present (otherwise every output is
the constant no-object score and any comparison passes trivially).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

REFERENCE_CONFIGS = {
    "sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_large": "configs/sam2.1/sam2.1_hiera_l.yaml",
    "sam2_hiera_tiny": "configs/sam2/sam2_hiera_t.yaml",
    "sam2_hiera_small": "configs/sam2/sam2_hiera_s.yaml",
    "sam2_hiera_base_plus": "configs/sam2/sam2_hiera_b+.yaml",
    "sam2_hiera_large": "configs/sam2/sam2_hiera_l.yaml",
}

OBJ_SCORE_BIAS_KEY = "sam_mask_decoder.pred_obj_score_head.layers.2.bias"


def build_reference(
    name: str = "sam2.1_hiera_tiny",
    image_size: int = 1024,
    seed: int = 0,
    video: bool = True,
    checkpoint: str | os.PathLike | None = None,
    obj_score_bias: float = 8.0,
    extra_overrides: list[str] | None = None,
):
    """A reference model (a ``SAM2VideoPredictor`` when ``video``) with random weights.

    With ``checkpoint`` the weights are loaded from that file instead and no bias is added.
    """
    from sam2.build_sam import build_sam2, build_sam2_video_predictor

    overrides = [f"++model.image_size={image_size}"] + list(extra_overrides or [])
    torch.manual_seed(seed)
    builder = build_sam2_video_predictor if video else build_sam2
    model = builder(
        REFERENCE_CONFIGS[name],
        ckpt_path=None if checkpoint is None else str(checkpoint),
        device="cpu",
        hydra_overrides_extra=overrides,
    )
    if checkpoint is None and obj_score_bias:
        with torch.no_grad():
            model.state_dict()[OBJ_SCORE_BIAS_KEY].add_(obj_score_bias)
    return model.eval()


def save_checkpoint(model: torch.nn.Module, path: str | os.PathLike) -> Path:
    """Save ``{"model": state_dict}`` exactly as the official checkpoints are laid out."""
    path = Path(path)
    torch.save({"model": model.state_dict()}, path)
    return path
