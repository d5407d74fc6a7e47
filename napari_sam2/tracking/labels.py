"""Logits -> label planes, with overlaps resolved and what the user made protected.

Two steps, so the heavy part can run off the GUI thread: :func:`logits_to_labels`
turns per-object logits into one plane of object ids (on a worker), and
:func:`merge_plane` combines that proposal with the plane already shown (on the GUI
thread, which owns the layer data). Frames painted by hand are protected: their
objects are ``locked`` and never change.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

__all__ = ["logits_to_labels", "merge_plane", "labels_dtype"]


def labels_dtype(max_objects: int = 65535) -> np.dtype:
    """Smallest unsigned dtype for the labels: uint16 up to 65535 objects."""
    return np.dtype(np.uint16) if max_objects <= np.iinfo(np.uint16).max else np.dtype(np.uint32)


def logits_to_labels(
    logits: Mapping[int, np.ndarray], shape: tuple[int, int] | None = None, dtype: Any = np.uint16
) -> np.ndarray:
    """One (H, W) plane of object ids: each pixel goes to the object with the largest
    positive logit, 0 where no object claims it (SAM 2 masks of two objects may overlap).

    ``shape`` is needed only when ``logits`` may be empty (then the plane is all 0).
    """
    dtype = np.dtype(dtype)
    if not logits:
        if shape is None:
            raise ValueError("no masks to combine, and no plane shape given")
        return np.zeros(shape, dtype)
    ids = sorted(logits)
    if len(ids) == 1:
        (obj,) = ids
        return np.where(np.asarray(logits[obj]) > 0, obj, 0).astype(dtype)
    stack = np.stack([np.asarray(logits[i], np.float32) for i in ids])
    best = stack.argmax(axis=0)
    claimed = np.take_along_axis(stack, best[None], axis=0)[0] > 0
    plane = np.asarray(ids, dtype=dtype)[best]
    plane[~claimed] = 0
    return plane


def merge_plane(
    current: np.ndarray,
    proposal: np.ndarray,
    objects: Iterable[int],
    locked: Iterable[int] = (),
    claim_others: bool = False,
) -> np.ndarray:
    """The new labels plane after the engine proposed ``proposal`` for ``objects``.

    - Pixels of ``locked`` objects (painted by hand on this frame) never change.
    - The managed objects (``objects`` minus ``locked``) lose their old pixels and get
      the proposed ones.
    - Labels the engine does not manage (e.g. loaded from a file) are kept, unless
      ``claim_others``: a click means "this is my object", so it may take pixels from
      other objects, but never from locked ones.
    """
    locked_ids = np.asarray(sorted({int(i) for i in locked}), dtype=np.int64)
    managed = np.asarray(sorted({int(i) for i in objects} - set(locked_ids.tolist())), dtype=np.int64)
    out = np.array(current, copy=True)
    if managed.size == 0:
        return out
    is_locked = np.isin(current, locked_ids) if locked_ids.size else np.zeros(current.shape, bool)
    was_managed = np.isin(current, managed)
    out[was_managed] = 0
    writable = ~is_locked if claim_others else (~is_locked & ((current == 0) | was_managed))
    new = writable & np.isin(proposal, managed)
    out[new] = proposal[new]
    return out
