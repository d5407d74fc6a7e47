"""A worker's results reach the panel in order, even through nested event loops.

napari's progress bar runs ``QApplication.processEvents()`` when it updates. Before
:class:`~napari_sam2.widgets.jobs.InOrder`, a Track all run's outcome could be handled
inside the handler of its last frames, which then overwrote "cancelled: ..." with
"tracking: 3 of 8 frames". The first tests need no Qt; the last runs a real worker.
"""

from __future__ import annotations

import time

import pytest

from napari_sam2.widgets.jobs import InOrder, JobOutcome


def test_deliveries_during_a_handler_wait_for_it():
    order: list[str] = []
    deliveries: InOrder

    def on_yield(value: int) -> None:
        order.append(f"yield {value} starts")
        if value == 1:  # a nested event loop delivers what the worker sent meanwhile
            deliveries.yielded(2)
            deliveries.done("outcome")
        order.append(f"yield {value} ends")

    deliveries = InOrder(on_yield, lambda outcome: order.append(outcome))
    deliveries.yielded(1)
    assert order == ["yield 1 starts", "yield 1 ends", "yield 2 starts", "yield 2 ends", "outcome"]


def test_a_failing_handler_does_not_hold_up_the_outcome():
    seen: list[object] = []

    def on_yield(value: int) -> None:
        if value == 1:
            deliveries.done("outcome")  # arrives while the failing handler runs
            raise ValueError("bad frame")
        seen.append(value)

    deliveries = InOrder(on_yield, seen.append)
    with pytest.raises(ValueError, match="bad frame"):
        deliveries.yielded(1)
    assert seen == ["outcome"], "the outcome is still delivered"
    deliveries.yielded(3)
    assert seen == ["outcome", 3], "and later deliveries still run"


def test_without_a_yield_handler_only_the_outcome_is_delivered():
    seen: list[object] = []
    deliveries = InOrder(None, seen.append)
    deliveries.yielded(1)
    deliveries.done("outcome")
    assert seen == ["outcome"]


@pytest.mark.gui
def test_the_widget_handles_a_job_outcome_after_its_last_yield(make_napari_viewer, qtbot):
    from gui_support import new_viewer, open_widget, ready
    from qtpy.QtWidgets import QApplication

    viewer = new_viewer(make_napari_viewer, qtbot)
    widget = open_widget(viewer)
    order: list[str] = []

    def job():
        yield 1
        yield 2
        return JobOutcome("value")

    def on_yield(value: int) -> None:
        order.append(f"yield {value} starts")
        if value == 1:
            time.sleep(0.3)  # the worker yields 2 and returns meanwhile
            for _ in range(5):
                QApplication.processEvents()  # what napari's progress bar does
                time.sleep(0.02)
        order.append(f"yield {value} ends")

    widget._start_job("test", job(), on_yield, lambda outcome: order.append(outcome.value), total=2, description="test job")
    qtbot.waitUntil(lambda: "value" in order, timeout=30_000)
    ready(widget, qtbot)
    assert order == ["yield 1 starts", "yield 1 ends", "yield 2 starts", "yield 2 ends", "value"]
    assert widget._progress is None and not widget.scheduler.busy
