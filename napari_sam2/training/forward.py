"""A differentiable pass of SAM 2 over one clip, with simulated prompts.

It uses the same :class:`~napari_sam2.model.sam2.Sam2` operations as inference and
the same memory rule: every conditioning frame, the last ``num_maskmem - 1`` tracked
frames, and object pointers of past conditioning frames and of the frames before
(relative distances normalised by the clip length, as in SAM 2's training). All
objects of a clip share one memory layout, so they run as one batch.

Conditioning frames are processed first, without memory; the others follow in clip
order. Corrected frames add rounds of corrective clicks on top of their prediction and
then serve as conditioning frames. Memories are encoded from sigmoid masks (not
binarised), so gradients flow through the memory into earlier frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from ..model.sam2 import HeadOutput, ImageFeatures, MemoryTokens, Sam2
from .clips import Clip
from .guidance import memory_guidance, memory_probe
from .prompts import PromptPlan, PromptSettings, corrective_points, initial_points

__all__ = ["FrameStep", "clip_forward", "encode_clip"]


class _Ops:
    """The model's per-frame operations, optionally recomputed in the backward pass.

    Memory attention and the SAM heads keep large activations per frame (hundreds of MB
    at 512 px); with ``recompute`` only their inputs are kept, so a clip's memory grows
    slowly with its length at the cost of a second forward pass in backward.
    """

    def __init__(self, model: Sam2, recompute: bool) -> None:
        self.model = model
        self.recompute = recompute and torch.is_grad_enabled()

    def _run(self, fn, *args):
        return checkpoint(fn, *args, use_reentrant=False) if self.recompute else fn(*args)

    def condition(self, feats: ImageFeatures, tokens) -> torch.Tensor:
        n = tokens.num_ptr_tokens
        return self._run(lambda f, p: self.model.condition_on_memory(feats, MemoryTokens(f, p, n)), tokens.feats, tokens.pos)

    def memory(self, feats: ImageFeatures, high: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return self._run(lambda h, s: self.model.encode_memory(feats, h, s, binarize=False), high, scores)

    def heads(self, pix: torch.Tensor, high_res, *args, **kwargs) -> HeadOutput:
        if not self.recompute:
            return self.model.run_heads(pix, high_res, *args, **kwargs)

        def fn(p: torch.Tensor) -> tuple[torch.Tensor, ...]:
            h = self.model.run_heads(p, high_res, *args, **kwargs)
            return h.low_res_multimasks, h.ious, h.low_res_masks, h.obj_ptr, h.object_score_logits

        out = checkpoint(fn, pix, use_reentrant=False)
        return HeadOutput(*out, image_size=self.model.image_size)


@dataclass
class FrameStep:
    """One supervised prediction: clip position, step within the frame, and the heads."""

    frame: int
    step: int
    head: HeadOutput


def ops_recompute(recompute: bool) -> bool:
    """Whether :class:`_Ops` would recompute (only when gradients are on)."""
    return recompute and torch.is_grad_enabled()


def encode_clip(model: Sam2, frames: torch.Tensor, train_encoder: bool, grad_checkpoint: bool = True) -> list[ImageFeatures]:
    """Image features of every frame; the encoder runs without gradients when frozen."""
    levels_per_frame: list[list[torch.Tensor]] = []
    if not train_encoder:
        with torch.no_grad():
            for start in range(0, frames.shape[0], 4):  # a few frames at a time bounds the peak
                out = model.image_encoder(frames[start : start + 4])["backbone_fpn"]
                for i in range(out[0].shape[0]):
                    levels_per_frame.append([lvl[i : i + 1] for lvl in out])
    else:

        def run(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(model.image_encoder(x)["backbone_fpn"])

        for t in range(frames.shape[0]):
            x = frames[t : t + 1]
            out = checkpoint(run, x, use_reentrant=False) if grad_checkpoint else run(x)
            levels_per_frame.append(list(out))
    return [model.features_from_backbone(levels) for levels in levels_per_frame]


def _memory(
    model: Sam2,
    t: int,
    num_frames: int,
    cond: dict[int, tuple[torch.Tensor, torch.Tensor]],
    tracked: dict[int, tuple[torch.Tensor, torch.Tensor]],
    size: tuple[int, int],
):
    c = model.config
    spatial = [(0, mem) for _f, (mem, _p) in sorted(cond.items())]
    frames = sorted(cond)
    for t_pos in range(1, c.num_maskmem):
        prev = t - (c.num_maskmem - t_pos)
        if prev in tracked:
            spatial.append((t_pos, tracked[prev][0]))
            frames.append(prev)
    pointers = []
    max_ptrs = min(num_frames, c.max_obj_ptrs_in_encoder)
    if c.use_obj_ptrs_in_encoder:
        for f, (_mem, ptr) in sorted(cond.items()):
            if f < t or not c.only_obj_ptrs_in_the_past_for_eval:
                dist = t - f if c.use_signed_tpos_enc_to_obj_ptrs else abs(t - f)
                pointers.append((dist, ptr))
        for d in range(1, max_ptrs):
            f = t - d
            if f < 0:
                break
            if f in tracked:
                pointers.append((d, tracked[f][1]))
    return model.memory_tokens(spatial, pointers, max(max_ptrs, 2), model.maskmem_pos(size)), frames


def _corrections(
    ops: _Ops,
    pix: torch.Tensor,
    feats: ImageFeatures,
    head: HeadOutput,
    truth: torch.Tensor,
    points: tuple[torch.Tensor, torch.Tensor] | None,
    is_init: bool,
    rounds: int,
    settings: PromptSettings,
    rng: np.random.Generator,
) -> list[HeadOutput]:
    """Rounds of corrective clicks, each fed the previous mask logits as SAM 2 does."""
    batch = truth.shape[0]
    heads = []
    for _ in range(rounds):
        pred = head.high_res_masks()[:, 0] > 0
        new_pts, new_lbl = corrective_points(truth, pred, settings, rng)
        new_pts, new_lbl = new_pts.to(pix.device), new_lbl.to(pix.device)
        if points is None:
            points = (new_pts, new_lbl)
        else:
            points = (torch.cat([points[0], new_pts], 1), torch.cat([points[1], new_lbl], 1))
        previous = torch.clamp(head.low_res_masks, -32.0, 32.0)
        head = ops.heads(
            pix, feats.expanded_high_res(batch), points[0], points[1], mask_inputs=previous,
            multimask=ops.model.use_multimask(is_init, int(points[0].shape[1])),
        )
        heads.append(head)
    return heads


def clip_forward(
    model: Sam2,
    clip: Clip,
    plan: PromptPlan,
    settings: PromptSettings,
    rng: np.random.Generator,
    features: list[ImageFeatures],
    recompute: bool = True,
    memory_losses: list[torch.Tensor] | None = None,
) -> list[FrameStep]:
    """Run the model over ``clip`` as planned; returns every supervised prediction.

    ``recompute``: keep only the inputs of memory attention, memory encoder and heads
    and recompute them in the backward pass (much less memory, about a third more time).
    ``memory_losses``: a list to receive the memory guidance of every tracked frame
    (see :mod:`.guidance`; only without ``recompute``, whose second pass would not
    see the probe).
    """
    if memory_losses is not None and ops_recompute(recompute):
        raise ValueError("memory guidance needs recompute=False")
    ops = _Ops(model, recompute)
    device = model.device
    num_frames, batch = clip.num_frames, clip.num_objects
    truth = clip.masks.to(device)
    cond: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    tracked: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    steps: list[FrameStep] = []
    order = list(plan.cond_frames) + [t for t in range(num_frames) if t not in plan.cond_frames]
    for t in order:
        feats = features[t]
        high_res = feats.expanded_high_res(batch)
        is_init = t in plan.cond_frames
        heads: list[HeadOutput] = []
        if is_init:
            pix = model.no_memory_features(feats, batch)
            if plan.kind == "mask":
                mask = truth[t][:, None].float()
                if model.config.use_mask_input_as_output_without_sam:
                    head = model.mask_as_output(feats.vision.expand(batch, -1, -1, -1), high_res, mask)  # the answer: no loss
                else:
                    head = ops.heads(pix, high_res, mask_inputs=mask, multimask=model.use_multimask(True, 0))
                    heads.append(head)
                points = None
            else:
                pts, lbl = initial_points(clip.masks[t], plan.kind, settings, rng)
                points = (pts.to(device), lbl.to(device))
                head = ops.heads(
                    pix, high_res, points[0], points[1], multimask=model.use_multimask(True, int(pts.shape[1]))
                )
                heads.append(head)
        else:
            tokens, memory_frames = _memory(model, t, num_frames, cond, tracked, feats.size)
            if memory_losses is None:
                pix = ops.condition(feats, tokens)
            else:
                with memory_probe(model) as records:
                    pix = ops.condition(feats, tokens)
                memory_losses.append(
                    memory_guidance(records, truth[t], [truth[f] for f in memory_frames], feats.size).mean()
                )
            head = ops.heads(pix, high_res, multimask=model.use_multimask(False, 0))
            heads.append(head)
            points = None
        corrected = t in plan.correct_frames
        if corrected:
            more = _corrections(ops, pix, feats, head, truth[t], points, is_init, plan.rounds, settings, rng)
            heads.extend(more)
            head = more[-1] if more else head
        mem = ops.memory(feats, head.high_res_masks(), head.object_score_logits)
        if is_init or corrected:
            cond[t] = (mem, head.obj_ptr)
        else:
            tracked[t] = (mem, head.obj_ptr)
        steps.extend(FrameStep(t, i, h) for i, h in enumerate(heads))
    return steps
