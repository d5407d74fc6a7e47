"""Mistakes a user can make: each shows a notification saying what to do, nothing is lost."""

from __future__ import annotations

import numpy as np
import pytest
from gui_support import TEST_SIZE, click, loaded_tiny, notes, new_viewer, open_widget, press, ready, tiny_model  # noqa: F401
from qtpy.QtCore import Qt

from napari_sam2.sample_data import cells_timelapse

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def clip():
    return cells_timelapse(num_frames=6, size=96, seed=4)


def test_no_image_layer(make_napari_viewer, qtbot, notes):
    viewer = new_viewer(make_napari_viewer, qtbot)
    widget = open_widget(viewer)
    assert widget.controller.target is None
    press(viewer, qtbot, Qt.Key_G)
    qtbot.mouseClick(widget.new_button, Qt.LeftButton)
    errors = notes.messages("error")
    assert len(errors) == 2 and all("Open an image first" in m for m in errors)
    # the image arrives later: the widget picks it up and makes the layers
    viewer.add_image(np.zeros((3, 32, 32), np.uint16), name="late")
    qtbot.waitUntil(lambda: widget.controller.target is not None, timeout=5000)
    assert {layer.name for layer in viewer.layers} == {"late", "late clicks", "late boxes", "late masks"}


def test_click_outside_the_image(make_napari_viewer, qtbot, notes, clip):
    viewer = new_viewer(make_napari_viewer, qtbot)
    viewer.add_image(clip.image)
    widget = open_widget(viewer)
    widget.use_model(loaded_tiny())
    t = widget.controller.target
    click(viewer, qtbot, t.points, (48, 48))
    ready(widget, qtbot)
    before = np.asarray(t.labels.data).copy()
    click(viewer, qtbot, t.points, (48, 130))  # right of the 96 x 96 image
    ready(widget, qtbot)
    warnings = notes.messages("warning")
    assert any("outside the 96 x 96 image" in m and "click inside the image" in m for m in warnings), warnings
    assert len(t.points.data) == 1, "the stray click is removed, the good one kept"
    assert np.array_equal(np.asarray(t.labels.data), before)


def test_wrong_checkpoint_file(make_napari_viewer, qtbot, notes, clip, tmp_path):
    bad = tmp_path / "not_a_model.pt"
    bad.write_bytes(b"this is not a checkpoint")
    viewer = new_viewer(make_napari_viewer, qtbot)
    viewer.add_image(clip.image)
    widget = open_widget(viewer)
    t = widget.controller.target
    widget.weights_combo.setCurrentText("Local file...")
    widget.path_edit.setText(str(bad))
    widget.set_image_size(TEST_SIZE)
    click(viewer, qtbot, t.points, (48, 48))  # the first click loads the model
    ready(widget, qtbot)
    errors = notes.messages("error")
    assert any("not a readable SAM 2 checkpoint" in m for m in errors), errors
    assert widget.controller.model is None
    assert len(t.points.data) == 1, "the click is kept for when a model is loaded"
    # clicking again says what to do instead of failing silently
    click(viewer, qtbot, t.points, (40, 40))
    ready(widget, qtbot)
    assert any("press Load model" in m for m in notes.messages("warning"))


