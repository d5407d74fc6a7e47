"""Fine-tuning and evaluation of SAM 2 on masklets: torch and numpy only.

Typical use::

    from napari_sam2.model import build_sam2
    from napari_sam2.training import TrainConfig, from_files, train, evaluate

    model = build_sam2("sam2.1_hiera_tiny", checkpoint="official", image_size=512)
    data = from_files("movie.tif", "labels.tif")
    result = train(model, data, TrainConfig(steps=500, trainable="memory"), output="tuned.pt")
    print(evaluate(result.model, eval_set_from(data)).table())

Names are imported on first use so that importing the package stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .clips import Clip, ClipSampler, ClipSettings
    from .config import TrainConfig
    from .data import SyntheticData, TrainingData, Video, VideoData, from_arrays, from_ctc, from_files, from_generator
    from .errors import TrainingError
    from .evaluation import EvalReport, EvalSet, eval_set_from, evaluate
    from .loop import TrainProgress, TrainResult, mean_loss, train
    from .losses import LossWeights
    from .metrics import boundary_f, ctc_seg, jaccard
    from .tracking_metrics import TrackingScores, tracking_scores
    from .optim import OptimSettings
    from .prompts import PromptSettings
    from .start import start_model
    from .state import load_state, state_path_for

_LAZY = {
    "Clip": ".clips",
    "ClipSampler": ".clips",
    "ClipSettings": ".clips",
    "TrainConfig": ".config",
    "TrainingData": ".data",
    "Video": ".data",
    "VideoData": ".data",
    "SyntheticData": ".data",
    "from_arrays": ".data",
    "from_files": ".data",
    "from_ctc": ".data",
    "from_generator": ".data",
    "TrainingError": ".errors",
    "EvalReport": ".evaluation",
    "EvalSet": ".evaluation",
    "eval_set_from": ".evaluation",
    "evaluate": ".evaluation",
    "TrainProgress": ".loop",
    "TrainResult": ".loop",
    "train": ".loop",
    "LossWeights": ".losses",
    "jaccard": ".metrics",
    "boundary_f": ".metrics",
    "ctc_seg": ".metrics",
    "tracking_scores": ".tracking_metrics",
    "TrackingScores": ".tracking_metrics",
    "OptimSettings": ".optim",
    "PromptSettings": ".prompts",
    "start_model": ".start",
    "mean_loss": ".loop",
    "load_state": ".state",
    "state_path_for": ".state",
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
    return sorted(set(globals()) | set(__all__))
