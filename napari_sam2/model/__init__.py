"""The SAM 2 engine: torch and numpy only, never napari or Qt.

``build_sam2`` and ``VideoSession`` are the public entry points (see the design notes);
they are imported on first use so that ``import napari_sam2.model`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import MODEL_NAMES, Sam2Config, get_config

if TYPE_CHECKING:  # pragma: no cover
    from .automatic import AutomaticMaskGenerator, AutomaticMasks
    from .sam2 import Sam2, build_sam2
    from .video import VideoSession

__all__ = [
    "MODEL_NAMES",
    "Sam2Config",
    "get_config",
    "Sam2",
    "build_sam2",
    "VideoSession",
    "AutomaticMaskGenerator",
    "AutomaticMasks",
]

_LAZY = {
    "Sam2": ".sam2",
    "build_sam2": ".sam2",
    "VideoSession": ".video",
    "AutomaticMaskGenerator": ".automatic",
    "AutomaticMasks": ".automatic",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value
