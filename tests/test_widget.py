"""The dock widget driven like a user would: real viewer, real mouse and keys, real engine.

Run under a display (``xvfb-run -a -s "-screen 0 1600x1000x24" python -m pytest ...``).
"""

from __future__ import annotations

import numpy as np
import pytest
from gui_support import click, drag, loaded_tiny, notes, new_viewer, open_widget, press, ready  # noqa: F401
from qtpy.QtCore import Qt, QTimer

from napari_sam2.sample_data import cells_timelapse, rgb_clip

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def small_cells():
    """A short, small time-lapse so propagation takes seconds on two CPU cores."""
    return cells_timelapse(num_frames=10, size=128, seed=3)


def _setup(viewer, image, **kwargs):
    layer = viewer.add_image(image, **kwargs)
    viewer.dims.set_current_step(0, 0)
    widget = open_widget(viewer)
    widget.use_model(loaded_tiny())
    return layer, widget


def test_sample_data_click_segments_current_frame(make_napari_viewer, qtbot):
    viewer = new_viewer(make_napari_viewer, qtbot)
    viewer.open_sample("napari-sam2", "cells")
    widget = open_widget(viewer)
    t = widget.controller.target
    names = [layer.name for layer in viewer.layers]
    assert names == [
        "cells (synthetic)",
        "cells (synthetic) masks",
        "cells (synthetic) boxes",
        "cells (synthetic) clicks",
    ]
    assert viewer.layers.selection.active.name == t.points.name
    assert t.points.mode == "add", t.points.mode
    assert t.labels.data.shape == (48, 256, 256)
    assert widget.axis_combo.currentText().startswith("t")
    widget.use_model(loaded_tiny())

    frame = int(viewer.dims.current_step[0])
    clip = cells_timelapse()
    r, c = clip.centers[3][frame]
    click(viewer, qtbot, t.points, (r, c))
    assert len(t.points.data) == 1
    assert list(t.points.features["prompt"]) == ["positive"]
    assert list(t.points.features["object"]) == [1]
    ready(widget, qtbot)
    written = np.asarray(t.labels.data[frame])
    assert (written == 1).any(), "a click must segment the object on its frame at once"
    others = [i for i in range(48) if i != frame]
    assert not np.asarray(t.labels.data[others]).any(), "only the clicked frame changes"
    assert widget.object_table.rowCount() == 1
    assert widget.object_table.item(0, 2).text() == str(frame)


def test_negative_clicks_shift_right_and_toggle(make_napari_viewer, qtbot, small_cells):
    viewer = new_viewer(make_napari_viewer, qtbot)
    _, widget = _setup(viewer, small_cells.image)
    t = widget.controller.target
    click(viewer, qtbot, t.points, (40, 40))
    click(viewer, qtbot, t.points, (50, 50), shift=True)
    click(viewer, qtbot, t.points, (60, 60), right=True)
    press(viewer, qtbot, Qt.Key_N)  # plain clicks are negative now
    assert widget.negative_radio.isChecked()
    click(viewer, qtbot, t.points, (70, 70))
    click(viewer, qtbot, t.points, (80, 80), shift=True)  # the opposite: positive
    assert list(t.points.features["prompt"]) == ["positive", "negative", "negative", "negative", "positive"]
    face = np.asarray(t.points.face_color)
    assert face[0, 1] > face[0, 0] and face[1, 0] > face[1, 1], "positive is green, negative red"
    ready(widget, qtbot)
    prompts = widget.controller.prompts()
    assert list(prompts) == [(0, 1)]
    assert prompts[(0, 1)].labels == (1, 0, 0, 0, 1)


def test_box_prompt_drawn_with_the_mouse(make_napari_viewer, qtbot, small_cells):
    viewer = new_viewer(make_napari_viewer, qtbot)
    _, widget = _setup(viewer, small_cells.image)
    t = widget.controller.target
    viewer.layers.selection.active = t.boxes
    assert t.boxes.mode == "add_rectangle"
    drag(viewer, qtbot, t.boxes, (30, 30), (70, 80))
    assert len(t.boxes.data) == 1
    ready(widget, qtbot)
    box = widget.controller.prompts()[(0, 1)].box
    assert box is not None and np.allclose(box, (30, 30, 70, 80), atol=2)
    assert (np.asarray(t.labels.data[0]) == 1).any()


def test_propagate_keeps_event_loop_running(make_napari_viewer, qtbot, small_cells):
    viewer = new_viewer(make_napari_viewer, qtbot)
    _, widget = _setup(viewer, small_cells.image)
    t = widget.controller.target
    r, c = small_cells.centers[3][4]
    viewer.dims.set_current_step(0, 4)
    click(viewer, qtbot, t.points, (r, c))
    ready(widget, qtbot)

    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(widget.busy))
    timer.start(10)
    frames_while_busy = []
    probe = QTimer()
    probe.timeout.connect(lambda: frames_while_busy.append(widget._frames_done) if widget.busy else None)
    probe.start(5)
    qtbot.mouseClick(widget.propagate_button, Qt.LeftButton)
    ready(widget, qtbot)
    timer.stop()
    probe.stop()
    busy_ticks = sum(ticks)
    assert busy_ticks >= 10, f"the Qt event loop must keep running during propagation ({busy_ticks} ticks)"
    # results arrive frame by frame: several counts were seen while the worker ran
    assert len(set(frames_while_busy)) >= 3, frames_while_busy
    labels = np.asarray(t.labels.data)
    assert all((labels[i] == 1).any() for i in range(10)), "every frame has the object"
    assert widget.status_label.text().startswith("done")
    assert widget.progress_bar.value() == widget.progress_bar.maximum() == 6 + 5  # 4..9, then 4..0


