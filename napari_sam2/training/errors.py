"""The one exception type of training and evaluation."""

from __future__ import annotations

__all__ = ["TrainingError"]


class TrainingError(ValueError):
    """Bad training input or output: the message says what is wrong and how to fix it.

    Messages name data, files and settings, never command-line flags, so the command
    line and the widget can both show them as they are.
    """
