"""Attention guidance: a training-only loss that shows a decoder trained from scratch
where a click is.

SAM's mask decoder can only localise a click through its cross-attentions: the click's
token must gather the clicked object's features (token to image), and the object's
pixels must take in the click's token (image to token). Starting from random weights,
gradient descent on the mask losses alone does not find this in thousands of steps: the
masks learn "every cell" or "nothing" and stay there, whichever object was clicked.

This term supervises those attention maps directly. On one frame of a clip, every
object gets one positive click; in each two-way block, the pixels inside the object
should attend to the click token and the pixels well outside it should not, and the
click token's attention should fall on the object. The prediction of that pass also
takes the usual mask losses (without the "object absent" override, so that its masks
learn even while the presence head is still unsure).

Tracking has the same problem one step later: a frame without prompts finds its object
only through memory attention, whose queries (the frame's pixels) must look at the
object's pixels in the remembered frames. :func:`memory_guidance` supervises that: the
object's pixels should put their attention on the remembered object, and pixels well
outside it should not.

Only the demo recipe (training from scratch) uses it; fine-tuning a model that already
localises leaves its weight at 0 and runs nothing of this module.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..model.sam2 import ImageFeatures, Sam2, upsample_masks
from .losses import LossWeights, step_loss
from .prompts import PromptSettings, initial_points

__all__ = ["attention_probe", "guidance_loss", "memory_probe", "memory_guidance"]

_INSIDE, _OUTSIDE = 0.5, 0.05  # share of an embedding cell covered by the object


@contextmanager
def attention_probe(model: Sam2) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Record the cross-attention logits of the mask decoder's two-way blocks.

    Yields a list that fills with ``("image_to_token", logits)`` and
    ``("token_to_image", logits)``, logits shaped (B, heads, queries, keys).
    """
    records: list[tuple[str, torch.Tensor]] = []

    def recorder(kind: str):
        def hook(module, inputs, _output) -> None:
            q = module.separate_heads(module.q_proj(inputs[0]))
            k = module.separate_heads(module.k_proj(inputs[1]))
            records.append((kind, (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])))

        return hook

    handles = []
    for block in model.sam_mask_decoder.transformer.layers:
        handles.append(block.cross_attn_image_to_token.register_forward_hook(recorder("image_to_token")))
        handles.append(block.cross_attn_token_to_image.register_forward_hook(recorder("token_to_image")))
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


def _attention_terms(records: list[tuple[str, torch.Tensor]], cover: torch.Tensor, click_token: int) -> torch.Tensor:
    """Per-object attention loss; ``cover`` (B, h*w) is the object's share of each cell."""
    inside = (cover > _INSIDE).to(cover.dtype)
    outside = (cover < _OUTSIDE).to(cover.dtype)
    total = cover.new_zeros(cover.shape[0])
    for kind, logits in records:
        if kind == "image_to_token":
            # how much each pixel takes from the click token, averaged over heads: (B, h*w)
            weight = logits.float().softmax(-1)[..., click_token].mean(1)
            total = total - (torch.log(weight + 1e-6) * inside).sum(1) / inside.sum(1).clamp(min=1)
            total = total - (torch.log(1 - weight + 1e-6) * outside).sum(1) / outside.sum(1).clamp(min=1)
        else:
            # where the click token looks: its attention mass on the object
            weight = logits.float().softmax(-1)[:, :, click_token, :].mean(1)
            total = total - torch.log((weight * inside).sum(1) + 1e-6)
    return total


