"""The Qt-free application layer shared by the widget, the command line and batch.

One job per module: ``axes`` (N-D stacks as frames), ``selection`` (frames of a file),
``choice`` and ``models`` (which model, and loading it), ``plan`` (propagation passes),
``labels`` (logits -> label planes), ``stores`` (where planes go), ``exports``,
``pipeline`` (track a file), ``track_all`` and ``track_all_file`` (track every
object, in a session or a file), ``prompts`` (what the engine was told), ``interactive``
(a session driven by edits) and ``scheduler`` (which job runs next). Names are
imported on first use, so importing this package does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "TrackGeometry": ".axes",
    "AxisView": ".axes",
    "PlaneStack": ".axes",
    "tracked_axis_choices": ".axes",
    "FrameSelection": ".selection",
    "select_frames": ".selection",
    "parse_frame_range": ".selection",
    "resolve_range": ".selection",
    "UsageError": ".errors",
    "SetupError": ".errors",
    "describe_error": ".errors",
    "expected_errors": ".errors",
    "option_of": ".errors",
    "OFFICIAL": ".choice",
    "DEFAULT_IMAGE_SIZES": ".choice",
    "ModelChoice": ".choice",
    "default_model_name": ".choice",
    "guess_variant": ".choice",
    "LoadedModel": ".models",
    "VariantMismatch": ".models",
    "load_model": ".models",
    "resolve_device": ".models",
    "resolve_factory": ".models",
    "available_devices": ".models",
    "DIRECTIONS": ".plan",
    "Pass": ".plan",
    "plan_passes": ".plan",
    "logits_to_labels": ".labels",
    "merge_plane": ".labels",
    "labels_dtype": ".labels",
    "LabelStore": ".stores",
    "FrameWriter": ".stores",
    "new_labels_array": ".stores",
    "FORMATS": ".exports",
    "Progress": ".exports",
    "resolve_format": ".exports",
    "output_name": ".exports",
    "check_destination": ".exports",
    "export_labels": ".exports",
    "read_prompt_file": ".pipeline",
    "TrackOptions": ".pipeline",
    "TrackReport": ".pipeline",
    "track_frames": ".pipeline",
    "track_file": ".pipeline",
    "TrackAllSettings": ".track_all",
    "TrackAllResult": ".track_all",
    "AutomaticDetector": ".track_all",
    "seed_plane": ".track_all",
    "TrackAllReport": ".track_all_file",
    "read_seed_labels": ".track_all_file",
    "track_all_file": ".track_all_file",
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
