"""The lineage of a track-all run: which object ids exist on which frames, and who divided.

A track is an object id (the label value) with a first and last frame and a parent id
(0 = none). A division ends the mother and starts two daughters whose parent is the
mother, so a daughter starts after its mother's last frame. This is what the Cell
Tracking Challenge's ``res_track.txt`` holds (L B E P) and what GEFF's division edges
and napari's Tracks layer ``graph`` are made from. Saved with the prompt/session file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from .rle import _short
__all__ = ["Track", "Lineage", "LineageError"]


class LineageError(ValueError):
    """A lineage that cannot be right (a parent that does not exist, overlapping frames...)."""


@dataclass(frozen=True)
class Track:
    """Object ``id`` from frame ``first`` to ``last`` (inclusive), daughter of ``parent``."""

    id: int
    first: int
    last: int
    parent: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"id": int(self.id), "first": int(self.first), "last": int(self.last), "parent": int(self.parent)}


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LineageError(f"{what} must be an integer, got {_short(value)}")
    return int(value)


class Lineage:
    """Tracks by id. Tracks may be added and ended while a run goes on; :meth:`check`
    says whether the whole is consistent."""

    def __init__(self, tracks: Iterable[Track] = ()) -> None:
        self._tracks: dict[int, Track] = {}
        for track in tracks:
            self.add(track)

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self._tracks)

    def __iter__(self) -> Iterator[Track]:
        return iter(sorted(self._tracks.values(), key=lambda t: t.id))

    def __contains__(self, obj_id: object) -> bool:
        return obj_id in self._tracks

    def __getitem__(self, obj_id: int) -> Track:
        return self._tracks[obj_id]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lineage) and self._tracks == other._tracks

    def __repr__(self) -> str:
        return f"Lineage({list(self)!r})"

    @property
    def ids(self) -> list[int]:
        return sorted(self._tracks)

    def parents(self) -> dict[int, int]:
        """``{id: parent}`` for every track with a parent (what CTC and GEFF writers take)."""
        return {t.id: t.parent for t in self if t.parent}

    def children(self, obj_id: int) -> list[int]:
        """The daughters of ``obj_id``, by id."""
        return sorted(t.id for t in self._tracks.values() if t.parent == obj_id)

    def divisions(self) -> list[tuple[int, list[int]]]:
        """``(mother, daughters)`` for every track with children."""
        mothers = sorted({t.parent for t in self._tracks.values() if t.parent})
        return [(m, self.children(m)) for m in mothers]

    def roots(self, obj_id: int) -> int:
        """The first ancestor of ``obj_id`` (itself when it has no parent)."""
        seen = set()
        while True:
            parent = self._tracks[obj_id].parent
            if not parent or parent not in self._tracks or obj_id in seen:
                return obj_id
            seen.add(obj_id)
            obj_id = parent

    # ------------------------------------------------------------------ changes
    def add(self, track: Track) -> None:
        """Add a new track; an id already used is refused (ids are label values)."""
        track = _checked(track, "lineage")
        if track.id in self._tracks:
            raise LineageError(f"track {track.id} is already in the lineage")
        self._tracks[track.id] = track

    def replace(self, track: Track) -> None:
        """Add or overwrite the track with this id (a run revising what it found)."""
        track = _checked(track, "lineage")
        self._tracks[track.id] = track

    def end(self, obj_id: int, last: int) -> None:
        """Track ``obj_id`` ends on ``last``."""
        t = self._tracks[obj_id]
        self.replace(Track(t.id, t.first, last, t.parent))

    def remove(self, obj_id: int) -> None:
        """Forget a track (its daughters keep their parent id until :meth:`check` objects)."""
        self._tracks.pop(obj_id)

    def set_parent(self, obj_id: int, parent: int) -> None:
        """Record that ``obj_id`` is a daughter of ``parent`` (0 = none)."""
        t = self._tracks[obj_id]
        self.replace(Track(t.id, t.first, t.last, parent))

    def copy(self) -> "Lineage":
        return Lineage(self._tracks.values())

    # ------------------------------------------------------------------ checks
    def check(self, num_frames: int | None = None) -> None:
        """Raise :class:`LineageError` unless every parent exists and ends before each of
        its daughters starts, no track is its own ancestor, and frames fit ``num_frames``."""
        for _, problem in self._problems(num_frames):
            raise LineageError(problem)

    def _problems(self, num_frames: int | None = None) -> Iterator[tuple[int, str]]:
        """``(track id, message)`` for what :meth:`check` refuses, so that a file reader
        can name the entry at fault."""
        for t in self:
            if num_frames is not None and t.last >= num_frames:
                yield t.id, f"track {t.id} ends on frame {t.last}, but there are {num_frames} frames"
            if not t.parent:
                continue
            mother = self._tracks.get(t.parent)
            if mother is None:
                yield t.id, f"track {t.id} has parent {t.parent}, which is not a track"
            elif mother.last >= t.first:
                yield t.id, (
                    f"track {t.id} starts on frame {t.first}, but its parent {t.parent} lasts until frame {mother.last}"
                )
        # frames strictly increase along parent links, so there can be no cycle

    # ------------------------------------------------------------------ files
    def to_list(self) -> list[dict[str, int]]:
        """JSON-ready tracks by id (the ``lineage`` list of a prompt/session file)."""
        return [t.to_dict() for t in self]

    @classmethod
    def from_list(cls, data: Any, where: str = "lineage") -> "Lineage":
        """Read :meth:`to_list`'s output from a file; anything wrong raises
        :class:`LineageError` naming the entry (``where[i]``), since files are hand-edited."""
        if not isinstance(data, list):
            raise LineageError(f"{where} must be a list of tracks, got {type(data).__name__}")
        lineage = cls()
        position: dict[int, int] = {}
        for i, item in enumerate(data):
            here = f"{where}[{i}]"
            if not isinstance(item, Mapping):
                raise LineageError(f"{here} must be an object with id, first, last and parent")
            unknown = set(item) - {"id", "first", "last", "parent"}
            if unknown:
                raise LineageError(f"{here} has unknown keys: {_short(sorted(map(str, unknown)), 200)}")
            for key in ("id", "first", "last"):
                if key not in item:
                    raise LineageError(f"{here} has no {key!r}")
            track = Track(
                _int(item["id"], f"{here}.id"),
                _int(item["first"], f"{here}.first"),
                _int(item["last"], f"{here}.last"),
                _int(0 if item.get("parent") is None else item["parent"], f"{here}.parent"),
            )
            if track.id in lineage:
                raise LineageError(f"{here}: track {track.id} appears twice")
            lineage.add(_checked(track, here))
            position[track.id] = i
        for obj_id, problem in lineage._problems():
            raise LineageError(f"{where}[{position[obj_id]}]: {problem}")
        return lineage


def _checked(track: Track, where: str) -> Track:
    """``track`` with plain ints (ids often come from numpy label arrays, which JSON
    cannot write), refused when it cannot be a track."""
    values = []
    for name in ("id", "first", "last", "parent"):
        value = getattr(track, name)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise LineageError(f"{where}: track {name} must be an integer, got {_short(value)}")
        values.append(int(value))
    track = Track(*values)
    if track.id < 1:
        raise LineageError(f"{where}: track ids are positive (label values), got {track.id}")
    if track.first < 0 or track.last < track.first:
        raise LineageError(f"{where}: track {track.id} has frames {track.first}..{track.last}")
    if track.parent < 0 or track.parent == track.id:
        raise LineageError(f"{where}: track {track.id} cannot have parent {track.parent}")
    return track
