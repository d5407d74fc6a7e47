"""Bounded-memory storage for per-frame tracking records and image features.

A long propagation produces one record per object and frame (its low-resolution mask
logits, memory features, object pointer and score). The model only attends to a few
of them at a time, so :class:`RecordStore` keeps recently used records in RAM up to a
byte budget and writes the rest to a temporary file, from where they are read back when
a later interaction needs them. Peak memory therefore does not grow with the length of
the video, while every result stays available exactly as computed.
"""

from __future__ import annotations

import os
import tempfile
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Generic, Hashable, Iterator, TypeVar

import numpy as np
import torch

__all__ = ["FrameRecord", "RecordStore", "LRUCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass
class FrameRecord:
    """Tracking output of one object on one frame (tensors on the CPU, batch of 1).

    ``pred_masks`` (1, 1, s, s) float32 mask logits after post-processing;
    ``obj_ptr`` (1, C); ``score`` (1, 1) object-presence logit; ``maskmem``
    (1, mem_dim, h, w) bfloat16 memory features, or None until encoded.
    ``version`` changes whenever the record is recomputed; ``signature`` identifies the
    inputs it was computed from (None for prompted frames).
    """

    pred_masks: torch.Tensor
    obj_ptr: torch.Tensor
    score: torch.Tensor
    maskmem: torch.Tensor | None
    version: int
    signature: int | None = None

    def nbytes(self) -> int:
        tensors = [self.pred_masks, self.obj_ptr, self.score]
        if self.maskmem is not None:
            tensors.append(self.maskmem)
        return sum(t.numel() * t.element_size() for t in tensors)


class LRUCache(Generic[K, V]):
    """A thread-safe least-recently-used mapping bounded by the bytes of its values."""

    def __init__(self, max_bytes: int, sizeof: Callable[[V], int], on_evict: Callable[[K, V], None] | None = None):
        self.max_bytes = int(max_bytes)
        self._sizeof = sizeof
        self._on_evict = on_evict
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.RLock()

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: K) -> bool:
        return key in self._items

    def get(self, key: K) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self.pop(key)
            size = int(self._sizeof(value))
            self._items[key] = (value, size)
            self._bytes += size
            self._shrink()

    def pop(self, key: K) -> V | None:
        with self._lock:
            item = self._items.pop(key, None)
            if item is None:
                return None
            self._bytes -= item[1]
            return item[0]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def keys(self) -> list[K]:
        with self._lock:
            return list(self._items)

    def _shrink(self) -> None:
        while self._bytes > self.max_bytes and len(self._items) > 1:
            key, (value, size) = self._items.popitem(last=False)
            self._bytes -= size
            if self._on_evict is not None:
                self._on_evict(key, value)


@dataclass
class _Entry:
    version: int
    signature: int | None
    slot: int | None  # position in the spill file, once written


class _SpillFile:
    """Fixed-size slots in an anonymous temporary file."""

    def __init__(self, directory: str | os.PathLike | None) -> None:
        self._fh = tempfile.TemporaryFile(prefix="napari-sam2-", suffix=".records", dir=directory)
        self._lock = threading.Lock()
        self._free: list[int] = []
        self._next = 0
        self.slot_bytes = 0
        self._finalizer = weakref.finalize(self, self._fh.close)

    def allocate(self) -> int:
        if self._free:
            return self._free.pop()
        slot, self._next = self._next, self._next + 1
        return slot

    def release(self, slot: int) -> None:
        self._free.append(slot)

    def write(self, slot: int, data: bytes) -> None:
        if not self.slot_bytes:
            self.slot_bytes = len(data)
        if len(data) != self.slot_bytes:
            raise ValueError("records of one session must all have the same size")
        with self._lock:
            self._fh.seek(slot * self.slot_bytes)
            self._fh.write(data)

    def read(self, slot: int) -> bytes:
        with self._lock:
            self._fh.seek(slot * self.slot_bytes)
            data = self._fh.read(self.slot_bytes)
        if len(data) != self.slot_bytes:
            raise OSError("the tracking record file was truncated")
        return data

    def close(self) -> None:
        self._finalizer()


