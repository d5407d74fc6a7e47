"""The widget's Fine-tune section: trains on the painted frames in a worker, live loss plot,
Cancel keeps a loadable model, the fine-tuned model is used at once, and a stopped run
is offered to Resume (or Start over).

Run under a display (``xvfb-run -a -s "-screen 0 1600x1000x24" python -m pytest ...``).
The model is the miniature SAM 2 (64 px), so a few training steps take seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gui_support import new_viewer, notes, open_widget, ready, screenshot  # noqa: F401

from napari_sam2.model import build_sam2
from napari_sam2.sample_data import cells_timelapse
from napari_sam2.tracking import LoadedModel, ModelChoice
from napari_sam2.tracking.finetune import resume_state_path
from napari_sam2.training import TrainConfig
from napari_sam2.training.state import read_state_summary, save_state
from napari_sam2.widgets.finetune_section import LABELLED_FRAMES, TRUSTED_FRAMES
from napari_sam2.widgets.panel import FROM_FILE, LOCAL_WEIGHTS

from .miniature import miniature_model

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]

SIZE = 64


def _paint(layer, frame: int, truth: np.ndarray) -> None:
    """Paint every object of ``truth`` on ``frame`` as the brush does (a paint event)."""
    for obj in np.unique(truth):
        if obj:
            rows, cols = np.nonzero(truth == obj)
            layer.data_setitem((np.full(rows.shape, frame), rows, cols), int(obj))


@pytest.fixture
def painted(make_napari_viewer, qtbot):
    clip = cells_timelapse(num_frames=5, size=SIZE, seed=2)
    viewer = new_viewer(make_napari_viewer, qtbot)
    viewer.add_image(clip.image, name="cells")
    viewer.dims.set_current_step(0, 0)
    widget = open_widget(viewer)
    choice = ModelChoice(name="miniature", checkpoint=None, device="cpu")
    widget.use_model(LoadedModel(miniature_model(), choice))
    masks = widget.controller.target.labels
    for frame in (1, 2, 3):
        _paint(masks, frame, clip.labels[frame])
    ready(widget, qtbot)
    return viewer, widget


def _run(widget, qtbot, steps: int, output, cancel_after: int | None = None, button: str = "start_button") -> None:
    section = widget.finetune
    section.set_open(True)
    section.steps_spin.setValue(steps)
    section.trainable_combo.setCurrentIndex(section.trainable_combo.findData("memory"))
    section.output_edit.setText(str(output))
    with qtbot.waitSignal(widget.job_finished, timeout=120_000, check_params_cb=lambda kind: kind == "finetune"):
        getattr(section, button).click()
        assert widget.finetuning and not section.start_button.isEnabled()
        assert widget._ft_progress is not None, "long work shows in napari's activity (progress)"
        if cancel_after is not None:
            qtbot.waitUntil(lambda: len(section.plot.losses) >= cancel_after, timeout=60_000)
            section.stop_button.click()
    assert widget._ft_progress is None, "the progress bar is closed when training ends"


def test_finetune_uses_the_painted_frames_and_switches_to_the_new_model(painted, qtbot, tmp_path):
    viewer, widget = painted
    assert widget.trusted_frames() == [1, 2, 3]
    section = widget.finetune
    assert not section.body.isVisible()  # collapsed until opened
    old = widget.loaded.model
    out = tmp_path / "tuned.pt"
    _run(widget, qtbot, 3, out)
    assert len(section.plot.losses) == 3 and section.progress.value() == 3
    assert "done: 3 steps" in section.status.text()
    # the new model is in use and shown in the Model section; the file loads strictly
    assert widget.loaded.model is not old and widget.controller.model is widget.loaded.model
    assert widget.model_combo.currentText() == FROM_FILE and widget.weights_combo.currentText() == LOCAL_WEIGHTS
    assert widget.path_edit.text() == str(out) and widget.loaded.choice == widget.model_choice()
    loaded = build_sam2(checkpoint=out, device="cpu")
    assert all(torch.equal(v, widget.loaded.model.state_dict()[k]) for k, v in loaded.state_dict().items())
    assert any(not torch.equal(v, old.state_dict()[k]) for k, v in loaded.state_dict().items())
    # a second run into the same file is refused unless chosen again in the save dialog
    widget.finetune.start_button.click()
    assert not widget.finetuning


def test_cancel_keeps_a_loadable_model_that_can_be_used(painted, qtbot, tmp_path, notes):
    viewer, widget = painted
    section = widget.finetune
    section.frames_combo.setCurrentText(LABELLED_FRAMES)
    before = widget.loaded
    out = tmp_path / "stopped.pt"
    _run(widget, qtbot, 1000, out, cancel_after=2)
    assert "cancelled at step" in section.status.text()
    assert widget.loaded is before  # nothing switched on its own
    steps = len(section.plot.losses)
    assert 2 <= steps < 1000 and out.is_file() and (tmp_path / "stopped.resume.pt").is_file()
    build_sam2(checkpoint=out, device="cpu")  # strict load of the model so far
    assert section.use_button.isEnabled()
    section.use_button.click()
    assert widget.loaded is not before and widget.path_edit.text() == str(out)
    ready(widget, qtbot)
    section.frames_combo.setCurrentText(TRUSTED_FRAMES)
    screenshot(viewer, qtbot, tmp_path, "widget_finetune")


def test_nothing_to_learn_from_is_a_clear_message(make_napari_viewer, qtbot, tmp_path, notes):
    viewer = new_viewer(make_napari_viewer, qtbot)
    viewer.add_image(cells_timelapse(num_frames=3, size=SIZE, seed=1).image)
    widget = open_widget(viewer)
    widget.finetune.output_edit.setText(str(tmp_path / "x.pt"))
    widget.start_finetune()
    assert "Load the model" in notes.messages("error")[-1]
    widget.use_model(LoadedModel(miniature_model(), ModelChoice(name="miniature", checkpoint=None, device="cpu")))
    widget.start_finetune()
    assert "no frame was painted or corrected" in notes.messages("error")[-1]
    assert not widget.finetuning and not (tmp_path / "x.pt").exists()


def test_a_cancelled_run_is_offered_to_resume_and_goes_on_to_the_planned_step(painted, qtbot, tmp_path, notes):
    viewer, widget = painted
    section = widget.finetune
    out = tmp_path / "resumed.pt"
    _run(widget, qtbot, 10, out, cancel_after=2)
    stopped = len(section.plot.losses)
    assert 2 <= stopped < 10, "cancelled before the planned steps"
    assert f"cancelled at step {stopped} of 10" in section.status.text() and "Resume" in section.status.text()
    # the Train button offers the run, at its step; starting over is offered too
    assert section.start_button.text() == f"Resume (step {stopped} of 10)"
    assert not section.restart_button.isHidden() and section.restart_button.isEnabled()
    before = widget.loaded
    # a setting that cannot change on resume is named instead of failing in the worker
    section.steps_spin.setValue(12)
    section.start_button.click()
    assert not widget.finetuning
    assert "cannot resume" in section.status.text() and "steps 10 (not 12)" in section.status.text()
    section.steps_spin.setValue(10)
    # Resume: the progress bar and the loss plot start where the run stopped
    with qtbot.waitSignal(widget.job_finished, timeout=120_000, check_params_cb=lambda kind: kind == "finetune"):
        section.start_button.click()
        assert widget.finetuning and not section.restart_button.isEnabled()
        assert section.progress.maximum() == 10 and section.progress.value() >= stopped
        assert section.plot.steps[:stopped] == list(range(1, stopped + 1)), "the earlier loss history is shown"
        assert widget._ft_progress is not None and widget._ft_progress.n >= stopped
    assert section.progress.value() == 10 and section.plot.steps == list(range(1, 11))
    assert "done: 10 steps" in section.status.text()
    assert read_state_summary(resume_state_path(out)).step == 10
    # the finished run is in use at once, as after a run that was never stopped
    assert widget.loaded is not before and widget.controller.model is widget.loaded.model
    assert widget.path_edit.text() == str(out) and widget.model_combo.currentText() == FROM_FILE
    loaded = build_sam2(checkpoint=out, device="cpu")
    assert all(torch.equal(v, widget.loaded.model.state_dict()[k]) for k, v in loaded.state_dict().items())
    # nothing is left to resume
    assert section.start_button.text() == "Fine-tune" and section.restart_button.isHidden()


def test_a_stopped_run_is_shown_before_anything_is_decided_and_start_over_replaces_it(painted, qtbot, tmp_path, notes):
    viewer, widget = painted
    section = widget.finetune
    out = tmp_path / "earlier.pt"
    model = widget.loaded.model
    optimizer = torch.optim.AdamW(model.parameters())
    save_state(resume_state_path(out), model, optimizer, 2, TrainConfig(steps=4, trainable="decoder"),
               [[1, 0.9, 1e-4], [2, 0.8, 1e-4]])
    section.set_open(True)
    section.steps_spin.setValue(200)
    section.output_edit.setText(str(out))
    section.start_button.click()  # before the offer was seen: show it, start nothing
    assert not widget.finetuning
    assert section.start_button.text() == "Resume (step 2 of 4)" and not section.restart_button.isHidden()
    assert "holds a stopped run (step 2 of 4, training decoder)" in section.status.text()
    assert section.steps_spin.value() == 4 and section.trainable_combo.currentData() == "decoder"
    # typing another name withdraws the offer, typing it back brings it back
    section.output_edit.setText(str(tmp_path / "new.pt"))
    qtbot.waitUntil(lambda: section.start_button.text() == "Fine-tune", timeout=5_000)
    assert section.restart_button.isHidden()
    section.output_edit.setText(str(out))
    qtbot.waitUntil(lambda: section.start_button.text() == "Resume (step 2 of 4)", timeout=5_000)
    # Start over: a new run from the loaded model with the settings in the form, replacing the state
    _run(widget, qtbot, 2, out, button="restart_button")
    assert section.plot.steps == [1, 2] and "done: 2 steps" in section.status.text()
    summary = read_state_summary(resume_state_path(out))
    assert (summary.step, summary.config.steps, summary.config.trainable) == (2, 2, "memory")
    assert [h[0] for h in summary.history] == [1, 2]
    assert section.start_button.text() == "Fine-tune" and section.restart_button.isHidden()


def test_an_unreadable_run_state_is_named_and_only_replaced_by_start_over(painted, qtbot, tmp_path, notes):
    viewer, widget = painted
    section = widget.finetune
    out = tmp_path / "damaged.pt"
    resume_state_path(out).write_bytes(b"not a training state")
    section.set_open(True)
    section.output_edit.setText(str(out))
    section.start_button.click()
    assert not widget.finetuning and resume_state_path(out).read_bytes() == b"not a training state"
    assert "not the readable state" in section.status.text() and "Start over" in section.status.text()
    assert section.start_button.text() == "Fine-tune" and not section.restart_button.isHidden()
