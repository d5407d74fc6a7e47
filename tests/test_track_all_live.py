"""Track-all from the viewer's layers: seeds, prompts, frames it would replace, the run."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_sam2.io.prompts import PromptSet
from napari_sam2.tracking.axes import TrackGeometry
from napari_sam2.tracking.errors import UsageError
from napari_sam2.tracking.lineage_view import SlicePlanes
from napari_sam2.tracking.track_all import TrackAllSettings
from napari_sam2.tracking.track_all_live import (
    drop_covered,
    frames_to_replace,
    keep_locked,
    plan_track_all,
    run_track_all,
    seeds_from_layer,
)

GEOMETRY = TrackGeometry((5, 16, 16), 0)


def _output() -> np.ndarray:
    plane = np.zeros((16, 16), np.uint16)
    plane[1:5, 1:5] = 1  # an object the user clicked
    plane[10:14, 10:14] = 6  # a label from elsewhere (a file, a painted seed)
    return plane


def _prompts(frame: int = 0) -> PromptSet:
    prompts = PromptSet()
    prompts.set_prompt(1, frame, points=[(3, 3)], labels=[1])
    return prompts


def test_seeds_from_2d_3d_and_nd_layers():
    stack = np.arange(5 * 16 * 16).reshape(5, 16, 16)
    assert np.array_equal(seeds_from_layer(stack, GEOMETRY, 3), stack[3])
    assert np.array_equal(seeds_from_layer(stack[2], GEOMETRY, 3), stack[2])
    geometry = TrackGeometry((2, 5, 16, 16), 1, ((0, 1),))
    nd = np.arange(2 * 5 * 16 * 16).reshape(2, 5, 16, 16)
    assert np.array_equal(seeds_from_layer(nd, geometry, 4), nd[1, 4])
    assert np.array_equal(seeds_from_layer(stack, geometry, 4), stack[4]), "a (T, H, W) layer of the slice"
    with pytest.raises(UsageError, match="need one 16x16 plane"):
        seeds_from_layer(np.zeros((3, 8, 8)), GEOMETRY, 0)
    seeds = seeds_from_layer(stack, GEOMETRY, 1)
    seeds[:] = 0
    assert stack[1].any(), "the seeds are a copy"


def test_drop_covered_removes_seeds_that_are_the_users_objects():
    seeds = np.zeros((16, 16), np.uint16)
    seeds[1:5, 1:5] = 3  # the clicked object again
    seeds[10:14, 10:14] = 4
    kept = drop_covered(seeds, _output() == 1, 0.3)
    assert set(np.unique(kept)) == {0, 4}


def test_plan_carries_prompted_objects_and_uses_the_output_as_seeds():
    plan = plan_track_all(GEOMETRY, None, None, 2, 4, output=_output(), seeds=_output(), seeds_are_output=True,
                          prompts=_prompts(0), settings=TrackAllSettings())
    assert set(np.unique(plan.seeds)) == {0, 6}, "the prompted object is not a seed too"
    masks = {p.frame: p.mask for _, p in plan.prompts.iter_prompts()}
    assert set(masks) == {0, 2} and np.array_equal(masks[2], _output() == 1), "carried on from its mask"
    assert plan.allowed[2] == {1, 6} and plan.allowed[0] == {1}
    assert plan.total == 3 and not plan.automatic


def test_plan_with_foreign_seeds_checks_clashes():
    seeds = np.zeros((16, 16), np.uint16)
    seeds[1:5, 1:5] = 1  # covers the clicked object: dropped, no clash
    seeds[6:10, 6:10] = 2
    plan = plan_track_all(GEOMETRY, None, None, 0, 4, output=_output(), seeds=seeds, prompts=_prompts(0))
    assert set(np.unique(plan.seeds)) == {0, 2}
    seeds[11:15, 1:5] = 1  # a label 1 elsewhere: a clash with object 1
    seeds[1:5, 1:5] = 0
    with pytest.raises(UsageError, match="seed labels 1 are also ids of objects you prompted"):
        plan_track_all(GEOMETRY, None, None, 0, 4, output=_output(), seeds=seeds, prompts=_prompts(0))
    with pytest.raises(UsageError, match="empty on frame 0"):
        plan_track_all(GEOMETRY, None, None, 0, 4, output=_output(), seeds=np.zeros((16, 16), np.uint8))
    with pytest.raises(UsageError, match="not within"):
        plan_track_all(GEOMETRY, None, None, 3, 9, output=_output(), seeds=None)


def test_automatic_plan():
    plan = plan_track_all(GEOMETRY, None, None, 0, 4, output=np.zeros((16, 16), np.uint16), seeds=None)
    assert plan.automatic and plan.seeds is None and plan.prompts is None and plan.carried is None


def test_frames_to_replace_and_keep_locked():
    labels = np.zeros((5, 16, 16), np.uint16)
    labels[1] = _output()
    labels[3, 0, 0] = 1
    planes = SlicePlanes(labels, GEOMETRY)
    assert frames_to_replace(planes, 0, 4) == [1, 3]
    assert frames_to_replace(planes, 0, 4, {1: {1, 6}, 3: {1}}) == []
    assert frames_to_replace(planes, 2, 4, {1: {1, 6}}) == [3]
    proposal = np.zeros((16, 16), np.uint16)
    proposal[0:8, 0:8] = 1
    proposal[12:16, 12:16] = 2
    written = keep_locked(_output(), proposal, [1])
    assert np.array_equal(written == 1, _output() == 1), "painted pixels stay as painted"
    assert (written == 2).sum() == 16 and not (written == 6).any()


def test_run_reports_frames_and_revisions_and_cancels(one_torch_thread):
    from gui_support import tiny_model

    from napari_sam2.sample_data import cells_timelapse

    clip = cells_timelapse(num_frames=5, size=64, seed=2)
    geometry = TrackGeometry(clip.image.shape, 0)
    seeds = clip.labels[1].astype(np.uint16)
    plan = plan_track_all(geometry, clip.image, None, 1, 4, output=np.zeros((64, 64), np.uint16), seeds=seeds,
                          settings=TrackAllSettings(redetect_every=0, min_size=4))
    reports: list[tuple] = []
    result = run_track_all(plan, tiny_model(), reports.append)
    frames = [r[1] for r in reports if r[0] == "frame"]
    assert sorted(set(frames)) == [1, 2, 3, 4]
    first = next(r for r in reports if r[0] == "frame" and r[1] == 1)
    assert set(np.unique(seeds)) - {0} <= set(np.unique(first[2])) | set(result.lineage.ids)
    assert first[3].shape[1] == 4 and set(first[3][:, 1]) == {1.0}
    assert any(r[0] == "stage" for r in reports)
    assert result.frames == (1, 4) and len(result.lineage) >= 1

    stop = threading.Event()
    reports.clear()

    def emit(item):
        reports.append(item)
        if item[0] == "frame":
            stop.set()

    result = run_track_all(plan, tiny_model(), emit, cancel=stop.is_set)
    assert result.cancelled and 1 <= len({r[1] for r in reports if r[0] == "frame"}) < 4
