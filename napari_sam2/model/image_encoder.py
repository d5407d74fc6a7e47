"""The image encoder: the Hiera trunk followed by the FPN neck (``trunk.*``, ``neck.*``)."""

from __future__ import annotations

import torch
from torch import nn

from .config import HieraConfig, NeckConfig
from .hiera import Hiera
from .neck import FpnNeck

__all__ = ["ImageEncoder"]


class ImageEncoder(nn.Module):
    """Hiera trunk + FPN neck; submodules ``trunk`` and ``neck``.

    ``forward(x)`` with ``x`` ``(B, 3, H, W)`` (multiples of 32) returns
    ``{"vision_features": (B, d, H/16, W/16), "vision_pos_enc": [...], "backbone_fpn":
    [...]}``, the lists holding the ``4 - scalp`` finest levels of ``(B, d, H_i, W_i)``
    maps (strides 4, 8, 16 by default), finest first; ``vision_features`` is the last.
    The position encodings are shared cached tensors: do not modify them in place.
    """

    def __init__(self, hiera: HieraConfig, neck: NeckConfig) -> None:
        super().__init__()
        self.trunk = Hiera(hiera)
        self.neck = FpnNeck(neck)
        self.scalp = neck.scalp
        if self.trunk.channel_list != self.neck.backbone_channel_list:
            raise ValueError(
                f"trunk channels {self.trunk.channel_list} do not match the neck's "
                f"{self.neck.backbone_channel_list}"
            )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        features, pos = self.neck(self.trunk(x))
        if self.scalp > 0:
            features, pos = features[: -self.scalp], pos[: -self.scalp]
        return {"vision_features": features[-1], "vision_pos_enc": pos, "backbone_fpn": features}
