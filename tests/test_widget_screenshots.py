"""Screenshots of the main states, to look at what users see.

Saved under pytest's tmp dir; set ``NAPARI_SAM2_SCREENSHOTS=docs/images`` to keep copies.
The bundled demo model makes the masks; with
``NAPARI_SAM2_TEST_CHECKPOINT=/path/to/sam2.1_hiera_tiny.pt`` the official weights do.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from gui_support import click, drag, keep_for_docs, new_viewer, open_widget, ready, screenshot
from qtpy.QtCore import Qt

from napari_sam2.sample_data import cells_timelapse, rgb_clip

pytestmark = pytest.mark.gui


def _model(widget):
    from napari_sam2.tracking import LoadedModel, ModelChoice

    path = os.environ.get("NAPARI_SAM2_TEST_CHECKPOINT")
    if not path:
        widget.use_model(LoadedModel.load(ModelChoice("demo", device="cpu")))
        return
    widget.use_model(LoadedModel.load(ModelChoice("sam2.1_hiera_tiny", checkpoint=path, device="cpu", image_size=512)))


def test_screenshots_of_main_states(make_napari_viewer, qtbot, tmp_path):
    clip = cells_timelapse()
    viewer = new_viewer(make_napari_viewer, qtbot)
    viewer.open_sample("napari-sam2", "cells")
    viewer.dims.set_current_step(0, 10)
    widget = open_widget(viewer)
    _model(widget)
    t = widget.controller.target
    shots = []

    # 1. a positive click (and a negative one next to it) segments the cell on this frame
    click(viewer, qtbot, t.points, clip.centers[1][10])
    ready(widget, qtbot)
    r, c = clip.centers[1][10]
    click(viewer, qtbot, t.points, (r + 25, c), shift=True)
    ready(widget, qtbot)
    # a second object, renamed in the list
    qtbot.mouseClick(widget.new_button, Qt.LeftButton)
    click(viewer, qtbot, t.points, clip.centers[5][10])
    ready(widget, qtbot)
    widget.object_table.item(0, 1).setText("dividing cell")
    widget.object_table.item(1, 1).setText("neighbour")
    shots.append(screenshot(viewer, qtbot, tmp_path, "click"))

    # 2. propagation in progress: the viewer stays live, frames appear one by one
    qtbot.mouseClick(widget.propagate_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: widget._frames_done >= 6, timeout=300_000)
    shots.append(screenshot(viewer, qtbot, tmp_path, "propagating"))
    qtbot.mouseClick(widget.cancel_button, Qt.LeftButton)
    ready(widget, qtbot)

    # 3. finished over a range of frames
    widget.all_frames_check.setChecked(False)
    widget.first_spin.setValue(0)
    widget.last_spin.setValue(30)
    qtbot.mouseClick(widget.propagate_button, Qt.LeftButton)
    ready(widget, qtbot, timeout=300_000)
    viewer.dims.set_current_step(0, 24)
    shots.append(screenshot(viewer, qtbot, tmp_path, "tracking"))

    # 4. an RGB clip prompted with a box
    viewer.layers.clear()
    video = rgb_clip()
    viewer.add_image(video.image, name="clip", rgb=True)
    viewer.dims.set_current_step(0, 0)
    qtbot.waitUntil(lambda: widget.controller.target is not None and widget.controller.target.image.name == "clip", timeout=5000)
    t = widget.controller.target
    viewer.layers.selection.active = t.boxes
    r, c = video.centers[2][0]
    drag(viewer, qtbot, t.boxes, (r - 32, c - 32), (r + 32, c + 32))
    ready(widget, qtbot)
    shots.append(screenshot(viewer, qtbot, tmp_path, "rgb-box"))

    for path in shots:
        image = _read_png(path)
        assert image.shape[0] > 600 and image.shape[1] > 1000, path
        assert image[..., :3].std() > 10, f"{path.name} is blank"
    for path in shots:
        keep_for_docs(path)


def _read_png(path):
    from PIL import Image

    return np.asarray(Image.open(path))
