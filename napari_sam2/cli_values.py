"""Value types of the ``napari-sam2`` command's options (argparse ``type=`` callables).

Each turns one option's text into a value or raises ``argparse.ArgumentTypeError`` with
a message that says what was expected.
"""

from __future__ import annotations

import argparse

from .tracking.errors import UsageError
from .tracking.selection import parse_frame_range

__all__ = ["image_size", "non_negative", "positive", "fraction", "feather", "contrast", "held", "frames"]


def image_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels, got {text!r}") from None
    if value <= 0 or value % 32:
        raise argparse.ArgumentTypeError(f"must be a positive multiple of 32 (e.g. 512, 768, 1024), got {value}")
    return value


def non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive(text: str) -> int:
    value = non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def feather(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a radius in pixels, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a radius >= 0 pixels, got {text}")
    return value


def contrast(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH (e.g. 100,4000), got {text!r}") from None
    if not high > low:
        raise argparse.ArgumentTypeError(f"LOW must be below HIGH, got {text!r}")
    return low, high


def held(text: str) -> dict[str, int]:
    held: dict[str, int] = {}
    for part in text.split(","):
        axis, sep, index = part.partition("=")
        try:
            if not sep or not axis.strip():
                raise ValueError
            held[axis.strip()] = int(index)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected AXIS=INDEX (e.g. Z=12 or 1=12), got {part!r}") from None
    return held


def frames(text: str) -> tuple[int | None, int | None] | None:
    try:
        return parse_frame_range(text)
    except UsageError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
