"""The one error type of the stack readers, so callers can tell bad input from bugs."""

from __future__ import annotations

import os

__all__ = ["ReadError", "describe"]


class ReadError(ValueError):
    """A stack cannot be read (missing piece, truncated or corrupted data).

    The message names the file and, where one frame is at fault, the frame; ``path``
    and ``frame`` hold them for programs.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None, frame: int | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.frame = frame


def describe(err: BaseException) -> str:
    """A short, one-line description of an underlying decoder error."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
