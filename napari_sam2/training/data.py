"""Where masklets come from: an image stack with its labels, a CTC folder, or a generator.

A *video* is an image stack (T, H, W) or (T, H, W, 3) plus a labels stack (T, H, W)
whose positive values are object ids that persist through time (a masklet per id).
Stacks are any array-like (numpy, dask, zarr, memory maps, the project's lazy
readers) and are read one frame at a time, only when a clip needs it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..model.frames import MIN_FRAME_SIZE, estimate_contrast_limits
from .errors import TrainingError

__all__ = [
    "Video",
    "TrainingData",
    "VideoData",
    "SyntheticData",
    "from_arrays",
    "from_files",
    "from_ctc",
    "from_generator",
]


def _array_like(data: Any) -> Any:
    if hasattr(data, "shape") and hasattr(data, "dtype") and hasattr(data, "__getitem__"):
        return data
    return np.asarray(data)


@dataclass
class Video:
    """One image stack with its masklets; frames are read lazily.

    ``contrast_limits``: ``None`` for uint8 (normalised like the reference predictor)
    or ``(low, high)`` for other types, estimated as inference estimates them.
    ``objects``: the object ids present on each frame (scanned once).
    """

    image: Any
    labels: Any
    name: str = "video"
    contrast_limits: tuple[float, float] | None = None
    objects: list[np.ndarray] = field(default_factory=list)
    seg_truth: Any = None  # CTC: raw SEG masks by frame, for the SEG measure
    annotated: np.ndarray | None = None  # (T,) bool: frames whose labels are complete truth

    @property
    def num_frames(self) -> int:
        return len(self.objects)

    @property
    def rgb(self) -> bool:
        return len(self.image.shape) == 4

    def frame(self, t: int) -> np.ndarray:
        frame = np.asarray(self.image[t])
        return frame[..., :3] if frame.ndim == 3 else frame

    def label_frame(self, t: int) -> np.ndarray:
        return np.asarray(self.labels[t])

    @property
    def is_uint8(self) -> bool:
        return np.dtype(self.image.dtype) == np.uint8

    def is_annotated(self) -> np.ndarray:
        """(T,) bool: frames that may be used (all unless restricted)."""
        if self.annotated is None:
            return np.ones(self.num_frames, dtype=bool)
        return self.annotated

    def frames_with_objects(self) -> np.ndarray:
        ok = self.is_annotated()
        return np.array([t for t, ids in enumerate(self.objects) if ids.size and ok[t]], dtype=np.int64)


def make_video(
    image: Any,
    labels: Any,
    name: str = "video",
    contrast_limits: tuple[float, float] | None = None,
    require_objects: bool = True,
    frames: Sequence[int] | None = None,
) -> Video:
    """Check an image/labels pair and index the objects of each frame.

    ``frames``: only these frames hold trusted labels (e.g. the ones a user painted or
    corrected); clips are cut from runs of them only. Default: every frame.
    """
    image, labels = _array_like(image), _array_like(labels)
    ishape, lshape = tuple(int(s) for s in image.shape), tuple(int(s) for s in labels.shape)
    if len(lshape) == 2:  # a single annotated image
        if len(ishape) == 2 or (len(ishape) == 3 and ishape[-1] in (3, 4)):
            image, labels = image[None], labels[None]
            ishape, lshape = (1,) + ishape, (1,) + lshape
    if len(lshape) != 3:
        raise TrainingError(f"{name}: labels must have shape (T, H, W) or (H, W); got shape {lshape}")
    rgb = len(ishape) == 4 and ishape[-1] in (3, 4)
    spatial = ishape[:-1] if rgb else ishape
    if spatial != lshape:
        raise TrainingError(
            f"{name}: the labels have shape {lshape} but the image has {'RGB ' if rgb else ''}shape {ishape}; "
            "they must cover the same frames and pixels"
        )
    if len(spatial) != 3:
        raise TrainingError(f"{name}: images must be (T, H, W) or (T, H, W, 3) stacks; got shape {ishape}")
    if min(spatial[1:]) < MIN_FRAME_SIZE:
        raise TrainingError(f"{name}: frames of {spatial[1]} x {spatial[2]} pixels are too small to train on")
    idtype, ldtype = np.dtype(image.dtype), np.dtype(labels.dtype)
    if idtype.kind not in "uif":
        raise TrainingError(f"{name}: unsupported image dtype {idtype}; expected integers or floats")
    if ldtype != bool and ldtype.kind not in "ui":
        raise TrainingError(f"{name}: labels must be integers (object ids), got dtype {ldtype}")
    objects = []
    for t in range(lshape[0]):
        frame = np.asarray(labels[t])
        if frame.dtype.kind == "i" and frame.size and frame.min() < 0:
            raise TrainingError(f"{name}: labels must not be negative; frame {t} has {frame.min()}")
        ids = np.unique(frame)
        objects.append(ids[ids != 0].astype(np.int64))
    annotated = None
    if frames is not None:
        annotated = np.zeros(lshape[0], dtype=bool)
        for t in frames:
            if not 0 <= int(t) < lshape[0]:
                raise TrainingError(f"{name}: frame {t} is out of range; the stack has {lshape[0]} frames")
            annotated[int(t)] = True
    if require_objects and not any(ids.size for t, ids in enumerate(objects) if annotated is None or annotated[t]):
        where = "on the chosen frames" if annotated is not None else "(every pixel is 0)"
        raise TrainingError(f"{name}: the labels contain no objects {where}; paint or load masks first")
    if contrast_limits is None and idtype != np.uint8:
        contrast_limits = estimate_contrast_limits(lambda t: np.asarray(image[t]), lshape[0])
    elif contrast_limits is not None:
        lo, hi = (float(v) for v in contrast_limits)
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise TrainingError(f"{name}: contrast limits need finite low < high; got ({lo}, {hi})")
        contrast_limits = (lo, hi)
    return Video(image, labels, name, contrast_limits, objects, annotated=annotated)


class TrainingData:
    """A source of videos to cut clips from; :meth:`draw` picks one for a clip."""

    def draw(self, rng: np.random.Generator) -> Video:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError


class VideoData(TrainingData):
    """Fixed videos; a clip's video is drawn in proportion to its annotated frames."""

    def __init__(self, videos: Sequence[Video]) -> None:
        self.videos = [v for v in videos if v.frames_with_objects().size]
        if not self.videos:
            raise TrainingError("none of the videos has any labelled object")
        weights = np.array([v.frames_with_objects().size for v in self.videos], dtype=np.float64)
        self._weights = weights / weights.sum()

    def draw(self, rng: np.random.Generator) -> Video:
        return self.videos[int(rng.choice(len(self.videos), p=self._weights))]

    def describe(self) -> str:
        frames = sum(v.num_frames for v in self.videos)
        ids = len({(i, int(o)) for i, v in enumerate(self.videos) for ids in v.objects for o in ids})
        return f"{len(self.videos)} video(s), {frames} frames, {ids} masklets"


