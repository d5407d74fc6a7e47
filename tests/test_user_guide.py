"""The user guide's three workflows, run as a user runs them, with the bundled demo model.

Each test follows one section of ``docs/user-guide.md`` in a real viewer: it loads the
demo model from the Model section, clicks or draws on the canvas, propagates, and checks
the masks against the sample data's ground truth, so the guide's screenshots show real
masks and the guide's steps keep working. Screenshots go to pytest's tmp dir; with
``NAPARI_SAM2_SCREENSHOTS=docs/images`` they are also written (shrunk) for the guide.

Run under a display (``xvfb-run -a -s "-screen 0 1600x1000x24" python -m pytest ...``).
"""

from __future__ import annotations

import numpy as np
import pytest
from gui_support import click, drag, keep_for_docs, new_viewer, notes, open_widget, ready, screenshot  # noqa: F401
from qtpy.QtCore import Qt

from napari_sam2.sample_data import cells_timelapse, nuclei_zstack, rgb_clip

pytestmark = pytest.mark.gui

DEMO = "demo"


def _load_demo(widget, qtbot) -> None:
    """Model ▸ demo (bundled, trained on synthetic data) ▸ Load model, as in the guide."""
    combo = widget.model_combo
    index = combo.findData(DEMO)
    assert index >= 0, [combo.itemText(i) for i in range(combo.count())]
    combo.setCurrentIndex(index)
    qtbot.mouseClick(widget.load_button, Qt.LeftButton)
    ready(widget, qtbot)
    assert widget.loaded is not None and widget.loaded.choice.name == DEMO, widget.model_status.text()


def _open_sample(make_napari_viewer, qtbot, key: str, frame: int | None = 0):
    """File ▸ Open Sample, the panel, and the demo model: where every workflow starts."""
    viewer = new_viewer(make_napari_viewer, qtbot)
    viewer.open_sample("napari-sam2", key)
    if frame is not None:
        viewer.dims.set_current_step(0, frame)
    widget = open_widget(viewer)
    return viewer, widget


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _shot(viewer, qtbot, tmp_path, name: str):
    path = screenshot(viewer, qtbot, tmp_path, name)
    keep_for_docs(path)
    return path


def _largest_cells(clip, frame: int, count: int, avoid: set[int]) -> list[int]:
    ids = [i for i in np.unique(clip.labels[frame]) if i and i not in avoid]
    ids.sort(key=lambda i: -int((clip.labels[frame] == i).sum()))
    return ids[:count]


def test_time_lapse_workflow(make_napari_viewer, qtbot, tmp_path, notes):
    clip = cells_timelapse()
    viewer, widget = _open_sample(make_napari_viewer, qtbot, "cells")
    _load_demo(widget, qtbot)
    t = widget.controller.target

    # 1. one click per cell on the first frame (cells that stay whole: not the dividing one)
    dividing = set(clip.parents.values())
    cells = _largest_cells(clip, 0, 2, dividing | {2})
    for k, cell in enumerate(cells):
        if k:
            qtbot.mouseClick(widget.new_button, Qt.LeftButton)
        click(viewer, qtbot, t.points, clip.centers[cell][0])
        ready(widget, qtbot)
    labels = np.asarray(t.labels.data)
    first = [_iou(labels[0] == k + 1, clip.labels[0] == cell) for k, cell in enumerate(cells)]
    _shot(viewer, qtbot, tmp_path, "guide-timelapse-click")

    # 2. propagate through the whole time-lapse
    widget.follow_check.setChecked(False)
    qtbot.mouseClick(widget.propagate_button, Qt.LeftButton)
    ready(widget, qtbot, timeout=900_000)
    viewer.dims.set_current_step(0, 30)
    _shot(viewer, qtbot, tmp_path, "guide-timelapse-propagated")
    labels = np.asarray(t.labels.data)
    tracked = [
        np.mean([_iou(labels[f] == k + 1, clip.labels[f] == cell) for f in range(clip.num_frames) if (clip.labels[f] == cell).any()])
        for k, cell in enumerate(cells)
    ]
    assert min(first) > 0.6, f"click IoU per cell {first}"
    assert min(tracked) > 0.5, f"mean IoU through the time-lapse per cell {tracked}"
    assert not notes.messages("error")


