"""Tracking everything from the command line (``track --auto``, ``--seed-labels``) and
through :func:`track_all_file`: exports with their lineage, seed ids as track ids, the
session file, and the errors that stop a run before the model loads.

The model is the miniature random SAM 2 (``--model-factory``); its masks mean nothing,
so these tests check the plumbing: what is written, where, with which ids and lineage.
"""

from __future__ import annotations

import json
from pathlib import Path

import geff
import numpy as np
import pytest
import tifffile

from napari_sam2.cli import main
from napari_sam2.io.ctc import read_ctc_tracks, validate_ctc
from napari_sam2.io.prompts import PromptSet
from napari_sam2.sample_data import cells_timelapse
from napari_sam2.tracking import TrackOptions, UsageError
from napari_sam2.tracking.track_all import TrackAllSettings
from napari_sam2.tracking.track_all_file import TrackAllReport, track_all_file

from .miniature import miniature_model

FACTORY = "tests.miniature:miniature_model"
# no hole filling: the miniature model's 16x16 masks would lose their background to it
FAST = ["--model-factory", FACTORY, "--threads", "1", "-q", "--fill-holes", "0"]
# random weights score low: keep every automatic mask, on a coarse grid
LOOSE = ["--pred-iou-thresh", "0", "--stability-thresh", "0", "--points-per-side", "8"]
FRAMES, SIZE = 6, 96

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def clip():
    return cells_timelapse(num_frames=FRAMES, size=SIZE, seed=1)


def _seeds() -> np.ndarray:
    """Ids 4 (two separate squares: one object in two parts) and 7."""
    seeds = np.zeros((SIZE, SIZE), np.uint16)
    seeds[10:40, 10:40] = 4
    seeds[60:90, 60:90] = 4
    seeds[60:90, 5:35] = 7
    return seeds


@pytest.fixture
def data(tmp_path, clip):
    """The stack and a seed labels image, alone in a folder (no prompt file next to them)."""
    folder = tmp_path / "data"
    folder.mkdir()
    stack = folder / "cells.tif"
    tifffile.imwrite(stack, clip.image, metadata={"axes": "TYX"})
    seeds = folder / "seeds.tif"
    tifffile.imwrite(seeds, _seeds())
    return stack, seeds


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def _ctc_consistent(folder: Path) -> dict[int, int]:
    """res_track.txt against the masks (validate_ctc), and its parents."""
    tracks = validate_ctc(folder)
    masks = np.stack([tifffile.imread(folder / f"mask{t:03d}.tif") for t in range(FRAMES)])
    for track in tracks:
        present = [t for t in range(FRAMES) if (masks[t] == track.label).any()]
        assert present == list(range(track.begin, track.end + 1)), track
    return {t.label: t.parent for t in tracks if t.parent}


# ----------------------------------------------------------------------------- outputs
@pytest.mark.parametrize("fmt", ["ctc", "geff", "tiff"])
def test_auto_writes_each_format(data, tmp_path, capsys, fmt):
    stack, _ = data
    out = tmp_path / {"ctc": "cells_RES", "geff": "cells.geff", "tiff": "cells.labels.tif"}[fmt]
    code, printed, _ = _run(capsys, "track", str(stack), "--auto", "-o", str(out), "-f", fmt,
                            "--redetect-every", "2", *LOOSE, *FAST)
    assert code == 0
    assert f"wrote {out}" in printed
    summary = printed.splitlines()[1]
    for word in ("tracks", "seeded", "new objects", "divisions", "ended", "seeding", "per detection"):
        assert word in summary, summary
    if fmt == "ctc":
        _ctc_consistent(out)
        assert len(read_ctc_tracks(out)) >= 1, "automatic seeding found an object to track"
    elif fmt == "geff":
        graph, metadata = geff.read(str(out))
        assert graph.number_of_nodes() >= 1 and metadata.track_node_props["tracklet"] == "track_id"
    else:
        labels = tifffile.imread(out)
        assert labels.shape == (FRAMES, SIZE, SIZE) and labels.dtype == np.uint16 and labels.any()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["data", out.name]), "no temporary files left"


def test_seed_label_ids_are_the_track_ids(data, tmp_path, capsys):
    stack, seeds = data
    out = tmp_path / "seeded_RES"
    code, printed, _ = _run(capsys, "track", str(stack), "--seed-labels", str(seeds), "-o", str(out), "-f", "ctc",
                            "--no-divisions", *FAST)
    assert code == 0 and "2 tracks: 2 seeded, 0 new objects, 0 divisions" in printed
    first = tifffile.imread(out / "mask000.tif")
    assert set(np.unique(first)) == {0, 4, 7}
    for obj in (4, 7):  # the seed frame's masks are the seeds (at the model's mask resolution)
        seed = _seeds() == obj
        overlap = (first == obj) & seed
        assert overlap.sum() / ((first == obj) | seed).sum() > 0.7
    assert {t.label for t in read_ctc_tracks(out)} == {4, 7}


