"""Model choice in the widget: first-use download with progress, then the model is used."""

from __future__ import annotations

import functools
import http.server
import threading
from dataclasses import replace

import numpy as np
import pytest
from gui_support import TEST_SIZE, click, new_viewer, notes, open_widget, ready, tiny_model  # noqa: F401
from qtpy.QtCore import QTimer

from napari_sam2.sample_data import cells_timelapse

pytestmark = pytest.mark.gui


@pytest.fixture
def served_checkpoint(tmp_path, monkeypatch):
    """The tiny model's weights behind a loopback HTTP server, as the official file."""
    import torch

    from napari_sam2.model import checkpoint

    folder = tmp_path / "server"
    folder.mkdir()
    path = folder / "sam2.1_hiera_tiny.pt"
    torch.save({"model": tiny_model().state_dict()}, path)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{path.name}"
    entry = replace(
        checkpoint.OFFICIAL_CHECKPOINTS["sam2.1_hiera_tiny"],
        urls=(url,),
        sha256=checkpoint.sha256sum(path),
        size=path.stat().st_size,
    )
    table = dict(checkpoint.OFFICIAL_CHECKPOINTS)
    table["sam2.1_hiera_tiny"] = entry
    monkeypatch.setattr(checkpoint, "OFFICIAL_CHECKPOINTS", table)
    monkeypatch.setenv("NAPARI_SAM2_CACHE", str(tmp_path / "cache"))
    yield tmp_path / "cache" / path.name
    server.shutdown()


def test_first_click_downloads_with_progress_then_segments(make_napari_viewer, qtbot, notes, served_checkpoint):
    clip = cells_timelapse(num_frames=3, size=96, seed=8)
    viewer = new_viewer(make_napari_viewer, qtbot)
    viewer.add_image(clip.image)
    viewer.dims.set_current_step(0, 0)
    widget = open_widget(viewer)
    widget.model_combo.setCurrentText("sam2.1_hiera_tiny")
    widget.weights_combo.setCurrentText("Official (download)")
    widget.device_combo.setCurrentIndex(widget.device_combo.findData("cpu"))
    widget.set_image_size(TEST_SIZE)
    seen = []
    probe = QTimer()
    probe.timeout.connect(lambda: seen.append(widget.progress_bar.format()))
    probe.start(2)
    t = widget.controller.target
    click(viewer, qtbot, t.points, clip.centers[3][0])
    ready(widget, qtbot, timeout=300_000)
    probe.stop()
    assert served_checkpoint.is_file(), "the file is cached for next time"
    assert any(f.startswith("download") and "MB" in f for f in seen), "download progress was shown"
    assert any("Downloading sam2.1_hiera_tiny once" in m for m in notes.messages("info"))
    assert widget.loaded is not None and widget.model_status.text().startswith("loaded: sam2.1_hiera_tiny on cpu")
    assert "session caches up to" in widget.model_status.text() and "image features" in widget.model_status.toolTip()
    assert (np.asarray(t.labels.data[0]) == 1).any(), "the click that started the download is used"
    # changing a setting unloads; the next action loads again (from the cache this time)
    widget.set_image_size(256)
    assert widget.loaded is None and "settings changed" in widget.model_status.text()


# ----------------------------------------------------------------------------- the bundled demo model
DEMO = "demo (bundled, trained on synthetic data)"


def _widget_with_image(make_napari_viewer, qtbot, seed=8):
    clip = cells_timelapse(num_frames=3, size=96, seed=seed)
    viewer = new_viewer(make_napari_viewer, qtbot)
    viewer.add_image(clip.image)
    viewer.dims.set_current_step(0, 0)
    widget = open_widget(viewer)
    widget.device_combo.setCurrentIndex(widget.device_combo.findData("cpu"))
    return viewer, widget, clip


def test_demo_entry_loads_the_bundled_file_without_a_download(make_napari_viewer, qtbot, notes, tmp_path, monkeypatch):
    from miniature import go_offline, install_as_demo

    install_as_demo(tmp_path / "bundled", monkeypatch)
    tried = go_offline(tmp_path / "cache", monkeypatch)
    viewer, widget, clip = _widget_with_image(make_napari_viewer, qtbot)
    widget.model_combo.setCurrentText(DEMO)
    assert widget.model_combo.currentText() == DEMO and widget.model_combo.currentData() == "demo"
    t = widget.controller.target
    click(viewer, qtbot, t.points, clip.centers[1][0])
    ready(widget, qtbot)
    status = widget.model_status.text()
    assert tried == [] and status.startswith("loaded: demo on cpu") and "could not" not in status
    assert not any("Downloading" in m for m in notes.messages("info"))
    assert not any("demo" in m for m in notes.messages("warning"))
    assert widget.loaded.choice.name == "demo" and not widget.loaded.fell_back
    assert (np.asarray(t.labels.data[0]) == 1).any()


