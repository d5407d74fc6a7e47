"""The Track all section's behaviour: track every object, show the lineage, edit it.

A mixin of :class:`~.widget.Sam2Widget`. Track all runs forward from the current frame to
the end of the Propagate section's range, on a fresh engine session in a napari thread
worker (:func:`~napari_sam2.tracking.track_all_live.run_track_all`); each frame is
written into the masks layer on the GUI thread as it arrives, with hand-painted objects
kept as painted. Frames that already hold masks are replaced only after the user says so.
Afterwards the object list shows parents and daughters, and a Tracks layer "<masks>
lineage" shows the tracks (centroids), the divisions and one colour per family. Lineage
edits change the labels and the lineage together; the rules are
:mod:`napari_sam2.tracking.lineage_view`'s.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QMessageBox

from napari_sam2.io.lineage import Lineage
from napari_sam2.tracking.lineage_view import (
    LineageEditError,
    SlicePlanes,
    centroid_rows,
    describe_counts,
    forget_track,
    free_id,
    join_rows,
    mark_division,
    merge_tracks,
    plane_centroids,
    relabel_rows,
    split_track,
    tracks_layer_data,
    unmark_division,
)
from napari_sam2.tracking.track_all import TrackAllResult, TrackAllSettings
from napari_sam2.tracking.track_all_live import (
    TrackAllPlan,
    frames_to_replace,
    keep_locked,
    plan_track_all,
    run_track_all,
    seeds_from_layer,
)

from .jobs import JobOutcome, reporting_job
from .layers import NO_IMAGE, STATE_KEY, find_layer, image_data
from .notes import notify
from .prompt_files import export_prompts
from .track_all_section import AUTOMATIC, TrackAllSection

__all__ = ["TrackAllActions", "LINEAGE_ROLE"]

LINEAGE_ROLE = "lineage"
"""Role of the Tracks layer in its metadata (found again like the prompt layers)."""
BUSY = "Wait for the running job to finish (or Cancel it) before {}."


class TrackAllActions:
    """Track all section -> a track-all run on a worker -> labels, lineage, Tracks layer."""

    # ================================================================== set-up
    def _setup_track_all(self) -> None:
        """Add the section above the Fine-tune section and connect it."""
        self.track_all_section = section = TrackAllSection()
        layout = self.layout()
        anchor = getattr(self, "finetune", None) or self.help_label
        layout.insertWidget(layout.indexOf(anchor), section)
        section.seeds_combo.refresh = self.refresh_seed_layers
        section.run_button.clicked.connect(lambda: self.track_all())
        section.stop_button.clicked.connect(self.cancel)
        section.division_button.clicked.connect(lambda: self.mark_division())
        section.unmark_button.clicked.connect(lambda: self.unmark_division())
        section.merge_button.clicked.connect(lambda: self.merge_tracks())
        section.split_button.clicked.connect(lambda: self.split_track())
        self._ta_plan: TrackAllPlan | None = None
        self._ta_labels: Any = None  # the masks layer being written
        self._ta_rows: dict[int, np.ndarray] = {}  # frame -> centroid rows, during a run
        self._ta_done: set[int] = set()
        self._ta_locked: dict[int, set[int]] = {}  # frame -> objects painted there
        self._ta_pending = False  # run once the model is loaded
        self._track_all_detector: Callable[[int], np.ndarray] | None = None  # tests: instead of automatic masks
        self.job_finished.connect(self._track_all_after_load)
        self.refresh_seed_layers()

    def refresh_seed_layers(self) -> None:
        """'automatic' and every labels layer of the viewer, keeping the choice."""
        from napari.layers import Labels

        combo = self.track_all_section.seeds_combo
        chosen = combo.currentData()
        combo.blockSignals(True)
        combo.clear()
        combo.addItem(AUTOMATIC, None)
        for layer in self.viewer.layers:
            if isinstance(layer, Labels):
                combo.addItem(layer.name, layer)
        index = combo.findData(chosen) if chosen is not None else 0
        combo.setCurrentIndex(max(index, 0))
        combo.blockSignals(False)

    def track_all_settings(self) -> TrackAllSettings:
        """The settings the section's controls give."""
        s = self.track_all_section
        return TrackAllSettings(
            redetect_every=s.redetect_spin.value(),
            min_size=s.min_size_spin.value(),
            divisions=s.divisions_check.isChecked(),
        )

    def confirm_replace(self, text: str) -> bool:
        """Ask before masks are replaced (tests replace this method)."""
        answer = QMessageBox.question(self, "Track all", text, QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        return answer == QMessageBox.Yes

    # ================================================================== running
    def track_all(self) -> bool:
        """Track every object from the current frame to the end of the range; True if it started."""
        section = self.track_all_section
        t = self.controller.target
        if t is None:
            notify("error", NO_IMAGE)
            return False
        if self.scheduler.busy:
            notify("warning", BUSY.format("tracking all objects"))
            return False
        if self.controller.model is None:
            self._ta_pending = True  # goes on when the model is loaded
            section.status.setText("loading the model first...")
            self.load_model()
            return False
        try:
            geometry = self.controller.geometry()
            first = self.controller.current_frame()
            last = geometry.num_frames - 1 if self.all_frames_check.isChecked() else self.last_spin.value()
            if last < first:
                raise ValueError(
                    f"the current frame ({first}) is after the end of the frame range ({last}): "
                    "go to an earlier frame or widen the range in the Propagate section"
                )
            planes = SlicePlanes(t.labels.data, geometry)
            layer = section.seeds_layer()
            if layer is not None and layer not in self.viewer.layers:
                raise ValueError("the seed labels layer is no longer in the viewer: choose the seeds again")
            seeds = None
            if layer is not None:
                data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
                seeds = seeds_from_layer(data, geometry, first)
            prompts = export_prompts(self.controller)
            plan = plan_track_all(
                geometry,
                geometry.frames(image_data(t.image)),
                self.controller.contrast_limits(),
                first,
                last,
                output=planes[first],
                seeds=seeds,
                seeds_are_output=layer is t.labels,
                prompts=prompts if prompts.objects else None,
                settings=self.track_all_settings(),
                dtype=t.labels.data.dtype,
            )
        except ValueError as exc:  # UsageError, PromptError and the checks above
            notify("warning", f"Track all cannot start: {exc}")
            section.status.setText("not started (see the message)")
            return False
        painted = self.controller.painted_on(geometry)
        replaced = frames_to_replace(planes, first, last, plan.allowed)
        if replaced:
            kept = " Masks you painted by hand are kept." if any(first <= f <= last for f, _ in painted) else ""
            text = (
                f"{len(replaced)} of the frames {first}-{last} already hold masks "
                f"(first: frame {replaced[0]}). Track all replaces them.{kept}\n\nReplace them?"
            )
            if not self.confirm_replace(text):
                section.status.setText("not started: the frames' masks were kept")
                return False
        self._ta_locked = {}
        for frame, obj in painted:
            if first <= frame <= last:
                self._ta_locked.setdefault(frame, set()).add(obj)
        self._start_track_all(plan)
        return True

    def _track_all_after_load(self, kind: str) -> None:
        if kind != "load" or not self._ta_pending:
            return
        self._ta_pending = False
        if self.controller.model is not None:
            lifetime = self._lifetime
            QTimer.singleShot(0, lambda: self.track_all() if lifetime.alive else None)
        else:
            self.track_all_section.status.setText("not started: no model")

    def _start_track_all(self, plan: TrackAllPlan) -> None:
        section = self.track_all_section
        self._ta_plan = plan
        self._ta_labels = self.controller.target.labels
        self._ta_rows = {}
        self._ta_done = set()
        section.progress.setRange(0, max(plan.total, 1))
        section.progress.setValue(0)
        section.status.setText(f"finding the objects of frame {plan.first}..." if plan.automatic else "starting...")
        section.set_running(True)
        model = self.controller.model
        cancel = self._fresh_cancel()
        detector = self._track_all_detector

        def run(report: Callable[[Any], None]) -> TrackAllResult:
            return run_track_all(plan, model, report, cancel.is_set, detector=detector)

        self._start_job(
            "track_all",
            reporting_job(run),
            on_yield=self._on_track_all_reports,
            on_done=self._on_track_all_done,
            total=plan.total,
            description="tracking all objects",
        )

    def _on_track_all_reports(self, batch: list[tuple]) -> None:
        """GUI thread: write the frames that arrived (a frame may come again, revised)."""
        plan, labels = self._ta_plan, self._ta_labels
        if plan is None or labels is None or labels not in self.viewer.layers:
            return
        section = self.track_all_section
        geometry = plan.geometry
        shown = False
        latest = None
        for item in batch:
            if item[0] == "stage":
                continue
            _, frame, plane, rows = item
            index = geometry.labels_index(frame)
            locked = self._ta_locked.get(frame)
            if locked:
                plane = keep_locked(np.asarray(labels.data[index]), plane, locked)
                rows = plane_centroids(plane, frame)
            labels.data[index] = plane
            self._ta_rows[frame] = rows
            if frame not in self._ta_done:
                self._ta_done.add(frame)
                if self._progress is not None:
                    self._progress.update(1)
            shown |= self.controller._is_displayed(geometry, frame)
            latest = frame
        if latest is None:
            return
        section.progress.setValue(min(len(self._ta_done), section.progress.maximum()))
        section.status.setText(f"tracking: {len(self._ta_done)} of {plan.total} frames")
        if self.follow_check.isChecked():
            self._show_frame_of(geometry, latest)
            shown = True
        if shown:
            labels.refresh()

    def _on_track_all_done(self, outcome: JobOutcome) -> None:
        section = self.track_all_section
        section.set_running(False)
        plan, self._ta_plan = self._ta_plan, None
        labels, self._ta_labels = self._ta_labels, None
        done = len(self._ta_done)
        t = self.controller.target
        if labels is not None and labels in self.viewer.layers:
            labels.refresh()
        if outcome.error is not None or plan is None:
            text = f"stopped by an error after {done} frames; they are kept"
            section.status.setText(text)
            self.status_label.setText(text)
            notify("error", f"Track all failed after {done} frames (they are kept): {outcome.error}")
            return
        result: TrackAllResult = outcome.value
        if t is None or t.labels is not labels:
            return  # the layers went away meanwhile: nothing to show the lineage on
        t.track_rows = join_rows(self._ta_rows.values())
        t.track_record = result
        for obj in result.lineage.ids:
            t.registry.ensure(obj)
        self.update_tracks_layer()
        self.refresh_objects()
        counts = describe_counts(result.lineage)
        if result.cancelled:
            text = f"cancelled: {done} of {plan.total} frames done and kept; {counts}"
        else:
            text = f"done: {done} frames, {counts} ({result.seconds_total:.0f} s)"
        section.status.setText(text)
        self.status_label.setText(text)

    # ================================================================== the Tracks layer
    def tracks_layer(self) -> Any:
        """The Tracks layer of the current image's lineage, if there is one."""
        t = self.controller.target
        if t is None:
            return None
        return find_layer(self.viewer, t.image, LINEAGE_ROLE, tuple(t.labels.data.shape))

    def update_tracks_layer(self) -> Any:
        """Make or update "<masks> lineage" from the stored centroids and lineage (removed
        when there is nothing to show). Returns the layer."""
        from napari.layers import Tracks

        t = self.controller.target
        if t is None:
            return None
        layer = self.tracks_layer()
        record = t.track_record
        try:
            geometry = self.controller.geometry()
        except ValueError:
            return layer
        if record is not None and t.track_rows is None:
            t.track_rows = self._rows_from_labels(record.lineage)
        ok = record is not None and geometry.axis == 0 and t.labels.ndim in (3, 4)
        data = tracks_layer_data(t.track_rows, record.lineage, geometry) if ok else None
        if data is None or data.empty:
            if layer is not None:
                self.viewer.layers.remove(layer)
            return None
        if layer is None:
            active = self.viewer.layers.selection.active
            layer = Tracks(
                data.data,
                graph=data.graph,
                properties=data.properties,
                color_by="lineage",
                name=f"{t.labels.name} lineage",
                scale=t.labels.scale,
                translate=t.labels.translate,
                tail_length=max(2, min(30, geometry.num_frames)),
                metadata={STATE_KEY: {"role": LINEAGE_ROLE, "image": t.image.name}},
            )
            self.viewer.layers.insert(self.viewer.layers.index(t.labels) + 1, layer)
            if active is not None and active in self.viewer.layers:
                self.viewer.layers.selection.active = active
        else:
            import warnings

            with warnings.catch_warnings():  # napari warns that the data reset the colouring property
                warnings.simplefilter("ignore", UserWarning)
                layer.data = data.data  # resets properties and graph: set them after
            layer.properties = data.properties
            layer.graph = data.graph
            layer.color_by = "lineage"
        return layer

    def _rows_from_labels(self, lineage: Lineage) -> np.ndarray:
        """Centroids read from the masks layer, one frame at a time, over the lineage's frames."""
        t = self.controller.target
        geometry = self.controller.geometry()
        if not len(lineage):
            return centroid_rows([])
        first = min(tr.first for tr in lineage)
        last = min(max(tr.last for tr in lineage), geometry.num_frames - 1)
        planes = SlicePlanes(t.labels.data, geometry)
        return centroid_rows((f, planes[f]) for f in range(first, last + 1))

    def _use_lineage(self, lineage: Lineage) -> None:
        """A lineage read from a session file: kept with the masks and shown."""
        t = self.controller.target
        if t is None:
            return
        frames = (min((tr.first for tr in lineage), default=0), max((tr.last for tr in lineage), default=0))
        t.track_record = TrackAllResult(lineage.copy(), frames)
        t.track_rows = None  # read from the labels
        for obj in lineage.ids:
            t.registry.ensure(obj)
        self.update_tracks_layer()
        self.refresh_objects()

    def _forget_track(self, obj: int) -> None:
        """A deleted object leaves the lineage and the Tracks layer."""
        t = self.controller.target
        record = t.track_record if t is not None else None
        if record is None:
            return
        forget_track(record.lineage, obj, record.starts)
        if t.track_rows is not None and len(t.track_rows):
            t.track_rows = t.track_rows[t.track_rows[:, 0] != obj]
        self.update_tracks_layer()

    # ================================================================== lineage edits
    def selected_tracks(self) -> list[int]:
        """The ids chosen in the object list (the current object if none is)."""
        ids = sorted({int(item.data(Qt.UserRole)) for item in self.object_table.selectedItems()
                      if item.data(Qt.UserRole) is not None})
        return ids or [self.controller.current_object]

    def _editable(self, what: str) -> Any:
        """The target whose lineage may be edited now, or None (with a message)."""
        t = self.controller.target
        if t is None:
            notify("error", NO_IMAGE)
            return None
        if self.scheduler.busy:
            notify("warning", BUSY.format(what))
            return None
        if t.track_record is None:
            notify("warning", "There is no lineage yet: run Track all first (or load a session file that has one).")
            return None
        return t

    def _edited(self, text: str, pixels: bool = False) -> None:
        t = self.controller.target
        if pixels:
            t.labels.refresh()
        self.update_tracks_layer()
        self.refresh_objects()
        self.track_all_section.status.setText(text)

    def _refused(self, exc: Exception) -> None:
        text = str(exc)
        notify("warning", text[:1].upper() + text[1:] + ".")

    def mark_division(self, ids: list[int] | None = None) -> bool:
        """The chosen tracks are a mother (the earliest) and her daughters."""
        t = self._editable("marking a division")
        if t is None:
            return False
        try:
            mother, daughters = mark_division(t.track_record.lineage, ids or self.selected_tracks())
        except LineageEditError as exc:
            self._refused(exc)
            return False
        self._edited(f"division marked: {mother} → {', '.join(map(str, daughters))}")
        return True

    def unmark_division(self, ids: list[int] | None = None) -> bool:
        """The chosen tracks lose their parent (a chosen mother her daughters)."""
        t = self._editable("unmarking a division")
        if t is None:
            return False
        try:
            freed = unmark_division(t.track_record.lineage, ids or self.selected_tracks())
        except LineageEditError as exc:
            self._refused(exc)
            return False
        self._edited(f"no parent any more: {', '.join(map(str, freed))}")
        return True

    def merge_tracks(self, ids: list[int] | None = None) -> bool:
        """Two chosen tracks, one after the other, become one (the earlier id)."""
        t = self._editable("merging tracks")
        if t is None:
            return False
        ids = ids or self.selected_tracks()
        if len(ids) != 2:
            notify("warning", "Choose the two tracks to merge in the object list (Ctrl+click the second).")
            return False
        record = t.track_record
        firsts = {i: record.lineage[i].first for i in ids if i in record.lineage}
        try:
            result = merge_tracks(SlicePlanes(t.labels.data, self.controller.geometry()), record.lineage, ids[0], ids[1],
                                  record.starts)
        except LineageEditError as exc:
            self._refused(exc)
            return False
        since = firsts[result.gone]
        if t.track_rows is not None:
            t.track_rows = relabel_rows(t.track_rows, result.gone, result.keep, since)
        self.controller.relabel_prompts(result.gone, result.keep, since)
        t.registry.remove(result.gone)
        self.controller.current_object = result.keep
        freed = f"; {', '.join(map(str, result.freed))} no longer a daughter" if result.freed else ""
        self._edited(f"merged: {result.gone} is {result.keep} from frame {since} on{freed}", pixels=True)
        return True

    def split_track(self, obj: int | None = None, frame: int | None = None) -> bool:
        """The current object gets a new id from the current frame on."""
        t = self._editable("splitting a track")
        if t is None:
            return False
        obj = self.controller.current_object if obj is None else int(obj)
        frame = self.controller.current_frame() if frame is None else int(frame)
        record = t.track_record
        prompted = {o for _, o in self.controller.prompts()}
        new = free_id(set(t.registry.ids()) | prompted, record.lineage)
        try:
            split_track(SlicePlanes(t.labels.data, self.controller.geometry()), record.lineage, obj, frame, new,
                        record.starts)
        except LineageEditError as exc:
            self._refused(exc)
            return False
        if t.track_rows is not None:
            t.track_rows = relabel_rows(t.track_rows, obj, new, frame)
        t.registry.ensure(new)
        self.controller.relabel_prompts(obj, new, frame)
        self._edited(f"split: {obj} until frame {frame - 1}, {new} from frame {frame} on", pixels=True)
        return True
