"""Clip sampler and training data: shapes, objects, direction, augmentation, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam2.model.frames import IMG_MEAN, IMG_STD, FrameSource
from napari_sam2.training import TrainingError, from_arrays, from_generator
from napari_sam2.training.clips import ClipSampler, ClipSettings

MEAN = torch.tensor(IMG_MEAN).view(3, 1, 1)
STD = torch.tensor(IMG_STD).view(3, 1, 1)


def moving_squares(num_frames: int = 12, size: int = 48, dtype=np.uint8):
    """Object k is a square of intensity 60 * k that moves one pixel per frame."""
    labels = np.zeros((num_frames, size, size), np.uint16)
    for t in range(num_frames):
        for k in (1, 2, 3, 4):
            r, c = 4 + 10 * (k - 1), 4 + t
            labels[t, r : r + 8, c : c + 8] = k
    scale = 60 if dtype == np.uint8 else 12000
    image = (labels.astype(np.float64) * scale).astype(dtype)
    return image, labels


def test_clips_have_the_requested_shape_and_visible_objects():
    image, labels = moving_squares()
    sampler = ClipSampler(from_arrays(image, labels), 64, ClipSettings(num_frames=5, max_objects=3))
    rng = np.random.default_rng(0)
    for _ in range(20):
        clip = sampler.sample(rng)
        assert clip.frames.shape == (5, 3, 64, 64) and clip.frames.dtype == torch.float32
        assert clip.masks.shape[0] == 5 and 1 <= clip.num_objects <= 3
        assert clip.masks.shape[2:] == (64, 64) and clip.masks.dtype == torch.bool
        assert bool(clip.masks[0].flatten(1).any(1).all())  # every object is visible on the first frame
        assert len(set(clip.obj_ids)) == clip.num_objects
        steps = np.diff(clip.frame_indices)
        assert set(steps.tolist()) in ({1}, {-1})


def test_reversal_proportion_and_determinism():
    image, labels = moving_squares()
    sampler = ClipSampler(from_arrays(image, labels), 32, ClipSettings(num_frames=4))
    rng = np.random.default_rng(1)
    directions = []
    for _ in range(400):
        idx = sampler.sample(rng).frame_indices
        directions.append(idx[1] < idx[0])
    assert np.mean(directions) == pytest.approx(0.5, abs=0.08)
    a = sampler.sample(np.random.default_rng(5))
    b = sampler.sample(np.random.default_rng(5))
    assert a.frame_indices == b.frame_indices and a.obj_ids == b.obj_ids
    assert torch.equal(a.frames, b.frames) and torch.equal(a.masks, b.masks)


def test_frames_are_normalised_exactly_like_inference():
    image, labels = moving_squares(dtype=np.uint16)
    data = from_arrays(image, labels)
    settings = ClipSettings(num_frames=3, flips=False, rotations=False, intensity=False, prob_reverse=0.0)
    clip = ClipSampler(data, 64, settings).sample(np.random.default_rng(0))
    source = FrameSource(image, image_size=64, prefetch=False)
    for i, t in enumerate(clip.frame_indices):
        assert torch.equal(clip.frames[i], source.model_input(t))


@pytest.mark.parametrize("seed", range(6))
def test_geometric_augmentation_keeps_pixels_and_masks_together(seed):
    image, labels = moving_squares()
    settings = ClipSettings(num_frames=4, intensity=False)
    clip = ClipSampler(from_arrays(image, labels), 48, settings).sample(np.random.default_rng(seed))
    unit = clip.frames * STD + MEAN  # back to [0, 1]
    for t in range(clip.num_frames):
        for b, obj in enumerate(clip.obj_ids):
            inside = unit[t, 0][clip.masks[t, b]]
            assert inside.numel() > 0
            assert torch.allclose(inside.median(), torch.tensor(60 * obj / 255.0), atol=0.02)


def test_intensity_augmentation_stays_in_range_for_16_bit():
    image, labels = moving_squares(dtype=np.uint16)
    sampler = ClipSampler(from_arrays(image, labels), 32, ClipSettings(num_frames=3))
    changed = 0
    plain = ClipSampler(from_arrays(image, labels), 32, ClipSettings(num_frames=3, intensity=False))
    for k in range(30):
        clip = sampler.sample(np.random.default_rng(k))
        ref = plain.sample(np.random.default_rng(k))
        unit = clip.frames * STD.unsqueeze(0) + MEAN.unsqueeze(0)
        assert torch.isfinite(clip.frames).all()
        assert unit.min() >= -1e-5 and unit.max() <= 1 + 1e-5
        changed += not torch.allclose(clip.frames, ref.frames)
    assert changed >= 15


def test_generator_data_draws_new_clips():
    from napari_sam2.sample_data.synthetic import cells_timelapse

    data = from_generator(lambda s: cells_timelapse(num_frames=6, size=48, seed=s))
    sampler = ClipSampler(data, 32, ClipSettings(num_frames=4))
    rng = np.random.default_rng(0)
    a, b = sampler.sample(rng), sampler.sample(rng)
    assert a.source != b.source


def test_bad_input_is_named():
    image, labels = moving_squares()
    with pytest.raises(TrainingError, match="labels have shape"):
        from_arrays(image, labels[:, :-1])
    with pytest.raises(TrainingError, match="no objects"):
        from_arrays(image, np.zeros_like(labels))
    with pytest.raises(TrainingError, match="integers"):
        from_arrays(image, labels.astype(np.float32))
    with pytest.raises(TrainingError, match="negative"):
        from_arrays(image, labels.astype(np.int16) - 1)
    with pytest.raises(TrainingError, match="contrast limits"):
        from_arrays(image.astype(np.uint16), labels, contrast_limits=(5, 5))


def test_single_annotated_image_is_a_one_frame_video():
    image, labels = moving_squares()
    data = from_arrays(image[0], labels[0])
    clip = ClipSampler(data, 32, ClipSettings()).sample(np.random.default_rng(0))
    assert clip.num_frames == 1


def test_clips_use_only_trusted_frames():
    image, labels = moving_squares(num_frames=12)
    data = from_arrays(image, labels, frames=[0, 1, 2, 7, 8, 9, 10, 11])
    sampler = ClipSampler(data, 32, ClipSettings(num_frames=4))
    rng = np.random.default_rng(0)
    lengths = set()
    for _ in range(100):
        idx = sampler.sample(rng).frame_indices
        assert set(idx) <= {0, 1, 2, 7, 8, 9, 10, 11}
        lengths.add(len(idx))
    assert lengths == {3, 4}  # the run 0..2 gives 3-frame clips
    with pytest.raises(TrainingError, match="out of range"):
        from_arrays(image, labels, frames=[12])
    empty = labels.copy()
    empty[3:] = 0
    with pytest.raises(TrainingError, match="on the chosen frames"):
        from_arrays(image, empty, frames=[5, 6])
