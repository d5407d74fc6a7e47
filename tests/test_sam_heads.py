"""Parity of the SAM heads (prompt encoder, two-way transformer, mask decoder) with the
reference ``sam2==1.1.0`` on the same random weights and inputs."""

from __future__ import annotations

import copy
import inspect
import os
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch
from reference import REFERENCE_CONFIGS, build_reference

from napari_sam2.model.config import MODEL_NAMES, get_config
from napari_sam2.model.mask_decoder import MaskDecoder, stability_scores
from napari_sam2.model.prompt_encoder import PromptEncoder
from napari_sam2.model.transformer import Attention

C = 256


# --------------------------------------------------------------------------- helpers
@dataclass
class Pair:
    """A reference model and our heads, loaded with the reference's weights."""

    ref: torch.nn.Module | SimpleNamespace  # has sam_prompt_encoder, sam_mask_decoder
    pe: PromptEncoder
    md: MaskDecoder
    image_size: int

    @property
    def side(self) -> int:
        return self.image_size // 16


def _make_pair(image_size: int, video: bool) -> Pair:
    ref = build_reference("sam2.1_hiera_tiny", image_size=image_size, video=video)
    cfg = get_config("sam2.1_hiera_tiny", image_size=image_size)
    pe = PromptEncoder.from_config(cfg)
    md = MaskDecoder.from_config(cfg)
    pe.load_state_dict(ref.sam_prompt_encoder.state_dict(), strict=True)
    md.load_state_dict(ref.sam_mask_decoder.state_dict(), strict=True)
    assert md.dynamic_multimask_via_stability == ref.sam_mask_decoder.dynamic_multimask_via_stability
    return Pair(ref, pe.eval(), md.eval(), image_size)


@pytest.fixture(scope="module")
def pair512() -> Pair:
    return _make_pair(512, video=False)


@pytest.fixture(scope="module")
def pair512_video() -> Pair:
    return _make_pair(512, video=True)


@pytest.fixture(scope="module")
def pair1024() -> Pair:
    return _make_pair(1024, video=False)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    assert a.dtype == b.dtype, (a.dtype, b.dtype)
    return (a.float() - b.float()).abs().max().item() if a.numel() else 0.0


def _assert_close(name: str, ref: torch.Tensor, ours: torch.Tensor, diffs: dict) -> None:
    d = _max_diff(ref, ours)
    diffs[name] = d
    scale = max(1.0, ref.abs().max().item()) if ref.numel() else 1.0
    assert d <= 1e-5 * scale, f"{name}: max abs diff {d:.3g} (scale {scale:.3g})"


