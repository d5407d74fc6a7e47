"""Position encodings shared by the image encoder, the SAM heads and the memory.

- :class:`SinePositionEncoding`: fixed 2D sine/cosine maps for feature grids (FPN neck,
  memory encoder), cached per grid size because every frame reuses them.
- :class:`RandomFourierEncoding`: SAM's random-frequency encoding of prompt coordinates
  (its Gaussian matrix is a buffer in the official state dict).
- :func:`sine_encoding_1d`: temporal encoding of object-pointer distances.
- :func:`axial_rope` / :func:`apply_rope`: 2D axial rotary encoding for memory attention.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "SinePositionEncoding",
    "RandomFourierEncoding",
    "sine_encoding_1d",
    "axial_rope",
    "apply_rope",
]


def stale_cached(value: torch.Tensor) -> bool:
    """True for a cached tensor made under ``torch.inference_mode`` that autograd cannot use.

    Parameter-free caches are filled by whatever runs first; a model that tracked a video
    (inference mode) and is then fine-tuned must rebuild them outside inference mode.
    """
    return value.is_inference() and not torch.is_inference_mode_enabled()


def _frequencies(num_feats: int, temperature: float, device: torch.device) -> torch.Tensor:
    """Wavelengths shared by each (sin, cos) pair of channels."""
    idx = torch.arange(num_feats, dtype=torch.float32, device=device)
    return temperature ** (2 * torch.div(idx, 2, rounding_mode="floor") / num_feats)


def _interleave_sin_cos(angles: torch.Tensor) -> torch.Tensor:
    """sin on even channels, cos on odd channels, keeping the channel order."""
    return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)


class SinePositionEncoding(nn.Module):
    """Normalized 2D sine encoding of a ``(H, W)`` grid with ``num_pos_feats`` channels.

    ``forward(x)`` returns ``(B, num_pos_feats, H, W)`` for an input ``(B, C, H, W)``.
    """

    def __init__(self, num_pos_feats: int, temperature: float = 10000.0) -> None:
        super().__init__()
        if num_pos_feats % 2:
            raise ValueError("num_pos_feats must be even")
        self.half = num_pos_feats // 2
        self.temperature = temperature
        self.scale = 2 * math.pi
        self._cache: dict[tuple[int, int, torch.device], torch.Tensor] = {}

    def grid(self, height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The encoding of one grid, ``(num_pos_feats, H, W)``; cached, do not modify."""
        device = torch.device(device)
        key = (height, width, device)
        cached = self._cache.get(key)
        if cached is not None and not stale_cached(cached):
            return cached
        eps = 1e-6
        ys = torch.arange(1, height + 1, dtype=torch.float32, device=device)
        xs = torch.arange(1, width + 1, dtype=torch.float32, device=device)
        ys = ys / (ys[-1:] + eps) * self.scale
        xs = xs / (xs[-1:] + eps) * self.scale
        freqs = _frequencies(self.half, self.temperature, device)
        enc_y = _interleave_sin_cos(ys[:, None] / freqs)  # (H, half)
        enc_x = _interleave_sin_cos(xs[:, None] / freqs)  # (W, half)
        pos = torch.cat(
            (
                enc_y[:, None, :].expand(height, width, self.half),
                enc_x[None, :, :].expand(height, width, self.half),
            ),
            dim=-1,
        ).permute(2, 0, 1).contiguous()
        self._cache[key] = pos
        return pos

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pos = self.grid(x.shape[-2], x.shape[-1], x.device).to(x.dtype)
        return pos.unsqueeze(0).expand(x.shape[0], -1, -1, -1)


class RandomFourierEncoding(nn.Module):
    """SAM's encoding of normalized coordinates with random spatial frequencies.

    The frequency matrix ``positional_encoding_gaussian_matrix`` (2, F) is part of the
    checkpoint; outputs have ``2 F`` channels.
    """

    def __init__(self, num_pos_feats: int = 128, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer(
            "positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats))
        )

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """Encode ``(..., 2)`` coordinates in [0, 1] (x, y order) to ``(..., 2F)``."""
        proj = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        proj = 2 * math.pi * proj
        return torch.cat((proj.sin(), proj.cos()), dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Dense encoding of a ``(h, w)`` grid of cell centres, ``(2F, h, w)``."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
        grid = torch.stack(
            (xs[None, :].expand(h, w), ys[:, None].expand(h, w)), dim=-1
        )
        return self.encode(grid).permute(2, 0, 1)

    def forward_with_coords(self, coords: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Encode pixel coordinates ``(B, N, 2)`` (x, y) of an image of ``(h, w)``."""
        h, w = image_size
        scale = torch.tensor([1.0 / w, 1.0 / h], dtype=torch.float32, device=coords.device)
        return self.encode(coords.float() * scale)


def sine_encoding_1d(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Transformer-style encoding of scalar positions: ``(N,)`` -> ``(N, dim)``.

    The first half of the channels are sines, the second half cosines.
    """
    half = dim // 2
    freqs = _frequencies(half, temperature, positions.device)
    angles = positions.unsqueeze(-1) / freqs
    return torch.cat((angles.sin(), angles.cos()), dim=-1)


def axial_rope(dim: int, width: int, height: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines and sines of 2D axial rotary encoding for a row-major ``height x width`` grid.

    Returns two tensors of shape ``(height * width, dim // 2)``: one angle per channel pair.
    The first ``dim // 4`` pairs rotate with the column index, the rest with the row index.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 4)[: dim // 4].float() / dim))
    idx = torch.arange(width * height, dtype=torch.float32)
    cols = idx % width
    rows = torch.div(idx, width, rounding_mode="floor")
    angles = torch.cat((torch.outer(cols, inv_freq), torch.outer(rows, inv_freq)), dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs of ``x`` (..., N, D) by per-token angles (N, D/2).

    ``N`` may be a multiple of the number of angle rows (memories of several frames share
    the same spatial grid); the angles are then repeated along the token axis.
    """
    n = x.shape[-2]
    reps = n // cos.shape[0]
    if reps != 1:
        cos = cos.repeat(reps, 1)
        sin = sin.repeat(reps, 1)
    x_even = x[..., 0::2].float()
    x_odd = x[..., 1::2].float()
    out = torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), dim=-1)
    return out.flatten(-2).to(x.dtype)
