"""COCO run-length encoding of binary masks, compatible with pycocotools.

Runs are counted over the mask in column-major (Fortran) order, alternating
background and foreground and starting with background (so a mask whose first pixel
is set starts with a zero count). The compressed form stores each count, minus the
count two places before it from the fourth on, as little-endian 5-bit groups with a
continuation bit, offset into printable ASCII ('0' = 48). Implemented in numpy so the
package does not depend on a compiled COCO API.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import numpy as np

__all__ = [
    "encode_mask",
    "decode_mask",
    "rle_size",
    "counts_to_string",
    "string_to_counts",
    "encode_labels",
    "rle_area",
    "rle_bbox",
]


def _runs(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start, length and value of each run of equal values in a 1D array."""
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate(([0], change))
    lengths = np.diff(np.concatenate((starts, [flat.size])))
    return starts, lengths, flat[starts]


def _counts_from_runs(starts: np.ndarray, lengths: np.ndarray, total: int) -> list[int]:
    """COCO counts for foreground runs given by their starts and lengths (sorted)."""
    if starts.size == 0:
        return [int(total)]
    ends = starts + lengths
    gaps = starts - np.concatenate(([0], ends[:-1]))
    counts = np.empty(2 * starts.size, dtype=np.int64)
    counts[0::2] = gaps
    counts[1::2] = lengths
    result = counts.tolist()
    tail = total - int(ends[-1])
    if tail:
        result.append(tail)
    return result


def encode_mask(mask: Any, compressed: bool = True) -> dict[str, Any]:
    """RLE of one (H, W) binary mask: ``{"size": [H, W], "counts": str | list[int]}``."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be 2D (H, W); got shape {mask.shape}")
    flat = mask.astype(bool, copy=False).ravel(order="F")
    if flat.size == 0:
        counts: list[int] = []
    else:
        starts, lengths, values = _runs(flat)
        counts = _counts_from_runs(starts[values], lengths[values], flat.size)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts_to_string(counts) if compressed else counts}


def encode_labels(frame: Any, compressed: bool = True) -> dict[int, dict[str, Any]]:
    """RLE of every non-zero label of an (H, W) label image, in one pass over its pixels."""
    frame = np.asarray(frame)
    if frame.ndim != 2:
        raise ValueError(f"a label image must be 2D (H, W); got shape {frame.shape}")
    height, width = frame.shape
    flat = frame.ravel(order="F")
    if flat.size == 0:
        return {}
    starts, lengths, values = _runs(flat)
    result: dict[int, dict[str, Any]] = {}
    order = np.argsort(values, kind="stable")  # runs grouped by label, still sorted by start
    sorted_values = values[order]
    labels, first = np.unique(sorted_values, return_index=True)
    bounds = np.append(first, sorted_values.size)
    for label, lo, hi in zip(labels.tolist(), bounds[:-1], bounds[1:]):
        if label == 0:
            continue
        pick = order[lo:hi]
        counts = _counts_from_runs(starts[pick], lengths[pick], flat.size)
        result[int(label)] = {"size": [height, width], "counts": counts_to_string(counts) if compressed else counts}
    return result


def counts_to_string(counts: Iterable[int]) -> str:
    """Compress COCO counts into pycocotools' ASCII form."""
    counts = list(counts)
    chars: list[str] = []
    for i, value in enumerate(counts):
        x = int(value) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift: negative deltas stay negative
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            chars.append(chr(c + 48))
    return "".join(chars)


_MAX_SHIFT = 60  # a count of more than 12 groups of 5 bits is no mask size; stop before it grows


