"""``napari-sam2 train`` and ``napari-sam2 evaluate`` end to end, on the miniature model.

Runs in-process through ``main([...])`` on tiny synthetic stacks written as TIFF files
(and a tiny Cell Tracking Challenge folder); the starting model is the miniature SAM 2
saved as a self-describing checkpoint. Training runs a few steps on one torch thread.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_sam2.cli import main
from napari_sam2.model import build_sam2
from napari_sam2.model.saved import save_checkpoint
from napari_sam2.sample_data import cells_timelapse

from .miniature import miniature_config, miniature_model

FRAMES, SIZE = 5, 64
FAST = ["--steps", "2", "--clip-frames", "3", "--threads", "1"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A TIFF stack, its labels, and the miniature model as a checkpoint file."""
    folder = tmp_path_factory.mktemp("train")
    clip = cells_timelapse(num_frames=FRAMES, size=SIZE, seed=3)
    stack, labels = folder / "cells.tif", folder / "cells_labels.tif"
    tifffile.imwrite(stack, clip.image, metadata={"axes": "TYX"})
    tifffile.imwrite(labels, clip.labels.astype(np.uint16), metadata={"axes": "TYX"})
    start = folder / "mini.pt"
    save_checkpoint(miniature_model(), start, {"note": "test start"})
    return stack, labels, start


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _train_args(files, out: Path, *extra: str) -> list[str]:
    stack, labels, start = files
    return ["train", "--images", str(stack), "--labels", str(labels), "--from", str(start), "-o", str(out), *FAST, *extra]


