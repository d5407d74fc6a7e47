"""The SAM 2 dock widget: a Qt view over :class:`Sam2Controller`.

The widget holds no model logic. It turns user actions into controller calls, runs
the engine work in napari thread workers one job at a time, and writes results back on
the GUI thread as they arrive, so the viewer never freezes.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable

import numpy as np
from qtpy.QtCore import QEvent, Qt, QTimer, Signal
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .controller import NO_IMAGE, PropagationPlan, Sam2Controller, SyncPlan
from .geometry import tracked_axis_choices
from .jobs import JobOutcome, function_job, load_job, propagate_job
from .loading import DEFAULT_IMAGE_SIZES, LoadedModel, ModelSpec, available_devices, guess_variant, load_model

__all__ = ["Sam2Widget", "SHORTCUTS"]

SHORTCUTS: tuple[tuple[str, str], ...] = (
    ("Click", "add a click of the current kind to the current object"),
    ("Shift+click / right click", "add a click of the other kind (negative by default)"),
    ("N", "switch plain clicks between positive and negative"),
    ("Shift+N", "new object"),
    (". / ,", "next / previous object"),
    ("G", "propagate"),
    ("Escape", "cancel propagation or download"),
    ("R (boxes layer)", "draw a box around the current object"),
    ("P / E (masks layer)", "paint / erase the current object by hand"),
)

_OFFICIAL = "Official (download)"
_LOCAL = "Local file..."
_DIRECTIONS = {"Both directions": "both", "Forward": "forward", "Backward": "backward"}


def _notify(kind: str, message: str) -> None:
    from napari.utils import notifications

    {"error": notifications.show_error, "warning": notifications.show_warning}.get(
        kind, notifications.show_info
    )(message)


class _Lifetime:
    """Plain-Python state that outlives the Qt widget: results arriving after the widget
    was deleted (viewer closed mid-job) are dropped and the job is told to stop."""

    def __init__(self) -> None:
        self.alive = True
        self.cancel = threading.Event()


def _on_destroyed(lifetime: _Lifetime, *args: Any) -> None:
    lifetime.alive = False
    lifetime.cancel.set()


def _swatch(color: tuple[float, float, float, float]) -> QIcon:
    pixmap = QPixmap(14, 14)
    pixmap.fill(QColor.fromRgbF(*[min(max(c, 0.0), 1.0) for c in color]))
    return QIcon(pixmap)


class Sam2Widget(QWidget):
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
        self.loaded: LoadedModel | None = None
        self._worker: Any = None
        self._job_kind = ""
        self._cancel = threading.Event()
        self._progress: Any = None
        self._sync_wanted = False
        self._propagate_request: tuple[str, int | None, int | None] | None = None
        self._load_failed = False
        self._settings_changed = False
        self._frames_done = 0
        self._frames_kept = 0
        self._bound_keys: list[str] = []

        self._lifetime = _Lifetime()
        self.destroyed.connect(functools.partial(_on_destroyed, self._lifetime))

        self._sync_timer = QTimer(self, singleShot=True, interval=30)
        self._sync_timer.timeout.connect(self._run_pending)
        self._objects_timer = QTimer(self, singleShot=True, interval=0)
        self._objects_timer.timeout.connect(self.refresh_objects)

        self._build_ui()
        self._connect_viewer()
        self._bind_keys()
        self.refresh_images()

    # ================================================================== UI
    def _build_ui(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)

        # --- model
        model_box = QGroupBox("Model")
        form = QFormLayout(model_box)
        from napari_sam2.model import MODEL_NAMES

        self.model_combo = QComboBox()
        self.model_combo.addItems(list(MODEL_NAMES))
        self.model_combo.setToolTip("SAM 2.1 models are more accurate than SAM 2. Larger is better but slower.")
        self.weights_combo = QComboBox()
        self.weights_combo.addItems([_OFFICIAL, _LOCAL])
        self.weights_combo.setToolTip("Official weights are downloaded once and cached; or pick a .pt file.")
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("path to a SAM 2 .pt checkpoint")
        browse = QToolButton(text="...")
        browse.clicked.connect(self._browse_checkpoint)
        path_row = QWidget()
        path_layout = QHBoxLayout(path_row)
        path_layout.setContentsMargins(0, 0, 0, 0)
        path_layout.addWidget(self.path_edit)
        path_layout.addWidget(browse)
        self.path_row = path_row
        self.device_combo = QComboBox()
        self.size_combo = QComboBox()
        for size in DEFAULT_IMAGE_SIZES:
            self.size_combo.addItem(f"{size} px" + (" (best)" if size == 1024 else ""), size)
        self.size_combo.setToolTip("Model input size: smaller runs faster (512 is about 8x faster on a CPU, with coarser masks), 1024 is the original.")
        self.load_button = QPushButton("Load model")
        self.load_button.clicked.connect(self.load_model)
        self.model_status = QLabel("not loaded: loads on the first click")
        self.model_status.setWordWrap(True)
        form.addRow("Model", self.model_combo)
        form.addRow("Weights", self.weights_combo)
        form.addRow("", path_row)
        form.addRow("Device", self.device_combo)
        form.addRow("Speed", self.size_combo)
        form.addRow(self.load_button, self.model_status)
        layout.addWidget(model_box)

        # --- data
        data_box = QGroupBox("Data")
        form = QFormLayout(data_box)
        self.image_combo = QComboBox()
        self.image_combo.setToolTip("The image to segment; its clicks, boxes and masks layers are made for you.")
        self.axis_combo = QComboBox()
        self.axis_combo.setToolTip("Objects are tracked along this axis; others stay where the viewer is.")
        self.contrast_combo = QComboBox()
        self.contrast_combo.addItems(["as displayed", "automatic"])
        self.contrast_combo.setToolTip(
            "16-bit and float images: the model sees the image with the layer's contrast limits\n"
            "(as displayed) or with robust percentiles of the stack (automatic)."
        )
        form.addRow("Image", self.image_combo)
        form.addRow("Track along", self.axis_combo)
        form.addRow("Contrast", self.contrast_combo)
        layout.addWidget(data_box)

        # --- objects
        obj_box = QGroupBox("Objects")
        obj_layout = QVBoxLayout(obj_box)
        clicks_row = QHBoxLayout()
        self.positive_radio = QRadioButton("Positive clicks")
        self.negative_radio = QRadioButton("Negative clicks")
        self.positive_radio.setChecked(True)
        self.positive_radio.setToolTip("A click marks the object (N switches; Shift+click adds the other kind)")
        self.negative_radio.setToolTip("A click marks background (N switches; Shift+click adds the other kind)")
        group = QButtonGroup(self)
        group.addButton(self.positive_radio)
        group.addButton(self.negative_radio)
        clicks_row.addWidget(self.positive_radio)
        clicks_row.addWidget(self.negative_radio)
        obj_layout.addLayout(clicks_row)
        self.object_table = QTableWidget(0, 3)
        self.object_table.setHorizontalHeaderLabels(["Id", "Name", "Prompted frames"])
        self.object_table.verticalHeader().setVisible(False)
        self.object_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.object_table.setSelectionMode(QAbstractItemView.SingleSelection)
        header = self.object_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeToContents)
        self.object_table.setMinimumHeight(110)
        self.object_table.setToolTip("The selected row is the current object. Double-click a name to rename it.")
        obj_layout.addWidget(self.object_table)
        buttons = QHBoxLayout()
        self.new_button = QPushButton("New")
        self.new_button.setToolTip("Start a new object (Shift+N)")
        self.delete_button = QPushButton("Delete")
        self.delete_button.setToolTip("Delete the current object: its clicks, boxes and masks")
        self.clear_button = QPushButton("Clear frame")
        self.clear_button.setToolTip("Remove the current object's prompts, hand edits and mask on this frame")
        for b in (self.new_button, self.delete_button, self.clear_button):
            buttons.addWidget(b)
        obj_layout.addLayout(buttons)
        files = QHBoxLayout()
        self.save_prompts_button = QPushButton("Save prompts...")
        self.save_prompts_button.setToolTip("Write every click, box and painted mask to a JSON file (for the command line, or to go on later)")
        self.load_prompts_button = QPushButton("Load prompts...")
        self.load_prompts_button.setToolTip("Add the prompts of a JSON file to this image")
        files.addWidget(self.save_prompts_button)
        files.addWidget(self.load_prompts_button)
        obj_layout.addLayout(files)
        layout.addWidget(obj_box)

        # --- propagation
        prop_box = QGroupBox("Propagate")
        form = QFormLayout(prop_box)
        self.direction_combo = QComboBox()
        self.direction_combo.addItems(list(_DIRECTIONS))
        self.all_frames_check = QCheckBox("all frames")
        self.all_frames_check.setChecked(True)
        self.first_spin = QSpinBox()
        self.last_spin = QSpinBox()
        for spin in (self.first_spin, self.last_spin):
            spin.setEnabled(False)
        range_row = QHBoxLayout()
        range_row.addWidget(self.all_frames_check)
        range_row.addWidget(QLabel("from"))
        range_row.addWidget(self.first_spin)
        range_row.addWidget(QLabel("to"))
        range_row.addWidget(self.last_spin)
        self.follow_check = QCheckBox("show each frame as it is done")
        self.follow_check.setChecked(True)
        run_row = QHBoxLayout()
        self.propagate_button = QPushButton("Propagate")
        self.propagate_button.setToolTip("Track every object through the chosen frames (G)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the current frame; finished frames are kept (Escape)")
        self.cancel_button.setEnabled(False)
        run_row.addWidget(self.propagate_button)
        run_row.addWidget(self.cancel_button)
        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setValue(0)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        form.addRow("Direction", self.direction_combo)
        form.addRow("Frames", range_row)
        form.addRow("", self.follow_check)
        form.addRow(run_row)
        form.addRow(self.progress_bar)
        form.addRow(self.status_label)
        layout.addWidget(prop_box)

        keys = "<br>".join(f"<b>{k}</b>: {v}" for k, v in SHORTCUTS)
        self.help_label = QLabel(f"<small>{keys}</small>")
        self.help_label.setWordWrap(True)
        self.help_label.setTextFormat(Qt.RichText)
        layout.addWidget(self.help_label)
        layout.addStretch(1)
        self.setToolTip("SAM 2: " + "; ".join(f"{k}: {v}" for k, v in SHORTCUTS))
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Maximum)

        # devices: importing torch is only paid when the widget opens
        try:
            devices = available_devices()
        except Exception:  # pragma: no cover - broken torch install
            devices = ["cpu"]
        self.device_combo.addItem(f"auto ({devices[0]})", None)
        for d in devices:
            self.device_combo.addItem(d, d)
        self.model_combo.setCurrentText("sam2.1_hiera_base_plus" if devices[0] == "cuda" else "sam2.1_hiera_tiny")
        self._update_path_row()

        # signals
        self.weights_combo.currentIndexChanged.connect(self._update_path_row)
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
        bindings: dict[str, Callable[[], Any]] = {
            "N": self.toggle_polarity,
            "Shift-N": self.new_object,
            ".": lambda: self.step_object(1),
            ",": lambda: self.step_object(-1),
            "G": self.propagate,
            "Escape": self.cancel,
        }
        for key, action in bindings.items():
            self.viewer.bind_key(key, lambda viewer, action=action: action(), overwrite=True)
            self._bound_keys.append(key)

    def close_widget(self) -> None:
        """Unbind keys, stop jobs and let go of the layers (which stay, unchanged)."""
        if not self._lifetime.alive:
            return
        self.cancel()
        self._lifetime.cancel.set()
        self._lifetime.alive = False
        for key in self._bound_keys:
            try:
                self.viewer.bind_key(key, None)
            except Exception:
                pass
        self._bound_keys.clear()
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

    def _layers_changed(self, event: Any = None) -> None:
        QTimer.singleShot(0, self.refresh_images)

    def _dims_changed(self, event: Any = None) -> None:
        t = self.controller.target
        if t is None or t.axis is None:
            return
        # a 4D stack: moving the other axis means a new slice is tracked from now on
        if self._job_kind == "" and self.controller.session is not None:
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
        if self._busy():
            _notify("warning", "Wait for the running job to finish (or Cancel it) before switching images.")
            return
        shape = Sam2Controller._image_shape(layer)
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
            _notify("warning", str(exc))
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
        if self._busy():
            _notify("warning", "Wait for the running job to finish (or Cancel it) before changing the axis.")
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

    # ================================================================== model
    def _update_path_row(self) -> None:
        self.path_row.setVisible(self.weights_combo.currentText() == _LOCAL)

    def _browse_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "SAM 2 checkpoint", "", "PyTorch checkpoints (*.pt *.pth);;All files (*)")
        if path:
            self.path_edit.setText(path)
            self._model_settings_changed()

    def _model_settings_changed(self, *args: Any) -> None:
        if self.weights_combo.currentText() == _LOCAL and self.path_edit.text():
            from napari_sam2.model import MODEL_NAMES

            guess = guess_variant(self.path_edit.text(), list(MODEL_NAMES))
            if guess and guess != self.model_combo.currentText():
                self.model_combo.blockSignals(True)
                self.model_combo.setCurrentText(guess)
                self.model_combo.blockSignals(False)
        if self.loaded is not None and self.model_spec() == self.loaded.spec:
            self._settings_changed = False
            return
        self._load_failed = False
        if self._job_kind == "load":
            self.cancel()
        if self.loaded is not None:
            self._settings_changed = True
            self._unload_if_changed()

    def _unload_if_changed(self) -> None:
        """Drop the loaded model after its settings changed (never under a running job)."""
        if self._settings_changed and not self._busy():
            self._settings_changed = False
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

    def model_spec(self) -> ModelSpec:
        checkpoint = "official" if self.weights_combo.currentText() == _OFFICIAL else self.path_edit.text().strip()
        size = self.size_combo.currentData()
        return ModelSpec(
            name=self.model_combo.currentText(),
            checkpoint=checkpoint,
            device=self.device_combo.currentData(),
            image_size=None if size == 1024 else size,
        )

    def use_model(self, loaded: LoadedModel) -> None:
        """Use an already built model (e.g. one shared between viewers)."""
        for combo in (self.model_combo, self.size_combo):
            combo.blockSignals(True)
        self.model_combo.setCurrentText(loaded.spec.name)
        self.set_image_size(loaded.spec.image_size or 1024)
        for combo in (self.model_combo, self.size_combo):
            combo.blockSignals(False)
        self.loaded = loaded
        self._settings_changed = False
        self.controller.set_model(loaded.model)
        self.model_status.setText(f"loaded: {loaded.description}")
        self._load_failed = False
        self.request_sync()

    def load_model(self) -> None:
        """Load (and on first use download) the chosen model in a worker."""
        if self._busy():
            if self._job_kind != "load":
                _notify("info", "The model will load when the running job ends.")
            return
        spec = self.model_spec()
        if spec.checkpoint == "":
            self._load_failed = True
            _notify("error", "Choose a checkpoint file (Weights: Local file...), or use the official download.")
            return
        if spec.checkpoint == "official":
            from napari_sam2.model.checkpoint import checkpoint_path, is_cached

            if not is_cached(spec.name):
                _notify("info", f"Downloading {spec.name} once; it is kept in {checkpoint_path(spec.name).parent}.")
        self.model_status.setText(f"loading {spec.name}...")
        self._start_job(
            "load",
            load_job(lambda progress: load_model(spec, progress), self._fresh_cancel()),
            on_yield=self._on_download_progress,
            on_done=self._on_model_loaded,
            total=0,
            description=f"loading {spec.name}",
        )

    def _on_download_progress(self, report: tuple[int, int]) -> None:
        done, total = report
        if total > 0:
            self.progress_bar.setRange(0, 1000)
            self.progress_bar.setValue(int(1000 * done / total))
            self.progress_bar.setFormat(f"download {done / 1e6:.0f} / {total / 1e6:.0f} MB")
            if self._progress is None and self._job_kind == "load":
                from napari.utils import progress

                self._progress = progress(total=1000, desc="downloading the model")
            if self._progress is not None:
                self._progress.n = int(1000 * done / total)
                self._progress.refresh()

    def _on_model_loaded(self, outcome: JobOutcome) -> None:
        self._reset_progress()
        if outcome.cancelled:
            self.model_status.setText("loading cancelled: loads on the next click")
            self._load_failed = True
            return
        if outcome.error is not None:
            self._load_failed = True
            self.model_status.setText("not loaded (see the message)")
            _notify("error", f"Could not load the model: {outcome.error}")
            return
        loaded: LoadedModel = outcome.value
        if loaded.note:
            _notify("info", loaded.note)
        if loaded.spec.name != self.model_combo.currentText():
            self.model_combo.blockSignals(True)
            self.model_combo.setCurrentText(loaded.spec.name)
            self.model_combo.blockSignals(False)
        self.loaded = loaded
        self.controller.set_model(loaded.model)
        self.model_status.setText(f"loaded: {loaded.description}")

    # ================================================================== jobs
    def _busy(self) -> bool:
        return self._worker is not None

    def _fresh_cancel(self) -> threading.Event:
        """A new cancel flag for the job about to start (the old one may be set)."""
        self._cancel = threading.Event()
        self._lifetime.cancel = self._cancel
        return self._cancel

    @property
    def busy(self) -> bool:
        """True while an engine job (load, segment, propagate) runs."""
        return self._busy()

    def _start_job(self, kind: str, generator: Any, on_yield: Callable[[Any], None] | None,
                   on_done: Callable[[JobOutcome], None], total: int, description: str) -> None:
        from napari.utils import progress

        worker = _GeneratorJob.create(generator)
        self._worker = worker
        self._job_kind = kind
        # napari's indeterminate progress bar animates constantly and slows everything
        # down, so a bar appears only once the amount of work is known
        self._progress = progress(total=total, desc=description) if total > 0 else None
        self.cancel_button.setEnabled(kind in ("load", "propagate"))
        self.delete_button.setEnabled(False)
        if kind != "sync":
            self.status_label.setText(description + "...")

        lifetime = self._lifetime

        def done(outcome: Any) -> None:
            if not lifetime.alive or self._worker is not worker:
                return
            self._worker = None
            self._job_kind = ""
            if self._progress is not None:
                self._progress.close()
                self._progress = None
            self.cancel_button.setEnabled(False)
            self.delete_button.setEnabled(True)
            if not isinstance(outcome, JobOutcome):  # should not happen: jobs catch everything
                outcome = JobOutcome(error=RuntimeError(str(outcome)))
            try:
                on_done(outcome)
            finally:
                self.job_finished.emit(kind)
                self._sync_timer.start()

        if on_yield is not None:
            worker.yielded.connect(lambda value: on_yield(value) if lifetime.alive else None)
        worker.returned.connect(done)
        worker.errored.connect(lambda exc: done(JobOutcome(error=exc)))
        worker.start()

    def cancel(self) -> None:
        """Stop a propagation or download after the step in progress (keeps finished frames)."""
        self._propagate_request = None
        if self._worker is not None and self._job_kind in ("load", "propagate"):
            self._cancel.set()
            self.status_label.setText("cancelling...")

    def request_sync(self) -> None:
        """Prompts changed: send them to the engine soon (coalesces bursts of edits)."""
        self._sync_wanted = True
        self._sync_timer.start()

    def _run_pending(self) -> None:
        """Start the next job: load the model, send prompts, then propagate if asked."""
        self._unload_if_changed()
        if self._busy() or self.controller.target is None:
            return
        if not (self._sync_wanted or self._propagate_request):
            return
        if self.controller.model is None:
            try:
                has_prompts = bool(self.controller.prompts())
            except ValueError:
                has_prompts = False
            if not (has_prompts or self._propagate_request):
                return
            if self._load_failed:
                self._sync_wanted = False
                self._propagate_request = None
                _notify(
                    "warning",
                    "No model is loaded (see the previous message). Fix the model settings and press "
                    "Load model: your clicks, boxes and masks are kept and will be used.",
                )
                return
            self.load_model()
            return
        if self._sync_wanted:
            self._sync_wanted = False
            try:
                plan = self.controller.plan_sync()
            except ValueError as exc:
                _notify("warning", str(exc))
                self._propagate_request = None
                return
            self._report_problems()
            if plan is not None:
                self._start_sync(plan)
                return
        if self._propagate_request is not None:
            request, self._propagate_request = self._propagate_request, None
            self._start_propagation(*request)

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
        _notify("warning", "; ".join(messages) + ". It was removed: click inside the image.")

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
            _notify("error", f"Segmentation failed: {outcome.error}. Your layers are unchanged; try another click.")
            self._propagate_request = None
            return
        result = outcome.value
        self.controller.apply_sync(plan, result)
        for message in result.errors:
            _notify("warning", message)
        self.status_label.setText("")
        self.refresh_objects()

    # ================================================================== propagation
    def propagate(self, direction: str | None = None, first: int | None = None, last: int | None = None) -> None:
        """Track every object through the video (after sending any new prompts)."""
        if self.controller.target is None:
            _notify("error", NO_IMAGE)
            return
        if self._job_kind == "propagate":
            return
        try:
            has_prompts = bool(self.controller.prompts())
        except ValueError as exc:
            _notify("warning", str(exc))
            return
        if not has_prompts:
            _notify("warning", "Nothing to propagate yet: click on an object, draw a box or paint a mask first.")
            return
        direction = direction or _DIRECTIONS[self.direction_combo.currentText()]
        if first is None and last is None and not self.all_frames_check.isChecked():
            first, last = self.first_spin.value(), self.last_spin.value()
        self._load_failed = False
        self._propagate_request = (direction, first, last)
        self._sync_wanted = True
        self._sync_timer.start(0)

    def _start_propagation(self, direction: str, first: int | None, last: int | None) -> None:
        try:
            plan = self.controller.plan_propagation(direction, first, last)
        except ValueError as exc:
            _notify("warning", str(exc))
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
        axis = plan.geometry.axis
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
            _notify("error", f"Propagation failed after {done} frames (they are kept): {outcome.error}")
        elif outcome.cancelled:
            self.status_label.setText(f"cancelled: {done} of {plan.total} frames done and kept{kept}")
        else:
            self.status_label.setText(f"done: {done} frames{kept}")
        self.refresh_objects()

    # ================================================================== objects
    def _schedule_object_refresh(self) -> None:
        self._objects_timer.start()

    def refresh_objects(self) -> None:
        """Rebuild the object list (ids, colours, names, prompted frames)."""
        rows = self.controller.object_rows()
        current = self.controller.current_object
        table = self.object_table
        table.blockSignals(True)
        table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            id_item = QTableWidgetItem(_swatch(row.color), str(row.obj_id))
            id_item.setFlags(id_item.flags() & ~Qt.ItemIsEditable)
            id_item.setData(Qt.UserRole, row.obj_id)
            name_item = QTableWidgetItem(row.name)
            name_item.setData(Qt.UserRole, row.obj_id)
            frames_item = QTableWidgetItem(row.frames)
            frames_item.setFlags(frames_item.flags() & ~Qt.ItemIsEditable)
            table.setItem(i, 0, id_item)
            table.setItem(i, 1, name_item)
            table.setItem(i, 2, frames_item)
            if row.obj_id == current:
                table.selectRow(i)
        if current not in [r.obj_id for r in rows]:
            table.clearSelection()
        table.blockSignals(False)
        self.positive_radio.blockSignals(True)
        self.positive_radio.setChecked(self.controller.positive)
        self.negative_radio.setChecked(not self.controller.positive)
        self.positive_radio.blockSignals(False)

    def _table_selection_changed(self) -> None:
        items = self.object_table.selectedItems()
        if items:
            obj = items[0].data(Qt.UserRole)
            if obj is not None and obj != self.controller.current_object:
                self.controller.current_object = int(obj)

    def _table_item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() == 1:
            self.controller.rename_object(int(item.data(Qt.UserRole)), item.text())

    def new_object(self) -> None:
        try:
            obj = self.controller.new_object()
        except ValueError as exc:
            _notify("error", str(exc))
            return
        self.status_label.setText(f"object {obj}: click on it")

    def step_object(self, step: int) -> None:
        self.controller.step_object(step)

    def delete_object(self, obj: int | None = None) -> None:
        if self._busy():
            _notify("warning", "Wait for the running job to finish (or Cancel it) before deleting an object.")
            return
        obj = self.controller.current_object if obj is None else int(obj)
        name = self.controller.target.registry.name(obj) if self.controller.target else str(obj)
        self.controller.delete_object(obj)
        self.refresh_objects()
        _notify("info", f"Deleted {name}: its clicks, boxes and masks are gone.")
        self.request_sync()

    def clear_frame(self) -> None:
        if self._busy():
            _notify("warning", "Wait for the running job to finish (or Cancel it) before clearing a frame.")
            return
        try:
            self.controller.clear_frame()
        except ValueError as exc:
            _notify("warning", str(exc))

    def save_prompts(self, path: str | None = None) -> str | None:
        """Write the prompts to JSON; asks for a file name when none is given."""
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save prompts", "prompts.json", "Prompts (*.json)")
            if not path:
                return None
        spec = self.loaded.spec if self.loaded is not None else self.model_spec()
        try:
            prompt_set = self.controller.export_prompts(spec.name, spec.image_size or 1024)
            written = prompt_set.to_json(path, overwrite=True)
        except (ValueError, OSError) as exc:
            _notify("error", f"Could not save the prompts: {exc}")
            return None
        _notify("info", f"Saved the prompts of {len(prompt_set.objects)} objects to {written}.")
        return str(written)

    def load_prompts(self, path: str | None = None) -> int:
        """Add the prompts of a JSON file to the layers (they are then segmented)."""
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Load prompts", "", "Prompts (*.json);;All files (*)")
            if not path:
                return 0
        from napari_sam2.io.prompts import PromptSet

        try:
            prompt_set = PromptSet.from_json(path)
            count = self.controller.import_prompts(prompt_set)
        except (ValueError, OSError) as exc:
            _notify("error", f"Could not load the prompts: {exc}")
            return 0
        self.refresh_objects()
        _notify("info", f"Loaded {count} prompts of {len(prompt_set.objects)} objects.")
        return count

    def toggle_polarity(self) -> None:
        positive = self.controller.toggle_polarity()
        self.refresh_objects()
        self.viewer.status = "plain clicks are now " + ("positive (object)" if positive else "negative (background)")

    def _polarity_changed(self, checked: bool) -> None:
        if self.positive_radio.isChecked() != self.controller.positive:
            self.controller.toggle_polarity()


class _GeneratorJob:
    """A napari generator worker around an already created generator."""

    @staticmethod
    def create(generator: Any) -> Any:
        from napari.qt.threading import GeneratorWorker

        def run() -> Any:
            return (yield from generator)

        return GeneratorWorker(run)