def _features(p: Pair, batch: int, seed: int = 1, through_convs: bool = False):
    """A random image embedding and random stride-4/stride-8 skip features.

    With ``through_convs`` the skip features come from random 256-channel FPN levels
    through each side's own ``conv_s0`` / ``conv_s1`` (as the composing model does).
    """
    g = torch.Generator().manual_seed(seed)
    s = p.side
    img = torch.randn(batch, C, s, s, generator=g)
    if not through_convs:
        hr = [torch.randn(batch, C // 8, 4 * s, 4 * s, generator=g),
              torch.randn(batch, C // 4, 2 * s, 2 * s, generator=g)]
        return img, hr, hr
    fpn0 = torch.randn(batch, C, 4 * s, 4 * s, generator=g)
    fpn1 = torch.randn(batch, C, 2 * s, 2 * s, generator=g)
    rd = p.ref.sam_mask_decoder
    ref_hr = [rd.conv_s0(fpn0), rd.conv_s1(fpn1)]
    our_hr = [p.md.conv_s0(fpn0), p.md.conv_s1(fpn1)]
    return img, ref_hr, our_hr


def _run_both(
    p: Pair,
    *,
    points=None,
    boxes=None,
    masks=None,
    multimask: bool,
    batch: int,
    repeat_image: bool = False,
    seed: int = 1,
    through_convs: bool = False,
) -> dict:
    """Run the reference and our heads on the same prompts; compare every output."""
    diffs: dict[str, float] = {}
    img, ref_hr, our_hr = _features(p, 1 if repeat_image else batch, seed, through_convs)
    if through_convs:
        for name, a, b in zip(("conv_s0", "conv_s1"), ref_hr, our_hr):
            _assert_close(name, a, b, diffs)

    rpe, rmd = p.ref.sam_prompt_encoder, p.ref.sam_mask_decoder
    r_sparse, r_dense = rpe(points=points, boxes=boxes, masks=masks)
    o_sparse, o_dense = p.pe(points=points, boxes=boxes, masks=masks)
    _assert_close("sparse", r_sparse, o_sparse, diffs)
    _assert_close("dense", r_dense, o_dense, diffs)
    r_pos, o_pos = rpe.get_dense_pe(), p.pe.get_dense_pe()
    _assert_close("dense_pe", r_pos, o_pos, diffs)

    ref_out = rmd(img, r_pos, r_sparse, r_dense, multimask, repeat_image, ref_hr)
    our_out = p.md(img, o_pos, o_sparse, o_dense, multimask, repeat_image, our_hr)
    for name, a, b in zip(("masks", "iou", "tokens", "obj_score"), ref_out, our_out):
        _assert_close(name, a, b, diffs)

    masks_ref, iou_ref, tok_ref, obj_ref = ref_out
    k = 3 if multimask else 1
    s4 = 4 * p.side
    assert masks_ref.shape == (batch, k, s4, s4)
    assert iou_ref.shape == (batch, k)
    assert obj_ref.shape == (batch, 1)
    assert tok_ref.shape == (batch, 3 if multimask else 1, C)
    # the reference outputs are not trivial: masks of both signs, objects present
    assert (masks_ref > 0).any() and (masks_ref < 0).any()
    assert (obj_ref > 0).all()
    assert masks_ref.std() > 0.05 and tok_ref.std() > 0.05
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split("::")[-1].split(" ")[0]
    print(f"\n  {test} max abs diffs: " + ", ".join(f"{n}={v:.2e}" for n, v in diffs.items()))
    return {"diffs": diffs, "ref": ref_out, "ours": our_out}


def _clicks(p: Pair, batch: int, labels: list[int], seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    coords = torch.rand(batch, len(labels), 2, generator=g) * (p.image_size - 1)
    lab = torch.tensor(labels, dtype=torch.int32).expand(batch, -1).clone()
    return coords, lab


def _box(p: Pair, batch: int, seed: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(batch, 2, generator=g) * p.image_size * 0.5
    b = a + torch.rand(batch, 2, generator=g) * p.image_size * 0.5
    return torch.cat((a, b), dim=1)  # (x0, y0, x1, y1)


def _mask_prompt(p: Pair, batch: int, seed: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    s4 = 4 * p.side
    yy, xx = torch.meshgrid(torch.arange(s4), torch.arange(s4), indexing="ij")
    disk = ((yy - s4 / 2) ** 2 + (xx - s4 / 3) ** 2 < (s4 / 4) ** 2).float()
    return (disk * 20 - 10 + torch.randn(batch, 1, s4, s4, generator=g)).contiguous()


# --------------------------------------------------------------------------- keys
def _reference_heads(name: str) -> torch.nn.Module:
    """The reference heads of one variant, built by the reference's own head builder
    from its config file (without building the image encoder or the memory)."""
    from omegaconf import OmegaConf
    from sam2.modeling.sam2_base import SAM2Base

    import sam2

    yaml = os.path.join(os.path.dirname(sam2.__file__), REFERENCE_CONFIGS[name])
    model_cfg = OmegaConf.to_container(OmegaConf.load(yaml)["model"], resolve=True)
    defaults = {
        k: v.default
        for k, v in inspect.signature(SAM2Base.__init__).parameters.items()
        if v.default is not inspect.Parameter.empty
    }
    attrs = {**defaults, **{k: v for k, v in model_cfg.items() if not isinstance(v, dict)}}
    stub = SimpleNamespace(
        **attrs,
        hidden_dim=model_cfg["image_encoder"]["neck"]["d_model"],
        mem_dim=model_cfg["memory_encoder"]["out_dim"],
    )
    SAM2Base._build_sam_heads(stub)
    heads = torch.nn.Module()
    heads.sam_prompt_encoder = stub.sam_prompt_encoder
    heads.sam_mask_decoder = stub.sam_mask_decoder
    return heads


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_state_dict_keys_and_shapes_all_variants(name: str) -> None:
    ref = _reference_heads(name)
    cfg = get_config(name)
    ours = torch.nn.Module()
    ours.sam_prompt_encoder = PromptEncoder.from_config(cfg)
    ours.sam_mask_decoder = MaskDecoder.from_config(cfg)
    ref_shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    our_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert our_shapes == ref_shapes
    ours.load_state_dict(ref.state_dict(), strict=True)
    rd, od = ref.sam_mask_decoder, ours.sam_mask_decoder
    for attr in ("use_high_res_features", "pred_obj_scores", "use_multimask_token_for_obj_ptr"):
        assert getattr(od, attr) == getattr(rd, attr), attr
    assert od.iou_prediction_head.sigmoid_output == rd.iou_prediction_head.sigmoid_output
    rp, op = ref.sam_prompt_encoder, ours.sam_prompt_encoder
    assert op.mask_input_size == rp.mask_input_size
    assert op.input_image_size == tuple(rp.input_image_size)


def test_attention_module_api() -> None:
    attn = Attention(256, 8, downsample_rate=2, kv_in_dim=64)
    assert sorted(k for k, _ in attn.named_children()) == ["k_proj", "out_proj", "q_proj", "v_proj"]
    assert attn.k_proj.in_features == 64 and attn.q_proj.out_features == 128
    x = torch.randn(2, 5, 128)
    heads = attn.separate_heads(x)
    assert heads.shape == (2, 8, 5, 16)
    assert torch.equal(attn.recombine_heads(heads), x)
    from sam2.modeling.sam.transformer import Attention as RefAttention

    ref = RefAttention(256, 8, downsample_rate=2, kv_in_dim=64).eval()
    attn.load_state_dict(ref.state_dict(), strict=True)
    q, kv = torch.randn(2, 7, 256), torch.randn(2, 30, 64)
    assert _max_diff(ref(q, kv, kv), attn(q, kv, kv)) < 1e-5


# --------------------------------------------------------------------------- numerics
@torch.no_grad()
@pytest.mark.parametrize("dynamic", [True, False], ids=["dynamic", "plain"])
@pytest.mark.parametrize("multimask", [True, False], ids=["multi", "single"])
def test_single_positive_click(pair512: Pair, multimask: bool, dynamic: bool) -> None:
    p = pair512
    rmd = p.ref.sam_mask_decoder
    assert rmd.dynamic_multimask_via_stability  # the builders turn it on
    rmd.dynamic_multimask_via_stability = p.md.dynamic_multimask_via_stability = dynamic
    try:
        _run_both(p, points=_clicks(p, 1, [1]), multimask=multimask, batch=1, through_convs=True)
    finally:
        rmd.dynamic_multimask_via_stability = p.md.dynamic_multimask_via_stability = True


@torch.no_grad()
@pytest.mark.parametrize("multimask", [True, False], ids=["multi", "single"])
def test_positive_and_negative_clicks(pair512: Pair, multimask: bool) -> None:
    p = pair512
    _run_both(p, points=_clicks(p, 1, [1, 0, 1, 0, 0]), multimask=multimask, batch=1)


@torch.no_grad()
@pytest.mark.parametrize("with_clicks", [False, True], ids=["box", "box+clicks"])
def test_box_as_corner_points(pair512: Pair, with_clicks: bool) -> None:
    """The predictors pass a box as two points labelled 2 and 3 before the clicks."""
    p = pair512
    box = _box(p, 2)
    coords, labels = box.reshape(2, 2, 2), torch.tensor([[2, 3], [2, 3]], dtype=torch.int32)
    if with_clicks:
        c2, l2 = _clicks(p, 2, [1, 0])
        coords, labels = torch.cat((coords, c2), 1), torch.cat((labels, l2), 1)
    _run_both(p, points=(coords, labels), multimask=False, batch=2)


@torch.no_grad()
@pytest.mark.parametrize("with_clicks", [False, True], ids=["box", "box+clicks"])
def test_box_argument(pair512: Pair, with_clicks: bool) -> None:
    p = pair512
    points = _clicks(p, 2, [1, 0]) if with_clicks else None
    out = _run_both(p, points=points, boxes=_box(p, 2), multimask=True, batch=2)
    assert out["ours"][0].shape[1] == 3


@torch.no_grad()
@pytest.mark.parametrize("with_points", [False, True], ids=["mask", "mask+points"])
def test_mask_prompt(pair512: Pair, with_points: bool) -> None:
    p = pair512
    points = _clicks(p, 2, [1, 0, 1]) if with_points else None
    if points is None:
        # as the reference model does without clicks: a single padding point
        points = (torch.zeros(2, 1, 2), -torch.ones(2, 1, dtype=torch.int32))
    _run_both(p, points=points, masks=_mask_prompt(p, 2), multimask=False, batch=2)


@torch.no_grad()
def test_mask_prompt_without_sparse_prompts(pair512: Pair) -> None:
    _run_both(pair512, masks=_mask_prompt(pair512, 2), multimask=True, batch=2)


@torch.no_grad()
def test_padding_points(pair512: Pair) -> None:
    """Label -1 entries (padding of ragged batches) carry arbitrary coordinates."""
    p = pair512
    coords, labels = _clicks(p, 3, [1, 0, 1, 1])
    labels[0, 2:] = -1
    labels[1, 1] = -1
    coords[0, 2:] = 1e4  # far outside: must be ignored
    _run_both(p, points=(coords, labels), multimask=False, batch=3)
    # the coordinates of padding points do not matter
    moved = coords.clone()
    moved[0, 2:] = 0.0
    moved[1, 1] = -3.0
    assert torch.equal(p.pe((coords, labels), None, None)[0], p.pe((moved, labels), None, None)[0])


@torch.no_grad()
@pytest.mark.parametrize("multimask", [True, False], ids=["multi", "single"])
def test_batch_of_prompts(pair512: Pair, multimask: bool) -> None:
    p = pair512
    coords, labels = _clicks(p, 4, [1, 0, 1])
    labels[2, 1:] = -1
    labels[3] = torch.tensor([1, 1, 1])
    _run_both(p, points=(coords, labels), multimask=multimask, batch=4)


@torch.no_grad()
def test_repeat_image(pair512: Pair) -> None:
    """One image embedding shared by several prompts."""
    p = pair512
    _run_both(p, points=_clicks(p, 3, [1, 0]), multimask=True, batch=3, repeat_image=True)


@torch.no_grad()
@pytest.mark.parametrize(
    "case", ["click_multi", "clicks_single", "box_mask_points"], ids=str
)
def test_input_size_1024(pair1024: Pair, case: str) -> None:
    p = pair1024
    if case == "click_multi":
        _run_both(p, points=_clicks(p, 1, [1]), multimask=True, batch=1, through_convs=True)
    elif case == "clicks_single":
        _run_both(p, points=_clicks(p, 1, [1, 0, 1]), multimask=False, batch=1)
    else:
        box = _box(p, 1).reshape(1, 2, 2)
        c, l = _clicks(p, 1, [0])
        pts = (torch.cat((box, c), 1), torch.cat((torch.tensor([[2, 3]], dtype=torch.int32), l), 1))
        _run_both(p, points=pts, masks=_mask_prompt(p, 1), multimask=False, batch=1)


# --------------------------------------------------------------------------- stability
def test_stability_selection_both_branches() -> None:
    """The fallback picks mask 0 where it is stable and the best alternative elsewhere."""
    from sam2.modeling.sam.mask_decoder import MaskDecoder as RefMaskDecoder

    g = torch.Generator().manual_seed(5)
    logits = torch.randn(5, 4, 16, 16, generator=g)
    logits[0, 0] *= 1000  # large margins: stable
    logits[1, 0] *= 0.01  # everything near 0: unstable
    logits[2, 0] = -5.0  # empty at both thresholds: stable by definition
    logits[3, 0] = torch.linspace(-1, 1, 256).view(16, 16)  # ~95% stable: below 0.98
    logits[4, 0] = torch.linspace(-10, 10, 256).view(16, 16)  # ~99.5%: stable
    iou = torch.rand(5, 4, generator=g)
    iou[3, 1:] = torch.tensor([0.2, 0.7, 0.7])  # a tie: the first best is taken

    ours = MaskDecoder(64, num_heads=2, mlp_dim=32, dynamic_multimask_via_stability=True)
    ref = RefMaskDecoder.__new__(RefMaskDecoder)
    ref.dynamic_multimask_stability_delta = ours.dynamic_multimask_stability_delta
    ref.dynamic_multimask_stability_thresh = ours.dynamic_multimask_stability_thresh

    scores = stability_scores(logits[:, 0], 0.05)
    assert torch.equal(scores, ref._get_stability_scores(logits[:, 0:1]).squeeze(1))
    stable = scores >= 0.98
    assert stable.tolist() == [True, False, True, False, True]
    m_ref, i_ref = ref._dynamic_multimask_via_stability(logits, iou)
    m_our, i_our = ours._select_stable(logits, iou)
    assert torch.equal(m_ref, m_our) and torch.equal(i_ref, i_our)
    best = iou[:, 1:].argmax(-1) + 1
    for b in range(5):
        expect = 0 if stable[b] else best[b].item()
        assert torch.equal(m_our[b, 0], logits[b, expect])
    assert best[3].item() == 2


@torch.no_grad()
@pytest.mark.parametrize("branch", ["fallback", "stable"])
def test_stability_fallback_end_to_end(pair512_video: Pair, branch: str) -> None:
    """Single-mask output of the video model with mask 0 unstable (falls back to the
    best alternative) and stable (mask 0 kept); also in training mode (no fallback)."""
    base = pair512_video
    # private copies of both decoders (the "stable" branch edits their weights)
    ref_heads = SimpleNamespace(
        sam_prompt_encoder=base.ref.sam_prompt_encoder,
        sam_mask_decoder=copy.deepcopy(base.ref.sam_mask_decoder),
    )
    p = Pair(ref_heads, base.pe, copy.deepcopy(base.md), base.image_size)
    rmd = p.ref.sam_mask_decoder
    assert rmd.dynamic_multimask_via_stability and p.md.dynamic_multimask_via_stability
    if branch == "stable":
        # sharper logits from the single-mask token: few pixels within +-delta of 0
        for m in (rmd, p.md):
            last = m.output_hypernetworks_mlps[0].layers[-1]
            last.weight.mul_(200.0)
            last.bias.mul_(200.0)

    points = _clicks(p, 2, [1])
    img, ref_hr, _ = _features(p, 2)
    sparse, dense = p.ref.sam_prompt_encoder(points, None, None)
    pos = p.ref.sam_prompt_encoder.get_dense_pe()
    all_masks, all_iou, _, _ = rmd.predict_masks(img, pos, sparse, dense, False, ref_hr)
    stable = rmd._get_stability_scores(all_masks[:, 0:1]).squeeze(1) >= 0.98
    out = _run_both(p, points=points, multimask=False, batch=2)
    masks_ref = out["ref"][0]
    if branch == "stable":
        assert stable.all()
        assert torch.equal(masks_ref[:, 0], all_masks[:, 0])
    else:
        assert not stable.any()
        best = all_iou[:, 1:].argmax(-1) + 1
        for b in range(2):
            assert torch.equal(masks_ref[b, 0], all_masks[b, best[b]])
            assert not torch.equal(masks_ref[b, 0], all_masks[b, 0])

    # training mode: the fallback is off on both sides
    rmd.train()
    p.md.train()
    try:
        _run_both(p, points=points, multimask=False, batch=2)
    finally:
        rmd.eval()
        p.md.eval()


# --------------------------------------------------------------------------- options
@torch.no_grad()
@pytest.mark.parametrize(
    "flags",
    [
        dict(pred_obj_scores=True, pred_obj_scores_mlp=False, use_high_res_features=False),
        dict(pred_obj_scores=False, iou_prediction_use_sigmoid=False),
        dict(pred_obj_scores=True, pred_obj_scores_mlp=True, use_high_res_features=True,
             use_multimask_token_for_obj_ptr=False, iou_prediction_use_sigmoid=True),
        dict(pred_obj_scores=True, pred_obj_scores_mlp=True, use_high_res_features=True,
             use_multimask_token_for_obj_ptr=True),
    ],
    ids=["linear-obj-head", "no-obj-head", "single-token-ptr", "multi-token-ptr"],
)
def test_decoder_options(flags: dict) -> None:
    """Options the official variants do not all use: linear or absent object-score head,
    no skip features, the single-mask token as object pointer in multimask mode."""
    from sam2.modeling.sam.mask_decoder import MaskDecoder as RefMaskDecoder
    from sam2.modeling.sam.transformer import TwoWayTransformer as RefTwoWay

    torch.manual_seed(7)
    ref = RefMaskDecoder(
        transformer_dim=C,
        transformer=RefTwoWay(depth=2, embedding_dim=C, mlp_dim=2048, num_heads=8),
        **flags,
    ).eval()
    ours = MaskDecoder(C, **flags).eval()
    assert sorted(ours.state_dict()) == sorted(ref.state_dict())
    ours.load_state_dict(ref.state_dict(), strict=True)
    if flags.get("pred_obj_scores"):
        head = ref.pred_obj_score_head
        (head.layers[-1] if hasattr(head, "layers") else head).bias.add_(8.0)
        ours.load_state_dict(ref.state_dict(), strict=True)

    s = 16
    g = torch.Generator().manual_seed(8)
    img = torch.randn(2, C, s, s, generator=g)
    pos = torch.randn(1, C, s, s, generator=g)
    sparse = torch.randn(2, 3, C, generator=g)
    dense = torch.randn(2, C, s, s, generator=g)
    hr = None
    if flags.get("use_high_res_features"):
        hr = [torch.randn(2, C // 8, 4 * s, 4 * s, generator=g),
              torch.randn(2, C // 4, 2 * s, 2 * s, generator=g)]
    for multimask in (True, False):
        r = ref(img, pos, sparse, dense, multimask, False, hr)
        o = ours(img, pos, sparse, dense, multimask, False, hr)
        for a, b in zip(r, o):
            assert _max_diff(a, b) < 1e-5
        assert (r[0] > 0).any() and (r[0] < 0).any()
        expect_tokens = 3 if multimask and flags.get("use_multimask_token_for_obj_ptr") else 1
        assert o[2].shape == (2, expect_tokens, C)
        if not flags.get("pred_obj_scores"):
            assert torch.equal(o[3], torch.full((2, 1), 10.0))


def test_decoder_with_autograd() -> None:
    """Outside no_grad (fine-tuning) the decoder is differentiable and gives the same
    values as in inference mode."""
    cfg = get_config("sam2.1_hiera_tiny", image_size=256)
    pe, md = PromptEncoder.from_config(cfg), MaskDecoder.from_config(cfg)
    s = cfg.embedding_size
    img = torch.randn(2, C, s, s, requires_grad=True)
    hr = [torch.randn(2, C // 8, 4 * s, 4 * s), torch.randn(2, C // 4, 2 * s, 2 * s)]
    points = (torch.rand(2, 2, 2) * 255, torch.tensor([[1, 0], [1, 1]]))
    sparse, dense = pe(points, None, None)
    out = md(img, pe.get_dense_pe(), sparse, dense, True, False, hr)
    (out[0].mean() + out[1].sum() + out[2].mean() + out[3].sum()).backward()
    assert img.grad is not None and md.mask_tokens.weight.grad is not None
    assert pe.point_embeddings[1].weight.grad is not None
    with torch.inference_mode():
        sparse, dense = pe(points, None, None)
        again = md(img.detach(), pe.get_dense_pe(), sparse, dense, True, False, hr)
    for a, b in zip(out, again):
        assert _max_diff(a.detach(), b) < 1e-5


def test_dense_pe_cache_follows_weights() -> None:
    """The cached dense positional encoding is recomputed when the weights change."""
    cfg = get_config("sam2.1_hiera_tiny", image_size=256)
    pe = PromptEncoder.from_config(cfg)
    first = pe.get_dense_pe()
    assert first.shape == (1, C, 16, 16)
    assert pe.get_dense_pe() is first  # reused
    state = pe.state_dict()
    state["pe_layer.positional_encoding_gaussian_matrix"] = torch.randn(2, C // 2)
    pe.load_state_dict(state)
    second = pe.get_dense_pe()
    assert not torch.equal(first, second)
    assert torch.equal(second, pe.pe_layer((16, 16)).unsqueeze(0))
    with torch.inference_mode():
        assert torch.equal(pe.get_dense_pe(), second)
