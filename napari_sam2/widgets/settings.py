"""The panel remembers its settings between launches.

The choices a user makes once (model, weights file, device, input size, contrast,
propagation direction and range, track-all and fine-tuning options) are written to a small JSON file
in the user configuration folder whenever they change, and restored when the panel
opens. ``NAPARI_SAM2_CONFIG`` moves the folder. A missing, unreadable or outdated file
is ignored: the panel then starts with its defaults; a value that no longer fits (a
model or device that is not offered any more) is skipped.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["CONFIG_ENV", "settings_path", "read_settings", "write_settings", "PanelSettings"]

CONFIG_ENV = "NAPARI_SAM2_CONFIG"
FORMAT = 1
_log = logging.getLogger(__name__)


def settings_path() -> Path:
    """Where the panel's settings are kept."""
    folder = os.environ.get(CONFIG_ENV)
    if not folder:
        from platformdirs import user_config_dir

        folder = user_config_dir("napari-sam2", appauthor=False)
    return Path(folder).expanduser() / "panel.json"


def read_settings(path: Path | None = None) -> dict[str, Any]:
    """The saved settings, or ``{}`` when there are none that can be used."""
    path = path or settings_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("panel"), dict):
        return {}
    return data["panel"]


def write_settings(values: dict[str, Any], path: Path | None = None) -> bool:
    """Replace the saved settings (atomically); False if the folder is not writable."""
    path = path or settings_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".panel-", suffix=".json", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"format": FORMAT, "panel": values}, f, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:  # a read-only home must not break the panel
        _log.debug("could not save the panel settings to %s: %s", path, exc)
        return False
    return True


class PanelSettings:
    """Reads the remembered values into the panel's controls and saves them on change."""

    def __init__(self, panel: Any, path: Path | None = None) -> None:
        self.panel = panel
        self.path = path
        self._restoring = False

    # ------------------------------------------------------------------ the controls
    def _combos(self) -> dict[str, tuple[Any, str]]:
        """name -> (combo box, 'text' or 'data': what identifies the choice)."""
        p = self.panel
        combos = {
            "model": (p.model_combo, "text"),
            "weights": (p.weights_combo, "text"),
            "device": (p.device_combo, "data"),
            "image_size": (p.size_combo, "data"),
            "contrast": (p.contrast_combo, "text"),
            "direction": (p.direction_combo, "text"),
        }
        section = getattr(p, "finetune", None)
        if section is not None:
            combos["finetune_frames"] = (section.frames_combo, "text")
            combos["finetune_train"] = (section.trainable_combo, "data")
        return combos

    def _checks(self) -> dict[str, Any]:
        p = self.panel
        checks = {"all_frames": p.all_frames_check, "follow": p.follow_check}
        section = getattr(p, "track_all_section", None)
        if section is not None:
            checks["track_all_divisions"] = section.divisions_check
        return checks

    def _spins(self) -> dict[str, Any]:
        """name -> integer spin box (besides the fine-tuning steps, kept as before)."""
        section = getattr(self.panel, "track_all_section", None)
        if section is None:
            return {}
        return {"track_all_redetect": section.redetect_spin, "track_all_min_size": section.min_size_spin}

    def values(self) -> dict[str, Any]:
        """The current settings, as they would be saved."""
        values: dict[str, Any] = {}
        for name, (combo, by) in self._combos().items():
            values[name] = combo.currentText() if by == "text" else combo.currentData()
        for name, check in self._checks().items():
            values[name] = check.isChecked()
        for name, spin in self._spins().items():
            values[name] = spin.value()
        values["checkpoint"] = self.panel.path_edit.text()
        section = getattr(self.panel, "finetune", None)
        if section is not None:
            values["finetune_steps"] = section.steps_spin.value()
        return values

    # ------------------------------------------------------------------ restore, save
    def restore(self) -> dict[str, Any]:
        """Put the saved values into the controls; returns what was applied."""
        saved = read_settings(self.path)
        applied: dict[str, Any] = {}
        self._restoring = True
        try:
            for name, (combo, by) in self._combos().items():
                if name not in saved:
                    continue
                value = saved[name]
                index = combo.findText(value) if by == "text" and isinstance(value, str) else combo.findData(value)
                if by == "data" and value is None:  # findData(None) is unreliable across bindings
                    index = next((i for i in range(combo.count()) if combo.itemData(i) is None), -1)
                if index >= 0:
                    combo.setCurrentIndex(index)
                    applied[name] = value
            for name, check in self._checks().items():
                if isinstance(saved.get(name), bool):
                    check.setChecked(saved[name])
                    applied[name] = saved[name]
            for name, spin in self._spins().items():
                value = saved.get(name)
                if isinstance(value, int) and not isinstance(value, bool) and spin.minimum() <= value <= spin.maximum():
                    spin.setValue(value)
                    applied[name] = value
            if isinstance(saved.get("checkpoint"), str):
                self.panel.path_edit.setText(saved["checkpoint"])
                applied["checkpoint"] = saved["checkpoint"]
            section = getattr(self.panel, "finetune", None)
            steps = saved.get("finetune_steps")
            if section is not None and isinstance(steps, int) and not isinstance(steps, bool):
                section.steps_spin.setValue(steps)
                applied["finetune_steps"] = section.steps_spin.value()
        finally:
            self._restoring = False
        return applied

    def save(self, *args: Any) -> None:
        if not self._restoring:
            write_settings(self.values(), self.path)

    def watch(self) -> None:
        """Save whenever one of the remembered controls changes."""
        for combo, _ in self._combos().values():
            combo.currentIndexChanged.connect(self.save)
        for check in self._checks().values():
            check.toggled.connect(self.save)
        for spin in self._spins().values():
            spin.valueChanged.connect(self.save)
        self.panel.path_edit.textChanged.connect(self.save)
        section = getattr(self.panel, "finetune", None)
        if section is not None:
            section.steps_spin.valueChanged.connect(self.save)
