"""SAM 2's training loss for one prediction step on one frame.

Focal (weight 20) + dice (1) on the masks, L1 between the predicted and the actual IoU
(1), and binary cross-entropy on the object-presence logit (1). With several candidate
masks only the one with the lowest focal + dice loss takes the mask losses; the IoU
head learns on every candidate. Mask and IoU terms count only where the object is
present. Every term is summed over objects and divided by their number.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["LossWeights", "focal_loss", "dice_loss", "iou_l1_loss", "presence_loss", "step_loss"]


@dataclass(frozen=True)
class LossWeights:
    focal: float = 20.0
    dice: float = 1.0
    iou: float = 1.0
    presence: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    attention: float = 0.0  # click attention guidance for training from scratch (see .guidance)
    memory_attention: float = 0.0  # memory attention guidance, likewise (see .guidance)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss averaged over pixels: (B, M, H, W) -> (B, M)."""
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.flatten(2).mean(-1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - (2|P∩T| + 1) / (|P| + |T| + 1) with soft P: (B, M, H, W) -> (B, M)."""
    prob = torch.sigmoid(logits).flatten(2)
    target = target.flatten(2)
    numerator = 2 * (prob * target).sum(-1)
    denominator = prob.sum(-1) + target.sum(-1)
    return 1 - (numerator + 1) / (denominator + 1)


def actual_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of the binarised prediction with the truth: (B, M, H, W) -> (B, M)."""
    pred = logits.flatten(2) > 0
    truth = target.flatten(2) > 0
    inter = (pred & truth).sum(-1).float()
    union = (pred | truth).sum(-1).float()
    return inter / union.clamp(min=1.0)


def iou_l1_loss(pred_iou: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """|predicted IoU - actual IoU|: (B, M)."""
    return (pred_iou - actual_iou(logits, target).detach()).abs()


def presence_loss(score_logits: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the object-presence logit: (B, 1) -> (B,)."""
    return F.binary_cross_entropy_with_logits(score_logits.flatten(), present.float(), reduction="none")


def step_loss(
    masks: torch.Tensor,
    pred_iou: torch.Tensor,
    score_logits: torch.Tensor,
    target: torch.Tensor,
    weights: LossWeights = LossWeights(),
) -> dict[str, torch.Tensor]:
    """Weighted loss of one step: ``masks`` (B, M, S, S) logits, ``pred_iou`` (B, M),
    ``score_logits`` (B, 1), ``target`` (B, S, S) bool. Returns the terms and ``total``."""
    batch = masks.shape[0]
    truth = target[:, None].to(masks.dtype).expand_as(masks)
    present = target.flatten(1).any(-1)  # (B,)
    focal = focal_loss(masks, truth, weights.focal_alpha, weights.focal_gamma)
    dice = dice_loss(masks, truth)
    iou = iou_l1_loss(pred_iou, masks, truth)
    if masks.shape[1] > 1:
        best = torch.argmin(focal * weights.focal + dice * weights.dice, dim=-1)
        rows = torch.arange(batch, device=masks.device)
        focal, dice = focal[rows, best], dice[rows, best]
    else:
        focal, dice = focal[:, 0], dice[:, 0]
    iou = iou.mean(-1)
    weight = present.to(masks.dtype)
    terms = {
        "focal": (focal * weight).sum() / batch,
        "dice": (dice * weight).sum() / batch,
        "iou": (iou * weight).sum() / batch,
        "presence": presence_loss(score_logits, present).sum() / batch,
    }
    terms["total"] = (
        weights.focal * terms["focal"]
        + weights.dice * terms["dice"]
        + weights.iou * terms["iou"]
        + weights.presence * terms["presence"]
    )
    return terms