def test_a_seed_stack_gives_the_plane_of_the_first_tracked_frame(data, tmp_path, capsys):
    stack, _ = data
    planes = np.zeros((FRAMES, SIZE, SIZE), np.uint16)
    for t in range(FRAMES):
        planes[t, 20:50, 20:50] = 10 + t  # the id says which plane was used
    seeds = tmp_path / "all_frames.tif"
    tifffile.imwrite(seeds, planes, metadata={"axes": "TYX"})
    out = tmp_path / "range.tif"
    code, _, _ = _run(capsys, "track", str(stack), "--seed-labels", str(seeds), "-o", str(out), "--frames", "2:5", *FAST)
    assert code == 0
    labels = tifffile.imread(out)
    assert labels.shape == (3, SIZE, SIZE) and set(np.unique(labels[0])) == {0, 12}


def test_divisions_reach_res_track_geff_and_the_session_file(data, tmp_path):
    """A seed in two parts splits at once; with a tiny division share the random masks
    keep splitting, which gives a lineage with many divisions to export."""
    stack, seeds = data
    settings = TrackAllSettings(division_share=0.02, min_size=5)
    common = dict(seed_labels=seeds, model=miniature_model(), options=TrackOptions(fill_holes=0), settings=settings)
    report = track_all_file(stack, tmp_path / "div_RES", format="ctc", session_out=tmp_path / "run.json", **common)
    assert isinstance(report, TrackAllReport) and report.divisions >= 2 and report.seeded == 2
    parents = report.lineage.parents()
    assert parents[min(parents)] == 4, "the two-part seed divided first"
    assert report.tracks == len(report.lineage) == 2 + 2 * report.divisions
    assert _ctc_consistent(tmp_path / "div_RES") == parents
    assert set(report.object_frames) == set(report.lineage.ids) and min(report.object_frames.values()) >= 1

    again = track_all_file(stack, tmp_path / "div.geff", **common)
    assert again.lineage == report.lineage, "the same run gives the same lineage"
    graph, _ = geff.read(str(tmp_path / "div.geff"))
    label_of = {n: int(d["label"]) for n, d in graph.nodes(data=True)}
    division_edges = {(label_of[a], label_of[b]) for (a, b), d in graph.edges.items() if d["division"]}
    assert division_edges == {(mother, child) for child, mother in parents.items()}

    saved = PromptSet.from_json(tmp_path / "run.json")
    assert saved.lineage == report.lineage
    assert sorted(obj.id for obj in saved.objects) == report.lineage.ids  # a mask where each track began
    assert saved.frames_shape == (FRAMES, SIZE, SIZE) and saved.image_size == 64
    assert saved.model is None, "a factory's model has no name to replay"


