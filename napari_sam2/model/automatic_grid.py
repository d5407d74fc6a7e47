"""Where automatic mask generation looks: point grids and crop boxes.

SAM 2's automatic mode prompts the model with a regular grid of single clicks over the
image and, optionally, over overlapping crops (layer ``i`` has ``2**i`` crops per side)
so that small objects get more pixels. The numbers here follow the reference
generator's conventions exactly, so that the same settings give the same prompts.
Boxes are ``(x0, y0, x1, y1)`` with exclusive ends, points ``(x, y)``.
"""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import torch
from torch import Tensor

__all__ = ["point_grid", "layer_point_grids", "crop_boxes", "near_crop_edge"]

EDGE_TOLERANCE = 20.0  # pixels: a mask this close to a crop's cut is cut off by it


def point_grid(points_per_side: int) -> np.ndarray:
    """``(n * n, 2)`` float64 ``(x, y)`` points in [0, 1], cell centres, x fastest."""
    n = int(points_per_side)
    if n < 1:
        raise ValueError(f"points_per_side must be at least 1, got {points_per_side}")
    half_step = 1 / (2 * n)
    centres = np.linspace(half_step, 1 - half_step, n)
    xs, ys = np.meshgrid(centres, centres, indexing="xy")
    return np.stack((xs, ys), axis=-1).reshape(-1, 2)


def layer_point_grids(points_per_side: int, crop_n_layers: int, downscale: int) -> list[np.ndarray]:
    """One grid per crop layer; layer ``i`` has ``points_per_side / downscale**i`` per side."""
    grids = []
    for layer in range(crop_n_layers + 1):
        n = int(points_per_side / (downscale**layer))
        if n < 1:
            raise ValueError(
                f"crop layer {layer} would have no points: {points_per_side} points per side "
                f"divided by {downscale}**{layer}; lower crop_n_layers or the downscale factor"
            )
        grids.append(point_grid(n))
    return grids


def crop_boxes(height: int, width: int, crop_n_layers: int, overlap_ratio: float) -> list[tuple[tuple[int, int, int, int], int]]:
    """``[(box, layer), ...]``: the whole image (layer 0), then each layer's crops.

    Crops of layer ``i`` (``2**i`` per side) overlap by ``overlap_ratio`` of the short
    side, scaled down with the number of crops.
    """
    out: list[tuple[tuple[int, int, int, int], int]] = [((0, 0, width, height), 0)]
    short_side = min(height, width)
    for layer in range(1, crop_n_layers + 1):
        per_side = 2**layer
        overlap = int(overlap_ratio * short_side * (2 / per_side))
        crop_w = int(math.ceil((overlap * (per_side - 1) + width) / per_side))
        crop_h = int(math.ceil((overlap * (per_side - 1) + height) / per_side))
        x_starts = [int((crop_w - overlap) * i) for i in range(per_side)]
        y_starts = [int((crop_h - overlap) * i) for i in range(per_side)]
        for x0, y0 in product(x_starts, y_starts):
            out.append(((x0, y0, min(x0 + crop_w, width), min(y0 + crop_h, height)), layer))
    return out


def near_crop_edge(boxes: Tensor, crop: tuple[int, int, int, int], image: tuple[int, int, int, int]) -> Tensor:
    """``(N,)`` bool: a box (in crop pixels) touches a cut of the crop.

    A side within :data:`EDGE_TOLERANCE` of the crop's border counts unless that border
    is also the image's own (the object may really end there).
    """
    x0, y0 = crop[0], crop[1]
    shifted = (boxes + torch.tensor([[x0, y0, x0, y0]], device=boxes.device)).float()
    crop_t = torch.tensor(crop, dtype=torch.float32, device=boxes.device)[None]
    image_t = torch.tensor(image, dtype=torch.float32, device=boxes.device)[None]
    at_cut = (shifted - crop_t).abs() <= EDGE_TOLERANCE
    at_image_edge = (shifted - image_t).abs() <= EDGE_TOLERANCE
    return (at_cut & ~at_image_edge).any(dim=1)
