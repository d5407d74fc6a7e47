"""The widget's scheduling state, without a viewer: which engine job runs next."""

from __future__ import annotations

from napari_sam2.tracking.scheduler import JobScheduler, PropagationRequest, Step


def _next(s: JobScheduler, target: bool = True, model: bool = True, prompts: bool = True) -> Step:
    return s.next_step(target, model, lambda: prompts)


def test_nothing_to_do_until_asked_and_never_while_busy():
    s = JobScheduler()
    assert s.idle and _next(s) is Step.NONE
    s.request_sync()
    assert not s.idle
    s.started("sync")
    assert s.busy and _next(s) is Step.NONE, "one job at a time"
    s.finished()
    assert _next(s, target=False) is Step.NONE, "no image: nothing runs"
    assert _next(s) is Step.SYNC and s.idle


def test_first_prompt_loads_the_model_then_syncs_then_propagates():
    s = JobScheduler()
    s.request_sync()
    assert _next(s, model=False, prompts=False) is Step.NONE and s.idle, "no prompts: no load, and nothing waits"
    s.request_sync()
    assert _next(s, model=False) is Step.LOAD
    s.request_propagation("forward", 2, 9)
    assert _next(s) is Step.SYNC, "prompts are sent before propagating"
    assert _next(s) is Step.PROPAGATE
    assert s.take_propagation() == PropagationRequest("forward", 2, 9) and s.idle


def test_a_propagation_request_loads_the_model_even_without_prompts_yet():
    s = JobScheduler()
    s.request_propagation("both")
    assert _next(s, model=False, prompts=False) is Step.LOAD


def test_failed_load_is_reported_once_and_requests_dropped():
    s = JobScheduler()
    s.request_propagation("both")
    s.load_ended(ok=False)
    assert s.load_failed
    s.request_sync()
    assert _next(s, model=False) is Step.NO_MODEL and s.idle, "no load loop; the user is told what to do"
    s.request_sync()
    s.settings_edited(same_as_loaded=False, loaded=False)
    assert not s.load_failed and _next(s, model=False) is Step.LOAD, "new settings may load again"
    s.load_ended(ok=False)
    s.request_propagation("both")
    assert not s.load_failed, "asking to propagate retries the load"


def test_changed_settings_unload_only_when_no_job_runs():
    s = JobScheduler()
    s.started("propagate")
    s.settings_edited(same_as_loaded=False, loaded=True)
    assert s.settings_changed and not s.take_unload(), "never under a running job"
    s.finished()
    assert s.take_unload() and not s.take_unload(), "once"
    s.settings_edited(same_as_loaded=False, loaded=True)
    s.settings_edited(same_as_loaded=True, loaded=True)
    assert not s.take_unload(), "changed back: the loaded model stays"


def test_cancel_applies_to_loads_and_propagations_only():
    s = JobScheduler()
    for kind, cancellable in (("load", True), ("propagate", True), ("sync", False), ("", False)):
        s.started(kind)
        assert s.cancellable() is cancellable
    s.request_propagation("backward")
    s.drop_propagation()
    assert s.propagation is None