class RecordStore:
    """Records keyed by (object id, frame): a RAM LRU in front of a spill file.

    Index entries (version, signature, slot) always stay in RAM; they are a few dozen
    bytes each. Record tensors leave RAM when the byte budget is exceeded and are written
    to disk on eviction only, so short sessions never touch the disk.
    """

    def __init__(self, ram_bytes: int = 256 << 20, directory: str | os.PathLike | None = None) -> None:
        self._index: dict[tuple[int, int], _Entry] = {}
        self._ram: LRUCache[tuple[int, int], FrameRecord] = LRUCache(ram_bytes, FrameRecord.nbytes, self._evict)
        self._directory = directory
        self._spill: _SpillFile | None = None
        self._layout: list[tuple[str, tuple[int, ...], torch.dtype]] | None = None
        self._lock = threading.RLock()

    # -- mapping interface
    def __contains__(self, key: tuple[int, int]) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def keys(self) -> Iterator[tuple[int, int]]:
        return iter(list(self._index))

    def entry(self, key: tuple[int, int]) -> tuple[int, int | None] | None:
        """(version, signature) of a record without loading it."""
        e = self._index.get(key)
        return None if e is None else (e.version, e.signature)

    def put(self, key: tuple[int, int], record: FrameRecord) -> None:
        if record.maskmem is None:
            raise ValueError("only records with memory features are stored")
        with self._lock:
            self.pop(key)
            self._index[key] = _Entry(record.version, record.signature, None)
            self._ram.put(key, record)

    def get(self, key: tuple[int, int]) -> FrameRecord | None:
        with self._lock:
            entry = self._index.get(key)
            if entry is None:
                return None
            record = self._ram.get(key)
            if record is None:
                record = self._decode(self._spill.read(entry.slot), entry)  # type: ignore[union-attr]
                self._ram.put(key, record)
            return record

    def pop(self, key: tuple[int, int]) -> None:
        with self._lock:
            entry = self._index.pop(key, None)
            if entry is None:
                return
            self._ram.pop(key)
            if entry.slot is not None and self._spill is not None:
                self._spill.release(entry.slot)

    def clear(self) -> None:
        with self._lock:
            for key in list(self._index):
                self.pop(key)

    def close(self) -> None:
        with self._lock:
            self._index.clear()
            self._ram.clear()
            if self._spill is not None:
                self._spill.close()
                self._spill = None

    @property
    def ram_bytes(self) -> int:
        return self._ram.nbytes

    @property
    def spilled(self) -> int:
        """Number of records currently held only on disk."""
        return sum(1 for k in self._index if k not in self._ram)

    # -- (de)serialisation
    def _evict(self, key: tuple[int, int], record: FrameRecord) -> None:
        entry = self._index.get(key)
        if entry is None or entry.slot is not None:
            return  # removed meanwhile, or already on disk and unchanged
        if self._spill is None:
            self._spill = _SpillFile(self._directory)
        entry.slot = self._spill.allocate()
        self._spill.write(entry.slot, self._encode(record))

    def _fields(self, record: FrameRecord) -> list[tuple[str, torch.Tensor]]:
        return [
            ("pred_masks", record.pred_masks),
            ("obj_ptr", record.obj_ptr),
            ("score", record.score),
            ("maskmem", record.maskmem),  # type: ignore[list-item]
        ]

    def _encode(self, record: FrameRecord) -> bytes:
        fields = self._fields(record)
        layout = [(name, tuple(t.shape), t.dtype) for name, t in fields]
        if self._layout is None:
            self._layout = layout
        elif layout != self._layout:
            raise ValueError("records of one session must all have the same layout")
        parts = []
        for _, t in fields:
            t = t.detach().contiguous().cpu()
            if t.dtype == torch.bfloat16:
                t = t.view(torch.int16)
            parts.append(t.numpy().tobytes())
        return b"".join(parts)

    def _decode(self, data: bytes, entry: _Entry) -> FrameRecord:
        assert self._layout is not None
        values: dict[str, torch.Tensor] = {}
        offset = 0
        for name, shape, dtype in self._layout:
            store_dtype = torch.int16 if dtype == torch.bfloat16 else dtype
            np_dtype = torch.empty(0, dtype=store_dtype).numpy().dtype
            count = int(np.prod(shape))
            arr = np.frombuffer(data, dtype=np_dtype, count=count, offset=offset).copy()
            offset += count * np_dtype.itemsize
            t = torch.from_numpy(arr).view(shape)
            values[name] = t.view(torch.bfloat16) if dtype == torch.bfloat16 else t
        return FrameRecord(
            values["pred_masks"], values["obj_ptr"], values["score"], values["maskmem"],
            entry.version, entry.signature,
        )
