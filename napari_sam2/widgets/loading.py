"""Choosing and loading a model, without Qt: what the Model section of the widget does.

Loading runs on a worker thread; ``progress`` reports download bytes. Every failure a
user can cause (unknown file, wrong variant, no network) surfaces as a
``CheckpointError`` whose message says what to do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = ["ModelSpec", "LoadedModel", "load_model", "available_devices", "guess_variant", "DEFAULT_IMAGE_SIZES"]

DEFAULT_IMAGE_SIZES = (1024, 768, 512, 256)
"""Model input sizes offered in the widget; smaller is faster with the same weights."""

OFFICIAL = "official"


@dataclass(frozen=True)
class ModelSpec:
    """What to load. ``checkpoint``: ``"official"``, a file path, or ``None`` (untrained
    weights, only useful for testing the interface)."""

    name: str
    checkpoint: str | None = OFFICIAL
    device: str | None = None  # None: CUDA, then MPS, then CPU
    image_size: int | None = None  # None: the variant's own (1024)


@dataclass(frozen=True)
class LoadedModel:
    model: Any
    spec: ModelSpec  # what was actually loaded (variant may differ from the request)
    note: str = ""  # something the user should know, e.g. "the file is a ... checkpoint"

    @property
    def description(self) -> str:
        size = self.spec.image_size or 1024
        return f"{self.spec.name} on {self.model.device.type}, {size} px"


def available_devices() -> list[str]:
    """Devices torch can use here, best first."""
    import torch

    devices = []
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    devices.append("cpu")
    return devices


def guess_variant(path: str | os.PathLike, names: list[str]) -> str | None:
    """The official variant named in a checkpoint's file name, if any (longest match)."""
    stem = Path(path).name.lower().replace("-", "_").replace("sam2_1", "sam2.1")
    hits = [n for n in names if n in stem]
    return max(hits, key=len) if hits else None


def load_model(spec: ModelSpec, progress: Callable[[int, int], None] | None = None) -> LoadedModel:
    """Build the model for ``spec``, downloading the official file on first use.

    A local file that belongs to another official variant than the one selected is
    loaded as that variant (with a note) rather than refused.
    """
    from napari_sam2.model import build_sam2
    from napari_sam2.model.checkpoint import CheckpointError, download_checkpoint, read_state_dict
    from napari_sam2.model.sam2 import matching_variants

    if spec.checkpoint is None:
        model = build_sam2(spec.name, checkpoint=None, device=spec.device, image_size=spec.image_size)
        return LoadedModel(model, spec, "untrained weights: for testing only")
    if spec.checkpoint == OFFICIAL:
        path = download_checkpoint(spec.name, progress=progress)
        model = build_sam2(spec.name, checkpoint=path, device=spec.device, image_size=spec.image_size)
        return LoadedModel(model, spec)

    path = Path(spec.checkpoint).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}. Choose an existing .pt file.")
    state = read_state_dict(path)
    fits = matching_variants(state)
    name, note = spec.name, ""
    if not fits:
        raise CheckpointError(
            f"{path.name} is not a SAM 2 or SAM 2.1 checkpoint (its weights match none of the "
            "official variants). Choose an official .pt file, or use 'Official (download)'."
        )
    if name not in fits:
        name = fits[0]
        note = f"{path.name} holds {name} weights, so that model was loaded instead of {spec.name}."
    model = build_sam2(name, checkpoint=None, device=spec.device, image_size=spec.image_size)
    model.load_official_state_dict(state, source=str(path))
    model.eval()
    used = ModelSpec(name, str(path), spec.device, spec.image_size)
    return LoadedModel(model, used, note)
