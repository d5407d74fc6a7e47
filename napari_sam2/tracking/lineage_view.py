"""Track-all results as a viewer shows them, and the lineage edits a user makes.

Qt-free, so the rules are tested without a window. A labels stack is read and written
one frame at a time through :class:`SlicePlanes` (a tracked slice of an n-D array, numpy
or zarr): nothing here holds a whole stack.

- **Centroids**: one row ``(track_id, t, y, x)`` per label per frame
  (:func:`centroid_rows`), the data of napari's Tracks layer.
- **Graph and colours**: ``{daughter: [mother]}`` from the lineage and the root of each
  track (:func:`tracks_layer_data`), so a family shares a colour.
- **Edits**: mark or unmark a division, merge two tracks that follow each other, split
  a track at a frame. Each keeps the labels, the lineage and the start masks of the
  session file consistent, or refuses with a message saying why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, MutableMapping, Sequence

import numpy as np

from ..io.lineage import Lineage, Track
from .axes import TrackGeometry

__all__ = [
    "LineageEditError",
    "SlicePlanes",
    "TracksData",
    "plane_centroids",
    "centroid_rows",
    "relabel_rows",
    "join_rows",
    "replace_rows",
    "tracks_graph",
    "lineage_roots",
    "tracks_layer_data",
    "lineage_text",
    "mark_division",
    "unmark_division",
    "merge_tracks",
    "split_track",
    "forget_track",
    "MergeResult",
    "free_id",
    "describe_counts",
]

ROW_COLUMNS = ("track_id", "t", "y", "x")
Starts = MutableMapping[int, tuple[int, dict]]  # id -> (frame, COCO RLE): what replays a track


class LineageEditError(ValueError):
    """An edit that would make the lineage wrong; the message says what to do instead."""


class SlicePlanes:
    """The (H, W) label planes of one tracked slice of an n-D labels array, by frame.

    Reads and writes one plane per index (numpy, zarr, anything indexable), so edits of
    a long stack never hold more than one frame.
    """

    def __init__(self, data: Any, geometry: TrackGeometry) -> None:
        self.data = data
        self.geometry = geometry
        self.num_frames = geometry.num_frames
        self.dtype = np.dtype(data.dtype)

    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, frame: int) -> np.ndarray:
        return np.asarray(self.data[self.geometry.labels_index(int(frame))])

    def __setitem__(self, frame: int, plane: np.ndarray) -> None:
        self.data[self.geometry.labels_index(int(frame))] = plane


# ---------------------------------------------------------------------- centroids


def _empty_rows() -> np.ndarray:
    return np.zeros((0, 4), float)


def plane_centroids(plane: Any, frame: int) -> np.ndarray:
    """Rows ``(id, frame, y, x)`` of every label above 0 in one plane, by id.

    Counts and coordinate sums per label in one pass (``np.unique`` + ``bincount``), so
    the cost does not grow with the number of labels and no per-label mask is made.
    """
    plane = np.asarray(plane)
    flat = plane.ravel()
    where = np.flatnonzero(flat)
    if where.size == 0:
        return _empty_rows()
    ids, inverse, counts = np.unique(flat[where], return_inverse=True, return_counts=True)
    rows, cols = np.divmod(where, plane.shape[1])
    y = np.bincount(inverse, weights=rows) / counts
    x = np.bincount(inverse, weights=cols) / counts
    return np.column_stack([ids.astype(float), np.full(ids.size, float(frame)), y, x])


def _sorted(rows: np.ndarray) -> np.ndarray:
    """By track id, then time (the order napari's Tracks layer keeps its data in)."""
    if len(rows) == 0:
        return _empty_rows()
    return rows[np.lexsort((rows[:, 1], rows[:, 0]))]


def centroid_rows(planes: Iterable[tuple[int, Any]]) -> np.ndarray:
    """Centroid rows of ``(frame, plane)`` pairs, read one plane at a time."""
    parts = [plane_centroids(plane, frame) for frame, plane in planes]
    parts = [p for p in parts if len(p)]
    return _sorted(np.concatenate(parts)) if parts else _empty_rows()


def join_rows(parts: Iterable[np.ndarray]) -> np.ndarray:
    """One sorted table from per-frame centroid rows (as a run reports them)."""
    parts = [np.asarray(p, float).reshape(-1, 4) for p in parts]
    parts = [p for p in parts if len(p)]
    return _sorted(np.concatenate(parts)) if parts else _empty_rows()


def replace_rows(rows: np.ndarray, new_rows: np.ndarray, frames: Iterable[int]) -> np.ndarray:
    """``rows`` with the rows of ``frames`` replaced by ``new_rows`` (frames recomputed)."""
    frames = np.asarray(sorted({int(f) for f in frames}), float)
    kept = rows[~np.isin(rows[:, 1], frames)] if len(rows) else _empty_rows()
    return _sorted(np.concatenate([kept, np.asarray(new_rows, float).reshape(-1, 4)]))


def relabel_rows(rows: np.ndarray, old: int, new: int, from_frame: int = 0) -> np.ndarray:
    """Rows of ``old`` from ``from_frame`` on become ``new`` (after a merge or a split:
    the pixels, hence the centroids, are the same; only their id changed)."""
    rows = np.array(rows, float, copy=True).reshape(-1, 4)
    hit = (rows[:, 0] == old) & (rows[:, 1] >= from_frame)
    rows[hit, 0] = new
    return _sorted(rows)


# ---------------------------------------------------------------------- graph, colours


def tracks_graph(lineage: Lineage, ids: Iterable[int] | None = None) -> dict[int, list[int]]:
    """napari's ``graph``: ``{daughter: [mother]}``. With ``ids``, only links whose two
    ends have data (napari looks both up and fails on a missing one)."""
    present = None if ids is None else {int(i) for i in ids}
    return {
        child: [parent]
        for child, parent in lineage.parents().items()
        if present is None or (child in present and parent in present)
    }


def lineage_roots(lineage: Lineage, ids: Iterable[int]) -> dict[int, int]:
    """The first ancestor of each id (itself for a track without a parent or not in the
    lineage): one value per family, to colour a lineage alike."""
    return {int(i): (lineage.roots(int(i)) if int(i) in lineage else int(i)) for i in ids}


@dataclass
class TracksData:
    """What a napari Tracks layer is made from."""

    data: np.ndarray  # (N, 1 + D): track id, then the labels layer's coordinates
    graph: dict[int, list[int]]
    properties: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return len(self.data) == 0


def tracks_layer_data(rows: np.ndarray, lineage: Lineage, geometry: TrackGeometry | None = None) -> TracksData:
    """The Tracks layer of a lineage: the centroid rows of its tracks, the division graph,
    and ``lineage`` (root id) and ``track_id`` properties for colouring.

    With ``geometry``, coordinates are those of the whole labels array (the tracked axis
    takes the frame, other axes the index held), so the layer lines up with the labels.
    """
    rows = np.asarray(rows, float).reshape(-1, 4)
    rows = _sorted(rows[np.isin(rows[:, 0], np.asarray(lineage.ids, float))]) if len(rows) else _empty_rows()
    ids = np.unique(rows[:, 0]).astype(int).tolist()
    roots = lineage_roots(lineage, ids)
    lineage_column = np.asarray([roots[int(i)] for i in rows[:, 0]], float)
    data = rows if geometry is None else _layer_coordinates(rows, geometry)
    return TracksData(
        data=data,
        graph=tracks_graph(lineage, ids),
        properties={"track_id": rows[:, 0].astype(int), "lineage": lineage_column},
    )


def _layer_coordinates(rows: np.ndarray, geometry: TrackGeometry) -> np.ndarray:
    """(id, t, y, x) -> (id, every axis of the labels array)."""
    columns = [rows[:, 0]]
    held = dict(geometry.fixed)
    for axis in range(geometry.ndim - 2):
        if axis == geometry.axis:
            columns.append(rows[:, 1])
        else:
            columns.append(np.full(len(rows), float(held.get(axis, 0))))
    columns += [rows[:, 2], rows[:, 3]]
    return np.column_stack(columns) if len(rows) else np.zeros((0, geometry.ndim + 1), float)


def lineage_text(lineage: Lineage | None, obj_id: int) -> str:
    """``'7 ← 3'`` (a daughter of 3), ``'3 → 7, 8'`` (divided into 7 and 8), both, or ''."""
    if lineage is None or obj_id not in lineage:
        return ""
    text = str(obj_id)
    parent = lineage[obj_id].parent
    if parent:
        text += f" ← {parent}"
    children = lineage.children(obj_id)
    if children:
        text += " → " + ", ".join(map(str, children))
    return text if (parent or children) else ""


# ---------------------------------------------------------------------- edits


def _track(lineage: Lineage, obj_id: int) -> Track:
    if obj_id not in lineage:
        raise LineageEditError(f"{obj_id} is not a track of the lineage (run Track all, or choose a track)")
    return lineage[obj_id]


def _span(t: Track) -> str:
    return f"frame {t.first}" if t.first == t.last else f"frames {t.first}-{t.last}"


def mark_division(lineage: Lineage, ids: Sequence[int]) -> tuple[int, list[int]]:
    """The chosen tracks are a mother and its daughters: the one that starts first is the
    mother, the others become her daughters. Returns ``(mother, daughters)``.

    A daughter must start after the mother's last frame (a mother ends when she divides);
    otherwise the message says to split the mother first.
    """
    ids = sorted({int(i) for i in ids})
    if len(ids) < 2:
        raise LineageEditError("choose a mother and her daughters (at least two tracks)")
    tracks = [_track(lineage, i) for i in ids]
    tracks.sort(key=lambda t: (t.first, t.id))
    mother, daughters = tracks[0], tracks[1:]
    if daughters[0].first == mother.first:
        raise LineageEditError(
            f"tracks {mother.id} and {daughters[0].id} both start on frame {mother.first}: a mother starts before her daughters"
        )
    for d in daughters:
        if d.first <= mother.last:
            raise LineageEditError(
                f"track {d.id} starts on frame {d.first}, but {mother.id} lasts until frame {mother.last}: "
                f"split {mother.id} at frame {d.first} first"
            )
    for d in daughters:
        lineage.set_parent(d.id, mother.id)
    return mother.id, [d.id for d in daughters]


def unmark_division(lineage: Lineage, ids: Sequence[int]) -> list[int]:
    """The chosen tracks lose their parent; a chosen track without a parent frees its
    daughters instead. Returns the tracks whose parent was cleared."""
    ids = sorted({int(i) for i in ids})
    for i in ids:
        _track(lineage, i)
    changed = [i for i in ids if lineage[i].parent]
    if not changed:
        changed = sorted({c for i in ids for c in lineage.children(i)})
    if not changed:
        raise LineageEditError("no division to unmark: the chosen tracks have neither a parent nor daughters")
    for i in changed:
        lineage.set_parent(i, 0)
    return changed


@dataclass(frozen=True)
class MergeResult:
    """``gone`` was joined onto ``keep``; ``frames``: frames whose labels changed;
    ``freed``: daughters of ``keep`` that lost their parent (the merged track goes on)."""

    keep: int
    gone: int
    frames: tuple[int, ...]
    freed: tuple[int, ...] = ()


def _relabel(planes: Any, old: int, new: int, first: int) -> tuple[int, ...]:
    """``old`` becomes ``new`` on every frame from ``first`` on; returns the frames changed."""
    changed = []
    for frame in range(first, planes.num_frames):
        plane = planes[frame]
        hit = plane == old
        if hit.any():
            plane = np.array(plane, copy=True)
            plane[hit] = new
            planes[frame] = plane
            changed.append(frame)
    return tuple(changed)


def merge_tracks(planes: Any, lineage: Lineage, a: int, b: int, starts: Starts | None = None) -> MergeResult:
    """One object seen as two tracks, one after the other: the later one's pixels take
    the earlier id from its first frame on, and the earlier track lasts until the later
    one's end, with the later one's daughters.

    Refused when the two overlap in time, or when the earlier one divided into tracks
    other than the later one (merging a mother with one daughter frees the others).
    """
    if int(a) == int(b):
        raise LineageEditError("choose two different tracks to merge")
    ta, tb = _track(lineage, int(a)), _track(lineage, int(b))
    early, late = sorted((ta, tb), key=lambda t: (t.first, t.id))
    if late.first <= early.last:
        raise LineageEditError(
            f"tracks {early.id} ({_span(early)}) and {late.id} ({_span(late)}) overlap in time; "
            "only a track that ends before the other starts can be merged with it (split one first)"
        )
    children = lineage.children(early.id)
    freed: list[int] = []
    if children:
        if late.parent != early.id:
            shown = ", ".join(map(str, children))
            raise LineageEditError(
                f"track {early.id} divided into {shown}: unmark that division before merging it with {late.id}"
            )
        freed = [c for c in children if c != late.id]
    frames = _relabel(planes, late.id, early.id, late.first)
    for c in freed:
        lineage.set_parent(c, 0)
    for c in lineage.children(late.id):
        lineage.set_parent(c, early.id)
    lineage.remove(late.id)
    lineage.replace(Track(early.id, early.first, max(early.last, late.last), early.parent))
    if starts is not None:
        starts.pop(late.id, None)
    return MergeResult(early.id, late.id, frames, tuple(freed))


def split_track(planes: Any, lineage: Lineage, obj_id: int, frame: int, new_id: int,
                starts: Starts | None = None) -> tuple[int, ...]:
    """Two objects seen as one track: pixels of ``obj_id`` from ``frame`` on take
    ``new_id``, a new track without a parent that keeps the old one's daughters.
    Returns the frames whose labels changed."""
    from ..io.rle import encode_mask

    t = _track(lineage, int(obj_id))
    frame, new_id = int(frame), int(new_id)
    if new_id in lineage or new_id < 1:
        raise LineageEditError(f"{new_id} cannot be the new track's id: it is in use")
    if not t.first < frame <= t.last:
        raise LineageEditError(
            f"track {t.id} runs over {_span(t)}: split it on a frame after its first and up to its last"
        )
    frames = _relabel(planes, t.id, new_id, frame)
    for c in lineage.children(t.id):
        lineage.set_parent(c, new_id)
    lineage.replace(Track(t.id, t.first, frame - 1, t.parent))
    lineage.add(Track(new_id, frame, t.last, 0))
    if starts is not None:
        mask = planes[frame] == new_id
        if mask.any():
            starts[new_id] = (frame, encode_mask(mask))
    return frames


def forget_track(lineage: Lineage, obj_id: int, starts: Starts | None = None) -> list[int]:
    """An object deleted everywhere leaves the lineage; its daughters lose their parent
    (returned)."""
    obj_id = int(obj_id)
    if starts is not None:
        starts.pop(obj_id, None)
    if obj_id not in lineage:
        return []
    children = lineage.children(obj_id)
    for c in children:
        lineage.set_parent(c, 0)
    lineage.remove(obj_id)
    return children


def free_id(taken: Iterable[int], lineage: Lineage | None = None) -> int:
    """One above every id in use (labels, prompts, objects and tracks)."""
    used = {int(i) for i in taken}
    if lineage is not None:
        used |= set(lineage.ids)
    return max(used, default=0) + 1


def describe_counts(lineage: Lineage) -> str:
    """'12 tracks, 2 divisions' for status lines."""
    n, d = len(lineage), len(lineage.divisions())
    return f"{n} track{'s' * (n != 1)}, {d} division{'s' * (d != 1)}"

