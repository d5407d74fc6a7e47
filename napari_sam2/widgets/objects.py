"""The objects being segmented: id (= label value), a name the user can change.

The registry lives in the Labels layer's metadata, so names survive closing and
reopening the widget and travel with the layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, MutableMapping

from napari_sam2.tracking.lineage_view import lineage_text

__all__ = ["ObjectRegistry", "ObjectRow", "object_rows", "format_frames"]

Color = tuple[float, float, float, float]


class ObjectRegistry:
    """Ordered id -> name mapping backed by a plain dict (e.g. layer metadata)."""

    def __init__(self, store: MutableMapping[int, str] | None = None) -> None:
        self._names: MutableMapping[int, str] = store if store is not None else {}

    def __contains__(self, obj_id: object) -> bool:
        return obj_id in self._names

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self._names))

    def __len__(self) -> int:
        return len(self._names)

    def ids(self) -> list[int]:
        return sorted(self._names)

    def name(self, obj_id: int) -> str:
        return self._names.get(int(obj_id), f"object {int(obj_id)}")

    def ensure(self, obj_id: int) -> bool:
        """Register ``obj_id`` with a default name; True if it was new."""
        obj_id = int(obj_id)
        if obj_id <= 0:
            raise ValueError(f"object ids start at 1, got {obj_id}")
        if obj_id in self._names:
            return False
        self._names[obj_id] = f"object {obj_id}"
        return True

    def rename(self, obj_id: int, name: str) -> None:
        name = name.strip()
        self._names[int(obj_id)] = name or f"object {int(obj_id)}"

    def remove(self, obj_id: int) -> None:
        self._names.pop(int(obj_id), None)

    def next_free_id(self, used: Iterable[int] = ()) -> int:
        """Smallest id above every registered or ``used`` one."""
        taken = set(self._names) | {int(u) for u in used}
        return max(taken, default=0) + 1


def format_frames(frames: Iterable[int], limit: int = 8) -> str:
    """``[0, 1, 2, 5, 9, 10]`` -> ``'0-2, 5, 9-10'`` (shortened past ``limit`` runs)."""
    values = sorted({int(f) for f in frames})
    if not values:
        return "-"
    runs: list[tuple[int, int]] = []
    start = prev = values[0]
    for v in values[1:]:
        if v == prev + 1:
            prev = v
            continue
        runs.append((start, prev))
        start = prev = v
    runs.append((start, prev))
    parts = [f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:limit]]
    if len(runs) > limit:
        parts.append(f"... (+{len(runs) - limit})")
    return ", ".join(parts)


@dataclass(frozen=True)
class ObjectRow:
    """One line of the object list."""

    obj_id: int
    name: str
    color: Color
    frames: str
    prompted: tuple[int, ...]
    lineage: str = ""  # '7 ← 3', '3 → 7, 8' after track-all
    track: str = ""  # 'frames 5-9' of its track, if it is one


def object_rows(registry: ObjectRegistry, prompts: Mapping[tuple[int, int], object], color: Callable[[int], Color],
                lineage: Any = None) -> list[ObjectRow]:
    """The object list: every registered object (prompted ones are registered first),
    with its parent and daughters when a ``lineage`` (track-all) is given."""
    frames: dict[int, set[int]] = {}
    for frame, obj in prompts:
        frames.setdefault(obj, set()).add(frame)
    for obj in frames:
        registry.ensure(obj)

    def track(obj: int) -> str:
        if lineage is None or obj not in lineage:
            return ""
        t = lineage[obj]
        return f"frame {t.first}" if t.first == t.last else f"frames {t.first}-{t.last}"

    return [
        ObjectRow(obj, registry.name(obj), color(obj), format_frames(frames.get(obj, ())), tuple(sorted(frames.get(obj, ()))),
                  lineage_text(lineage, obj), track(obj))
        for obj in registry.ids()
    ]
