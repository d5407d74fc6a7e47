"""The command line's console: notes, errors and tqdm progress bars on stderr."""

from __future__ import annotations

import sys
from typing import Any, TextIO

__all__ = ["Console"]


class Console:
    """Notes, warnings, errors and tqdm progress bars on stderr; ``quiet`` keeps only warnings and errors."""

    _LABELS = {"download": "downloading model", "prompts": "prompts", "track": "tracking", "export": "exporting", "batch": "inputs"}
    _UNITS = {"download": "B", "prompts": "prompt", "track": "frame", "export": "frame", "batch": "input"}

    def __init__(self, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self._bars: dict[str, Any] = {}

    def note(self, message: str) -> None:
        if not self.quiet:
            self._clear()
            print(f"napari-sam2: {message}", file=self.stream, flush=True)

    def warning(self, message: str) -> None:
        """Something the user must know even with ``quiet`` (e.g. another model ran)."""
        self._clear()
        print(f"warning: {message}", file=self.stream, flush=True)

    def error(self, message: str) -> None:
        self.close()
        print(f"error: {message}", file=self.stream, flush=True)

    def progress(self, stage: str, done: int, total: int) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        bar = self._bars.get(stage)
        if bar is None:
            for other in [s for s in self._bars if s != stage]:
                self._bars.pop(other).close()
            binary = stage == "download"
            bar = tqdm(
                total=total or None, desc=self._LABELS.get(stage, stage), unit=self._UNITS.get(stage, "it"),
                unit_scale=binary, unit_divisor=1024 if binary else 1000, file=self.stream, dynamic_ncols=True,
                mininterval=0.2, leave=True,
            )
            self._bars[stage] = bar
        if total and bar.total != total:
            bar.total = total
        if done > bar.n:
            bar.update(done - bar.n)
        if total and done >= total:
            self._bars.pop(stage).close()

    def _clear(self) -> None:
        for bar in self._bars.values():
            bar.clear()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