def test_train_then_evaluate(files, tmp_path, capsys):
    stack, labels, start = files
    out = tmp_path / "tuned.pt"
    code, stdout, stderr = _run(capsys, *_train_args(files, out, "--train", "memory"))
    assert code == 0, stderr
    assert f"wrote {out}" in stdout and "2 steps" in stdout
    assert "loss=" in stderr  # the progress bar shows the loss
    tuned = build_sam2(checkpoint=out, device="cpu")  # strict, no name needed
    assert tuned.config == miniature_config()
    before = build_sam2(checkpoint=start, device="cpu").state_dict()
    changed = [k for k, v in tuned.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and not any(k.startswith("image_encoder.") for k in changed)

    scores = tmp_path / "scores.json"
    code, stdout, stderr = _run(capsys, "evaluate", "--images", str(stack), "--labels", str(labels),
                                "--checkpoint", str(out), "--threads", "1", "--json", str(scores), "-q")
    assert code == 0, stderr
    assert "protocol: one positive click" in stdout
    assert "J&F" in stdout and "mean" in stdout
    report = json.loads(scores.read_text())
    objects = {int(i) for i in np.unique(tifffile.imread(labels)) if i}
    assert {o["object"] for o in report["per_object"]} == objects
    assert 0.0 <= report["J&F"] <= 1.0 and report["J&F"] == pytest.approx((report["J"] + report["F"]) / 2)


def test_ctrl_c_saves_a_resumable_run(files, tmp_path, capsys, monkeypatch):
    import napari_sam2.cli_train as cli_train

    out = tmp_path / "tuned.pt"
    original = cli_train._LossBar.step

    def interrupt_after_first(self, report):
        original(self, report)
        if report.step == 1:
            signal.raise_signal(signal.SIGINT)  # as Ctrl-C: the loop finishes this step and stops

    monkeypatch.setattr(cli_train._LossBar, "step", interrupt_after_first)
    code, stdout, stderr = _run(capsys, *_train_args(files, out, "--steps", "3"))
    assert code == 130
    assert "interrupted at step 1 of 3" in stderr and "--resume" in stderr
    assert out.is_file() and (tmp_path / "tuned.resume.pt").is_file()
    build_sam2(checkpoint=out, device="cpu")  # the model so far loads
    monkeypatch.setattr(cli_train._LossBar, "step", original)
    # the same command again refuses to overwrite the run; with --resume it goes on to the end
    code, _, stderr = _run(capsys, *_train_args(files, out, "--steps", "3"))
    assert code == 1 and "already exists" in stderr
    code, stdout, stderr = _run(capsys, *_train_args(files, out, "--steps", "3", "--resume"))
    assert code == 0, stderr
    assert "3 steps" in stdout


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def test_bad_input_is_one_error_line_and_writes_nothing(files, tmp_path, capsys):
    stack, labels, start = files
    clip = cells_timelapse(num_frames=FRAMES, size=SIZE, seed=3)
    wrong = tmp_path / "wrong_shape.tif"
    tifffile.imwrite(wrong, clip.labels[:, :32].astype(np.uint16))
    empty = tmp_path / "empty.tif"
    tifffile.imwrite(empty, np.zeros_like(clip.labels, dtype=np.uint16))
    other = tmp_path / "other.pt"  # weights of no SAM 2 variant
    torch.save({"model": {"w": torch.zeros(2)}}, other)
    existing = tmp_path / "existing.pt"
    existing.write_bytes(b"precious")
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    out = tmp_path / "out.pt"
    cases = [
        (["--labels", str(wrong)], out, "shape"),
        (["--labels", str(empty)], out, "no objects"),
        (["--from", str(other)], out, "match none of the official variants"),
        ([], existing, "already exists"),
        ([], a_file / "out.pt", "cannot write"),
        ([], tmp_path / "missing" / "out.pt", "does not exist"),
        ([], out, "no interrupted run"),  # --resume without a saved run
    ]
    before = sorted(p.name for p in tmp_path.iterdir())
    for i, (change, output, expected) in enumerate(cases):
        argv = ["train", "--images", str(stack), "--labels", str(labels), "--from", str(start), "-o", str(output), *FAST]
        for flag, value in zip(change[::2], change[1::2]):
            argv[argv.index(flag) + 1] = value
        if i == len(cases) - 1:
            argv.append("--resume")
        code, stdout, stderr = _run(capsys, *argv)
        line = _one_error_line(stderr)
        assert code == 1 and expected in line, (change, line)
        assert sorted(p.name for p in tmp_path.iterdir()) == before, change
    assert existing.read_bytes() == b"precious"
    assert "--overwrite" in _one_error_line(_run(capsys, *_train_args(files, existing))[2])


def test_resume_refuses_a_model_of_another_architecture(files, tmp_path, capsys):
    stack, labels, start = files
    out = tmp_path / "tuned.pt"
    assert main(_train_args(files, out, "--checkpoint-every", "1", "-q")) == 0
    assert (tmp_path / "tuned.resume.pt").is_file()
    wider = tmp_path / "wider.pt"
    torch.manual_seed(1)
    save_checkpoint(build_sam2(miniature_config(96), device="cpu"), wider, {})
    code, _, stderr = _run(capsys, *_train_args(files, out, "--steps", "4", "--resume"))
    assert code == 1 and "steps 2 (not 4)" in _one_error_line(stderr)
    code, _, stderr = _run(capsys, *_train_args(files, out, "--from", str(wider), "--resume"))
    assert code == 1 and "96 px" in _one_error_line(stderr)


def test_usage_errors_exit_2(files, tmp_path, capsys):
    stack, labels, start = files
    out = str(tmp_path / "o.pt")
    for argv, expected in [
        (["train", "--images", str(stack), "--from", str(start), "-o", out], "pairs"),
        (["train", "--images", str(stack), "--labels", str(labels), "-o", out], "--from"),
        (["train", "--from", str(start), "-o", out], "no training data"),
        (["train", "--images", str(stack), "--labels", str(labels), "--from", "sam3_huge", "-o", out], "neither a model name"),
        (["train", "--images", str(stack), "--labels", str(labels), "--from", str(start), "-o", out, "--steps", "0"], "at least 1"),
        (["train", "--images", str(stack), "--labels", str(labels), "--from", str(start), "-o", out, "--train", "head"], "invalid choice"),
    ]:
        code, _, stderr = _run(capsys, *argv)
        assert code == 2 and expected in stderr, (argv, stderr)
    assert not Path(out).exists()


def _write_ctc(root: Path, clip) -> Path:
    """A one-sequence CTC dataset: images, TRA on every frame, SEG on two frames."""
    (root / "01").mkdir(parents=True)
    (root / "01_GT" / "TRA").mkdir(parents=True)
    (root / "01_GT" / "SEG").mkdir(parents=True)
    for t in range(clip.image.shape[0]):
        tifffile.imwrite(root / "01" / f"t{t:03d}.tif", clip.image[t])
        tifffile.imwrite(root / "01_GT" / "TRA" / f"man_track{t:03d}.tif", clip.labels[t].astype(np.uint16))
        if t in (1, 3):
            tifffile.imwrite(root / "01_GT" / "SEG" / f"man_seg{t:03d}.tif", clip.labels[t].astype(np.uint16))
    return root


def test_ctc_training_and_seg(files, tmp_path, capsys):
    stack, labels, start = files
    ctc = _write_ctc(tmp_path / "ctc", cells_timelapse(num_frames=FRAMES, size=SIZE, seed=4))
    out = tmp_path / "tuned.pt"
    code, _, stderr = _run(capsys, "train", "--ctc", str(ctc), "--from", str(start), "-o", str(out), *FAST, "-q")
    assert code == 0, stderr
    code, stdout, stderr = _run(capsys, "evaluate", "--ctc", str(ctc), "--checkpoint", str(out), "--threads", "1", "-q")
    assert code == 0, stderr
    assert "CTC SEG:" in stdout
