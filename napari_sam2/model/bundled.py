"""Models shipped inside the package, so segmentation works offline from the first click.

Today there is one: ``demo``, a reduced SAM 2 that this project trains from scratch on
its own synthetic data (``python -m napari_sam2.training.demo`` rebuilds it). Its file
records its architecture (see :mod:`.saved`), so nothing about it is hard-coded here
beyond its name and where the file lies. Importing this module does not import torch
(prompt files check model names against it).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEMO_MODEL", "BUNDLED_MODELS", "bundled_path", "is_bundled", "describe_bundled", "automatic_thresholds"]

DEMO_MODEL = "demo"
_FILES = {DEMO_MODEL: "demo.pt"}
BUNDLED_MODELS: tuple[str, ...] = tuple(_FILES)
_DESCRIPTIONS = {DEMO_MODEL: "demo (bundled, trained on synthetic data)"}
_WEIGHTS = Path(__file__).resolve().parent / "weights"
# Automatic mask generation keeps masks whose predicted IoU and stability pass two
# thresholds. The demo model is less sure of itself than the official weights: on the
# first frames of fluorescence clips from training seeds 4242-4244 (224 px, cell radius
# 9), the official 0.8 and 0.9 keep 3 of its masks; 0.5 and 0.8 find 89 of the 146 cells
# (IoU > 0.5), and lower thresholds add fragments more than cells.
_AUTOMATIC = {DEMO_MODEL: {"pred_iou_thresh": 0.5, "stability_score_thresh": 0.8}}


def is_bundled(name: object) -> bool:
    """Whether ``name`` is a model shipped with the package."""
    return isinstance(name, str) and name in _FILES


def bundled_path(name: str) -> Path:
    """The file of a bundled model; a clear error if the installation lacks it."""
    from .checkpoint import CheckpointError  # imports torch: only when a file is wanted

    if name not in _FILES:
        raise CheckpointError(f"{name!r} is not a bundled model; bundled: {', '.join(BUNDLED_MODELS)}")
    path = _WEIGHTS / _FILES[name]
    if not path.is_file():
        raise CheckpointError(
            f"the bundled model {name!r} is missing from this installation ({path}); "
            "reinstall napari-sam2, or rebuild it with `python -m napari_sam2.training.demo`"
        )
    return path


def describe_bundled(name: str) -> str:
    """The name users see in model choosers."""
    return _DESCRIPTIONS.get(name, name)


def automatic_thresholds(name: str) -> dict[str, float]:
    """The automatic-detection thresholds calibrated for a bundled model (empty: the defaults)."""
    return dict(_AUTOMATIC.get(name, {}))
