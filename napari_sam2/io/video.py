"""Random-access video frames with PyAV, decoded on demand.

Clips with thousands of frames do not fit in memory as RGB arrays, and decoders only
seek to keyframes. ``VideoFrames`` therefore scans the packet index once (demuxing,
no decoding) to learn every frame's timestamp and the keyframes, then serves
``frames[i]`` by seeking to the nearest keyframe at or before ``i`` and decoding up to
it. Reading the next frame continues the running decoder without a new seek, and a
small LRU cache, bounded in bytes, keeps recent frames; when walking backwards
(reverse propagation) it also keeps the frames decoded on the way to the target, so
a whole group of pictures is not decoded again for every frame.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
import weakref
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import ReadError, describe
from .lazy import LazyFrames

__all__ = ["VIDEO_SUFFIXES", "VideoFrames", "read_video"]

VIDEO_SUFFIXES: tuple[str, ...] = (
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ogv", ".mts", ".m2ts", ".ts", ".gif",
)
_DEFAULT_CACHE_BYTES = 256 * 1024 * 1024
_log = logging.getLogger(__name__)


class VideoFrames(LazyFrames):
    """A read-only (T, H, W, 3) uint8 array-like over a video file.

    Supports ``len``, ``shape``, ``dtype``, ``ndim`` and numpy-style indexing whose
    first index is an int, a slice or a list of frame indices (``frames[5]``,
    ``frames[10:20:2, :100]``). Thread-safe: one lock serializes decoding.
    Frames returned by integer indexing are read-only views of the cache.

    ``cache_bytes`` bounds the decoded-frame cache (at least two frames are kept).
    Display rotation recorded in the file (phone videos) is applied.
    """

    dtype = np.dtype(np.uint8)

    def __init__(self, path: str | os.PathLike, stream: int = 0, cache_bytes: int = _DEFAULT_CACHE_BYTES) -> None:
        import av

        self.path = Path(path)
        self._stream_number = int(stream)
        self._cache_bytes = int(cache_bytes)
        if not self.path.exists():
            raise FileNotFoundError(f"no such file: {self.path}")
        try:
            self._container = av.open(str(self.path))
        except (av.error.FFmpegError, UnicodeDecodeError, OSError) as err:
            if isinstance(err, FileNotFoundError):
                raise
            raise ReadError(f"cannot read {self.path} as a video: {describe(err)}", self.path) from err
        self._finalizer = weakref.finalize(self, _close_container, self._container)
        self._lock = threading.RLock()
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._capacity = 2
        self._decoder: Iterator[Any] | None = None
        self._last_decoded = -1  # index of the last frame the running decoder produced
        self._min_index = 0
        self._last_request = 0
        self._rotation = 0  # quarter turns counter-clockwise, from the display matrix
        self.seeks = 0  # seeks and decoded frames so far: lets tests and benchmarks check access patterns
        self.decoded = 0
        self.substituted: set[int] = set()  # frames that could not be decoded, served by an earlier one
        try:
            videos = self._container.streams.video
            if len(videos) <= self._stream_number:
                raise ReadError(f"{self.path} has {len(videos)} video stream(s), no stream {stream}", self.path)
            self._stream = videos[self._stream_number]
            self._stream.thread_type = "AUTO"  # decode with several threads
            self._build_index()
            first = self._decode_first()
        except (av.error.FFmpegError, OSError) as err:
            self.close()
            raise ReadError(f"cannot decode {self.path}: {describe(err)}", self.path) from err
        except Exception:
            self.close()
            raise
        self.shape: tuple[int, int, int, int] = (len(self._pts), *first.shape)
        self._capacity = max(2, self._cache_bytes // max(1, first.nbytes))
        self._put(0, first)

    # ------------------------------------------------------------------ index
    def _build_index(self) -> None:
        """Timestamps of all frames in presentation order and the keyframe timestamps.

        Demuxes packets without decoding; falls back to a full decode for streams
        whose packets carry no timestamps.
        """
        stream = self._stream
        pts: list[int] = []
        keys: list[int] = []
        missing = False
        for packet in self._container.demux(stream):
            if packet.size == 0 or packet.is_discard:
                continue
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None:
                missing = True
                break
            pts.append(ts)
            if packet.is_keyframe:
                keys.append(ts)
        if missing or not pts:
            pts, keys = self._index_by_decoding()
        if not pts:
            raise ReadError(f"{self.path} contains no video frames", self.path)
        order = sorted(set(pts))
        self._pts = order
        self._index_of = {ts: i for i, ts in enumerate(order)}
        self._key_indices = sorted({self._index_of[k] for k in keys if k in self._index_of} | {0})
        self._container.seek(0)  # rewind; _decode_first seeks properly anyway
        declared = stream.frames
        if declared and declared != len(order):
            _log.info("%s declares %d frames, %d found in the packet index", self.path, declared, len(order))

    def _index_by_decoding(self) -> tuple[list[int], list[int]]:
        self._container.seek(0)
        pts, keys = [], []
        for n, frame in enumerate(self._container.decode(self._stream)):
            ts = frame.pts if frame.pts is not None else n
            pts.append(ts)
            if frame.key_frame:
                keys.append(ts)
        self._no_seek = True
        return pts, keys

    _no_seek = False

    def _decode_first(self) -> np.ndarray:
        self._seek_to(0)
        assert self._decoder is not None
        for frame in self._decoder:
            index = 0 if self._no_seek or frame.pts is None else self._index_of.get(frame.pts)
            if index == 0:
                self._rotation = int(round(getattr(frame, "rotation", 0) / 90.0)) % 4
                self._last_decoded = 0
                return self._to_array(frame)
        raise ReadError(f"{self.path}: the first frame could not be decoded", self.path, 0)

    # ------------------------------------------------------------------ properties
    @property
    def num_frames(self) -> int:
        return self.shape[0]

    @property
    def fps(self) -> float | None:
        """Average frame rate in frames per second, if the file records one."""
        rate = self._stream.average_rate or self._stream.guessed_rate
        return float(rate) if rate else None

    @property
    def timestamps(self) -> np.ndarray:
        """Presentation time of each frame in seconds (relative to the first frame)."""
        base = Fraction(self._stream.time_base) if self._stream.time_base else Fraction(1)
        first = self._pts[0]
        return np.array([float((ts - first) * base) for ts in self._pts])

    def truncation(self) -> str | None:
        """Why the file looks cut off, or None: fewer frames than its header declares.

        Uses the declared frame count where the container records one (MP4, AVI),
        else the declared duration of a video-only file (Matroska, WebM), compared by
        time so that variable frame rates do not matter.
        """
        declared = self._stream.frames
        found = len(self._pts)
        if declared and found < declared:
            return f"its header declares {declared} frames but only {found} are in the file"
        rate = self.fps
        duration = self._container.duration  # microseconds
        if declared or not rate or not duration or len(self._container.streams) != 1 or self._stream.time_base is None:
            return None
        interval = 1.0 / rate
        end = float((self._pts[-1] - self._pts[0]) * Fraction(self._stream.time_base)) + interval
        if duration / 1e6 - end > 0.5 * interval:
            return f"its header declares {duration / 1e6:.3f} s but its frames end at {end:.3f} s"
        return None

    def __repr__(self) -> str:
        return f"VideoFrames({str(self.path)!r}, shape={self.shape})"

    # ------------------------------------------------------------------ decoding
    def _read(self, index: int) -> np.ndarray:
        """Frame ``index`` as a read-only (H, W, 3) uint8 array."""
        with self._lock:
            backwards = index < self._last_request
            self._last_request = index
            cached = self._cache.get(index)
            if cached is not None:
                self._cache.move_to_end(index)
                return cached
            if self.closed:
                raise ReadError(f"{self.path} has been closed; frame {index} cannot be read", self.path, index)
            try:
                return self._decode_to(index, backwards)
            except (ReadError, MemoryError):
                raise
            except Exception as err:  # decoder errors on damaged data
                self._decoder = None  # start afresh (with a seek) next time
                raise ReadError(f"cannot decode frame {index} of {self.path}: {describe(err)}", self.path, index) from err

    def _decode_to(self, index: int, backwards: bool = False) -> np.ndarray:
        position = bisect.bisect_right(self._key_indices, index) - 1
        key = self._key_indices[position]
        # fallbacks if the decoder skips past the target: one keyframe earlier, then the start
        starts = [key, self._key_indices[max(0, position - 1)], 0]
        running = self._decoder is not None and self._last_decoded < index
        # walking backwards, the frames just before the target are requested next: keep them
        keep_from = index - self._capacity + 1 if backwards else index
        for attempt, start in enumerate(starts):
            if attempt > 0 and start >= starts[attempt - 1] and attempt < len(starts) - 1:
                continue
            if attempt > 0 or not (running and (key <= self._last_decoded + 1 or self._no_seek)):
                self._seek_to(start)
            found = self._decode_until(index, keep_from)
            if found is not None:
                return found
        nearest = self._nearest_cached(index)
        if nearest is None:
            raise ReadError(f"{self.path}: frame {index} could not be decoded", self.path, index)
        _log.warning("%s: frame %d could not be decoded exactly; using frame %d", self.path, index, nearest)
        self.substituted.add(index)
        return self._cache[nearest]

    def _seek_to(self, key_index: int) -> None:
        if self._no_seek or key_index == 0:
            self._container.seek(0)
        else:
            self._container.seek(self._pts[key_index], stream=self._stream, backward=True, any_frame=False)
        self._decoder = self._container.decode(self._stream)
        self._min_index = key_index  # frames before the keyframe may be broken (open GOP)
        self._last_decoded = key_index - 1
        self.seeks += 1

    def _decode_until(self, index: int, keep_from: int) -> np.ndarray | None:
        """Run the decoder until frame ``index``; cache frames from ``keep_from`` on."""
        assert self._decoder is not None
        counter = self._last_decoded
        for frame in self._decoder:
            self.decoded += 1
            if self._no_seek or frame.pts is None:
                counter += 1
                i = counter
            else:
                i = self._index_of.get(frame.pts)
                if i is None:
                    continue  # a timestamp the demuxer did not list (e.g. a discarded frame)
            if i < self._min_index:
                continue
            self._last_decoded = i
            if i > index:
                # overshoot: the target was never produced
                if i >= keep_from:
                    self._put(i, self._to_array(frame))
                return None
            if i >= keep_from:
                array = self._to_array(frame)
                self._put(i, array)
                if i == index:
                    return array
        self._decoder = None  # end of stream
        return None

    def _to_array(self, frame: Any) -> np.ndarray:
        array = frame.to_ndarray(format="rgb24")
        if self._rotation:
            array = np.ascontiguousarray(np.rot90(array, k=self._rotation))
        array.flags.writeable = False
        return array

    def _put(self, index: int, array: np.ndarray) -> None:
        self._cache[index] = array
        self._cache.move_to_end(index)
        while len(self._cache) > self._capacity:
            self._cache.popitem(last=False)

    def _nearest_cached(self, index: int) -> int | None:
        before = [i for i in self._cache if i <= index]
        return max(before) if before else None

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Close the file. Further reads raise."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def __enter__(self) -> "VideoFrames":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        # picklable for multiprocess / distributed workers: reopen the file there
        return {"path": str(self.path), "stream": self._stream_number, "cache_bytes": self._cache_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], stream=state["stream"], cache_bytes=state["cache_bytes"])


def _close_container(container: Any) -> None:
    try:
        container.close()
    except Exception:  # pragma: no cover - closing must never raise
        pass


def read_video(path: str | os.PathLike, stream: int = 0) -> tuple[VideoFrames, dict[str, Any]]:
    """Open a video lazily; returns ``(frames, metadata)`` like the other readers."""
    frames = VideoFrames(path, stream=stream)
    metadata = {
        "path": str(frames.path),
        "format": "video",
        "axes": "TYXS",
        "shape": frames.shape,
        "dtype": "uint8",
        "frame_axis": 0,
        "rgb": True,
        "storage": "decode",
        "scale": {"T": 1.0 / frames.fps} if frames.fps else {},
        "units": {"T": "s"} if frames.fps else {},
        "fps": frames.fps,
    }
    return frames, metadata
