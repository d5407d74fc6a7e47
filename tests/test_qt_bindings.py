"""Qt bindings: the GUI tests run on Qt 6 (PyQt6), and the widget also opens and
segments on PySide6 and PyQt5 (each in its own process: one process, one binding)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import QT_BINDING

ROOT = Path(__file__).resolve().parents[1]


def _extras() -> dict[str, list[str]]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["optional-dependencies"]


def _names(requirements: list[str]) -> set[str]:
    from packaging.requirements import Requirement

    return {Requirement(r).name.lower().replace("_", "-") for r in requirements}


def test_gui_tests_run_on_the_qt6_binding(qapp):
    import qtpy

    assert qtpy.API_NAME.lower() == QT_BINDING
    if "QT_API" not in os.environ or os.environ["QT_API"] == "pyqt6":
        assert qtpy.API_NAME == "PyQt6" and qtpy.QT6


def test_qt_extra_installs_the_binding_napari_recommends():
    """``pip install napari-sam2[qt]`` brings what ``napari[pyqt]`` brings: PyQt6."""
    from importlib.metadata import requires

    ours = _names(_extras()["qt"])
    napari_pyqt6 = {r.split(";")[0] for r in requires("napari") or [] if 'extra == "pyqt6"' in r}
    assert ours == {"pyqt6", "pyqt6-qt6"}
    assert ours <= _names(sorted(napari_pyqt6)) | {"pyqt6-qt6"}
    assert {"pyqt6", "pyside6-essentials", "pyqt5"} <= _names(_extras()["testing"])


@pytest.mark.gui
@pytest.mark.parametrize("binding", ["pyside6", "pyqt5"])
def test_widget_opens_and_segments_on_another_binding(binding):
    env = {k: v for k, v in os.environ.items() if k not in ("QT_API", "PYTEST_QT_API")}
    env["QT_API"] = binding
    env.setdefault("OMP_NUM_THREADS", "2")
    script = ROOT / "tests" / "qt_binding_smoke.py"
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600)
    tail = (done.stdout + done.stderr)[-4000:]
    assert done.returncode == 0, tail
    assert f"smoke ok { {'pyside6': 'PySide6', 'pyqt5': 'PyQt5'}[binding]}" in done.stdout, tail
    assert "Traceback" not in done.stderr, tail