def test_demo_entry_shows_its_own_weights_and_size(make_napari_viewer, qtbot):
    """The bundled model brings its weights and input size: those rows rest, and say so."""
    from napari_sam2.widgets.panel import LOCAL_WEIGHTS

    viewer, widget, _clip = _widget_with_image(make_napari_viewer, qtbot)
    widget.weights_combo.setCurrentText(LOCAL_WEIGHTS)
    widget.size_combo.setCurrentIndex(widget.size_combo.findData(512))
    widget.model_combo.setCurrentText(DEMO)
    assert not widget.size_combo.isEnabled() and widget.size_combo.currentText() == "the model's own"
    assert not widget.weights_combo.isEnabled() and not widget.path_row.isVisibleTo(widget)
    choice = widget.model_choice()
    assert choice.name == "demo" and choice.image_size is None and choice.checkpoint == "official"
    widget.model_combo.setCurrentIndex(widget.model_combo.findData("sam2.1_hiera_tiny"))
    assert widget.size_combo.isEnabled() and widget.weights_combo.isEnabled()
    assert widget.size_combo.currentText() == "1024 px (best)"


def test_no_network_falls_back_to_the_demo_model(make_napari_viewer, qtbot, notes, tmp_path, monkeypatch):
    from miniature import go_offline, install_as_demo

    from napari_sam2.io.prompts import PromptSet

    install_as_demo(tmp_path / "bundled", monkeypatch)
    tried = go_offline(tmp_path / "cache", monkeypatch)
    viewer, widget, clip = _widget_with_image(make_napari_viewer, qtbot)
    widget.model_combo.setCurrentText("sam2.1_hiera_tiny")
    widget.weights_combo.setCurrentText("Official (download)")
    t = widget.controller.target
    click(viewer, qtbot, t.points, clip.centers[1][0])
    ready(widget, qtbot)
    assert tried == ["sam2.1_hiera_tiny"]
    status = widget.model_status.text()
    assert status.startswith("loaded: demo on cpu"), status
    assert "sam2.1_hiera_tiny could not be downloaded" in status and "bundled demo model (trained on synthetic data)" in status
    warnings = notes.messages("warning")
    assert any("Could not download sam2.1_hiera_tiny" in m and "using the bundled demo model instead" in m for m in warnings), warnings
    assert not notes.messages("error")
    assert widget.loaded.choice.name == "demo" and widget.loaded.requested.name == "sam2.1_hiera_tiny"
    assert (np.asarray(t.labels.data[0]) == 1).any(), "the click that started the load is used"
    # the settings still say what was asked for, so the model stays loaded; saved prompts name the model that ran
    assert widget.model_combo.currentText() == "sam2.1_hiera_tiny"
    widget._model_settings_changed()
    assert widget.loaded is not None
    saved = PromptSet.from_json(widget.save_prompts(str(tmp_path / "prompts.json")))
    assert saved.model == "demo" and saved.image_size == 64


def test_a_cancelled_download_does_not_fall_back(make_napari_viewer, qtbot, notes, tmp_path, monkeypatch):
    import time

    from miniature import install_as_demo

    from napari_sam2.model import checkpoint

    install_as_demo(tmp_path / "bundled", monkeypatch)
    monkeypatch.setenv("NAPARI_SAM2_CACHE", str(tmp_path / "cache"))
    viewer, widget, clip = _widget_with_image(make_napari_viewer, qtbot)
    widget.model_combo.setCurrentText("sam2.1_hiera_tiny")
    widget.weights_combo.setCurrentText("Official (download)")
    started = threading.Event()

    def slow_download(name, progress=True):  # reports until the user cancels (the callback raises)
        started.set()
        for _ in range(100_000):
            progress(0, 0)  # size not known yet: no progress bar, only the cancel check
            time.sleep(0.01)
        raise AssertionError("never cancelled")

    def fails_as_cancelled(name, progress=True):  # the network fails just as the user cancels
        started.set()
        widget._cancel.wait(30)
        raise checkpoint.DownloadError(f"could not download the {name} checkpoint", name, ("x: OSError: gone",))

    for fake in (slow_download, fails_as_cancelled):
        started.clear()
        monkeypatch.setattr(checkpoint, "download_checkpoint", fake)
        widget.load_model()
        qtbot.waitUntil(started.is_set, timeout=10_000)
        widget.cancel()
        ready(widget, qtbot)
        assert widget.loaded is None and widget.controller.model is None, fake.__name__
        assert widget.model_status.text().startswith("loading cancelled"), fake.__name__
    assert not any("demo" in m for m in notes.messages()), notes.items
