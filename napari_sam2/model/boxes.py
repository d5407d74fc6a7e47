"""Boxes of masks and non-maximum suppression, in plain torch.

Automatic mask generation proposes many overlapping masks; duplicates are removed by
greedy box NMS. torchvision is not a dependency, so NMS is written here with the same
semantics as torchvision's (scores sorted stably in decreasing order, a box is dropped
when its IoU with a kept, better box is strictly above the threshold, IoU computed in
float32 from ``(x1 - x0) * (y1 - y0)`` areas), but batched: blocks of boxes are
resolved with matrix operations instead of one Python step per box.

Boxes here are ``(x0, y0, x1, y1)`` as SAM 2 uses them, with inclusive pixel maxima;
the public generator converts them to napari's ``(row, col)`` order.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["box_area", "masks_to_boxes", "nms"]

_BLOCK = 256  # boxes resolved together; bounds memory at (kept + block) x block IoUs


def masks_to_boxes(masks: Tensor) -> Tensor:
    """``(N, H, W)`` bool masks -> ``(N, 4)`` int64 ``(x0, y0, x1, y1)``, inclusive.

    An empty mask gets ``(0, 0, 0, 0)``.
    """
    if masks.dim() != 3:
        raise ValueError(f"expected masks of shape (N, H, W), got {tuple(masks.shape)}")
    n, h, w = masks.shape
    if n == 0 or h == 0 or w == 0:
        return torch.zeros(n, 4, dtype=torch.int64, device=masks.device)
    as_bytes = masks.contiguous().view(torch.uint8)  # amax over bytes is much faster than any()
    rows = as_bytes.amax(dim=2) > 0  # (N, H)
    cols = as_bytes.amax(dim=1) > 0  # (N, W)
    top = rows.int().argmax(dim=1)
    bottom = h - 1 - rows.flip(1).int().argmax(dim=1)
    left = cols.int().argmax(dim=1)
    right = w - 1 - cols.flip(1).int().argmax(dim=1)
    boxes = torch.stack((left, top, right, bottom), dim=1).long()
    empty = ~rows.any(dim=1)
    return torch.where(empty[:, None], torch.zeros_like(boxes), boxes)


def box_area(boxes: Tensor) -> Tensor:
    """``(x1 - x0) * (y1 - y0)`` of ``(N, 4)`` boxes, in their own dtype."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _overlaps(a: Tensor, area_a: Tensor, b: Tensor, area_b: Tensor, threshold: float) -> Tensor:
    """``(len(a), len(b))`` bool: IoU strictly above ``threshold`` (NaN never is)."""
    x0 = torch.maximum(a[:, None, 0], b[None, :, 0])
    y0 = torch.maximum(a[:, None, 1], b[None, :, 1])
    x1 = torch.minimum(a[:, None, 2], b[None, :, 2])
    y1 = torch.minimum(a[:, None, 3], b[None, :, 3])
    inter = (x1 - x0).clamp_min(0) * (y1 - y0).clamp_min(0)
    iou = inter / (area_a[:, None] + area_b[None, :] - inter)
    return iou.double() > threshold  # compared like a C++ float against a double


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float, groups: Tensor | None = None) -> Tensor:
    """Greedy non-maximum suppression; returns kept indices by decreasing score.

    ``boxes`` ``(N, 4)`` ``(x0, y0, x1, y1)``, ``scores`` ``(N,)``; with ``groups``
    (``(N,)`` ints) boxes only suppress boxes of their own group (a batched NMS).
    Ties in score keep their input order.
    """
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"expected boxes of shape (N, 4), got {tuple(boxes.shape)}")
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f"{scores.shape[0] if scores.dim() else 0} scores for {boxes.shape[0]} boxes")
    n = boxes.shape[0]
    device = boxes.device
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=device)
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order].float()
    g = groups[order] if groups is not None else None
    areas = box_area(b)
    kept = torch.zeros(0, dtype=torch.int64, device=device)
    for start in range(0, n, _BLOCK):
        stop = min(n, start + _BLOCK)
        blk, blk_area = b[start:stop], areas[start:stop]
        alive = torch.ones(stop - start, dtype=torch.bool, device=device)
        if kept.numel():
            over = _overlaps(b[kept], areas[kept], blk, blk_area, iou_threshold)
            if g is not None:
                over &= g[kept][:, None] == g[None, start:stop]
            alive &= ~over.any(dim=0)
        # within the block, box j may suppress box i only when j comes first (j < i)
        sup = _overlaps(blk, blk_area, blk, blk_area, iou_threshold)
        sup = torch.triu(sup, diagonal=1)
        if g is not None:
            sup &= g[start:stop][:, None] == g[None, start:stop]
        sup &= alive[:, None]
        # fixed point of "kept = alive and not suppressed by a kept, better box"; after
        # k rounds the first k boxes are final, so this ends, usually within a few rounds
        current = alive
        while True:
            nxt = alive & ~(sup & current[:, None]).any(dim=0)
            if torch.equal(nxt, current):
                break
            current = nxt
        kept = torch.cat((kept, start + torch.nonzero(current).flatten()))
    return order[kept]
