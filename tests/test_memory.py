"""Memory encoder and memory attention against the reference SAM 2 (same weights)."""

from __future__ import annotations

import os

import pytest
import torch

from napari_sam2.model import position
from napari_sam2.model.config import MODEL_NAMES, get_config
from napari_sam2.model.memory import MemoryAttention, MemoryEncoder
from napari_sam2.model.position import apply_rope, axial_rope
from reference import REFERENCE_CONFIGS, build_reference

ATOL = 1e-4  # float32 noise; observed differences are ~2e-6


def _sub_state(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def models():
    """Reference and ours with the same weights, made harder to match than random init.

    Random init leaves the ConvNeXt layer scale at 1e-6 (the fuser would not count),
    the norms at identity and the attention almost uniform; all are perturbed so that
    every part of the computation shows in the outputs.
    """
    ref = build_reference("sam2.1_hiera_tiny", image_size=512, video=False)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for key, value in ref.state_dict().items():
            if not key.startswith(("memory_encoder.", "memory_attention.")):
                continue
            noise = torch.randn(value.shape, generator=gen)
            if key.endswith("gamma"):
                value.copy_(0.5 * noise)
            elif value.ndim == 1 and ("norm" in key or "mask_downsampler.encoder.1" in key
                                      or key.split(".")[-2] in ("4", "7", "10")):
                value.copy_((1.0 if key.endswith("weight") else 0.0) + 0.2 * noise)
            elif key.endswith(("q_proj.weight", "k_proj.weight")):
                value.mul_(3.0)  # sharper attention: rotary errors would show
    cfg = get_config("sam2.1_hiera_tiny", image_size=512)
    enc = MemoryEncoder(cfg.memory_encoder, cfg.hidden_dim).eval()
    att = MemoryAttention(cfg.memory_attention).eval()
    state = ref.state_dict()
    enc.load_state_dict(_sub_state(state, "memory_encoder."), strict=True)
    att.load_state_dict(_sub_state(state, "memory_attention."), strict=True)
    return ref, enc, att


def _reference_attention(ref, curr, curr_pos, memory, memory_pos, num_ptr):
    """The reference's sequence-first memory attention, batch first in and out."""
    out = ref.memory_attention(
        curr=curr.transpose(0, 1),
        curr_pos=curr_pos.transpose(0, 1),
        memory=memory.transpose(0, 1),
        memory_pos=memory_pos.transpose(0, 1),
        num_obj_ptr_tokens=num_ptr,
    )
    return out.transpose(0, 1)


def _inputs(batch, side, frames, num_ptr, curr_batch=None):
    n = side * side
    m = frames * n + num_ptr
    cb = batch if curr_batch is None else curr_batch
    return (
        torch.randn(cb, n, 256),
        torch.randn(cb, n, 256),
        torch.randn(batch, m, 64),
        torch.randn(batch, m, 64),
    )


# ------------------------------------------------------------------------------- keys


def _reference_module_shapes(name: str) -> dict[str, tuple[int, ...]]:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    import sam2

    cfg = OmegaConf.load(os.path.join(os.path.dirname(sam2.__file__), REFERENCE_CONFIGS[name]))
    shapes = {}
    with torch.device("meta"):
        for part in ("memory_encoder", "memory_attention"):
            module = instantiate(cfg.model[part])
            shapes.update({f"{part}.{k}": tuple(v.shape) for k, v in module.state_dict().items()})
    return shapes


def _our_module_shapes(name: str) -> dict[str, tuple[int, ...]]:
    cfg = get_config(name)
    shapes = {}
    with torch.device("meta"):
        for part, module in (
            ("memory_encoder", MemoryEncoder(cfg.memory_encoder, cfg.hidden_dim)),
            ("memory_attention", MemoryAttention(cfg.memory_attention)),
        ):
            shapes.update({f"{part}.{k}": tuple(v.shape) for k, v in module.state_dict().items()})
    return shapes


def test_state_dict_keys_and_shapes_all_variants():
    assert len(MODEL_NAMES) == 8
    for name in MODEL_NAMES:
        ours, theirs = _our_module_shapes(name), _reference_module_shapes(name)
        assert ours == theirs, name


# ---------------------------------------------------------------------- memory encoder


@pytest.mark.parametrize("image_size", [512, 1024])
@pytest.mark.parametrize("skip_mask_sigmoid", [False, True])
def test_memory_encoder_matches_reference(models, image_size, skip_mask_sigmoid):
    ref, enc, _ = models
    side = image_size // 16
    batch = 2 if image_size == 512 else 1
    pix_feat = torch.randn(batch, 256, side, side)
    masks = 10 * torch.randn(batch, 1, image_size, image_size)
    with torch.inference_mode():
        expected = ref.memory_encoder(pix_feat, masks, skip_mask_sigmoid=skip_mask_sigmoid)
        got = enc(pix_feat, masks, skip_mask_sigmoid=skip_mask_sigmoid)
        other = enc(pix_feat, masks.flip(-1), skip_mask_sigmoid=skip_mask_sigmoid)
    feats, pos = got["vision_features"], got["vision_pos_enc"]
    assert feats.shape == (batch, 64, side, side)
    assert len(pos) == 1 and pos[0].shape == (batch, 64, side, side)
    # non-trivial: the mask and the fuser both count
    assert feats.std() > 0.1
    assert (other["vision_features"] - feats).abs().max() > 1e-2
    torch.testing.assert_close(feats, expected["vision_features"], rtol=0, atol=ATOL)
    torch.testing.assert_close(pos[0], expected["vision_pos_enc"][0], rtol=0, atol=ATOL)


# -------------------------------------------------------------------- memory attention


@pytest.mark.parametrize(
    "side, frames, num_ptr, batch",
    [
        (32, 1, 0, 1),
        (32, 2, 4, 2),
        (32, 4, 16, 1),
        (32, 7, 0, 2),
        (32, 7, 64, 2),
        (32, 0, 16, 1),  # object pointers only
        (64, 1, 4, 1),
    ],
)
def test_memory_attention_matches_reference(models, side, frames, num_ptr, batch):
    ref, _, att = models
    curr, curr_pos, memory, memory_pos = _inputs(batch, side, frames, num_ptr)
    with torch.inference_mode():
        expected = _reference_attention(ref, curr, curr_pos, memory, memory_pos, num_ptr)
        got = att(curr, curr_pos, memory, memory_pos, num_ptr, (side, side))
        # the memory matters (checked on the small grids, where it is cheap)
        shuffled = None
        if side <= 32:
            shuffled = att(curr, curr_pos, memory.roll(1, dims=1), memory_pos, num_ptr, (side, side))
    assert got.shape == (batch, side * side, 256)
    assert got.std() > 0.5
    if shuffled is not None:
        assert (shuffled - got).abs().max() > 100 * ATOL
    if batch == 2:
        assert (got[0] - got[1]).abs().max() > 100 * ATOL  # distinct memories, distinct outputs
    torch.testing.assert_close(got, expected, rtol=0, atol=ATOL)


def test_memory_attention_with_autograd_matches_reference(models):
    """With gradients enabled the generic attention path runs; same results."""
    ref, _, att = models
    side, frames, num_ptr = 16, 3, 8
    curr, curr_pos, memory, memory_pos = _inputs(2, side, frames, num_ptr)
    memory.requires_grad_(True)
    got = att(curr, curr_pos, memory, memory_pos, num_ptr, (side, side))
    got.sum().backward()
    assert memory.grad is not None and memory.grad.abs().max() > 0
    with torch.no_grad():
        expected = _reference_attention(ref, curr, curr_pos, memory, memory_pos, num_ptr)
        fast = att(curr, curr_pos, memory, memory_pos, num_ptr, (side, side))
    torch.testing.assert_close(got.detach(), expected, rtol=0, atol=ATOL)
    torch.testing.assert_close(fast, expected, rtol=0, atol=ATOL)


def test_shared_current_features_equal_per_object_runs(models):
    """Bc = 1 with several objects: same result as each object on its own."""
    ref, _, att = models
    side, frames, num_ptr = 32, 2, 8
    curr, curr_pos, memory, memory_pos = _inputs(3, side, frames, num_ptr, curr_batch=1)
    with torch.inference_mode():
        shared = att(curr, curr_pos, memory, memory_pos, num_ptr, (side, side))
        for b in range(3):
            single = att(curr, curr_pos, memory[b : b + 1], memory_pos[b : b + 1], num_ptr, (side, side))
            torch.testing.assert_close(shared[b : b + 1], single, rtol=0, atol=ATOL)
        expected = _reference_attention(
            ref, curr.expand(3, -1, -1), curr_pos.expand(3, -1, -1), memory, memory_pos, num_ptr
        )
    assert shared.shape == (3, side * side, 256)
    assert (shared[0] - shared[1]).abs().max() > 100 * ATOL
    torch.testing.assert_close(shared, expected, rtol=0, atol=ATOL)


def _naive_attention(att: MemoryAttention, curr, curr_pos, memory, memory_pos, num_ptr, feat_size):
    """A plain restatement with ``position.apply_rope`` (any grid shape)."""
    h, w = feat_size
    cos, sin = axial_rope(256, w, h)
    num_spatial = memory.shape[1] - num_ptr

    def attend(mod, q, k, v, rope_k):
        q = apply_rope(mod.q_proj(q), cos, sin)
        k = mod.k_proj(k)
        if rope_k:
            k = torch.cat((apply_rope(k[:, :num_spatial], cos, sin), k[:, num_spatial:]), 1)
        scores = torch.softmax(q @ k.transpose(1, 2) / 16.0, dim=-1)
        return mod.out_proj(scores @ mod.v_proj(v))

    x = curr + 0.1 * curr_pos
    for layer in att.layers:
        y = layer.norm1(x)
        x = x + attend(layer.self_attn, y, y, y, True)
        y = layer.norm2(x)
        x = x + attend(layer.cross_attn_image, y, memory + memory_pos, memory, num_spatial > 0)
        x = x + layer.linear2(torch.relu(layer.linear1(layer.norm3(x))))
    return att.norm(x)


@pytest.mark.parametrize("feat_size, frames, num_ptr", [((12, 20), 2, 8), ((20, 12), 1, 0)])
def test_memory_attention_non_square_grid(models, feat_size, frames, num_ptr):
    _, _, att = models
    n = feat_size[0] * feat_size[1]
    curr, curr_pos = torch.randn(2, n, 256), torch.randn(2, n, 256)
    memory, memory_pos = torch.randn(2, frames * n + num_ptr, 64), torch.randn(2, frames * n + num_ptr, 64)
    with torch.inference_mode():
        got = att(curr, curr_pos, memory, memory_pos, num_ptr, feat_size)
        expected = _naive_attention(att, curr, curr_pos, memory, memory_pos, num_ptr, feat_size)
        transposed = att(curr, curr_pos, memory, memory_pos, num_ptr, feat_size[::-1])
    torch.testing.assert_close(got, expected, rtol=0, atol=ATOL)
    assert (transposed - got).abs().max() > 100 * ATOL  # the grid shape matters


def test_rope_tables_cached_per_grid_size(models, monkeypatch):
    _, _, att = models
    att._rope_cache.clear()
    calls = []
    original = position.axial_rope

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr("napari_sam2.model.memory_attention.axial_rope", counting)
    with torch.inference_mode():
        for side in (8, 16, 8, 16, 8):
            att(*_inputs(1, side, 1, 4), 4, (side, side))
    assert len(calls) == 2
    assert att.rope_table((8, 8), "cpu") is att.rope_table((8, 8), "cpu")
    assert att.rope_table((16, 16), "cpu").shape == (256, 1, 128)


def test_memory_attention_rejects_bad_shapes(models):
    _, _, att = models
    curr, curr_pos, memory, memory_pos = _inputs(2, 8, 2, 4)
    with pytest.raises(ValueError, match="whole number"):
        att(curr, curr_pos, memory, memory_pos, 5, (8, 8))
    with pytest.raises(ValueError, match="does not match"):
        att(curr, curr_pos, memory, memory_pos, 4, (8, 9))
    with pytest.raises(ValueError, match="batch"):
        att(torch.randn(3, 64, 256), torch.randn(3, 64, 256), memory, memory_pos, 4, (8, 8))


def test_pooled_value_path_with_blocks_and_heads(monkeypatch):
    """The CPU path that pools raw memory values equals the fused-kernel path, also
    with several heads and with the scores split into many blocks of query rows."""
    from dataclasses import replace

    from napari_sam2.model import memory_attention as memory_module

    cfg = replace(get_config("sam2.1_hiera_tiny").memory_attention, num_heads=2, num_layers=2)
    att = MemoryAttention(cfg).eval()
    side, frames, num_ptr = 12, 2, 8
    curr, curr_pos, memory, memory_pos = _inputs(2, side, frames, num_ptr, curr_batch=1)
    monkeypatch.setattr(memory_module, "_SCORE_BLOCK_ELEMENTS", 17 * (frames * side * side + num_ptr))
    with torch.no_grad():
        pooled = att(curr, curr_pos, memory, memory_pos, num_ptr, (side, side))
    with torch.enable_grad():
        fused = att(curr, curr_pos, memory, memory_pos, num_ptr, (side, side)).detach()
    torch.testing.assert_close(pooled, fused, rtol=0, atol=ATOL)
    assert (pooled[0] - pooled[1]).abs().max() > 100 * ATOL


def test_memory_attention_bfloat16_runs_close_to_float32(models):
    import copy

    _, _, att = models
    half = copy.deepcopy(att).to(torch.bfloat16)
    side = 8
    curr, curr_pos, memory, memory_pos = _inputs(1, side, 2, 4)
    with torch.inference_mode():
        full = att(curr, curr_pos, memory, memory_pos, 4, (side, side))
        low = half(*(t.bfloat16() for t in (curr, curr_pos, memory, memory_pos)), 4, (side, side))
    assert low.dtype == torch.bfloat16
    assert (low.float() - full).abs().mean() < 0.05
