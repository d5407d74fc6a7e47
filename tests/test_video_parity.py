"""VideoSession against the reference SAM2VideoPredictor on the same weights and pixels.

Every scripted interaction is played on both sides and every output is compared:
binarized masks must agree to IoU >= 0.99 and the logits to float32 noise. The reference
reads JPEG folders, so the frames are written as JPEGs and the decoded pixels are what
our session receives.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from reference import build_reference, save_checkpoint

from napari_sam2.model import VideoSession, build_sam2

ATOL = 1e-3  # observed differences are ~3e-7; logits span roughly +-30
SIZE = 512
NUM_FRAMES = 6


def make_frames(size: int, num: int, seed: int = 0) -> np.ndarray:
    """Two coloured disks drifting over a noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    frames = []
    for t in range(num):
        img = np.full((size, size, 3), 40.0)
        for k, (cy, cx, r, col) in enumerate(
            [(0.3, 0.3, 0.12, (255, 60, 60)), (0.65, 0.6, 0.15, (60, 200, 90))]
        ):
            cy2, cx2 = cy * size + 4 * t * (k + 1), cx * size + 3 * t
            img[(yy - cy2) ** 2 + (xx - cx2) ** 2 < (r * size) ** 2] = col
        img += rng.normal(0, 10, img.shape)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(frames)


class Pair:
    """The reference predictor and our model on one checkpoint and one JPEG folder."""

    def __init__(self, tmp, size: int, num: int, corrections_as_cond: bool = True, name: str = "sam2.1_hiera_tiny"):
        overrides = ["++model.add_all_frames_to_correct_as_cond=true"] if corrections_as_cond else []
        self.ref = build_reference(name, image_size=size, extra_overrides=overrides)
        ckpt = save_checkpoint(self.ref, os.path.join(tmp, "model.pt"))
        self.model = build_sam2(name, checkpoint=ckpt, image_size=size, device="cpu")
        self.size = size
        self.jpeg_dir = os.path.join(tmp, "jpg")
        os.makedirs(self.jpeg_dir)
        for t, frame in enumerate(make_frames(size, num)):
            Image.fromarray(frame).save(os.path.join(self.jpeg_dir, f"{t:05d}.jpg"), quality=95)
        self.frames = np.stack(
            [np.array(Image.open(os.path.join(self.jpeg_dir, f"{t:05d}.jpg")).convert("RGB")) for t in range(num)]
        )
        self.corrections_as_cond = corrections_as_cond

    def start(self):
        with torch.inference_mode():
            state = self.ref.init_state(self.jpeg_dir)
        # the reference skips hole filling without its compiled extension: compare with it off
        session = VideoSession(
            self.model, self.frames, fill_hole_area=0, corrections_as_prompts=self.corrections_as_cond
        )
        return state, session


def assert_same(ref_out, ours: dict, where: str) -> None:
    """Compare a reference (obj_ids, masks) result with ours, object by object."""
    ids, masks = ref_out
    assert set(ours) <= set(ids), where
    for i, obj_id in enumerate(ids):
        ref_logits = masks[i, 0].float().numpy()
        if obj_id not in ours:
            # the reference fills objects without a result on this frame with -1024
            assert (ref_logits <= -1000).all(), f"{where}: object {obj_id} missing"
            continue
        logits = ours[obj_id]
        assert logits.shape == ref_logits.shape, where
        a, b = ref_logits > 0, logits > 0
        union = (a | b).sum()
        iou = (a & b).sum() / union if union else 1.0
        diff = float(np.abs(ref_logits - logits).max())
        assert iou >= 0.99, f"{where}: object {obj_id} IoU {iou:.4f}"
        assert diff <= ATOL, f"{where}: object {obj_id} logits differ by {diff:.2e}"


def assert_nontrivial(ref_out) -> None:
    _, masks = ref_out
    assert (masks > 0).any() and (masks <= 0).any(), "reference output is trivial"


def ref_points(ref, state, frame, obj_id, points_rc, labels):
    xy = [[c, r] for r, c in points_rc]
    with torch.inference_mode():
        _, ids, masks = ref.add_new_points_or_box(state, frame, obj_id, points=xy, labels=labels)
    return ids, masks


