"""Track-all: seeds, new objects, ends, divisions and the lineage.

The bookkeeping is tested with stand-ins that follow the ground truth (so any error is
track-all's own), on synthetic time-lapses with a known lineage; the engine path is
tested with a miniature random model (batching, cancel, replay).
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2.io.lineage import Lineage, Track
from napari_sam2.io.prompts import PromptSet
from napari_sam2.sample_data.fluorescence import fluorescence_clip
from napari_sam2.tracking.errors import UsageError
from napari_sam2.tracking.track_all import (
    TrackAllSettings,
    non_overlapping,
    seed_plane,
    split_parts,
    track_all,
)
from napari_sam2.training.tracking_metrics import tracking_scores

from .miniature import miniature_model
from .oracle_tracking import OracleDetector, OracleSession


def _disk(shape, center, radius):
    rr, cc = np.ogrid[: shape[0], : shape[1]]
    return (rr - center[0]) ** 2 + (cc - center[1]) ** 2 <= radius**2


# ---------------------------------------------------------------- pieces


def test_seed_plane_checks_shape_content_and_ids():
    plane = np.zeros((20, 30), np.uint16)
    plane[2:6, 2:6] = 4
    out = seed_plane(plane, (20, 30))
    assert out.dtype == np.uint32 and set(np.unique(out)) == {0, 4}
    assert seed_plane(plane[None], (20, 30)).shape == (20, 30)
    with pytest.raises(UsageError, match=r"seed labels are 20x30 pixels, but the frames are 20x31"):
        seed_plane(plane, (20, 31))
    with pytest.raises(UsageError, match="empty"):
        seed_plane(np.zeros((20, 30), np.uint8), (20, 30))
    with pytest.raises(UsageError, match=r"seed labels 4 are also object ids of the prompt file"):
        seed_plane(plane, (20, 30), taken=[4, 9])
    with pytest.raises(UsageError, match="integer labels image"):
        seed_plane(plane.astype(np.float32), (20, 30))
    with pytest.raises(UsageError, match="negative"):
        seed_plane(-plane.astype(np.int16), (20, 30))
    with pytest.raises(UsageError, match=r"one \(H, W\) labels image"):
        seed_plane(np.zeros((2, 20, 30), np.uint8), (20, 30))


def test_settings_are_checked_with_the_option_named():
    with pytest.raises(UsageError, match="redetect-every must be an integer >= 0") as info:
        TrackAllSettings(redetect_every=-1)
    assert info.value.option == "redetect-every"
    with pytest.raises(UsageError, match="end-after"):
        TrackAllSettings(end_after=0)
    with pytest.raises(UsageError, match="max-covered must be between 0 and 1"):
        TrackAllSettings(max_covered=1.5)


def test_detection_thresholds_left_open_are_the_models_own():
    from napari_sam2.tracking.track_all import AUTOMATIC_THRESHOLDS, AutomaticDetector

    official = miniature_model()
    assert TrackAllSettings().for_model(official).pred_iou_thresh == AUTOMATIC_THRESHOLDS["pred_iou_thresh"] == 0.8
    assert TrackAllSettings().for_model(official).stability_score_thresh == 0.9
    calibrated = miniature_model()
    calibrated.automatic_thresholds = {"pred_iou_thresh": 0.5, "stability_score_thresh": 0.7}
    chosen = TrackAllSettings(stability_score_thresh=0.95).for_model(calibrated)
    assert (chosen.pred_iou_thresh, chosen.stability_score_thresh) == (0.5, 0.95), "what the user set wins"
    detector = AutomaticDetector(calibrated, np.zeros((1, 32, 32), np.uint8), TrackAllSettings())
    assert (detector.generator.pred_iou_thresh, detector.generator.stability_score_thresh) == (0.5, 0.7)
    assert detector.settings.pred_iou_thresh == 0.5, "the detector's settings are the ones it used"
    with pytest.raises(UsageError, match="pred-iou-thresh must be between 0 and 1"):
        TrackAllSettings(pred_iou_thresh=1.5)
    with pytest.raises(UsageError, match="max-covered must be between 0 and 1"):
        TrackAllSettings(max_covered=None)


def test_the_demo_model_finds_most_cells_with_its_own_thresholds(one_torch_thread):
    """On a training-seed frame (the calibration's): the official thresholds would keep
    almost none of the demo model's masks."""
    from napari_sam2.model import build_sam2
    from napari_sam2.tracking.track_all import AutomaticDetector

    model = build_sam2("demo", device="cpu")
    clip = fluorescence_clip(4242, 1, 224, radius=9.0, density=0.25)
    truth = clip.labels[0]
    found = AutomaticDetector(model, clip.image, TrackAllSettings())(0)
    cells = [c for c in np.unique(truth) if c]
    hits = 0
    for cell in cells:
        inside = found[truth == cell]
        values, counts = np.unique(inside[inside > 0], return_counts=True)
        hits += bool(len(counts)) and counts.max() * 2 > inside.size
    assert hits >= 0.5 * len(cells), f"{hits} of {len(cells)} cells found"


def test_non_overlapping_prefers_single_cells_over_a_cluster_and_drops_background():
    shape = (40, 40)
    a, b = _disk(shape, (10, 10), 5), _disk(shape, (10, 22), 5)
    cluster = a | b
    background = np.ones(shape, bool)
    tiny = _disk(shape, (30, 30), 1)
    plane = non_overlapping(np.stack([cluster, a, b, background, tiny]), min_size=10, max_area=800)
    assert plane.max() == 2  # a and b; the cluster's rest is too small, background and speck dropped
    assert set(np.unique(plane[a])) == {plane[10, 10]} and set(np.unique(plane[b])) == {plane[10, 22]}
    assert plane[10, 10] != plane[10, 22]
    assert not plane[30, 30]


def test_non_overlapping_with_scores_lets_the_most_confident_mask_claim_first():
    shape = (40, 40)
    cell = _disk(shape, (20, 20), 8)
    left, right = cell & (np.arange(40) < 20)[None, :], cell & (np.arange(40) >= 20)[None, :]
    plane = non_overlapping(np.stack([left, right, cell]), min_size=10, scores=[0.6, 0.6, 0.9])
    assert plane.max() == 1 and set(np.unique(plane[cell])) == {1}, "the cell, not its fragments"
    assert non_overlapping(np.stack([left, right, cell]), min_size=10).max() == 2, "without scores: small first"
    a, b = _disk(shape, (10, 10), 5), _disk(shape, (10, 22), 5)
    plane = non_overlapping(np.stack([a | b, a, b]), min_size=10, scores=[0.7, 0.9, 0.8])
    assert plane.max() == 2 and plane[10, 10] != plane[10, 22], "cells the model trusts more than their cluster"
    with pytest.raises(ValueError, match="one value per mask"):
        non_overlapping(np.stack([a, b]), min_size=10, scores=[0.5])


def test_split_parts_needs_two_real_parts():
    shape = (40, 40)
    two = _disk(shape, (10, 10), 5) | _disk(shape, (28, 28), 5)
    parts = split_parts(two, min_size=10, share=0.25)
    assert parts is not None and all(p.sum() > 50 for p in parts)
    speck = _disk(shape, (10, 10), 6) | _disk(shape, (30, 30), 1)
    assert split_parts(speck, min_size=10, share=0.25) is None
    assert split_parts(_disk(shape, (20, 20), 8), 10, 0.25) is None


# ---------------------------------------------------------------- bookkeeping, with the truth


@pytest.mark.parametrize("seed", [1_000_101, 1_000_102])
def test_truth_following_run_finds_every_division_with_its_mother(seed):
    clip = fluorescence_clip(seed, num_frames=24, size=160, radius=9, density=0.2, division_rate=0.2)
    truth_divisions = len(set(clip.parents.values()))
    assert truth_divisions >= 1
    session = OracleSession(clip.labels, clip.parents)
    out = np.zeros(clip.labels.shape, np.uint16)
    result = track_all(session, out, 0, len(out) - 1, detector=OracleDetector(clip.labels, 5),
                       settings=TrackAllSettings(min_size=5, redetect_every=5))
    result.lineage.check(len(out))
    scores = tracking_scores(out, result.lineage.parents(), clip.labels, clip.parents)
    assert scores.det >= 0.97 and scores.tra >= 0.97, scores
    # a daughter seen on one frame only, between two searches, may be missed
    assert scores.division_recall >= 0.8 and scores.division_precision == 1.0, scores
    assert result.divisions >= 0.8 * truth_divisions
    # every track's frames are the frames its label is on
    for track in result.lineage:
        on = [t for t in range(len(out)) if (out[t] == track.id).any()]
        assert on and on[0] == track.first and on[-1] == track.last, track


def _scene(num_frames=12, size=64):
    """Cell 1 stays; cell 2 leaves after frame 3; cell 3 enters on frame 6; cell 1 divides
    into 4 and 5 on frame 9 (apart at once)."""
    labels = np.zeros((num_frames, size, size), np.uint16)
    for t in range(num_frames):
        if t < 9:
            labels[t][_disk((size, size), (20, 20), 6)] = 1
        else:
            labels[t][_disk((size, size), (12, 20), 5)] = 4
            labels[t][_disk((size, size), (30, 20), 5)] = 5
        if t <= 3:
            labels[t][_disk((size, size), (50, 50), 5)] = 2
        if t >= 6:
            labels[t][_disk((size, size), (50, 12), 5)] = 3
    return labels, {4: 1, 5: 1}


def test_objects_end_enter_and_divide_with_seeds_from_labels():
    labels, parents = _scene()
    session = OracleSession(labels, parents)
    out = np.zeros(labels.shape, np.uint16)
    seeds = np.where(labels[0] == 1, 7, np.where(labels[0] == 2, 9, 0))  # the user's own ids
    result = track_all(session, out, 0, 11, seeds=seeds, detector=OracleDetector(labels),
                       settings=TrackAllSettings(redetect_every=3, min_size=10, end_after=2))
    lineage = result.lineage
    assert lineage[7] == Track(7, 0, 8) and lineage[9] == Track(9, 0, 3)
    assert result.seeded == 2 and result.ended >= 1 and result.divisions == 1 and result.added == 1
    daughters = lineage.children(7)
    assert len(daughters) == 2 and all(lineage[d].first == 9 and lineage[d].last == 11 for d in daughters)
    newcomer = [t for t in lineage if t.id not in (7, 9, *daughters)]
    assert len(newcomer) == 1 and newcomer[0].first == 6 and newcomer[0].parent == 0  # found on the detection frame
    assert set(np.unique(out[0])) == {0, 7, 9}
    assert not (out[4:] == 9).any()
    assert 9 not in session.obj_ids and 7 not in session.obj_ids  # ended and divided: no longer computed


def test_a_division_seen_late_is_dated_back_and_relabelled():
    labels, parents = _scene()
    session = OracleSession(labels, parents)
    out = np.zeros(labels.shape, np.uint16)
    # detection only every 6 frames: frames 6 and (none) -> the split shows on frame 9 by the mask
    result = track_all(session, out, 0, 11, detector=OracleDetector(labels),
                       settings=TrackAllSettings(redetect_every=6, min_size=10))
    mother = next(m for m, _ in result.lineage.divisions())
    assert result.lineage[mother].last == 8
    assert all(result.lineage[d].first == 9 for d in result.lineage.children(mother))


def test_prompts_collide_with_seeds_and_nothing_to_track_are_errors():
    labels, parents = _scene()
    prompts = PromptSet()
    prompts.set_prompt(1, 0, points=[(20, 20)], labels=[1])
    out = np.zeros(labels.shape, np.uint16)
    with pytest.raises(UsageError, match="also object ids of the prompt file"):
        track_all(OracleSession(labels, parents), out, 0, 11, seeds=labels[0], prompts=prompts)
    with pytest.raises(UsageError, match="nothing to track"):
        track_all(OracleSession(labels, parents), out, 0, 11)
    assert not out.any()


def test_prompted_objects_join_the_run_and_a_saved_session_replays_it():
    labels, parents = _scene()
    prompts = PromptSet()
    prompts.set_prompt(3, 6, points=[(50, 12)], labels=[1])  # the newcomer, clicked by the user
    out = np.zeros(labels.shape, np.uint16)
    seeds = np.where(labels[0] == 1, 1, 0)
    result = track_all(OracleSession(labels, parents), out, 0, 11, seeds=seeds, prompts=prompts,
                       settings=TrackAllSettings(redetect_every=0, min_size=10))
    assert result.lineage[3].first == 6 and (out[6] == 3).any() and not (out[5] == 3).any()
    assert result.divisions == 1  # the split is seen without a detector
    saved = result.session_prompts(prompts)
    assert saved.lineage == result.lineage
    again = PromptSet.from_dict(saved.to_dict())
    replay = np.zeros_like(out)
    repeat = track_all(OracleSession(labels, parents), replay, 0, 11, prompts=again,
                       settings=TrackAllSettings(redetect_every=0, divisions=False, min_size=10))
    np.testing.assert_array_equal(replay, out)
    assert repeat.lineage == result.lineage


# ---------------------------------------------------------------- the engine path


def test_two_hundred_seeds_propagate_in_one_batch_per_frame(monkeypatch):
    from napari_sam2.model.video import VideoSession

    model = miniature_model(64)
    frames = np.random.default_rng(0).integers(0, 255, (3, 150, 150), dtype=np.uint8)
    seeds = np.zeros((150, 150), np.uint16)
    for i in range(200):  # 200 objects of 3x3 pixels on a grid
        r, c = divmod(i, 14)
        seeds[r * 10 + 2 : r * 10 + 5, c * 10 + 2 : c * 10 + 5] = i + 1
    groups = []
    original = VideoSession._track_group

    def counted(self, frame, feats, tracks, plans):
        groups.append((frame, len(tracks)))
        return original(self, frame, feats, tracks, plans)

    monkeypatch.setattr(VideoSession, "_track_group", counted)
    out = np.zeros((3, 150, 150), np.uint16)
    with VideoSession(model, frames) as session:
        result = track_all(session, out, 0, 2, seeds=seeds, settings=TrackAllSettings(min_size=1, end_after=5, divisions=False))
    assert result.seeded == 200 and result.frames_tracked == 3
    assert groups == [(1, 200), (2, 200)]


def test_cancel_keeps_the_frames_done_and_automatic_seeding_runs_on_the_engine():
    from napari_sam2.model.video import VideoSession
    from napari_sam2.tracking.track_all import AutomaticDetector

    model = miniature_model(64)
    frames = np.random.default_rng(1).integers(0, 255, (6, 64, 64), dtype=np.uint8)
    out = np.zeros((6, 64, 64), np.uint16)
    settings = TrackAllSettings(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, min_size=4,
                                max_area_share=1.0, redetect_every=2)
    calls = []
    with VideoSession(model, frames) as session:
        detector = AutomaticDetector(model, session.frames, settings)
        plane = detector(0)
        assert plane.shape == (64, 64) and plane.max() >= 1
        result = track_all(session, out, 0, 5, detector=detector, settings=settings,
                           progress=lambda stage, done, total: calls.append((stage, done, total)),
                           cancel=lambda: len([c for c in calls if c[0] == "track"]) >= 3)
    assert result.cancelled and result.frames_tracked == 3
    assert out[:3].any() and not out[3:].any()
    assert result.seconds_detecting > 0 and result.detections >= 2
    assert ("seeding", 1, 1) in calls


def test_propagating_some_objects_leaves_the_others_alone():
    from napari_sam2.model.video import VideoSession

    model = miniature_model(64)
    frames = np.random.default_rng(2).integers(0, 255, (5, 64, 64), dtype=np.uint8)
    with VideoSession(model, frames) as session:
        session.add_points(0, 1, points=[[20, 20]], labels=[1])
        session.add_points(4, 2, points=[[40, 40]], labels=[1])
        back = list(session.propagate(start=4, reverse=True, max_frames=2, obj_ids=[2]))
        assert [f for f, _ in back] == [4, 3, 2] and all(set(out) == {2} for _, out in back)
        assert session.tracked_frames(1) == []  # object 1 was not computed on the way
        with pytest.raises(ValueError, match=r"no objects \[9\] to propagate"):
            session.propagate(obj_ids=[9])
        forward = dict(session.propagate(start=0))
        assert set(forward[3]) == {1, 2}


def test_automatic_seeds_skip_what_the_user_prompted_and_never_reuse_their_ids():
    labels, parents = _scene()
    prompts = PromptSet()
    prompts.set_prompt(1, 0, points=[(20, 20)], labels=[1])  # cell 1, clicked, id 1
    out = np.zeros(labels.shape, np.uint16)
    result = track_all(OracleSession(labels, parents), out, 0, 3, prompts=prompts, detector=OracleDetector(labels),
                       settings=TrackAllSettings(redetect_every=0, min_size=10))
    assert result.seeded == 1  # cell 2 only: cell 1 is the user's
    assert set(np.unique(out[0])) == {0, 1, 2}
    assert (out[0][labels[0] == 1] == 1).all() and (out[0][labels[0] == 2] == 2).all()


def test_an_intensity_image_given_as_seed_labels_is_refused():
    clip = fluorescence_clip(1_000_103, num_frames=1, size=64)
    with pytest.raises(UsageError, match="do not look like a labels image"):
        seed_plane(clip.image[0], (64, 64))
    seed_plane(clip.labels[0], (64, 64))  # the truth's labels are fine


def test_tiny_seed_objects_are_still_a_labels_image():
    plane = np.zeros((40, 40), np.uint16)
    for i in range(5):
        plane[i * 8 : i * 8 + 2, 3:5] = i + 1  # 2x2 cells
    assert seed_plane(plane, (40, 40)).max() == 5
