"""Batches on a real dask.distributed LocalCluster of two worker processes.

The model is the miniature random SAM 2, built by each worker from the
``tests.miniature:miniature_model`` factory spec; the engine is never mocked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_sam2.batch import (
    BatchJob,
    TrackAllPlan,
    format_summary,
    input_stem,
    plan_batch,
    read_manifest,
    run_batch,
    run_job,
    seed_labels_in,
    session_path,
)
from napari_sam2.cli import main
from napari_sam2.io.prompts import PromptSet
from napari_sam2.sample_data import cells_timelapse
from napari_sam2.io.ctc import read_ctc_tracks, validate_ctc
from napari_sam2.tracking import ModelChoice, TrackOptions, UsageError, track_file
from napari_sam2.tracking.track_all import TrackAllSettings

from .miniature import miniature_model

FACTORY = "tests.miniature:miniature_model"
MODEL = ModelChoice(factory=FACTORY, torch_threads=1)
# The miniature model predicts 16x16 masks, where the default hole filling (8 pixels)
# would swallow the background; these tests check the labels without it.
OPTIONS = TrackOptions(fill_holes=0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0") as cluster:
        yield cluster


@pytest.fixture
def inputs(tmp_path):
    """Two good stacks and one truncated one (found when opened), each with a prompt file next to it."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name, seed, frames in (("a", 1, 8), ("b", 2, 6), ("c", 3, 8)):
        clip = cells_timelapse(num_frames=frames, size=64, seed=seed)
        tifffile.imwrite(folder / f"{name}.tif", clip.image, metadata={"axes": "TYX"})
        prompts = PromptSet()
        prompts.set_prompt(2, 1, points=[clip.centers[2][1]], labels=[1])
        prompts.set_prompt(5, 0, box=[5, 5, 30, 30])
        prompts.to_json(folder / f"{name}.prompts.json")
    data = (folder / "c.tif").read_bytes()
    (folder / "c.tif").write_bytes(data[: len(data) // 2])  # cut off half-way: frames 4.. are gone
    return folder


def _single_process(folder: Path, name: str, tmp_path: Path) -> np.ndarray:
    out = tmp_path / "single" / f"{name}.tif"
    track_file(folder / f"{name}.tif", folder / f"{name}.prompts.json", out, model=miniature_model(), options=OPTIONS)
    return tifffile.imread(out)


def test_run_batch_on_two_worker_processes(cluster, inputs, tmp_path):
    from distributed import Client

    jobs = plan_batch([str(inputs / "*.tif")], tmp_path / "out")
    assert [Path(j.input).name for j in jobs] == ["a.tif", "b.tif", "c.tif"]
    seen = []
    with Client(cluster) as client:
        results = run_batch(jobs, model=MODEL, client=client, on_result=seen.append, options=OPTIONS)
        assert len(seen) == 3
        assert [r.status for r in results] == ["done", "done", "failed"]
        # what the workers wrote equals a run in this process
        for name, result in zip("ab", results):
            labels = tifffile.imread(result.job.output)
            np.testing.assert_array_equal(labels, _single_process(inputs, name, tmp_path))
            assert set(np.unique(labels)) == {0, 2, 5} and result.frames == labels.shape[0]
        broken = results[2]
        assert "is truncated" in broken.error and "c.tif" in broken.error
        assert not Path(broken.job.output).exists()
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.labels.tif", "b.labels.tif"]

        # again on the same workers, the factory given as a callable this time (the same
        # function, so the same cached model): each worker process builds it once
        callable_model = ModelChoice(factory=miniature_model, torch_threads=1)
        assert callable_model.key() == MODEL.key()
        again = run_batch(jobs[:2], model=callable_model, client=client, overwrite=True, options=OPTIONS)
        assert all(r.status == "done" for r in again)
        loads: dict[int, int] = {}
        for r in results + again:
            loads[r.pid] = loads.get(r.pid, 0) + int(r.loaded_model)
        assert all(loads[r.pid] == 1 for r in results[:2] + again), loads  # built once, then reused
        assert len({r.pid for r in results + again}) <= 2 and all(r.worker for r in results)

        # torch threads: each host's cores shared by the task slots on it (dask starts workers with one)
        from napari_sam2.batch import _threads_per_worker

        addresses = set(client.scheduler_info(n_workers=-1)["workers"])
        assert _threads_per_worker(client) == {a: max(1, (os.cpu_count() or 1) // 2) for a in addresses}

        # resuming skips finished inputs and retries the failed one
        resumed = run_batch(jobs, model=MODEL, client=client, skip_existing=True, options=OPTIONS)
        assert [r.status for r in resumed] == ["skipped", "skipped", "failed"]
    summary = format_summary(results)
    assert "c.tif" in summary and "is truncated" in summary and "3 inputs: 2 done, 1 failed" in summary


def test_batch_command_starts_its_own_local_cluster(inputs, tmp_path, capsys):
    out = tmp_path / "results"
    report = tmp_path / "report.json"
    argv = ["batch", str(inputs / "*.tif"), "-o", str(out), "--model-factory", FACTORY, "--fill-holes", "0",
            "--workers", "2", "--threads-per-worker", "1", "--report", str(report), "-q"]
    assert main(argv) == 1  # one input failed
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert "3 inputs: 2 done, 1 failed" in captured.out and "is truncated" in captured.out
    rows = json.loads(report.read_text())
    assert [row["status"] for row in rows] == ["done", "done", "failed"]
    assert rows[2]["job"]["input"].endswith("c.tif") and "c.tif" in rows[2]["error"]
    assert {row["pid"] for row in rows} and all(row["worker"] for row in rows)
    assert tifffile.imread(out / "a.labels.tif").shape == (8, 64, 64)
    assert tifffile.imread(out / "b.labels.tif").shape == (6, 64, 64)
    assert sorted(p.name for p in out.iterdir()) == ["a.labels.tif", "b.labels.tif"]


def test_batch_command_on_an_existing_scheduler(cluster, inputs, tmp_path, capsys):
    (inputs / "c.tif").unlink()
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("input,prompts,output\nin/a.tif,in/a.prompts.json,first.coco.json\nin/b.tif,,\n")
    argv = ["batch", str(manifest), "-o", str(tmp_path / "res"), "-f", "coco", "--model-factory", FACTORY, "--fill-holes", "0",
            "--threads", "1", "--scheduler", cluster.scheduler_address, "-q"]
    assert main(argv) == 0
    assert "2 inputs: 2 done, 0 failed" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == ["b.coco.json", "first.coco.json"]
    document = json.loads((tmp_path / "res" / "first.coco.json").read_text())
    assert len(document["images"]) == 8 and {a["object_id"] for a in document["annotations"]} == {2, 5}
    # existing outputs: failures per input without --overwrite, skipped with --skip-existing
    assert main(argv) == 1
    assert "already exists" in capsys.readouterr().out
    assert main(argv + ["--skip-existing"]) == 0
    assert "2 skipped" in capsys.readouterr().out


# ----------------------------------------------------------------------------- planning
def test_plan_batch_prompts_outputs_and_manifests(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    for path in ("a.tif", "b.ome.tif", "sub/c.tif"):
        (data / path).write_bytes(b"")
    jobs = plan_batch([str(data / "**" / "*.tif")], tmp_path / "out", "ctc")
    assert [(Path(j.input).name, Path(j.prompts).name, Path(j.output).name) for j in jobs] == [
        ("a.tif", "a.prompts.json", "a_RES"),
        ("b.ome.tif", "b.prompts.json", "b_RES"),
        ("c.tif", "c.prompts.json", "c_RES"),
    ]
    assert Path(jobs[2].prompts).parent == data / "sub"
    one = plan_batch([str(data / "a.tif")], tmp_path / "out", "mattes", prompts=str(tmp_path / "all.json"))
    assert one == [BatchJob(str(data / "a.tif"), str(tmp_path / "all.json"), str(tmp_path / "out" / "a_mattes"))]
    templ = plan_batch([str(data / "a.tif")], tmp_path / "out", "coco", prompts=str(tmp_path / "p" / "{stem}.json"))
    assert templ[0].prompts == str(tmp_path / "p" / "a.json") and templ[0].output.endswith("a.coco.json")

    (tmp_path / "jobs.json").write_text(json.dumps(["data/a.tif", {"input": "data/sub/c.tif", "output": "/abs/c.tif"}]))
    (tmp_path / "jobs.txt").write_text("# inputs\ndata/b.ome.tif\n")
    rows = read_manifest(tmp_path / "jobs.json")
    assert rows[1] == {"input": str(tmp_path / "data/sub/c.tif"), "output": "/abs/c.tif"}
    jobs = plan_batch([str(tmp_path / "jobs.json"), str(tmp_path / "jobs.txt")], tmp_path / "out")
    assert [Path(j.output).name for j in jobs] == ["a.labels.tif", "c.tif", "b.labels.tif"]
    assert input_stem("x/movie.ome.tiff") == "movie" and input_stem("x/frames") == "frames"

    with pytest.raises(UsageError, match="would both be written to"):
        plan_batch([str(data / "a.tif"), str(data / "sub" / "c.tif"), str(data / "a.tif")], tmp_path / "out")
    with pytest.raises(UsageError, match="no inputs match"):
        plan_batch([str(data / "*.mp4")], tmp_path / "out")
    with pytest.raises(UsageError, match="--output-dir"):
        plan_batch([str(data / "a.tif")], None)
    (tmp_path / "bad.csv").write_text("path,prompts\nx.tif,y.json\n")
    with pytest.raises(UsageError, match="'input' column"):
        plan_batch([str(tmp_path / "bad.csv")], tmp_path / "out")
    (tmp_path / "bad.json").write_text(json.dumps([{"input": "a.tif", "speed": 3}]))
    with pytest.raises(UsageError, match="unknown field"):
        plan_batch([str(tmp_path / "bad.json")], tmp_path / "out")
    with pytest.raises(UsageError, match="looks like a TIFF"):
        (tmp_path / "c.json").write_text(json.dumps([{"input": "a.tif", "output": "a.tif"}]))
        plan_batch([str(tmp_path / "c.json")], tmp_path / "out", "coco")


def test_batch_usage_errors(tmp_path, capsys):
    assert main(["batch", str(tmp_path / "*.tif"), "-o", str(tmp_path), "-q"]) == 2
    assert "no inputs match" in capsys.readouterr().err
    assert main(["batch", "x.tif", "-o", str(tmp_path), "--overwrite", "--skip-existing"]) == 2
    assert main(["batch", "x.tif", "-o", str(tmp_path), "--scheduler", "tcp://h:1", "--workers", "2", "-q"]) == 2
    assert "do not apply with --scheduler" in capsys.readouterr().err


def test_run_job_reports_errors_instead_of_raising(tmp_path):
    job = BatchJob(str(tmp_path / "missing.tif"), str(tmp_path / "p.json"), str(tmp_path / "o.tif"))
    result = run_job(job, MODEL, TrackOptions(), "tiff")
    assert result.status == "failed" and "no such file or folder" in result.error and result.details is None
    assert not result.loaded_model and result.pid


# ----------------------------------------------------------------------------- tracking everything
def _seeded_inputs(tmp_path: Path) -> tuple[Path, Path]:
    """Stacks a (5 frames) and b (4 frames) and a folder of seed labels named like them
    (b's only by its stem, as .npy)."""
    folder, seeds = tmp_path / "in", tmp_path / "seeds"
    folder.mkdir()
    seeds.mkdir()
    for name, seed, frames in (("a", 1, 5), ("b", 2, 4)):
        clip = cells_timelapse(num_frames=frames, size=64, seed=seed)
        tifffile.imwrite(folder / f"{name}.tif", clip.image, metadata={"axes": "TYX"})
    plane = np.zeros((64, 64), np.uint16)
    plane[5:25, 5:25], plane[35:60, 30:60] = 3, 9
    tifffile.imwrite(seeds / "a.tif", plane)
    np.save(seeds / "b.npy", plane)
    return folder, seeds


def test_plan_batch_seed_labels(tmp_path):
    folder, seeds = _seeded_inputs(tmp_path)
    jobs = plan_batch([str(folder / "*.tif")], tmp_path / "out", "geff", track_all=True, seed_labels_dir=seeds)
    assert [(Path(j.output).name, j.prompts, Path(j.seed_labels).name) for j in jobs] == [
        ("a.geff", None, "a.tif"), ("b.geff", None, "b.npy"),  # no prompt files unless asked for
    ]
    assert seed_labels_in(seeds, folder / "c.tif") == seeds / "c.tif"  # none: its job names the missing file
    templ = plan_batch([str(folder / "a.tif")], tmp_path / "out", "ctc", prompts="{dir}/{stem}.json", track_all=True,
                       seed_labels=str(tmp_path / "m" / "{stem}_masks.tif"))
    assert templ[0].seed_labels == str(tmp_path / "m" / "a_masks.tif") and templ[0].prompts == str(folder / "a.json")
    auto = plan_batch([str(folder / "a.tif")], tmp_path / "out", track_all=True)
    assert auto[0].seed_labels is None and auto[0].prompts is None
    assert session_path(auto[0]) == tmp_path / "out" / "a.session.json"
    (tmp_path / "jobs.csv").write_text("input,seed_labels\nin/a.tif,seeds/b.npy\n")
    rows = plan_batch([str(tmp_path / "jobs.csv")], tmp_path / "out", track_all=True)
    assert rows[0].seed_labels == str(seeds / "b.npy")
    with pytest.raises(UsageError, match="for tracking everything"):
        plan_batch([str(tmp_path / "jobs.csv")], tmp_path / "out")
    with pytest.raises(UsageError, match="not both"):
        plan_batch([str(folder / "a.tif")], tmp_path / "out", track_all=True, seed_labels="x.tif", seed_labels_dir=seeds)


def test_run_job_tracks_everything_and_reports_bad_seeds(tmp_path):
    folder, seeds = _seeded_inputs(tmp_path)
    jobs = plan_batch([str(folder / "*.tif")], tmp_path / "out", "ctc", track_all=True, seed_labels_dir=seeds)
    plan = TrackAllPlan(settings=TrackAllSettings(divisions=False), save_sessions=True)
    result = run_job(jobs[0], MODEL, OPTIONS, "ctc", track_all=plan)
    assert result.status == "done" and result.summary.startswith("2 tracks: 2 seeded") and result.frames == 5
    assert set(result.objects) == {3, 9} and json.loads(json.dumps(result.to_dict()))["summary"] == result.summary
    assert {t.label for t in validate_ctc(result.job.output)} == {3, 9}
    assert PromptSet.from_json(session_path(jobs[0])).lineage.ids == [3, 9]
    np.save(seeds / "b.npy", np.zeros((32, 32), np.uint16))  # another size than b.tif's frames
    failed = run_job(jobs[1], MODEL, OPTIONS, "ctc", track_all=plan)
    assert failed.status == "failed" and "b.npy" in failed.error and "32x32 pixels" in failed.error
    assert not Path(jobs[1].output).exists() and not session_path(jobs[1]).exists()


def test_batch_command_tracks_everything(cluster, tmp_path, capsys):
    folder, seeds = _seeded_inputs(tmp_path)
    out = tmp_path / "res"
    argv = ["batch", str(folder / "*.tif"), "-o", str(out), "-f", "ctc", "--seed-labels-dir", str(seeds), "--auto",
            "--pred-iou-thresh", "0", "--stability-thresh", "0", "--points-per-side", "4", "--redetect-every", "2",
            "--save-sessions", "--model-factory", FACTORY, "--fill-holes", "0", "--threads", "1",
            "--scheduler", cluster.scheduler_address]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "2 inputs: 2 done, 0 failed" in captured.out
    assert "a.tif: " in captured.err and "tracks:" in captured.err and "per detection" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["a.session.json", "a_RES", "b.session.json", "b_RES"]
    for name in "ab":
        tracks = read_ctc_tracks(out / f"{name}_RES")
        assert {3, 9} <= {t.label for t in tracks}
        assert {t.id for t in PromptSet.from_json(out / f"{name}.session.json").lineage} <= {t.label for t in tracks}
    # a track-all flag without seeds or --auto is a usage error
    assert main(["batch", str(folder / "*.tif"), "-o", str(out), "--end-after", "2", "-q"]) == 2
    assert "--end-after only applies when tracking everything" in capsys.readouterr().err
