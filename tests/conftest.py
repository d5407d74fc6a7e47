"""Shared pytest set-up: deterministic torch and the reference oracle on the path."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

# The GUI tests run on Qt 6 through PyQt6, the binding napari's `pyqt` extra installs
# (PySide6 and PyQt5 are installed too, for smoke tests on other bindings). Both qtpy (napari and
# the widget) and pytest-qt read these before anything imports Qt; set QT_API to run the
# suite on another binding.
QT_BINDING = os.environ.setdefault("QT_API", "pyqt6")
os.environ.setdefault("PYTEST_QT_API", QT_BINDING)


@pytest.fixture(scope="session", autouse=True)
def _panel_settings_folder(tmp_path_factory):
    """The panel's remembered settings go to a temporary folder, never the user's."""
    folder = tmp_path_factory.mktemp("napari-sam2-config")
    before = os.environ.get("NAPARI_SAM2_CONFIG")
    os.environ["NAPARI_SAM2_CONFIG"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("NAPARI_SAM2_CONFIG", None)
    else:
        os.environ["NAPARI_SAM2_CONFIG"] = before


@pytest.fixture(autouse=True)
def _fresh_panel_settings(_panel_settings_folder):
    """Each test starts with a panel that remembers nothing."""
    for path in _panel_settings_folder.glob("*.json"):
        path.unlink()
    yield


@pytest.fixture(autouse=True)
def _deterministic_torch():
    import torch

    torch.manual_seed(0)
    yield


@pytest.fixture
def one_torch_thread():
    """Run torch on one thread (fast on busy machines), restoring the setting after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