def string_to_counts(text: str) -> list[int]:
    """Inverse of :func:`counts_to_string`; raises ``ValueError`` for malformed text."""
    counts: list[int] = []
    position, length = 0, len(text)
    while position < length:
        x, shift, more = 0, 0, True
        while more:
            if position >= length:
                raise ValueError("truncated RLE string")
            if shift > _MAX_SHIFT:
                raise ValueError(f"RLE count {len(counts)} is too large (more than {_MAX_SHIFT} bits)")
            c = ord(text[position]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"invalid character {text[position]!r} in RLE string")
            x |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            position += 1
            shift += 5
            if not more and c & 0x10:
                x |= -1 << shift  # sign-extend
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _is_count(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def rle_size(rle: Any) -> tuple[int, int]:
    """The ``(H, W)`` an RLE declares, checked but not decoded (nothing is allocated)."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError("an RLE must be a dict with 'size': [H, W] and 'counts'")
    size = rle["size"]
    if not isinstance(size, (list, tuple)) or len(size) != 2 or not all(_is_count(v) and v >= 0 for v in size):
        raise ValueError(f"RLE size must be [H, W] with integers >= 0, got {_short(size)}")
    return int(size[0]), int(size[1])


def _counts_of(rle: Any, max_pixels: int | None = None) -> tuple[int, int, list[int]]:
    height, width = rle_size(rle)
    if max_pixels is not None and height * width > max_pixels:
        raise ValueError(f"RLE size {height} x {width} is larger than allowed here ({max_pixels} pixels)")
    counts = rle["counts"]
    if isinstance(counts, bytes):
        try:
            counts = counts.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError("RLE counts bytes are not ASCII") from None
    if isinstance(counts, str):
        counts = string_to_counts(counts)
    elif not isinstance(counts, (list, tuple)) or not all(_is_count(c) for c in counts):
        raise ValueError(f"RLE counts must be a string or a list of integers, got {_short(counts)}")
    counts = [int(c) for c in counts]
    total = sum(counts)
    if any(c < 0 for c in counts) or total != height * width:
        raise ValueError(f"RLE counts do not describe a {height} x {width} mask (they sum to {_short(total)})")
    return height, width, counts


def _short(value: Any, limit: int = 60) -> str:
    """``repr`` of a user-supplied value, cut so that an error message stays readable."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def decode_mask(rle: Any, shape: tuple[int, int] | None = None, max_pixels: int | None = None) -> np.ndarray:
    """The (H, W) bool mask of an RLE (compressed or not); validates the counts.

    ``shape``: the size the mask must have; it is checked (like ``max_pixels``)
    before anything is allocated, so a few bytes of JSON cannot ask for gigabytes.
    """
    if shape is not None:
        declared = rle_size(rle)
        if declared != tuple(shape):
            raise ValueError(f"the mask is {declared[0]} x {declared[1]} but the frame is {shape[0]} x {shape[1]}")
    height, width, counts = _counts_of(rle, max_pixels)
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((width, height)).T.copy()


def _fg_runs(counts: list[int]) -> Iterator[tuple[int, int]]:
    position = 0
    for i, c in enumerate(counts):
        if i % 2 and c:
            yield position, c
        position += c


def rle_area(rle: dict[str, Any]) -> int:
    """Number of foreground pixels."""
    _, _, counts = _counts_of(rle)
    return int(sum(counts[1::2]))


def rle_bbox(rle: dict[str, Any]) -> list[float]:
    """COCO box ``[x, y, width, height]`` (x = column) of the foreground; zeros if empty."""
    height, _, counts = _counts_of(rle)
    runs = np.array(list(_fg_runs(counts)), dtype=np.int64).reshape(-1, 2)
    if runs.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    first, last = runs[:, 0], runs[:, 0] + runs[:, 1] - 1
    first_col, last_col = first // height, last // height
    wraps = last_col > first_col  # a run reaching into the next column covers the last and the first row
    top = int(np.where(wraps, 0, first % height).min())
    bottom = int(np.where(wraps, height - 1, last % height).max())
    x0, x1 = int(first_col.min()), int(last_col.max())
    return [float(x0), float(top), float(x1 - x0 + 1), float(bottom - top + 1)]