def ref_box(ref, state, frame, obj_id, box_rc, points_rc=None, labels=None):
    r0, c0, r1, c1 = box_rc
    kwargs = {}
    if points_rc is not None:
        kwargs = {"points": [[c, r] for r, c in points_rc], "labels": labels}
    with torch.inference_mode():
        _, ids, masks = ref.add_new_points_or_box(state, frame, obj_id, box=[c0, r0, c1, r1], **kwargs)
    return ids, masks


def ref_propagate(ref, state, **kwargs):
    with torch.inference_mode():
        return {f: (ids, m) for f, ids, m in ref.propagate_in_video(state, **kwargs)}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return Pair(str(tmp_path_factory.mktemp("parity")), SIZE, NUM_FRAMES)


def compare_propagation(ref_results: dict, ours_iter, where: str) -> None:
    ours = dict(ours_iter)
    assert list(ours) == list(ref_results), f"{where}: frame order differs"
    for frame, ref_out in ref_results.items():
        assert_nontrivial(ref_out)
        assert_same(ref_out, ours[frame], f"{where} frame {frame}")


def test_clicks_box_and_forward_propagation(pair):
    state, session = pair.start()
    s = pair.size
    r = ref_points(pair.ref, state, 0, 1, [[0.3 * s, 0.3 * s]], [1])
    assert_nontrivial(r)
    assert_same(r, session.add_points(0, 1, [[0.3 * s, 0.3 * s]], [1]), "click")
    box = (0.5 * s, 0.45 * s, 0.8 * s, 0.75 * s)
    r = ref_box(pair.ref, state, 0, 2, box, [[0.65 * s, 0.6 * s]], [1])
    assert_same(r, session.add_box(0, 2, box, points=[[0.65 * s, 0.6 * s]], labels=[1]), "box+click")
    # a second click on the same frame replaces the first one (all clicks are passed)
    clicks = [[0.3 * s, 0.3 * s], [0.1 * s, 0.1 * s]]
    r = ref_points(pair.ref, state, 0, 1, clicks, [1, 0])
    assert_same(r, session.add_points(0, 1, clicks, [1, 0]), "second click")
    compare_propagation(ref_propagate(pair.ref, state), session.propagate(), "forward")


def test_mask_prompt_refinement_and_repropagation(pair):
    state, session = pair.start()
    s = pair.size
    yy, xx = np.mgrid[:s, :s]
    mask = (yy - 0.65 * s) ** 2 + (xx - 0.6 * s) ** 2 < (0.15 * s) ** 2
    with torch.inference_mode():
        _, ids, m = pair.ref.add_new_mask(state, 1, 3, mask)
    assert_same((ids, m), session.add_mask(1, 3, mask), "mask")
    compare_propagation(ref_propagate(pair.ref, state), session.propagate(), "after mask")
    # refinement on a propagated frame, then re-propagation from there
    clicks = [[0.7 * s, 0.65 * s], [0.2 * s, 0.2 * s]]
    r = ref_points(pair.ref, state, 4, 3, clicks, [1, 0])
    assert_same(r, session.add_points(4, 3, clicks, [1, 0]), "refinement")
    compare_propagation(
        ref_propagate(pair.ref, state, start_frame_idx=4), session.propagate(start=4), "re-propagation"
    )
    # and the whole video again from the first prompt
    compare_propagation(ref_propagate(pair.ref, state), session.propagate(), "full re-propagation")


def test_reverse_late_object_and_removal(pair):
    state, session = pair.start()
    s = pair.size
    last = NUM_FRAMES - 1
    p1 = [[0.3 * s + 4 * last, 0.3 * s + 3 * last]]
    assert_same(ref_points(pair.ref, state, last, 1, p1, [1]), session.add_points(last, 1, p1, [1]), "click")
    compare_propagation(
        ref_propagate(pair.ref, state, start_frame_idx=last, reverse=True),
        session.propagate(start=last, reverse=True),
        "reverse",
    )
    # an object added after propagation ran, prompted on the same frame
    p2 = [[0.65 * s + 8 * last, 0.6 * s + 3 * last]]
    assert_same(ref_points(pair.ref, state, last, 2, p2, [1]), session.add_points(last, 2, p2, [1]), "late object")
    compare_propagation(
        ref_propagate(pair.ref, state, start_frame_idx=last, reverse=True, max_frame_num_to_track=3),
        session.propagate(start=last, reverse=True, max_frames=3),
        "reverse with late object, range",
    )
    with torch.inference_mode():
        pair.ref.remove_object(state, 1)
    session.remove_object(1)
    assert session.obj_ids == [2]
    compare_propagation(
        ref_propagate(pair.ref, state, start_frame_idx=last, reverse=True),
        session.propagate(start=last, reverse=True),
        "after removal",
    )


