"""AutomaticMaskGenerator against the reference ``SAM2AutomaticMaskGenerator`` on the same
random weights and pixels: the same masks, in the same order, with the same scores.

Random weights give masks of speckle that span the whole frame, which NMS collapses to
one. Two changes to the random weights make the masks follow image regions instead
(both sides load the same file): Hiera's absolute position embeddings are zeroed (flat
regions give flat features) and the mask decoder's 2x2 transposed convolutions get one
weight for all four sub-pixels (no checkerboard). The scene has separated coloured
disks; each mask covers some of them.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from reference import build_reference, save_checkpoint
from reference_amg import reference_generator, scipy_components

from napari_sam2.model import AutomaticMaskGenerator, AutomaticMasks, build_sam2


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def scene(size: int = 512) -> np.ndarray:
    """Seven flat, separated disks of saturated colours on black, uint8 RGB."""
    yy, xx = np.mgrid[:size, :size]
    img = np.zeros((size, size, 3), np.uint8)
    disks = [
        (0.2, 0.25, 0.08, (255, 40, 40)), (0.25, 0.75, 0.1, (40, 255, 40)), (0.55, 0.5, 0.06, (40, 40, 255)),
        (0.8, 0.2, 0.09, (255, 255, 40)), (0.78, 0.78, 0.07, (255, 40, 255)), (0.5, 0.12, 0.04, (40, 255, 255)),
        (0.1, 0.5, 0.03, (200, 200, 200)),
    ]
    for cy, cx, r, colour in disks:
        img[(yy - cy * size) ** 2 + (xx - cx * size) ** 2 < (r * size) ** 2] = colour
    return img


def coherent_reference(image_size: int):
    ref = build_reference("sam2.1_hiera_tiny", image_size=image_size, video=False)
    with torch.no_grad():
        ref.image_encoder.trunk.pos_embed.zero_()
        ref.image_encoder.trunk.pos_embed_window.zero_()
        for conv in (ref.sam_mask_decoder.output_upscaling[0], ref.sam_mask_decoder.output_upscaling[3]):
            conv.weight.copy_(conv.weight[:, :, :1, :1].expand_as(conv.weight).clone())
    return ref


def models(tmp_path, image_size: int):
    ref = coherent_reference(image_size)
    ckpt = save_checkpoint(ref, os.path.join(tmp_path, "model.pt"))
    return ref, build_sam2("sam2.1_hiera_tiny", checkpoint=ckpt, image_size=image_size, device="cpu")


def assert_same_masks(ref_anns: list[dict], ours: AutomaticMasks, min_count: int) -> None:
    counts = f"reference {len(ref_anns)}, ours {len(ours)}"
    assert len(ref_anns) >= min_count, f"the reference found too few masks for a real test: {counts}"
    assert len(ours) == len(ref_anns), counts
    ious = []
    for i, ann in enumerate(ref_anns):
        ref_mask, our_mask = ann["segmentation"], ours.masks[i]
        iou = (ref_mask & our_mask).sum() / max(1, (ref_mask | our_mask).sum())
        ious.append(iou)
        assert iou >= 0.99, f"mask {i}: IoU {iou:.4f}"
        x, y, w, h = ann["bbox"]
        r0, c0, r1, c1 = ours.boxes[i].tolist()
        assert abs(c0 - x) + abs(r0 - y) + abs(c1 - c0 - w) + abs(r1 - r0 - h) <= 2, f"mask {i}: box"
        assert ours.predicted_iou[i] == pytest.approx(ann["predicted_iou"], abs=1e-4)
        assert ours.stability_score[i] == pytest.approx(ann["stability_score"], abs=1e-3)
        (px, py), = ann["point_coords"]
        np.testing.assert_allclose(ours.points[i], (py, px), atol=1e-3)
        cx, cy, cw, ch = ann["crop_box"]
        assert ours.crop_boxes[i].tolist() == [cy, cx, cy + ch, cx + cw]
        assert ours.areas[i] == pytest.approx(ann["area"], abs=0.01 * ann["area"] + 2)
    print(f"\n  {counts}; IoU min {min(ious):.5f} mean {np.mean(ious):.5f}; areas {sorted(ours.areas.tolist())}")


def test_parity_full_frame(tmp_path) -> None:
    """8x8 clicks on a 512 px frame at 512 px: the IoU and stability filters and box NMS."""
    ref, ours = models(tmp_path, 512)
    settings = dict(
        points_per_side=6, points_per_batch=24, pred_iou_thresh=0.47, stability_score_thresh=0.05,
        stability_score_offset=0.02, box_nms_thresh=0.9,
    )
    img = scene(512)
    with torch.inference_mode():
        ref_anns = reference_generator(ref, **settings).generate(img)
    result = AutomaticMaskGenerator(ours, **settings).generate(img)
    assert_same_masks(ref_anns, result, min_count=4)


def test_parity_crops_and_region_cleanup(tmp_path, monkeypatch) -> None:
    """One crop layer (4 crops), hole and speck removal, a frame larger than the model input."""
    import sam2.utils.misc

    # the reference cleans masks with a CUDA kernel; an 8-connected scipy labelling stands in
    monkeypatch.setattr(sam2.utils.misc, "get_connected_components", scipy_components)
    ref, ours = models(tmp_path, 256)
    settings = dict(
        points_per_side=4, points_per_batch=16, pred_iou_thresh=0.3, stability_score_thresh=0.03,
        stability_score_offset=0.02, box_nms_thresh=0.7, crop_n_layers=1, min_mask_region_area=40,
    )
    img = scene(512)
    with torch.inference_mode():
        ref_anns = reference_generator(ref, **settings).generate(img)
    result = AutomaticMaskGenerator(ours, **settings).generate(img)
    assert_same_masks(ref_anns, result, min_count=6)
    assert len({tuple(c) for c in result.crop_boxes.tolist()}) >= 3, "masks from several crops"