def test_cancel_keeps_finished_frames(make_napari_viewer, qtbot, small_cells):
    viewer = new_viewer(make_napari_viewer, qtbot)
    _, widget = _setup(viewer, small_cells.image)
    t = widget.controller.target
    r, c = small_cells.centers[3][0]
    click(viewer, qtbot, t.points, (r, c))
    ready(widget, qtbot)
    widget.direction_combo.setCurrentText("Forward")
    qtbot.mouseClick(widget.propagate_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: widget._frames_done >= 3, timeout=300_000)
    assert widget.cancel_button.isEnabled()
    qtbot.mouseClick(widget.cancel_button, Qt.LeftButton)
    ready(widget, qtbot)
    done = widget._frames_done
    assert 3 <= done < 10, done
    assert widget.status_label.text().startswith("cancelled")
    labels = np.asarray(t.labels.data)
    has = [bool((labels[i] == 1).any()) for i in range(10)]
    assert has[:done] == [True] * done, "every finished frame is kept"
    assert not any(has[done:]), "frames after the cancel are untouched"
    # the engine is still usable: propagate again and finish
    qtbot.mouseClick(widget.propagate_button, Qt.LeftButton)
    ready(widget, qtbot)
    assert all((np.asarray(t.labels.data[i]) == 1).any() for i in range(10))


def test_painted_frames_are_never_overwritten(make_napari_viewer, qtbot, small_cells):
    viewer = new_viewer(make_napari_viewer, qtbot)
    _, widget = _setup(viewer, small_cells.image)
    t = widget.controller.target
    click(viewer, qtbot, t.points, small_cells.centers[3][0])
    ready(widget, qtbot)
    # paint object 2 by hand on frame 6 with the brush
    viewer.dims.set_current_step(0, 6)
    viewer.layers.selection.active = t.labels
    t.labels.selected_label = 2
    t.labels.brush_size = 12
    t.labels.mode = "paint"
    click(viewer, qtbot, t.labels, (100, 100))
    painted = np.asarray(t.labels.data[6]).copy()
    assert (painted == 2).sum() > 20
    ready(widget, qtbot)
    rows = {widget.object_table.item(i, 0).text(): widget.object_table.item(i, 2).text() for i in range(widget.object_table.rowCount())}
    assert rows == {"1": "0", "2": "6"}, "the painted frame is a mask prompt of object 2"
    widget.propagate()
    ready(widget, qtbot)
    assert np.array_equal(np.asarray(t.labels.data[6]), painted), "propagation left the painted frame alone"
    assert (np.asarray(t.labels.data[5]) == 1).any()
    assert "hand-painted" in widget.status_label.text()
    # clearing is explicit: Clear frame unlocks it
    viewer.dims.set_current_step(0, 6)
    t.labels.selected_label = 2
    qtbot.mouseClick(widget.clear_button, Qt.LeftButton)
    assert not (np.asarray(t.labels.data[6]) == 2).any()
    assert (6, 2) not in widget.controller.prompts()


def test_object_list_new_rename_delete_and_keys(make_napari_viewer, qtbot, small_cells):
    viewer = new_viewer(make_napari_viewer, qtbot)
    _, widget = _setup(viewer, small_cells.image)
    t = widget.controller.target
    click(viewer, qtbot, t.points, small_cells.centers[3][0])
    ready(widget, qtbot)
    press(viewer, qtbot, Qt.Key_N, shift=True)  # new object
    assert t.labels.selected_label == 2
    click(viewer, qtbot, t.points, small_cells.centers[5][0])
    ready(widget, qtbot)
    table = widget.object_table
    assert table.rowCount() == 2
    assert table.selectedItems()[0].text() == "2"
    # rename by editing the name cell
    table.item(0, 1).setText("mother cell")
    assert widget.controller.target.registry.name(1) == "mother cell"
    # previous / next object with , and .
    press(viewer, qtbot, Qt.Key_Comma)
    assert t.labels.selected_label == 1
    press(viewer, qtbot, Qt.Key_Period)
    assert t.labels.selected_label == 2
    # selecting a row makes it current
    table.selectRow(0)
    assert t.labels.selected_label == 1
    assert (np.asarray(t.labels.data[0]) == 1).any() or (np.asarray(t.labels.data[0]) == 2).any()
    widget.delete_object(2)
    assert table.rowCount() == 1
    assert 2 not in set(t.points.features["object"])
    assert not (np.asarray(t.labels.data) == 2).any()
    ready(widget, qtbot)
    assert widget.controller.session.obj_ids == [1]


