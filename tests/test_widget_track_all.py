"""Track all in the dock widget: a real viewer, the real engine with random weights.

Random weights make meaningless masks, so these tests check the plumbing: frames reach the
masks layer, seed ids are there, the lineage reaches the object list, the Tracks layer and
the session file, Cancel keeps frames, filled frames are replaced only when the user says
so, and lineage edits change labels, lineage and Tracks layer together.

Run under a display (``xvfb-run -a -s "-screen 0 1600x1000x24" python -m pytest ...``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from gui_support import loaded_tiny, new_viewer, notes, open_widget, ready, screenshot  # noqa: F401
from qtpy.QtCore import QItemSelectionModel, Qt

from napari_sam2.io.lineage import Lineage, Track
from napari_sam2.io.prompts import PromptSet
from napari_sam2.sample_data import cells_timelapse
from napari_sam2.tracking.lineage_view import tracks_graph
from napari_sam2.tracking.track_all import TrackAllResult

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def clip():
    return cells_timelapse(num_frames=6, size=128, seed=3)


def _setup(make_napari_viewer, qtbot, image):
    viewer = new_viewer(make_napari_viewer, qtbot)
    viewer.add_image(image, name="cells")
    viewer.dims.set_current_step(0, 0)
    widget = open_widget(viewer)
    widget.track_all_section.set_open(True)
    return viewer, widget


def _choose_seeds(widget, name):
    combo = widget.track_all_section.seeds_combo
    widget.refresh_seed_layers()
    index = combo.findText(name)
    assert index >= 0, [combo.itemText(i) for i in range(combo.count())]
    combo.setCurrentIndex(index)


def _rows(widget):
    table = widget.object_table
    return {table.item(i, 0).text(): table.item(i, 3).text() for i in range(table.rowCount())}


def _choose_rows(widget, ids):
    """Ctrl+click rows of the object list, as a user chooses tracks."""
    table = widget.object_table
    table.clearSelection()
    for i in range(table.rowCount()):
        if int(table.item(i, 0).text()) in ids:
            table.selectionModel().select(table.model().index(i, 0), QItemSelectionModel.Select | QItemSelectionModel.Rows)
            table.selectionModel().setCurrentIndex(table.model().index(i, 0), QItemSelectionModel.NoUpdate)


def test_track_all_from_a_labels_layer(make_napari_viewer, qtbot, clip, tmp_path, notes):
    from napari_sam2.widgets.settings import settings_path

    viewer, widget = _setup(make_napari_viewer, qtbot, clip.image)
    widget.use_model(loaded_tiny())
    t = widget.controller.target
    viewer.add_labels(clip.labels.astype(np.uint16), name="cellpose")  # seeds: its plane at the current frame
    _choose_seeds(widget, "cellpose")
    section = widget.track_all_section
    section.redetect_spin.setValue(0)
    section.min_size_spin.setValue(5)
    viewer.dims.set_current_step(0, 1)
    asked = []
    widget.confirm_replace = lambda text: asked.append(text) or True
    qtbot.mouseClick(section.run_button, Qt.LeftButton)
    assert widget.busy and section.stop_button.isEnabled() and not section.run_button.isEnabled()
    ready(widget, qtbot)
    assert not asked, "an empty range is filled without asking"
    assert section.status.text().startswith("done: 5 frames"), section.status.text()
    assert section.progress.value() == section.progress.maximum() == 5
    labels = np.asarray(t.labels.data)
    assert not labels[0].any(), "track all runs forward from the current frame"
    assert all(labels[f].any() for f in range(1, 6))
    seeds = set(np.unique(clip.labels[1]).tolist()) - {0}
    assert seeds <= set(np.unique(labels[1]).tolist()), "the seed ids are the object ids on the seed frame"

    # the lineage: in the object list, in a Tracks layer next to the masks, in the session file
    lineage = t.track_record.lineage
    assert len(lineage) >= len(seeds) and set(lineage.ids) <= set(t.registry.ids())
    assert not widget.object_table.isColumnHidden(3)
    for obj, text in _rows(widget).items():
        track = lineage[int(obj)]
        if track.parent:
            assert f"{obj} ← {track.parent}" in text
    tracks = widget.tracks_layer()
    names = [layer.name for layer in viewer.layers]
    assert tracks is not None and tracks.name == f"{t.labels.name} lineage"
    assert names.index(tracks.name) == names.index(t.labels.name) + 1
    ids = set(np.unique(tracks.data[:, 0]).astype(int).tolist())
    assert ids <= set(lineage.ids) and seeds <= ids
    assert tracks.graph == tracks_graph(lineage, ids)
    assert tracks.color_by == "lineage"
    rows = tracks.data[tracks.data[:, 0] == min(seeds)]
    assert rows[:, 1].min() == 1 and rows.shape[1] == 4
    path = widget.save_prompts(str(tmp_path / "session.json"))
    saved = PromptSet.from_json(path)
    assert saved.lineage == lineage
    starts = {(p.frame, o.id) for o, p in saved.iter_prompts()}
    assert {(1, s) for s in seeds} <= starts, "each track's start mask replays the run"
    remembered = json.loads(settings_path().read_text())["panel"]
    assert remembered["track_all_redetect"] == 0 and remembered["track_all_min_size"] == 5
    assert remembered["track_all_divisions"] is True
    shot = screenshot(viewer, qtbot, tmp_path, "track-all")
    from PIL import Image

    image = np.asarray(Image.open(shot))
    assert image.shape[0] > 600 and image[..., :3].std() > 10


def test_cancel_keeps_frames_and_filled_frames_need_a_yes(make_napari_viewer, qtbot, notes):
    clip = cells_timelapse(num_frames=8, size=96, seed=5)
    viewer, widget = _setup(make_napari_viewer, qtbot, clip.image)
    widget.use_model(loaded_tiny())
    t = widget.controller.target
    calls = []

    def detector(frame):  # automatic seeding without the cost of automatic masks
        calls.append(frame)
        return clip.labels[frame].astype(np.uint32)

    widget._track_all_detector = detector
    section = widget.track_all_section
    assert section.seeds_combo.currentText() == "automatic"
    section.redetect_spin.setValue(3)
    section.min_size_spin.setValue(5)
    widget.follow_check.setChecked(False)
    qtbot.mouseClick(section.run_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: len(widget._ta_done) >= 2, timeout=300_000)
    qtbot.mouseClick(section.stop_button, Qt.LeftButton)
    ready(widget, qtbot)
    done = sorted(widget._ta_done)
    assert calls[0] == 0, "automatic seeds on the current frame"
    assert section.status.text().startswith("cancelled"), section.status.text()
    assert 2 <= len(done) < 8 and done == list(range(len(done)))
    labels = np.asarray(t.labels.data)
    assert all(labels[f].any() for f in done), "every finished frame is kept"
    assert not labels[len(done):].any(), "frames after the cancel are untouched"
    assert t.track_record.cancelled and widget.tracks_layer() is not None
    kept = labels.copy()

    asked = []
    widget.confirm_replace = lambda text: asked.append(text) or False
    assert not widget.track_all()
    assert asked and f"{len(done)} of the frames 0-7 already hold masks" in asked[0]
    assert np.array_equal(np.asarray(t.labels.data), kept) and section.status.text().startswith("not started")
    widget.confirm_replace = lambda text: True
    assert widget.track_all()
    ready(widget, qtbot)
    assert section.status.text().startswith("done: 8 frames"), section.status.text()
    assert all(np.asarray(t.labels.data[f]).any() for f in range(8))
    assert not notes.messages("error")


def _lineage_stack():
    """Object 1 divides into 2 and 3 at frame 3; one cell is tracked as 4 (0-1) then 5 (3-5)."""
    labels = np.zeros((6, 64, 64), np.uint16)
    labels[0:3, 5:15, 5:15] = 1
    labels[3:6, 5:10, 5:15] = 2
    labels[3:6, 11:16, 5:15] = 3
    labels[0:2, 40:50, 40:50] = 4
    labels[3:6, 40:50, 42:52] = 5
    return labels, Lineage([Track(1, 0, 2), Track(2, 3, 5, 1), Track(3, 3, 5, 1), Track(4, 0, 1), Track(5, 3, 5)])


def test_lineage_edits_change_labels_lineage_and_tracks_layer(make_napari_viewer, qtbot, notes):
    stack, lineage = _lineage_stack()
    viewer, widget = _setup(make_napari_viewer, qtbot, np.random.default_rng(0).integers(0, 255, stack.shape, np.uint8))
    t = widget.controller.target
    t.labels.data[:] = stack
    t.track_record = TrackAllResult(lineage, (0, 5))
    for obj in lineage.ids:
        t.registry.ensure(obj)
    tracks = widget.update_tracks_layer()
    widget.refresh_objects()
    assert tracks.graph == {2: [1], 3: [1]}
    assert _rows(widget) == {"1": "1 → 2, 3", "2": "2 ← 1", "3": "3 ← 1", "4": "", "5": ""}
    family = tracks.properties["lineage"][np.isin(tracks.data[:, 0], [1, 2, 3])]
    assert set(family.tolist()) == {1}, "a family shares one colour"
    section = widget.track_all_section

    # merge: 5 is 4 again after a missed frame
    _choose_rows(widget, {4, 5})
    assert widget.selected_tracks() == [4, 5]
    qtbot.mouseClick(section.merge_button, Qt.LeftButton)
    labels = np.asarray(t.labels.data)
    assert not (labels == 5).any() and (labels[3:] == 4).any()
    assert lineage[4] == Track(4, 0, 5) and 5 not in lineage
    assert 5 not in widget.tracks_layer().data[:, 0] and "5" not in _rows(widget)
    assert section.status.text().startswith("merged: 5 is 4 from frame 3")

    # split 4 at frame 4: a new id from there on
    widget.controller.current_object = 4
    viewer.dims.set_current_step(0, 4)
    qtbot.mouseClick(section.split_button, Qt.LeftButton)
    new = max(lineage.ids)
    labels = np.asarray(t.labels.data)
    assert [bool((labels[f] == new).any()) for f in range(6)] == [False] * 4 + [True] * 2
    assert lineage[4] == Track(4, 0, 3) and lineage[new] == Track(new, 4, 5)
    assert new in widget.tracks_layer().data[:, 0] and str(new) in _rows(widget)

    # unmark and mark a division
    _choose_rows(widget, {2})
    qtbot.mouseClick(section.unmark_button, Qt.LeftButton)
    assert lineage[2].parent == 0 and widget.tracks_layer().graph == {3: [1]}
    assert _rows(widget)["1"] == "1 → 3"
    _choose_rows(widget, {1, 2})
    qtbot.mouseClick(section.division_button, Qt.LeftButton)
    assert widget.tracks_layer().graph == {2: [1], 3: [1]}
    assert _rows(widget)["2"] == "2 ← 1"

    # a refused edit says why and changes nothing
    before = np.asarray(t.labels.data).copy()
    _choose_rows(widget, {2, 3})
    qtbot.mouseClick(section.merge_button, Qt.LeftButton)
    assert any("overlap in time" in m for m in notes.messages("warning"))
    assert np.array_equal(np.asarray(t.labels.data), before)

    # deleting an object takes it out of the lineage
    widget.delete_object(3)
    assert 3 not in lineage and widget.tracks_layer().graph == {2: [1]}
    lineage.check()


def test_session_file_lineage_is_loaded_back(make_napari_viewer, qtbot, tmp_path, notes):
    stack, lineage = _lineage_stack()
    prompts = PromptSet(lineage=lineage)
    for obj in lineage:
        prompts.set_prompt(obj.id, obj.first, mask=stack[obj.first] == obj.id)
    path = prompts.to_json(tmp_path / "session.json")
    viewer, widget = _setup(make_napari_viewer, qtbot, np.zeros(stack.shape, np.uint8))
    widget.use_model(loaded_tiny())
    widget.load_prompts(str(path))
    ready(widget, qtbot)
    t = widget.controller.target
    assert t.track_record.lineage == lineage
    assert _rows(widget)["1"] == "1 → 2, 3"
    assert widget.tracks_layer().graph == {2: [1], 3: [1]}
    assert not notes.messages("error")
