"""J, F and SEG on hand-made masks, and the evaluation protocol on the miniature model."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2.training.evaluation import interior_point
from napari_sam2.training.metrics import boundary_f, boundary_map, ctc_seg, jaccard


def square(size: int, r0: int, c0: int, side: int) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[r0 : r0 + side, c0 : c0 + side] = True
    return m


def test_jaccard_by_hand():
    a = square(10, 0, 0, 4)  # 16 px
    b = square(10, 2, 2, 4)  # 16 px, overlap 2x2 = 4
    assert jaccard(a, b) == pytest.approx(4 / 28)
    assert jaccard(a, a) == 1.0
    assert jaccard(np.zeros((5, 5)), np.zeros((5, 5))) == 1.0
    assert jaccard(a, np.zeros_like(a)) == 0.0


def test_boundary_map_of_a_square():
    m = square(6, 1, 1, 3)  # rows/cols 1..3
    b = boundary_map(m)
    # pixels that differ from a right, lower or lower-right neighbour: the square's right and
    # bottom edge (inside) and the pixels just above/left of it (outside); here, by hand:
    expected = np.zeros((6, 6), bool)
    expected[0, 0:4] = True  # above (differs from the pixel below / below-right)
    expected[0:4, 0] = True  # left
    expected[1:4, 3] = True  # right column of the square
    expected[3, 1:4] = True  # bottom row of the square
    assert np.array_equal(b, expected)


def test_boundary_f_tolerance():
    # 100 x 100 frame: tolerance ceil(0.008 * 141.4) = 2 px
    truth = square(100, 20, 20, 40)
    assert boundary_f(truth, truth) == 1.0
    assert boundary_f(np.roll(truth, 2, axis=1), truth) == pytest.approx(1.0)  # within tolerance
    shifted = boundary_f(np.roll(truth, 6, axis=1), truth)
    # shifted by 6: only the top and bottom edges still match (minus their moved ends)
    assert 0.3 < shifted < 0.7
    assert boundary_f(np.zeros_like(truth), truth) == 0.0
    assert boundary_f(truth, np.zeros_like(truth)) == 0.0
    assert boundary_f(np.zeros_like(truth), np.zeros_like(truth)) == 1.0


def test_boundary_f_by_hand_with_explicit_tolerance():
    # two vertical strips 1 px wide whose one-pixel boundaries are 3 px apart
    truth = np.zeros((20, 20), bool)
    truth[:, 5] = True
    pred = np.zeros((20, 20), bool)
    pred[:, 8] = True
    assert boundary_f(pred, truth, bound_th=1) == 0.0
    assert boundary_f(pred, truth, bound_th=3) == 1.0


def test_ctc_seg_matching_rule():
    truth = np.zeros((10, 10), np.uint16)
    truth[0:4, 0:4] = 1  # 16 px
    truth[6:10, 6:10] = 2  # 16 px
    pred = np.zeros_like(truth)
    pred[0:4, 0:3] = 7  # covers 12/16 > half of object 1: IoU 12/16
    pred[6:10, 6:8] = 9  # covers exactly half of object 2: no match -> 0
    assert ctc_seg([pred], [truth]) == pytest.approx((12 / 16 + 0.0) / 2)
    assert np.isnan(ctc_seg([pred], [np.zeros_like(truth)]))


def test_interior_point_is_the_deepest_pixel():
    m = np.zeros((20, 30), bool)
    m[2:5, 2:5] = True  # small square
    m[8:17, 10:25] = True  # big rectangle: 9 rows, centre row 12
    r, c = interior_point(m)
    assert r == 12 and 14 <= c <= 20
    with pytest.raises(ValueError):
        interior_point(np.zeros((4, 4), bool))


def test_evaluate_protocol_on_a_random_model(one_torch_thread):
    """The miniature model is random: scores are low but well-formed; per-object rows exist."""
    from miniature import miniature_model

    from napari_sam2.sample_data.synthetic import cells_timelapse
    from napari_sam2.training import evaluate, from_generator

    data = from_generator(lambda s: cells_timelapse(num_frames=4, size=48, seed=s))
    report = evaluate(miniature_model(64), data, seeds=[3])
    assert report.objects and all(0 <= o.J <= 1 and 0 <= o.F <= 1 for o in report.objects)
    assert report.JF == pytest.approx((report.J + report.F) / 2)
    assert "one positive click" in report.protocol
    assert "mean" in report.table()
    assert report.to_dict()["J&F"] == report.JF
