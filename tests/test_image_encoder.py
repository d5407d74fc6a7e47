"""The image encoder (Hiera trunk + FPN neck) against the reference ``sam2==1.1.0``.

- state-dict keys and shapes equal the official ``image_encoder.*`` keys, all variants;
- outputs equal the reference's on the same weights and pixels, up to float32 noise:
  the tiny model at 512 and 1024 here, the larger ones with ``-m slow``;
- small synthetic trunks (compared with the reference ``Hiera`` of the same shape) cover
  the token-layout paths the official variants reach only at some sizes: tiles that
  merge, split or neither, padded and pooled padded windows, global blocks between
  windowed runs; also the cache-blocked loops with many chunks, batches, non-square
  inputs and grad mode.
"""

from __future__ import annotations

import contextlib
from unittest import mock

import pytest
import torch

from napari_sam2.model import hiera as hiera_module
from napari_sam2.model.config import MODEL_CONFIGS, MODEL_NAMES, HieraConfig, NeckConfig, get_config
from napari_sam2.model.hiera import FpnNeck, Hiera, ImageEncoder

TOLERANCE = 1e-4  # max abs difference, relative to the largest reference value


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


def _randomize_defaults(module: torch.nn.Module, seed: int = 1) -> None:
    """Give the parameters that a fresh model initializes to constants random values.

    The position embeddings start at zero and LayerNorms at identity; a comparison with
    those would not exercise them.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if "pos_embed" in name:
                param.copy_(torch.randn(param.shape, generator=gen))
            elif "norm" in name:
                base = 1.0 if name.endswith("weight") else 0.0
                param.copy_(base + 0.2 * torch.randn(param.shape, generator=gen))


def _reference_encoder(name: str, image_size: int) -> torch.nn.Module:
    from reference import build_reference

    encoder = build_reference(name, image_size=image_size, video=False).image_encoder
    _randomize_defaults(encoder)
    return encoder.eval()


def _ours_like(reference: torch.nn.Module, name: str) -> ImageEncoder:
    cfg = get_config(name)
    ours = ImageEncoder(cfg.hiera, cfg.neck).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return ours


def _max_diff(ours: torch.Tensor, ref: torch.Tensor, what: str) -> float:
    assert ours.shape == ref.shape, f"{what}: {tuple(ours.shape)} != {tuple(ref.shape)}"
    assert ours.dtype == ref.dtype, what
    assert torch.isfinite(ours).all(), what
    scale = ref.abs().max().item()
    assert ref.std().item() > 1e-3 * max(scale, 1e-12), f"{what}: trivial reference output"
    diff = (ours - ref).abs().max().item()
    assert diff <= TOLERANCE * max(scale, 1.0), f"{what}: max abs diff {diff:.3g} (scale {scale:.3g})"
    return diff


def _compare_encoder_outputs(ours: dict, ref: dict) -> float:
    assert set(ours) == set(ref) == {"vision_features", "vision_pos_enc", "backbone_fpn"}
    assert len(ours["backbone_fpn"]) == len(ref["backbone_fpn"])
    assert len(ours["vision_pos_enc"]) == len(ref["vision_pos_enc"])
    diffs = [_max_diff(ours["vision_features"], ref["vision_features"], "vision_features")]
    for i, (a, b) in enumerate(zip(ours["backbone_fpn"], ref["backbone_fpn"])):
        diffs.append(_max_diff(a, b, f"backbone_fpn[{i}]"))
    for i, (a, b) in enumerate(zip(ours["vision_pos_enc"], ref["vision_pos_enc"])):
        diffs.append(_max_diff(a, b, f"vision_pos_enc[{i}]"))
    return max(diffs)


def _check_parity(name: str, image_size: int, record_property, batch: int = 1) -> float:
    torch.manual_seed(0)
    reference = _reference_encoder(name, image_size)
    ours = _ours_like(reference, name)
    x = torch.randn(batch, 3, image_size, image_size)
    with torch.inference_mode():
        expected = reference(x)
        got = ours(x)
    diff = _compare_encoder_outputs(got, expected)
    record_property("max_abs_diff", diff)
    print(f"{name} @ {image_size}: max abs diff {diff:.3g}")
    return diff


@contextlib.contextmanager
def _no_weight_init():
    """Skip the (slow, irrelevant) random initialization while building a reference."""

    def keep(tensor, *args, **kwargs):
        return tensor

    names = ("kaiming_uniform_", "uniform_", "normal_", "trunc_normal_", "xavier_uniform_", "zeros_", "ones_")
    with contextlib.ExitStack() as stack:
        for fn in names:
            stack.enter_context(mock.patch.object(torch.nn.init, fn, keep))
        yield


def _reference_image_encoder_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """``image_encoder.*`` keys (prefix removed) and shapes of the reference model."""
    import sam2  # noqa: F401  (registers the reference's config module with hydra)
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from reference import REFERENCE_CONFIGS

    cfg = compose(config_name=REFERENCE_CONFIGS[name])
    OmegaConf.resolve(cfg)
    with _no_weight_init():
        model = instantiate(cfg.model, _recursive_=True)
    prefix = "image_encoder."
    return {
        key[len(prefix) :]: tuple(value.shape)
        for key, value in model.state_dict().items()
        if key.startswith(prefix)
    }


def _reference_trunk(cfg: HieraConfig) -> torch.nn.Module:
    """The reference Hiera with the same hyper-parameters (random weights)."""
    from sam2.modeling.backbones.hieradet import Hiera as ReferenceHiera

    trunk = ReferenceHiera(
        embed_dim=cfg.embed_dim,
        num_heads=cfg.num_heads,
        q_pool=cfg.q_pool,
        q_stride=cfg.q_stride,
        stages=cfg.stages,
        dim_mul=cfg.dim_mul,
        head_mul=cfg.head_mul,
        window_pos_embed_bkg_spatial_size=cfg.window_pos_embed_bkg_spatial_size,
        window_spec=cfg.window_spec,
        global_att_blocks=cfg.global_att_blocks,
    )
    _randomize_defaults(trunk)
    return trunk.eval()


def _compare_trunks(cfg: HieraConfig, x: torch.Tensor, grad: bool = False) -> float:
    reference = _reference_trunk(cfg)
    ours = Hiera(cfg).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    context = contextlib.nullcontext() if grad else torch.inference_mode()
    with context:
        expected = reference(x)
        got = ours(x)
    assert len(got) == len(expected) == 4
    return max(_max_diff(a, b, f"stage {i}") for i, (a, b) in enumerate(zip(got, expected)))


# Synthetic trunks (small widths, the official block structure, other window layouts),
# each with an input size that reaches the layout it is there for.
SYNTHETIC: dict[str, tuple[HieraConfig, tuple[int, int]]] = {
    # like Hiera-L: every window divides its grid, so all windowed blocks run on tiles
    "large_windows": (
        HieraConfig(16, 1, (1, 2, 4, 2), (4,), window_spec=(8, 4, 16, 8),
                    window_pos_embed_bkg_spatial_size=(7, 7)),
        (256, 512),
    ),
    # global blocks next to the pooling ones; odd windows that pad, pooling padded windows
    "odd_windows": (
        HieraConfig(16, 1, (1, 2, 3, 2), (2, 5), window_spec=(8, 4, 6, 3),
                    window_pos_embed_bkg_spatial_size=(4, 4)),
        (256, 192),
    ),
    # pooled tiles (4, then 3) that neither divide nor contain the next windows (6, then 4)
    "incommensurable": (
        HieraConfig(16, 2, (2, 2, 3, 2), (5,), window_spec=(8, 8, 6, 4),
                    window_pos_embed_bkg_spatial_size=(5, 3)),
        (384, 192),
    ),
}


# ---------------------------------------------------------------------------------------
# structure
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_state_dict_matches_reference(name: str) -> None:
    cfg = MODEL_CONFIGS[name]
    with torch.device("meta"):
        ours = ImageEncoder(cfg.hiera, cfg.neck)
    got = {key: tuple(value.shape) for key, value in ours.state_dict().items()}
    expected = _reference_image_encoder_shapes(name)
    assert sorted(set(got) ^ set(expected)) == []
    mismatched = {k: (got[k], expected[k]) for k in got if got[k] != expected[k]}
    assert mismatched == {}


def test_interface() -> None:
    cfg = get_config("sam2.1_hiera_tiny")
    encoder = ImageEncoder(cfg.hiera, cfg.neck)
    assert isinstance(encoder.trunk, Hiera) and isinstance(encoder.neck, FpnNeck)
    x = torch.randn(1, 3, 128, 192)
    with torch.inference_mode():
        stages = encoder.trunk(x)
        features, pos = encoder.neck(stages)
        out = encoder(x)
    assert [tuple(s.shape) for s in stages] == [
        (1, 96, 32, 48), (1, 192, 16, 24), (1, 384, 8, 12), (1, 768, 4, 6)
    ]
    assert [tuple(f.shape) for f in features] == [(1, 256, 32 // 2**i, 48 // 2**i) for i in range(4)]
    assert [tuple(p.shape) for p in pos] == [tuple(f.shape) for f in features]
    assert [tuple(f.shape) for f in out["backbone_fpn"]] == [tuple(f.shape) for f in features[:3]]
    assert out["vision_features"] is out["backbone_fpn"][-1]
    with pytest.raises(ValueError, match="multiples of 32"):
        encoder(torch.randn(1, 3, 96, 80))


# ---------------------------------------------------------------------------------------
# numeric parity, official variants
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("image_size", [512, 1024])
def test_parity_tiny(image_size: int, record_property) -> None:
    _check_parity("sam2.1_hiera_tiny", image_size, record_property)


@pytest.mark.slow
@pytest.mark.parametrize("image_size", [512, 1024])
@pytest.mark.parametrize("size", ["small", "base_plus", "large"])
def test_parity_larger_variants(size: str, image_size: int, record_property) -> None:
    _check_parity(f"sam2.1_hiera_{size}", image_size, record_property)


def test_parity_batch_and_non_square(record_property) -> None:
    torch.manual_seed(0)
    reference = _reference_encoder("sam2.1_hiera_tiny", 512)
    ours = _ours_like(reference, "sam2.1_hiera_tiny")
    x = torch.randn(2, 3, 224, 352)
    with torch.inference_mode():
        diff = _compare_encoder_outputs(ours(x), reference(x))
        trunk_diff = max(
            _max_diff(a, b, f"stage {i}") for i, (a, b) in enumerate(zip(ours.trunk(x), reference.trunk(x)))
        )
    record_property("max_abs_diff", max(diff, trunk_diff))


# ---------------------------------------------------------------------------------------
# layout paths
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(SYNTHETIC))
def test_parity_synthetic_trunks(variant: str, record_property) -> None:
    torch.manual_seed(0)
    cfg, (height, width) = SYNTHETIC[variant]
    diff = _compare_trunks(cfg, torch.randn(2, 3, height, width))
    record_property("max_abs_diff", diff)


@pytest.mark.parametrize("variant", ["sam2.1_hiera_tiny", "large_windows"])
def test_chunked_loops_match_reference(variant: str, monkeypatch, record_property) -> None:
    """Tiny working sets: many chunks of tile rows, window bands and MLP chunks."""
    monkeypatch.setattr(hiera_module, "TILE_CHUNK_ELEMENTS", 1 << 12)
    monkeypatch.setattr(hiera_module, "MLP_CHUNK_ELEMENTS", 1 << 12)
    torch.manual_seed(0)
    if variant in MODEL_CONFIGS:
        cfg, (height, width) = MODEL_CONFIGS[variant].hiera, (256, 320)
    else:
        cfg, (height, width) = SYNTHETIC[variant]
    diff = _compare_trunks(cfg, torch.randn(2, 3, height, width))
    record_property("max_abs_diff", diff)


def test_grad_mode_matches_and_backpropagates() -> None:
    torch.manual_seed(0)
    cfg = SYNTHETIC["odd_windows"][0]
    _compare_trunks(cfg, torch.randn(1, 3, 128, 160), grad=True)
    trunk = Hiera(cfg)
    out = trunk(torch.randn(1, 3, 128, 160))
    sum(o.square().mean() for o in out).backward()
    assert trunk.pos_embed.grad is not None and torch.isfinite(trunk.pos_embed.grad).all()
    assert trunk.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_position_embedding_cache_follows_weights() -> None:
    torch.manual_seed(0)
    cfg = SYNTHETIC["large_windows"][0]
    trunk = Hiera(cfg).eval()
    _randomize_defaults(trunk)
    x = torch.randn(1, 3, 128, 128)
    with torch.inference_mode():
        before = trunk(x)[0].clone()
    with torch.no_grad():
        trunk.pos_embed.add_(1.0)
    with torch.inference_mode():
        after = trunk(x)[0]
    assert not torch.allclose(before, after)
    fresh = Hiera(cfg).eval()
    fresh.load_state_dict(trunk.state_dict())
    with torch.inference_mode():
        assert torch.equal(fresh(x)[0], after)


def test_neck_matches_reference_on_plain_inputs() -> None:
    """The neck on ordinary (contiguous) maps, as another caller might pass them."""
    from sam2.modeling.backbones.image_encoder import FpnNeck as ReferenceNeck
    from sam2.modeling.position_encoding import PositionEmbeddingSine

    cfg = NeckConfig(d_model=64, backbone_channel_list=(64, 32, 16, 8))
    reference = ReferenceNeck(
        PositionEmbeddingSine(64), 64, list(cfg.backbone_channel_list),
        fpn_top_down_levels=list(cfg.fpn_top_down_levels), fpn_interp_model="nearest",
    ).eval()
    ours = FpnNeck(cfg).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    xs = [torch.randn(1, c, 32 // 2**i, 40 // 2**i) for i, c in enumerate((8, 16, 32, 64))]
    with torch.inference_mode():
        (f_ours, p_ours), (f_ref, p_ref) = ours(xs), reference(xs)
    for i in range(4):
        _max_diff(f_ours[i], f_ref[i], f"features[{i}]")
        _max_diff(p_ours[i], p_ref[i], f"pos[{i}]")
