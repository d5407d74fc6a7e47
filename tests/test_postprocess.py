"""Hole filling and small-region removal in torch, checked against scipy's labelling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from miniature import miniature_model

from napari_sam2.model import VideoSession
from napari_sam2.model.postprocess import connected_components, fill_holes, remove_small_regions

EIGHT = np.ones((3, 3), int)  # 8-connectivity, as SAM 2's extension uses


def reference_fill(logits: np.ndarray, max_area: int) -> np.ndarray:
    """What SAM 2's post-processing does, written with scipy: holes become 0.1."""
    out = logits.copy()
    labels, n = ndimage.label(logits <= 0, structure=EIGHT)
    sizes = ndimage.sum(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    for k, size in enumerate(sizes, start=1):
        if size <= max_area:
            out[labels == k] = 0.1
    return out


@pytest.mark.parametrize("seed", range(8))
def test_components_match_scipy(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 80, size=2)
    masks = rng.random((3, 1, h, w)) < rng.random()
    labels, areas = connected_components(torch.from_numpy(masks))
    for i in range(3):
        ref, n = ndimage.label(masks[i, 0], structure=EIGHT)
        ours = labels[i, 0].numpy()
        assert ((ours > 0) == (ref > 0)).all()
        assert len(np.unique(ours[ours > 0])) == n
        for k in range(1, n + 1):
            region = ref == k
            assert len(np.unique(ours[region])) == 1
            assert (areas[i, 0].numpy()[region] == region.sum()).all()


def test_long_winding_component_is_one_region():
    snake = np.zeros((128, 128), bool)
    for row in range(0, 128, 4):
        snake[row, :] = True
        snake[row : row + 4, 0 if (row // 4) % 2 else 127] = True
    labels, areas = connected_components(torch.from_numpy(snake)[None, None])
    assert len(torch.unique(labels[labels > 0])) == 1
    assert int(areas.max()) == snake.sum()


@pytest.mark.parametrize("max_area", [1, 8, 40])
def test_fill_holes_matches_the_reference_rule(max_area):
    rng = np.random.default_rng(max_area)
    yy, xx = np.mgrid[:96, :96]
    logits = np.where((yy - 48) ** 2 + (xx - 48) ** 2 < 35**2, 5.0, -5.0).astype(np.float32)
    for _ in range(30):  # holes of many sizes, some touching each other diagonally
        r, c, s = rng.integers(15, 80), rng.integers(15, 80), rng.integers(1, 8)
        logits[r : r + s, c : c + rng.integers(1, 8)] = -3.0
    logits += rng.normal(0, 0.01, logits.shape).astype(np.float32)
    ours = fill_holes(torch.from_numpy(logits)[None, None], max_area)[0, 0].numpy()
    np.testing.assert_array_equal(ours, reference_fill(logits, max_area))


def test_remove_small_regions():
    logits = np.full((40, 40), -4.0, np.float32)
    logits[5:25, 5:25] = 3.0  # big object stays
    logits[30, 30] = 2.0  # a speck goes
    logits[33:35, 2:4] = 1.0  # 4 pixels stay with max_area 3
    out = remove_small_regions(torch.from_numpy(logits)[None, None], 3)[0, 0].numpy()
    assert (out[5:25, 5:25] == 3.0).all() and out[30, 30] == np.float32(-0.1) and (out[33:35, 2:4] == 1.0).all()
    unchanged = torch.from_numpy(logits)[None, None]
    assert remove_small_regions(unchanged, 0) is unchanged and fill_holes(unchanged, 0) is unchanged


def test_session_applies_post_processing_to_every_result():
    model = miniature_model(image_size=128)
    frames = (np.random.default_rng(0).random((4, 128, 128)) * 255).astype(np.uint8)
    with VideoSession(model, frames, fill_hole_area=0) as plain, VideoSession(model, frames, fill_hole_area=20, remove_area=20) as clean:
        plain.add_points(0, 1, [[64, 64]], [1])
        clean.add_points(0, 1, [[64, 64]], [1])
        list(plain.propagate())
        list(clean.propagate())
        changed = False
        for frame in range(4):
            raw = (plain._tracks[1].cond.get(frame) or plain._records.get((1, frame))).pred_masks
            low = (clean._tracks[1].cond.get(frame) or clean._records.get((1, frame))).pred_masks
            # no hole or speck of <= 20 pixels survives at the model's mask resolution
            _, hole_areas = connected_components(low <= 0)
            _, speck_areas = connected_components(low > 0)
            assert not ((hole_areas > 0) & (hole_areas <= 20)).any()
            assert not ((speck_areas > 0) & (speck_areas <= 20)).any()
            changed |= not torch.equal(raw, low)
        assert changed  # the random model does leave holes and specks to clean


def scipy_components(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What the reference's compiled ``get_connected_components`` returns, done with scipy.

    Its kernel (block-based union-find over 2x2 blocks) links diagonal neighbours:
    8-connectivity. Labels are >0 on foreground; counts are each component's area.
    """
    labels = np.zeros(mask.shape, np.int64)
    counts = np.zeros(mask.shape, np.int64)
    for i in range(mask.shape[0]):
        lab, n = ndimage.label(mask[i, 0].numpy().astype(bool), structure=EIGHT)
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        sizes[0] = 0
        labels[i, 0], counts[i, 0] = lab, sizes[lab]
    return torch.from_numpy(labels), torch.from_numpy(counts)


@pytest.mark.parametrize("seed", range(12))
def test_fill_holes_is_the_references_fill_holes_in_mask_scores(monkeypatch, seed):
    """Meta's own post-processing function, its CUDA kernel swapped for scipy, on random masks."""
    from sam2.utils import misc

    monkeypatch.setattr(misc, "get_connected_components", scipy_components)
    rng = np.random.default_rng(seed)
    n, h, w = int(rng.integers(1, 4)), int(rng.integers(4, 70)), int(rng.integers(4, 70))
    # smoothed noise: blobs and holes of every size, from specks to large regions
    noise = ndimage.gaussian_filter(rng.normal(size=(n, 1, h, w)), sigma=(0, 0, *rng.uniform(0.3, 2.5, 2)))
    logits = (noise / noise.std() * 4 + rng.normal(-0.5, 1.5)).astype(np.float32)
    logits[rng.random(logits.shape) < 0.02] = 0.0  # exact zeros count as background
    max_area = int(rng.choice([1, 2, 8, 8, 30]))
    torch_logits = torch.from_numpy(logits)
    theirs = misc.fill_holes_in_mask_scores(torch_logits.clone(), max_area)
    ours = fill_holes(torch_logits.clone(), max_area)
    assert ours.dtype == theirs.dtype
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_hole_connectivity_and_area_bound_are_the_references():
    logits = np.full((1, 1, 12, 12), 5.0, np.float32)
    logits[0, 0, 2, 2] = logits[0, 0, 3, 3] = -1.0  # diagonal neighbours: one hole of 2 pixels
    logits[0, 0, 7:9, 7:11] = -1.0  # a hole of exactly 8 pixels
    logits[0, 0, 5, 9] = 0.0  # a 1-pixel hole whose score is exactly zero
    filled = fill_holes(torch.from_numpy(logits), 1)[0, 0].numpy()
    assert filled[2, 2] == filled[3, 3] == -1.0 and filled[5, 9] == np.float32(0.1)
    filled = fill_holes(torch.from_numpy(logits), 8)[0, 0].numpy()
    assert (filled > 0).all()
    assert (fill_holes(torch.from_numpy(logits), 7)[0, 0].numpy()[7:9, 7:11] == -1.0).all()


def test_the_engine_fills_holes_of_8_pixels_by_default():
    model = miniature_model(image_size=64)
    frames = np.zeros((2, 64, 64), np.uint8)
    with VideoSession(model, frames) as default, VideoSession(model, frames, fill_hole_area=0) as off:
        assert default.fill_hole_area == 8 and off.fill_hole_area == 0
