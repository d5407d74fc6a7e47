"""Checkpoints of training: round trip, strict loading by architecture, resume, bad outputs."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch

from miniature import miniature_config, miniature_model

from napari_sam2.model import build_sam2
from napari_sam2.model.checkpoint import CheckpointError
from napari_sam2.model.saved import config_from_dict, config_to_dict, read_checkpoint, save_checkpoint
from napari_sam2.training import TrainConfig, TrainingError, from_arrays, load_state, start_model, train
from napari_sam2.training.clips import ClipSettings
from napari_sam2.training.prompts import PromptSettings


def squares_data(num_frames: int = 6, size: int = 40):
    labels = np.zeros((num_frames, size, size), np.uint8)
    for t in range(num_frames):
        labels[t, 5 + t : 17 + t, 6:18] = 1
        labels[t, 22:34, 20 + t : 30 + t] = 2
    image = (labels * 90 + 20).astype(np.uint8)
    return from_arrays(image, labels)


def small_config(**kw) -> TrainConfig:
    base = dict(
        steps=4,
        trainable="memory",
        clip=ClipSettings(num_frames=3, max_objects=2),
        prompts=PromptSettings(correction_rounds=2),
        checkpoint_every=0,
    )
    base.update(kw)
    return TrainConfig(**base)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_config_round_trip():
    cfg = miniature_config(96)
    assert config_from_dict(config_to_dict(cfg)) == cfg
    with pytest.raises(CheckpointError, match="newer"):
        config_from_dict({**config_to_dict(cfg), "future_setting": 1})


def test_self_describing_checkpoint_loads_without_a_name(tmp_path):
    model = miniature_model(96)
    path = save_checkpoint(model, tmp_path / "m.pt", {"note": "x"})
    loaded = build_sam2(checkpoint=path, device="cpu")
    assert loaded.config == model.config and loaded.image_size == 96
    assert same_weights(loaded, model)
    assert read_checkpoint(path).metadata == {"note": "x"}
    with pytest.raises(FileExistsError):
        save_checkpoint(model, path)
    with pytest.raises(CheckpointError, match="records its own architecture"):
        build_sam2("sam2.1_hiera_tiny", checkpoint=path, device="cpu")


def test_fine_tune_of_an_official_variant_keeps_official_keys(tmp_path):
    torch.manual_seed(0)
    model = build_sam2("sam2.1_hiera_tiny", image_size=256, device="cpu")
    path = save_checkpoint(model, tmp_path / "tiny.pt")
    by_name = build_sam2("sam2.1_hiera_tiny", checkpoint=path, device="cpu")
    by_file = build_sam2(checkpoint=path, device="cpu")
    assert by_name.config.name == by_file.config.name == "sam2.1_hiera_tiny"
    assert by_file.image_size == by_name.image_size == 256  # the size it was trained at
    assert build_sam2("sam2.1_hiera_tiny", checkpoint=path, image_size=512, device="cpu").image_size == 512
    assert set(read_checkpoint(path).state) == set(build_sam2("sam2.1_hiera_tiny", device="cpu").state_dict())
    assert same_weights(by_file, model)


def test_starting_checkpoint_of_another_architecture(tmp_path):
    path = save_checkpoint(miniature_model(64), tmp_path / "mini.pt")
    with pytest.raises(TrainingError, match="cannot load the starting model"):
        start_model("sam2.1_hiera_tiny", checkpoint=path)
    with pytest.raises(TrainingError, match="neither a model name"):
        start_model(tmp_path / "missing.pt")
    assert start_model(path).config.name == "miniature"


def test_resume_equals_an_uninterrupted_run(tmp_path, one_torch_thread):
    data = squares_data()
    cfg = small_config()
    straight = train(miniature_model(64), data, cfg, output=tmp_path / "a.pt")
    assert straight.finished and not straight.cancelled

    seen = []
    stop = threading.Event()

    def progress(p):
        seen.append(p.step)
        if p.step == 2:
            stop.set()

    first = train(miniature_model(64), data, cfg, output=tmp_path / "b.pt", progress=progress, cancel=stop)
    assert first.cancelled and first.step == 2 and seen == [1, 2]
    # the cancelled run left a usable model and a resumable state
    assert build_sam2(checkpoint=tmp_path / "b.pt", device="cpu").config.name == "miniature"
    state = load_state(first.state)
    assert state.step == 2 and len(state.history) == 2
    resumed = train(None, data, None, output=tmp_path / "b.pt", resume=True, overwrite=True)
    assert resumed.step == 4 and not resumed.cancelled
    assert [h[0] for h in resumed.history] == [1, 2, 3, 4]
    assert [h[1:] for h in resumed.history] == [h[1:] for h in straight.history]
    assert same_weights(resumed.model, straight.model)


def test_resume_refuses_other_settings_or_models(tmp_path, one_torch_thread):
    data = squares_data()
    train(miniature_model(64), data, small_config(steps=1), output=tmp_path / "m.pt")
    with pytest.raises(TrainingError, match="other settings"):
        train(None, data, small_config(steps=1, trainable="all"), output=tmp_path / "m.pt", resume=True, overwrite=True)
    with pytest.raises(TrainingError, match="not the given"):
        train(miniature_model(96), data, None, output=tmp_path / "m.pt", resume=True, overwrite=True)
    with pytest.raises(TrainingError, match="no training state"):
        train(None, data, None, output=tmp_path / "other.pt", resume=True)
    with pytest.raises(TrainingError, match="not the resumable state"):
        train(None, data, None, state_path=tmp_path / "m.pt", output=None, resume=True)


def test_outputs_are_checked_before_training(tmp_path):
    data = squares_data()
    existing = tmp_path / "exists.pt"
    existing.write_bytes(b"keep me")
    with pytest.raises(TrainingError, match="already exists"):
        train(miniature_model(64), data, small_config(), output=existing)
    assert existing.read_bytes() == b"keep me"
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(TrainingError, match="cannot write"):
        train(miniature_model(64), data, small_config(), output=blocker / "model.pt")
    with pytest.raises(TrainingError, match="folder"):
        train(miniature_model(64), data, small_config(), output=tmp_path)


def test_settings_are_validated():
    with pytest.raises(TrainingError, match="decoder, memory, all"):
        TrainConfig(trainable="heads")
    with pytest.raises(TrainingError, match="at least 1"):
        TrainConfig(steps=0)
    cfg = small_config()
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert dataclasses.replace(cfg, steps=9).differences(cfg) == ["steps"]


@pytest.mark.parametrize("trainable", ["decoder", "memory", "all"])
def test_only_the_chosen_parts_change(tmp_path, trainable, one_torch_thread):
    model = miniature_model(64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train(model, squares_data(), small_config(steps=2, trainable=trainable), output=tmp_path / "m.pt")
    after = result.model.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert ("image_encoder" in changed) == (trainable == "all")
    assert ("memory_attention" in changed) == (trainable in ("memory", "all"))
    assert "sam_mask_decoder" in changed
    assert not any(p.requires_grad for p in result.model.parameters())  # handed back for inference
