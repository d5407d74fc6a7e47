"""Video object segmentation metrics: J (region IoU), F (boundary F-measure), CTC SEG.

J and F follow the DAVIS benchmark's definitions: F matches the one-pixel boundaries
of prediction and truth within a tolerance of ``ceil(0.008 * image diagonal)`` pixels
(a disk), and a frame where both masks are empty scores 1 for J and F. SEG is the Cell
Tracking Challenge measure: each true object's IoU with the predicted object covering
more than half of it (0 if none), averaged over all true objects.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["jaccard", "boundary_map", "boundary_f", "ctc_seg", "DAVIS_BOUND_TH"]

DAVIS_BOUND_TH = 0.008


def jaccard(pred: np.ndarray, truth: np.ndarray) -> float:
    """IoU of two boolean masks; 1 when both are empty."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    union = np.logical_or(pred, truth).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, truth).sum() / union)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundary: pixels that differ from their right, lower or lower-right neighbour."""
    mask = np.asarray(mask, bool)
    right = np.zeros_like(mask)
    below = np.zeros_like(mask)
    diag = np.zeros_like(mask)
    right[:, :-1] = mask[:, 1:]
    below[:-1, :] = mask[1:, :]
    diag[:-1, :-1] = mask[1:, 1:]
    edge = (mask ^ right) | (mask ^ below) | (mask ^ diag)
    edge[-1, :] = mask[-1, :] ^ right[-1, :]
    edge[:, -1] = mask[:, -1] ^ below[:, -1]
    edge[-1, -1] = False
    return edge


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a disk of ``radius`` pixels."""
    if radius <= 0 or not mask.any():
        return mask.copy()
    r = int(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = torch.from_numpy((xx * xx + yy * yy <= r * r).astype(np.float32))[None, None]
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return (F.conv2d(t, disk, padding=r)[0, 0] > 0.5).numpy()


def boundary_f(pred: np.ndarray, truth: np.ndarray, bound_th: float = DAVIS_BOUND_TH) -> float:
    """DAVIS boundary F-measure; ``bound_th`` < 1 is a fraction of the image diagonal."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    radius = bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*pred.shape))
    pred_b, truth_b = boundary_map(pred), boundary_map(truth)
    n_pred, n_truth = int(pred_b.sum()), int(truth_b.sum())
    if n_pred == 0 and n_truth == 0:
        return 1.0
    if n_pred == 0 or n_truth == 0:
        return 0.0
    precision = float((pred_b & _dilate(truth_b, int(radius))).sum()) / n_pred
    recall = float((truth_b & _dilate(pred_b, int(radius))).sum()) / n_truth
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def seg_matches(pred_labels: np.ndarray, truth_labels: np.ndarray) -> list[float]:
    """SEG scores of every true object of one frame (CTC matching rule)."""
    pred_labels, truth_labels = np.asarray(pred_labels), np.asarray(truth_labels)
    scores = []
    for tid in np.unique(truth_labels):
        if tid == 0:
            continue
        region = truth_labels == tid
        ids, counts = np.unique(pred_labels[region], return_counts=True)
        best = 0.0
        for pid, count in zip(ids, counts):
            if pid != 0 and count > 0.5 * region.sum():
                pred = pred_labels == pid
                best = float(count / np.logical_or(pred, region).sum())
        scores.append(best)
    return scores


def ctc_seg(pred_frames, truth_frames) -> float:
    """Cell Tracking Challenge SEG over paired label frames; NaN without true objects."""
    scores: list[float] = []
    for pred, truth in zip(pred_frames, truth_frames):
        scores += seg_matches(pred, truth)
    return float(np.mean(scores)) if scores else float("nan")
