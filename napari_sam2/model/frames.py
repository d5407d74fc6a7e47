"""Lazy frame source: any array-like stack -> normalized SAM 2 model input, one frame at a time.

Time-lapses are often larger than memory, so frames are only ever read one at a time
(``frames[i]``) and never converted up front. 8-bit frames are normalized exactly like
the reference SAM 2 video predictor (Pillow resize, ``/ 255`` in float64, ImageNet
mean/std in float32) so that results match it bit for bit; 16-bit, other integer and
float frames are mapped linearly by contrast limits to ``[0, 1]`` in float32 (never via
an 8-bit image) and resized with antialiased bilinear interpolation.

An optional single background thread reads the next frame in the walking direction
while the model works on the current one, so disk I/O and decoding overlap compute.
"""

from __future__ import annotations

import operator
import threading
import weakref
from collections import OrderedDict
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = [
    "FrameSource",
    "IMG_MEAN",
    "IMG_STD",
    "MIN_FRAME_SIZE",
    "estimate_contrast_limits",
    "normalize_frame",
    "scale_to_unit",
]

IMG_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMG_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
MIN_FRAME_SIZE = 8
"""Smallest accepted frame side in pixels; smaller frames carry nothing to segment."""

_SAMPLE_FRAMES = 16
_SAMPLE_PIXELS = 1 << 16  # per sampled frame
_PERCENTILES = (0.5, 99.5)
_CACHE_ENTRIES = 2
_MEAN = np.array(IMG_MEAN, dtype=np.float32)[:, None, None]
_STD = np.array(IMG_STD, dtype=np.float32)[:, None, None]


def _kind_of(dtype: np.dtype) -> str:
    if dtype == np.uint8:
        return "uint8"
    if dtype.kind in "ui" or dtype.kind == "f":
        return "scaled"
    raise ValueError(
        f"unsupported frame dtype {dtype}; expected an integer or floating-point type "
        "(bool and complex images cannot be segmented)"
    )


def estimate_contrast_limits(
    read: Callable[[int], np.ndarray],
    num_frames: int,
    max_frames: int = _SAMPLE_FRAMES,
    pixels_per_frame: int = _SAMPLE_PIXELS,
    percentiles: tuple[float, float] = _PERCENTILES,
) -> tuple[float, float]:
    """Robust display range from a bounded sample of frames spread over the stack.

    Reads at most ``max_frames`` frames through ``read`` and keeps a strided subset of
    about ``pixels_per_frame`` pixels of each, so the cost does not grow with the stack.
    Falls back to the sample's min/max when the percentiles coincide (sparse bright
    spots on a flat background) and to ``(v, v + 1)`` for a constant stack, so the
    mapping never divides by zero.
    """
    count = min(num_frames, max_frames)
    indices = np.unique(np.linspace(0, num_frames - 1, count).round().astype(int))
    samples = []
    for index in indices:
        frame = np.asarray(read(int(index)))
        height, width = frame.shape[:2]
        step = max(1, int(np.sqrt(height * width / pixels_per_frame)))
        sample = np.asarray(frame[::step, ::step], dtype=np.float64).ravel()
        samples.append(sample[np.isfinite(sample)])
    values = np.concatenate(samples) if samples else np.empty(0)
    if values.size == 0:  # all NaN / inf
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, percentiles))
    if not hi > lo:
        lo, hi = float(values.min()), float(values.max())
    if not hi > lo:
        hi = lo + 1.0
    return lo, hi


