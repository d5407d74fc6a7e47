"""The Fine-tune section of the dock widget: its controls and layout (Qt only, no behaviour).

Collapsed by default: a header button opens it. When the output file has a stopped run,
the Train button reads "Resume (step K of N)" and a Start over button appears.
:class:`~.finetune_actions.FineTuneActions` gives the controls their behaviour.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QWidget,
)

from napari_sam2.tracking.finetune import TRAINABLE_CHOICES

from .collapsible import CollapsibleSection
from .loss_plot import LossPlot

__all__ = ["FineTuneSection", "ElidedLabel", "TRUSTED_FRAMES", "LABELLED_FRAMES"]

TRUSTED_FRAMES = "painted or corrected frames"
LABELLED_FRAMES = "all labelled frames"
START_TIP = "Train a copy of the loaded model; tracking goes on with the loaded one meanwhile"


class ElidedLabel(QLabel):
    """One line of text, cut with "..." to the width it gets; the whole text is its tooltip.

    A label that wraps would grow the panel with every longer message (and a full-height
    dock squeezes its neighbours instead); this one never changes height.
    """

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self.setMinimumWidth(40)
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt API
        self._full = text
        self.setToolTip(text)
        self._elide()

    def text(self) -> str:
        return self._full

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        shown = self.fontMetrics().elidedText(self._full, Qt.ElideRight, max(self.width(), 40))
        super().setText(shown)


class FineTuneSection(CollapsibleSection):
    """Header button + the fine-tune controls, hidden until the header is clicked."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Fine-tune", "Adapt the model to your images with the masks you painted or corrected", parent)
        form = self.form

        self.frames_combo = QComboBox()
        self.frames_combo.addItems([TRUSTED_FRAMES, LABELLED_FRAMES])
        self.frames_combo.setToolTip(
            "Which masks of the current image to learn from: the frames you clicked on or painted\n"
            "(masks you checked), or every frame of the masks layer that holds a label."
        )
        self.trainable_combo = QComboBox()
        for name, text in TRAINABLE_CHOICES.items():
            self.trainable_combo.addItem(name, name)
            self.trainable_combo.setItemData(self.trainable_combo.count() - 1, text, Qt.ToolTipRole)
        self.trainable_combo.setToolTip("What is trained:\n" + "\n".join(f"{k}: {v}" for k, v in TRAINABLE_CHOICES.items()))
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 1_000_000)
        self.steps_spin.setValue(200)
        self.steps_spin.setToolTip("Optimiser steps, one short clip each; more steps learn more and take longer.")
        self.output_edit = QLineEdit()
        self.output_edit.setPlaceholderText("where to save the fine-tuned model (.pt)")
        self.output_button = QToolButton(text="...")
        output_row = QHBoxLayout()
        output_row.setContentsMargins(0, 0, 0, 0)
        output_row.addWidget(self.output_edit)
        output_row.addWidget(self.output_button)
        self.start_button = QPushButton("Fine-tune")
        self.start_button.setToolTip(START_TIP)
        self.restart_button = QPushButton("Start over")
        self.restart_button.setToolTip("Discard the stopped run of this file and train from scratch, replacing it")
        self.restart_button.setVisible(False)
        self.stop_button = QPushButton("Cancel")
        self.stop_button.setToolTip("Stop after the current step; the model so far is saved")
        self.stop_button.setEnabled(False)
        self.use_button = QPushButton("Use fine-tuned model")
        self.use_button.setToolTip("Segment and track with the model just trained (its file is in the Model section)")
        self.use_button.setEnabled(False)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.restart_button, self.stop_button, self.use_button):
            buttons.addWidget(b)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m steps")
        self.progress.setValue(0)
        self.plot = LossPlot()
        self.status = ElidedLabel()
        form.addRow("Learn from", self.frames_combo)
        form.addRow("Train", self.trainable_combo)
        form.addRow("Steps", self.steps_spin)
        form.addRow("Save as", output_row)
        form.addRow(buttons)
        form.addRow(self.progress)
        form.addRow(self.plot)
        form.addRow(self.status)

    def offer_resume(self, step: int | None, steps: int = 0, start_over: bool = False) -> None:
        """Train button -> "Resume (step K of N)" and Start over shown, for a stopped run at
        ``step``; ``None``: a new run (Start over still shown when ``start_over``)."""
        if step is None:
            self.start_button.setText("Fine-tune")
            self.start_button.setToolTip(START_TIP)
        else:
            self.start_button.setText(f"Resume (step {step} of {steps})")
            self.start_button.setToolTip("Go on with the stopped run of this file, with the settings it started with")
        self.restart_button.setVisible(step is not None or start_over)

