"""AutomaticMaskGenerator on its own: any Sam2 (the reduced demo architecture at 256 px),
frames of any size and dtype, batching, the result object and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_automatic_parity import scene

from napari_sam2.model import AutomaticMaskGenerator, AutomaticMasks, build_sam2
from napari_sam2.model.boxes import masks_to_boxes
from napari_sam2.training.demo import demo_config

LOOSE = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=0.95)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def demo_model():
    torch.manual_seed(0)
    model = build_sam2(demo_config(), device="cpu")
    with torch.no_grad():  # coherent masks from random weights (see test_automatic_parity)
        model.image_encoder.trunk.pos_embed.zero_()
        model.image_encoder.trunk.pos_embed_window.zero_()
        for i in (0, 3):
            conv = model.sam_mask_decoder.output_upscaling[i]
            conv.weight.copy_(conv.weight[:, :, :1, :1].expand_as(conv.weight).clone())
    return model


def _check_consistent(result: AutomaticMasks, shape: tuple[int, int]) -> None:
    n = len(result)
    assert n > 0
    assert result.masks.shape == (n, *shape) and result.masks.dtype == bool
    boxes = masks_to_boxes(torch.from_numpy(result.masks)).numpy()[:, [1, 0, 3, 2]]
    np.testing.assert_array_equal(result.boxes, boxes)
    assert result.predicted_iou.shape == result.stability_score.shape == (n,)
    assert result.points.shape == (n, 2)
    assert ((result.points >= 0) & (result.points <= np.array(shape))).all()
    labels = result.to_labels()
    assert labels.shape == shape and labels.max() <= n
    smallest = int(np.argmin(result.areas))
    assert (labels[result.masks[smallest]] == smallest + 1).all(), "the smallest mask is painted last"


def test_demo_architecture_on_uint16_gray_frame_of_any_size(demo_model) -> None:
    gray = scene(400)[:300, :, 0].astype(np.uint16) * 257
    result = AutomaticMaskGenerator(demo_model, **LOOSE).generate(gray)
    _check_consistent(result, (300, 400))


def test_uint16_with_limits_matches_uint8(demo_model) -> None:
    img8 = scene(256)
    gen = AutomaticMaskGenerator(demo_model, **LOOSE)
    a = gen.generate(img8)
    b = gen.generate(img8.astype(np.uint16) * 257, contrast_limits=(0, 65535))
    assert len(a) == len(b) > 0
    for m, n in zip(a.masks, b.masks):
        assert (m & n).sum() / max(1, (m | n).sum()) >= 0.99


def test_batch_size_does_not_change_the_result(demo_model) -> None:
    img = scene(256)
    one = AutomaticMaskGenerator(demo_model, points_per_batch=1, **LOOSE).generate(img)
    many = AutomaticMaskGenerator(demo_model, points_per_batch=64, **LOOSE).generate(img)
    assert len(one) == len(many) > 0
    for m, n in zip(one.masks, many.masks):
        assert (m & n).sum() / max(1, (m | n).sum()) >= 0.99


def test_crops_float_rgba_and_min_area(demo_model) -> None:
    rgba = np.concatenate([scene(300), np.full((300, 300, 1), 255, np.uint8)], axis=-1).astype(np.float32) / 255
    gen = AutomaticMaskGenerator(demo_model, crop_n_layers=1, **LOOSE)
    result = gen.generate(rgba)
    _check_consistent(result, (300, 300))
    cut = int(np.median(result.areas))
    big = AutomaticMaskGenerator(demo_model, crop_n_layers=1, min_area=cut, **LOOSE).generate(rgba)
    assert 0 < len(big) < len(result) and (big.areas >= cut).all()


def test_explicit_point_grids(demo_model) -> None:
    grid = np.array([[0.25, 0.25], [0.75, 0.5]])
    result = AutomaticMaskGenerator(
        demo_model, points_per_side=None, point_grids=[grid], pred_iou_thresh=0, stability_score_thresh=0, box_nms_thresh=1.0
    ).generate(scene(256))
    assert len(result) == 6  # 2 clicks x 3 candidates, no filter, nothing suppressed
    assert {tuple(p) for p in result.points.tolist()} == {(64.0, 64.0), (128.0, 192.0)}


def test_bad_input_is_named(demo_model) -> None:
    gen = AutomaticMaskGenerator(demo_model, **LOOSE)
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, 3\|4\)"):
        gen.generate(np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(ValueError, match="dtype bool"):
        gen.generate(np.zeros((64, 64), bool))
    with pytest.raises(ValueError, match="smaller than"):
        gen.generate(np.zeros((4, 64), np.uint8))
    with pytest.raises(ValueError, match="contrast_limits"):
        gen.generate(np.zeros((64, 64), np.uint16), contrast_limits=(5, 5))
    with pytest.raises(TypeError, match="build_sam2"):
        AutomaticMaskGenerator(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="exactly one"):
        AutomaticMaskGenerator(demo_model, points_per_side=4, point_grids=[np.zeros((1, 2))])
    with pytest.raises(ValueError, match="needs 2"):
        AutomaticMaskGenerator(demo_model, points_per_side=None, point_grids=[np.zeros((1, 2))], crop_n_layers=1)
    with pytest.raises(ValueError, match=r"point_grids\[0\] must lie in \[0, 1\]"):
        AutomaticMaskGenerator(demo_model, points_per_side=None, point_grids=[np.full((1, 2), 2.0)])
    for bad in (dict(points_per_batch=0), dict(box_nms_thresh=1.5), dict(min_area=-1), dict(precision="half")):
        with pytest.raises(ValueError):
            AutomaticMaskGenerator(demo_model, **bad)