def test_track_all_workflow(make_napari_viewer, qtbot, tmp_path, notes):
    clip = cells_timelapse()
    viewer, widget = _open_sample(make_napari_viewer, qtbot, "cells")
    _load_demo(widget, qtbot)
    t = widget.controller.target
    section = widget.track_all_section
    section.set_open(True)
    widget.all_frames_check.setChecked(False)
    widget.last_spin.setValue(15)
    widget.follow_check.setChecked(False)
    qtbot.mouseClick(section.run_button, Qt.LeftButton)
    ready(widget, qtbot, timeout=900_000)
    assert section.status.text().startswith("done"), section.status.text()
    viewer.dims.set_current_step(0, 12)
    _shot(viewer, qtbot, tmp_path, "guide-timelapse-track-all")

    labels = np.asarray(t.labels.data)
    truth_ids = [i for i in np.unique(clip.labels[0]) if i]
    found = [max((_iou(labels[0] == j, clip.labels[0] == i) for j in np.unique(labels[0]) if j), default=0.0) for i in truth_ids]
    assert widget.tracks_layer() is not None
    assert np.mean([f > 0.5 for f in found]) >= 0.5, f"best IoU of each true cell on frame 0: {found}"
    assert not notes.messages("error")


def test_z_stack_workflow(make_napari_viewer, qtbot, tmp_path, notes):
    clip = nuclei_zstack()
    viewer, widget = _open_sample(make_napari_viewer, qtbot, "nuclei", frame=None)
    assert widget.axis_combo.currentText().startswith("z"), widget.axis_combo.currentText()
    _load_demo(widget, qtbot)
    t = widget.controller.target

    # click each of two nuclei on the plane where it is largest, then propagate both ways
    nuclei = [1, 2]
    for k, nucleus in enumerate(nuclei):
        areas = (clip.labels == nucleus).sum((1, 2))
        plane = int(np.argmax(areas))
        viewer.dims.set_current_step(0, plane)
        if k:
            qtbot.mouseClick(widget.new_button, Qt.LeftButton)
        click(viewer, qtbot, t.points, clip.centers[nucleus][plane])
        ready(widget, qtbot)
    widget.direction_combo.setCurrentText("Both directions")
    widget.follow_check.setChecked(False)
    qtbot.mouseClick(widget.propagate_button, Qt.LeftButton)
    ready(widget, qtbot, timeout=900_000)
    viewer.dims.set_current_step(0, int(np.argmax((clip.labels == nuclei[0]).sum((1, 2)))) + 4)
    _shot(viewer, qtbot, tmp_path, "guide-zstack")

    labels = np.asarray(t.labels.data)
    for k, nucleus in enumerate(nuclei):
        planes = [z for z in range(clip.num_frames) if (clip.labels[z] == nucleus).sum() > 30]
        score = np.mean([_iou(labels[z] == k + 1, clip.labels[z] == nucleus) for z in planes])
        assert score > 0.5, f"nucleus {nucleus}: mean IoU over its planes {score:.3f}"
    assert not notes.messages("error")


