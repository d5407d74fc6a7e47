"""The SAM 2 dock widget: Qt events -> calls of the controller and the tracking layer.

The widget holds no model logic. Layer events reach the controller; the
:class:`~napari_sam2.tracking.scheduler.JobScheduler` decides which engine job runs
next; jobs run in napari thread workers one at a time, and results are written back on
the GUI thread as they arrive, so the viewer never freezes.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable

import numpy as np
from qtpy.QtCore import QEvent, QTimer, Signal
from qtpy.QtWidgets import QWidget

from napari_sam2.tracking.axes import tracked_axis_choices
from napari_sam2.tracking.interactive import NOTHING_TO_PROPAGATE, PropagationPlan, SyncPlan
from napari_sam2.tracking.models import LoadedModel
from napari_sam2.tracking.scheduler import NO_MODEL, JobScheduler, Step

from . import keys
from .controller import NO_IMAGE, Sam2Controller
from .finetune_actions import FineTuneActions
from .jobs import InOrder, JobOutcome, function_job, propagate_job
from .layers import image_shape
from .model_actions import ModelActions
from .notes import notify
from .object_actions import ObjectActions
from .panel import DIRECTION_CHOICES, SHORTCUTS, Sam2Panel
from .settings import PanelSettings
from .track_all_actions import TrackAllActions

__all__ = ["Sam2Widget", "SHORTCUTS"]


class _Lifetime:
    """Plain-Python state that outlives the Qt widget: results arriving after the widget
    was deleted (viewer closed mid-job) are dropped and the job is told to stop."""

    def __init__(self) -> None:
        self.alive = True
        self.cancel = threading.Event()


def _on_destroyed(lifetime: _Lifetime, *args: Any) -> None:
    lifetime.alive = False
    lifetime.cancel.set()


class Sam2Widget(TrackAllActions, FineTuneActions, ModelActions, ObjectActions, Sam2Panel):
    """Click once, segment the object and track it through time or z."""

    job_finished = Signal(str)  # kind of the job that just ended (tests wait on it)

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.controller = Sam2Controller(
            napari_viewer,
            on_prompts_changed=self.request_sync,
            on_objects_changed=self._schedule_object_refresh,
        )
        self.scheduler = JobScheduler()
        self.loaded: LoadedModel | None = None
        self._worker: Any = None
        self._cancel = threading.Event()
        self._progress: Any = None
        self._opening_progress = False
        self._frames_done = 0
        self._frames_kept = 0

        self._lifetime = _Lifetime()
        self.destroyed.connect(functools.partial(_on_destroyed, self._lifetime))

        self._sync_timer = QTimer(self, singleShot=True, interval=30)
        self._sync_timer.timeout.connect(self._run_pending)
        self._objects_timer = QTimer(self, singleShot=True, interval=0)
        self._objects_timer.timeout.connect(self.refresh_objects)

        self._setup_finetune()
        self._setup_track_all()
        self.settings = PanelSettings(self)
        self.settings.restore()  # before the controls are connected: nothing is triggered
        self._update_bundled_rows()
        self._connect_controls()
        self.settings.watch()
        self._connect_viewer()
        self._bind_keys()
        self.refresh_images()

    def _connect_controls(self) -> None:
        """Controls -> actions."""
        self.load_button.clicked.connect(self.load_model)
        self.browse_button.clicked.connect(self._browse_checkpoint)
        self.weights_combo.currentIndexChanged.connect(self._update_path_row)
        self.model_combo.currentIndexChanged.connect(self._update_bundled_rows)
        for combo in (self.model_combo, self.weights_combo, self.device_combo, self.size_combo):
            combo.currentIndexChanged.connect(self._model_settings_changed)
        self.path_edit.editingFinished.connect(self._model_settings_changed)
        self.image_combo.currentIndexChanged.connect(self._image_changed)
        self.axis_combo.currentIndexChanged.connect(self._axis_changed)
        self.contrast_combo.currentIndexChanged.connect(self._contrast_changed)
        self.positive_radio.toggled.connect(self._polarity_changed)
        self.object_table.itemSelectionChanged.connect(self._table_selection_changed)
        self.object_table.itemChanged.connect(self._table_item_changed)
        self.new_button.clicked.connect(self.new_object)
        self.delete_button.clicked.connect(self.delete_object)
        self.clear_button.clicked.connect(self.clear_frame)
        self.save_prompts_button.clicked.connect(lambda: self.save_prompts())
        self.load_prompts_button.clicked.connect(lambda: self.load_prompts())
        self.all_frames_check.toggled.connect(lambda on: [s.setEnabled(not on) for s in (self.first_spin, self.last_spin)])
        self.propagate_button.clicked.connect(lambda: self.propagate())
        self.cancel_button.clicked.connect(self.cancel)


    # ================================================================== viewer wiring
    def _connect_viewer(self) -> None:
        self.viewer.layers.events.inserted.connect(self._layers_changed)
        self.viewer.layers.events.removed.connect(self._layers_changed)
        self.viewer.layers.events.moved.connect(self._layers_changed)
        self.viewer.dims.events.current_step.connect(self._dims_changed)

    def _bind_keys(self) -> None:
        """Shortcuts are napari actions (see ``keys``): listed and changeable in
        napari's preferences; the help text shows the keys bound now."""
        from napari.utils.action_manager import action_manager

        keys.attach(self)
        self._show_shortcuts()
        action_manager.events.shortcut_changed.connect(self._shortcut_changed)

    def _shortcut_changed(self, event: Any = None) -> None:
        if self._lifetime.alive and str(getattr(event, "name", "")).startswith(keys.PREFIX + ":"):
            self._show_shortcuts()

    def _show_shortcuts(self) -> None:
        rows = keys.shortcut_help()
        self.help_label.setText("<small>" + "<br>".join(f"<b>{k}</b>: {v}" for k, v in rows) + "</small>")
        self.setToolTip("SAM 2: " + "; ".join(f"{k}: {v}" for k, v in rows))

    def close_widget(self) -> None:
        """Stop jobs, detach the shortcuts and let go of the layers (which stay, unchanged)."""
        if not self._lifetime.alive:
            return
        self.cancel()
        self._lifetime.cancel.set()
        self._lifetime.alive = False
        keys.detach(self)
        try:
            from napari.utils.action_manager import action_manager

            action_manager.events.shortcut_changed.disconnect(self._shortcut_changed)
        except Exception:
            pass
        for emitter, cb in (
            (self.viewer.layers.events.inserted, self._layers_changed),
            (self.viewer.layers.events.removed, self._layers_changed),
            (self.viewer.layers.events.moved, self._layers_changed),
            (self.viewer.dims.events.current_step, self._dims_changed),
        ):
            try:
                emitter.disconnect(cb)
            except Exception:
                pass
        self.controller.teardown()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        self.close_widget()
        super().closeEvent(event)

    def event(self, event: Any) -> bool:
        """napari closes a panel by taking it out of its dock: then stop and unbind."""
        if event.type() == QEvent.ParentChange:
            if self.parent() is not None:
                self._docked = True
            elif getattr(self, "_docked", False):
                self.close_widget()
        return super().event(event)

    def _image_layers(self) -> list[Any]:
        from napari.layers import Image

        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def refresh_images(self) -> None:
        """Keep the image list in step with the viewer; set up the first image found."""
        images = self._image_layers()
        current = self.controller.target.image if self.controller.target else None
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        for layer in images:
            self.image_combo.addItem(layer.name, layer)
        if current in images:
            self.image_combo.setCurrentIndex(images.index(current))
        self.image_combo.blockSignals(False)
        t = self.controller.target
        if current is not None and (
            current not in images or any(layer not in self.viewer.layers for layer in (t.points, t.boxes, t.labels))
        ):
            # the image or one of its prompt layers was deleted: start again with fresh
            # layers (the remaining ones are found again by their role)
            self.cancel()
            self.controller.teardown()
            current = None
        if current is None and images:
            active = self.viewer.layers.selection.active
            choice = active if active in images else images[-1]
            self.image_combo.setCurrentIndex(images.index(choice))
            self._image_changed()
        elif not images:
            self.axis_combo.clear()
            self.refresh_objects()
        self.refresh_seed_layers()

    def _layers_changed(self, event: Any = None) -> None:
        # closing the viewer removes every layer and then deletes this widget: the
        # deferred refresh must not touch deleted controls (PySide calls it regardless)
        lifetime = self._lifetime
        QTimer.singleShot(0, lambda: self.refresh_images() if lifetime.alive else None)

    def _dims_changed(self, event: Any = None) -> None:
        t = self.controller.target
        if t is None or t.axis is None:
            return
        # a 4D stack: moving the other axis means a new slice is tracked from now on
        if not self.scheduler.busy and self.controller.session is not None:
            try:
                if self.controller.geometry().key != self.controller.session_key[0]:
                    self._schedule_object_refresh()
            except Exception:
                pass

    # ================================================================== data choices
    def _image_changed(self, index: int | None = None) -> None:
        layer = self.image_combo.currentData()
        if layer is None:
            return
        if self.scheduler.busy:
            notify("warning", "Wait for the running job to finish (or Cancel it) before switching images.")
            return
        shape = image_shape(layer)
        choices = tracked_axis_choices(len(shape))
        labels = list(getattr(layer, "axis_labels", ()) or ())
        self.axis_combo.blockSignals(True)
        self.axis_combo.clear()
        for a in choices:
            name = str(labels[a]) if a < len(labels) and labels[a] else ""
            if not name or name.lstrip("-").isdigit():  # napari's default labels: -3, -2, ...
                name = f"axis {a}"
            self.axis_combo.addItem(f"{name} ({shape[a]})", a)
        if not choices:
            self.axis_combo.addItem("single image", None)
        self.axis_combo.setEnabled(bool(choices))
        self.axis_combo.blockSignals(False)
        try:
            self.controller.setup(layer, self.axis_combo.currentData())
        except ValueError as exc:
            notify("warning", str(exc))
            return
        self._update_range_limits()
        self._reset_progress()
        self.refresh_objects()
        self.request_sync()

    def _reset_progress(self) -> None:
        self.progress_bar.setFormat("%p%")
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setValue(0)
        self.status_label.setText("")

    def _axis_changed(self, index: int | None = None) -> None:
        t = self.controller.target
        if t is None:
            return
        if self.scheduler.busy:
            notify("warning", "Wait for the running job to finish (or Cancel it) before changing the axis.")
            return
        self.controller.setup(t.image, self.axis_combo.currentData())
        self._update_range_limits()
        self._reset_progress()
        self.refresh_objects()
        self.request_sync()

    def _contrast_changed(self, index: int | None = None) -> None:
        self.controller.use_display_contrast = self.contrast_combo.currentIndex() == 0
        self.request_sync()

    def _update_range_limits(self) -> None:
        try:
            n = self.controller.geometry().num_frames
        except ValueError:
            n = 1
        for spin in (self.first_spin, self.last_spin):
            spin.setRange(0, max(n - 1, 0))
        self.last_spin.setValue(max(n - 1, 0))

    # ================================================================== jobs
    def _fresh_cancel(self) -> threading.Event:
        """A new cancel flag for the job about to start (the old one may be set)."""
        self._cancel = threading.Event()
        self._lifetime.cancel = self._cancel
        return self._cancel

    @property
    def busy(self) -> bool:
        """True while an engine job (load, segment, propagate) runs."""
        return self.scheduler.busy

    def _start_job(self, kind: str, generator: Any, on_yield: Callable[[Any], None] | None,
                   on_done: Callable[[JobOutcome], None], total: int, description: str) -> None:
        from napari.utils import progress

        worker = _GeneratorJob.create(generator)
        self._worker = worker
        self.scheduler.started(kind)
        # napari's indeterminate progress bar animates constantly and slows everything
        # down, so a bar appears only once the amount of work is known
        self._progress = progress(total=total, desc=description) if total > 0 else None
        self.cancel_button.setEnabled(self.scheduler.cancellable())
        self.delete_button.setEnabled(False)
        if kind != "sync":
            self.status_label.setText(description + "...")

        lifetime = self._lifetime

        def done(outcome: Any) -> None:
            if not lifetime.alive or self._worker is not worker:
                return
            self._worker = None
            self.scheduler.finished()
            # closed last: closing runs a nested event loop, in which the next job may start
            bar, self._progress = self._progress, None
            self.cancel_button.setEnabled(False)
            self.delete_button.setEnabled(True)
            if not isinstance(outcome, JobOutcome):  # should not happen: jobs catch everything
                outcome = JobOutcome(error=RuntimeError(str(outcome)))
            try:
                on_done(outcome)
            finally:
                if bar is not None:
                    bar.close()
                self.job_finished.emit(kind)
                self._sync_timer.start()

        def shown(value: Any) -> None:
            if lifetime.alive and on_yield is not None:
                on_yield(value)

        deliveries = InOrder(shown, done)
        worker.yielded.connect(deliveries.yielded)
        worker.returned.connect(deliveries.done)
        worker.errored.connect(lambda exc: deliveries.done(JobOutcome(error=exc)))
        worker.start()

    def cancel(self) -> None:
        """Stop a propagation or download after the step in progress (keeps finished frames)."""
        self.scheduler.drop_propagation()
        if self._worker is not None and self.scheduler.cancellable():
            self._cancel.set()
            self.status_label.setText("cancelling...")

    def request_sync(self) -> None:
        """Prompts changed: send them to the engine soon (coalesces bursts of edits)."""
        self.scheduler.request_sync()
        self._sync_timer.start()

    def _run_pending(self) -> None:
        """Start the next job: load the model, send prompts, then propagate if asked."""
        self._unload_if_changed()
        step = self.scheduler.next_step(self.controller.target is not None, self.controller.model is not None, self._has_prompts)
        if step is Step.NO_MODEL:
            notify("warning", NO_MODEL)
        elif step is Step.LOAD:
            self.load_model()
        elif step is Step.SYNC:
            try:
                plan = self.controller.plan_sync()
            except ValueError as exc:
                notify("warning", str(exc))
                self.scheduler.drop_propagation()
                return
            self._report_problems()
            if plan is not None:
                self._start_sync(plan)
            elif self.scheduler.propagation is not None:
                self._run_pending()  # nothing to send: go on with the propagation
        elif step is Step.PROPAGATE:
            request = self.scheduler.take_propagation()
            if request is not None:
                self._start_propagation(request.direction, request.first, request.last)

    def _has_prompts(self) -> bool:
        try:
            return bool(self.controller.prompts())
        except ValueError:
            return False

    def _report_problems(self) -> None:
        """Prompts the engine cannot use are removed, with a message saying why."""
        problems = self.controller.problems
        t = self.controller.target
        if not problems or t is None:
            return
        for kind, layer in (("point", t.points), ("box", t.boxes)):
            rows = {p.index for p in problems if p.kind == kind}
            if rows:
                layer.selected_data = rows
                layer.remove_selected()
        messages = sorted({p.message for p in problems})
        notify("warning", "; ".join(messages) + ". It was removed: click inside the image.")

    def _start_sync(self, plan: SyncPlan) -> None:
        self.status_label.setText("segmenting...")
        self._start_job(
            "sync",
            function_job(self.controller.run_sync, plan),
            on_yield=None,
            on_done=lambda outcome: self._on_synced(plan, outcome),
            total=0,
            description="segmenting",
        )

    def _on_synced(self, plan: SyncPlan, outcome: JobOutcome) -> None:
        if outcome.error is not None:
            self.controller.reset_session()
            self.status_label.setText("")
            notify("error", f"Segmentation failed: {outcome.error}. Your layers are unchanged; try another click.")
            self.scheduler.drop_propagation()
            return
        result = outcome.value
        self.controller.apply_sync(plan, result)
        for message in result.errors:
            notify("warning", message)
        self.status_label.setText("")
        self.refresh_objects()

    # ================================================================== propagation
    def propagate(self, direction: str | None = None, first: int | None = None, last: int | None = None) -> None:
        """Track every object through the video (after sending any new prompts)."""
        if self.controller.target is None:
            notify("error", NO_IMAGE)
            return
        if self.scheduler.running == "propagate":
            return
        try:
            has_prompts = bool(self.controller.prompts())
        except ValueError as exc:
            notify("warning", str(exc))
            return
        if not has_prompts:
            notify("warning", NOTHING_TO_PROPAGATE)
            return
        direction = direction or DIRECTION_CHOICES[self.direction_combo.currentText()]
        if first is None and last is None and not self.all_frames_check.isChecked():
            first, last = self.first_spin.value(), self.last_spin.value()
        self.scheduler.request_propagation(direction, first, last)
        self._sync_timer.start(0)

    def _start_propagation(self, direction: str, first: int | None, last: int | None) -> None:
        try:
            plan = self.controller.plan_propagation(direction, first, last)
        except ValueError as exc:
            notify("warning", str(exc))
            return
        self._frames_done = 0
        self._frames_kept = 0
        self.progress_bar.setRange(0, max(plan.total, 1))
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("%v / %m frames")
        self._start_job(
            "propagate",
            propagate_job(self.controller.run_propagation(plan), self._fresh_cancel()),
            on_yield=lambda item: self._on_frame(plan, item),
            on_done=lambda outcome: self._on_propagated(plan, outcome),
            total=plan.total,
            description=f"propagating {direction}",
        )

    def _on_frame(self, plan: PropagationPlan, item: tuple[int, np.ndarray, tuple[int, ...]]) -> None:
        frame, plane, objects = item
        if not self.controller.apply_frame(plan, frame, plane, objects):
            self._frames_kept += 1
        self._frames_done += 1
        self.progress_bar.setValue(min(self._frames_done, self.progress_bar.maximum()))
        if self._progress is not None:
            self._progress.update(1)
        if self.follow_check.isChecked():
            self._show_frame(plan, frame)

    def _show_frame(self, plan: PropagationPlan, frame: int) -> None:
        self._show_frame_of(plan.geometry, frame)

    def _show_frame_of(self, geometry: Any, frame: int) -> None:
        """Move the viewer to ``frame`` of the tracked axis."""
        axis = geometry.axis
        t = self.controller.target
        if axis is None or t is None:
            return
        world_axis = axis + self.viewer.dims.ndim - t.image.ndim
        if 0 <= world_axis < self.viewer.dims.ndim:
            world = t.image.data_to_world([frame if a == axis else 0 for a in range(t.image.ndim)])
            self.viewer.dims.set_point(world_axis, world[axis])

    def _on_propagated(self, plan: PropagationPlan, outcome: JobOutcome) -> None:
        done = self._frames_done
        kept = f"; {self._frames_kept} hand-painted frames left as painted" if self._frames_kept else ""
        if outcome.error is not None:
            self.status_label.setText(f"stopped by an error after {done} frames; they are kept")
            notify("error", f"Propagation failed after {done} frames (they are kept): {outcome.error}")
        elif outcome.cancelled:
            self.status_label.setText(f"cancelled: {done} of {plan.total} frames done and kept{kept}")
        else:
            self.status_label.setText(f"done: {done} frames{kept}")
        self.refresh_objects()

class _GeneratorJob:
    """A napari generator worker around an already created generator."""

    @staticmethod
    def create(generator: Any) -> Any:
        from napari.qt.threading import GeneratorWorker

        def run() -> Any:
            return (yield from generator)

        return GeneratorWorker(run)
