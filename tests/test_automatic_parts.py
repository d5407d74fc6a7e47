"""The pieces of automatic mask generation (grids, crops, boxes, NMS, stability) against
the reference's own helpers (``sam2.utils.amg``) and a plain greedy NMS."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference_amg import naive_nms
from sam2.utils import amg

from napari_sam2.model.automatic import _stability
from napari_sam2.model.automatic_grid import crop_boxes, layer_point_grids, near_crop_edge, point_grid
from napari_sam2.model.boxes import masks_to_boxes, nms


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.mark.parametrize("n", [1, 2, 7, 32])
def test_point_grid_equals_reference(n: int) -> None:
    np.testing.assert_array_equal(point_grid(n), amg.build_point_grid(n))


def test_layer_grids_equal_reference() -> None:
    ours = layer_point_grids(16, 2, 2)
    ref = amg.build_all_layer_point_grids(16, 2, 2)
    assert len(ours) == len(ref) == 3
    for a, b in zip(ours, ref):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("size", [(512, 512), (300, 700), (1080, 1920), (97, 31)])
@pytest.mark.parametrize("layers", [0, 1, 2])
@pytest.mark.parametrize("overlap", [512 / 1500, 0.0, 0.5])
def test_crop_boxes_equal_reference(size: tuple[int, int], layers: int, overlap: float) -> None:
    boxes, layer_ids = amg.generate_crop_boxes(size, layers, overlap)
    ours = crop_boxes(size[0], size[1], layers, overlap)
    assert [list(b) for b, _ in ours] == boxes
    assert [i for _, i in ours] == layer_ids


def test_grid_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="points_per_side"):
        point_grid(0)
    with pytest.raises(ValueError, match="crop layer 2 would have no points"):
        layer_point_grids(3, 2, 2)


def _random_masks(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    for i in range(n):
        if i % 5 == 4:
            continue  # some empty masks
        r0, c0 = torch.randint(0, h, (1,), generator=g).item(), torch.randint(0, w, (1,), generator=g).item()
        r1 = r0 + torch.randint(0, h - r0, (1,), generator=g).item()
        c1 = c0 + torch.randint(0, w - c0, (1,), generator=g).item()
        masks[i, r0 : r1 + 1, c0 : c1 + 1] = torch.rand(r1 - r0 + 1, c1 - c0 + 1, generator=g) > 0.3
    return masks


def test_masks_to_boxes_equals_reference() -> None:
    masks = _random_masks(40, 37, 53, seed=1)
    torch.testing.assert_close(masks_to_boxes(masks), amg.batched_mask_to_box(masks).long(), rtol=0, atol=0)
    assert masks_to_boxes(masks[:0]).shape == (0, 4)


def test_near_crop_edge_equals_reference() -> None:
    g = torch.Generator().manual_seed(2)
    boxes = torch.randint(0, 300, (200, 2), generator=g)
    boxes = torch.cat((boxes, boxes + torch.randint(0, 200, (200, 2), generator=g)), dim=1)
    for crop in ([0, 0, 512, 512], [169, 0, 512, 343], [0, 169, 343, 512], [100, 120, 400, 380]):
        ref = amg.is_box_near_crop_edge(boxes, crop, [0, 0, 512, 512])
        assert torch.equal(near_crop_edge(boxes, tuple(crop), (0, 0, 512, 512)), ref)


def test_stability_equals_reference() -> None:
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(12, 40, 30, generator=g) * 3
    logits[0] = -10  # empty at both cuts: the reference gives NaN, ours 0 (filtered alike)
    for thr, off in ((0.0, 1.0), (0.5, 0.2)):
        ref = amg.calculate_stability_score(logits, thr, off)
        ours = _stability(logits, thr, off)
        torch.testing.assert_close(ours[1:], ref[1:])
        assert ours[0] == 0 and torch.isnan(ref[0])


def _random_boxes(n: int, seed: int, quantize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    wh = torch.rand(n, 2, generator=g) * 40
    if quantize:  # integer boxes, degenerate ones and tied scores, as in mask generation
        xy, wh = (xy / 2).round(), (wh / 2).round()
    boxes = torch.cat((xy, xy + wh), dim=1)
    scores = torch.rand(n, generator=g)
    if quantize:
        scores = (scores * 4).round() / 4
    return boxes, scores


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("quantize", [False, True])
@pytest.mark.parametrize("threshold", [0.3, 0.7])
def test_nms_equals_greedy(seed: int, quantize: bool, threshold: float) -> None:
    boxes, scores = _random_boxes(300, seed, quantize)  # more than one block of 256
    ours = nms(boxes, scores, threshold)
    ref = naive_nms(boxes, scores, threshold)
    assert ours.tolist() == ref.tolist()
    assert 0 < len(ours) < len(boxes)


def test_nms_groups_and_edge_cases() -> None:
    boxes, scores = _random_boxes(300, 7, quantize=True)
    groups = torch.arange(300) % 3
    kept = set(nms(boxes, scores, 0.5, groups=groups).tolist())
    expected = set()
    for k in range(3):
        idx = torch.nonzero(groups == k).flatten()
        expected |= {int(idx[i]) for i in naive_nms(boxes[idx], scores[idx], 0.5)}
    assert kept == expected
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0
    same = torch.tensor([[0.0, 0, 10, 10]] * 3)
    assert nms(same, torch.tensor([0.2, 0.9, 0.9]), 0.99).tolist() == [1]  # IoU 1 > 0.99; ties keep input order
    assert nms(same, torch.ones(3), 1.0).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="scores for"):
        nms(same, torch.ones(2), 0.5)
