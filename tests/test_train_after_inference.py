"""A model that tracked a video (inference mode) can be fine-tuned in the same process.

Parameter-free caches (rotary tables, sine grids) filled under ``torch.inference_mode``
hold inference tensors that autograd refuses to save; training must rebuild them.
"""

from __future__ import annotations

import numpy as np

from miniature import miniature_model

from napari_sam2.sample_data.synthetic import cells_timelapse
from napari_sam2.training import TrainConfig, evaluate, from_arrays, train
from napari_sam2.training.clips import ClipSettings
from napari_sam2.training.prompts import PromptSettings


def test_training_after_evaluation_in_inference_mode(tmp_path, one_torch_thread):
    clip = cells_timelapse(num_frames=4, size=64, seed=1)
    data = from_arrays(clip.image, clip.labels)
    model = miniature_model(64)
    evaluate(model, data)  # fills the caches in inference mode
    config = TrainConfig(steps=2, trainable="all", clip=ClipSettings(num_frames=3),
                         prompts=PromptSettings(correction_rounds=1), checkpoint_every=0)
    result = train(model, data, config, output=tmp_path / "tuned.pt")
    assert result.step == 2 and np.isfinite(result.history[-1][1])
    evaluate(result.model, data)  # and back to inference
