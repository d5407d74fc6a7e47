"""Which engine job runs next: the widget's scheduling state, without Qt.

The widget runs one job at a time (load the model, send prompts, propagate). Edits
arrive in bursts and while jobs run, so requests are remembered here and the next job
is chosen when the engine is free: a model load first (only once something needs it),
then the pending prompt changes, then a requested propagation.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Callable

__all__ = ["Step", "PropagationRequest", "JobScheduler", "NO_MODEL"]

NO_MODEL = (
    "No model is loaded (see the previous message). Fix the model settings and press "
    "Load model: your clicks, boxes and masks are kept and will be used."
)


class Step(Enum):
    """What the widget should do now."""

    NONE = "none"  # nothing to do (or the engine is busy)
    LOAD = "load"  # load the model: something needs it
    NO_MODEL = "no_model"  # loading failed before: tell the user, drop the requests
    SYNC = "sync"  # send the prompt changes
    PROPAGATE = "propagate"  # run the propagation request (see :meth:`JobScheduler.take_propagation`)


@dataclass(frozen=True)
class PropagationRequest:
    direction: str
    first: int | None = None
    last: int | None = None


class JobScheduler:
    """Requests waiting for the engine and the job running now (by kind)."""

    def __init__(self) -> None:
        self.sync_wanted = False
        self.propagation: PropagationRequest | None = None
        self.load_failed = False
        self.settings_changed = False
        self.running = ""  # kind of the running job: "", "load", "sync", "propagate" or "track_all"

    # ------------------------------------------------------------------ requests
    @property
    def busy(self) -> bool:
        return bool(self.running)

    @property
    def idle(self) -> bool:
        """Nothing runs and nothing waits."""
        return not self.running and not self.sync_wanted and self.propagation is None

    def request_sync(self) -> None:
        self.sync_wanted = True

    def request_propagation(self, direction: str, first: int | None = None, last: int | None = None) -> None:
        """Propagate after the prompts are sent; a new request clears an earlier load failure."""
        self.load_failed = False
        self.propagation = PropagationRequest(direction, first, last)
        self.sync_wanted = True

    def drop_propagation(self) -> None:
        self.propagation = None

    def take_propagation(self) -> PropagationRequest | None:
        request, self.propagation = self.propagation, None
        return request

    def cancellable(self) -> bool:
        """Loads, propagations and track-all runs can be cancelled; a sync is short and finishes."""
        return self.running in ("load", "propagate", "track_all")

    # ------------------------------------------------------------------ model settings
    def settings_edited(self, same_as_loaded: bool, loaded: bool) -> None:
        """The model settings changed; the loaded model is dropped once nothing runs."""
        if same_as_loaded:
            self.settings_changed = False
            return
        self.load_failed = False
        if loaded:
            self.settings_changed = True

    def take_unload(self) -> bool:
        """True once when the loaded model should be dropped now (never under a job)."""
        if self.settings_changed and not self.running:
            self.settings_changed = False
            return True
        return False

    # ------------------------------------------------------------------ jobs
    def next_step(self, has_target: bool, model_loaded: bool, has_prompts: Callable[[], bool]) -> Step:
        """The job to start now. ``has_prompts`` is only asked when no model is loaded."""
        if self.running or not has_target:
            return Step.NONE
        if not (self.sync_wanted or self.propagation):
            return Step.NONE
        if not model_loaded:
            if not (self.propagation or has_prompts()):
                self.sync_wanted = False  # nothing to send yet; the next edit asks again
                return Step.NONE
            if self.load_failed:
                self.sync_wanted = False
                self.propagation = None
                return Step.NO_MODEL
            return Step.LOAD
        if self.sync_wanted:
            self.sync_wanted = False
            return Step.SYNC
        return Step.PROPAGATE

    def started(self, kind: str) -> None:
        self.running = kind

    def finished(self) -> None:
        self.running = ""

    def load_ended(self, ok: bool) -> None:
        """A load failed (or was cancelled): no new load until the user asks again."""
        self.load_failed = not ok
