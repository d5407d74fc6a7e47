"""The bundled (generated) sample clips: small, deterministic, and showing what they claim."""

from __future__ import annotations

import numpy as np

from napari_sam2.sample_data import cells_sample, cells_timelapse, nuclei_sample, nuclei_zstack, rgb_clip, rgb_sample


def test_cells_are_16_bit_deterministic_and_noisy():
    a, b = cells_timelapse(), cells_timelapse()
    assert a.image.dtype == np.uint16 and a.image.shape == (48, 256, 256)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert a.image.max() > 1000 and a.image.min() < 200, "bright cells on a dark background"
    background = a.image[a.labels == 0].astype(float)
    assert background.std() > 5, "photon noise"
    assert not np.array_equal(cells_timelapse(seed=1).image, a.image)


def test_cells_move_divide_and_leave():
    clip = cells_timelapse()
    present = {k: [c is not None for c in v] for k, v in clip.centers.items()}
    # label 2 swims out of the field
    assert present[2][0] and not present[2][-1]
    assert not (clip.labels[-1] == 2).any()
    # label 1 divides two thirds of the way in: it ends, daughters 8 and 9 start
    assert clip.parents == {8: 1, 9: 1}
    assert clip.span(1) == (0, 31) and clip.span(8)[0] == clip.span(9)[0] == 32
    for daughter in (8, 9):
        r1, c1 = clip.centers[1][31]
        r8, c8 = clip.centers[daughter][32]
        assert np.hypot(r1 - r8, c1 - c8) < 30, "the daughters start where their mother was"
    # the others move
    for label in (3, 4, 5, 6, 7):
        (r0, c0), (r1, c1) = clip.centers[label][0], clip.centers[label][-1]
        assert np.hypot(r1 - r0, c1 - c0) > 3


def test_rgb_clip_and_zstack():
    clip = rgb_clip()
    assert clip.image.dtype == np.uint8 and clip.image.shape == (36, 240, 320, 3)
    assert set(np.unique(clip.labels)) == {0, 1, 2, 3}
    ball = clip.image[0][clip.labels[0] == 1].mean(axis=0)
    assert ball[0] > 150 and ball[2] < 100, "the ball is red"
    stack = nuclei_zstack()
    assert stack.image.dtype == np.uint16 and stack.image.shape == (32, 128, 128)
    assert (stack.labels[16] > 0).any() and not (stack.labels[0] > 0).any()


def test_sample_functions_return_napari_layer_data():
    for make, ndim, rgb in ((cells_sample, 3, False), (rgb_sample, 4, True), (nuclei_sample, 3, False)):
        ((data, meta, kind),) = make()
        assert kind == "image" and data.ndim == ndim
        assert meta["name"] and len(meta["axis_labels"]) == 3
        assert meta.get("rgb", False) == rgb
        if not rgb:
            lo, hi = meta["contrast_limits"]
            assert 0 <= lo < hi <= 65535
