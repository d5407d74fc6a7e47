"""Optional dynamic int8 quantization for faster CPU inference.

The linear layers of the image encoder, the memory attention and the mask decoder's
transformer run with int8 weights (activations are quantized on the fly). This trades a
little accuracy for speed on CPUs; it is off by default and never used on GPUs, where
bfloat16 is the better choice. ``benchmarks/bench_fast_modes.py`` reports its speed and
its mask IoU against exact mode.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

__all__ = ["quantize_int8"]


def _quantized(linear: nn.Linear) -> nn.Module:
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the dynamic API is stable but flagged for a future move
        return quantize_dynamic(nn.Sequential(linear), {nn.Linear}, dtype=torch.qint8)[0]


def _replace_linears(root: nn.Module, keep: set[str]) -> int:
    count = 0
    for parent_name, parent in list(root.named_modules()):
        for child_name, child in list(parent.named_children()):
            full = f"{parent_name}.{child_name}" if parent_name else child_name
            if type(child) is nn.Linear and not any(full.endswith(k) for k in keep):
                setattr(parent, child_name, _quantized(child))
                count += 1
    return count


def quantize_int8(model: nn.Module) -> nn.Module:
    """Quantize ``model`` (a :class:`~.sam2.Sam2` on the CPU) in place; returns it.

    The cross-attention value projections stay in float: memory attention folds them into
    the attention sum, which needs their float weights.
    """
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("int8 quantization runs on the CPU only; on GPUs use bfloat16")
    parts = [model.image_encoder.trunk, model.memory_attention, model.sam_mask_decoder.transformer]
    count = sum(_replace_linears(part, keep={"cross_attn_image.v_proj"}) for part in parts)
    model.quantized = "int8"  # type: ignore[attr-defined]
    model._quantized_layers = count  # type: ignore[attr-defined]
    return model