def test_local_checkpoint_of_another_variant_is_refused(make_napari_viewer, qtbot, notes, clip, tmp_path):
    """The stricter rule, as on the command line: a file of another variant than the one
    selected is refused with a message naming the file's variant; then it loads."""
    import torch

    path = tmp_path / "my_finetuned_weights.pt"
    torch.save({"model": tiny_model().state_dict()}, path)
    viewer = new_viewer(make_napari_viewer, qtbot)
    viewer.add_image(clip.image)
    viewer.dims.set_current_step(0, 0)
    widget = open_widget(viewer)
    t = widget.controller.target
    widget.model_combo.setCurrentText("sam2.1_hiera_small")
    widget.weights_combo.setCurrentText("Local file...")
    widget.path_edit.setText(str(path))
    widget.set_image_size(TEST_SIZE)
    qtbot.mouseClick(widget.load_button, Qt.LeftButton)
    ready(widget, qtbot)
    assert widget.loaded is None and widget.controller.model is None
    assert widget.model_combo.currentText() == "sam2.1_hiera_small", "the selection is never switched silently"
    errors = notes.messages("error")
    assert any("holds sam2.1_hiera_tiny weights, not sam2.1_hiera_small" in m and "Choose sam2.1_hiera_tiny" in m
               for m in errors), errors
    widget.model_combo.setCurrentText("sam2.1_hiera_tiny")
    qtbot.mouseClick(widget.load_button, Qt.LeftButton)
    ready(widget, qtbot)
    assert widget.loaded is not None and widget.loaded.choice.name == "sam2.1_hiera_tiny"
    click(viewer, qtbot, t.points, (48, 48))
    ready(widget, qtbot)
    assert (np.asarray(t.labels.data[0]) == 1).any()


def test_no_network_for_the_download(make_napari_viewer, qtbot, notes, clip, tmp_path, monkeypatch):
    from dataclasses import replace

    from napari_sam2.model import bundled, checkpoint

    monkeypatch.setenv("NAPARI_SAM2_CACHE", str(tmp_path / "cache"))
    # without the bundled demo model there is nothing to fall back on: the error stays
    # (the fallback itself: test_widget_model.py)
    monkeypatch.setattr(bundled, "_WEIGHTS", tmp_path / "nothing-bundled")
    entry = checkpoint.OFFICIAL_CHECKPOINTS["sam2.1_hiera_tiny"]
    offline = dict(checkpoint.OFFICIAL_CHECKPOINTS)
    offline["sam2.1_hiera_tiny"] = replace(entry, urls=("http://127.0.0.1:9/sam2.1_hiera_tiny.pt",))
    monkeypatch.setattr(checkpoint, "OFFICIAL_CHECKPOINTS", offline)

    viewer = new_viewer(make_napari_viewer, qtbot)
    viewer.add_image(clip.image)
    widget = open_widget(viewer)
    t = widget.controller.target
    widget.model_combo.setCurrentText("sam2.1_hiera_tiny")
    widget.weights_combo.setCurrentText("Official (download)")
    click(viewer, qtbot, t.points, (48, 48))
    ready(widget, qtbot)
    assert any("Downloading sam2.1_hiera_tiny once" in m for m in notes.messages("info"))
    errors = notes.messages("error")
    assert any("could not download" in m and "copy it to" in m and str(tmp_path / "cache") in m for m in errors), errors
    assert len(t.points.data) == 1 and widget.controller.model is None


class FailingStack:
    """A lazy stack whose frame 4 cannot be read (a damaged file on disk)."""

    def __init__(self, frames: np.ndarray) -> None:
        self._frames = frames
        self.shape, self.dtype, self.ndim = frames.shape, frames.dtype, frames.ndim

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        first = key[0] if isinstance(key, tuple) else key
        if isinstance(first, (int, np.integer)) and first == 4:
            raise OSError("read error in frame 4")
        return self._frames[key]


def test_propagation_error_keeps_finished_frames(make_napari_viewer, qtbot, notes, clip):
    viewer = new_viewer(make_napari_viewer, qtbot)
    viewer.add_image(FailingStack(clip.image), contrast_limits=(100, 1800), multiscale=False)
    viewer.dims.set_current_step(0, 0)
    widget = open_widget(viewer)
    widget.use_model(loaded_tiny())
    t = widget.controller.target
    click(viewer, qtbot, t.points, clip.centers[3][0])
    ready(widget, qtbot)
    widget.propagate("forward")
    ready(widget, qtbot)
    errors = notes.messages("error")
    assert any("Propagation failed after 4 frames (they are kept)" in m and "frame 4" in m for m in errors), errors
    labels = np.asarray(t.labels.data)
    assert [bool((labels[i] == 1).any()) for i in range(6)] == [True] * 4 + [False] * 2
    assert widget.status_label.text().startswith("stopped by an error")
