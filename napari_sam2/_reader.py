"""napari reader hook: TIFF stacks and videos opened lazily through ``napari_sam2.io``.

Frames are decoded only when napari (or the engine) asks for them, so time-lapses
larger than memory open instantly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

__all__ = ["get_reader", "read_stack"]

LayerData = tuple[Any, dict[str, Any], str]


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """Return :func:`read_stack` if ``path`` is something we open, else ``None``."""
    if isinstance(path, list):
        if len(path) != 1:
            return None  # napari offers each file separately
        path = path[0]
    from napari_sam2.io import is_supported

    p = Path(path)
    if p.is_dir() or not is_supported(p):
        return None
    return read_stack


def layer_kwargs(metadata: dict[str, Any], name: str) -> dict[str, Any]:
    """napari Image keyword arguments from ``open_stack`` metadata."""
    axes = str(metadata.get("axes", ""))
    rgb = bool(metadata.get("rgb", False))
    kwargs: dict[str, Any] = {"name": name, "rgb": rgb, "metadata": {"source": dict(metadata)}}
    layer_axes = [a for a in axes if not (rgb and a == "S")]
    if "C" in layer_axes and not rgb:
        kwargs["channel_axis"] = layer_axes.index("C")
        layer_axes.remove("C")
    if layer_axes:
        kwargs["axis_labels"] = tuple(a.lower() for a in layer_axes)
        scale = metadata.get("scale") or {}
        # only spatial axes get physical spacing: the time slider stays in frames
        values = [float(scale.get(a, 1.0)) if a in "ZYX" else 1.0 for a in layer_axes]
        if any(v != 1.0 for v in values) and all(v > 0 for v in values):
            kwargs["scale"] = tuple(values)
    return kwargs


def read_stack(path: str | list[str]) -> list[LayerData]:
    """Open one file as an image layer (lazy)."""
    from napari_sam2.io import open_stack

    if isinstance(path, list):
        path = path[0]
    data, metadata = open_stack(path)
    name = Path(path).name
    for suffix in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    else:
        name = Path(name).stem
    return [(data, layer_kwargs(metadata, name), "image")]