class SyntheticData(TrainingData):
    """Videos made on demand by ``generator(seed)``; each draw makes a new one.

    The generator returns anything with ``image`` and ``labels`` (e.g. the sample
    data's ``SyntheticClip``). Seeds are drawn from ``seeds`` (default: any), so
    held-out evaluation can use a disjoint set.
    """

    def __init__(self, generator: Callable[[int], Any], seeds: Sequence[int] | None = None, name: str = "synthetic") -> None:
        if not callable(generator):
            raise TrainingError("a synthetic source needs a callable seed -> clip")
        self.generator = generator
        self.seeds = None if seeds is None else list(seeds)
        if self.seeds is not None and not self.seeds:
            raise TrainingError("a synthetic source needs at least one seed")
        self.name = name

    def make(self, seed: int) -> Video:
        clip = self.generator(int(seed))
        try:
            image, labels = clip.image, clip.labels
        except AttributeError:
            raise TrainingError(f"{self.name}: the generator must return an object with image and labels") from None
        return make_video(image, labels, name=f"{self.name}[{seed}]", require_objects=False)

    def draw(self, rng: np.random.Generator) -> Video:
        for _ in range(20):
            seed = int(rng.choice(self.seeds)) if self.seeds is not None else int(rng.integers(0, 2**31 - 1))
            video = self.make(seed)
            if video.frames_with_objects().size:
                return video
        raise TrainingError(f"{self.name}: the generator made 20 clips in a row without any object")

    def describe(self) -> str:
        count = "unlimited" if self.seeds is None else str(len(self.seeds))
        return f"synthetic clips from {getattr(self.generator, '__name__', 'a generator')} ({count} seeds)"


def from_arrays(
    image: Any,
    labels: Any,
    contrast_limits: tuple[float, float] | None = None,
    name: str = "image",
    frames: Sequence[int] | None = None,
) -> VideoData:
    """Training data from in-memory or lazy arrays (e.g. napari image and labels layers).

    ``frames``: the frames whose labels are trusted (painted or corrected by the user);
    clips use only runs of these frames. Default: all frames.
    """
    return VideoData([make_video(image, labels, name, contrast_limits, frames=frames)])


def _open(path: str | os.PathLike, what: str) -> Any:
    from ..io.readers import open_stack

    try:
        array, meta = open_stack(path)
    except (FileNotFoundError, ValueError) as err:
        raise TrainingError(f"cannot read the {what} {path}: {err}") from None
    axis = meta.get("frame_axis")
    if axis not in (None, 0):
        if meta.get("rgb") and axis != 0:
            raise TrainingError(f"{path}: the time axis must come first (axes {meta.get('axes')})")
        try:
            array = np.moveaxis(array, axis, 0)  # numpy and dask views, nothing is read
        except Exception:
            raise TrainingError(f"{path}: the time/z axis must come first (axes {meta.get('axes')})") from None
    return array


