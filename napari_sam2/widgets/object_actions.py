"""The Objects section of the dock widget: the object list, object actions, prompt files.

A mixin of :class:`~.widget.Sam2Widget`.
"""

from __future__ import annotations

from qtpy.QtCore import QItemSelectionModel, Qt
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import QFileDialog, QTableWidgetItem

from napari_sam2.io.prompts import PromptSet

from .notes import notify
from .prompt_files import import_prompts, session_prompts

__all__ = ["ObjectActions"]


def _swatch(color: tuple[float, float, float, float]) -> QIcon:
    pixmap = QPixmap(14, 14)
    pixmap.fill(QColor.fromRgbF(*[min(max(c, 0.0), 1.0) for c in color]))
    return QIcon(pixmap)


class ObjectActions:
    """Object list and prompt-file actions -> controller calls."""

    def _schedule_object_refresh(self) -> None:
        self._objects_timer.start()

    def refresh_objects(self) -> None:
        """Rebuild the object list (ids, colours, names, prompted frames, lineage).

        Rows chosen together (Ctrl+click, for lineage edits) stay chosen while the current
        object is one of them; otherwise only the current object's row is selected.
        """
        rows = self.controller.object_rows()
        current = self.controller.current_object
        table = self.object_table
        before = self._chosen_ids()
        keep = before if current in before else {current}
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
            lineage_item = QTableWidgetItem(row.lineage)
            lineage_item.setFlags(lineage_item.flags() & ~Qt.ItemIsEditable)
            lineage_item.setData(Qt.UserRole, row.obj_id)
            if row.track:
                lineage_item.setToolTip(f"track {row.obj_id}: {row.track}")
            table.setItem(i, 0, id_item)
            table.setItem(i, 1, name_item)
            table.setItem(i, 2, frames_item)
            table.setItem(i, 3, lineage_item)
        table.setColumnHidden(3, not any(row.track for row in rows))
        selection = table.selectionModel()
        selection.clearSelection()
        for i, row in enumerate(rows):
            if row.obj_id in keep:
                selection.select(table.model().index(i, 0), QItemSelectionModel.Select | QItemSelectionModel.Rows)
            if row.obj_id == current:
                selection.setCurrentIndex(table.model().index(i, 0), QItemSelectionModel.NoUpdate)
        table.blockSignals(False)
        self.positive_radio.blockSignals(True)
        self.positive_radio.setChecked(self.controller.positive)
        self.negative_radio.setChecked(not self.controller.positive)
        self.positive_radio.blockSignals(False)

    def _chosen_ids(self) -> set[int]:
        """Ids of the selected rows of the object list."""
        return {int(item.data(Qt.UserRole)) for item in self.object_table.selectedItems() if item.data(Qt.UserRole) is not None}

    def _table_selection_changed(self) -> None:
        table = self.object_table
        items = table.selectedItems()
        if not items:
            return
        current = table.currentItem()
        item = current if current is not None and current.isSelected() else items[0]
        obj = item.data(Qt.UserRole)
        if obj is not None and obj != self.controller.current_object:
            self.controller.current_object = int(obj)

    def _table_item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() == 1:
            self.controller.rename_object(int(item.data(Qt.UserRole)), item.text())

    def new_object(self) -> None:
        try:
            obj = self.controller.new_object()
        except ValueError as exc:
            notify("error", str(exc))
            return
        self.status_label.setText(f"object {obj}: click on it")

    def step_object(self, step: int) -> None:
        self.controller.step_object(step)

    def delete_object(self, obj: int | None = None) -> None:
        if self.scheduler.busy:
            notify("warning", "Wait for the running job to finish (or Cancel it) before deleting an object.")
            return
        obj = self.controller.current_object if obj is None else int(obj)
        name = self.controller.target.registry.name(obj) if self.controller.target else str(obj)
        self.controller.delete_object(obj)
        self._forget_track(obj)
        self.refresh_objects()
        notify("info", f"Deleted {name}: its clicks, boxes and masks are gone.")
        self.request_sync()

    def clear_frame(self) -> None:
        if self.scheduler.busy:
            notify("warning", "Wait for the running job to finish (or Cancel it) before clearing a frame.")
            return
        try:
            self.controller.clear_frame()
        except ValueError as exc:
            notify("warning", str(exc))

    def save_prompts(self, path: str | None = None) -> str | None:
        """Write the prompts to JSON; asks for a file name when none is given."""
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save prompts", "prompts.json", "Prompts (*.json)")
            if not path:
                return None
        # the model that really ran (the bundled demo after a failed download), at its real size
        choice = self.loaded.choice if self.loaded is not None else self.model_choice()
        size = choice.image_size
        if size is None and self.loaded is not None:
            size = getattr(self.loaded.model, "image_size", None)
        if size is None:
            from napari_sam2.model.bundled import is_bundled

            size = None if is_bundled(choice.name) else 1024  # a bundled model's own size is in its file
        try:
            prompt_set = session_prompts(self.controller, choice.name, size)
            written = prompt_set.to_json(path, overwrite=True)
        except (ValueError, OSError) as exc:
            notify("error", f"Could not save the prompts: {exc}")
            return None
        tracks = f" and the lineage of {len(prompt_set.lineage)} tracks" if prompt_set.lineage is not None else ""
        notify("info", f"Saved the prompts of {len(prompt_set.objects)} objects{tracks} to {written}.")
        return str(written)

    def load_prompts(self, path: str | None = None) -> int:
        """Add the prompts of a JSON file to the layers (they are then segmented)."""
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Load prompts", "", "Prompts (*.json);;All files (*)")
            if not path:
                return 0
        try:
            prompt_set = PromptSet.from_json(path)
            count = import_prompts(self.controller, prompt_set)
        except (ValueError, OSError) as exc:
            notify("error", f"Could not load the prompts: {exc}")
            return 0
        if prompt_set.lineage is not None:
            self._use_lineage(prompt_set.lineage)
        self.refresh_objects()
        notify("info", f"Loaded {count} prompts of {len(prompt_set.objects)} objects.")
        return count

    def toggle_polarity(self) -> None:
        positive = self.controller.toggle_polarity()
        self.refresh_objects()
        self.viewer.status = "plain clicks are now " + ("positive (object)" if positive else "negative (background)")

    def _polarity_changed(self, checked: bool) -> None:
        if self.positive_radio.isChecked() != self.controller.positive:
            self.controller.toggle_polarity()
