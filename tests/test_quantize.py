"""The optional int8 CPU mode: it quantizes the heavy linear layers, stays close to
exact mode, and refuses what it cannot do."""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from miniature import miniature_config, miniature_model

from napari_sam2.model import VideoSession, build_sam2
from napari_sam2.model.quantize import quantize_int8
from napari_sam2.tracking import ModelChoice, UsageError, load_model


def _frames(count: int = 6, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:size, :size]
    out = rng.integers(0, 40, size=(count, size, size), dtype=np.uint8)
    for t in range(count):
        disk = (yy - 30) ** 2 + (xx - 20 - 2 * t) ** 2 < 100
        out[t][disk] = 220
    return out


def _masks(model) -> dict[int, np.ndarray]:
    with VideoSession(model, _frames()) as session:
        session.add_points(0, 1, [[30, 20]], [1])
        return {t: logits[1] > 0 for t, logits in session.propagate()}


def test_int8_replaces_heavy_linears_and_keeps_the_value_projection_float():
    model = quantize_int8(miniature_model())
    assert model.quantized == "int8" and model._quantized_layers > 0
    plain = [n for n, m in model.image_encoder.trunk.named_modules() if type(m) is nn.Linear]
    assert plain == []
    for layer in model.memory_attention.layers:
        assert type(layer.cross_attn_image.v_proj) is nn.Linear
        assert type(layer.self_attn.q_proj) is not nn.Linear
    # the prompt encoder, pointer projections and heads are untouched
    assert type(model.obj_ptr_proj.layers[0]) is nn.Linear


def test_int8_masks_stay_close_to_exact_mode():
    exact = _masks(miniature_model())
    approx = _masks(quantize_int8(miniature_model()))
    assert exact.keys() == approx.keys()
    for t in exact:
        union = (exact[t] | approx[t]).sum()
        iou = (exact[t] & approx[t]).sum() / union if union else 1.0
        assert iou >= 0.9, (t, iou)


def test_build_sam2_int8_and_bad_options():
    model = build_sam2(miniature_config(), device="cpu", quantize="int8")
    assert model.quantized == "int8"
    with pytest.raises(ValueError, match="quantize must be None or 'int8'"):
        build_sam2(miniature_config(), device="cpu", quantize="int4")
    with pytest.raises(ValueError, match="CPU only"):
        quantize_int8(miniature_model().to("meta"))


def test_model_choice_applies_int8_and_names_bad_values():
    model = load_model(ModelChoice(factory="tests.miniature:miniature_model", device="cpu", quantize="int8"))
    assert model.quantized == "int8"
    with pytest.raises(UsageError, match="unknown quantization"):
        load_model(ModelChoice(factory="tests.miniature:miniature_model", quantize="fp4"))
