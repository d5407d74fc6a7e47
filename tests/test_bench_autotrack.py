"""The track-all quality benchmark runs end to end and writes what it promises.

The oracle mode (perfect masks) must score high: its losses are track-all's own. The
model mode is run with a miniature random model, only to see the real path through
(numbers meaningless); a checkout without the demo model gets the loader's one-line
message and exit code 2, not a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import bench_autotrack  # noqa: E402

from napari_sam2.training.demo import HELDOUT_SEED  # noqa: E402

from .miniature import miniature_model  # noqa: E402

SMALL = ["--clips", "1", "--frames", "12", "--size", "128"]


def _read(folder: Path, name: str) -> dict:
    return json.loads((folder / f"{name}.json").read_text())


def test_oracle_run_scores_high_and_writes_every_field(tmp_path, capsys):
    assert bench_autotrack.main(["--oracle", *SMALL, "--results-dir", str(tmp_path)]) == 0
    data = _read(tmp_path, "autotrack_oracle")
    for key in ("command", "mode", "settings", "clip_params", "seeds", "seeds_skipped", "torch", "clips", "mean", "targets"):
        assert key in data, key
    assert data["mode"] == "oracle" and data["oracle"] is True and data["model"] is None
    assert data["command"].startswith("python benchmarks/bench_autotrack.py --oracle")
    assert data["settings"]["redetect_every"] == 5 and data["clip_params"] == {
        "frames": 12, "size": 128, "radius": 9.0, "density": 0.25, "division_rate": 0.15}
    assert len(data["seeds"]) == 1 and data["seeds"][0] >= HELDOUT_SEED + 500
    (row,) = data["clips"]
    assert row["seed"] == data["seeds"][0]
    assert row["divisions_true"] >= 2 and row["entering_true"] >= 1 and row["leaving_true"] >= 1
    for key in ("DET", "SEG", "TRA", "division_precision", "seconds_seeding", "seconds_per_detection",
                "seconds_per_tracked_frame", "tracks"):
        assert key in row, key
    mean = data["mean"]
    assert mean["DET"] >= 0.9 and mean["TRA"] >= 0.9 and mean["SEG"] >= 0.9, mean
    assert set(data["targets"]) == {"DET", "TRA", "SEG", "division_recall"}
    for verdict in data["targets"].values():
        assert set(verdict) == {"target", "value", "pass"} and verdict["pass"] == (verdict["value"] >= verdict["target"])
    shown = capsys.readouterr().out
    assert "bookkeeping ceiling" in shown and "mean" in shown and "DET" in shown


def test_clips_without_divisions_or_cells_entering_and_leaving_are_skipped():
    params = bench_autotrack.ClipParams(frames=12, size=128)
    chosen, skipped = bench_autotrack.pick_clips(2, params, min_divisions=3)
    assert len(chosen) == 2
    for seed, clip, counts in chosen:
        assert counts.divisions >= 3 and counts.entering >= 1 and counts.leaving >= 1
        assert counts == bench_autotrack.truth_counts(clip)
    used = [seed for seed, _, _ in chosen]
    assert sorted(used + skipped) == list(range(bench_autotrack.FIRST_SEED, max(used) + 1))


def test_a_checkpoint_file_runs_the_real_path(tmp_path, one_torch_thread):
    from napari_sam2.model.saved import save_checkpoint

    path = save_checkpoint(miniature_model(), tmp_path / "mini.pt")
    results = tmp_path / "results"
    argv = ["--model", str(path), "--seeding", "labels", "--clips", "1", "--frames", "8", "--size", "96",
            "--min-divisions", "0", "--points-per-side", "2", "--redetect-every", "3", "--results-dir", str(results)]
    assert bench_autotrack.main(argv) == 0
    data = _read(results, "autotrack_mini_labels")
    assert data["model"] == str(path) and data["seeding"] == "labels" and data["oracle"] is False
    assert data["settings"]["points_per_side"] == 2 and data["settings"]["redetect_every"] == 3
    (row,) = data["clips"]
    assert row["seeded"] >= 1 and row["frames_tracked"] == 8 and row["detections"] >= 1
    assert 0.0 <= data["mean"]["DET"] <= 1.0


def test_a_missing_demo_model_exits_with_the_loaders_message(tmp_path, monkeypatch, capsys):
    from napari_sam2.model import bundled

    monkeypatch.setattr(bundled, "_WEIGHTS", tmp_path / "nothing-here")
    assert bench_autotrack.main([*SMALL, "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the bundled model 'demo' is missing from this installation")
    assert "python -m napari_sam2.training.demo" in err and "\n" not in err
    assert not list(tmp_path.glob("*.json"))


def test_detection_calibration_runs_on_training_seeds_only(tmp_path, capsys):
    import calibrate_detection

    argv = ["--seeds", "4242", "--size", "96", "--grid", "0.8:0.9", "0.5:0.8", "--results-dir", str(tmp_path)]
    assert calibrate_detection.main(argv) == 0
    data = json.loads((tmp_path / "detection_thresholds_demo.json").read_text())
    assert [(r["pred_iou_thresh"], r["stability_score_thresh"]) for r in data["rows"]] == [(0.8, 0.9), (0.5, 0.8)]
    assert all(0 <= r["cells_found"] <= r["cells"] for r in data["rows"]) and data["rows"][0]["cells"] > 0
    assert data["model_thresholds"] == {"pred_iou_thresh": 0.5, "stability_score_thresh": 0.8}
    assert calibrate_detection.main(["--seeds", "1000000", "--results-dir", str(tmp_path / "no")]) == 2
    assert "held out" in capsys.readouterr().err and not (tmp_path / "no").exists()
