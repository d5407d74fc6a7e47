"""Propagation planning: which passes over the frames cover a range, given the prompts.

One rule for the command line, batch and the widget. Forward starts at the earliest
prompted frame in the range and runs to its end; backward starts at the latest one
('backward') or, for 'both', at the earliest, so that every frame of the range is
tracked exactly once and frames between prompts see all of them (SAM 2 attends to
every prompted frame). Without a prompt in the range, passes start at its edge and are
guided by the prompts outside it.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

from .errors import UsageError

__all__ = ["DIRECTIONS", "Pass", "plan_passes", "frames_covered"]

DIRECTIONS = ("both", "forward", "backward")


class Pass(NamedTuple):
    """One call of ``VideoSession.propagate(start, reverse, max_frames)``."""

    start: int
    reverse: bool
    max_frames: int

    @property
    def first(self) -> int:
        """Lowest frame the pass reaches."""
        return self.start - self.max_frames if self.reverse else self.start

    @property
    def last(self) -> int:
        """Highest frame the pass reaches."""
        return self.start if self.reverse else self.start + self.max_frames


def plan_passes(prompted: Sequence[int], first: int, last: int, direction: str) -> list[Pass]:
    """Propagation passes covering frames ``first..last`` (inclusive).

    Walking backward from the range's first frame covers just that frame (a pass of
    no further frames), so every request tracks at least one frame.
    """
    if direction not in DIRECTIONS:
        raise UsageError(f"unknown direction {direction!r}; choose one of: {', '.join(DIRECTIONS)}")
    if not 0 <= first <= last:
        raise UsageError(f"the frame range {first}..{last} is empty")
    inside = sorted({f for f in prompted if first <= f <= last})
    earliest = inside[0] if inside else first
    latest = inside[-1] if inside else last
    passes: list[Pass] = []
    if direction in ("forward", "both"):
        passes.append(Pass(earliest, False, last - earliest))
    if direction in ("backward", "both"):
        start = earliest if direction == "both" else latest
        if start > first:
            passes.append(Pass(start, True, start - first))
        elif not passes:  # the engine yields nothing when walking back from the range's first frame
            passes.append(Pass(start, False, 0))
    return passes


def frames_covered(passes: Sequence[Pass]) -> int:
    """How many frames the passes yield (for progress bars)."""
    return sum(p.max_frames + 1 for p in passes)
