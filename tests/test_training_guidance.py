"""Attention guidance (training from scratch): what it records, what it trains, when it runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from miniature import miniature_model

from napari_sam2.model.frames import normalize_frame
from napari_sam2.sample_data.synthetic import cells_timelapse
from napari_sam2.training import TrainConfig, from_generator, train
from napari_sam2.training import loop as loop_module
from napari_sam2.training.clips import ClipSettings
from napari_sam2.training.demo import stage_config, tie_decoder_attention, DEMO_STAGES
from napari_sam2.training.guidance import attention_probe, guidance_loss
from napari_sam2.training.losses import LossWeights
from napari_sam2.training.optim import OptimSettings


def _squares(size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """A frame with three bright squares apart, and their masks (3, S, S).

    Each square covers over half of four embedding cells (16 px at 64 px input).
    """
    image = np.zeros((size, size), np.uint8)
    masks = np.zeros((3, size, size), bool)
    for i, (r, c) in enumerate([(4, 4), (4, 36), (36, 20)]):
        image[r : r + 24, c : c + 24] = 200
        masks[i, r : r + 24, c : c + 24] = True
    return normalize_frame(image, size, None)[None], torch.from_numpy(masks)


def _features(model, frame):
    levels = model.image_encoder(frame)["backbone_fpn"]
    return model.features_from_backbone(levels)


def _click_attention(model, frame, truth) -> tuple[float, float]:
    """Mean image-to-token attention on the click token inside and far outside each object."""
    feats = _features(model, frame)
    with attention_probe(model) as records:
        guidance_loss(model, feats, truth, np.random.default_rng(0), LossWeights(attention=1.0))
    cover = torch.nn.functional.adaptive_avg_pool2d(truth[:, None].float(), feats.size).flatten(1)
    inside, outside = [], []
    for kind, logits in records:
        if kind == "image_to_token":
            decoder = model.sam_mask_decoder
            weight = logits.softmax(-1)[..., int(decoder.pred_obj_scores) + 1 + decoder.num_mask_tokens].mean(1)
            inside.append(float(weight[cover > 0.5].mean().detach()))
            outside.append(float(weight[cover < 0.05].mean().detach()))
    return float(np.mean(inside)), float(np.mean(outside))


def test_probe_records_both_cross_attentions_of_every_block_and_detaches(one_torch_thread):
    torch.manual_seed(0)
    model = miniature_model(64)
    frame, truth = _squares()
    feats = _features(model, frame)
    with attention_probe(model) as records:
        loss, parts = guidance_loss(model, feats, truth, np.random.default_rng(0), LossWeights(attention=0.5))
    depth = len(model.sam_mask_decoder.transformer.layers)
    kinds = [kind for kind, _ in records]
    # the probe inside guidance_loss records too: two probes, each sees every block once
    assert kinds.count("image_to_token") == kinds.count("token_to_image") == depth
    assert all(not m._forward_hooks for m in model.sam_mask_decoder.modules()), "hooks are removed"
    assert torch.isfinite(loss) and float(loss) > 0 and parts["guidance"] == pytest.approx(float(loss))


def test_guidance_reaches_the_decoder_attention_and_the_encoder(one_torch_thread):
    torch.manual_seed(0)
    model = miniature_model(64)
    model.requires_grad_(True)
    frame, truth = _squares()
    loss, _ = guidance_loss(model, _features(model, frame), truth, np.random.default_rng(1), LossWeights(attention=1.0))
    loss.backward()
    block = model.sam_mask_decoder.transformer.layers[0]
    for module in (block.cross_attn_image_to_token, block.cross_attn_token_to_image):
        assert module.q_proj.weight.grad.abs().sum() > 0 and module.k_proj.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.image_encoder.parameters())


def test_no_object_gives_no_guidance(one_torch_thread):
    model = miniature_model(64)
    frame, truth = _squares()
    loss, parts = guidance_loss(model, _features(model, frame), torch.zeros_like(truth), np.random.default_rng(0), LossWeights(attention=1.0))
    assert float(loss) == 0.0 and parts == {"guidance": 0.0}


def test_a_few_guided_steps_make_the_object_attend_to_its_click(one_torch_thread):
    torch.manual_seed(0)
    model = miniature_model(64)
    tie_decoder_attention(model)
    model.requires_grad_(True)
    model.train()
    frame, truth = _squares()
    before = _click_attention(model, frame, truth)
    optimizer = torch.optim.Adam(model.sam_mask_decoder.parameters(), lr=3e-3)
    for step in range(40):
        loss, _ = guidance_loss(model, _features(model, frame), truth, np.random.default_rng(step), LossWeights(attention=1.0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = _click_attention(model, frame, truth)
    assert after[0] > before[0] and after[0] > 2 * after[1], (before, after)


def test_tie_decoder_attention_starts_keys_equal_to_queries():
    model = miniature_model(64)
    tie_decoder_attention(model)
    block = model.sam_mask_decoder.transformer.layers[0].cross_attn_image_to_token
    assert torch.equal(block.q_proj.weight, block.k_proj.weight) and torch.equal(block.q_proj.bias, block.k_proj.bias)


def test_the_loop_runs_guidance_only_when_weighted(tmp_path, monkeypatch, one_torch_thread):
    data = from_generator(lambda s: cells_timelapse(num_frames=3, size=64, seed=s), seeds=range(10))
    base = dict(steps=2, trainable="all", clip=ClipSettings(num_frames=2, max_objects=2), optim=OptimSettings(lr=1e-4), checkpoint_every=0)
    terms = []
    result = train(miniature_model(64), data, TrainConfig(**base, loss=LossWeights(attention=0.5)), output=tmp_path / "a.pt",
                   progress=lambda p: terms.append(p.terms))
    assert result.finished and all("guidance" in t and t["guidance"] > 0 for t in terms)

    def refuse(*_a, **_k):
        raise AssertionError("guidance ran with weight 0")

    monkeypatch.setattr(loop_module, "guidance_loss", refuse)
    terms.clear()
    train(miniature_model(64), data, TrainConfig(**base), output=tmp_path / "b.pt", progress=lambda p: terms.append(p.terms))
    assert terms and all("guidance" not in t for t in terms)


def test_the_demo_recipe_guides_its_image_stage():
    image = stage_config(DEMO_STAGES[0], seed=0)
    assert image.loss.attention > 0 and image.clip.num_frames == 1
    assert TrainConfig.from_dict(image.to_dict()) == image  # saved with the run's state


def test_memory_guidance_runs_on_tracked_frames_and_detaches(tmp_path, one_torch_thread):
    from napari_sam2.training import forward as forward_module

    data = from_generator(lambda s: cells_timelapse(num_frames=4, size=64, seed=s), seeds=range(10))
    calls = []
    original = forward_module.memory_guidance

    def counting(*args, **kwargs):
        out = original(*args, **kwargs)
        calls.append(out)
        return out

    model = miniature_model(64)
    config = TrainConfig(steps=2, trainable="all", clip=ClipSettings(num_frames=3, max_objects=2),
                         optim=OptimSettings(lr=1e-4), checkpoint_every=0, grad_checkpoint=False,
                         loss=LossWeights(attention=0.5, memory_attention=0.5))
    forward_module.memory_guidance = counting
    try:
        train(model, data, config, output=tmp_path / "m.pt")
    finally:
        forward_module.memory_guidance = original
    assert calls and all(torch.isfinite(c).all() for c in calls)
    assert all("attend" not in vars(layer.cross_attn_image) for layer in model.memory_attention.layers)


def test_memory_guidance_prefers_attention_on_the_remembered_object():
    from napari_sam2.training.guidance import memory_guidance

    grid = (4, 4)
    truth = torch.zeros(1, 64, 64, dtype=torch.bool)
    truth[0, :32, :32] = True  # the top-left 2x2 cells, here and in the one memory
    inside = torch.zeros(16, dtype=torch.bool)
    inside[[0, 1, 4, 5]] = True
    good = torch.full((1, 1, 16, 17), -8.0)  # 16 spatial tokens + 1 pointer
    good[0, 0][inside.nonzero()[:, 0][:, None], inside.nonzero()[:, 0][None, :]] = 8.0
    good[0, 0][(~inside).nonzero()[:, 0][:, None], (~inside).nonzero()[:, 0][None, :]] = 8.0
    uniform = torch.zeros(1, 1, 16, 17)
    assert float(memory_guidance([good], truth, [truth], grid)) < float(memory_guidance([uniform], truth, [truth], grid))
    nothing = torch.zeros_like(truth)
    assert float(memory_guidance([uniform], truth, [nothing], grid)) == 0.0, "no remembered object, no term"
