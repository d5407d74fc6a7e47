"""The SAM 2 panel's controls and their layout (Qt only; no behaviour).

:class:`Sam2Panel` builds the model, data, objects and propagation sections;
:class:`~.widget.Sam2Widget` connects them to the controller and the scheduler.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QCheckBox,
    QComboBox,
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
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from napari_sam2.tracking.choice import DEFAULT_IMAGE_SIZES

__all__ = ["Sam2Panel", "SHORTCUTS", "OFFICIAL_WEIGHTS", "LOCAL_WEIGHTS", "FROM_FILE", "DIRECTION_CHOICES"]

SHORTCUTS: tuple[tuple[str, str], ...] = (
    ("Click", "add a click of the current kind to the current object"),
    ("Shift+click / right click", "add a click of the other kind (negative by default)"),
    ("N", "switch plain clicks between positive and negative"),
    ("Shift+N", "new object"),
    (". / ,", "next / previous object"),
    ("G", "propagate"),
    ("Escape", "cancel propagation, Track all or download"),
    ("R (boxes layer)", "draw a box around the current object"),
    ("P / E (masks layer)", "paint / erase the current object by hand"),
)

OFFICIAL_WEIGHTS = "Official (download)"
LOCAL_WEIGHTS = "Local file..."
FROM_FILE = "as recorded in the file"
DIRECTION_CHOICES = {"Both directions": "both", "Forward": "forward", "Backward": "backward"}


class Sam2Panel(QWidget):
    """The controls of the dock widget, laid out; subclasses give them behaviour."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._build_ui()
        self.path_row.setVisible(self.weights_combo.currentText() == LOCAL_WEIGHTS)

    def _build_ui(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)

        # --- model
        model_box = QGroupBox("Model")
        form = QFormLayout(model_box)
        from napari_sam2.model import MODEL_NAMES
        from napari_sam2.model.bundled import BUNDLED_MODELS, describe_bundled

        self.model_combo = QComboBox()
        for name in MODEL_NAMES:
            self.model_combo.addItem(name, name)
        for name in BUNDLED_MODELS:
            self.model_combo.addItem(describe_bundled(name), name)
        self.model_combo.addItem(FROM_FILE, None)
        self.model_combo.setToolTip(
            "SAM 2.1 models are more accurate than SAM 2. Larger is better but slower.\n"
            "demo: a small model shipped with the plugin (no download), trained on synthetic data only; "
            "it is also used when official weights cannot be downloaded.\n"
            f"'{FROM_FILE}': the architecture a local checkpoint records (e.g. a fine-tuned or reduced model)."
        )
        self.weights_combo = QComboBox()
        self.weights_combo.addItems([OFFICIAL_WEIGHTS, LOCAL_WEIGHTS])
        self.weights_combo.setToolTip("Official weights are downloaded once and cached; or pick a .pt file.")
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("path to a SAM 2 .pt checkpoint")
        self.browse_button = browse = QToolButton(text="...")
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
        self.object_table = QTableWidget(0, 4)
        self.object_table.setHorizontalHeaderLabels(["Id", "Name", "Prompted frames", "Lineage"])
        self.object_table.verticalHeader().setVisible(False)
        self.object_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        # several rows for lineage edits (Ctrl+click); the row clicked last is the current object
        self.object_table.setSelectionMode(QAbstractItemView.ExtendedSelection)
        header = self.object_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeToContents)
        self.object_table.setColumnHidden(3, True)  # shown once there is a lineage (Track all)
        self.object_table.setMinimumHeight(110)
        self.object_table.setToolTip(
            "The selected row is the current object. Double-click a name to rename it.\n"
            "Ctrl+click chooses several tracks for the lineage edits of Track all."
        )
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
        self.direction_combo.addItems(list(DIRECTION_CHOICES))
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
        from napari_sam2.tracking.models import available_devices

        try:
            devices = available_devices()
        except Exception:  # pragma: no cover - broken torch install
            devices = ["cpu"]
        self.device_combo.addItem(f"auto ({devices[0]})", None)
        for d in devices:
            self.device_combo.addItem(d, d)
        self.model_combo.setCurrentText("sam2.1_hiera_base_plus" if devices[0] == "cuda" else "sam2.1_hiera_tiny")
