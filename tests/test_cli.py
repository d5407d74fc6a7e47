"""The ``napari-sam2`` command: tracking with every exporter, errors, interruption, models, gui.

The command runs in-process through ``main([...])`` (which returns the exit status) with
the miniature random SAM 2 injected through ``--model-factory``, and a few times as the
installed console script in a subprocess. The engine is never mocked.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_sam2.cli import SAMPLES, WIDGET, main
from napari_sam2.io.prompts import PromptSet
from napari_sam2.model import VideoSession
from napari_sam2.sample_data import cells_timelapse, rgb_clip
from napari_sam2.tracking import (
    TrackOptions,
    logits_to_labels,
    parse_frame_range,
    plan_passes,
    select_frames,
    track_file,
)

from .miniature import miniature_model

ROOT = Path(__file__).resolve().parents[1]
FACTORY = "tests.miniature:miniature_model"
MODEL = ["--model-factory", FACTORY, "--threads", "1"]
# The miniature model predicts 16x16 masks, where the default hole filling (8 pixels) would
# swallow the background; these tests compare with the engine without it.
FAST = [*MODEL, "-q", "--fill-holes", "0"]
FRAMES, SIZE = 12, 96


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def clip():
    return cells_timelapse(num_frames=FRAMES, size=SIZE, seed=1)


def _prompt_set(clip) -> PromptSet:
    prompts = PromptSet()
    prompts.set_prompt(3, 4, points=[clip.centers[3][4]], labels=[1])
    prompts.object(3, name="cell three")
    prompts.set_prompt(1, 0, box=[10, 10, 40, 40])
    prompts.set_prompt(1, 7, points=[clip.centers[1][7], (2.0, 2.0)], labels=[1, 0])
    return prompts


@pytest.fixture
def data(tmp_path, clip):
    """A TIFF stack and its prompt file in a folder of their own."""
    folder = tmp_path / "data"
    folder.mkdir()
    stack = folder / "cells.tif"
    tifffile.imwrite(stack, clip.image, metadata={"axes": "TYX"})
    prompts = folder / "cells.prompts.json"
    _prompt_set(clip).to_json(prompts)
    return stack, prompts


def _expected(clip, passes, first, last) -> np.ndarray:
    """Labels computed straight from the engine, for the frames first..last."""
    session = VideoSession(miniature_model(), clip.image, fill_hole_area=0)  # as FAST
    _prompt_set(clip).apply(session)
    out = np.zeros((last - first + 1, SIZE, SIZE), np.uint16)
    for start, reverse, max_frames in passes:
        for frame, logits in session.propagate(start=start, reverse=reverse, max_frames=max_frames):
            if first <= frame <= last:
                ids = sorted(logits)
                stack = np.stack([logits[i] for i in ids])
                best = stack.argmax(0)
                plane = np.asarray(ids)[best]
                plane[stack.max(0) <= 0] = 0
                out[frame - first] = plane
    session.close()
    return out


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# ----------------------------------------------------------------------------- tracking
def test_track_tiff_matches_the_engine_frame_by_frame(data, clip, capsys):
    stack, prompts = data
    out = stack.parent / "out" / "cells.labels.tif"
    assert prompts.name == "cells.prompts.json"  # found next to the input without -p
    assert main(["track", str(stack), "-o", str(out), *FAST]) == 0
    captured = capsys.readouterr()
    assert "wrote" in captured.out and str(out) in captured.out
    labels = tifffile.imread(out)
    assert labels.shape == (FRAMES, SIZE, SIZE) and labels.dtype == np.uint16
    # both directions from the earliest prompt (frame 0): one forward pass covers everything
    expected = _expected(clip, [(0, False, FRAMES - 1)], 0, FRAMES - 1)
    np.testing.assert_array_equal(labels, expected)
    assert set(np.unique(labels)) == {0, 1, 3}, "both objects, and background, must be present"
    # overlaps: the label with the higher logit wins (checked through the engine output above)
    assert _leftovers(out.parent, {"cells.labels.tif"}) == []


def test_int8_mode_runs_from_the_command_line(data):
    """How close int8 stays to exact mode is checked on the engine (test_quantize.py); the
    miniature model's two objects both cover most of the frame, so their argmax is no test."""
    stack, prompts = data
    out = stack.parent / "int8.tif"
    assert main(["track", str(stack), "-p", str(prompts), "-o", str(out), "--int8", *FAST]) == 0
    labels = tifffile.imread(out)
    assert labels.shape == (FRAMES, SIZE, SIZE) and set(np.unique(labels)) <= {0, 1, 3}