def from_files(
    images: str | os.PathLike | Sequence[str | os.PathLike],
    labels: str | os.PathLike | Sequence[str | os.PathLike],
    contrast_limits: tuple[float, float] | None = None,
) -> VideoData:
    """Training data from image stacks and label stacks on disk (pairs in order)."""
    image_paths = [images] if isinstance(images, (str, os.PathLike)) else list(images)
    label_paths = [labels] if isinstance(labels, (str, os.PathLike)) else list(labels)
    if len(image_paths) != len(label_paths):
        raise TrainingError(f"{len(image_paths)} image stacks but {len(label_paths)} label stacks; give them in pairs")
    videos = []
    for ipath, lpath in zip(image_paths, label_paths):
        image = _open(ipath, "image stack")
        lab = _open(lpath, "labels")
        videos.append(make_video(image, lab, Path(ipath).name, contrast_limits))
    return VideoData(videos)


def _ctc_frames(folder: Path, pattern: str) -> dict[int, Path]:
    import re

    regex = re.compile(pattern)
    found = {}
    for p in folder.iterdir():
        m = regex.match(p.name)
        if m:
            found[int(m.group(1))] = p
    return found


class _CTCLabels:
    """CTC ground truth as one lazy (T, H, W) labels stack with track ids.

    A frame with a SEG mask uses its full segmentation, each object taking the TRA id it
    overlaps most; other frames use the TRA masks.
    """

    def __init__(self, tra: dict[int, Path], seg: dict[int, Path], num_frames: int, shape: tuple[int, int]) -> None:
        self.tra, self.seg = tra, seg
        self.shape = (num_frames,) + shape
        self.dtype = np.dtype(np.uint32)
        self.ndim = 3

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, t: int) -> np.ndarray:
        import tifffile

        if not isinstance(t, (int, np.integer)):
            raise TypeError("CTC labels are read one frame at a time")
        tra = self.tra.get(int(t))
        tra_frame = tifffile.imread(tra).astype(np.uint32) if tra is not None else np.zeros(self.shape[1:], np.uint32)
        seg = self.seg.get(int(t))
        if seg is None:
            return tra_frame
        seg_frame = tifffile.imread(seg)
        out = np.zeros(self.shape[1:], np.uint32)
        for sid in np.unique(seg_frame):
            if sid == 0:
                continue
            region = seg_frame == sid
            ids, counts = np.unique(tra_frame[region], return_counts=True)
            keep = ids != 0
            if keep.any():
                out[region] = ids[keep][np.argmax(counts[keep])]
        return out


def from_ctc(folder: str | os.PathLike, sequence: str | None = None) -> VideoData:
    """Training data from a Cell Tracking Challenge dataset folder.

    ``folder`` holds ``NN/tTTT.tif`` images and ``NN_GT/TRA/man_trackTTT.tif`` (plus
    optional ``NN_GT/SEG/man_segTTT.tif``); ``sequence`` picks one ``NN`` (default all).
    """
    from ..io.folder import read_folder

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise TrainingError(f"no such CTC dataset folder: {root}")
    names = [sequence] if sequence else sorted(p.name for p in root.iterdir() if p.is_dir() and (root / f"{p.name}_GT").is_dir())
    if not names:
        raise TrainingError(f"{root} holds no CTC sequence (NN next to NN_GT/TRA)")
    videos = []
    for name in names:
        images_dir, gt = root / name, root / f"{name}_GT"
        tra = _ctc_frames(gt / "TRA", r"^man_track(\d+)\.tif$") if (gt / "TRA").is_dir() else {}
        seg = _ctc_frames(gt / "SEG", r"^man_seg(\d+)\.tif$") if (gt / "SEG").is_dir() else {}
        if not tra:
            raise TrainingError(f"{gt / 'TRA'} holds no man_trackTTT.tif masks")
        try:
            image, _meta = read_folder(images_dir)
        except (FileNotFoundError, ValueError) as err:
            raise TrainingError(f"cannot read the CTC images in {images_dir}: {err}") from None
        num = int(image.shape[0])
        labels = _CTCLabels(tra, seg, num, tuple(int(s) for s in image.shape[1:3]))
        video = make_video(image, labels, name=f"{root.name}/{name}")
        video.seg_truth = seg
        videos.append(video)
    return VideoData(videos)


def from_generator(
    generator: Callable[[int], Any], seeds: Sequence[int] | None = None, name: str | None = None
) -> SyntheticData:
    """Training data from a synthetic generator ``seed -> clip`` (image + labels)."""
    return SyntheticData(generator, seeds, name or getattr(generator, "__name__", "synthetic"))
