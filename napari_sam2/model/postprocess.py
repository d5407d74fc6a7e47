"""Mask clean-up in plain torch: hole filling and small-region removal.

SAM 2 fills small background holes in its low-resolution mask logits with a compiled
CUDA extension (8-connected components). This module does the same with tensor ops
only, so it runs on every device and needs no build step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["connected_components", "fill_holes", "remove_small_regions"]


def connected_components(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """8-connected components of binary masks ``(N, 1, H, W)``.

    Returns ``labels`` (int64, 0 for background, otherwise a component id unique within
    its image) and ``areas`` (int64, the pixel count of each pixel's component, 0 on
    background), both ``(N, 1, H, W)``.

    Labels spread as the maximum pixel index inside each component: along whole row and
    column runs, through 3x3 neighbourhoods (diagonal links), and by pointer jumping, so
    that even long winding components converge in few iterations.
    """
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"expected masks of shape (N, 1, H, W), got {tuple(mask.shape)}")
    n, _, h, w = mask.shape
    fg = mask.bool()
    if h * w == 0:
        zeros = torch.zeros(mask.shape, dtype=torch.int64, device=mask.device)
        return zeros, zeros.clone()
    # float labels so that max pooling works on every device; exact below 2**24 pixels
    dtype = torch.float32 if h * w < (1 << 24) else torch.float64
    index = torch.arange(1, h * w + 1, dtype=dtype, device=mask.device).view(1, 1, h, w)
    labels = torch.where(fg, index, torch.zeros((), dtype=dtype, device=mask.device))
    fg3 = fg[:, 0]
    rows = _Runs(fg3)
    cols = _Runs(fg3.transpose(1, 2))
    flat_offset = (torch.arange(n, device=mask.device) * (h * w)).view(n, 1)
    while True:
        grown = F.max_pool2d(labels, kernel_size=3, stride=1, padding=1)  # diagonal links
        grown = torch.where(fg, grown, labels)[:, 0]
        grown = rows.spread_max(grown)
        grown = cols.spread_max(grown.transpose(1, 2)).transpose(1, 2)
        # pointer jumping: adopt the label of the pixel our label points to
        flat = grown.reshape(n, -1)
        ptr = (flat.long() - 1).clamp_min(0) + flat_offset
        jumped = flat.reshape(-1)[ptr.reshape(-1)].view(n, -1)
        jumped = torch.where(flat > 0, torch.maximum(flat, jumped), flat).view_as(labels)
        if torch.equal(jumped, labels):
            break
        labels = jumped
    labels_i = labels.long()
    counts = torch.zeros(n, h * w + 1, dtype=torch.int64, device=mask.device)
    counts.scatter_add_(1, labels_i.view(n, -1), torch.ones_like(labels_i.view(n, -1)))
    areas = torch.gather(counts, 1, labels_i.view(n, -1)).view_as(labels_i)
    areas = torch.where(fg, areas, torch.zeros_like(areas))
    return labels_i, areas


class _Runs:
    """Maximal horizontal runs of foreground pixels in (N, H, W) masks.

    Spreading the maximum label along whole runs at once lets labels cross a straight
    stretch of any length in one step instead of one pixel per iteration.
    """

    def __init__(self, fg: torch.Tensor) -> None:
        fg = fg.contiguous()
        prev = torch.zeros_like(fg)
        prev[..., 1:] = fg[..., :-1]
        starts = fg & ~prev
        ids = torch.cumsum(starts.reshape(-1), 0)
        self.ids = torch.where(fg.reshape(-1), ids, torch.zeros_like(ids))
        self.num = int(ids[-1]) + 1 if ids.numel() else 1
        self.fg = fg

    def spread_max(self, labels: torch.Tensor) -> torch.Tensor:
        flat = labels.contiguous().reshape(-1)
        best = torch.zeros(self.num, dtype=flat.dtype, device=flat.device)
        best = best.scatter_reduce(0, self.ids, flat, reduce="amax", include_self=True)
        return torch.where(self.fg, best[self.ids].view_as(labels), labels)


def fill_holes(logits: torch.Tensor, max_area: int) -> torch.Tensor:
    """Turn background regions of at most ``max_area`` pixels into foreground.

    Background is ``logits <= 0``; filled pixels get the small positive score 0.1, as
    SAM 2's video post-processing does. ``logits``: ``(N, 1, H, W)``.
    """
    if max_area <= 0:
        return logits
    labels, areas = connected_components(logits <= 0)
    is_hole = (labels > 0) & (areas <= max_area)
    return torch.where(is_hole, torch.full_like(logits, 0.1), logits)


def remove_small_regions(logits: torch.Tensor, max_area: int) -> torch.Tensor:
    """Turn foreground specks of at most ``max_area`` pixels into background (-0.1)."""
    if max_area <= 0:
        return logits
    labels, areas = connected_components(logits > 0)
    is_speck = (labels > 0) & (areas <= max_area)
    return torch.where(is_speck, torch.full_like(logits, -0.1), logits)
