"""Clip sampler: a few frames and up to a few objects, as the model sees them, augmented.

Frames go through :func:`~napari_sam2.model.frames.normalize_frame`, the very function
inference uses, so training and inference see identical pixels (uint8 like the
reference predictor, 16-bit and float through contrast limits). Masks are resized as
mask prompts are at inference (antialiased bilinear, threshold 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..model.frames import IMG_MEAN, IMG_STD, normalize_frame
from .data import TrainingData, Video
from .errors import TrainingError

__all__ = ["Clip", "ClipSampler", "ClipSettings"]

_MEAN = torch.tensor(IMG_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(IMG_STD).view(1, 3, 1, 1)


@dataclass(frozen=True)
class ClipSettings:
    """How clips are cut and augmented (SAM 2's video training defaults)."""

    num_frames: int = 8
    max_objects: int = 3
    prob_reverse: float = 0.5
    flips: bool = True
    rotations: bool = True
    intensity: bool = True
    min_area: int = 4  # pixels at model resolution on the first frame


@dataclass
class Clip:
    """Model-ready clip: ``frames`` (T, 3, S, S) normalised, ``masks`` (T, B, S, S) bool."""

    frames: torch.Tensor
    masks: torch.Tensor
    obj_ids: list[int]
    source: str
    frame_indices: list[int]

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def num_objects(self) -> int:
        return int(self.masks.shape[1])


def resize_masks(masks: np.ndarray, size: int) -> torch.Tensor:
    """(B, H, W) bool -> (B, S, S) bool, as the engine resizes a mask prompt."""
    t = torch.from_numpy(np.ascontiguousarray(masks)).float()[None]
    if tuple(t.shape[-2:]) != (size, size):
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return t[0] >= 0.5


class ClipSampler:
    """Draws training clips from :class:`~.data.TrainingData` with a given RNG."""

    def __init__(self, data: TrainingData, image_size: int, settings: ClipSettings | None = None) -> None:
        self.data = data
        self.image_size = int(image_size)
        self.settings = settings or ClipSettings()
        if self.settings.num_frames < 1 or self.settings.max_objects < 1:
            raise TrainingError("clips need at least one frame and one object")

    def sample(self, rng: np.random.Generator) -> Clip:
        for _ in range(50):
            clip = self._try_sample(rng)
            if clip is not None:
                return clip
        raise TrainingError(
            "could not cut a clip with a visible object in 50 tries; objects may be too small "
            f"to see at the model's {self.image_size} px input"
        )

    # ------------------------------------------------------------------ cutting
    def _choose_frames(self, video: Video, rng: np.random.Generator) -> list[int]:
        """Frame indices in processing order; the first one shows at least one object.

        Clips lie inside runs of usable frames; a run shorter than the clip length gives
        a shorter clip.
        """
        usable = video.is_annotated()
        has = np.zeros(video.num_frames, dtype=bool)
        has[video.frames_with_objects()] = True
        windows: list[tuple[int, int, bool]] = []  # (start, length, reversed)
        t = 0
        while t < video.num_frames:
            if not usable[t]:
                t += 1
                continue
            end = t
            while end + 1 < video.num_frames and usable[end + 1]:
                end += 1
            length = min(self.settings.num_frames, end - t + 1)
            for start in range(t, end - length + 2):
                if has[start]:
                    windows.append((start, length, False))
                if has[start + length - 1]:
                    windows.append((start, length, True))
            t = end + 1
        want_reverse = rng.random() < self.settings.prob_reverse
        preferred = [w for w in windows if w[2] == want_reverse] or windows
        start, length, reverse = preferred[int(rng.integers(0, len(preferred)))]
        frames = list(range(start, start + length))
        return frames[::-1] if reverse else frames

    def _try_sample(self, rng: np.random.Generator) -> Clip | None:
        video = self.data.draw(rng)
        frames = self._choose_frames(video, rng)
        first_ids = video.objects[frames[0]]
        count = min(self.settings.max_objects, first_ids.size)
        ids = [int(i) for i in rng.choice(first_ids, size=count, replace=False)]
        size = self.image_size
        masks = []
        for t in frames:
            lab = video.label_frame(t)
            masks.append(resize_masks(np.stack([lab == i for i in ids]), size))
        mask_t = torch.stack(masks)  # (T, B, S, S)
        visible = mask_t[0].flatten(1).sum(1) >= self.settings.min_area
        if not bool(visible.any()):
            return None
        keep = [i for i, v in enumerate(visible.tolist()) if v]
        mask_t = mask_t[:, keep]
        ids = [ids[i] for i in keep]
        limits = self._limits(video, rng)
        images = torch.stack([normalize_frame(video.frame(t), size, limits) for t in frames])
        images, mask_t = self._augment(images, mask_t, rng)
        return Clip(images, mask_t, ids, video.name, frames)

    # ------------------------------------------------------------------ augmentation
    def _limits(self, video: Video, rng: np.random.Generator) -> tuple[float, float] | None:
        """Contrast limits for this clip; jittered for 16-bit and float data."""
        limits = video.contrast_limits
        if limits is None or not self.settings.intensity or rng.random() < 0.5:
            return limits
        lo, hi = limits
        span = hi - lo
        new_lo = lo + span * rng.uniform(-0.15, 0.15)
        new_hi = hi + span * rng.uniform(-0.3, 0.3)
        if new_hi - new_lo < 0.2 * span:
            return limits
        return float(new_lo), float(new_hi)

    def _augment(
        self, images: torch.Tensor, masks: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.settings
        if s.flips and rng.random() < 0.5:
            images, masks = images.flip(-1), masks.flip(-1)
        if s.flips and rng.random() < 0.5:
            images, masks = images.flip(-2), masks.flip(-2)
        if s.rotations:
            k = int(rng.integers(0, 4))
            if k:
                images, masks = torch.rot90(images, k, (-2, -1)), torch.rot90(masks, k, (-2, -1))
        if s.intensity and rng.random() < 0.8:
            unit = images * _STD + _MEAN  # back to [0, 1] display values
            gain = float(np.exp(rng.uniform(-0.3, 0.3)))
            offset = float(rng.uniform(-0.1, 0.1))
            gamma = float(np.exp(rng.uniform(-0.3, 0.3)))
            unit = (unit.clamp(0, 1) ** gamma) * gain + offset
            if rng.random() < 0.3:
                unit = 1.0 - unit  # dark objects on a bright background and vice versa
            if rng.random() < 0.3:
                noise = torch.from_numpy(rng.standard_normal(unit.shape, dtype=np.float32))
                unit = unit + noise * float(rng.uniform(0.0, 0.05))
            images = (unit.clamp(0, 1) - _MEAN) / _STD
        return images.contiguous(), masks.contiguous()
