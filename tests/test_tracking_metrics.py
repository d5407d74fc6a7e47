"""CTC tracking measures (py-ctcmetrics) on synthetic clips with a known lineage."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2.sample_data import random_clip
from napari_sam2.training.tracking_metrics import TrackingScores, tracking_scores


@pytest.fixture(scope="module")
def clip():
    return random_clip("fluorescence", 3, num_frames=8)


def _spans(labels: np.ndarray) -> dict[int, tuple[int, int]]:
    spans: dict[int, tuple[int, int]] = {}
    for t, frame in enumerate(labels):
        for obj in np.unique(frame[frame > 0]).tolist():
            spans[obj] = (spans.get(obj, (t, t))[0], t)
    return spans


def _free_tracks(clip) -> list[int]:
    """Tracks on every frame that take no part in a division."""
    involved = set(clip.parents) | set(clip.parents.values())
    full = (0, len(clip.labels) - 1)
    return [obj for obj, span in sorted(_spans(clip.labels).items()) if span == full and obj not in involved]


def test_perfect_tracking_scores_one(clip) -> None:
    scores = tracking_scores(clip.labels, clip.parents, clip.labels, clip.parents)
    assert scores.divisions_true >= 5
    assert (scores.det, scores.seg, scores.tra) == (1.0, 1.0, 1.0)
    assert scores.division_recall == scores.division_precision == 1.0
    assert scores.divisions_missed == 0 and scores.as_dict()["division_recall"] == 1.0


def test_missed_division_costs_tra_and_recall(clip) -> None:
    mothers: dict[int, list[int]] = {}
    for child, mother in clip.parents.items():
        mothers.setdefault(mother, []).append(child)
    mother, (kept, other) = next(
        (m, sorted(ds)) for m, ds in sorted(mothers.items())
        if len(ds) == 2 and not set(ds) & set(clip.parents.values()) and m not in clip.parents
    )
    labels = clip.labels.copy()
    labels[labels == kept] = mother  # the mother goes on as one daughter; the other is new
    lineage = {c: m for c, m in clip.parents.items() if c not in (kept, other)}
    scores = tracking_scores(labels, lineage, clip.labels, clip.parents)
    assert scores.det == 1.0 and scores.seg == 1.0
    assert scores.tra < 1.0
    assert scores.divisions_found == scores.divisions_true - 1 and scores.divisions_false == 0
    assert scores.division_recall < 1.0 and scores.division_precision == 1.0


def test_swapped_ids_cost_tra_only(clip) -> None:
    a, b = _free_tracks(clip)[:2]
    labels = clip.labels.copy()
    later = labels[4:]
    was_a = later == a
    later[later == b] = a
    later[was_a] = b
    scores = tracking_scores(labels, clip.parents, clip.labels, clip.parents)
    assert scores.det == 1.0 and scores.seg == 1.0
    assert scores.tra < 1.0
    assert scores.division_recall == 1.0 and scores.division_precision == 1.0


def test_dropped_object_costs_det_seg_and_tra(clip) -> None:
    gone = _free_tracks(clip)[0]
    labels = clip.labels.copy()
    labels[labels == gone] = 0
    scores = tracking_scores(labels, clip.parents, clip.labels, clip.parents)
    assert scores.det < 1.0 and scores.seg < 1.0 and scores.tra < 1.0
    assert scores.division_recall == 1.0


def test_bad_input(clip) -> None:
    with pytest.raises(ValueError, match="same shape"):
        tracking_scores(clip.labels[:-1], {}, clip.labels, clip.parents)
    with pytest.raises(ValueError, match="division_tolerance"):
        tracking_scores(clip.labels, {}, clip.labels, {}, division_tolerance=-1)
    assert TrackingScores(1, 1, 1, 0, 0, 0, 0).division_recall == 1.0


def test_an_empty_result_scores_zero_instead_of_failing():
    import numpy as np

    from napari_sam2.training.tracking_metrics import tracking_scores

    truth = np.zeros((3, 16, 16), np.uint16)
    truth[0, 2:6, 2:6] = 1
    truth[1:, 2:6, 2:6] = 2
    truth[1:, 9:13, 9:13] = 3
    scores = tracking_scores(np.zeros_like(truth), None, truth, {2: 1, 3: 1})
    assert (scores.det, scores.seg, scores.tra) == (0.0, 0.0, 0.0)
    assert scores.divisions_true == 1 and scores.divisions_found == 0
