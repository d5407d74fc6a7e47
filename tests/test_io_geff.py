"""GEFF export, read back with the geff package's own reader."""

from __future__ import annotations

import geff
import numpy as np
import pytest
import zarr

from napari_sam2.io.geff import write_geff
from napari_sam2.sample_data import random_clip


def _read(path):
    graph, metadata = geff.read(str(path))
    by_key = {(int(d["t"]), int(d["label"])): n for n, d in graph.nodes(data=True)}
    return graph, metadata, by_key


def test_synthetic_clip_with_divisions(tmp_path) -> None:
    clip = random_clip("fluorescence", 3, num_frames=10)
    labels, parents = clip.labels, dict(clip.parents)
    export = write_geff(tmp_path / "out.geff", labels, {**parents, 1: 0})  # 0 = no parent
    graph, metadata, node = _read(export.path)

    pairs = {(t, int(v)) for t in range(len(labels)) for v in np.unique(labels[t]) if v}
    assert set(node) == pairs and export.num_nodes == len(pairs) == graph.number_of_nodes()
    assert metadata.track_node_props == {"tracklet": "track_id", "lineage": "lineage_id"}
    assert [a.name for a in metadata.axes] == ["t", "y", "x"]

    # node properties against a direct computation on one frame
    t, obj = sorted(pairs)[len(pairs) // 2]
    rows, cols = np.nonzero(labels[t] == obj)
    data = graph.nodes[node[(t, obj)]]
    assert data["area"] == rows.size and data["track_id"] == obj
    assert data["y"] == pytest.approx(rows.mean()) and data["x"] == pytest.approx(cols.mean())

    # continuation edges, then one division edge per daughter from the mother's last node
    frames_of: dict[int, list[int]] = {}
    for t, obj in sorted(pairs):
        frames_of.setdefault(obj, []).append(t)
    expected = {(node[(ts[i], obj)], node[(ts[i + 1], obj)]) for obj, ts in frames_of.items() for i in range(len(ts) - 1)}
    divisions = set()
    for child, mother in parents.items():
        begin = frames_of[child][0]
        last = max(t for t in frames_of[mother] if t < begin)
        divisions.add((node[(last, mother)], node[(begin, child)]))
    assert len(divisions) == len(parents) > 4
    assert set(graph.edges) == expected | divisions
    assert {e for e, d in graph.edges.items() if d["division"]} == divisions
    assert export.num_divisions == len(divisions) and export.num_edges == len(expected) + len(divisions)

    # lineage ids: a daughter's lineage is its mother's lineage
    for child, mother in parents.items():
        assert graph.nodes[node[(frames_of[child][0], child)]]["lineage_id"] == graph.nodes[
            node[(frames_of[mother][0], mother)]]["lineage_id"]


def test_gap_and_zarr_input(tmp_path) -> None:
    stack = zarr.zeros((4, 20, 30), chunks=(1, 20, 30), dtype="uint32")
    for t in (0, 1, 3):  # object 5 is missed on frame 2
        stack[t, 2:6, 3:9] = 5
    stack[3, 10:12, 10:12] = 70000
    export = write_geff(tmp_path / "g.geff", stack)
    graph, _, node = _read(export.path)
    assert graph.number_of_nodes() == 4
    assert set(graph.edges) == {(node[(0, 5)], node[(1, 5)]), (node[(1, 5)], node[(3, 5)])}
    assert graph.nodes[node[(3, 70000)]]["area"] == 4


def test_empty_labels_give_an_empty_valid_graph(tmp_path) -> None:
    export = write_geff(tmp_path / "e.geff", np.zeros((3, 8, 8), np.uint8))
    graph, _, _ = _read(export.path)
    assert graph.number_of_nodes() == 0 and export.num_edges == 0


def _two_tracks() -> np.ndarray:
    labels = np.zeros((4, 10, 10), np.uint16)
    labels[:2, :3, :3] = 1
    labels[2:, 5:, 5:] = 2
    return labels


@pytest.mark.parametrize(
    "lineage, message",
    [
        ({3: 1}, "track 3 does not appear"),
        ({2: 9}, r"track 9 \(parent of 2\) does not appear"),
        ({1: 2}, "track 2 must appear before its daughter 1 begins"),
        ({2: 2}, "cannot be its own parent"),
        ({2: "one"}, "must be integers"),
        ({-2: 1}, "must be positive"),
    ],
)
def test_bad_lineage_is_named_and_nothing_is_written(tmp_path, lineage, message) -> None:
    with pytest.raises(ValueError, match=message):
        write_geff(tmp_path / "bad.geff", _two_tracks(), lineage)
    assert list(tmp_path.iterdir()) == []


def test_existing_outputs(tmp_path) -> None:
    labels = _two_tracks()
    path = tmp_path / "out.geff"
    write_geff(path, labels, {2: 1})
    with pytest.raises(FileExistsError, match="overwrite"):
        write_geff(path, labels)
    export = write_geff(path, labels, overwrite=True)  # a GEFF may be replaced
    assert export.num_divisions == 0
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="other content"):
        write_geff(other, labels, overwrite=True)
    assert (other / "holiday.jpg").exists()
    with pytest.raises(ValueError, match=r"shape \(T, H, W\)"):
        write_geff(tmp_path / "x.geff", np.zeros((2, 2, 2, 2), np.uint8))
