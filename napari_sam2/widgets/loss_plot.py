"""A tiny live plot of the training loss, painted with QPainter (no plotting library)."""

from __future__ import annotations

import math
from typing import Any, Sequence

from qtpy.QtCore import QPointF, QRectF, QSize, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

__all__ = ["LossPlot", "smoothed"]


def smoothed(values: Sequence[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average with bias correction (the per-step loss is noisy)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**i))
    return out


class LossPlot(QWidget):
    """Loss per step (thin) and its moving average (thick), on a log scale when it spans a lot."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.total = 0
        self.setFixedHeight(80)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.setToolTip("Training loss per step (thin) and its moving average (thick)")

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(240, 100)

    def clear(self, total: int = 0) -> None:
        self.steps, self.losses, self.total = [], [], int(total)
        self.update()

    def add(self, step: int, loss: float) -> None:
        if math.isfinite(loss):
            self.steps.append(int(step))
            self.losses.append(float(loss))
            self.update()

    # ------------------------------------------------------------------ painting
    def paintEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        palette = self.palette()
        text = palette.color(palette.WindowText)
        frame = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        painter.setPen(QPen(QColor(text.red(), text.green(), text.blue(), 90), 1))
        painter.drawRect(frame)
        area = frame.adjusted(6, 16, -6, -6)
        if len(self.losses) < 1:
            painter.setPen(text)
            painter.drawText(frame, Qt.AlignCenter, "the loss appears here while training runs")
            painter.end()
            return
        log = min(self.losses) > 0 and max(self.losses) / min(self.losses) > 20
        ys = [math.log10(v) for v in self.losses] if log else list(self.losses)
        avg = smoothed(ys)
        lo, hi = min(ys), max(ys)
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        last_step = max(self.total, self.steps[-1], 1)
        first_step = min(self.steps[0], last_step - 1) if self.steps else 0

        def point(step: int, y: float) -> QPointF:
            x = area.left() + area.width() * (step - first_step) / max(last_step - first_step, 1)
            return QPointF(x, area.bottom() - area.height() * (y - lo) / (hi - lo))

        for values, width, alpha in ((ys, 1.0, 110), (avg, 2.0, 255)):
            path = QPainterPath(point(self.steps[0], values[0]))
            for s, y in zip(self.steps[1:], values[1:]):
                path.lineTo(point(s, y))
            painter.setPen(QPen(QColor(70, 160, 255, alpha), width))
            painter.drawPath(path)
        painter.setPen(text)
        scale = " (log)" if log else ""
        label = f"loss {self.losses[-1]:.3g}, average {10 ** avg[-1] if log else avg[-1]:.3g}{scale}"
        painter.drawText(QRectF(frame.left() + 6, frame.top() + 1, frame.width() - 12, 15), Qt.AlignLeft, label)
        painter.drawText(QRectF(frame.left() + 6, frame.top() + 1, frame.width() - 12, 15), Qt.AlignRight,
                         f"step {self.steps[-1]}/{last_step}")
        painter.end()
