"""The FPN neck of the image encoder: lateral 1x1 convolutions, top-down fusion and sine
position encodings. Parameter names follow the official checkpoints (``neck.*``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import NeckConfig
from .position import SinePositionEncoding

__all__ = ["FpnNeck"]


class _Lateral(nn.Module):
    """One lateral 1x1 convolution of the FPN; key ``conv``."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_dim, out_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, d_model, H, W)``; channels-last input stays a GEMM."""
        weight = self.conv.weight
        tokens = x.permute(0, 2, 3, 1)
        if weight.shape[-2:] == (1, 1) and tokens.is_contiguous():
            return F.linear(tokens, weight.flatten(1), self.conv.bias).permute(0, 3, 1, 2)
        return self.conv(x)


class FpnNeck(nn.Module):
    """Feature pyramid without output convolutions.

    ``forward(xs)`` takes the trunk outputs (highest resolution first, channels
    ``reversed(cfg.backbone_channel_list)``) and returns ``(features, pos)``: lists of
    ``(B, d_model, H_i, W_i)`` maps and their sine position encodings, same order. Levels
    in ``fpn_top_down_levels`` add the 2x-upsampled coarser level.
    """

    def __init__(self, cfg: NeckConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.d_model = cfg.d_model
        self.backbone_channel_list = list(cfg.backbone_channel_list)
        self.position_encoding = SinePositionEncoding(cfg.d_model, cfg.pos_temperature)
        # convs[j] handles the j-th coarsest level
        self.convs = nn.ModuleList(_Lateral(dim, cfg.d_model) for dim in cfg.backbone_channel_list)
        self.fpn_top_down_levels = tuple(cfg.fpn_top_down_levels)
        self.interp_mode = cfg.fpn_interp_model

    def forward(self, xs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        n = len(self.convs)
        if len(xs) != n:
            raise ValueError(f"expected {n} feature maps, got {len(xs)}")
        features: list[torch.Tensor] = [None] * n  # type: ignore[list-item]
        pos: list[torch.Tensor] = [None] * n  # type: ignore[list-item]
        coarser: torch.Tensor | None = None
        for level in range(n - 1, -1, -1):  # coarse to fine
            lateral = self.convs[n - 1 - level](xs[level])
            if coarser is not None and level in self.fpn_top_down_levels:
                up = F.interpolate(
                    coarser.to(torch.float32),
                    scale_factor=2.0,
                    mode=self.interp_mode,
                    align_corners=None if self.interp_mode == "nearest" else False,
                    antialias=False,
                )
                lateral = lateral + up
            coarser = lateral
            features[level] = lateral
            pos[level] = self.position_encoding(lateral).to(lateral.dtype)
        return features, pos
