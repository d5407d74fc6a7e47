"""Is there a stopped run to go on with for an output, and where does it stand? (Qt-free)

The rule the widget's Resume offer is built on (:func:`napari_sam2.tracking.finetune.resumable_run`):
states are written with ``save_state`` as the training loop writes them, without training.
"""

from __future__ import annotations

import pytest
import torch

from napari_sam2.tracking.finetune import FineTuneSettings, check_output, fine_tune, resumable_run, resume_state_path
from napari_sam2.training import TrainConfig, TrainingError
from napari_sam2.training.state import read_state_summary, save_state

from .miniature import miniature_config, miniature_model


def _write_state(output, step: int, config: TrainConfig) -> None:
    model = miniature_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.optim.lr)
    history = [[s, 1.0 / s, 1e-4] for s in range(1, step + 1)]
    save_state(resume_state_path(output), model, optimizer, step, config, history)


def test_no_state_means_nothing_to_resume(tmp_path):
    out = tmp_path / "tuned.pt"
    assert resumable_run(out) is None
    out.write_bytes(b"a model without a state")
    assert resumable_run(out) is None
    assert resumable_run(tmp_path) is None  # a folder is not an output (check_output says why)


def test_a_stopped_run_is_found_with_its_step_settings_and_history(tmp_path):
    out = tmp_path / "tuned.pt"
    config = TrainConfig(steps=10, trainable="memory", seed=3)
    _write_state(out, 4, config)
    run = resumable_run(out)
    assert run is not None
    assert run.output == out and run.state == tmp_path / "tuned.resume.pt"
    assert (run.step, run.steps, run.trainable) == (4, 10, "memory")
    assert run.describe() == "step 4 of 10, training memory"
    assert [h[0] for h in run.history] == [1, 2, 3, 4] and run.history[1][1] == pytest.approx(0.5)
    assert run.model_config == miniature_config()
    # the saved settings, as the widget shows them; they go on without conflict
    assert run.settings().config() == config
    assert run.conflicts(FineTuneSettings()) == []
    assert run.conflicts(FineTuneSettings(steps=10, trainable="memory")) == []
    assert run.conflicts(FineTuneSettings(checkpoint_every=5)) == []  # may change on resume
    # what cannot change is named with both values
    assert run.conflicts(FineTuneSettings(steps=200, trainable="decoder")) == [
        "steps 10 (not 200)", "trainable memory (not decoder)"]
    # a user-relative path works as well
    assert resumable_run(str(out)).step == 4


def test_a_finished_run_has_nothing_to_resume(tmp_path):
    out = tmp_path / "tuned.pt"
    _write_state(out, 5, TrainConfig(steps=5))
    assert read_state_summary(resume_state_path(out)).step == 5
    assert resumable_run(out) is None


def test_a_state_that_cannot_be_read_is_an_error_not_silence(tmp_path):
    out = tmp_path / "tuned.pt"
    resume_state_path(out).write_bytes(b"not a state")
    with pytest.raises(TrainingError, match="not the readable state"):
        resumable_run(out)
    model = miniature_model()
    torch.save({"model": model.state_dict()}, resume_state_path(out))
    with pytest.raises(TrainingError, match="not the resumable state"):
        resumable_run(out)
    # starting over must then replace it knowingly
    with pytest.raises(FileExistsError):
        check_output(out, overwrite=False, resume=False)
    assert check_output(out, overwrite=True, resume=False) == out


def test_fine_tune_names_the_settings_that_cannot_change_before_loading_anything(tmp_path):
    out = tmp_path / "tuned.pt"
    _write_state(out, 2, TrainConfig(steps=6, trainable="memory"))
    with pytest.raises(ValueError, match=r"steps 6 \(not 8\)"):
        fine_tune(None, None, FineTuneSettings(steps=8), out, resume=True)  # data is never read


def test_detection_thresholds_travel_with_a_fine_tune_and_its_resumable_state(tmp_path):
    """A fine-tune of the demo model is read back with the demo model's thresholds, from
    its checkpoint and from a stopped run's state; damaged entries are ignored."""
    from napari_sam2.model import build_sam2
    from napari_sam2.model.saved import THRESHOLDS_KEY, read_checkpoint, recorded_thresholds, save_checkpoint
    from napari_sam2.training.state import load_state

    model = miniature_model()
    assert build_sam2(checkpoint=save_checkpoint(model, tmp_path / "plain.pt")).automatic_thresholds == {}
    model.automatic_thresholds = {"pred_iou_thresh": 0.5, "stability_score_thresh": 0.8}
    path = save_checkpoint(model, tmp_path / "tuned.pt", {"note": "x"})
    assert read_checkpoint(path).metadata[THRESHOLDS_KEY] == model.automatic_thresholds
    assert build_sam2(checkpoint=path).automatic_thresholds == model.automatic_thresholds
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    save_state(tmp_path / "run.resume.pt", model, optimizer, 3, TrainConfig(steps=5), [])
    assert load_state(tmp_path / "run.resume.pt").automatic_thresholds == model.automatic_thresholds
    assert recorded_thresholds({THRESHOLDS_KEY: {"pred_iou_thresh": 7, "other": 0.1, "stability_score_thresh": True}}) == {}
    assert recorded_thresholds({THRESHOLDS_KEY: "0.5"}) == {}
