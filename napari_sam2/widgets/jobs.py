"""Engine jobs as generator functions for napari thread workers.

superqt's generator workers swallow a ``RuntimeError`` raised inside the generator (and
then never report ``finished``); torch errors and ``CheckpointError`` are
RuntimeErrors. So every job here catches its own exceptions and *returns* a
:class:`JobOutcome`; nothing escapes to the worker. Cancelling is cooperative through a
``threading.Event``: a job stops after the step in progress, cleanly.
"""

from __future__ import annotations

import threading
import traceback
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Generator

__all__ = ["JobOutcome", "Cancelled", "InOrder", "function_job", "load_job", "propagate_job", "reporting_job"]


class Cancelled(Exception):
    """Raised inside a job's callback to stop it; reported as ``cancelled``."""


@dataclass
class JobOutcome:
    value: Any = None
    error: BaseException | None = None
    details: str = ""
    cancelled: bool = False
    steps: int = 0


class InOrder:
    """Hands a worker's yields and its outcome to their handlers one at a time, in order.

    A handler may run a nested Qt event loop without knowing it: napari's progress bar
    calls ``QApplication.processEvents()`` on every update. The worker's next batch, or
    its outcome, is then delivered *inside* the handler still running: the outcome handler
    tidies up first and the rest of the older handler runs after it (its status text wins,
    a revised frame is overwritten by its older version). Here a delivery that arrives
    while a handler runs waits in a queue and runs when that handler returns. A handler
    that raises does not hold up the ones behind it; the first error is raised after the
    queue is empty.
    """

    def __init__(self, on_yield: Callable[[Any], None] | None, on_done: Callable[[Any], None]) -> None:
        self._on_yield = on_yield
        self._on_done = on_done
        self._queue: deque[tuple[Callable[[Any], None], Any]] = deque()
        self._delivering = False

    def yielded(self, value: Any) -> None:
        if self._on_yield is not None:
            self._deliver(self._on_yield, value)

    def done(self, outcome: Any) -> None:
        self._deliver(self._on_done, outcome)

    def _deliver(self, handler: Callable[[Any], None], value: Any) -> None:
        self._queue.append((handler, value))
        if self._delivering:
            return  # the running handler's caller (below) delivers it next
        self._delivering = True
        first_error: Exception | None = None
        try:
            while self._queue:
                handler, value = self._queue.popleft()
                try:
                    handler(value)
                except Exception as exc:
                    first_error = first_error or exc
        finally:
            self._delivering = False
        if first_error is not None:
            raise first_error


def _failure(exc: BaseException) -> JobOutcome:
    return JobOutcome(error=exc, details="".join(traceback.format_exception(exc)))


def function_job(fn: Callable[..., Any], *args: Any) -> Generator[Any, None, JobOutcome]:
    """Run ``fn(*args)`` once; a generator only so all jobs share one worker type."""
    try:
        return JobOutcome(fn(*args))
    except Exception as exc:
        return _failure(exc)
    yield  # pragma: no cover - makes this a generator


def load_job(
    load: Callable[[Callable[[int, int], None]], Any], cancel: threading.Event
) -> Generator[tuple[int, int], None, JobOutcome]:
    """Run ``load(progress)`` on a helper thread and yield its (done, total) reports.

    The download callback raises :class:`Cancelled` once ``cancel`` is set, which
    aborts the transfer (the checkpoint module never leaves a partial file behind).
    """
    latest: list[tuple[int, int]] = []  # only the newest report matters

    def progress(done: int, total: int) -> None:
        if cancel.is_set():
            raise Cancelled()
        latest[:] = [(int(done), int(total))]

    shown: tuple[int, int] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sam2-load") as pool:
        future = pool.submit(load, progress)
        while True:
            # at most ~20 updates a second reach the GUI, however small the chunks
            finished = _wait(future, 0.05)
            if latest and latest[0] != shown:
                shown = latest[0]
                yield shown
            if finished:
                break
        try:
            value = future.result()
        except Cancelled:
            return JobOutcome(cancelled=True)
        except Exception as exc:
            if cancel.is_set():
                return JobOutcome(cancelled=True)
            return _failure(exc)
    if cancel.is_set():
        return JobOutcome(value=value, cancelled=True)
    return JobOutcome(value)


def _wait(future: Any, seconds: float) -> bool:
    try:
        future.result(timeout=seconds)
    except Exception:  # includes the timeout; real errors are read by the caller
        pass
    return future.done()


def propagate_job(frames: Any, cancel: threading.Event) -> Generator[Any, None, JobOutcome]:
    """Yield each finished frame of ``frames`` (a generator) until done or cancelled.

    Whatever was yielded before a cancel or an error has been handed over and is kept.
    """
    steps = 0
    try:
        for item in frames:
            yield item
            steps += 1
            if cancel.is_set():
                return JobOutcome(cancelled=True, steps=steps)
        return JobOutcome(steps=steps)
    except Exception as exc:
        outcome = _failure(exc)
        outcome.steps = steps
        return outcome
    finally:
        frames.close()


def reporting_job(run: Callable[[Callable[[Any], None]], Any], interval: float = 0.05) -> Generator[list[Any], None, JobOutcome]:
    """Run ``run(report)`` on a helper thread and yield what it reports, in batches.

    For a library call that reports as it goes (track-all hands over each frame it
    writes): every report is delivered in order, at most ~20 batches a second reach the
    GUI, and whatever was reported before a cancel or an error is delivered too. The
    outcome carries ``run``'s return value; ``cancelled`` is read from its ``cancelled``.
    """
    import queue

    reports: "queue.Queue[Any]" = queue.Queue()

    def drain() -> list[Any]:
        batch = []
        while True:
            try:
                batch.append(reports.get_nowait())
            except queue.Empty:
                return batch

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sam2-report") as pool:
        future = pool.submit(run, reports.put)
        while True:
            finished = _wait(future, interval)
            batch = drain()
            if batch:
                yield batch
            if finished:
                break
        try:
            value = future.result()
        except Exception as exc:
            return _failure(exc)
    return JobOutcome(value, cancelled=bool(getattr(value, "cancelled", False)))
