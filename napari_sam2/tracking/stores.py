"""Label stores: where label planes go while tracking, without holding a whole stack.

:class:`LabelStore` is a temporary compressed zarr array on disk (the command line and
batch); :func:`new_labels_array` makes the widget's in-memory masks (numpy, or a
compressed zarr array when they would be huge); :class:`FrameWriter` converts and
writes propagated frames on a background thread with a bounded queue.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .labels import logits_to_labels

__all__ = ["BIG_LABELS_BYTES", "new_labels_array", "LabelStore", "FrameWriter"]

BIG_LABELS_BYTES = 1 << 30
"""Masks larger than this are kept in a compressed in-memory zarr array."""


def new_labels_array(shape: tuple[int, ...], dtype: Any) -> Any:
    """Zeros for the masks: numpy, or a compressed in-memory zarr array for huge stacks
    (one chunk per plane)."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if nbytes <= BIG_LABELS_BYTES:
        return np.zeros(shape, dtype)
    import zarr

    chunks = (1,) * (len(shape) - 2) + tuple(shape[-2:])
    return zarr.zeros(shape, chunks=chunks, dtype=dtype)


class LabelStore:
    """A compressed (T, H, W) zarr array in a hidden temporary folder; removed by :meth:`close`.

    One chunk per frame, so writing a frame and reading it back touch only that frame,
    and frames never written read as 0.
    """

    def __init__(self, shape: tuple[int, int, int], dtype: Any, directory: str | os.PathLike | None = None, prefix: str = ".napari-sam2-") -> None:
        import zarr

        if directory is not None:
            Path(directory).mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=directory))
        try:
            self.array = zarr.open_array(
                str(self.path / "labels.zarr"), mode="w", shape=shape, chunks=(1, *shape[1:]), dtype=dtype, fill_value=0
            )
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> "LabelStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FrameWriter:
    """Turns each frame's logits into a label plane and writes it, on one background thread.

    Conversion and compression of frame t then overlap the model's work on frame t + 1.
    At most ``depth`` frames wait in the queue, so memory stays bounded; an error on the
    thread is raised by the next :meth:`put` or by :meth:`close`.
    """

    def __init__(self, out: Any, first: int, obj_ids: Sequence[int], depth: int = 2) -> None:
        import queue
        import threading

        self._out = out
        self._first = first
        self._dtype = np.dtype(out.dtype)
        self._shape = tuple(int(s) for s in out.shape[1:3])
        self.seen: dict[int, set[int]] = {obj: set() for obj in obj_ids}
        self.written: set[int] = set()
        self._queue: "queue.Queue[tuple[int, Mapping[int, np.ndarray]] | None]" = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._abort = False
        self._thread = threading.Thread(target=self._run, name="napari-sam2-labels", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None or self._abort:
                return
            frame, outputs = item
            try:
                self._out[frame - self._first] = logits_to_labels(outputs, self._shape, self._dtype)
                for obj, logits in outputs.items():
                    present = self.seen.setdefault(obj, set())
                    if (np.asarray(logits) > 0).any():
                        present.add(frame)
                    else:
                        present.discard(frame)
                self.written.add(frame)
            except BaseException as err:  # handed to the caller's thread
                self._error = err
                return

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, frame: int, outputs: Mapping[int, np.ndarray]) -> None:
        import queue

        while True:
            self._check()
            try:
                self._queue.put((frame, outputs), timeout=0.2)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    self._check()
                    raise RuntimeError("the label writer stopped unexpectedly")

    def close(self) -> None:
        """Wait for the queued frames (all of them after success, none after an error)."""
        import sys

        failing = sys.exc_info()[0] is not None
        self._abort = failing
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.2)
                break
            except Exception:
                continue
        self._thread.join()
        if not failing:
            self._check()