def test_frame_range_and_direction_both_cover_every_frame(data, clip):
    stack, prompts = data
    out = stack.parent / "range.tif"
    assert main(["track", str(stack), "-p", str(prompts), "-o", str(out), "--frames", "2:10", *FAST]) == 0
    labels = tifffile.imread(out)
    assert labels.shape == (8, SIZE, SIZE)
    # earliest prompt inside 2..9 is frame 4: forward 4..9, then backward 4..2
    expected = _expected(clip, [(4, False, 5), (4, True, 2)], 2, 9)
    np.testing.assert_array_equal(labels, expected)
    assert all(labels[t].any() for t in range(8)), "every frame of the range gets labels"


def test_forward_and_backward_only(data, clip):
    stack, prompts = data
    fwd, bwd = stack.parent / "fwd.tif", stack.parent / "bwd.tif"
    common = ["--frames", "3:", *FAST]
    assert main(["track", str(stack), "-p", str(prompts), "-o", str(fwd), "--direction", "forward", *common]) == 0
    assert main(["track", str(stack), "-p", str(prompts), "-o", str(bwd), "--direction", "backward", *common]) == 0
    f, b = tifffile.imread(fwd), tifffile.imread(bwd)
    assert f.shape == b.shape == (FRAMES - 3, SIZE, SIZE)
    # prompts in 3..11 are on frames 4 and 7
    assert not f[0].any() and all(f[t].any() for t in range(1, FRAMES - 3))  # frame 3 precedes them
    assert not b[FRAMES - 3 - 1].any() and all(b[t].any() for t in range(0, 7 - 3 + 1))  # after 7: nothing
    np.testing.assert_array_equal(f, _expected(clip, [(4, False, 7)], 3, FRAMES - 1))
    np.testing.assert_array_equal(b, _expected(clip, [(7, True, 4)], 3, FRAMES - 1))


@pytest.mark.parametrize("fmt", ["coco", "ctc", "mattes"])
def test_other_formats_hold_the_same_labels(data, fmt):
    from PIL import Image
    from pycocotools import mask as cocomask

    from napari_sam2.io.ctc import read_ctc_tracks, validate_ctc

    stack, prompts = data
    reference = stack.parent / "ref.tif"
    assert main(["track", str(stack), "-p", str(prompts), "-o", str(reference), *FAST]) == 0
    labels = tifffile.imread(reference)
    out = stack.parent / {"coco": "cells.coco.json", "ctc": "cells_RES", "mattes": "cells_mattes"}[fmt]
    extra = ["--feather", "0"] if fmt == "mattes" else []
    assert main(["track", str(stack), "-p", str(prompts), "-o", str(out), "-f", fmt, *extra, *FAST]) == 0
    if fmt == "coco":
        document = json.loads(out.read_text())
        assert len(document["images"]) == FRAMES
        assert {o["id"]: o["name"] for o in document["objects"]}[3] == "cell three"
        decoded = np.zeros_like(labels)
        for ann in document["annotations"]:
            t = ann["image_id"] - 1
            decoded[t][cocomask.decode(ann["segmentation"]).astype(bool)] = ann["object_id"]
        np.testing.assert_array_equal(decoded, labels)
    elif fmt == "ctc":
        tracks = validate_ctc(out)
        masks = np.stack([tifffile.imread(out / f"mask{t:03d}.tif") for t in range(FRAMES)])
        np.testing.assert_array_equal(masks > 0, labels > 0)
        parents = {t.label: t.parent for t in read_ctc_tracks(out)}

        def root(label: int) -> int:
            while parents.get(label):
                label = parents[label]
            return label

        lut = {0: 0, **{t.label: root(t.label) for t in tracks}}
        np.testing.assert_array_equal(np.vectorize(lut.get)(masks), labels)
    else:
        assert sorted(p.name for p in out.iterdir()) == ["1", "3"]
        for obj in (1, 3):
            for t in (0, 5, FRAMES - 1):
                matte = np.asarray(Image.open(out / str(obj) / f"{t:05d}.png"))
                np.testing.assert_array_equal(matte > 0, labels[t] == obj)


