"""The Model section of the dock widget: choosing, loading and replacing the model.

A mixin of :class:`~.widget.Sam2Widget`; the rule for which file fits which model is
:mod:`napari_sam2.tracking.models`'s (a local file of another variant than the one
selected is refused, as on the command line).
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QFileDialog

from napari_sam2.model.budgets import MiB, CacheBudgets, default_budgets
from napari_sam2.tracking.choice import OFFICIAL, ModelChoice, guess_variant
from napari_sam2.tracking.models import LoadedModel

from .jobs import JobOutcome, load_job
from .notes import notify
from .panel import FROM_FILE, LOCAL_WEIGHTS, OFFICIAL_WEIGHTS

__all__ = ["ModelActions", "loaded_status", "model_error_message"]


def loaded_status(loaded: LoadedModel, budgets: CacheBudgets | None = None) -> str:
    """The Model section's status line for a loaded model (says so when the demo stands in).

    It also states how much memory a session may keep in its caches (sized to this
    machine), so a user with a long stack knows what to expect before propagating.
    """
    budgets = budgets or default_budgets()
    text = f"loaded: {loaded.description}; session caches up to {budgets.total / MiB:.0f} MiB"
    if loaded.fell_back and loaded.requested is not None:
        text += (
            f". {loaded.requested.name} could not be downloaded, so the bundled demo model "
            "(trained on synthetic data) is used instead; Load model tries again"
        )
    return text


def model_error_message(error: BaseException) -> str:
    """A loading error in the widget's words (the library names no controls)."""
    from napari_sam2.tracking.models import VariantMismatch

    if isinstance(error, VariantMismatch):
        return f"{error}. Choose {error.found} (or '{FROM_FILE}') as the model to use this file."
    return str(error)


