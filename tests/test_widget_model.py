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
    assert (np.asarray(t.labels.data[0]) == 1).any(), "the click that started the download is used"
    # changing a setting unloads; the next action loads again (from the cache this time)
    widget.set_image_size(256)
    assert widget.loaded is None and "settings changed" in widget.model_status.text()