def test_video_input_with_coco_output(tmp_path):
    import av
    from pycocotools import mask as cocomask

    movie = rgb_clip(num_frames=10, height=64, width=96, seed=2)
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for frame in movie.image:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    prompts = PromptSet()
    prompts.set_prompt(1, 2, points=[movie.centers[1][2]], labels=[1])
    prompts.set_prompt(2, 5, box=[10, 10, 50, 60])
    prompts.to_json(tmp_path / "clip.json")
    out = tmp_path / "clip.coco.json"
    assert main(["track", str(path), "-p", str(tmp_path / "clip.json"), "-o", str(out), *FAST]) == 0
    document = json.loads(out.read_text())
    assert [image["file_name"] for image in document["images"]] == [f"frame_{t:05d}" for t in range(10)]
    frames_of = {1: set(), 2: set()}
    for ann in document["annotations"]:
        mask = cocomask.decode(ann["segmentation"])
        assert mask.shape == (64, 96) and mask.sum() == ann["area"] > 0
        frames_of[ann["object_id"]].add(ann["image_id"] - 1)
    assert frames_of[1] and frames_of[2]  # both objects tracked through the video


def test_axis_selection_of_a_4d_stack_reads_the_same_frames(tmp_path, clip):
    # TZYX: track along Z (not the first axis) at T=1; must equal tracking that 3D slice
    volume = np.stack([clip.image // 2, clip.image, clip.image // 3])  # (T=3, Z=12, Y, X)
    tifffile.imwrite(tmp_path / "zt.tif", volume, imagej=True, metadata={"axes": "TZYX"})
    tifffile.imwrite(tmp_path / "slice.tif", volume[1], metadata={"axes": "ZYX"})
    _prompt_set(clip).to_json(tmp_path / "p.json")
    p = str(tmp_path / "p.json")
    assert main(["track", str(tmp_path / "zt.tif"), "-p", p, "-o", str(tmp_path / "a.tif"), "--axis", "Z", "--at", "T=1", *FAST]) == 0
    assert main(["track", str(tmp_path / "slice.tif"), "-p", p, "-o", str(tmp_path / "b.tif"), *FAST]) == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "a.tif"), tifffile.imread(tmp_path / "b.tif"))
    # the lazy view serves exactly the planes of the slice
    from napari_sam2.io import open_stack

    array, meta = open_stack(tmp_path / "zt.tif")
    chosen = select_frames(array, meta, axis="Z", at={"T": 1})
    assert chosen.shape == (12, SIZE, SIZE) and "Z (12 frames) at T=1" in chosen.description
    np.testing.assert_array_equal(chosen.frames[5], volume[1, 5])
    default = select_frames(array, meta)  # T is walked by default, Z held at 0 with a note
    assert default.shape == (3, SIZE, SIZE) and any("holding axis Z" in note and "Z=INDEX" in note for note in default.notes)


def test_interrupted_runs_leave_no_output(data):
    stack, prompts = data
    folder = stack.parent
    before = {p.name for p in folder.iterdir()}

    def interrupt_at(stage: str, frame: int):
        def progress(name: str, done: int, total: int) -> None:
            if name == stage and done >= frame:
                raise KeyboardInterrupt
        return progress

    for fmt, name in (("tiff", "x.tif"), ("ctc", "x_RES"), ("coco", "x.json"), ("mattes", "x_mattes")):
        for stage in ("track", "export"):
            with pytest.raises(KeyboardInterrupt):
                track_file(stack, prompts, folder / name, format=fmt, model=miniature_model(), progress=interrupt_at(stage, 5))
            assert {p.name for p in folder.iterdir()} == before, (fmt, stage)
    # a failure inside the engine cleans up just the same
    with pytest.raises(ValueError):
        track_file(stack, prompts, folder / "y.tif", model=miniature_model(), options=TrackOptions(precision="half"))
    assert {p.name for p in folder.iterdir()} == before


