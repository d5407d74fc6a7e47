"""Open napari with the widget on the Qt binding named by QT_API, click, check the mask.

Run as a script in its own process (a process can load one Qt binding only):
``QT_API=pyside6 python tests/qt_binding_smoke.py``. Prints ``smoke ok <binding> <Qt
version>`` and exits 0 when the click was segmented; any failure exits non-zero.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    import numpy as np
    import qtpy
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest
    from qtpy.QtWidgets import QApplication

    wanted = os.environ["QT_API"].lower()
    if qtpy.API_NAME.lower() != wanted:
        print(f"asked for {wanted}, qtpy chose {qtpy.API_NAME}", file=sys.stderr)
        return 3

    import napari
    from gui_support import _canvas, canvas_point, loaded_tiny

    from napari_sam2.sample_data import cells_timelapse

    cells = cells_timelapse(num_frames=4, size=128, seed=3)
    viewer = napari.Viewer(show=True)
    try:
        viewer.window._qt_window.resize(1500, 950)
        QTest.qWait(200)
        viewer.add_image(cells.image)
        viewer.dims.set_current_step(0, 0)
        _, widget = viewer.window.add_plugin_dock_widget("napari-sam2", "Segment and track")
        QTest.qWait(200)
        widget.use_model(loaded_tiny())
        t = widget.controller.target
        point = canvas_point(viewer, t.points, cells.centers[1][0])
        QTest.mouseClick(_canvas(viewer).native, Qt.LeftButton, Qt.NoModifier, point)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            QTest.qWait(50)
            if widget.scheduler.idle and not widget._sync_timer.isActive() and len(t.points.data):
                break
        QTest.qWait(50)
        assert len(t.points.data) == 1, "the click did not add a point"
        assert (np.asarray(t.labels.data[0]) == 1).any(), "the click was not segmented"
        print(f"smoke ok {qtpy.API_NAME} {qtpy.QT_VERSION}")
        return 0
    finally:
        viewer.close()
        QApplication.processEvents()


if __name__ == "__main__":
    sys.exit(main())
