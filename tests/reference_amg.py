"""The reference ``SAM2AutomaticMaskGenerator`` (``sam2==1.1.0``) as a test oracle.

The reference imports torchvision for three things only: box NMS, box areas and the
image predictor's transforms (to tensor, bilinear resize, normalisation). The CPU-only
torch used here has no matching torchvision wheel, so when torchvision cannot be
imported a small stand-in is registered: a plain greedy NMS written as torchvision's
kernel documents it (float32 IoU, stable descending sort, drop when IoU > threshold) and
the three transforms. Everything else is the reference's own code.

The reference's hole filling needs its compiled CUDA extension; ``scipy_components``
stands in for that kernel (8-connected components with their areas) so that the
``min_mask_region_area`` path can be compared too.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


# ---------------------------------------------------------------- torchvision stand-in
def _naive_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    b = boxes.detach().cpu().float().numpy()
    s = scores.detach().cpu().float().tolist()
    g = groups.detach().cpu().tolist()
    order = sorted(range(len(s)), key=lambda i: -s[i])  # Python's sort is stable
    area = [np.float32((x1 - x0) * (y1 - y0)) for x0, y0, x1, y1 in b]
    dropped = [False] * len(s)
    keep = []
    for pos, i in enumerate(order):
        if dropped[i]:
            continue
        keep.append(i)
        for j in order[pos + 1 :]:
            if dropped[j] or g[j] != g[i]:
                continue
            w = max(np.float32(0), min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0]))
            h = max(np.float32(0), min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1]))
            inter = np.float32(w * h)
            with np.errstate(invalid="ignore", divide="ignore"):
                iou = np.float32(inter / np.float32(np.float32(area[i] + area[j]) - inter))
            if float(iou) > iou_threshold:
                dropped[j] = True
    return torch.tensor(keep, dtype=torch.int64)


def _box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


class _ToTensor:
    def __call__(self, pic: Any) -> torch.Tensor:
        img = torch.from_numpy(np.asarray(pic).transpose((2, 0, 1))).contiguous()
        if img.dtype == torch.uint8:
            return img.to(dtype=torch.get_default_dtype()).div(255)
        return img


class _Resize(nn.Module):
    def __init__(self, size: Any) -> None:
        super().__init__()
        self.size = [int(size[0]), int(size[1])]

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if [img.shape[-2], img.shape[-1]] == self.size:
            return img
        out = F.interpolate(img.unsqueeze(0), size=self.size, mode="bilinear", align_corners=False, antialias=True)
        return out.squeeze(0)


class _Normalize(nn.Module):
    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        return (tensor - mean) / std


def ensure_torchvision() -> str:
    """Use the real torchvision when it imports, else register the stand-in; say which."""
    try:
        import torchvision.ops.boxes  # noqa: F401
        import torchvision.transforms  # noqa: F401

        return "torchvision"
    except Exception:
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
    tv = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    boxes = types.ModuleType("torchvision.ops.boxes")
    transforms = types.ModuleType("torchvision.transforms")
    boxes.batched_nms = _naive_nms
    boxes.box_area = _box_area
    transforms.ToTensor = _ToTensor
    transforms.Resize = _Resize
    transforms.Normalize = _Normalize
    tv.ops, ops.boxes, tv.transforms = ops, boxes, transforms
    sys.modules.update({"torchvision": tv, "torchvision.ops": ops, "torchvision.ops.boxes": boxes,
                        "torchvision.transforms": transforms})
    return "stand-in"


def naive_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """The stand-in's greedy NMS over one group (for unit tests of ours)."""
    return _naive_nms(boxes, scores, torch.zeros(len(boxes), dtype=torch.int64), iou_threshold)


# ---------------------------------------------------------------- CUDA kernel stand-in
def scipy_components(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, H, W) -> labels and per-pixel component areas (0 on background), 8-connected."""
    from scipy import ndimage

    arr = mask.detach().cpu().numpy().astype(bool)
    labels = np.zeros(arr.shape, dtype=np.int32)
    areas = np.zeros(arr.shape, dtype=np.int32)
    for n in range(arr.shape[0]):
        lab, _ = ndimage.label(arr[n, 0], structure=np.ones((3, 3)))
        counts = np.bincount(lab.ravel())
        counts[0] = 0
        labels[n, 0], areas[n, 0] = lab, counts[lab]
    return torch.from_numpy(labels).to(mask.device), torch.from_numpy(areas).to(mask.device)


def reference_generator(model: Any, **settings: Any) -> Any:
    """A ``SAM2AutomaticMaskGenerator`` on ``model`` (any input size)."""
    ensure_torchvision()
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    gen = SAM2AutomaticMaskGenerator(model, **settings)
    # the image predictor hard-codes the feature sizes of a 1024 px input
    side = model.image_size // 4
    gen.predictor._bb_feat_sizes = [(side, side), (side // 2, side // 2), (side // 4, side // 4)]
    return gen
