"""Prompt simulation as in SAM 2's training.

Per clip: the first prompt of every object is a mask (p = 0.5), one positive click
(0.25) or a box (0.25); 1 or 2 conditioning frames, the first frame always one;
with clicks and boxes, 1 or 2 frames get corrective clicks (the first conditioning
frame, and maybe one more), several rounds each, every click drawn from the error
region of the current prediction; corrected frames become conditioning frames.
Coordinates are (x, y) in model-input pixels, as the prompt encoder takes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["PromptSettings", "PromptPlan", "plan_prompts", "initial_points", "corrective_points", "box_points"]

PAD_LABEL = -1  # a padding point the prompt encoder ignores (nothing left to correct)


@dataclass(frozen=True)
class PromptSettings:
    prob_mask: float = 0.5
    prob_box: float = 0.25  # the rest (1 - mask - box) is one positive click
    max_cond_frames: int = 2
    max_correct_frames: int = 2
    correction_rounds: int = 7
    prob_click_from_truth: float = 0.1  # a corrective click drawn anywhere in the object
    box_noise: float = 0.1  # fraction of the box side
    box_noise_max: float = 20.0 / 1024.0  # fraction of the image side


@dataclass
class PromptPlan:
    """What happens on which frame of one clip (frame numbers are clip positions)."""

    kind: str  # "mask", "click" or "box"
    cond_frames: list[int]
    correct_frames: list[int]
    rounds: int


def plan_prompts(masks: torch.Tensor, settings: PromptSettings, rng: np.random.Generator) -> PromptPlan:
    """Draw the prompt plan of a clip; ``masks`` (T, B, S, S) is its truth."""
    u = rng.random()
    kind = "mask" if u < settings.prob_mask else "box" if u < settings.prob_mask + settings.prob_box else "click"
    num_frames = int(masks.shape[0])
    present = masks.flatten(2).any(-1).all(-1).numpy()  # (T,) every object visible
    cond = [0]
    want = int(rng.integers(1, settings.max_cond_frames + 1))
    others = [t for t in range(1, num_frames) if kind == "mask" or present[t]]
    if want > 1 and others:
        cond += sorted(int(t) for t in rng.choice(others, size=min(want - 1, len(others)), replace=False))
    correct: list[int] = []
    if kind != "mask" and settings.correction_rounds > 0:
        correct = [0]
        want = int(rng.integers(1, settings.max_correct_frames + 1))
        rest = [t for t in range(1, num_frames) if t not in cond]
        if want > 1 and rest:
            correct += sorted(int(t) for t in rng.choice(rest, size=min(want - 1, len(rest)), replace=False))
    return PromptPlan(kind, cond, correct, settings.correction_rounds)


def _uniform_pixel(mask: np.ndarray, rng: np.random.Generator) -> tuple[float, float] | None:
    """A uniformly drawn (x, y) pixel inside ``mask`` (H, W), or None if empty.

    Pixel (row r, col c) has coordinates (c, r), as a napari click on it is mapped.
    """
    flat = np.flatnonzero(mask)
    if flat.size == 0:
        return None
    index = int(flat[int(rng.integers(0, flat.size))])
    y, x = divmod(index, mask.shape[1])
    return float(x), float(y)


def initial_points(
    truth: torch.Tensor, kind: str, settings: PromptSettings, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """First prompt of each object: (B, N, 2) points and (B, N) labels; ``truth`` (B, S, S)."""
    masks = truth.numpy()
    coords, labels = [], []
    for mask in masks:
        if kind == "box":
            c, lab = box_points(mask, settings, rng)
        else:
            xy = _uniform_pixel(mask, rng)
            c, lab = ([list(xy)], [1]) if xy is not None else ([[0.0, 0.0]], [PAD_LABEL])
        coords.append(c)
        labels.append(lab)
    return torch.tensor(coords, dtype=torch.float32), torch.tensor(labels, dtype=torch.int32)


def box_points(mask: np.ndarray, settings: PromptSettings, rng: np.random.Generator) -> tuple[list, list]:
    """The object's bounding box with noise on each side, as two corner points (labels 2, 3)."""
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return [[0.0, 0.0], [0.0, 0.0]], [PAD_LABEL, PAD_LABEL]
    size = mask.shape[0]
    x0, x1, y0, y1 = float(cols[0]), float(cols[-1]), float(rows[0]), float(rows[-1])
    w, h = x1 - x0, y1 - y0
    cap = settings.box_noise_max * size
    jx = min(settings.box_noise * w, cap)
    jy = min(settings.box_noise * h, cap)
    x0, x1 = x0 + rng.uniform(-jx, jx), x1 + rng.uniform(-jx, jx)
    y0, y1 = y0 + rng.uniform(-jy, jy), y1 + rng.uniform(-jy, jy)
    x0, x1 = sorted((float(np.clip(x0, 0, size - 1)), float(np.clip(x1, 0, size - 1))))
    y0, y1 = sorted((float(np.clip(y0, 0, size - 1)), float(np.clip(y1, 0, size - 1))))
    return [[x0, y0], [x1, y1]], [2, 3]


def corrective_points(
    truth: torch.Tensor, prediction: torch.Tensor, settings: PromptSettings, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One new click per object from its error region: (B, 1, 2) points, (B, 1) labels.

    A missed pixel gives a positive click, a false one a negative click; with
    ``prob_click_from_truth`` the click is a positive one anywhere in the object. An
    object without errors gets a padding point.
    """
    truth_np = truth.numpy()
    pred_np = prediction.detach().cpu().numpy()
    coords, labels = [], []
    for gt, pred in zip(truth_np, pred_np):
        if gt.any() and rng.random() < settings.prob_click_from_truth:
            region, label = gt, 1
            xy = _uniform_pixel(region, rng)
        else:
            error = gt ^ pred
            xy = _uniform_pixel(error, rng)
            label = PAD_LABEL
            if xy is not None:
                label = 1 if gt[int(xy[1]), int(xy[0])] else 0
        if xy is None:
            coords.append([[0.0, 0.0]])
            labels.append([PAD_LABEL])
        else:
            coords.append([list(xy)])
            labels.append([label])
    return torch.tensor(coords, dtype=torch.float32), torch.tensor(labels, dtype=torch.int32)
