"""Automatic mask generation: every object of a frame, without a single click.

A grid of single-click prompts covers the frame (and, optionally, overlapping crops of
it for small objects). All clicks of a batch go through the prompt encoder and the mask
decoder together, each giving three candidate masks. Candidates are kept when the
model's predicted IoU and their stability (the IoU of the mask thresholded a little
above and below the cut) are high enough and they do not end at a crop's cut;
duplicates are then removed by box NMS within each crop and across crops.

The behaviour, settings and defaults are those of Meta's ``SAM2AutomaticMaskGenerator``
(``sam2==1.1.0``): the same weights and pixels give the same masks. Two differences of
form: results come in napari's ``(row, col)`` order, and ``min_area`` (0 = off) can drop
small masks at the end. Frames of any dtype go through the engine's frame
normalisation; uint8 frames are prepared as SAM 2's image predictor prepares them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .automatic_grid import crop_boxes, layer_point_grids, near_crop_edge
from .boxes import box_area, masks_to_boxes, nms
from .checkpoint import autocast_dtype
from .frames import MIN_FRAME_SIZE, estimate_contrast_limits, normalize_frame
from .postprocess import connected_components
from .sam2 import Sam2

__all__ = ["AutomaticMaskGenerator", "AutomaticMasks"]

_UPSAMPLE_ELEMENTS = 1 << 24  # float32 logits upsampled at once (64 MB)
_CLEANUP_SCORE = 10.0  # logit given to filled holes (+) and removed specks (-)


@dataclass
class AutomaticMasks:
    """The masks found on one frame, best first (the order NMS kept them in).

    ``masks`` ``(N, H, W)`` bool at the frame's resolution; ``boxes`` ``(N, 4)`` int64
    ``(row0, col0, row1, col1)`` with inclusive ends; ``predicted_iou`` and
    ``stability_score`` ``(N,)`` float32; ``points`` ``(N, 2)`` float32 ``(row, col)``
    of the click that made each mask; ``crop_boxes`` ``(N, 4)`` int64
    ``(row0, col0, row1, col1)`` (exclusive ends) of the crop it was found in.
    """

    masks: np.ndarray
    boxes: np.ndarray
    predicted_iou: np.ndarray
    stability_score: np.ndarray
    points: np.ndarray
    crop_boxes: np.ndarray

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    @property
    def areas(self) -> np.ndarray:
        """``(N,)`` int64 pixel counts."""
        return self.masks.reshape(len(self), -1).sum(axis=1, dtype=np.int64)

    def to_labels(self, dtype: Any = np.int32) -> np.ndarray:
        """One labels image ``(H, W)``: mask ``i`` is label ``i + 1``.

        Larger masks are painted first, so a small object on top of a large one stays
        visible; background is 0.
        """
        labels = np.zeros(self.masks.shape[1:], dtype=dtype)
        for i in np.argsort(-self.areas, kind="stable"):
            labels[self.masks[i]] = i + 1
        return labels


@dataclass
class _Candidates:
    """Masks kept so far in one crop, in crop pixels; masks stored as packed box crops."""

    boxes: list[Tensor]
    ious: list[Tensor]
    stability: list[Tensor]
    points: list[Tensor]
    pieces: list[np.ndarray]  # packed bits of each mask inside its box

    @classmethod
    def empty(cls) -> "_Candidates":
        return cls([], [], [], [], [])

    def cat(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        def join(parts: list[Tensor], shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
            return torch.cat(parts) if parts else torch.zeros(shape, dtype=dtype)

        return (
            join(self.boxes, (0, 4), torch.int64),
            join(self.ious, (0,), torch.float32),
            join(self.stability, (0,), torch.float32),
            join(self.points, (0, 2), torch.float32),
        )


class AutomaticMaskGenerator:
    """Finds all objects of a frame with a :class:`Sam2`; see the module docstring.

    Settings (names and defaults of the reference): ``points_per_side`` clicks per side
    (or explicit ``point_grids``, one ``(n, 2)`` array of ``(x, y)`` in [0, 1] per crop
    layer); ``points_per_batch`` clicks decoded together; ``pred_iou_thresh`` and
    ``stability_score_thresh`` (with ``stability_score_offset``) the quality filters;
    ``mask_threshold`` the logit cut; ``box_nms_thresh`` duplicates within a crop;
    ``crop_n_layers``, ``crop_overlap_ratio``, ``crop_n_points_downscale_factor``,
    ``crop_nms_thresh`` the crops for small objects; ``min_mask_region_area`` fills
    holes and removes specks up to that area in the low-resolution logits;
    ``multimask_output`` three candidates per click. ``min_area`` drops masks of fewer
    pixels at the end. ``precision``: as :class:`~napari_sam2.model.VideoSession`.
    """

    def __init__(
        self,
        model: Sam2,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.8,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        mask_threshold: float = 0.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        multimask_output: bool = True,
        min_area: int = 0,
        precision: str = "auto",
    ) -> None:
        if not isinstance(model, Sam2):
            raise TypeError(f"model must be a Sam2 built with build_sam2, got {type(model).__name__}")
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("give exactly one of points_per_side and point_grids")
        if int(crop_n_layers) < 0:
            raise ValueError(f"crop_n_layers must be >= 0, got {crop_n_layers}")
        if int(crop_n_points_downscale_factor) < 1:
            raise ValueError(f"crop_n_points_downscale_factor must be >= 1, got {crop_n_points_downscale_factor}")
        if points_per_side is not None:
            self.point_grids = layer_point_grids(int(points_per_side), int(crop_n_layers), int(crop_n_points_downscale_factor))
        else:
            self.point_grids = [self._check_grid(g, i) for i, g in enumerate(point_grids or [])]
            if len(self.point_grids) != int(crop_n_layers) + 1:
                raise ValueError(
                    f"point_grids has {len(self.point_grids)} grids; crop_n_layers={crop_n_layers} needs {int(crop_n_layers) + 1}"
                )
        if int(points_per_batch) < 1:
            raise ValueError(f"points_per_batch must be >= 1, got {points_per_batch}")
        for name, value in (
            ("box_nms_thresh", box_nms_thresh),
            ("crop_nms_thresh", crop_nms_thresh),
            ("crop_overlap_ratio", crop_overlap_ratio),
        ):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if stability_score_offset < 0:
            raise ValueError(f"stability_score_offset must be >= 0, got {stability_score_offset}")
        if min_mask_region_area < 0 or min_area < 0:
            raise ValueError("min_mask_region_area and min_area must be >= 0")
        if precision not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"precision must be 'auto', 'float32' or 'bfloat16', got {precision!r}")
        self.model = model
        self.points_per_batch = int(points_per_batch)
        self.pred_iou_thresh = float(pred_iou_thresh)
        self.stability_score_thresh = float(stability_score_thresh)
        self.stability_score_offset = float(stability_score_offset)
        self.mask_threshold = float(mask_threshold)
        self.box_nms_thresh = float(box_nms_thresh)
        self.crop_n_layers = int(crop_n_layers)
        self.crop_nms_thresh = float(crop_nms_thresh)
        self.crop_overlap_ratio = float(crop_overlap_ratio)
        self.min_mask_region_area = int(min_mask_region_area)
        self.multimask_output = bool(multimask_output)
        self.min_area = int(min_area)
        self.precision = precision

    @staticmethod
    def _check_grid(grid: Any, layer: int) -> np.ndarray:
        arr = np.asarray(grid, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) == 0:
            raise ValueError(f"point_grids[{layer}] must be an (n, 2) array of (x, y), got shape {arr.shape}")
        if not np.all((arr >= 0) & (arr <= 1)):
            raise ValueError(f"point_grids[{layer}] must lie in [0, 1] (fractions of the crop)")
        return arr

    # ------------------------------------------------------------------ public
    def generate(self, frame: Any, contrast_limits: tuple[float, float] | None = None) -> AutomaticMasks:
        """All masks of one frame ``(H, W)`` or ``(H, W, 3|4)``, any integer or float dtype.

        ``contrast_limits`` map non-uint8 data to [0, 1] (default: robust percentiles of
        the frame); for uint8 frames the default is the reference's ``/ 255``.
        """
        image = self._check_frame(frame)
        limits = self._limits(image, contrast_limits)
        height, width = image.shape[:2]
        per_crop = []
        with self._inference():
            for box, layer in crop_boxes(height, width, self.crop_n_layers, self.crop_overlap_ratio):
                per_crop.append((box, self._process_crop(image, limits, box, layer, (height, width))))
        return self._merge(per_crop, (height, width))

    # ------------------------------------------------------------------ input
    @staticmethod
    def _check_frame(frame: Any) -> np.ndarray:
        image = np.asarray(frame)
        if image.ndim == 3 and image.shape[-1] == 4:
            image = image[..., :3]  # RGBA: alpha carries no object
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 3)):
            raise ValueError(f"a frame must be (H, W) or (H, W, 3|4), got shape {image.shape}")
        if image.dtype.kind not in "uif":
            raise ValueError(f"unsupported frame dtype {image.dtype}; expected an integer or floating-point type")
        if min(image.shape[:2]) < MIN_FRAME_SIZE:
            raise ValueError(f"frame of {image.shape[0]}x{image.shape[1]} pixels is smaller than {MIN_FRAME_SIZE} per side")
        return image

    @staticmethod
    def _limits(image: np.ndarray, limits: tuple[float, float] | None) -> tuple[float, float] | None:
        if limits is not None:
            lo, hi = (float(v) for v in limits)
            if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
                raise ValueError(f"contrast_limits must be finite with low < high, got {limits}")
            return lo, hi
        if image.dtype == np.uint8:
            return None
        return estimate_contrast_limits(lambda _: image, 1)

    def _model_input(self, image: np.ndarray, limits: tuple[float, float] | None) -> Tensor:
        size = self.model.image_size
        if limits is None:  # uint8 as SAM 2's image predictor: float32 / 255, bilinear resize
            unit = image.astype(np.float32) / np.float32(255.0)
            return normalize_frame(unit, size, (0.0, 1.0))
        return normalize_frame(image, size, limits)

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        device = self.model.device
        if self.precision == "auto":
            dtype = autocast_dtype(device)
        else:
            dtype = torch.bfloat16 if self.precision == "bfloat16" else None
        with torch.inference_mode():
            if dtype is None:
                yield
            else:
                with torch.autocast(device.type, dtype=dtype):
                    yield

    # ------------------------------------------------------------------ one crop
    def _process_crop(
        self,
        image: np.ndarray,
        limits: tuple[float, float] | None,
        crop: tuple[int, int, int, int],
        layer: int,
        frame_size: tuple[int, int],
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, list[np.ndarray]]:
        """Candidates of one crop after the filters and the crop's NMS (crop pixels)."""
        model = self.model
        x0, y0, x1, y1 = crop
        h, w = y1 - y0, x1 - x0
        inp = self._model_input(image[y0:y1, x0:x1], limits).to(model.device)
        feats = model.encode_image(inp.unsqueeze(0))
        embed = feats.vision
        if model.config.directly_add_no_mem_embed:
            embed = embed + model.no_mem_embed.view(1, -1, 1, 1)
        dense_pe = model.sam_prompt_encoder.get_dense_pe()

        # click positions in crop pixels (x, y), then in model-input pixels
        points = torch.as_tensor(self.point_grids[layer] * np.array([[w, h]]), dtype=torch.float32)
        scaled = points.clone()
        scaled[:, 0] = scaled[:, 0] / w
        scaled[:, 1] = scaled[:, 1] / h
        scaled = (scaled * model.image_size).to(model.device)

        found = _Candidates.empty()
        for start in range(0, len(points), self.points_per_batch):
            batch = slice(start, start + self.points_per_batch)
            coords = scaled[batch]
            labels = torch.ones(len(coords), 1, dtype=torch.int32, device=coords.device)
            sparse, dense = model.sam_prompt_encoder(points=(coords[:, None, :], labels), boxes=None, masks=None)
            low, iou, _, _ = model.sam_mask_decoder(
                image_embeddings=embed,
                image_pe=dense_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=self.multimask_output,
                repeat_image=len(coords) > 1,
                high_res_features=feats.high_res,
            )
            per_click = low.shape[1]
            self._filter_batch(
                low.float().flatten(0, 1),
                iou.float().flatten(0, 1),
                points[batch].repeat_interleave(per_click, dim=0),
                crop,
                frame_size,
                found,
            )

        boxes, ious, stability, pts = found.cat()
        keep = nms(boxes.float(), ious, self.box_nms_thresh)
        return boxes[keep], ious[keep], stability[keep], pts[keep], [found.pieces[i] for i in keep.tolist()]

    def _filter_batch(
        self,
        low: Tensor,
        iou: Tensor,
        points: Tensor,
        crop: tuple[int, int, int, int],
        frame_size: tuple[int, int],
        found: _Candidates,
    ) -> None:
        """Quality filters on one batch of candidates; survivors are added to ``found``."""
        if self.pred_iou_thresh > 0.0:
            keep = iou > self.pred_iou_thresh
            low, iou, points = low[keep], iou[keep], points[keep.cpu()]
        if len(low) == 0:
            return
        if self.min_mask_region_area > 0:
            low = self._clean(low)
        h, w = crop[3] - crop[1], crop[2] - crop[0]
        chunk = max(1, _UPSAMPLE_ELEMENTS // (h * w))
        frame_h, frame_w = frame_size
        for start in range(0, len(low), chunk):
            part = slice(start, start + chunk)
            logits = F.interpolate(low[part, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
            stability = _stability(logits, self.mask_threshold, self.stability_score_offset)
            keep = torch.ones_like(stability, dtype=torch.bool)
            if self.stability_score_thresh > 0.0:
                keep = stability >= self.stability_score_thresh
            masks = logits > self.mask_threshold
            boxes = masks_to_boxes(masks)
            keep &= ~near_crop_edge(boxes, crop, (0, 0, frame_w, frame_h))
            if not bool(keep.any()):
                continue
            masks, boxes = masks[keep], boxes[keep]
            found.boxes.append(boxes.cpu())
            found.ious.append(iou[part][keep].cpu())
            found.stability.append(stability[keep].cpu())
            found.points.append(points[part][keep.cpu()])
            found.pieces.extend(_pack(masks.cpu().numpy(), boxes.cpu().numpy()))

    def _clean(self, low: Tensor) -> Tensor:
        """Fill background holes and remove foreground specks up to the region area.

        Both sets of regions come from the logits as predicted; filled holes become
        ``threshold + 10``, removed specks ``threshold - 10``.
        """
        flat = low[:, None]
        area = self.min_mask_region_area
        thr = self.mask_threshold
        labels, areas = connected_components(flat <= thr)
        holes = (labels > 0) & (areas <= area)
        labels, areas = connected_components(flat > thr)
        specks = (labels > 0) & (areas <= area)
        out = torch.where(holes, torch.full_like(flat, thr + _CLEANUP_SCORE), flat)
        out = torch.where(specks, torch.full_like(flat, thr - _CLEANUP_SCORE), out)
        return out[:, 0]

    # ------------------------------------------------------------------ all crops
    def _merge(self, per_crop: list, frame_size: tuple[int, int]) -> AutomaticMasks:
        """Cross-crop NMS (smaller crops preferred), min_area, and the full-size masks."""
        boxes, ious, stability, points, crops, pieces = [], [], [], [], [], []
        for (x0, y0, x1, y1), (b, i, s, p, pcs) in per_crop:
            boxes.append(b + torch.tensor([[x0, y0, x0, y0]]))
            points.append(p + torch.tensor([[x0, y0]], dtype=torch.float32))
            ious.append(i)
            stability.append(s)
            crops.append(torch.tensor([[x0, y0, x1, y1]]).expand(len(b), 4))
            pieces.extend(pcs)
        all_boxes = torch.cat(boxes)
        all_crops = torch.cat(crops)
        order = torch.arange(len(all_boxes))
        if len(per_crop) > 1:
            order = nms(all_boxes.float(), 1 / box_area(all_crops), self.crop_nms_thresh)
        order_list = order.tolist()
        frame_h, frame_w = frame_size
        masks = np.zeros((len(order_list), frame_h, frame_w), dtype=bool)
        for row, idx in enumerate(order_list):
            bx0, by0, bx1, by1 = all_boxes[idx].tolist()
            masks[row, by0 : by1 + 1, bx0 : bx1 + 1] = _unpack(pieces[idx], (by1 - by0 + 1, bx1 - bx0 + 1))
        if self.min_area > 0:
            big = masks.reshape(len(masks), frame_h * frame_w).sum(axis=1) >= self.min_area  # -1 fails with no masks
            masks, order = masks[big], order[torch.from_numpy(big)]
        xyxy = all_boxes[order].numpy()
        crop_xyxy = all_crops[order].numpy()
        return AutomaticMasks(
            masks=masks,
            boxes=xyxy[:, [1, 0, 3, 2]].astype(np.int64),
            predicted_iou=torch.cat(ious)[order].numpy().astype(np.float32),
            stability_score=torch.cat(stability)[order].numpy().astype(np.float32),
            points=torch.cat(points)[order].numpy()[:, ::-1].astype(np.float32),
            crop_boxes=crop_xyxy[:, [1, 0, 3, 2]].astype(np.int64),
        )


def _stability(logits: Tensor, threshold: float, offset: float) -> Tensor:
    """IoU of the mask cut at ``threshold + offset`` with the one cut at ``threshold - offset``.

    The first lies inside the second, so the IoU is a ratio of pixel counts; a mask
    empty at the lower cut scores 0.
    """
    inner = _count(logits > threshold + offset)
    outer = _count(logits > threshold - offset)
    return torch.where(outer > 0, inner / outer.clamp_min(1), torch.zeros((), device=logits.device)).float()


def _count(masks: Tensor) -> Tensor:
    """Pixels per ``(..., H, W)`` bool mask; row sums in int16 are several times faster."""
    row_dtype = torch.int16 if masks.shape[-1] < (1 << 15) else torch.int32
    return masks.view(torch.uint8).sum(-1, dtype=row_dtype).sum(-1, dtype=torch.int32)


def _pack(masks: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
    """Each mask cut to its box ``(x0, y0, x1, y1)`` inclusive and packed to bits."""
    return [np.packbits(m[y0 : y1 + 1, x0 : x1 + 1], axis=None) for m, (x0, y0, x1, y1) in zip(masks, boxes)]


def _unpack(bits: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return np.unpackbits(bits, count=shape[0] * shape[1]).reshape(shape).astype(bool)
