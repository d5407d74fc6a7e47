"""Each loss term against values worked out by hand from its formula."""

from __future__ import annotations

import math

import pytest
import torch

from napari_sam2.training.losses import (
    LossWeights,
    dice_loss,
    focal_loss,
    iou_l1_loss,
    presence_loss,
    step_loss,
)


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def as_map(values, shape=(1, 1, 1, -1)) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).reshape(shape)


def test_focal_at_zero_logits():
    # p = 0.5 everywhere: CE = ln 2, (1 - p_t)^2 = 1/4; alpha_t = 0.25 (object) / 0.75 (background)
    loss = focal_loss(as_map([0.0, 0.0]), as_map([1.0, 0.0]))
    expected = (0.25 * 0.25 * math.log(2) + 0.75 * 0.25 * math.log(2)) / 2
    assert loss.shape == (1, 1)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.0866434, rel=1e-5)


def test_focal_confident_and_wrong_pixels():
    # logit 2 on an object pixel (right), logit -1 on an object pixel (wrong)
    p1, p2 = sig(2.0), sig(-1.0)
    term1 = 0.25 * (-math.log(p1)) * (1 - p1) ** 2
    term2 = 0.25 * (-math.log(p2)) * (1 - p2) ** 2
    loss = focal_loss(as_map([2.0, -1.0]), as_map([1.0, 1.0]))
    assert loss.item() == pytest.approx((term1 + term2) / 2, rel=1e-6)
    assert (term1 + term2) / 2 == pytest.approx(0.0879574, rel=1e-4)


def test_dice_soft_prediction():
    # p = 0.5 on 4 pixels, 2 object pixels: 1 - (2 * 1 + 1) / (2 + 2 + 1) = 0.4
    loss = dice_loss(as_map([0.0] * 4), as_map([1.0, 1.0, 0.0, 0.0]))
    assert loss.item() == pytest.approx(0.4, rel=1e-6)


def test_dice_nearly_perfect_is_nearly_zero():
    logits = as_map([30.0, 30.0, -30.0, -30.0])
    assert dice_loss(logits, as_map([1.0, 1.0, 0.0, 0.0])).item() == pytest.approx(0.0, abs=1e-6)


def test_iou_l1():
    # prediction covers 2 pixels, truth 1 of them: IoU 0.5; predicted 0.8 -> |0.8 - 0.5|
    loss = iou_l1_loss(torch.tensor([[0.8]]), as_map([1.0, 1.0, -1.0, -1.0]), as_map([1.0, 0.0, 0.0, 0.0]))
    assert loss.item() == pytest.approx(0.3, rel=1e-6)


def test_presence_cross_entropy():
    loss = presence_loss(torch.tensor([[0.0], [2.0]]), torch.tensor([True, False]))
    assert loss[0].item() == pytest.approx(math.log(2), rel=1e-6)
    assert loss[1].item() == pytest.approx(math.log(1 + math.exp(2.0)), rel=1e-6)


def test_step_loss_best_mask_and_absent_objects():
    """Mask terms come from the best candidate; IoU from all; absent objects only from presence."""
    target = torch.zeros(2, 2, 2, dtype=torch.bool)
    target[0, 0, 0] = True  # object 0: one pixel; object 1 absent
    good = torch.full((2, 2), -30.0)
    good[0, 0] = 30.0
    bad = torch.zeros(2, 2)
    masks = torch.stack([torch.stack([bad, good, bad]), torch.stack([bad, bad, bad])])  # (2, 3, 2, 2)
    ious = torch.tensor([[0.0, 1.0, 0.25], [0.5, 0.5, 0.5]])
    scores = torch.tensor([[0.0], [0.0]])
    terms = step_loss(masks, ious, scores, target)
    # object 0: best = "good" -> focal and dice ~0; IoU: actual (0.25, 1, 0.25) vs predicted -> (0.25, 0, 0)/3
    assert terms["focal"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["dice"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["iou"].item() == pytest.approx((0.25 / 3) / 2, rel=1e-5)
    assert terms["presence"].item() == pytest.approx(math.log(2), rel=1e-6)  # (ln2 + ln2) / 2
    w = LossWeights()
    expected = w.focal * terms["focal"] + w.dice * terms["dice"] + w.iou * terms["iou"] + w.presence * terms["presence"]
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_step_loss_single_mask_values():
    target = torch.tensor([[[True, False], [False, False]]])
    masks = torch.zeros(1, 1, 2, 2)
    terms = step_loss(masks, torch.tensor([[0.5]]), torch.tensor([[0.0]]), target)
    focal = (0.25 * 0.25 * math.log(2) + 3 * 0.75 * 0.25 * math.log(2)) / 4
    dice = 1 - (2 * 0.5 + 1) / (2.0 + 1.0 + 1)
    # logits 0 are not > 0: the binarised prediction is empty, IoU 0 -> |0.5 - 0|
    assert terms["focal"].item() == pytest.approx(focal, rel=1e-6)
    assert terms["dice"].item() == pytest.approx(dice, rel=1e-6)
    assert terms["iou"].item() == pytest.approx(0.5, rel=1e-6)
    assert terms["total"].item() == pytest.approx(20 * focal + dice + 0.5 + math.log(2), rel=1e-6)
