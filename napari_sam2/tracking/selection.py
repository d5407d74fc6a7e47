"""Which frames of a stack on disk are tracked: the walked axis, held axes, a frame range.

The command line and batch describe axes by the file's letters ('T', 'Z', ...) or by
index; this turns that into a :class:`~.axes.TrackGeometry` and a lazy frame view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .axes import TrackGeometry
from .errors import UsageError

__all__ = ["FrameSelection", "select_frames", "parse_frame_range", "resolve_range"]


def parse_frame_range(text: str | None) -> tuple[int | None, int | None] | None:
    """'START:END' (END exclusive, either side optional) or a single frame 'N'."""
    if text is None or text.strip() in ("", ":"):
        return None
    try:
        if ":" not in text:
            index = int(text)
            return index, index + 1
        start, end = text.split(":", 1)
        return (int(start) if start.strip() else None, int(end) if end.strip() else None)
    except ValueError:
        raise UsageError(f"a frame range must look like START:END (e.g. 0:100, 50:, :20) or one frame, got {text!r}") from None


def resolve_range(frame_range: tuple[int | None, int | None] | None, num_frames: int) -> tuple[int, int]:
    """Inclusive (first, last) of a START:END range; negative values count from the end."""
    if frame_range is None:
        return 0, num_frames - 1
    start, end = frame_range
    lo = 0 if start is None else (start + num_frames if start < 0 else start)
    stop = num_frames if end is None else (end + num_frames if end < 0 else end)
    if not 0 <= lo < num_frames or not lo < stop <= num_frames:
        shown = f"{'' if start is None else start}:{'' if end is None else end}"
        raise UsageError(f"the frame range {shown} is empty or outside the stack ({num_frames} frames, 0..{num_frames - 1})")
    return lo, stop - 1


@dataclass(frozen=True)
class FrameSelection:
    """Frames (T, H, W[, C]) picked out of an n-D stack, and how they were picked."""

    frames: Any
    shape: tuple[int, ...]  # (T, H, W) or (T, H, W, C); T = 1 for a single image
    description: str
    notes: tuple[str, ...] = ()


def select_frames(
    array: Any, metadata: Mapping[str, Any], axis: str | int | None = None, at: Mapping[str, int] | None = None
) -> FrameSelection:
    """Walk one axis (time or z) of an n-D stack and hold every other stack axis at one index.

    ``axis`` is an axis letter from the file ('T', 'Z', ...) or an index; by default the
    time axis, else z, else the first stack axis. ``at`` holds other axes, e.g.
    ``{'Z': 3}`` (letters or indices as strings); unnamed ones are held at 0 with a note.
    """
    shape = tuple(int(s) for s in array.shape)
    axes = str(metadata.get("axes") or "")
    rgb = bool(metadata.get("rgb"))
    spatial = 3 if rgb else 2
    if len(axes) != len(shape):
        axes = "Q" * (len(shape) - spatial) + "YXS"[:spatial]
    stack_axes = list(range(len(shape) - spatial))
    names = axes.upper()

    def resolve(key: str | int, what: str) -> int:
        text = str(key).strip()
        if text.lstrip("-").isdigit():
            index = int(text)
            if not -len(shape) <= index < len(shape):
                raise UsageError(f"{what} {text} does not exist: the stack has {len(shape)} axes ({axes}, shape {shape})")
            index %= len(shape)
        elif len(text) == 1 and text.upper() in names:
            if names.count(text.upper()) > 1:
                raise UsageError(f"axis letter {text!r} is ambiguous in {axes}; give the axis index instead")
            index = names.index(text.upper())
        else:
            raise UsageError(f"{what} {text!r} not found: the stack has axes {axes} (shape {shape})")
        if index not in stack_axes:
            raise UsageError(f"{what} {text!r} is a spatial or colour axis of {axes}; choose one of {_describe_axes(axes, shape, stack_axes)}")
        return index

    if axis is not None:
        tracked: int | None = resolve(axis, "axis")
    elif not stack_axes:
        tracked = None
    else:
        guess = metadata.get("frame_axis")
        tracked = guess if guess in stack_axes else stack_axes[0]
    held: dict[int, int] = {}
    for key, value in (at or {}).items():
        index = resolve(key, "axis")
        if index == tracked:
            raise UsageError(f"axis {axes[index]} is the tracked axis; it cannot also be held at {value}")
        if not 0 <= int(value) < shape[index]:
            raise UsageError(f"index {value} is outside axis {axes[index]} (0..{shape[index] - 1})")
        held[index] = int(value)
    notes = []
    for a in stack_axes:
        if a != tracked and a not in held:
            held[a] = 0
            if shape[a] > 1:
                notes.append(f"holding axis {axes[a]} at index 0 of {shape[a]} (another index can be held: {axes[a]}=INDEX)")
    plane = shape[len(shape) - spatial :]
    if tracked is None:
        return FrameSelection(array, (1, *plane), "a single image", tuple(notes))
    out_shape = (shape[tracked], *plane)
    if tracked == 0 and not held:
        frames = array
    else:
        geometry = TrackGeometry(shape[: len(shape) - spatial + 2], tracked, tuple(sorted(held.items())), rgb)
        frames = geometry.frames(array)
    description = f"axis {axes[tracked]} ({shape[tracked]} frames)"
    if held:
        description += " at " + ", ".join(f"{axes[a]}={i}" for a, i in sorted(held.items()))
    return FrameSelection(frames, out_shape, description, tuple(notes))


def _describe_axes(axes: str, shape: tuple[int, ...], indices: Sequence[int]) -> str:
    return ", ".join(f"{axes[i]} ({shape[i]})" for i in indices) or "none (a single image)"
