"""Track-all results as the viewer shows them, and lineage edits (no Qt, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2.io.lineage import Lineage, Track
from napari_sam2.io.rle import decode_mask
from napari_sam2.tracking.axes import TrackGeometry
from napari_sam2.tracking.lineage_view import (
    LineageEditError,
    SlicePlanes,
    centroid_rows,
    describe_counts,
    forget_track,
    free_id,
    lineage_roots,
    lineage_text,
    mark_division,
    merge_tracks,
    plane_centroids,
    relabel_rows,
    replace_rows,
    split_track,
    tracks_graph,
    tracks_layer_data,
    unmark_division,
)


def _stack() -> np.ndarray:
    """6 frames: 1 on 0-2, divides into 2 and 3 on 3-5; 4 on 0-1, then 5 on 3-5 (a gap
    at frame 2: one object seen as two tracks)."""
    labels = np.zeros((6, 20, 20), np.uint16)
    labels[0:3, 2:6, 2:6] = 1
    labels[3:6, 2:4, 2:6] = 2
    labels[3:6, 5:7, 2:6] = 3
    labels[0:2, 10:14, 10:14] = 4
    labels[3:6, 10:14, 11:15] = 5
    return labels


def _lineage() -> Lineage:
    return Lineage([Track(1, 0, 2), Track(2, 3, 5, 1), Track(3, 3, 5, 1), Track(4, 0, 1), Track(5, 3, 5)])


def _planes(labels: np.ndarray) -> SlicePlanes:
    return SlicePlanes(labels, TrackGeometry(labels.shape, 0))


def test_plane_centroids_are_means_of_pixel_coordinates():
    plane = np.zeros((8, 8), np.uint16)
    plane[1:3, 1:4] = 7
    plane[5, 6] = 300
    rows = plane_centroids(plane, 4)
    assert rows.tolist() == [[7, 4, 1.5, 2.0], [300, 4, 5.0, 6.0]]
    assert plane_centroids(np.zeros((3, 3), np.uint8), 0).shape == (0, 4)


def test_centroid_rows_read_frame_by_frame_sorted_by_track_then_time():
    labels = _stack()
    reads = []

    def planes():
        for t in range(labels.shape[0]):
            reads.append(t)
            yield t, labels[t]

    rows = centroid_rows(planes())
    assert reads == list(range(6))
    assert rows[:, 0].tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 5, 5, 5]
    assert rows[:3, 1].tolist() == [0, 1, 2]
    assert np.allclose(rows[0, 2:], (3.5, 3.5))


def test_replace_and_relabel_rows():
    rows = centroid_rows(enumerate(_stack()))
    moved = relabel_rows(rows, 5, 4, from_frame=3)
    assert 5 not in moved[:, 0] and (moved[:, 0] == 4).sum() == 5
    changed = _stack()
    changed[4][changed[4] == 3] = 0
    again = replace_rows(rows, plane_centroids(changed[4], 4), [4])
    assert [3, 4] not in again[:, :2].tolist() and len(again) == len(rows) - 1


def test_graph_roots_and_layer_data():
    lineage = _lineage()
    assert tracks_graph(lineage) == {2: [1], 3: [1]}
    assert tracks_graph(lineage, ids=[1, 2]) == {2: [1]}, "links need both ends in the data"
    assert lineage_roots(lineage, [1, 2, 3, 4, 9]) == {1: 1, 2: 1, 3: 1, 4: 4, 9: 9}
    rows = centroid_rows(enumerate(_stack()))
    rows = np.concatenate([rows, [[99, 0, 1, 1]]])  # a label that is no track of the lineage
    tracks = tracks_layer_data(rows, lineage)
    assert 99 not in tracks.data[:, 0]
    assert tracks.graph == {2: [1], 3: [1]}
    family = tracks.properties["lineage"][np.isin(tracks.data[:, 0], [1, 2, 3])]
    assert set(family.tolist()) == {1.0}
    assert tracks.properties["track_id"].tolist() == tracks.data[:, 0].astype(int).tolist()


def test_layer_coordinates_of_a_4d_slice():
    geometry = TrackGeometry((3, 6, 20, 20), 1, ((0, 2),))  # tracked along z, t held at 2
    rows = np.array([[1, 4, 5.0, 6.0]])
    tracks = tracks_layer_data(rows, Lineage([Track(1, 4, 4)]), geometry)
    assert tracks.data.tolist() == [[1, 2, 4, 5, 6]]


def test_lineage_text():
    lineage = _lineage()
    lineage.add(Track(6, 3, 5, 4))  # 4 -> 6 for the text of a track with both
    lineage.add(Track(7, 6, 7, 2))
    assert lineage_text(lineage, 2) == "2 ← 1 → 7"
    assert lineage_text(lineage, 1) == "1 → 2, 3"
    assert lineage_text(lineage, 6) == "6 ← 4"
    assert lineage_text(lineage, 5) == ""
    assert lineage_text(None, 5) == "" and lineage_text(lineage, 42) == ""
    assert describe_counts(lineage) == "7 tracks, 3 divisions"


def test_mark_and_unmark_division():
    lineage = _lineage()
    for t in (2, 3):
        lineage.set_parent(t, 0)
    assert mark_division(lineage, [3, 1, 2]) == (1, [2, 3])
    assert lineage.children(1) == [2, 3]
    lineage.add(Track(8, 1, 2))
    with pytest.raises(LineageEditError, match="split 4 at frame 1"):
        mark_division(lineage, [4, 8])
    lineage.remove(8)
    with pytest.raises(LineageEditError, match="both start on frame 0"):
        mark_division(lineage, [1, 4])
    with pytest.raises(LineageEditError, match="at least two"):
        mark_division(lineage, [1])
    with pytest.raises(LineageEditError, match="not a track"):
        mark_division(lineage, [1, 77])
    assert unmark_division(lineage, [2]) == [2]
    assert lineage[2].parent == 0 and lineage[3].parent == 1
    assert unmark_division(lineage, [1]) == [3], "a mother without a parent frees her daughters"
    with pytest.raises(LineageEditError, match="no division"):
        unmark_division(lineage, [1])
    lineage.check()


def test_merge_relabels_the_later_track_and_joins_the_lineage():
    labels = _stack()
    lineage = _lineage()
    starts = {5: (3, {"size": [20, 20], "counts": "x"}), 4: (0, {})}
    result = merge_tracks(_planes(labels), lineage, 5, 4, starts)
    assert (result.keep, result.gone, result.frames) == (4, 5, (3, 4, 5))
    assert not (labels == 5).any()
    assert [(labels[t] == 4).any() for t in range(6)] == [True, True, False, True, True, True]
    assert lineage[4] == Track(4, 0, 5, 0) and 5 not in lineage
    assert 5 not in starts and 4 in starts
    lineage.check()


def test_merge_refuses_overlap_and_a_mother_of_others():
    labels = _stack()
    lineage = _lineage()
    with pytest.raises(LineageEditError, match="overlap in time"):
        merge_tracks(_planes(labels), lineage, 2, 3)
    with pytest.raises(LineageEditError, match="overlap in time"):
        merge_tracks(_planes(labels), lineage, 1, 4)
    with pytest.raises(LineageEditError, match="divided into 2, 3: unmark"):
        merge_tracks(_planes(labels), lineage, 1, 5)
    with pytest.raises(LineageEditError, match="two different"):
        merge_tracks(_planes(labels), lineage, 1, 1)
    assert np.array_equal(labels, _stack()) and lineage == _lineage(), "a refused edit changes nothing"


def test_merge_a_mother_with_one_daughter_frees_the_other():
    labels = _stack()
    lineage = _lineage()
    result = merge_tracks(_planes(labels), lineage, 1, 2)
    assert result.keep == 1 and result.freed == (3,)
    assert lineage[1] == Track(1, 0, 5, 0) and lineage[3].parent == 0
    assert (labels[3:] == 1).any() and not (labels == 2).any()
    lineage.check()


def test_split_gives_a_new_id_from_the_frame_on_and_hands_over_daughters():
    labels = _stack()
    lineage = _lineage()
    lineage.replace(Track(1, 0, 2))
    starts: dict = {}
    frames = split_track(_planes(labels), lineage, 1, 1, 9, starts)
    assert frames == (1, 2)
    assert (labels[0] == 1).any() and not (labels[1:] == 1).any()
    assert [(labels[t] == 9).any() for t in range(6)] == [False, True, True, False, False, False]
    assert lineage[1] == Track(1, 0, 0, 0) and lineage[9] == Track(9, 1, 2, 0)
    assert lineage.children(9) == [2, 3] and lineage.children(1) == []
    frame, rle = starts[9]
    assert frame == 1 and np.array_equal(decode_mask(rle), labels[1] == 9)
    lineage.check()
    with pytest.raises(LineageEditError, match="after its first"):
        split_track(_planes(labels), lineage, 9, 1, 10)
    with pytest.raises(LineageEditError, match="in use"):
        split_track(_planes(labels), lineage, 9, 2, 4)


def test_split_then_merge_restores_the_labels():
    labels = _stack()
    before = labels.copy()
    lineage = _lineage()
    split_track(_planes(labels), lineage, 5, 4, free_id(np.unique(labels), lineage))
    assert free_id([3, 1], lineage) == 7
    merge_tracks(_planes(labels), lineage, 5, 6)
    assert np.array_equal(labels, before) and lineage == _lineage()


def test_forget_a_deleted_track():
    lineage = _lineage()
    starts = {1: (0, {})}
    assert forget_track(lineage, 1, starts) == [2, 3]
    assert 1 not in lineage and lineage[2].parent == 0 and not starts
    assert forget_track(lineage, 42) == []
    lineage.check()


def test_slice_planes_of_a_4d_array_write_one_plane():
    data = np.zeros((2, 3, 5, 5), np.uint16)
    planes = SlicePlanes(data, TrackGeometry(data.shape, 1, ((0, 1),)))
    assert planes.num_frames == 3
    planes[2] = np.full((5, 5), 4, np.uint16)
    assert (data[1, 2] == 4).all() and data.sum() == 4 * 25