class ModelActions:
    """Model settings -> a :class:`LoadedModel` (loaded on a worker)."""

    def _update_path_row(self) -> None:
        self.path_row.setVisible(self.weights_combo.currentText() == LOCAL_WEIGHTS)

    def _update_bundled_rows(self, *args: Any) -> None:
        """A bundled model brings its own weights and input size: those rows say so and rest.

        The size entry of 1024 stands for "the model's own size" (``image_size=None``), so
        it is the one shown, renamed, while a bundled model is chosen.
        """
        from napari_sam2.model.bundled import is_bundled

        bundled = is_bundled(self.model_combo.currentData())
        own = self.size_combo.findData(1024)
        for combo in (self.weights_combo, self.size_combo):
            combo.blockSignals(True)
        if own >= 0:
            self.size_combo.setItemText(own, "the model's own" if bundled else "1024 px (best)")
            if bundled:
                self.size_combo.setCurrentIndex(own)
        if bundled:
            self.weights_combo.setCurrentText(OFFICIAL_WEIGHTS)
        for combo in (self.weights_combo, self.size_combo):
            combo.blockSignals(False)
            combo.setEnabled(not bundled)
        self.weights_combo.setToolTip("The bundled model's weights come with the package." if bundled else "")
        self._update_path_row()

    def _browse_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "SAM 2 checkpoint", "", "PyTorch checkpoints (*.pt *.pth);;All files (*)")
        if path:
            self.path_edit.setText(path)
            self._model_settings_changed()

    def _model_settings_changed(self, *args: Any) -> None:
        keep = self.model_combo.currentData() is None  # 'as recorded in the file' is never overridden
        if self.weights_combo.currentText() == LOCAL_WEIGHTS and self.path_edit.text() and not keep:
            from napari_sam2.model import MODEL_NAMES

            guess = guess_variant(self.path_edit.text(), list(MODEL_NAMES))
            if guess and guess != self.model_combo.currentText():
                self.model_combo.blockSignals(True)
                self.model_combo.setCurrentText(guess)
                self.model_combo.blockSignals(False)
        same = self.loaded is not None and self.model_choice() == self.loaded.requested
        self.scheduler.settings_edited(same, loaded=self.loaded is not None)
        if same:
            return
        if self.scheduler.running == "load":
            self.cancel()
        self._unload_if_changed()

    def _unload_if_changed(self) -> None:
        """Drop the loaded model after its settings changed (never under a running job)."""
        if self.scheduler.take_unload():
            self.loaded = None
            self.controller.set_model(None)
            self.model_status.setText("settings changed: loads on the next click")

    def set_image_size(self, size: int) -> None:
        """Choose the model input size (adds it to the list if it is not offered)."""
        index = self.size_combo.findData(int(size))
        if index < 0:
            self.size_combo.addItem(f"{int(size)} px", int(size))
            index = self.size_combo.count() - 1
        self.size_combo.setCurrentIndex(index)

    def model_choice(self) -> ModelChoice:
        """The model the controls describe."""
        checkpoint = OFFICIAL if self.weights_combo.currentText() == OFFICIAL_WEIGHTS else self.path_edit.text().strip()
        size = self.size_combo.currentData()
        return ModelChoice(
            name=self.model_combo.currentData(),
            checkpoint=checkpoint,
            device=self.device_combo.currentData(),
            image_size=None if size == 1024 else size,
        )

    def use_model(self, loaded: LoadedModel) -> None:
        """Use an already built model (e.g. one shared between viewers)."""
        for combo in (self.model_combo, self.size_combo):
            combo.blockSignals(True)
        asked = loaded.requested or loaded.choice  # the settings stay what was asked for
        self.model_combo.setCurrentIndex(max(self.model_combo.findData(asked.name), 0))
        self.set_image_size(asked.image_size or 1024)
        for combo in (self.model_combo, self.size_combo):
            combo.blockSignals(False)
        self._update_bundled_rows()
        self.loaded = loaded
        self.scheduler.settings_edited(True, loaded=True)
        self.scheduler.load_ended(ok=True)
        self.controller.set_model(loaded.model)
        self.model_status.setText(loaded_status(loaded))
        self.model_status.setToolTip(default_budgets().describe())
        self.request_sync()

    def load_model(self) -> None:
        """Load (and on first use download) the chosen model in a worker."""
        if self.scheduler.busy:
            if self.scheduler.running != "load":
                notify("info", "The model will load when the running job ends.")
            return
        choice = self.model_choice()
        if choice.checkpoint == "":
            self.scheduler.load_ended(ok=False)
            notify("error", "Choose a checkpoint file (Weights: Local file...), or use the official download.")
            return
        if choice.name is None and choice.checkpoint == OFFICIAL:
            self.scheduler.load_ended(ok=False)
            notify("error", f"Official weights need a model: choose one in the Model list ('{FROM_FILE}' is for local files).")
            return
        from napari_sam2.model.bundled import is_bundled

        if choice.checkpoint == OFFICIAL and not is_bundled(choice.name):
            from napari_sam2.model.checkpoint import checkpoint_path, is_cached

            if not is_cached(choice.name):
                notify("info", f"Downloading {choice.name} once; it is kept in {checkpoint_path(choice.name).parent}.")
        self.model_status.setText(f"loading {choice.name or 'the file'}...")
        self._start_job(
            "load",
            load_job(lambda progress: LoadedModel.load(choice, progress), self._fresh_cancel()),
            on_yield=self._on_download_progress,
            on_done=self._on_model_loaded,
            total=0,
            description=f"loading {choice.name or 'the file'}",
        )

    def _on_download_progress(self, report: tuple[int, int]) -> None:
        done, total = report
        if total > 0:
            self.progress_bar.setRange(0, 1000)
            self.progress_bar.setValue(int(1000 * done / total))
            self.progress_bar.setFormat(f"download {done / 1e6:.0f} / {total / 1e6:.0f} MB")
            if self._progress is None and self.scheduler.running == "load" and not self._opening_progress:
                from napari.utils import progress

                # napari's activity dialog may process queued events while the bar is
                # made, delivering the next report here before it exists: make one bar only
                self._opening_progress = True
                try:
                    self._progress = progress(total=1000, desc="downloading the model")
                finally:
                    self._opening_progress = False
            if self._progress is not None:
                self._progress.n = int(1000 * done / total)
                self._progress.refresh()

    def _on_model_loaded(self, outcome: JobOutcome) -> None:
        self._reset_progress()
        self.scheduler.load_ended(ok=outcome.error is None and not outcome.cancelled)
        if outcome.cancelled:
            self.model_status.setText("loading cancelled: loads on the next click")
            return
        if outcome.error is not None:
            self.model_status.setText("not loaded (see the message)")
            notify("error", f"Could not load the model: {model_error_message(outcome.error)}")
            return
        loaded: LoadedModel = outcome.value
        if loaded.note:
            notify("info", loaded.note)
        if loaded.warning:
            notify("warning", loaded.warning[:1].upper() + loaded.warning[1:] + ".")
        self.loaded = loaded
        self.controller.set_model(loaded.model)
        self.model_status.setText(loaded_status(loaded))
        self.model_status.setToolTip(default_budgets().describe())
