"""The random generators behind training and scoring: deterministic, broad, and truthful."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2.sample_data import CLIP_KINDS, TRAINING_KINDS, SyntheticClip, random_clip
from napari_sam2.sample_data.clip import centers_from_labels

DTYPES = {"fluorescence": {np.uint16}, "nuclei": {np.uint16}, "rgb": {np.uint8}, "phase": {np.uint8, np.uint16}}


def _check_truth(clip: SyntheticClip) -> None:
    """Centers lie on their label, absent labels have none, parents end right before daughters."""
    assert clip.labels.shape == clip.image.shape[: clip.labels.ndim]
    present = set(int(v) for v in np.unique(clip.labels)) - {0}
    assert present == set(clip.centers)
    for label, track in clip.centers.items():
        assert len(track) == clip.num_frames
        for t, center in enumerate(track):
            on_frame = bool((clip.labels[t] == label).any())
            assert (center is not None) == on_frame
            if center is not None:
                r, c = (int(round(x)) for x in center)
                assert clip.labels[t, r, c] == label
    for daughter, mother in clip.parents.items():
        assert daughter != mother and mother in clip.centers
        assert clip.span(mother)[1] + 1 == clip.span(daughter)[0]
        assert sum(1 for m in clip.parents.values() if m == mother) <= 2


@pytest.mark.parametrize("kind", CLIP_KINDS)
def test_each_kind_is_deterministic_and_truthful(kind):
    a, b = random_clip(kind, 7), random_clip(kind, 7)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert a.centers == b.centers and a.parents == b.parents and a.kind == kind
    assert not np.array_equal(random_clip(kind, 8, size=a.labels.shape[1:3]).image, a.image)
    assert a.image.dtype.type in DTYPES[kind] and a.labels.dtype == np.uint16
    assert a.image.shape[0] == 8 and (a.image.ndim == 4) == (kind == "rgb")
    assert 96 <= a.labels.shape[1] <= 384 and 96 <= a.labels.shape[2] <= 384
    _check_truth(a)


@pytest.mark.parametrize("kind", CLIP_KINDS)
def test_a_stream_of_seeds_is_broad(kind):
    clips = [random_clip(kind, seed, num_frames=3) for seed in range(8)]
    shapes = {c.labels.shape[1:] for c in clips}
    assert len(shapes) == 8, "frame sizes and aspect ratios vary"
    for clip in clips:
        _check_truth(clip)
        assert clip.centers, "every clip has objects"
        background = clip.image[clip.labels == 0].astype(float)
        assert background.std() > 0.5, "noise and texture"
    # object sizes vary by more than 2x across seeds
    sizes = [np.mean([(c.labels[0] == k).sum() for k in c.centers if c.centers[k][0]]) for c in clips]
    assert max(sizes) > 2 * min(sizes)


def test_fixed_size_and_frame_count():
    clip = random_clip("fluorescence", 3, num_frames=5, size=(100, 150))
    assert clip.image.shape == (5, 100, 150)
    clip = random_clip("rgb", 3, num_frames=3, size=64)
    assert clip.image.shape == (3, 64, 64, 3)


def test_fluorescence_divisions_entering_and_leaving():
    clips = [random_clip("fluorescence", seed, num_frames=12, size=160) for seed in range(10)]
    assert sum(len(c.parents) for c in clips) >= 6, "divisions happen"
    enter = leave = 0
    for clip in clips:
        for label, (first, last) in ((k, clip.span(k)) for k in clip.centers):
            if label in clip.parents:
                continue
            enter += first > 0
            leave += last < clip.num_frames - 1 and label not in clip.parents.values()
    assert enter >= 2 and leave >= 2


def test_fluorescence_cells_touch_and_move_a_little():
    clip = random_clip("fluorescence", 2, num_frames=6, size=200)
    lab = clip.labels[0]
    touching = (lab[:, 1:] != lab[:, :-1]) & (lab[:, 1:] > 0) & (lab[:, :-1] > 0)
    assert touching.any(), "some cells touch"
    steps = []
    for track in clip.centers.values():
        pts = [p for p in track if p is not None]
        steps += [np.hypot(a[0] - b[0], a[1] - b[1]) for a, b in zip(pts, pts[1:])]
    assert np.median(steps) < 6, "time-lapse motion is small"


def test_rgb_occlusions_and_lookalikes():
    clips = [random_clip("rgb", seed, num_frames=8, size=160) for seed in range(10)]
    hidden = [max(max(v) for v in c.occluded.values()) for c in clips]
    assert sum(h > 0.3 for h in hidden) >= 3, "objects pass behind others"
    for clip in clips:
        assert set(clip.occluded) == set(clip.centers)
        assert all(0.0 <= x <= 1.0 for v in clip.occluded.values() for x in v)
    # look-alikes: two labels of nearly the same mean colour in some clip
    alike = 0
    for clip in clips:
        means = [clip.image[0][clip.labels[0] == k].mean(0) for k in clip.centers if clip.centers[k][0]]
        alike += any(np.abs(a - b).max() < 20 for i, a in enumerate(means) for b in means[i + 1 :])
    assert alike >= 2


def test_zstack_objects_appear_and_vanish_through_z():
    clip = random_clip("nuclei", 4, num_frames=16)
    spans = [clip.span(k) for k in clip.centers]
    assert any(first > 0 for first, _ in spans) and any(last < 15 for _, last in spans)
    label = max(clip.centers, key=lambda k: np.ptp(clip.span(k)))
    areas = [(clip.labels[z] == label).sum() for z in range(16)]
    peak = int(np.argmax(areas))
    assert areas[peak] > 0 and areas[clip.span(label)[0]] < areas[peak], "cross-sections grow then shrink"


def test_phase_contrast_is_dark_cells_on_bright():
    clip = random_clip("phase", 5)
    img = clip.image.astype(float)
    inside, outside = img[clip.labels > 0].mean(), img[clip.labels == 0].mean()
    assert inside < outside, "cells darker than the background"
    assert "phase" not in TRAINING_KINDS and set(TRAINING_KINDS) < set(CLIP_KINDS)


def test_centers_from_labels_falls_back_to_a_pixel_on_the_object():
    labels = np.zeros((1, 20, 20), np.uint16)
    labels[0, 2:18, 2:5] = 1  # a "C": its centroid is outside it
    labels[0, 2:5, 2:18] = 1
    labels[0, 15:18, 2:18] = 1
    (center,) = centers_from_labels(labels)[1]
    assert labels[0, int(round(center[0])), int(round(center[1]))] == 1


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown clip kind 'cells'.*fluorescence"):
        random_clip("cells", 0)
    with pytest.raises(ValueError, match="num_frames"):
        random_clip("rgb", 0, num_frames=0)
    with pytest.raises(ValueError, match="16x16"):
        random_clip("phase", 0, size=(8, 100))
    with pytest.raises(ValueError, match="seed"):
        random_clip("nuclei", -1)
