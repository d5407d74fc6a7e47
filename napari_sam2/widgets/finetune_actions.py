"""The Fine-tune section's behaviour: train a copy of the loaded model on the current image.

A mixin of :class:`~.widget.Sam2Widget`. The masks to learn from are read (and copied)
on the GUI thread when training starts; training runs in a napari thread worker on a
copy of the model, so clicks and propagation go on with the loaded model meanwhile.
Progress arrives in batches and feeds the progress bar and the loss plot; Cancel stops
after the current step and the model so far is saved. When the output file has a
stopped run, Train becomes Resume (the run goes on from its step, with its settings and
its loss history) and Start over replaces it. The rules (data, output checks, settings,
whether and where a run can go on) are :mod:`napari_sam2.tracking.finetune`'s.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Generator

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFileDialog

from napari_sam2.tracking.finetune import (
    FineTuneSettings,
    ResumableRun,
    check_output,
    data_from_layers,
    fine_tune,
    resumable_run,
)
from napari_sam2.training.errors import TrainingError
from napari_sam2.tracking.models import LoadedModel

from .finetune_section import LABELLED_FRAMES, FineTuneSection
from .jobs import InOrder, JobOutcome, reporting_job
from .layers import NO_IMAGE, image_data
from .notes import notify

__all__ = ["FineTuneActions", "finetune_job"]


def finetune_job(run: Callable[[Callable[[Any], None]], Any]) -> Generator[list[Any], None, JobOutcome]:
    """Run ``run(progress)`` on a helper thread; yield the progress reports in batches.

    Every report is kept (the loss plot wants each step); batches keep the GUI from
    being flooded. The outcome carries the :class:`~napari_sam2.training.TrainResult`.
    """
    outcome = yield from reporting_job(run, interval=0.1)
    if outcome.error is None and outcome.value is not None:
        outcome.steps = int(outcome.value.step)
    return outcome


def _same_run(a: ResumableRun | None, b: ResumableRun | None) -> bool:
    """The same stopped run at the same step (an offer on screen is still true)."""
    return a is not None and b is not None and (a.output, a.step, a.steps) == (b.output, b.step, b.steps)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class FineTuneActions:
    """Fine-tune section -> a training run on a worker -> a model the user can switch to."""

    def _setup_finetune(self) -> None:
        """Add the section above the shortcut help and connect it."""
        self.finetune = section = FineTuneSection()
        layout = self.layout()
        layout.insertWidget(layout.indexOf(self.help_label), section)
        section.output_button.clicked.connect(self._browse_finetune_output)
        section.start_button.clicked.connect(lambda: self.start_finetune())
        section.restart_button.clicked.connect(lambda: self.start_finetune(fresh=True))
        section.stop_button.clicked.connect(self.cancel_finetune)
        section.use_button.clicked.connect(self.use_finetuned)
        self._ft_worker: Any = None
        self._ft_cancel = threading.Event()
        self._ft_confirmed: str | None = None  # an existing file the save dialog allowed to replace
        self._ft_result: Any = None
        self._ft_progress: Any = None  # napari's progress bar (activity dock) while training
        self._ft_resumable: ResumableRun | None = None  # the stopped run offered (Resume), if any
        self._ft_unreadable: str | None = None  # why the output's run state cannot be read, if so
        self._ft_first = 0  # the step this run started from
        self._ft_check = QTimer(self, singleShot=True, interval=300)  # after typing stops
        self._ft_check.timeout.connect(lambda: self.refresh_resumable())
        section.output_edit.textChanged.connect(lambda _text: self._ft_check.start())
        section.header.toggled.connect(lambda open_: self.refresh_resumable() if open_ else None)

    def _browse_finetune_output(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the fine-tuned model", self.finetune.output_edit.text(),
                                              "PyTorch checkpoints (*.pt)")
        if path:
            if not path.lower().endswith((".pt", ".pth")):
                path += ".pt"
            self.finetune.output_edit.setText(path)
            self._ft_confirmed = path  # the dialog asked before choosing an existing file

    @property
    def finetuning(self) -> bool:
        return self._ft_worker is not None

    def trusted_frames(self) -> list[int]:
        """Frames of the tracked slice the user clicked on or painted (their masks were checked)."""
        geometry = self.controller.geometry()
        return sorted({frame for frame, _ in self.controller.prompts(geometry)})

    def refresh_resumable(self, announce: bool = True) -> ResumableRun | None:
        """Offer Resume when the chosen output has a stopped run (and Start over).

        ``announce``: for a run not offered before, show its settings in the form and say
        so in the status line.
        """
        section = self.finetune
        if self.finetuning:
            return self._ft_resumable
        output = section.output_edit.text().strip()
        run, problem = None, None
        if output:
            try:
                run = resumable_run(output)
            except TrainingError as exc:
                problem = str(exc)
        before, self._ft_resumable, self._ft_unreadable = self._ft_resumable, run, problem
        section.offer_resume(run.step if run else None, run.steps if run else 0, start_over=problem is not None)
        if announce and run is not None and not _same_run(before, run):
            section.steps_spin.setValue(run.steps)
            section.trainable_combo.setCurrentIndex(section.trainable_combo.findData(run.trainable))
            section.status.setText(f"{run.output.name} holds a stopped run ({run.describe()}): Resume goes on "
                                   "with its settings (shown above); Start over trains anew and replaces it")
        elif announce and problem is not None:
            section.status.setText(f"{problem}; Start over replaces it")
        return run

    def start_finetune(self, fresh: bool = False) -> None:
        """Fine-tune a copy of the loaded model on the current image and its masks; or, when
        the output has a stopped run, go on with it (``fresh``: start over, replacing it)."""
        section = self.finetune
        if self.finetuning:
            return
        t = self.controller.target
        if t is None:
            notify("error", NO_IMAGE)
            return
        output = section.output_edit.text().strip()
        if not output:
            notify("error", "Choose where to save the fine-tuned model (Save as).")
            return
        run = None
        if not fresh:
            offered = self._ft_resumable
            run = self.refresh_resumable(announce=False)
            if run is not None and not _same_run(offered, run):
                self._ft_resumable = offered
                self.refresh_resumable()  # never decide for an offer not seen: show it first
                return
            if self._ft_unreadable is not None:
                section.status.setText(f"{self._ft_unreadable}; Start over replaces it, or choose another file")
                return
            if run is None and offered is not None and offered.output == Path(output).expanduser():
                section.status.setText(f"the stopped run of {offered.output.name} is no longer there; "
                                       "Fine-tune starts a new one")
                return
        if run is None and self.loaded is None:
            notify("error", "Load the model to start from first (Load model), then fine-tune it.")
            return
        overwrite = fresh or self._ft_confirmed == output
        settings = FineTuneSettings(steps=section.steps_spin.value(), trainable=section.trainable_combo.currentData())
        if run is not None:
            conflicts = run.conflicts(settings)
            if conflicts:
                section.status.setText(f"cannot resume: the run was started with {', '.join(conflicts)}; "
                                       "set them back to resume, or Start over to train anew with these")
                return
        try:
            geometry = self.controller.geometry()
            frames = None if section.frames_combo.currentText() == LABELLED_FRAMES else self.trusted_frames()
            labels = geometry.frames(t.labels.data)
            data = data_from_layers(geometry.frames(image_data(t.image)), labels, frames,
                                    self.controller.contrast_limits(), name=t.image.name)
            check_output(output, overwrite=overwrite, resume=run is not None)
        except FileExistsError as exc:
            notify("error", f"{exc}: choose another file, or choose it with the ... button to replace it.")
            return
        except (ValueError, OSError) as exc:
            notify("error", f"Cannot fine-tune: {exc}")
            return
        model = self.loaded.model if self.loaded is not None else None
        # a resumed run rebuilds its own model from the state, on the loaded model's device
        device = model.device if model is not None else None
        self._ft_cancel = cancel = threading.Event()
        lifetime = self._lifetime
        stop = lambda: cancel.is_set() or not lifetime.alive  # noqa: E731 - closing the viewer stops too
        metadata = {"trained_on": t.image.name, "frames": "all labelled" if frames is None else len(frames)}

        def train(progress: Callable[[Any], None]) -> Any:
            if run is not None:
                return fine_tune(None, data, settings, output, resume=True, progress=progress, cancel=stop,
                                 metadata=metadata, device=device)
            return fine_tune(model, data, settings, output, overwrite=overwrite, progress=progress, cancel=stop,
                             metadata=metadata)

        steps = settings.steps or 0
        self._ft_first = run.step if run is not None else 0
        section.plot.clear(steps)
        for step, loss, _lr in run.history if run is not None else ():
            section.plot.add(step, loss)
        section.progress.setRange(0, steps)
        section.progress.setValue(self._ft_first)
        what = f"resuming at step {run.step} of {run.steps}" if run is not None else "training"
        section.status.setText(f"{what} on {data.describe()}...")
        section.start_button.setEnabled(False)
        section.restart_button.setEnabled(False)
        section.stop_button.setEnabled(True)
        from napari.utils import progress

        self._ft_progress = progress(total=steps, desc="fine-tuning") if steps else None
        if self._ft_progress is not None and self._ft_first:
            self._ft_progress.n = self._ft_first
            self._ft_progress.refresh()
        self._start_finetune_worker(train, Path(output).expanduser())

    def _start_finetune_worker(self, run: Callable[[Callable[[Any], None]], Any], output: Path) -> None:
        from napari.qt.threading import GeneratorWorker

        def body() -> Any:
            return (yield from finetune_job(run))

        worker = GeneratorWorker(body)
        self._ft_worker = worker
        lifetime = self._lifetime
        deliveries = InOrder(  # progress bars run nested event loops: see InOrder
            lambda batch: self._on_finetune_progress(batch) if lifetime.alive else None,
            lambda outcome: self._on_finetuned(outcome, output) if lifetime.alive else None,
        )
        worker.yielded.connect(deliveries.yielded)
        worker.returned.connect(deliveries.done)
        worker.errored.connect(lambda exc: deliveries.done(JobOutcome(error=exc)))
        worker.start()

    def cancel_finetune(self) -> None:
        """Stop after the current step; the model so far is saved."""
        if self.finetuning:
            self._ft_cancel.set()
            self.finetune.status.setText("stopping after this step...")

    def _on_finetune_progress(self, batch: list[Any]) -> None:
        section = self.finetune
        for report in batch:
            section.plot.add(report.step, report.loss)
        last = batch[-1]
        section.progress.setRange(0, last.steps)
        section.progress.setValue(last.step)
        if self._ft_progress is not None:
            self._ft_progress.total = last.steps
            self._ft_progress.n = last.step
            self._ft_progress.refresh()
        if not self._ft_cancel.is_set():
            left = last.elapsed / max(last.step - self._ft_first, 1) * (last.steps - last.step)
            section.status.setText(f"step {last.step} of {last.steps}, loss {last.loss:.3f}; about {_duration(left)} left")

    def _on_finetuned(self, outcome: JobOutcome, output: Path) -> None:
        section = self.finetune
        self._ft_worker = None
        bar, self._ft_progress = self._ft_progress, None
        if bar is not None:
            bar.close()
        section.start_button.setEnabled(True)
        section.restart_button.setEnabled(True)
        section.stop_button.setEnabled(False)
        try:
            if outcome.error is not None:
                section.status.setText("stopped by an error (see the message)")
                notify("error", f"Fine-tuning failed: {outcome.error}")
                return
            result = outcome.value
            self._ft_result = (output, result.model)
            self._ft_confirmed = None  # a new run must not silently replace this file
            if result.step == 0:
                section.status.setText("cancelled before the first step: no model was written")
                return
            section.use_button.setEnabled(True)
            if outcome.cancelled:
                section.status.setText(f"cancelled at step {result.step} of {result.steps}: the model so far is saved in "
                                       f"{output.name}; Resume goes on, Use fine-tuned model tries it")
                return
            section.status.setText(f"done: {result.steps} steps, saved in {output}; now in use")
            self.use_finetuned()
        finally:
            self.refresh_resumable(announce=False)  # a stopped run is offered; a finished one is not
            self.job_finished.emit("finetune")

    def use_finetuned(self) -> None:
        """Segment with the fine-tuned model now; the Model section shows its file."""
        if self._ft_result is None:
            return
        from .panel import FROM_FILE, LOCAL_WEIGHTS

        output, model = self._ft_result
        for combo in (self.model_combo, self.weights_combo):
            combo.blockSignals(True)
        self.weights_combo.setCurrentText(LOCAL_WEIGHTS)
        self.path_edit.setText(str(output))
        self.model_combo.setCurrentIndex(self.model_combo.findText(FROM_FILE))
        for combo in (self.model_combo, self.weights_combo):
            combo.blockSignals(False)
        self._update_path_row()
        self.use_model(LoadedModel(model, self.model_choice()))
        self.model_combo.blockSignals(True)
        self.model_combo.setCurrentIndex(self.model_combo.findText(FROM_FILE))
        self.model_combo.blockSignals(False)
        notify("info", f"Now segmenting with the fine-tuned model {output.name}.")
