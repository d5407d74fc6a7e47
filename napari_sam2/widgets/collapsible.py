"""A panel section that is collapsed until its header is clicked (Fine-tune, Track all)."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFormLayout, QGroupBox, QToolButton, QVBoxLayout, QWidget

__all__ = ["CollapsibleSection"]


class CollapsibleSection(QGroupBox):
    """Header button + a body of form rows (``self.form``), hidden until the header is clicked."""

    def __init__(self, title: str, tooltip: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 4, 6, 4)
        self.header = QToolButton(text=title, checkable=True, checked=False)
        self.header.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.header.setArrowType(Qt.RightArrow)
        self.header.setStyleSheet("QToolButton { border: none; font-weight: bold; }")
        self.header.setToolTip(tooltip)
        outer.addWidget(self.header)
        self.body = QWidget()
        outer.addWidget(self.body)
        self.form = QFormLayout(self.body)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.body.setVisible(False)
        self.header.toggled.connect(self.set_open)

    def set_open(self, open_: bool) -> None:
        """Show or hide the controls (the header's arrow follows)."""
        if self.header.isChecked() != open_:
            self.header.setChecked(open_)
            return
        self.header.setArrowType(Qt.DownArrow if open_ else Qt.RightArrow)
        self.body.setVisible(open_)
