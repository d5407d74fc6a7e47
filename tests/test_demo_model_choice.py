"""The bundled ``demo`` model as a model choice, and the fallback to it without a network.

The demo model is the miniature random SAM 2 saved as the bundled file (fast), except in
one test that runs the package's own file when it is there. Downloads fail through a
patched download function (as without a network), or for real against a closed port.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_sam2.cli import main
from napari_sam2.io.prompts import PromptSet
from napari_sam2.model.checkpoint import DownloadError
from napari_sam2.sample_data import cells_timelapse
from napari_sam2.tracking.choice import ModelChoice
from napari_sam2.tracking.models import LoadedModel

from .miniature import go_offline, install_as_demo

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DEMO = "demo (bundled, trained on synthetic data)"
QUICK = ["--threads", "1", "--fill-holes", "0", "--device", "cpu"]


BUNDLED_FILE = Path(__file__).resolve().parents[1] / "napari_sam2/model/weights/demo.pt"


@pytest.fixture
def demo(tmp_path, monkeypatch):
    return install_as_demo(tmp_path / "bundled", monkeypatch)


@pytest.fixture
def offline(tmp_path, monkeypatch):
    return go_offline(tmp_path / "cache", monkeypatch)


@pytest.fixture
def data(tmp_path):
    clip = cells_timelapse(num_frames=4, size=64, seed=3)
    folder = tmp_path / "data"
    folder.mkdir()
    stack = folder / "cells.tif"
    tifffile.imwrite(stack, clip.image, metadata={"axes": "TYX"})
    prompts = PromptSet()
    prompts.set_prompt(1, 0, points=[clip.centers[1][0]], labels=[1])
    prompts.to_json(folder / "cells.prompts.json")
    return stack, folder / "cells.prompts.json"


def _run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ----------------------------------------------------------------------------- core
def test_failed_download_falls_back_to_the_demo_and_records_it(demo, offline):
    asked = ModelChoice(name="sam2.1_hiera_tiny", device="cpu", image_size=512, quantize=None)
    loaded = LoadedModel.load(asked)
    assert offline == ["sam2.1_hiera_tiny"]
    assert loaded.fell_back and loaded.requested == asked
    assert loaded.choice == replace(asked, name="demo", image_size=None)  # the demo at its own size
    assert loaded.model.image_size == 64 and loaded.model.device.type == "cpu"
    assert loaded.choice.describe() == DEMO and loaded.description.startswith("demo on cpu")
    assert loaded.warning.startswith("could not download sam2.1_hiera_tiny (ConnectionError: no network); "
                                     "using the bundled demo model instead (trained on synthetic data;")
    assert "sam2.1_hiera_tiny.pt in" in loaded.warning and "--" not in loaded.warning  # no flag names
    # the demo asked for by name is never a download and never a fallback
    direct = LoadedModel.load(ModelChoice(name="demo", device="cpu"))
    assert not direct.fell_back and not direct.warning and offline == ["sam2.1_hiera_tiny"]


def test_no_fallback_when_disabled_or_without_a_bundled_demo(demo, offline, tmp_path, monkeypatch):
    from napari_sam2.model import bundled

    with pytest.raises(DownloadError, match="could not download the sam2.1_hiera_tiny checkpoint"):
        LoadedModel.load(ModelChoice(name="sam2.1_hiera_tiny", device="cpu", fallback_to_demo=False))
    monkeypatch.setattr(bundled, "_WEIGHTS", tmp_path / "nothing-bundled")
    with pytest.raises(DownloadError):
        LoadedModel.load(ModelChoice(name="sam2.1_hiera_tiny", device="cpu"))


def test_local_files_never_fall_back(demo, offline, tmp_path):
    from napari_sam2.model.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="checkpoint file not found") as missing:
        LoadedModel.load(ModelChoice(name="sam2.1_hiera_tiny", checkpoint=str(tmp_path / "none.pt"), device="cpu"))
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable SAM 2 checkpoint") as unreadable:
        LoadedModel.load(ModelChoice(checkpoint=str(broken), device="cpu"))
    assert not isinstance(missing.value, DownloadError) and not isinstance(unreadable.value, DownloadError)
    assert offline == []


def test_a_cancelled_download_stays_cancelled(demo, tmp_path, monkeypatch):
    from napari_sam2.model import checkpoint

    class Stop(Exception):
        pass

    def cancelled(name, progress=True):  # as download_checkpoint: the callback's exception, unchanged
        progress(0, 100)
        raise AssertionError("the callback should have stopped the download")

    def cancel(done, total):
        raise Stop()

    monkeypatch.setenv(checkpoint.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(checkpoint, "download_checkpoint", cancelled)
    with pytest.raises(Stop):
        LoadedModel.load(ModelChoice(name="sam2.1_hiera_tiny", device="cpu"), cancel)


def test_a_real_failed_download_is_a_download_error(demo, tmp_path, monkeypatch):
    """No patched download: an unreachable address, as without a network."""
    from napari_sam2.model import checkpoint

    monkeypatch.setenv(checkpoint.CACHE_ENV, str(tmp_path / "cache"))
    entry = replace(checkpoint.OFFICIAL_CHECKPOINTS["sam2.1_hiera_tiny"], urls=("http://127.0.0.1:9/sam2.1_hiera_tiny.pt",))
    monkeypatch.setitem(checkpoint.OFFICIAL_CHECKPOINTS, "sam2.1_hiera_tiny", entry)
    with pytest.raises(DownloadError) as failed:
        checkpoint.download_checkpoint("sam2.1_hiera_tiny", progress=False)
    assert failed.value.name == "sam2.1_hiera_tiny" and failed.value.reasons and "Without a network" in str(failed.value)
    loaded = LoadedModel.load(ModelChoice(name="sam2.1_hiera_tiny", device="cpu"))
    assert loaded.choice.name == "demo" and "could not download sam2.1_hiera_tiny (" in loaded.warning


def test_prompt_files_may_name_the_demo(tmp_path):
    prompts = PromptSet(model="demo", image_size=256)
    prompts.set_prompt(1, 0, points=[(5.0, 5.0)], labels=[1])
    path = prompts.to_json(tmp_path / "p.json")
    assert PromptSet.from_json(path).model == "demo"
    assert ModelChoice().resolved(PromptSet.from_json(path)).name == "demo"


# ----------------------------------------------------------------------------- command line
def test_cli_falls_back_with_a_warning_and_exit_0(data, demo, offline, capsys, tmp_path):
    stack, prompts = data
    out = tmp_path / "o.tif"
    code, stdout, err = _run(capsys, "track", str(stack), "-p", str(prompts), "-o", str(out), "--model", "sam2.1_hiera_tiny", *QUICK)
    assert code == 0, err
    assert "warning: could not download sam2.1_hiera_tiny (ConnectionError: no network); using the bundled demo model " \
           "instead (trained on synthetic data; for real data install the official weights" in err
    assert f"with {DEMO} on cpu at 64 px" in err  # the note says which model ran
    assert out.is_file() and "wrote" in stdout and offline == ["sam2.1_hiera_tiny"]
    assert tifffile.imread(out).shape == (4, 64, 64)
    # the default model too, and the warning is shown even with --quiet
    out2 = tmp_path / "o2.tif"
    code, _, err = _run(capsys, "track", str(stack), "-p", str(prompts), "-o", str(out2), "-q", *QUICK)
    assert code == 0 and err.count("warning: could not download sam2.1_hiera_tiny") == 1 and out2.is_file()


def test_cli_no_demo_fallback_is_an_error(data, demo, offline, capsys, tmp_path):
    stack, prompts = data
    out = tmp_path / "o.tif"
    code, _, err = _run(capsys, "track", str(stack), "-p", str(prompts), "-o", str(out), "--no-demo-fallback", "-q", *QUICK)
    assert code == 1 and "could not download the sam2.1_hiera_tiny checkpoint" in err
    assert "warning:" not in err and not out.exists()


def test_cli_explicit_checkpoints_never_fall_back(data, demo, offline, capsys, tmp_path):
    stack, prompts = data
    out = tmp_path / "o.tif"
    base = ["track", str(stack), "-p", str(prompts), "-o", str(out), "-q", *QUICK]
    code, _, err = _run(capsys, *base, "--checkpoint", str(tmp_path / "none.pt"))
    assert code == 1 and "checkpoint file not found" in err and "warning:" not in err
    (tmp_path / "broken.pt").write_bytes(b"\x00" * 64)
    code, _, err = _run(capsys, *base, "--checkpoint", str(tmp_path / "broken.pt"), "--model", "sam2.1_hiera_tiny")
    assert code == 1 and "not a readable SAM 2 checkpoint" in err and "warning:" not in err
    assert offline == [] and not out.exists()


def test_cli_model_demo_needs_no_download(data, demo, offline, capsys, tmp_path):
    stack, prompts = data
    out = tmp_path / "o.tif"
    code, _, err = _run(capsys, "track", str(stack), "-p", str(prompts), "-o", str(out), "--model", "demo", *QUICK)
    assert code == 0 and out.is_file(), err
    assert offline == [] and "warning:" not in err and f"with {DEMO} on cpu" in err
    code, _, err = _run(capsys, "track", str(stack), "-p", str(prompts), "-o", str(tmp_path / "x.tif"), "--model", "demo",
                        "--checkpoint", str(demo), *QUICK)
    assert code == 2 and "--model demo is the bundled model" in err and "--checkpoint" in err


def test_cli_lists_the_demo_model(demo, capsys):
    for command in ("track", "batch"):
        code, stdout, _ = _run(capsys, command, "--help")
        text = " ".join(stdout.split())  # argparse wraps help lines
        assert code == 0 and "sam2.1_hiera_tiny" in text and DEMO in text and "--no-demo-fallback" in text
    code, stdout, _ = _run(capsys, "models")
    assert code == 0 and any(line.startswith("demo ") and "bundled" in line for line in stdout.splitlines())
    code, stdout, _ = _run(capsys, "models", "--json")
    rows = {row["name"]: row for row in json.loads(stdout)["models"]}
    assert rows["demo"]["bundled"] and rows["demo"]["cached"] and rows["demo"]["path"] == str(demo)
    assert not rows["sam2.1_hiera_tiny"]["bundled"]
    code, _, err = _run(capsys, "download", "demo")
    assert code == 2 and "bundled" in err


def test_cli_runs_the_package_demo_model(tmp_path, offline, capsys):
    """The package's own bundled file, one short run at its own 256 px; where this
    checkout has no trained file yet, the one clear error that says how to rebuild it."""
    image = np.zeros((2, 64, 64), np.uint16)
    image[:, 20:40, 24:44] = 3000
    stack = tmp_path / "two.tif"
    tifffile.imwrite(stack, image, metadata={"axes": "TYX"})
    prompts = PromptSet()
    prompts.set_prompt(1, 0, points=[(30.0, 34.0)], labels=[1])
    prompts.to_json(tmp_path / "two.prompts.json")
    out = tmp_path / "two.labels.tif"
    code, _, err = _run(capsys, "track", str(stack), "-o", str(out), "--model", "demo", *QUICK)
    if not BUNDLED_FILE.is_file():
        assert code == 1 and "the bundled model 'demo' is missing" in err and "napari_sam2.training.demo" in err
        assert not out.exists() and offline == []
        return
    assert code == 0, err
    assert f"with {DEMO} on cpu at 256 px" in err and offline == []
    assert tifffile.imread(out).shape == (2, 64, 64)


# ----------------------------------------------------------------------------- batch
def test_batch_jobs_fall_back_and_say_so(data, demo, offline, tmp_path, monkeypatch):
    from napari_sam2 import batch
    from napari_sam2.tracking.pipeline import TrackOptions

    monkeypatch.setattr(batch, "_MODELS", OrderedDict())  # this process's model cache, fresh
    stack, prompts = data
    jobs = [batch.BatchJob(str(stack), str(prompts), str(tmp_path / "out" / "cells.labels.tif"))]
    choice = ModelChoice(device="cpu", torch_threads=1)
    warned: list[str] = []
    assert batch.prefetch_models(jobs, choice, warn=warned.append) == []
    assert len(warned) == 1 and warned[0].startswith("could not download sam2.1_hiera_tiny")
    with pytest.raises(DownloadError):
        batch.prefetch_models(jobs, replace(choice, fallback_to_demo=False))
    (tmp_path / "out").mkdir()
    result = batch.run_job(jobs[0], choice, TrackOptions(fill_holes=0), "tiff")
    assert result.ok, result.error
    assert result.model == "demo" and result.warnings == tuple(warned)
    assert json.loads(json.dumps(result.to_dict()))["model"] == "demo"
    # a prompt file that names the demo model needs no download at all
    named = PromptSet.from_json(prompts)
    named.model = "demo"
    named.to_json(prompts, overwrite=True)
    offline.clear()
    assert batch.prefetch_models(jobs, choice) == [] and offline == []
