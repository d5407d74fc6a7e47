"""CI smoke test: a short training run of the miniature model learns, and its file loads strictly."""

from __future__ import annotations

import numpy as np
import torch

from miniature import miniature_model

from napari_sam2.model import build_sam2
from napari_sam2.sample_data.synthetic import cells_timelapse
from napari_sam2.training import TrainConfig, from_generator, mean_loss, train
from napari_sam2.training.clips import ClipSettings
from napari_sam2.training.optim import OptimSettings
from napari_sam2.training.prompts import PromptSettings


def test_short_training_lowers_the_loss_and_saves_a_strict_checkpoint(tmp_path, one_torch_thread):
    torch.manual_seed(0)
    data = from_generator(lambda s: cells_timelapse(num_frames=6, size=64, seed=s), seeds=range(100))
    config = TrainConfig(
        steps=30,
        trainable="all",
        clip=ClipSettings(num_frames=4),
        prompts=PromptSettings(correction_rounds=2),
        optim=OptimSettings(lr=1e-3, grad_clip=1.0),
        checkpoint_every=10,
    )
    model = miniature_model(64)
    before = mean_loss(model, data, config, draws=6)
    losses = []
    result = train(model, data, config, output=tmp_path / "mini.pt", progress=lambda p: losses.append(p.loss))
    after = mean_loss(result.model, data, config, draws=6)
    assert len(losses) == 30 and all(np.isfinite(losses))
    assert after < 0.7 * before, (before, after)
    loaded = build_sam2(checkpoint=tmp_path / "mini.pt", device="cpu")  # strict, no name
    assert loaded.config == model.config
    trained = result.model.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in loaded.state_dict().items())