class _TwoCellsFromFrame1:
    """A stand-in detector: one cell on frame 0, two halves of the frame from frame 1 on
    (inside the random model's mask, which covers most of the frame), so detection on
    frame 2 finds a division that track-all dates back to frame 1 and relabels there."""

    def __init__(self, model, frames, settings, contrast_limits=None, precision="auto") -> None:
        self.seconds, self.calls = 0.0, 0

    def __call__(self, frame: int) -> np.ndarray:
        plane = np.zeros((SIZE, SIZE), np.uint32)
        if frame == 0:
            plane[5:25, 5:25] = 1
        else:
            plane[: SIZE // 2 - 1], plane[SIZE // 2 + 1 :] = 1, 2
        return plane


def test_frames_track_all_revises_are_read_back_and_counted_again(data, tmp_path, monkeypatch):
    from napari_sam2.tracking import track_all

    monkeypatch.setattr(track_all, "AutomaticDetector", _TwoCellsFromFrame1)
    stack, _ = data
    settings = TrackAllSettings(redetect_every=2, min_size=5, max_area_share=1.0)
    report = track_all_file(stack, tmp_path / "dated_RES", format="ctc", auto=True, model=miniature_model(),
                            options=TrackOptions(fill_holes=0), settings=settings)
    assert report.divisions >= 1 and report.lineage[1].last == 0, "the division is dated back to frame 1"
    assert _ctc_consistent(tmp_path / "dated_RES") == report.lineage.parents()
    masks = [tifffile.imread(tmp_path / "dated_RES" / f"mask{t:03d}.tif") for t in range(FRAMES)]
    counted = {obj: sum(int((m == obj).any()) for m in masks) for obj in report.lineage.ids}
    assert report.object_frames == counted


def test_session_file_replays_from_the_command_line(data, tmp_path, capsys):
    stack, seeds = data
    first, session = tmp_path / "first.tif", tmp_path / "session.json"
    code, printed, _ = _run(capsys, "track", str(stack), "--seed-labels", str(seeds), "-o", str(first),
                            "--save-session", str(session), "--no-divisions", *FAST)
    assert code == 0 and f"session: {session}" in printed
    document = json.loads(session.read_text())
    assert [t["id"] for t in document["lineage"]] == [4, 7]
    replay = tmp_path / "replay.tif"
    code, printed, _ = _run(capsys, "track", str(stack), "-p", str(session), "-o", str(replay), "--no-divisions", *FAST)
    assert code == 0 and "2 tracks" in printed, "a session with a lineage is replayed as track-all"
    np.testing.assert_array_equal(tifffile.imread(replay), tifffile.imread(first))


def test_prompts_are_tracked_along_and_unused_ones_are_named(data, tmp_path, capsys):
    stack, seeds = data
    prompts = PromptSet()
    prompts.set_prompt(20, 3, box=[40, 40, 80, 80])
    prompts.set_prompt(21, 0, points=[(50.0, 50.0)], labels=[1])  # before the range: not used
    path = tmp_path / "extra.json"
    prompts.to_json(path)
    out = tmp_path / "mixed_RES"
    argv = ["track", str(stack), "--seed-labels", str(seeds), "-p", str(path), "-o", str(out), "-f", "ctc",
            "--frames", "1:", "--no-divisions", *FAST]
    code, _, err = _run(capsys, *argv)
    assert code == 0
    assert "warning: prompts on frames 0 are not used: track-all runs forward from frame 1" in err
    labels = {t.label for t in read_ctc_tracks(out)}
    assert {4, 7} <= labels and 21 not in labels
    assert not (tifffile.imread(out / "mask000.tif") == 20).any(), "object 20 starts on its prompted frame"


# ----------------------------------------------------------------------------- errors
@pytest.fixture
def no_model(monkeypatch):
    """Errors must come before the model is built."""

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded for a request that cannot run")

    monkeypatch.setattr("tests.miniature.miniature_model", never)


def test_seed_errors_exit_2_and_write_nothing(data, tmp_path, capsys, no_model):
    stack, seeds = data
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, np.ones((50, 60), np.uint16))
    wrong_t = tmp_path / "four_planes.tif"
    tifffile.imwrite(wrong_t, np.ones((4, SIZE, SIZE), np.uint16), metadata={"axes": "TYX"})
    empty = tmp_path / "empty.tif"
    tifffile.imwrite(empty, np.zeros((SIZE, SIZE), np.uint16))
    clash = tmp_path / "clash.json"
    prompts = PromptSet()
    prompts.set_prompt(7, 0, points=[(5.0, 5.0)], labels=[1])
    prompts.to_json(clash)
    lonely = tmp_path / "lonely.tif"
    lonely.write_bytes(stack.read_bytes())
    before = sorted(p.name for p in tmp_path.iterdir())
    out = str(tmp_path / "out_RES")
    cases = [
        (["--seed-labels", str(small)], ["small.tif", "50x60 pixels", f"{SIZE}x{SIZE}"]),
        (["--seed-labels", str(wrong_t)], ["four_planes.tif holds 4 label planes", f"{FRAMES} frames"]),
        (["--seed-labels", str(empty)], ["empty.tif", "empty"]),
        (["--seed-labels", str(seeds), "-p", str(clash)], ["seed labels 7 are also object ids of the prompt file"]),
        (["--auto", "--direction", "backward"], ["runs forward", "--direction"]),
        (["-p", str(clash), "--min-size", "5"], ["--min-size only applies when tracking everything"]),
        (["-p", str(clash), "--save-session", str(tmp_path / "s.json")], ["--save-session only applies"]),
        (["--auto", "--min-size", "-3"], ["--min-size", "0 or more"]),
        (["--auto", "--pred-iou-thresh", "2"], ["--pred-iou-thresh", "between 0 and 1"]),
    ]
    for extra, needles in cases:
        code, _, err = _run(capsys, "track", str(stack), "-o", out, "-f", "ctc", *extra, *FAST)
        assert code == 2, (extra, err)
        for needle in needles:
            assert needle in err, (needle, err)
    # no seeds, no --auto and no prompt file: nothing to track
    code, _, err = _run(capsys, "track", str(lonely), "-o", out, "-f", "ctc", *FAST)
    assert code == 2 and "nothing to track" in err and "--auto" in err and "--seed-labels" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "nothing was written"


def test_library_errors_name_the_option_not_a_flag(data, tmp_path, no_model):
    stack, seeds = data
    with pytest.raises(UsageError, match="nothing to track") as err:
        track_all_file(stack, tmp_path / "o.tif")
    assert "--" not in str(err.value)
    with pytest.raises(UsageError, match="the seeds are on frame 3, but the range starts on frame 1") as err:
        track_all_file(stack, tmp_path / "o.tif", seed_labels=seeds, seed_frame=3, options=TrackOptions(frames=(1, None)))
    assert err.value.option == "seed-frame"
    existing = tmp_path / "s.json"
    existing.write_text("{}")
    with pytest.raises(FileExistsError, match="already exists"):
        track_all_file(stack, tmp_path / "o.tif", auto=True, session_out=existing)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "s.json"]
