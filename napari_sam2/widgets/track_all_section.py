"""The Track all section of the dock widget: its controls and layout (Qt only, no behaviour).

Collapsed by default: a header button opens it. :class:`~.track_all_actions.TrackAllActions`
gives the controls their behaviour.
"""

from __future__ import annotations

from typing import Any, Callable

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QWidget,
)

from .collapsible import CollapsibleSection
from .finetune_section import ElidedLabel

__all__ = ["TrackAllSection", "LayerCombo", "AUTOMATIC"]

AUTOMATIC = "automatic"


class LayerCombo(QComboBox):
    """A combo box of layers that asks for a fresh list when it opens (layers are added,
    removed and renamed while the panel is open)."""

    def __init__(self, refresh: Callable[[], None] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.refresh = refresh

    def showPopup(self) -> None:  # noqa: N802 - Qt API
        if self.refresh is not None:
            self.refresh()
        super().showPopup()


class TrackAllSection(CollapsibleSection):
    """Header button + the track-all controls, hidden until the header is clicked."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Track all", "Track every object of the stack: new objects, divisions and a lineage", parent)
        form = self.form

        self.seeds_combo = LayerCombo()
        self.seeds_combo.setToolTip(
            "Where the objects of the current frame come from: automatic mask generation, or a\n"
            "labels layer (one object per label; a 2D layer, or its plane at the current frame).\n"
            "Objects you prompted are tracked with them and keep their ids."
        )
        self.redetect_spin = QSpinBox()
        self.redetect_spin.setRange(0, 100_000)
        self.redetect_spin.setValue(5)
        self.redetect_spin.setSuffix(" frames")
        self.redetect_spin.setSpecialValueText("never")
        self.redetect_spin.setToolTip("Look for new objects every this many frames (0: never; costs an automatic segmentation each time)")
        self.min_size_spin = QSpinBox()
        self.min_size_spin.setRange(0, 10_000_000)
        self.min_size_spin.setValue(20)
        self.min_size_spin.setSuffix(" px")
        self.min_size_spin.setToolTip("Smaller objects are ignored; an object smaller than this for 3 frames in a row ends")
        self.divisions_check = QCheckBox("find divisions")
        self.divisions_check.setChecked(True)
        self.divisions_check.setToolTip("An object that splits into two ends, and two daughters start (with it as parent)")
        self.run_button = QPushButton("Track all")
        self.run_button.setToolTip("Track every object from the current frame to the end of the frame range (Propagate section)")
        self.stop_button = QPushButton("Cancel")
        self.stop_button.setToolTip("Stop after the current frame; finished frames and their lineage are kept (Escape)")
        self.stop_button.setEnabled(False)
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.stop_button)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m frames")
        self.progress.setValue(0)
        self.status = ElidedLabel()

        edits = QLabel("<small>Lineage: choose tracks in the object list (Ctrl+click for several)</small>")
        edits.setWordWrap(True)
        self.division_button = QPushButton("Mark division")
        self.division_button.setToolTip("The chosen track that starts first is the mother, the others her daughters")
        self.unmark_button = QPushButton("Unmark")
        self.unmark_button.setToolTip("The chosen tracks lose their parent (a chosen mother loses her daughters)")
        self.merge_button = QPushButton("Merge")
        self.merge_button.setToolTip("Two chosen tracks, one after the other, become one object with the earlier id")
        self.split_button = QPushButton("Split here")
        self.split_button.setToolTip("The current object gets a new id from the current frame on")
        edit_row = QHBoxLayout()
        for b in (self.division_button, self.unmark_button, self.merge_button, self.split_button):
            edit_row.addWidget(b)

        form.addRow("Seeds", self.seeds_combo)
        form.addRow("New objects", self.redetect_spin)
        form.addRow("Min size", self.min_size_spin)
        form.addRow("", self.divisions_check)
        form.addRow(run_row)
        form.addRow(self.progress)
        form.addRow(self.status)
        form.addRow(edits)
        form.addRow(edit_row)


    def set_running(self, running: bool) -> None:
        """While a run goes on: Cancel instead of Track all, no edits."""
        self.run_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        for b in (self.division_button, self.unmark_button, self.merge_button, self.split_button):
            b.setEnabled(not running)

    def seeds_layer(self) -> Any:
        """The chosen labels layer, or None for automatic seeds."""
        return self.seeds_combo.currentData()
