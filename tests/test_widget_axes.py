"""Which axis is tracked: z-stacks, 4D (t, z, y, x) stacks, lazy arrays and huge label stacks."""

from __future__ import annotations

import numpy as np
import pytest
from gui_support import click, loaded_tiny, new_viewer, open_widget, ready

from napari_sam2.sample_data import cells_timelapse, nuclei_zstack

pytestmark = pytest.mark.gui


def _objects_on(labels: np.ndarray, obj: int = 1) -> list[int]:
    return [i for i in range(labels.shape[0]) if (labels[i] == obj).any()]


def test_zstack_tracks_through_z(make_napari_viewer, qtbot):
    stack = nuclei_zstack(depth=6, size=96)
    viewer = new_viewer(make_napari_viewer, qtbot)
    viewer.open_sample("napari-sam2", "nuclei")  # the registered z-stack sample opens too
    viewer.layers.clear()
    viewer.add_image(stack.image, name="nuclei", axis_labels=("z", "y", "x"))
    viewer.dims.set_current_step(0, 3)
    widget = open_widget(viewer)
    assert widget.axis_combo.currentText() == "z (6)"
    widget.use_model(loaded_tiny())
    t = widget.controller.target
    click(viewer, qtbot, t.points, stack.centers[1][3])
    ready(widget, qtbot)
    assert _objects_on(np.asarray(t.labels.data)) == [3]
    widget.propagate("both")
    ready(widget, qtbot)
    assert _objects_on(np.asarray(t.labels.data)) == list(range(6))


def test_4d_stack_with_chosen_axis_and_fixed_other(make_napari_viewer, qtbot):
    clip = cells_timelapse(num_frames=4, size=64, seed=5)
    # (t, z, y, x): three z planes, the middle one in focus
    image = np.stack([clip.image // 2, clip.image, clip.image // 2], axis=1)
    viewer = new_viewer(make_napari_viewer, qtbot)
    viewer.add_image(image, name="tzyx", axis_labels=("t", "z", "y", "x"))
    viewer.dims.set_current_step(0, 0)
    viewer.dims.set_current_step(1, 1)
    widget = open_widget(viewer)
    widget.use_model(loaded_tiny())
    t = widget.controller.target
    assert t.labels.data.shape == image.shape
    assert [widget.axis_combo.itemText(i) for i in range(widget.axis_combo.count())] == ["t (4)", "z (3)"]

    # track along t at z = 1
    click(viewer, qtbot, t.points, clip.centers[3][0])
    ready(widget, qtbot)
    widget.propagate("forward")
    ready(widget, qtbot)
    labels = np.asarray(t.labels.data)
    assert all((labels[i, 1] == 1).any() for i in range(4)), "every time point at z=1"
    assert not labels[:, [0, 2]].any(), "the other z planes are untouched"
    assert widget.controller.session.num_frames == 4

    # now track along z at t = 2: a new session on that slice, old masks kept
    viewer.dims.set_current_step(0, 2)
    widget.axis_combo.setCurrentIndex(1)
    t.labels.selected_label = 2
    click(viewer, qtbot, t.points, clip.centers[5][2])
    ready(widget, qtbot)
    assert widget.controller.session.num_frames == 3
    widget.propagate("both")
    ready(widget, qtbot)
    labels = np.asarray(t.labels.data)
    assert all((labels[2, z] == 2).any() for z in range(3)), "all z planes at t=2"
    assert not (labels[[0, 1, 3]] == 2).any(), "other time points untouched"
    assert all((labels[i, 1] == 1).any() for i in (0, 1, 3)), "the first object's masks are kept"


class CountingStack:
    """A lazy stack (like a memory-mapped TIFF) that counts the frames read from it."""

    def __init__(self, frames: np.ndarray) -> None:
        self._frames = frames
        self.shape = frames.shape
        self.dtype = frames.dtype
        self.ndim = frames.ndim
        self.reads: list[int] = []

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        first = key[0] if isinstance(key, tuple) else key
        if isinstance(first, (int, np.integer)):
            self.reads.append(int(first))
        else:
            self.reads.extend(range(*first.indices(self.shape[0])))
        return self._frames[key]

    def __array__(self, dtype=None, copy=None):  # pragma: no cover - must never be needed
        raise AssertionError("the whole stack was converted to an array")


def test_lazy_stack_reads_only_needed_frames_and_huge_labels_use_zarr(make_napari_viewer, qtbot, monkeypatch):
    from napari_sam2.tracking import stores

    monkeypatch.setattr(stores, "BIG_LABELS_BYTES", 1024)  # pretend the masks are huge
    clip = cells_timelapse(num_frames=4, size=64, seed=6)
    frames = np.concatenate([clip.image] * 100)  # 400 frames
    lazy = CountingStack(frames)
    viewer = new_viewer(make_napari_viewer, qtbot)
    viewer.add_image(lazy, name="lazy", contrast_limits=(100, 1800), multiscale=False)
    viewer.dims.set_current_step(0, 250)
    widget = open_widget(viewer)
    widget.use_model(loaded_tiny())
    t = widget.controller.target
    assert type(t.labels.data).__module__.startswith("zarr")
    lazy.reads.clear()
    click(viewer, qtbot, t.points, clip.centers[3][250 % 4])
    ready(widget, qtbot)
    assert (np.asarray(t.labels.data[250]) == 1).any()
    assert set(lazy.reads) <= {249, 250, 251}, f"read frames {sorted(set(lazy.reads))}"
    # painting on zarr-backed masks is a mask prompt too
    viewer.layers.selection.active = t.labels
    t.labels.selected_label = 2
    t.labels.brush_size = 8
    t.labels.mode = "paint"
    click(viewer, qtbot, t.labels, (10, 10))
    ready(widget, qtbot)
    assert (250, 2) in widget.controller.synced
