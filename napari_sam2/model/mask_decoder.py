"""SAM 2's mask decoder: prompt tokens + image embedding -> mask logits and scores.

Learned output tokens (an optional object-score token, an IoU token and ``1 + M`` mask
tokens) are prepended to the prompt tokens and exchanged with the image embedding in a
two-way transformer. The image side is upscaled 4x (optionally fused with the stride-4
and stride-8 backbone features) and each mask token, through its own small MLP (a
"hypernetwork"), becomes a per-pixel linear classifier of the upscaled features.

Mask token 0 predicts a single mask; tokens ``1..M`` predict ``M`` alternatives for
ambiguous prompts. Parameter names follow the official checkpoints
(``sam_mask_decoder.*``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .layers import MLP, LayerNorm2d
from .transformer import TwoWayTransformer

if TYPE_CHECKING:  # pragma: no cover
    from .config import Sam2Config

__all__ = ["MaskDecoder", "stability_scores"]

#: object-score logit reported when the decoder has no object-score head (present)
DEFAULT_OBJECT_SCORE = 10.0


def stability_scores(mask_logits: Tensor, delta: float) -> Tensor:
    """IoU between a mask thresholded at ``+delta`` and at ``-delta``.

    ``(..., H, W)`` logits -> ``(...)`` scores in [0, 1]; an empty mask scores 1.
    """
    flat = mask_logits.flatten(-2)
    inner = (flat > delta).sum(-1).float()
    outer = (flat > -delta).sum(-1).float()
    return torch.where(outer > 0, inner / outer.clamp_min(1.0), 1.0)


class MaskDecoder(nn.Module):
    """Predicts masks, their IoU, the object score and the output tokens.

    Args:
        transformer_dim: width ``C`` of tokens and image embedding (256).
        num_multimask_outputs: ``M``, masks predicted for ambiguous prompts.
        depth, num_heads, mlp_dim: the two-way transformer's size.
        iou_head_depth, iou_head_hidden_dim: the IoU MLP's size.
        use_high_res_features: fuse stride-4/stride-8 backbone features while upscaling
            (creates ``conv_s0`` / ``conv_s1``, which the caller applies to those levels).
        iou_prediction_use_sigmoid: IoU predictions pass through a sigmoid.
        dynamic_multimask_via_stability: in single-mask mode (and not training), fall back
            to the best of the ``M`` alternatives when mask 0 is unstable, i.e. when its
            stability score (see :func:`stability_scores` with
            ``dynamic_multimask_stability_delta``) is below
            ``dynamic_multimask_stability_thresh``.
        pred_obj_scores: predict an object-presence logit from a dedicated token
            (otherwise it is the constant 10).
        pred_obj_scores_mlp: that head is a 3-layer MLP instead of a linear layer.
        use_multimask_token_for_obj_ptr: in multimask mode, return the ``M`` alternative
            tokens (for object pointers) instead of the single-mask token.
    """

    def __init__(
        self,
        transformer_dim: int = 256,
        *,
        num_multimask_outputs: int = 3,
        depth: int = 2,
        num_heads: int = 8,
        mlp_dim: int = 2048,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        use_high_res_features: bool = False,
        iou_prediction_use_sigmoid: bool = False,
        dynamic_multimask_via_stability: bool = False,
        dynamic_multimask_stability_delta: float = 0.05,
        dynamic_multimask_stability_thresh: float = 0.98,
        pred_obj_scores: bool = False,
        pred_obj_scores_mlp: bool = False,
        use_multimask_token_for_obj_ptr: bool = False,
    ) -> None:
        super().__init__()
        dim = transformer_dim
        self.transformer_dim = dim
        self.num_multimask_outputs = num_multimask_outputs
        self.num_mask_tokens = num_multimask_outputs + 1
        self.pred_obj_scores = pred_obj_scores
        self.use_multimask_token_for_obj_ptr = use_multimask_token_for_obj_ptr
        self.use_high_res_features = use_high_res_features
        self.dynamic_multimask_via_stability = dynamic_multimask_via_stability
        self.dynamic_multimask_stability_delta = dynamic_multimask_stability_delta
        self.dynamic_multimask_stability_thresh = dynamic_multimask_stability_thresh

        self.transformer = TwoWayTransformer(
            depth=depth, embedding_dim=dim, num_heads=num_heads, mlp_dim=mlp_dim
        )
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        if pred_obj_scores:
            self.obj_score_token = nn.Embedding(1, dim)

        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        if use_high_res_features:
            self.conv_s0 = nn.Conv2d(dim, dim // 8, kernel_size=1)
            self.conv_s1 = nn.Conv2d(dim, dim // 4, kernel_size=1)

        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            dim,
            iou_head_hidden_dim,
            self.num_mask_tokens,
            iou_head_depth,
            sigmoid_output=iou_prediction_use_sigmoid,
        )
        if pred_obj_scores:
            self.pred_obj_score_head: nn.Module = (
                MLP(dim, dim, 1, 3) if pred_obj_scores_mlp else nn.Linear(dim, 1)
            )

    @classmethod
    def from_config(cls, cfg: "Sam2Config", **overrides) -> "MaskDecoder":
        """The mask decoder of a SAM 2 variant; keyword ``overrides`` win over ``cfg``."""
        kwargs = dict(
            transformer_dim=cfg.hidden_dim,
            num_multimask_outputs=cfg.num_multimask_outputs,
            depth=cfg.decoder_depth,
            num_heads=cfg.decoder_num_heads,
            mlp_dim=cfg.decoder_mlp_dim,
            iou_head_depth=cfg.iou_head_depth,
            iou_head_hidden_dim=cfg.iou_head_hidden_dim,
            use_high_res_features=cfg.use_high_res_features_in_sam,
            iou_prediction_use_sigmoid=cfg.iou_prediction_use_sigmoid,
            dynamic_multimask_via_stability=cfg.dynamic_multimask_via_stability,
            dynamic_multimask_stability_delta=cfg.dynamic_multimask_stability_delta,
            dynamic_multimask_stability_thresh=cfg.dynamic_multimask_stability_thresh,
            pred_obj_scores=cfg.pred_obj_scores,
            pred_obj_scores_mlp=cfg.pred_obj_scores_mlp,
            use_multimask_token_for_obj_ptr=cfg.use_multimask_token_for_obj_ptr,
        )
        kwargs.update(overrides)
        return cls(**kwargs)

    # ------------------------------------------------------------------ helpers
    def _output_tokens(self) -> Tensor:
        """``(T, C)``: [object-score token], IoU token, mask tokens."""
        tokens = [self.iou_token.weight, self.mask_tokens.weight]
        if self.pred_obj_scores:
            tokens.insert(0, self.obj_score_token.weight)
        return torch.cat(tokens, dim=0)

    def _upscale(self, src: Tensor, high_res_features: list[Tensor] | None) -> Tensor:
        """``(B, C, h, w)`` -> ``(B, C/8, 4h, 4w)``, adding the skip features if enabled."""
        up1, norm1, act1, up2, act2 = self.output_upscaling
        if not self.use_high_res_features:
            return act2(up2(act1(norm1(up1(src)))))
        if high_res_features is None or len(high_res_features) != 2:
            raise ValueError(
                "this decoder uses high-resolution features: pass [feat_s0, feat_s1] "
                "(conv_s0 / conv_s1 applied to the stride-4 and stride-8 levels)"
            )
        feat_s0, feat_s1 = high_res_features
        x = act1(norm1(up1(src) + feat_s1))
        return act2(up2(x) + feat_s0)

    def _select_stable(self, masks: Tensor, iou: Tensor) -> tuple[Tensor, Tensor]:
        """Single-mask output with the stability fallback.

        ``masks (B, 1+M, H, W)``, ``iou (B, 1+M)`` -> ``(B, 1, H, W)``, ``(B, 1)``: mask 0
        where it is stable, otherwise the alternative with the highest predicted IoU.
        """
        stable = (
            stability_scores(masks[:, 0], self.dynamic_multimask_stability_delta)
            >= self.dynamic_multimask_stability_thresh
        )
        best_alt = iou[:, 1:].argmax(dim=-1) + 1
        choice = torch.where(stable, torch.zeros_like(best_alt), best_alt)
        batch = torch.arange(masks.shape[0], device=masks.device)
        return masks[batch, choice].unsqueeze(1), iou.gather(1, choice.unsqueeze(1))

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
        multimask_output: bool,
        repeat_image: bool,
        high_res_features: list[Tensor] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Predict masks.

        Args:
            image_embeddings: ``(B, C, h, w)`` (or ``(1, C, h, w)`` with ``repeat_image``).
            image_pe: ``(1, C, h, w)`` from :meth:`PromptEncoder.get_dense_pe`.
            sparse_prompt_embeddings: ``(B, N, C)`` point/box tokens.
            dense_prompt_embeddings: ``(B, C, h, w)`` mask embedding.
            multimask_output: return the ``M`` alternatives instead of a single mask.
            repeat_image: the image embeddings are shared by all ``B`` prompts.
            high_res_features: ``[feat_s0 (B, C/8, 4h, 4w), feat_s1 (B, C/4, 2h, 2w)]``,
                the stride-4/stride-8 levels after ``conv_s0`` / ``conv_s1``; required
                when ``use_high_res_features``.

        Returns:
            ``masks (B, K, 4h, 4w)`` logits and ``iou_pred (B, K)`` with ``K = M`` in
            multimask mode and 1 otherwise; ``sam_tokens_out (B, K', C)`` with ``K' = M``
            when multimask mode returns the alternative tokens
            (``use_multimask_token_for_obj_ptr``), else the single-mask token (``K' = 1``);
            ``object_score_logits (B, 1)``.
        """
        batch = sparse_prompt_embeddings.shape[0]
        out_tokens = self._output_tokens()
        tokens = torch.cat(
            (
                out_tokens.unsqueeze(0).expand(batch, -1, -1).to(sparse_prompt_embeddings.dtype),
                sparse_prompt_embeddings,
            ),
            dim=1,
        )

        if image_embeddings.shape[0] != batch and not (
            repeat_image and image_embeddings.shape[0] == 1
        ):
            raise ValueError(
                f"{image_embeddings.shape[0]} image embeddings for {batch} prompts; share "
                "one image embedding (batch 1) with repeat_image=True or pass one per prompt"
            )
        _, c, h, w = image_embeddings.shape
        if torch.is_grad_enabled() and (
            image_embeddings.requires_grad or dense_prompt_embeddings.requires_grad
        ):
            src = (image_embeddings + dense_prompt_embeddings).expand(batch, -1, -1, -1)
        else:
            # Image + mask embedding written straight into token order (channels last),
            # so that the transformer reads (B, h*w, C) tokens without another copy.
            dtype = torch.result_type(image_embeddings, dense_prompt_embeddings)
            src = image_embeddings.new_empty((batch, h, w, c), dtype=dtype).permute(0, 3, 1, 2)
            torch.add(image_embeddings, dense_prompt_embeddings, out=src)

        hs, keys = self.transformer(src, image_pe, tokens)
        first = 1 if self.pred_obj_scores else 0  # index of the IoU token
        iou_pred = self.iou_prediction_head(hs[:, first])
        mask_tokens_out = hs[:, first + 1 : first + 1 + self.num_mask_tokens]
        if self.pred_obj_scores:
            object_score_logits = self.pred_obj_score_head(hs[:, 0])
        else:
            object_score_logits = iou_pred.new_full((batch, 1), DEFAULT_OBJECT_SCORE)

        # Which mask tokens are needed: the alternatives, the single mask, or all of them
        # when the single mask may fall back to an alternative.
        use_fallback = (
            not multimask_output and self.dynamic_multimask_via_stability and not self.training
        )
        if multimask_output:
            lo, hi = 1, self.num_mask_tokens
        elif use_fallback:
            lo, hi = 0, self.num_mask_tokens
        else:
            lo, hi = 0, 1

        upscaled = self._upscale(keys.transpose(1, 2).unflatten(2, (h, w)), high_res_features)
        hyper = torch.stack(
            [self.output_hypernetworks_mlps[i](mask_tokens_out[:, i]) for i in range(lo, hi)],
            dim=1,
        )  # (B, K, C/8)
        masks = (hyper @ upscaled.flatten(2)).unflatten(2, upscaled.shape[-2:])
        iou_pred = iou_pred[:, lo:hi]
        if use_fallback:
            masks, iou_pred = self._select_stable(masks, iou_pred)

        if multimask_output and self.use_multimask_token_for_obj_ptr:
            sam_tokens_out = mask_tokens_out[:, 1:]
        else:
            # the single-mask token is the object-pointer token, also after one click
            sam_tokens_out = mask_tokens_out[:, 0:1]
        return masks, iou_pred, sam_tokens_out, object_score_logits
