"""Give freed heap memory back to the system during long propagations (glibc only).

Why: with torch on the CPU, glibc's malloc serves the many megabyte-sized temporaries
of each frame from its heaps (its mmap threshold rises to the largest block freed) in
between the long-lived tensors of the session's caches. Holes left by evicted cache
entries are then too small or badly placed for the next frame's temporaries, the heap
grows in steps, and resident memory creeps up by about half a megabyte per frame
although nothing in use grows (measured in ``benchmarks/bench_memory.py``).
``malloc_trim(0)`` returns every free page of the heaps, holes included, to the
system, so resident memory is what is really in use; running it every few frames
costs well under one percent of the time. Other C libraries (macOS, Windows, musl)
return memory differently and are left alone. ``NAPARI_SAM2_MALLOC=0`` switches this
off (for comparisons).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from functools import lru_cache

__all__ = ["release_free_memory", "FrameTrimmer", "enabled"]

ENV = "NAPARI_SAM2_MALLOC"
TRIM_EVERY = 8  # frames between trims: bounds the creep, keeps the cost negligible


@lru_cache(maxsize=1)
def _malloc_trim():
    if not sys.platform.startswith("linux") or os.environ.get(ENV, "1") == "0":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim  # glibc only; musl has none
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def enabled() -> bool:
    """Whether this process trims (glibc on Linux, not switched off)."""
    return _malloc_trim() is not None


def release_free_memory() -> bool:
    """Return free heap pages to the system now; False where this does nothing."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


class FrameTrimmer:
    """Calls :func:`release_free_memory` once every ``every`` frames."""

    def __init__(self, every: int = TRIM_EVERY) -> None:
        self.every = max(1, int(every))
        self._count = 0

    def frame_done(self) -> None:
        self._count += 1
        if self._count >= self.every:
            self._count = 0
            release_free_memory()