def test_rgb_video_and_propagate_key(make_napari_viewer, qtbot):
    clip = rgb_clip(num_frames=8, height=96, width=128)
    viewer = new_viewer(make_napari_viewer, qtbot)
    layer, widget = _setup(viewer, clip.image, rgb=True)
    t = widget.controller.target
    assert layer.rgb and t.labels.data.shape == (8, 96, 128)
    click(viewer, qtbot, t.points, clip.centers[2][0])
    ready(widget, qtbot)
    press(viewer, qtbot, Qt.Key_G)
    ready(widget, qtbot)
    labels = np.asarray(t.labels.data)
    assert all((labels[i] == 1).any() for i in range(8))


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_gray_time_lapse_of_other_dtypes(make_napari_viewer, qtbot, small_cells, dtype):
    image = small_cells.image[:4].astype(dtype)
    if dtype == np.float32:
        image = image / 1000.0
    viewer = new_viewer(make_napari_viewer, qtbot)
    _, widget = _setup(viewer, image)
    t = widget.controller.target
    click(viewer, qtbot, t.points, small_cells.centers[3][0])
    ready(widget, qtbot)
    widget.propagate()
    ready(widget, qtbot)
    assert all((np.asarray(t.labels.data[i]) == 1).any() for i in range(4))


def test_closing_the_panel_mid_propagation_stops_cleanly(make_napari_viewer, qtbot, small_cells):
    viewer = new_viewer(make_napari_viewer, qtbot)
    _, widget = _setup(viewer, small_cells.image)
    t = widget.controller.target
    click(viewer, qtbot, t.points, small_cells.centers[3][0])
    ready(widget, qtbot)
    widget.propagate("forward")
    qtbot.waitUntil(lambda: widget._frames_done >= 2, timeout=300_000)
    worker = widget._worker
    labels = t.labels
    viewer.window.remove_dock_widget("all")
    qtbot.waitUntil(lambda: not worker.is_running, timeout=300_000)
    qtbot.wait(100)
    done = [i for i in range(10) if (np.asarray(labels.data[i]) == 1).any()]
    assert 2 <= len(done) < 10, "the job stopped soon after the panel closed; finished frames stay"
    assert len(viewer.layers) == 4, "the layers stay"
    press(viewer, qtbot, Qt.Key_G)  # the panel's shortcuts are gone with it
    assert widget._worker is worker and not worker.is_running


def test_save_and_load_prompts(make_napari_viewer, qtbot, small_cells, tmp_path, notes):
    viewer = new_viewer(make_napari_viewer, qtbot)
    layer, widget = _setup(viewer, small_cells.image)
    t = widget.controller.target
    click(viewer, qtbot, t.points, small_cells.centers[3][0])
    click(viewer, qtbot, t.points, (5, 5), shift=True)
    ready(widget, qtbot)
    widget.new_object()
    viewer.dims.set_current_step(0, 2)
    viewer.layers.selection.active = t.boxes
    drag(viewer, qtbot, t.boxes, (60, 60), (90, 100))
    viewer.dims.set_current_step(0, 5)
    viewer.layers.selection.active = t.labels
    t.labels.selected_label = 3
    t.labels.mode = "fill"
    click(viewer, qtbot, t.labels, (2, 120))  # fill the background with object 3 on frame 5
    ready(widget, qtbot)
    widget.object_table.item(0, 1).setText("mother")
    before = widget.controller.prompts()
    assert set(before) == {(0, 1), (2, 2), (5, 3)}
    path = widget.save_prompts(str(tmp_path / "prompts.json"))
    assert path is not None

    # a fresh viewer on the same image gets the same prompts back
    viewer.layers.clear()
    viewer.add_image(small_cells.image, name="again")
    qtbot.waitUntil(lambda: widget.controller.target is not None and widget.controller.target.image.name == "again", timeout=5000)
    t2 = widget.controller.target
    assert widget.load_prompts(path) == 3
    ready(widget, qtbot)
    after = widget.controller.prompts()
    assert set(after) == set(before)
    assert after[(0, 1)].points == before[(0, 1)].points and after[(0, 1)].labels == (1, 0)
    assert np.allclose(after[(2, 2)].box, before[(2, 2)].box)
    assert after[(5, 3)].painted
    assert t2.registry.name(1) == "mother"
    assert (np.asarray(t2.labels.data[0]) == 1).any() and (np.asarray(t2.labels.data[2]) == 2).any()
    assert {(f, o) for f, o in widget.controller.synced} == set(before)

    # prompts made on another stack are refused with a clear message
    viewer.layers.clear()
    viewer.add_image(small_cells.image[:3], name="short")
    qtbot.waitUntil(lambda: widget.controller.target is not None and widget.controller.target.image.name == "short", timeout=5000)
    assert widget.load_prompts(path) == 0
    assert any("Could not load the prompts" in m and "shape" in m for m in notes.messages("error"))
