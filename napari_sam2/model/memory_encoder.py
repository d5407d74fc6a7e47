"""The memory encoder of the video model: a frame's image features and its predicted mask
become a compact memory (64 channels at stride 16) with a fixed sine position encoding.

Parameter names equal the official checkpoint keys below ``memory_encoder.``; inference
only (no dropout).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import MemoryEncoderConfig
from .layers import LayerNorm2d
from .position import SinePositionEncoding

__all__ = ["MaskDownSampler", "CXBlock", "Fuser", "MemoryEncoder"]


class MaskDownSampler(nn.Module):
    """Strided convolutions that bring a full-resolution mask to the feature grid.

    Each step divides the resolution by ``stride`` and multiplies the channels by
    ``stride ** 2`` (conv, channel layer norm, GELU); a final 1x1 convolution maps to
    ``embed_dim`` channels. Keys: ``encoder.{i}.*`` (the GELUs hold no parameters).
    """

    def __init__(
        self,
        embed_dim: int = 256,
        kernel_size: int = 3,
        stride: int = 2,
        padding: int = 1,
        total_stride: int = 16,
    ) -> None:
        super().__init__()
        num_steps = round(math.log(total_stride, stride))
        if stride**num_steps != total_stride:
            raise ValueError(f"total_stride {total_stride} is not a power of stride {stride}")
        modules: list[nn.Module] = []
        channels = 1
        for _ in range(num_steps):
            out_channels = channels * stride * stride
            modules += [
                nn.Conv2d(channels, out_channels, kernel_size, stride=stride, padding=padding),
                LayerNorm2d(out_channels),
                nn.GELU(),
            ]
            channels = out_channels
        modules.append(nn.Conv2d(channels, embed_dim, kernel_size=1))
        self.encoder = nn.Sequential(*modules)

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        return self.encoder(masks)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise conv, layer norm, pointwise MLP, layer scale, residual."""

    def __init__(self, dim: int, kernel_size: int = 7, padding: int = 3) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=padding, groups=dim)
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)  # channels last for the norm and the MLP
        y = F.layer_norm(y, (y.shape[-1],), self.norm.weight, self.norm.bias, self.norm.eps)
        y = self.pwconv2(F.gelu(self.pwconv1(y)))
        y = y * self.gamma
        return x + y.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    """A stack of :class:`CXBlock`; keys ``layers.{i}.*``."""

    def __init__(self, dim: int, num_layers: int, kernel_size: int = 7, padding: int = 3) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CXBlock(dim, kernel_size, padding) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """Encode a frame's features ``(B, C, h, w)`` and mask ``(B, 1, H, W)`` into a memory.

    ``forward`` returns ``{"vision_features": (B, out_dim, h, w), "vision_pos_enc":
    [(B, out_dim, h, w)]}``. The position encoding is a broadcast view of a cached grid:
    treat it as read-only.
    """

    def __init__(self, cfg: MemoryEncoderConfig, hidden_dim: int = 256) -> None:
        super().__init__()
        if cfg.in_dim != hidden_dim:
            raise ValueError(f"memory encoder in_dim {cfg.in_dim} != hidden_dim {hidden_dim}")
        self.mask_downsampler = MaskDownSampler(
            embed_dim=hidden_dim,
            kernel_size=cfg.mask_kernel_size,
            stride=cfg.mask_stride,
            padding=cfg.mask_padding,
            total_stride=cfg.mask_total_stride,
        )
        self.pix_feat_proj = nn.Conv2d(hidden_dim, hidden_dim, kernel_size=1)
        self.fuser = Fuser(hidden_dim, cfg.fuser_num_layers, cfg.fuser_kernel_size, cfg.fuser_padding)
        self.out_proj: nn.Module = (
            nn.Conv2d(hidden_dim, cfg.out_dim, kernel_size=1)
            if cfg.out_dim != hidden_dim
            else nn.Identity()
        )
        self.position_encoding = SinePositionEncoding(cfg.out_dim, cfg.pos_temperature)

    def forward(
        self,
        pix_feat: torch.Tensor,
        masks: torch.Tensor,
        skip_mask_sigmoid: bool = False,
    ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        if not skip_mask_sigmoid:
            masks = torch.sigmoid(masks)
        mask_embed = self.mask_downsampler(masks)
        x = self.pix_feat_proj(pix_feat.to(mask_embed.device))
        x = self.fuser(x + mask_embed)
        x = self.out_proj(x)
        pos = self.position_encoding(x).to(x.dtype)
        return {"vision_features": x, "vision_pos_enc": [pos]}
