"""The Qt-free pieces the widget uses: axes, prompts, mask merging, objects, paint history."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2.tracking.axes import AxisView, TrackGeometry, tracked_axis_choices
from napari_sam2.tracking.choice import guess_variant
from napari_sam2.tracking.interactive import FramePrompt
from napari_sam2.tracking.labels import logits_to_labels, merge_plane
from napari_sam2.widgets.layers import planes_in_atom
from napari_sam2.widgets.objects import ObjectRegistry, format_frames
from napari_sam2.widgets.prompts import collect_prompts


def test_geometry_4d_views_and_indices():
    data = np.arange(4 * 3 * 5 * 6).reshape(4, 3, 5, 6)
    g = TrackGeometry.from_position(data.shape, axis=0, position=(2, 1.4, 0, 0))
    assert g.fixed == ((1, 1),) and g.num_frames == 4 and g.frame_shape == (5, 6)
    frames = g.frames(data)
    assert frames.shape == (4, 5, 6) and np.shares_memory(frames, data)
    assert np.array_equal(frames[2], data[2, 1])
    assert g.labels_index(3) == (3, 1, slice(None), slice(None))
    assert g.locate((3, 1, 2.2, 4.6)) == (3, 2.2, 4.6)
    assert g.locate((3, 2, 2, 4))[0] is None, "another z plane: not this slice"
    assert g.frame_of_plane((3, 1)) == 3 and g.frame_of_plane((3, 2)) is None
    along_z = TrackGeometry.from_position(data.shape, axis=1, position=(2, 0, 0, 0))
    assert along_z.frames(data).shape == (3, 5, 6) and along_z.describe(["t", "z"]) == "z (3 frames) at t=2"
    assert tracked_axis_choices(4) == [0, 1] and tracked_axis_choices(2) == []
    with pytest.raises(ValueError):
        TrackGeometry(data.shape, axis=2)


def test_axis_view_reads_one_frame_at_a_time():
    class Lazy:
        def __init__(self, a):
            self.a, self.shape, self.dtype, self.reads = a, a.shape, a.dtype, []

        def __getitem__(self, key):
            self.reads.append(key)
            return self.a[key]

    rgb = np.random.default_rng(0).integers(0, 255, (2, 3, 8, 9, 3), dtype=np.uint8)
    lazy = Lazy(rgb)
    g = TrackGeometry.from_position(rgb.shape[:-1], axis=1, position=(1, 0, 0, 0), rgb=True)
    view = g.frames(lazy)
    assert isinstance(view, AxisView) and view.shape == (3, 8, 9, 3) and len(view) == 3
    assert np.array_equal(view[2], rgb[1, 2]) and len(lazy.reads) == 1
    assert np.array_equal(view[-1], rgb[1, 2])
    single = TrackGeometry((8, 9), None)
    assert single.frames(rgb[0, 0, ..., 0]).shape == (1, 8, 9)


def test_collect_prompts_groups_and_reports_problems():
    g = TrackGeometry((5, 20, 30), 0)
    points = np.array([[1, 5, 5], [1, 6, 6], [2, 5, 5], [1, 25, 5], [9, 5, 5]], float)
    features = {"object": [1, 1, 2, 1, 1], "prompt": ["positive", "negative", "positive", "positive", "positive"]}
    boxes = [np.array([[3, -5, -5], [3, -5, 10], [3, 8, 10], [3, 8, -5]], float),
             np.array([[3, 40, 40], [3, 40, 50], [3, 45, 50], [3, 45, 40]], float)]
    prompts, problems = collect_prompts(g, points, features, boxes, {"object": [1, 2]}, ["rectangle"] * 2,
                                        painted=[(4, 3)])
    assert prompts[(1, 1)] == FramePrompt(((5.0, 5.0), (6.0, 6.0)), (1, 0))
    assert prompts[(2, 2)].points == ((5.0, 5.0),)
    assert prompts[(3, 1)].box == (0.0, 0.0, 8.0, 10.0), "clipped to the image"
    assert prompts[(4, 3)].painted and not prompts[(4, 3)].empty
    kinds = sorted((p.kind, p.index) for p in problems)
    assert kinds == [("box", 1), ("point", 3)], "outside the image; frame 9 does not exist and is skipped"
    assert "outside the 20 x 30 image" in problems[0].message


def test_logits_to_labels_and_merge_rules():
    a = np.full((4, 4), -1.0, np.float32)
    a[:2] = 2.0
    b = np.full((4, 4), -1.0, np.float32)
    b[1:3] = 5.0
    plane = logits_to_labels({1: a, 2: b})
    assert plane[0].tolist() == [1] * 4 and plane[1].tolist() == [2] * 4 and plane[3].tolist() == [0] * 4
    current = np.array([[1, 1, 7, 3], [0, 0, 7, 3], [0, 0, 0, 0], [1, 0, 0, 0]], np.uint16)
    proposal = np.array([[0, 0, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]], np.uint16)
    merged = merge_plane(current, proposal, objects=[1], locked=[3])
    assert merged.tolist() == [[0, 0, 7, 3], [1, 1, 7, 3], [0, 0, 0, 0], [0, 0, 0, 0]]
    claimed = merge_plane(current, proposal, objects=[1], locked=[3], claim_others=True)
    assert claimed[0, 2] == 1 and claimed[0, 3] == 3, "a click may take others' pixels, never locked ones"


def test_registry_names_and_frame_lists():
    store: dict = {}
    reg = ObjectRegistry(store)
    assert reg.ensure(3) and not reg.ensure(3)
    reg.rename(3, "  mother ")
    assert store == {3: "mother"} and reg.name(4) == "object 4"
    assert reg.next_free_id([7]) == 8
    reg.rename(3, "")
    assert reg.name(3) == "object 3"
    assert format_frames([0, 1, 2, 5, 9, 10]) == "0-2, 5, 9-10" and format_frames([]) == "-"


def test_paint_atoms_of_old_and_new_napari():
    from collections import namedtuple

    Masked = namedtuple("Masked", "slice_key mask old_values new_value")
    atom = Masked((slice(4, 5), slice(1, 2), slice(0, 3), slice(0, 3)), None, np.array([0, 2, 2]), 5)
    assert planes_in_atom(atom, 4) == ([(4, 1)], {0, 2, 5})
    fancy = ((np.array([1, 1, 3]), np.array([2, 3, 4]), np.array([0, 1, 2])), np.array([0, 0, 4]), 6)
    planes, values = planes_in_atom(fancy, 3)
    assert sorted(planes) == [(1,), (3,)] and values == {0, 4, 6}


def test_guess_variant_from_file_name():
    from napari_sam2.model import MODEL_NAMES

    names = list(MODEL_NAMES)
    assert guess_variant("/x/sam2.1_hiera_base_plus.pt", names) == "sam2.1_hiera_base_plus"
    assert guess_variant("sam2_hiera_small.pt", names) == "sam2_hiera_small"
    assert guess_variant("sam2.1-hiera-tiny-finetuned.pt", names) == "sam2.1_hiera_tiny"
    assert guess_variant("weights.pt", names) is None