def test_rotoscoping_workflow_ends_in_feathered_mattes(make_napari_viewer, qtbot, tmp_path, notes):
    import tifffile
    from PIL import Image

    from napari_sam2.cli import main as cli
    from napari_sam2.widgets.prompt_files import export_prompts

    clip = rgb_clip()
    viewer, widget = _open_sample(make_napari_viewer, qtbot, "clip")
    _load_demo(widget, qtbot)
    t = widget.controller.target

    # a box around the blue tile, then propagate
    ys, xs = np.nonzero(clip.labels[0] == 2)
    viewer.layers.selection.active = t.boxes
    drag(viewer, qtbot, t.boxes, (ys.min() - 4, xs.min() - 4), (ys.max() + 4, xs.max() + 4))
    ready(widget, qtbot)
    widget.follow_check.setChecked(False)
    qtbot.mouseClick(widget.propagate_button, Qt.LeftButton)
    ready(widget, qtbot, timeout=900_000)

    # where the mask slips (the ball passes in front of the tile), click the tile on that
    # frame and propagate again, as the guide says; at most four corrections
    corrected = []
    for _ in range(4):
        labels = np.asarray(t.labels.data)
        slips = [f for f in range(clip.num_frames)
                 if f not in corrected and _iou(labels[f] == 1, clip.labels[f] == 2) < 0.5]
        if not slips:
            break
        frame = slips[0]
        corrected.append(frame)
        viewer.layers.selection.active = t.points
        viewer.dims.set_current_step(0, frame)
        click(viewer, qtbot, t.points, _interior(clip.labels[frame] == 2))  # this is the tile
        ready(widget, qtbot)
        ball = clip.labels[frame] == 1
        if (np.asarray(t.labels.data[frame])[ball] == 1).mean() > 0.2:  # the mask spilled onto the ball
            click(viewer, qtbot, t.points, _interior(ball), shift=True)
            ready(widget, qtbot)
        qtbot.mouseClick(widget.propagate_button, Qt.LeftButton)
        ready(widget, qtbot, timeout=900_000)
    viewer.dims.set_current_step(0, corrected[0] if corrected else 20)
    _shot(viewer, qtbot, tmp_path, "guide-rotoscoping")

    # Save prompts..., then the command line renders full-resolution feathered mattes
    movie = tmp_path / "clip.tif"
    tifffile.imwrite(movie, clip.image, photometric="rgb")
    prompts = export_prompts(widget.controller)
    prompts.to_json(tmp_path / "clip.prompts.json")
    out = tmp_path / "mattes"
    code = cli(["track", str(movie), "-o", str(out), "--format", "mattes", "--feather", "3", "--model", "demo", "-q"])
    assert code == 0
    mattes = np.stack([np.asarray(Image.open(out / "1" / f"{f:05d}.png")) for f in range(clip.num_frames)])
    per_frame = [_iou(m > 127, clip.labels[f] == 2) for f, m in enumerate(mattes)]
    frame = 24  # the ball has just passed the tile
    matte = mattes[frame]
    soft = ((matte > 0) & (matte < 255)).sum()
    assert soft > 50, "the edge is feathered"
    assert np.mean(per_frame) > 0.55 and min(per_frame) > 0.2, f"corrected on {corrected}; matte IoU per frame {np.round(per_frame, 2).tolist()}"
    _composite(clip.image[frame], matte, tmp_path / "guide-rotoscoping-matte.png")
    keep_for_docs(tmp_path / "guide-rotoscoping-matte.png")
    assert not notes.messages("error")


def _interior(mask: np.ndarray) -> tuple[int, int]:
    """The pixel deepest inside ``mask`` (row, col): where a user clicks."""
    from scipy.ndimage import distance_transform_edt

    depth = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    return tuple(int(v) for v in np.unravel_index(np.argmax(depth), depth.shape))


def _composite(frame: np.ndarray, matte: np.ndarray, path) -> None:
    """The frame, its matte, and the cut-out over a checkerboard, side by side."""
    from PIL import Image

    alpha = matte.astype(np.float32) / float(np.iinfo(matte.dtype).max)
    h, w = alpha.shape
    checker = ((np.indices((h, w)) // 16).sum(0) % 2 * 60 + 150).astype(np.float32)[..., None]
    cut = frame.astype(np.float32) * alpha[..., None] + checker * (1 - alpha[..., None])
    grey = np.repeat((alpha * 255)[..., None], 3, axis=-1)
    gap = np.full((h, 8, 3), 255, np.float32)
    row = np.concatenate([frame.astype(np.float32), gap, grey, gap, cut], axis=1)
    Image.fromarray(row.clip(0, 255).astype(np.uint8)).save(path)
