"""SAM's prompt encoder: clicks and boxes to sparse tokens, a mask to a dense map.

Point labels: ``1`` positive click, ``0`` negative click, ``-1`` padding (not a point),
``2`` / ``3`` top-left / bottom-right box corner. Coordinates are ``(x, y)`` pixels in
the model's input space (``image_size`` x ``image_size``). Parameter names follow the
official checkpoints (``sam_prompt_encoder.*``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .layers import LayerNorm2d
from .position import RandomFourierEncoding

if TYPE_CHECKING:  # pragma: no cover
    from .config import Sam2Config

__all__ = ["PromptEncoder"]

# Labels -1..3 select rows 0..4 of the label table (see ``_label_table``); any other
# label selects the last row, which adds nothing.
_MIN_LABEL, _MAX_LABEL = -1, 3
_NONE_ROW = _MAX_LABEL - _MIN_LABEL + 1


class PromptEncoder(nn.Module):
    """Embeds point, box and mask prompts for the mask decoder.

    Args:
        embed_dim: width ``C`` of the prompt embeddings (the decoder width).
        image_embedding_size: ``(h, w)`` of the image embedding (``image_size / 16``).
        input_image_size: ``(H, W)`` of the model input, the frame of point coordinates.
        mask_in_chans: hidden channels of the mask downscaling convolutions.
    """

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int = 16,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = (int(image_embedding_size[0]), int(image_embedding_size[1]))
        self.input_image_size = (int(input_image_size[0]), int(input_image_size[1]))
        self.mask_input_size = (4 * self.image_embedding_size[0], 4 * self.image_embedding_size[1])

        self.pe_layer = RandomFourierEncoding(embed_dim // 2)
        # negative, positive, box top-left, box bottom-right
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.no_mask_embed = nn.Embedding(1, embed_dim)
        hidden = mask_in_chans // 4
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, hidden, kernel_size=2, stride=2),
            LayerNorm2d(hidden),
            nn.GELU(),
            nn.Conv2d(hidden, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self._dense_pe: Tensor | None = None
        self._dense_pe_key: tuple | None = None

    @classmethod
    def from_config(cls, cfg: "Sam2Config") -> "PromptEncoder":
        """The prompt encoder of a SAM 2 variant at ``cfg.image_size``."""
        side = cfg.embedding_size
        return cls(
            embed_dim=cfg.hidden_dim,
            image_embedding_size=(side, side),
            input_image_size=(cfg.image_size, cfg.image_size),
            mask_in_chans=cfg.mask_in_chans,
        )

    # ------------------------------------------------------------------ dense positions
    def get_dense_pe(self) -> Tensor:
        """Positional encoding of the image-embedding grid, ``(1, C, h, w)``.

        Computed once per weights/device and reused (every click and frame needs it);
        treat the result as read-only.
        """
        gauss = self.pe_layer.positional_encoding_gaussian_matrix
        try:
            version = gauss._version  # bumped by in-place updates such as load_state_dict
        except RuntimeError:  # an inference tensor: no version counter, do not cache
            return self.pe_layer(self.image_embedding_size).unsqueeze(0)
        key = (
            gauss.device,
            gauss.dtype,
            gauss.data_ptr(),
            version,
            torch.is_inference_mode_enabled(),
            self.image_embedding_size,
        )
        if self._dense_pe is None or self._dense_pe_key != key:
            with torch.no_grad():
                self._dense_pe = self.pe_layer(self.image_embedding_size).unsqueeze(0)
            self._dense_pe_key = key
        return self._dense_pe

    # ------------------------------------------------------------------ sparse prompts
    def _label_table(self) -> Tensor:
        """``(6, C)``: what labels -1 (padding; replaces the position term), 0, 1, 2, 3
        and any other label add to the position encoding."""
        w = [e.weight for e in self.point_embeddings]
        pad = self.not_a_point_embed.weight
        return torch.cat((pad, w[0], w[1], w[2], w[3], torch.zeros_like(pad)), dim=0)

    def _embed_points(self, coords: Tensor, labels: Tensor, pad: bool) -> Tensor:
        """``(B, N, 2)`` pixel coords and ``(B, N)`` labels -> ``(B, N [+1], C)``."""
        pos = self.pe_layer.forward_with_coords(coords + 0.5, self.input_image_size)
        labels = labels.long()
        valid = (labels >= _MIN_LABEL) & (labels <= _MAX_LABEL)
        rows = torch.where(valid, labels - _MIN_LABEL, _NONE_ROW)
        pos = torch.where((labels == -1).unsqueeze(-1), 0.0, pos)
        emb = pos + self._label_table()[rows]
        if pad:
            # an extra "not a point" token, as when no box follows the clicks
            pad_tok = self.not_a_point_embed.weight.to(emb.dtype).expand(emb.shape[0], 1, -1)
            emb = torch.cat((emb, pad_tok), dim=1)
        return emb

    def _embed_boxes(self, boxes: Tensor) -> Tensor:
        """``(B, 4)`` boxes ``(x0, y0, x1, y1)`` -> two corner tokens ``(B, 2, C)``."""
        corners = (boxes + 0.5).reshape(-1, 2, 2)
        pos = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        corner_embed = torch.cat(
            (self.point_embeddings[2].weight, self.point_embeddings[3].weight), dim=0
        )
        return pos + corner_embed

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        points: tuple[Tensor, Tensor] | None,
        boxes: Tensor | None,
        masks: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """Embed the prompts.

        Args:
            points: ``(coords (B, N, 2) xy pixels, labels (B, N) int)`` or None. Without
                a box a padding token is appended (the decoder was trained that way).
            boxes: ``(B, 4)`` ``(x0, y0, x1, y1)`` pixels or None.
            masks: ``(B, 1, 4h, 4w)`` mask logits (``mask_input_size``) or None.

        Returns:
            ``sparse (B, N', C)`` point/box tokens and ``dense (B, C, h, w)``: the
            encoded mask, or the learned no-mask embedding broadcast (an expanded view).
        """
        if points is not None:
            bs = points[0].shape[0]
        elif boxes is not None:
            bs = boxes.shape[0]
        elif masks is not None:
            bs = masks.shape[0]
        else:
            bs = 1

        parts: list[Tensor] = []
        if points is not None:
            coords, labels = points
            parts.append(self._embed_points(coords, labels, pad=boxes is None))
        if boxes is not None:
            parts.append(self._embed_boxes(boxes))
        if not parts:
            weight = self.not_a_point_embed.weight
            sparse = weight.new_empty((bs, 0, self.embed_dim))
        elif len(parts) == 1:
            sparse = parts[0]
        else:
            sparse = torch.cat(parts, dim=1)

        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            h, w = self.image_embedding_size
            dense = self.no_mask_embed.weight.view(1, -1, 1, 1).expand(bs, -1, h, w)
        return sparse, dense
