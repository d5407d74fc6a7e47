"""Prompt simulation: SAM 2's proportions over many draws, and clicks from the error region."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam2.training.prompts import (
    PAD_LABEL,
    PromptSettings,
    box_points,
    corrective_points,
    initial_points,
    plan_prompts,
)


def clip_masks(num_frames: int = 8, objects: int = 2, size: int = 32) -> torch.Tensor:
    masks = torch.zeros(num_frames, objects, size, size, dtype=torch.bool)
    for b in range(objects):
        masks[:, b, 4 + 10 * b : 10 + 10 * b, 5:15] = True
    return masks


def test_plan_proportions_over_many_draws():
    settings = PromptSettings()
    rng = np.random.default_rng(0)
    masks = clip_masks()
    n = 4000
    kinds = {"mask": 0, "click": 0, "box": 0}
    two_cond = two_correct = corrected_clips = 0
    for _ in range(n):
        plan = plan_prompts(masks, settings, rng)
        kinds[plan.kind] += 1
        assert plan.cond_frames[0] == 0 and plan.cond_frames == sorted(set(plan.cond_frames))
        assert 1 <= len(plan.cond_frames) <= 2
        two_cond += len(plan.cond_frames) == 2
        if plan.kind == "mask":
            assert plan.correct_frames == []  # a mask prompt is not corrected (as in SAM 2)
        else:
            corrected_clips += 1
            assert plan.correct_frames[0] == 0 and 1 <= len(plan.correct_frames) <= 2
            assert not set(plan.correct_frames[1:]) & set(plan.cond_frames)
            two_correct += len(plan.correct_frames) == 2
            assert plan.rounds == settings.correction_rounds
    # binomial standard errors at n = 4000 are below 0.008; allow about 4 of them
    assert kinds["mask"] / n == pytest.approx(0.5, abs=0.03)
    assert kinds["click"] / n == pytest.approx(0.25, abs=0.03)
    assert kinds["box"] / n == pytest.approx(0.25, abs=0.03)
    assert two_cond / n == pytest.approx(0.5, abs=0.03)
    assert two_correct / corrected_clips == pytest.approx(0.5, abs=0.04)


def test_plan_is_deterministic_for_a_seed():
    masks = clip_masks()
    a = [plan_prompts(masks, PromptSettings(), np.random.default_rng(7)) for _ in range(3)]
    assert all(p == a[0] for p in a)


def test_click_and_box_conditioning_frames_show_every_object():
    masks = clip_masks()
    masks[3:, 1] = False  # object 1 leaves after frame 2
    rng = np.random.default_rng(1)
    for _ in range(300):
        plan = plan_prompts(masks, PromptSettings(prob_mask=0.0), rng)
        assert all(t < 3 for t in plan.cond_frames)


def test_initial_click_lies_inside_the_object():
    masks = clip_masks()[0]
    rng = np.random.default_rng(0)
    for _ in range(50):
        pts, labels = initial_points(masks, "click", PromptSettings(), rng)
        assert pts.shape == (2, 1, 2) and labels.tolist() == [[1], [1]]
        for b in range(2):
            x, y = pts[b, 0].tolist()
            assert masks[b, int(y), int(x)]


def test_box_corners_with_bounded_noise():
    mask = np.zeros((64, 64), bool)
    mask[10:30, 20:40] = True  # rows 10..29, cols 20..39
    settings = PromptSettings()
    rng = np.random.default_rng(0)
    for _ in range(200):
        (p0, p1), labels = box_points(mask, settings, rng)
        assert labels == [2, 3]
        assert abs(p0[0] - 20) <= 2.0 and abs(p1[0] - 39) <= 2.0  # 10% of the 19-px side
        assert abs(p0[1] - 10) <= 2.0 and abs(p1[1] - 29) <= 2.0
        assert p0[0] <= p1[0] and p0[1] <= p1[1]


def test_corrective_clicks_come_from_the_error_region():
    truth = torch.zeros(3, 16, 16, dtype=torch.bool)
    pred = torch.zeros(3, 16, 16, dtype=torch.bool)
    truth[0, 2:6, 2:6] = True  # object 0: missed entirely -> positive click inside
    pred[1, 8:12, 8:12] = True  # object 1: a false region -> negative click there
    truth[2, 0:4, 0:4] = True
    pred[2, 0:4, 0:4] = True  # object 2: perfect -> padding point
    settings = PromptSettings(prob_click_from_truth=0.0)
    rng = np.random.default_rng(0)
    for _ in range(50):
        pts, labels = corrective_points(truth, pred, settings, rng)
        x, y = (int(v) for v in pts[0, 0].tolist())
        assert labels[0, 0] == 1 and truth[0, y, x]
        x, y = (int(v) for v in pts[1, 0].tolist())
        assert labels[1, 0] == 0 and pred[1, y, x]
        assert labels[2, 0] == PAD_LABEL


def test_corrective_click_from_truth_probability():
    truth = torch.zeros(1, 16, 16, dtype=torch.bool)
    truth[0, 0:8] = True
    pred = torch.ones(1, 16, 16, dtype=torch.bool)  # only false positives: error clicks are negative
    rng = np.random.default_rng(0)
    labels = [int(corrective_points(truth, pred, PromptSettings(prob_click_from_truth=0.3), rng)[1]) for _ in range(2000)]
    assert np.mean(labels) == pytest.approx(0.3, abs=0.04)