def test_console_script_success_and_sigint(data, tmp_path):
    stack, prompts = data
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    exe = shutil.which("napari-sam2")
    assert exe, "the console script is not installed (pip install -e .)"
    out = tmp_path / "script.tif"
    done = subprocess.run([exe, "track", str(stack), "-p", str(prompts), "-o", str(out), *MODEL],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "tracking:" in done.stderr and "exporting:" in done.stderr  # progress bars on stderr
    assert "wrote" in done.stdout and tifffile.imread(out).shape == (FRAMES, SIZE, SIZE)

    # Ctrl-C half-way through a long stack: exit 130, no output, no temporary files left
    long = tmp_path / "long"
    long.mkdir()
    tifffile.imwrite(long / "long.tif", np.tile(cells_timelapse(num_frames=4, size=64).image, (150, 1, 1)))
    shutil.copy(tmp_path / "data" / "cells.prompts.json", long / "p.json")
    data = json.loads((long / "p.json").read_text())
    for obj in data["objects"]:
        for prompt in obj["prompts"]:
            prompt["points"] = [[r * 64 / SIZE, c * 64 / SIZE] for r, c in prompt["points"]]
            prompt["box"] = prompt["box"] and [v * 64 / SIZE for v in prompt["box"]]
    (long / "p.json").write_text(json.dumps(data))
    # a shell that starts this suite in the background hands its children an ignored
    # SIGINT, which Python keeps; Ctrl-C at a terminal comes with the default disposition
    proc = subprocess.Popen([exe, "track", str(long / "long.tif"), "-p", str(long / "p.json"), "-o", str(long / "out.tif"), *MODEL],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = b""
    deadline = time.time() + 120
    while b"tracking:" not in seen and time.time() < deadline:
        chunk = os.read(proc.stderr.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    stderr = (seen + rest).decode()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert sorted(p.name for p in long.iterdir()) == ["long.tif", "p.json"]


def test_cli_never_imports_napari_or_qt(data, tmp_path):
    stack, prompts = data
    code = (
        "import sys\nfrom napari_sam2.cli import main\n"
        f"rc = main(['track', {str(stack)!r}, '-p', {str(prompts)!r}, '-o', {str(tmp_path / 'n.tif')!r}, "
        f"'--model-factory', {FACTORY!r}, '--threads', '1', '-q'])\n"
        "bad = [m for m in sys.modules if m == 'napari' or m.startswith(('napari.', 'qtpy', 'PyQt', 'PySide', 'magicgui'))]\n"
        "assert rc == 0 and not bad, (rc, bad)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


# ----------------------------------------------------------------------------- errors
def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err


def test_input_errors(data, capsys, tmp_path):
    stack, prompts = data
    out = str(tmp_path / "o.tif")
    code, err = _run(capsys, "track", str(tmp_path / "missing.tif"), "-p", str(prompts), "-o", out, *FAST)
    assert code == 1 and "error: no such file or folder" in err and "missing.tif" in err
    (tmp_path / "junk.tif").write_bytes(b"this is not a tiff" * 10)
    code, err = _run(capsys, "track", str(tmp_path / "junk.tif"), "-p", str(prompts), "-o", out, *FAST)
    assert code == 1 and "cannot read" in err and "junk.tif" in err
    (tmp_path / "notes.xyz").write_text("hello")
    code, err = _run(capsys, "track", str(tmp_path / "notes.xyz"), "-p", str(prompts), "-o", out, *FAST)
    assert code == 1 and "unknown file type '.xyz'" in err
    assert not Path(out).exists()


def test_truncated_stack_fails_before_the_model_loads(data, capsys, tmp_path, monkeypatch):
    stack, prompts = data
    cut = tmp_path / "cut.tif"
    payload = Path(stack).read_bytes()
    cut.write_bytes(payload[: len(payload) // 2])
    out = tmp_path / "o.tif"

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded for an unreadable input")

    monkeypatch.setattr("tests.miniature.miniature_model", never)
    code, err = _run(capsys, "track", str(cut), "-p", str(prompts), "-o", str(out), *FAST)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error:") and "cut.tif" in lines[0]
    assert "truncated" in lines[0]
    assert not out.exists()


def test_prompt_errors_name_file_object_and_frame(data, capsys, tmp_path, clip):
    stack, _ = data
    out = str(tmp_path / "o.tif")
    cases = {
        "late.json": (lambda p: p.set_prompt(3, 120, points=[(5, 5)], labels=[1]),
                      ["late.json: object 3 ('cell three'), prompt on frame 120", "12 frames"]),
        "outside.json": (lambda p: p.set_prompt(1, 2, points=[(5, 500)], labels=[1]),
                         ["outside.json: object 1, prompt on frame 2", "outside the 96 x 96 frame"]),
        "shape.json": (lambda p: setattr(p, "frames_shape", (40, 96, 96)),
                       ["shape.json", "frames of shape (40, 96, 96)", "(12, 96, 96)"]),
    }
    for name, (edit, needles) in cases.items():
        prompts = _prompt_set(clip)
        edit(prompts)
        prompts.to_json(tmp_path / name)
        code, err = _run(capsys, "track", str(stack), "-p", str(tmp_path / name), "-o", out, *FAST)
        assert code == 1, name
        for needle in needles:
            assert needle in err, (needle, err)
    (tmp_path / "broken.json").write_text("{not json")
    code, err = _run(capsys, "track", str(stack), "-p", str(tmp_path / "broken.json"), "-o", out, *FAST)
    assert code == 1 and "broken.json is not valid JSON" in err
    (tmp_path / "empty.json").write_text(json.dumps({"version": 1, "objects": []}))
    code, err = _run(capsys, "track", str(stack), "-p", str(tmp_path / "empty.json"), "-o", out, *FAST)
    assert code == 1 and "has no prompts" in err
    code, err = _run(capsys, "track", str(stack), "-p", str(tmp_path / "none.json"), "-o", out, *FAST)
    assert code == 1 and "no such prompt file" in err
    lonely = tmp_path / "lonely.tif"
    shutil.copy(stack, lonely)
    code, err = _run(capsys, "track", str(lonely), "-o", out, *FAST)
    assert code == 2 and "lonely.prompts.json" in err and "pass --prompts" in err  # nothing to track: usage
    assert not Path(out).exists()


def test_existing_outputs_need_overwrite(data, capsys, tmp_path):
    stack, prompts = data
    out = tmp_path / "o.tif"
    out.write_bytes(b"precious")
    code, err = _run(capsys, "track", str(stack), "-p", str(prompts), "-o", str(out), *FAST)
    assert code == 1 and "already exists" in err and "--overwrite" in err
    assert out.read_bytes() == b"precious"
    assert main(["track", str(stack), "-p", str(prompts), "-o", str(out), "--overwrite", *FAST]) == 0
    assert tifffile.imread(out).shape == (FRAMES, SIZE, SIZE)
    # a folder with someone else's files is never replaced, even with --overwrite
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.docx").write_text("do not delete")
    code, err = _run(capsys, "track", str(stack), "-p", str(prompts), "-o", str(folder), "-f", "ctc", "--overwrite", *FAST)
    assert code == 1 and "other content" in err and (folder / "thesis.docx").exists()
    # an empty folder is fine without --overwrite
    empty = tmp_path / "empty_RES"
    empty.mkdir()
    assert main(["track", str(stack), "-p", str(prompts), "-o", str(empty), "-f", "ctc", *FAST]) == 0
    assert (empty / "res_track.txt").exists()


def test_usage_errors_exit_2(data, capsys, tmp_path):
    stack, prompts = data
    base = ["track", str(stack), "-p", str(prompts)]
    cases = [
        (["-o", str(tmp_path / "o.tif"), "-f", "png"], "invalid choice: 'png'"),
        (["-o", str(tmp_path / "o.xyz")], "cannot tell the export format"),
        (["-o", str(tmp_path / "o.json"), "-f", "tiff"], "looks like a JSON file"),
        (["-o", str(tmp_path / "o.tif"), "-f", "ctc"], "looks like a TIFF file"),
        (["-o", str(tmp_path / "o.tif"), "--frames", "2-3"], "START:END"),
        (["-o", str(tmp_path / "o.tif"), "--frames", "40:50"], "outside the stack (12 frames"),
        (["-o", str(tmp_path / "o.tif"), "--axis", "Z"], "axis 'Z' not found: the stack has axes TYX"),
        (["-o", str(tmp_path / "o.tif"), "--axis", "Y"], "spatial"),
        (["-o", str(tmp_path / "o.tif"), "--image-size", "500"], "multiple of 32"),
        (["-o", str(tmp_path / "o.tif"), "--model", "sam3"], "invalid choice: 'sam3'"),
        (["-o", str(tmp_path / "o.tif"), "--model", "sam2.1_hiera_tiny", "--model-factory", FACTORY], "do not combine"),
        (["-o", str(tmp_path / "o.tif"), "--model-factory", "no_such_module:f"], "cannot import the model factory"),
        (["-o", str(tmp_path / "o.tif"), "--device", "toaster"], "unknown device"),
        (["-o", str(tmp_path / "o.tif"), "--feather", "2"], "only applies to --format mattes"),
    ]
    for extra, needle in cases:
        argv = base + extra + (FAST if "--model-factory" not in extra and "--model" not in extra else ["-q"])
        code, err = _run(capsys, *argv)
        assert code == 2, (extra, err)
        assert needle in err, (needle, err)
    assert list(tmp_path.iterdir()) == [tmp_path / "data"]
    assert _run(capsys)[0] == 2  # no command
    assert main(["--help"]) == 0 and "track" in capsys.readouterr().out
    assert main(["track", "--help"]) == 0 and "examples:" in capsys.readouterr().out


def test_debug_shows_tracebacks(data, capsys, tmp_path):
    stack, prompts = data
    assert main(["track", str(stack), "-p", str(prompts), "-o", str(tmp_path / "o.xyz"), *FAST, "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_checkpoint_errors(data, capsys, tmp_path):
    stack, prompts = data
    out = str(tmp_path / "o.tif")
    code, err = _run(capsys, "track", str(stack), "-p", str(prompts), "-o", out, "--checkpoint", str(tmp_path / "none.pt"))
    assert code == 1 and "checkpoint file not found" in err
    torch.save({"model": {"weight": torch.zeros(3)}}, tmp_path / "other.pt")
    code, err = _run(capsys, "track", str(stack), "-p", str(prompts), "-o", out, "--checkpoint", str(tmp_path / "other.pt"))
    assert code == 1 and "not a SAM 2 or SAM 2.1 checkpoint" in err


def test_checkpoint_of_another_variant_is_refused(data, capsys, tmp_path):
    """The one rule shared with the widget: a file of another variant than the one named
    is refused (the command line adds which flag fixes it); without a name it loads."""
    from napari_sam2.model import build_sam2

    stack, prompts = data
    weights = tmp_path / "finetuned.pt"
    torch.save({"model": build_sam2("sam2.1_hiera_tiny", image_size=128, device="cpu").state_dict()}, weights)
    out = str(tmp_path / "o.tif")
    args = ["track", str(stack), "-p", str(prompts), "-o", out, "--checkpoint", str(weights), "--image-size", "128", "--threads", "1"]
    code, err = _run(capsys, *args, "--model", "sam2.1_hiera_small")
    assert code == 1 and "holds sam2.1_hiera_tiny weights, not sam2.1_hiera_small" in err
    assert "drop --model or pass --model sam2.1_hiera_tiny" in err and not Path(out).exists()
    assert main([*args, "-q"]) == 0 and Path(out).exists()


# ----------------------------------------------------------------------------- models
class _Server:
    """A loopback HTTP server for one folder: downloads are tested for real."""

    def __init__(self, folder: Path) -> None:
        handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *a, **k: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_models_and_download(tmp_path, monkeypatch, capsys):
    from napari_sam2.model import checkpoint as ckpt

    cache = tmp_path / "cache"
    monkeypatch.setenv(ckpt.CACHE_ENV, str(cache))
    www = tmp_path / "www"
    www.mkdir()
    payload = os.urandom(300_000)
    (www / "sam2.1_hiera_tiny.pt").write_bytes(payload)
    server = _Server(www)
    try:
        entry = ckpt.OfficialCheckpoint(
            "sam2.1_hiera_tiny", "sam2.1_hiera_tiny.pt", (f"{server.url}/sam2.1_hiera_tiny.pt",),
            hashlib.sha256(payload).hexdigest(), len(payload),
        )
        monkeypatch.setitem(ckpt.OFFICIAL_CHECKPOINTS, "sam2.1_hiera_tiny", entry)
        assert main(["models"]) == 0
        listing = capsys.readouterr().out
        assert str(cache) in listing and "sam2.1_hiera_large" in listing and "898 MB" in listing
        assert main(["download", "sam2.1_hiera_tiny"]) == 0
        captured = capsys.readouterr()
        assert "downloaded" in captured.out and "downloading model" in captured.err  # progress bar
        assert (cache / "sam2.1_hiera_tiny.pt").read_bytes() == payload
        assert main(["download", "sam2.1_hiera_tiny", "-q"]) == 0
        assert "already cached" in capsys.readouterr().out
        assert main(["models", "--json"]) == 0
        rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["models"]}
        assert rows["sam2.1_hiera_tiny"]["cached"] and not rows["sam2.1_hiera_large"]["cached"]
    finally:
        server.close()
    # no network: a clear message saying where to put the file, exit 1
    (cache / "sam2.1_hiera_tiny.pt").unlink()
    entry = ckpt.OfficialCheckpoint("sam2.1_hiera_tiny", "sam2.1_hiera_tiny.pt", ("http://127.0.0.1:9/x.pt",), "0" * 64, None)
    monkeypatch.setitem(ckpt.OFFICIAL_CHECKPOINTS, "sam2.1_hiera_tiny", entry)
    code, err = _run(capsys, "download", "sam2.1_hiera_tiny", "-q")
    assert code == 1 and "Without a network" in err and str(cache / "sam2.1_hiera_tiny.pt") in err
    assert _run(capsys, "download", "sam3")[0] == 2
    assert _run(capsys, "download")[0] == 2


# ----------------------------------------------------------------------------- gui
def test_gui_names_match_the_manifest():
    import yaml

    manifest = yaml.safe_load((ROOT / "napari_sam2" / "napari.yaml").read_text())
    contributions = manifest["contributions"]
    assert tuple(s["key"] for s in contributions["sample_data"]) == SAMPLES
    assert [w["display_name"] for w in contributions["widgets"]] == [WIDGET]


@pytest.mark.gui
@pytest.mark.parametrize("source", ["sample", "path"])
def test_gui_opens_the_widget_with_data(source, data, monkeypatch, qapp):
    import napari

    monkeypatch.setattr(napari, "run", lambda *a, **k: None)  # do not enter the event loop
    stack, _ = data
    argv = ["gui", "--sample", "cells"] if source == "sample" else ["gui", str(stack)]
    assert main(argv) == 0
    viewer = napari.current_viewer()
    try:
        names = [layer.name for layer in viewer.layers]
        assert names[0] == ("cells (synthetic)" if source == "sample" else "cells")
        assert viewer.layers[0].data.shape[0] == (48 if source == "sample" else FRAMES)
        assert any(WIDGET in name for name in viewer.window.dock_widgets)
    finally:
        viewer.close()


def test_gui_missing_path_fails_before_opening_a_window(capsys):
    code, err = _run(capsys, "gui", "/no/such/stack.tif")
    assert code == 1 and "no such file or folder" in err


# ----------------------------------------------------------------------------- pieces
def test_frame_ranges_and_passes():
    assert parse_frame_range("2:10") == (2, 10)
    assert parse_frame_range("5") == (5, 6)
    assert parse_frame_range(":-1") == (None, -1)
    assert parse_frame_range(None) is None
    assert plan_passes([4, 7], 0, 11, "both") == [(4, False, 7), (4, True, 4)]
    assert plan_passes([0, 7], 0, 11, "both") == [(0, False, 11)]
    assert plan_passes([4, 7], 0, 11, "backward") == [(7, True, 7)]
    assert plan_passes([0], 0, 11, "backward") == [(0, False, 0)]
    assert plan_passes([20], 0, 11, "both") == [(0, False, 11)]  # prompts only outside: from the edge
    assert plan_passes([20], 0, 11, "backward") == [(11, True, 11)]


def test_overlaps_go_to_the_higher_logit():
    a = np.array([[5.0, -1.0], [2.0, 0.5]], np.float32)
    b = np.array([[1.0, -2.0], [3.0, -0.5]], np.float32)
    plane = logits_to_labels({7: a, 2: b}, (2, 2))
    np.testing.assert_array_equal(plane, [[7, 0], [2, 7]])
    assert logits_to_labels({}, (2, 2)).sum() == 0


def test_label_writer_hands_its_errors_to_the_caller():
    from napari_sam2.tracking import FrameWriter

    class Full:
        shape, dtype = (3, 4, 4), np.uint16

        def __setitem__(self, key, value):
            raise OSError("no space left on device")

    writer = FrameWriter(Full(), 0, [1])
    with pytest.raises(OSError, match="no space left"):
        for t in range(3):
            writer.put(t, {1: np.ones((4, 4), np.float32)})
        writer.close()


def test_hole_filling_defaults_to_metas_video_predictor_everywhere():
    import inspect

    from napari_sam2.cli import build_parser
    from napari_sam2.tracking.pipeline import TrackOptions

    engine = inspect.signature(VideoSession.__init__).parameters["fill_hole_area"].default
    assert engine == 8
    assert build_parser().parse_args(["track", "in.tif", "-o", "out.tif"]).fill_holes == engine
    assert TrackOptions().fill_holes == engine
