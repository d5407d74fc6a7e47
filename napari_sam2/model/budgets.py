"""Default memory budgets of a session, sized to the machine it runs on.

A session keeps three bounded caches: image features (re-used when the user clicks
again or re-propagates), memory-conditioned features, and per-frame results held in
RAM before they spill to a temporary file. Fixed budgets were either too large for a
laptop (the session then held more than it saved) or too small for a workstation, so
the defaults are a fraction of the memory available to this process: its cgroup limit
(containers, batch schedulers) when there is one, else the machine's RAM.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

__all__ = ["CacheBudgets", "default_budgets", "available_memory"]

MiB = 1 << 20
FRACTION = 0.05  # of the available memory, for all three caches together
MIN_TOTAL = 256 * MiB
MAX_TOTAL = 2048 * MiB
_SHARES = (0.6, 0.2, 0.2)  # features, conditioned features, results in RAM


@dataclass(frozen=True)
class CacheBudgets:
    """Byte budgets of a session's three caches."""

    features: int
    conditioned: int
    records: int

    @property
    def total(self) -> int:
        return self.features + self.conditioned + self.records

    def describe(self) -> str:
        """One line for a user interface, e.g. 'caches 410 MiB: features 246, ...'."""
        return (
            f"caches {self.total / MiB:.0f} MiB: image features {self.features / MiB:.0f}, "
            f"conditioned features {self.conditioned / MiB:.0f}, results {self.records / MiB:.0f} MiB "
            "(results beyond go to a temporary file)"
        )


def available_memory() -> int | None:
    """Bytes of memory this process may use: the cgroup limit if lower than the RAM."""
    total = _physical_memory()
    limit = _cgroup_limit()
    if limit is not None and (total is None or limit < total):
        return limit
    return total


def default_budgets(memory: int | None = None) -> CacheBudgets:
    """Budgets for ``memory`` bytes (default: :func:`available_memory`).

    5 % of it for the three caches together, at least 256 MiB and at most 2 GiB, split
    60 / 20 / 20 between image features, conditioned features and results in RAM:
    e.g. 8 GiB of RAM gives 410 MiB, 16 GiB 819 MiB, 64 GiB and more 2 GiB.
    """
    if memory is None:
        memory = available_memory() or 8 * 1024 * MiB
    total = int(min(MAX_TOTAL, max(MIN_TOTAL, FRACTION * memory)))
    features, conditioned, _ = (int(total * share) for share in _SHARES)
    return CacheBudgets(features, conditioned, total - features - conditioned)


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        pass
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import ctypes

        class _Status(ctypes.Structure):
            _fields_ = [("length", ctypes.c_ulong), ("load", ctypes.c_ulong), ("total", ctypes.c_ulonglong),
                        ("avail", ctypes.c_ulonglong), ("page_total", ctypes.c_ulonglong),
                        ("page_avail", ctypes.c_ulonglong), ("virtual_total", ctypes.c_ulonglong),
                        ("virtual_avail", ctypes.c_ulonglong), ("extended", ctypes.c_ulonglong)]

        status = _Status()
        status.length = ctypes.sizeof(_Status)
        if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
            return int(status.total)
    return None


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # "max" or a huge number: no limit
            return int(text)
    return None