def test_corrections_like_reference_default(tmp_path):
    """With corrections_as_prompts=False a correction behaves as in the reference default."""
    pair = Pair(str(tmp_path), SIZE, 4, corrections_as_cond=False)
    state, session = pair.start()
    s = pair.size
    p = [[0.3 * s, 0.3 * s]]
    assert_same(ref_points(pair.ref, state, 0, 1, p, [1]), session.add_points(0, 1, p, [1]), "click")
    compare_propagation(ref_propagate(pair.ref, state), session.propagate(), "forward")
    p2 = [[0.3 * s + 8, 0.3 * s + 6], [0.05 * s, 0.05 * s]]
    assert_same(ref_points(pair.ref, state, 2, 1, p2, [1, 0]), session.add_points(2, 1, p2, [1, 0]), "correction")
    compare_propagation(ref_propagate(pair.ref, state), session.propagate(), "re-propagation")


def test_end_to_end_at_full_resolution(tmp_path):
    """One case at the official 1024 input size, where the reference resize is a no-op."""
    pair = Pair(str(tmp_path), 1024, 3)
    state, session = pair.start()
    p = [[300.0, 310.0]]
    r = ref_points(pair.ref, state, 0, 1, p, [1])
    assert_nontrivial(r)
    assert_same(r, session.add_points(0, 1, p, [1]), "click 1024")
    compare_propagation(ref_propagate(pair.ref, state), session.propagate(), "forward 1024")


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    ["sam2_hiera_tiny", "sam2.1_hiera_small", "sam2.1_hiera_base_plus", "sam2.1_hiera_large",
     "sam2_hiera_small", "sam2_hiera_base_plus", "sam2_hiera_large"],
)
def test_other_variants_end_to_end(tmp_path, name):
    """Clicks, a box and propagation on every other variant (run with -m slow)."""
    pair = Pair(str(tmp_path), SIZE, 4, name=name)
    state, session = pair.start()
    s = pair.size
    p = [[0.3 * s, 0.3 * s]]
    r = ref_points(pair.ref, state, 0, 1, p, [1])
    assert_nontrivial(r)
    assert_same(r, session.add_points(0, 1, p, [1]), f"{name} click")
    box = (0.5 * s, 0.45 * s, 0.8 * s, 0.75 * s)
    assert_same(ref_box(pair.ref, state, 0, 2, box), session.add_box(0, 2, box), f"{name} box")
    compare_propagation(ref_propagate(pair.ref, state), session.propagate(), f"{name} forward")


def test_default_hole_filling_matches_the_reference_with_its_extension(pair, monkeypatch):
    """Our default fill_hole_area=8 against the reference's, its CUDA kernel replaced by scipy.

    The reference's video predictor is built with fill_hole_area=8 but skips it when its
    compiled extension is missing; with the extension's connected components supplied
    (8-connected, as the kernel computes them), both sides must agree everywhere,
    including the memories encoded from filled masks.
    """
    from sam2.utils import misc
    from test_postprocess import scipy_components

    assert pair.ref.fill_hole_area == 8
    monkeypatch.setattr(misc, "get_connected_components", scipy_components)
    with torch.inference_mode():
        state = pair.ref.init_state(pair.jpeg_dir)
    session = VideoSession(pair.model, pair.frames, corrections_as_prompts=pair.corrections_as_cond)
    assert session.fill_hole_area == 8
    s = pair.size
    clicks = [[0.3 * s, 0.3 * s], [0.32 * s, 0.36 * s], [0.1 * s, 0.1 * s]]
    r = ref_points(pair.ref, state, 0, 1, clicks, [1, 0, 0])
    assert_nontrivial(r)
    assert_same(r, session.add_points(0, 1, clicks, [1, 0, 0]), "click, holes filled")
    compare_propagation(ref_propagate(pair.ref, state), session.propagate(), "forward, holes filled")
    # the filling did something on this data (else the comparison proves nothing)
    with VideoSession(pair.model, pair.frames, fill_hole_area=0) as plain:
        raw = plain.add_points(0, 1, clicks, [1, 0, 0])[1]
    filled = session.add_points(0, 1, clicks, [1, 0, 0])[1]
    assert not np.array_equal(raw > 0, filled > 0)
