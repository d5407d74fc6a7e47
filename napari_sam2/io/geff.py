"""GEFF export: the tracking graph of a label stack, for motile-tracker and other readers.

GEFF (graph exchange file format, a zarr folder written with the ``geff`` package) holds
one node per object per frame and directed edges forward in time. Here each node has
``t``, ``y``, ``x`` (the centroid, in pixels), ``area`` (pixels), ``label`` (the value of
the object in the label stack, to find its mask) and ``track_id`` (the object id);
``lineage_id`` is the track's first ancestor. Edges join consecutive appearances of a
track (across a gap too, when the object was missed for some frames) and, for a
division, the mother's last node before the daughter begins to the daughter's first
node; the edge property ``division`` tells the two kinds apart.

The lineage follows :func:`~napari_sam2.io.ctc.write_ctc`: ``{track_id: parent_id}``,
with 0 (or no entry) for a track without parent.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .atomic import atomic_output
from .labels import Progress, check_labels, iter_frames

__all__ = ["GeffExport", "write_geff", "is_geff_folder"]


@dataclass(frozen=True)
class GeffExport:
    """What :func:`write_geff` wrote."""

    path: Path
    num_nodes: int
    num_edges: int
    num_divisions: int


@dataclass
class _Nodes:
    """Node properties gathered frame by frame."""

    t: list[np.ndarray]
    y: list[np.ndarray]
    x: list[np.ndarray]
    area: list[np.ndarray]
    label: list[np.ndarray]

    def add(self, t: int, frame: np.ndarray) -> None:
        flat = frame.ravel()
        inside = np.flatnonzero(flat)
        if inside.size == 0:
            return
        ids, inverse, counts = np.unique(flat[inside], return_inverse=True, return_counts=True)
        rows, cols = np.divmod(inside, frame.shape[1])
        self.t.append(np.full(ids.size, t, dtype=np.int64))
        self.y.append(np.bincount(inverse, weights=rows, minlength=ids.size) / counts)
        self.x.append(np.bincount(inverse, weights=cols, minlength=ids.size) / counts)
        self.area.append(counts.astype(np.int64))
        self.label.append(ids.astype(np.int64))

    def arrays(self) -> dict[str, np.ndarray]:
        def cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

        return {
            "t": cat(self.t, np.int64),
            "y": cat(self.y, np.float64),
            "x": cat(self.x, np.float64),
            "area": cat(self.area, np.int64),
            "label": cat(self.label, np.int64),
        }


def _check_lineage(lineage: Mapping[int, int] | None) -> dict[int, int]:
    """``{daughter: mother}`` without roots; ids must be positive integers."""
    parents: dict[int, int] = {}
    for child, mother in dict(lineage or {}).items():
        try:
            child_i, mother_i = int(child), int(mother)
        except (TypeError, ValueError):
            raise ValueError(f"lineage: ids must be integers, got {child!r}: {mother!r}") from None
        if child_i <= 0 or mother_i < 0:
            raise ValueError(f"lineage: track ids must be positive (parent 0 = none), got {child_i}: {mother_i}")
        if mother_i == child_i:
            raise ValueError(f"lineage: track {child_i} cannot be its own parent")
        if mother_i:
            parents[child_i] = mother_i
    return parents


def _edges(nodes: dict[str, np.ndarray], parents: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(E, 2)`` node-id pairs and the ``division`` flag of each edge."""
    track, t = nodes["label"], nodes["t"]
    order = np.lexsort((t, track))  # by track, then time
    same = track[order][1:] == track[order][:-1]
    links = np.stack((order[:-1][same], order[1:][same]), axis=1)
    ids, starts = np.unique(track[order], return_index=True)
    stops = np.append(starts[1:], len(order))
    nodes_of = {tid: order[a:b] for tid, a, b in zip(ids.tolist(), starts.tolist(), stops.tolist())}
    first_frame = {tid: (int(mine[0]), int(t[mine[0]])) for tid, mine in nodes_of.items()}
    divisions = []
    for child, mother in sorted(parents.items()):
        if child not in first_frame:
            raise ValueError(f"lineage: track {child} does not appear in the labels")
        if mother not in nodes_of:
            raise ValueError(f"lineage: track {mother} (parent of {child}) does not appear in the labels")
        child_node, begin = first_frame[child]
        before = nodes_of[mother][t[nodes_of[mother]] < begin]
        if before.size == 0:
            raise ValueError(
                f"lineage: track {mother} must appear before its daughter {child} begins (frame {begin}); "
                f"it first appears on frame {first_frame[mother][1]}"
            )
        divisions.append((int(before[-1]), child_node))
    division_edges = np.asarray(divisions, dtype=np.int64).reshape(-1, 2)
    edges = np.concatenate((links.astype(np.int64), division_edges))
    flags = np.concatenate((np.zeros(len(links), bool), np.ones(len(division_edges), bool)))
    return edges, flags