class FrameSource:
    """Reads frames of a (T, H, W[, C]) array-like lazily and prepares them for the model.

    ``frames`` may be numpy, dask, zarr, a memory-mapped array or any object with
    ``shape``, ``dtype`` and ``__getitem__``; a 2D image (or one RGB image) is a
    one-frame video. ``rgb=None`` treats a last axis of 3 or 4 as colour (4 = RGBA,
    alpha dropped); pass ``rgb=False`` for a gray stack whose last axis is 3 or 4 long.

    ``contrast_limits`` only matter for non-uint8 data (default: robust percentiles,
    estimated on first use). For uint8 data they are ``None`` and the reference
    normalization is used; explicit limits on uint8 data switch to the linear mapping.

    With ``prefetch`` a single background thread prepares the next frame in the walking
    direction; at most two prepared, not yet requested frames are held, and a frame is
    handed over (not kept) once served, so the caller owns what it receives. Call :meth:`close` (or use the
    source as a context manager) to stop the thread; reading still works afterwards,
    just without read-ahead.
    """

    def __init__(
        self,
        frames: Any,
        image_size: int = 1024,
        contrast_limits: tuple[float, float] | None = None,
        rgb: bool | None = None,
        prefetch: bool = True,
    ) -> None:
        if not (hasattr(frames, "shape") and hasattr(frames, "dtype") and hasattr(frames, "__getitem__")):
            frames = np.asarray(frames)  # lists and other in-memory sequences
        self._frames = frames
        self.image_size = int(image_size)
        if self.image_size <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.dtype = np.dtype(frames.dtype)
        self._kind = _kind_of(self.dtype)
        (self.num_frames, self.height, self.width, self._channels, self._single) = self._parse_shape(
            tuple(int(s) for s in frames.shape), rgb
        )
        self.rgb = self._channels > 1

        self._limits_lock = threading.Lock()
        self._contrast_limits: tuple[float, float] | None = None
        self._use_reference_uint8 = self._kind == "uint8"
        if contrast_limits is not None:
            lo, hi = self._check_limits(contrast_limits)
            self._contrast_limits = (lo, hi)
            if self._kind == "uint8" and (lo, hi) != (0.0, 255.0):
                self._use_reference_uint8 = False

        # read-ahead state: a tiny LRU of prepared frames plus at most one pending read
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()  # array-likes (h5py, decoders) may not be thread-safe
        self._cache: OrderedDict[tuple[str, int], Any] = OrderedDict()
        self._pending: dict[tuple[str, int], Future] = {}
        self._last_index: int | None = None
        self._executor: ThreadPoolExecutor | None = None
        if prefetch and self.num_frames > 1:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sam2-frames")
            self._finalizer = weakref.finalize(self, _shutdown, self._executor)
        else:
            self._finalizer = None

    # ----------------------------------------------------------------- shape & limits
    @staticmethod
    def _parse_shape(shape: tuple[int, ...], rgb: bool | None) -> tuple[int, int, int, int, bool]:
        """(T, H, W, channels, single image) from the array shape, with clear errors."""
        ndim = len(shape)
        if ndim < 2 or ndim > 4:
            raise ValueError(
                f"frames must have shape (T, H, W), (T, H, W, 3), (H, W) or (H, W, 3); got {ndim}D shape {shape}"
            )
        last = shape[-1]
        if rgb is None:
            # a trailing 3/4 is a colour axis: as a width it would be below MIN_FRAME_SIZE anyway
            rgb = ndim > 2 and last in (3, 4)
        if rgb:
            if ndim == 2:
                raise ValueError(f"rgb=True needs a trailing colour axis; got shape {shape}")
            if last not in (3, 4):
                raise ValueError(f"the colour axis must have 3 (RGB) or 4 (RGBA) entries; got shape {shape}")
            spatial = shape[:-1]
        else:
            if ndim == 4:
                raise ValueError(
                    f"4D frames must be (T, H, W, 3) or (T, H, W, 4); got shape {shape}. "
                    "Select one time or z axis before segmenting."
                )
            spatial = shape
        single = len(spatial) == 2
        num_frames = 1 if single else spatial[0]
        height, width = spatial[-2:]
        if num_frames == 0 or height == 0 or width == 0:
            raise ValueError(f"frames are empty: shape {shape}")
        if min(height, width) < MIN_FRAME_SIZE:
            raise ValueError(
                f"frames of {height} x {width} pixels are too small; each side needs at least "
                f"{MIN_FRAME_SIZE} pixels (shape {shape})"
            )
        return num_frames, height, width, (3 if rgb else 1), single

    @staticmethod
    def _check_limits(limits: Any) -> tuple[float, float]:
        try:
            lo, hi = (float(v) for v in limits)
        except (TypeError, ValueError):
            raise ValueError(f"contrast_limits must be a pair (low, high); got {limits!r}") from None
        if not (np.isfinite(lo) and np.isfinite(hi)) or not hi > lo:
            raise ValueError(f"contrast_limits need finite low < high; got ({lo}, {hi})")
        return lo, hi

    @property
    def shape(self) -> tuple[int, ...]:
        """(T, H, W) or (T, H, W, 3) as served by :meth:`raw` (alpha dropped)."""
        base = (self.num_frames, self.height, self.width)
        return base + ((3,) if self.rgb else ())

    @property
    def contrast_limits(self) -> tuple[float, float] | None:
        """(low, high) mapped to [0, 1]; ``None`` for uint8 frames normalized like the reference.

        Estimated once, on first access, from a bounded sample of frames.
        """
        if self._use_reference_uint8:
            return self._contrast_limits
        with self._limits_lock:
            if self._contrast_limits is None:
                self._contrast_limits = estimate_contrast_limits(self._read, self.num_frames)
            return self._contrast_limits

    def __len__(self) -> int:
        return self.num_frames

    def __repr__(self) -> str:
        return (
            f"FrameSource(shape={self.shape}, dtype={self.dtype}, image_size={self.image_size}, "
            f"contrast_limits={self._contrast_limits})"
        )

    # ----------------------------------------------------------------- reading
    def _check_index(self, index: int) -> int:
        index = operator.index(index)
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame index {index} out of range for {self.num_frames} frames")
        return index

    def _read(self, index: int) -> np.ndarray:
        """One frame from the underlying array, validated, alpha dropped."""
        with self._read_lock:
            data = self._frames if self._single else self._frames[index]
            frame = np.asarray(data)
        expected = (self.height, self.width) + ((self._channels_in,) if self.rgb else ())
        if frame.shape != expected:
            raise ValueError(f"frame {index} has shape {frame.shape}, expected {expected}")
        if self.rgb and frame.shape[-1] == 4:
            frame = frame[..., :3]
        return frame

    @property
    def _channels_in(self) -> int:
        return int(self._frames.shape[-1])

    def raw(self, index: int) -> np.ndarray:
        """The original frame, (H, W) or (H, W, 3), in its own dtype."""
        return self._get("raw", self._check_index(index))

    def model_input(self, index: int) -> torch.Tensor:
        """The frame as the model sees it: (3, S, S) float32, resized and normalized."""
        return self._get("input", self._check_index(index))

    def _prepare(self, kind: str, index: int) -> Any:
        frame = self._read(index)
        return frame if kind == "raw" else self._normalize(frame)

    # ----------------------------------------------------------------- normalization
    def _normalize(self, frame: np.ndarray) -> torch.Tensor:
        limits = None if self._use_reference_uint8 else self.contrast_limits
        return normalize_frame(frame, self.image_size, limits)

    @staticmethod
    def _scale(frame: np.ndarray, lo: float, hi: float) -> np.ndarray:
        return scale_to_unit(frame, lo, hi)

    # ----------------------------------------------------------------- cache & read-ahead
    def _get(self, kind: str, index: int) -> Any:
        key = (kind, index)
        with self._lock:
            value = self._cache.pop(key, None)  # served read-ahead is handed over, not kept
            future = self._pending.get(key) if value is None else None
            previous, self._last_index = self._last_index, index
        if value is None and future is not None:
            try:
                value = future.result()  # the read-ahead is already on it: wait, do not read twice
            except CancelledError:
                value = None
            with self._lock:
                self._cache.pop(key, None)
        if value is None:
            value = self._prepare(kind, index)
        step = -1 if previous is not None and index < previous else 1
        self._schedule(kind, index + step)
        return value

    def _store(self, key: tuple[str, int], value: Any) -> None:
        with self._lock:
            if self._executor is None:  # closed meanwhile
                return
            self._cache[key] = value
            while len(self._cache) > _CACHE_ENTRIES:
                self._cache.popitem(last=False)

    def _schedule(self, kind: str, index: int) -> None:
        executor = self._executor
        if executor is None or not 0 <= index < self.num_frames:
            return
        key = (kind, index)
        with self._lock:
            if key in self._cache or self._pending:  # at most one read in flight
                return
            try:
                future = executor.submit(self._prefetch, key)
            except RuntimeError:  # shut down concurrently
                return
            self._pending[key] = future

    def _prefetch(self, key: tuple[str, int]) -> Any:
        try:
            value = self._prepare(*key)
            self._store(key, value)
            return value
        finally:
            with self._lock:
                self._pending.pop(key, None)

    def _join_prefetch(self, timeout: float | None = None) -> None:
        """Wait for the read-ahead in flight, if any (for tests and orderly shutdown)."""
        with self._lock:
            futures = list(self._pending.values())
        for future in futures:
            try:
                future.result(timeout)
            except Exception:  # a failed read-ahead is retried (and raised) by the next request
                pass

    def close(self) -> None:
        """Stop the read-ahead thread and drop cached frames. Reading keeps working, synchronously."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        if self._finalizer is not None:
            self._finalizer.detach()
        with self._lock:
            self._cache.clear()
            self._pending.clear()

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def normalize_frame(
    frame: np.ndarray, image_size: int, contrast_limits: tuple[float, float] | None
) -> torch.Tensor:
    """One raw frame (H, W) or (H, W, 3) -> normalized model input (3, S, S) float32.

    ``contrast_limits=None`` is the reference uint8 path (Pillow resize, ``/ 255``);
    otherwise ``(low, high)`` is mapped linearly to [0, 1] and resized with antialiased
    bilinear interpolation. Shared by :class:`FrameSource` and training, so a model is
    trained on exactly the pixels it later sees.
    """
    # Element-wise work is done in numpy: single-threaded, so read-ahead does not compete
    # with the model's torch threads; float32 subtract/divide round identically in both.
    size = int(image_size)
    if contrast_limits is None:
        image = Image.fromarray(np.ascontiguousarray(frame))
        if image.mode != "RGB":
            image = image.convert("RGB")  # gray -> three equal channels, like the reference
        if image.size != (size, size):
            image = image.resize((size, size))  # Pillow's default filter, as the reference
        scaled = (np.asarray(image) / 255.0).astype(np.float32)  # float64, then float32: the reference's order
        chw = scaled.transpose(2, 0, 1)
    else:
        lo, hi = contrast_limits
        chw = scale_to_unit(frame, lo, hi)
        if chw.shape[-2:] != (size, size):
            resized = F.interpolate(
                torch.from_numpy(chw)[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True
            )
            chw = resized[0].numpy()
        if chw.shape[0] == 1:
            chw = np.broadcast_to(chw, (3, size, size))
    out = np.subtract(chw, _MEAN, order="C")
    out /= _STD
    return torch.from_numpy(out)


def scale_to_unit(frame: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Linear map of (lo, hi) to [0, 1], clipped, as a (C, H, W) float32 array."""
    # float32 is exact for 16-bit integers; wider types are shifted in float64 first
    if frame.dtype.itemsize <= 2 or frame.dtype == np.float32:
        data = frame.astype(np.float32)
        data -= np.float32(lo)
        data *= np.float32(1.0 / (hi - lo))
    else:
        shifted = frame.astype(np.float64) - lo
        shifted *= 1.0 / (hi - lo)
        data = shifted.astype(np.float32)
    np.clip(data, 0.0, 1.0, out=data)
    if frame.dtype.kind == "f":
        np.nan_to_num(data, copy=False, nan=0.0)  # clipping keeps NaN; infinities are already clipped
    return data[None] if data.ndim == 2 else np.ascontiguousarray(data.transpose(2, 0, 1))


def _shutdown(executor: ThreadPoolExecutor) -> None:
    executor.shutdown(wait=False, cancel_futures=True)
