"""Readers and exports: TIFF/OME-TIFF (tifffile), videos (PyAV), image folders, and
label exports (compressed TIFF, Cell Tracking Challenge, COCO RLE, alpha mattes) plus
session prompts as JSON.

Names are imported on first use, so ``import napari_sam2.io`` stays cheap at napari
start-up.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .coco import read_coco_rle, write_coco_rle
    from .ctc import CTCExport, CTCTrack, read_ctc_tracks, validate_ctc, write_ctc
    from .folder import ImageFolder, read_folder, read_image
    from .geff import GeffExport, write_geff
    from .lineage import Lineage, LineageError, Track
    from .labels_tiff import write_labels_tiff
    from .mattes import feather_mask, write_mattes
    from .prompts import PromptedObject, Prompt, PromptError, PromptSet
    from .readers import is_supported, open_stack, supported_formats
    from .rle import decode_mask, encode_labels, encode_mask
    from .tiff import read_tiff
    from .video import VideoFrames, read_video

_LAZY = {
    "open_stack": ".readers",
    "is_supported": ".readers",
    "supported_formats": ".readers",
    "read_tiff": ".tiff",
    "VideoFrames": ".video",
    "read_video": ".video",
    "ImageFolder": ".folder",
    "read_folder": ".folder",
    "read_image": ".folder",
    "write_labels_tiff": ".labels_tiff",
    "write_ctc": ".ctc",
    "write_geff": ".geff",
    "GeffExport": ".geff",
    "read_ctc_tracks": ".ctc",
    "validate_ctc": ".ctc",
    "CTCTrack": ".ctc",
    "CTCExport": ".ctc",
    "write_coco_rle": ".coco",
    "read_coco_rle": ".coco",
    "encode_mask": ".rle",
    "decode_mask": ".rle",
    "encode_labels": ".rle",
    "write_mattes": ".mattes",
    "feather_mask": ".mattes",
    "Lineage": ".lineage",
    "LineageError": ".lineage",
    "Track": ".lineage",
    "PromptSet": ".prompts",
    "PromptedObject": ".prompts",
    "Prompt": ".prompts",
    "PromptError": ".prompts",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
