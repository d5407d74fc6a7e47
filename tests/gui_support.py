"""Helpers for the GUI tests: a fast real model, user-like mouse input, notifications.

The model is the real engine (tiny variant at 128 px, untrained weights). Its object
score bias is raised so masks are non-empty (with random weights the model otherwise
answers "no object" everywhere and nothing would be written).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

TEST_SIZE = 128


_MODEL: Any = None


def tiny_model() -> Any:
    """One shared tiny model for all GUI tests (building it takes a few seconds)."""
    global _MODEL
    if _MODEL is None:
        import torch

        from napari_sam2.model import build_sam2

        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
        model = build_sam2("sam2.1_hiera_tiny", checkpoint=None, device="cpu", image_size=TEST_SIZE)
        with torch.no_grad():
            model.sam_mask_decoder.pred_obj_score_head.layers[2].bias += 8.0
        _MODEL = model
    return _MODEL


def loaded_tiny() -> Any:
    from napari_sam2.tracking import LoadedModel, ModelChoice

    choice = ModelChoice("sam2.1_hiera_tiny", checkpoint=None, device="cpu", image_size=TEST_SIZE)
    return LoadedModel(tiny_model(), choice, "test model")


def new_viewer(make_napari_viewer: Any, qtbot: Any) -> Any:
    """A napari window that is really shown (an OpenGL canvas that was never shown
    cannot pick visuals under the mouse), at a size where the panel fits."""
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1500, 950)
    qtbot.waitExposed(window)
    qtbot.wait(50)
    return viewer


def open_widget(viewer: Any) -> Any:
    """Open the dock widget through the plugin manifest, as the Plugins menu does."""
    from qtpy.QtTest import QTest

    _, widget = viewer.window.add_plugin_dock_widget("napari-sam2", "Segment and track")
    QTest.qWait(150)  # let the dock take its space: the canvas resizes once
    return widget


def ready(widget: Any, qtbot: Any, timeout: int = 300_000) -> None:
    """Wait until every queued engine job has run."""

    def idle() -> bool:
        return widget.scheduler.idle and not widget._sync_timer.isActive()

    qtbot.waitUntil(idle, timeout=timeout)
    qtbot.wait(20)


# ----------------------------------------------------------------------------- mouse
def _canvas(viewer: Any) -> Any:
    return viewer.window._qt_viewer.canvas


def canvas_point(viewer: Any, layer: Any, data_yx: tuple[float, float]) -> Any:
    """Canvas pixel (QPoint) showing the data coordinate ``data_yx`` of ``layer``."""
    from qtpy.QtCore import QPoint

    canvas = _canvas(viewer)
    full = np.array(layer.world_to_data(viewer.dims.point), float)
    full[-2:] = data_yx
    world = np.asarray(layer.data_to_world(full), float)[list(viewer.dims.displayed)]

    def to_world(p: tuple[int, int]) -> np.ndarray:
        return np.asarray(canvas._map_canvas2world(p, canvas.view), float)[list(viewer.dims.displayed)]

    origin = to_world((0, 0))
    basis = np.stack([to_world((100, 0)) - origin, to_world((0, 100)) - origin], 1) / 100
    x, y = np.linalg.solve(basis, world - origin)
    return QPoint(int(round(x)), int(round(y)))


def click(viewer: Any, qtbot: Any, layer: Any, data_yx: tuple[float, float], shift: bool = False,
          right: bool = False) -> None:
    """A real mouse click on the canvas at a data position of ``layer``."""
    from qtpy.QtCore import Qt

    native = _canvas(viewer).native
    modifiers = Qt.ShiftModifier if shift else Qt.NoModifier
    button = Qt.RightButton if right else Qt.LeftButton
    qtbot.mouseClick(native, button, modifiers, canvas_point(viewer, layer, data_yx))
    qtbot.wait(10)


def drag(viewer: Any, qtbot: Any, layer: Any, start_yx: tuple[float, float], end_yx: tuple[float, float],
         steps: int = 6) -> None:
    """Press, move with the button held, release: draws a box in rectangle mode."""
    from qtpy.QtCore import QEvent, QPointF, Qt
    from qtpy.QtGui import QMouseEvent
    from qtpy.QtWidgets import QApplication

    native = _canvas(viewer).native
    p0 = canvas_point(viewer, layer, start_yx)
    p1 = canvas_point(viewer, layer, end_yx)

    def send(kind: Any, pos: Any, button: Any, buttons: Any) -> None:
        event = QMouseEvent(kind, QPointF(pos), button, buttons, Qt.NoModifier)
        QApplication.sendEvent(native, event)

    send(QEvent.MouseButtonPress, p0, Qt.LeftButton, Qt.LeftButton)
    for i in range(1, steps + 1):
        x = p0.x() + (p1.x() - p0.x()) * i / steps
        y = p0.y() + (p1.y() - p0.y()) * i / steps
        send(QEvent.MouseMove, QPointF(x, y).toPoint(), Qt.NoButton, Qt.LeftButton)
        qtbot.wait(5)
    send(QEvent.MouseButtonRelease, p1, Qt.LeftButton, Qt.NoButton)
    qtbot.wait(10)


def press(viewer: Any, qtbot: Any, key: Any, shift: bool = False) -> None:
    """A key press on the canvas (where napari's shortcuts are handled)."""
    from qtpy.QtCore import Qt

    qtbot.keyClick(_canvas(viewer).native, key, Qt.ShiftModifier if shift else Qt.NoModifier)
    qtbot.wait(10)


# ----------------------------------------------------------------------------- notifications
class Notes:
    """Collects napari notifications shown during a test."""

    def __init__(self) -> None:
        from napari.utils.notifications import notification_manager

        self.items: list[tuple[str, str]] = []
        self._manager = notification_manager
        notification_manager.notification_ready.connect(self._add)

    def _add(self, event: Any) -> None:
        note = getattr(event, "value", event)
        self.items.append((str(note.severity).lower(), str(note.message)))

    def close(self) -> None:
        self._manager.notification_ready.disconnect(self._add)

    def messages(self, severity: str | None = None) -> list[str]:
        return [m for s, m in self.items if severity is None or severity in s]


@pytest.fixture
def notes():
    collected = Notes()
    yield collected
    collected.close()


# ----------------------------------------------------------------------------- screenshots
SCREENSHOT_ENV = "NAPARI_SAM2_SCREENSHOTS"
"""Set to a folder (e.g. docs/images) to keep a copy of the screenshots the tests take."""


def screenshot(viewer: Any, qtbot: Any, folder: Path, name: str) -> Path:
    """Save the whole window (widget included) as ``name``.png; copy it if asked to."""
    qtbot.wait(100)
    path = Path(folder) / f"{name}.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    target = os.environ.get(SCREENSHOT_ENV)
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)
    return path


def keep_for_docs(path: Path) -> Path | None:
    """With ``NAPARI_SAM2_SCREENSHOTS`` set, a copy for the docs in that folder: at most
    1000 px wide and 256 colours, so the repository stays small."""
    from PIL import Image

    target = os.environ.get(SCREENSHOT_ENV)
    if not target:
        return None
    Path(target).mkdir(parents=True, exist_ok=True)
    copy = Path(target) / Path(path).name
    image = Image.open(path).convert("RGB")
    if image.width > 1000:
        image = image.resize((1000, round(image.height * 1000 / image.width)), Image.LANCZOS)
    image.quantize(colors=256, method=Image.FASTOCTREE, dither=Image.NONE).save(copy, optimize=True)
    return copy