def guidance_loss(
    model: Sam2,
    features: ImageFeatures,
    truth: torch.Tensor,
    rng: np.random.Generator,
    weights: LossWeights,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The guidance pass on one frame: ``truth`` (B, S, S) bool, one object per row.

    Returns ``weights.attention`` x (attention loss + mask losses of the pass), averaged
    over the objects present, and the two parts for the log.
    """
    present = truth.flatten(1).any(-1)
    if not bool(present.any()):
        zero = truth.new_zeros((), dtype=torch.float32)
        return zero, {"guidance": 0.0}
    truth = truth[present]
    batch = truth.shape[0]
    device = features.vision.device
    points, labels = initial_points(truth.cpu(), "click", PromptSettings(), rng)
    points, labels = points.to(device), labels.to(device)
    pix = model.no_memory_features(features, batch)
    encoder = model.sam_prompt_encoder
    sparse, dense = encoder(points=(points, labels), boxes=None, masks=None)
    with attention_probe(model) as records:
        masks, ious, _tokens, scores = model.sam_mask_decoder(
            image_embeddings=pix,
            image_pe=encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
            repeat_image=False,
            high_res_features=features.expanded_high_res(batch),
        )
    decoder = model.sam_mask_decoder
    click_token = int(decoder.pred_obj_scores) + 1 + decoder.num_mask_tokens  # after the output tokens
    grid = pix.shape[-2:]
    cover = F.adaptive_avg_pool2d(truth[:, None].float().to(device), grid).flatten(1)
    attention = _attention_terms(records, cover, click_token).mean()

    target = truth.to(device)
    mask_loss = step_loss(upsample_masks(masks.float(), truth.shape[-1]), ious.float(), scores.float(), target, weights)["total"]
    total = weights.attention * (attention + mask_loss)
    return total, {"guidance": float(total.detach())}


@contextmanager
def memory_probe(model: Sam2) -> Iterator[list[torch.Tensor]]:
    """Record the memory cross-attention logits of every memory-attention layer.

    Yields a list that fills with (B, heads, h*w, M) logits, M memory tokens (spatial
    memories first, object pointers last). Only the training path (gradients on, the
    fused attention kernel) goes through the recorded call.
    """
    records: list[torch.Tensor] = []
    wrapped = []
    for layer in model.memory_attention.layers:
        attn = layer.cross_attn_image

        def attend(q, k, v, _attn=attn, _original=attn.attend):
            heads, dh = _attn.num_heads, _attn.head_dim
            qh = q.unflatten(-1, (heads, dh)).transpose(1, 2)
            kh = k.unflatten(-1, (heads, dh)).transpose(1, 2)
            if qh.shape[0] != kh.shape[0]:
                qh = qh.expand(kh.shape[0], -1, -1, -1)
            records.append((qh @ kh.transpose(-1, -2)) * dh**-0.5)
            return _original(q, k, v)

        attn.attend = attend  # an instance attribute hides the method until removed
        wrapped.append(attn)
    try:
        yield records
    finally:
        for attn in wrapped:
            del attn.attend


def memory_guidance(
    records: list[torch.Tensor], truth: torch.Tensor, memory_truths: list[torch.Tensor], grid: tuple[int, int]
) -> torch.Tensor:
    """Per-object memory-attention loss (B,) for one tracked frame.

    ``truth`` (B, S, S): the frame's objects; ``memory_truths``: the objects in each
    remembered frame, in the order of the spatial memories.
    """
    cover = F.adaptive_avg_pool2d(truth[:, None].float(), grid).flatten(1)
    inside = (cover > _INSIDE).float()
    outside = (cover < _OUTSIDE).float()
    remembered = torch.cat(
        [(F.adaptive_avg_pool2d(m[:, None].float(), grid).flatten(1) > _INSIDE).float() for m in memory_truths], 1
    )  # (B, spatial memory tokens)
    total = cover.new_zeros(cover.shape[0])
    if not bool(remembered.any()):
        return total
    spatial = remembered.shape[1]
    for logits in records:
        weight = logits.float().softmax(-1)[..., :spatial].mean(1)  # (B, h*w, spatial)
        mass = (weight * remembered[:, None, :]).sum(-1)  # on the remembered object
        total = total - (torch.log(mass + 1e-6) * inside).sum(1) / inside.sum(1).clamp(min=1)
        total = total - (torch.log(1 - mass + 1e-6) * outside).sum(1) / outside.sum(1).clamp(min=1)
    has_memory = remembered.sum(1) > 0
    return total * has_memory.float()
