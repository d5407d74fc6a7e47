"""Errors a user can cause, and how they are shown in one line.

Messages never name command-line flags or widget controls. An error about one option
carries that option's name (:func:`with_option`); the command line and the widget map
it to their own flag or control.
"""

from __future__ import annotations

from typing import TypeVar

__all__ = ["UsageError", "SetupError", "with_option", "option_of", "expected_errors", "describe_error"]

E = TypeVar("E", bound=BaseException)


class UsageError(ValueError):
    """The request itself is wrong (an option value, a format, an axis): fix the request."""

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


class SetupError(RuntimeError):
    """This machine cannot do what was asked (e.g. a GPU that is not there)."""


def with_option(exc: E, option: str) -> E:
    """Mark ``exc`` as being about the option ``option`` (e.g. 'overwrite', 'format')."""
    exc.option = option  # type: ignore[attr-defined]
    return exc


def option_of(exc: BaseException) -> str | None:
    """The option an error is about, if it names one."""
    return getattr(exc, "option", None)


def expected_errors() -> tuple[type[BaseException], ...]:
    """Errors a user can cause (and fix); they are reported without a traceback."""
    from ..io.prompts import PromptError
    from ..model.checkpoint import CheckpointError

    return (UsageError, SetupError, PromptError, CheckpointError, OSError, ValueError)


def describe_error(exc: BaseException) -> str:
    """One line for the user: the message of an expected error, else its type and message."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, FileNotFoundError) and exc.filename and str(exc.filename) not in text:
        text = f"{text}: {exc.filename}"
    if isinstance(exc, expected_errors()):
        return text
    return f"unexpected {type(exc).__name__}: {text}"