def _lineage_ids(tracks: np.ndarray, parents: dict[int, int]) -> np.ndarray:
    """The first ancestor of each node's track."""
    root: dict[int, int] = {}
    for tid in np.unique(tracks).tolist():
        node, seen = tid, set()
        while node in parents and node not in seen:
            seen.add(node)
            node = parents[node]
        root[tid] = node
    return np.array([root[v] for v in tracks.tolist()], dtype=np.int64)


def is_geff_folder(path: Path) -> bool:
    """Only a folder that is a GEFF (and nothing else) may be replaced."""
    attrs = path / ".zattrs"
    allowed = {".zattrs", ".zgroup", "zarr.json", "nodes", "edges"}
    try:
        return "geff" in json.loads(attrs.read_text()) and {p.name for p in path.iterdir()} <= allowed
    except (OSError, ValueError):
        return False


def write_geff(
    path: str | os.PathLike,
    labels: Any,
    lineage: Mapping[int, int] | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> GeffExport:
    """Write the tracking graph of a ``(T, H, W)`` label stack as a GEFF folder.

    ``labels`` (numpy, zarr, memory-mapped TIFF, ...) is read one frame at a time; the
    value of a pixel is its track id. ``lineage``: ``{track_id: parent_id}`` (0 = none).
    The folder appears only when complete and valid; an existing one is replaced only
    with ``overwrite=True`` and only if it is a GEFF.
    """
    import geff
    from geff.core_io import write_arrays
    from geff_spec import Axis, GeffMetadata

    labels, num_frames, _, _ = check_labels(labels)
    parents = _check_lineage(lineage)
    gathered = _Nodes([], [], [], [], [])
    for t, frame in enumerate(iter_frames(labels, num_frames, progress)):
        gathered.add(t, frame)
    nodes = gathered.arrays()
    edges, division = _edges(nodes, parents)
    nodes["track_id"] = nodes["label"].copy()
    nodes["lineage_id"] = _lineage_ids(nodes["track_id"], parents)

    metadata = GeffMetadata(
        directed=True,
        axes=[Axis(name="t", type="time", unit="frame"), Axis(name="y", type="space", unit="pixel"),
              Axis(name="x", type="space", unit="pixel")],
        node_props_metadata={},
        edge_props_metadata={},
        track_node_props={"tracklet": "track_id", "lineage": "lineage_id"},
        extra={"writer": "napari-sam2", "num_frames": num_frames},
    )
    node_ids = np.arange(len(nodes["t"]), dtype=np.uint64)
    with atomic_output(path, overwrite=overwrite, directory=True, replaceable=is_geff_folder) as temp:
        write_arrays(
            str(temp),
            node_ids,
            {name: {"values": values, "missing": None} for name, values in nodes.items()},
            edges.astype(np.uint64).reshape(-1, 2),
            {"division": {"values": division, "missing": None}},
            metadata,
            overwrite=True,  # the fresh temporary folder counts as "existing" to geff
        )
        geff.validate_structure(str(temp))
    return GeffExport(Path(path), len(node_ids), len(edges), int(division.sum()))
