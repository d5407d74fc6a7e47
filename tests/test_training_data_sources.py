"""Training data from files and CTC folders; Ctrl-C and validation during training."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import tifffile

from miniature import miniature_model

from napari_sam2.training import (
    TrainConfig,
    TrainingError,
    evaluate,
    from_arrays,
    from_ctc,
    from_files,
    from_generator,
    train,
)
from napari_sam2.training.clips import ClipSampler, ClipSettings
from napari_sam2.training.prompts import PromptSettings


def blobs(num_frames: int = 5, size: int = 40):
    labels = np.zeros((num_frames, size, size), np.uint16)
    for t in range(num_frames):
        labels[t, 4 + t : 14 + t, 4:14] = 1
        labels[t, 20:30, 18 + t : 28 + t] = 2
    image = (labels * 3000 + 500).astype(np.uint16)
    return image, labels


def write_ctc(root, image, labels, seg_frames=(1, 3)):
    (root / "01").mkdir(parents=True)
    (root / "01_GT" / "TRA").mkdir(parents=True)
    (root / "01_GT" / "SEG").mkdir(parents=True)
    for t in range(image.shape[0]):
        tifffile.imwrite(root / "01" / f"t{t:03d}.tif", image[t])
        markers = np.zeros_like(labels[t])
        for obj in (1, 2):  # TRA: small markers at each object's centre
            rows, cols = np.nonzero(labels[t] == obj)
            markers[int(rows.mean()), int(cols.mean())] = obj
        tifffile.imwrite(root / "01_GT" / "TRA" / f"man_track{t:03d}.tif", markers)
    for t in seg_frames:  # SEG: full masks, with ids unrelated to the track ids
        seg = np.where(labels[t] > 0, 10 - labels[t], 0).astype(np.uint16)
        tifffile.imwrite(root / "01_GT" / "SEG" / f"man_seg{t:03d}.tif", seg)


def test_files_are_read_lazily_as_training_data(tmp_path):
    image, labels = blobs()
    tifffile.imwrite(tmp_path / "movie.tif", image)
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    data = from_files(tmp_path / "movie.tif", tmp_path / "labels.tif")
    video = data.videos[0]
    assert video.num_frames == 5 and [ids.tolist() for ids in video.objects] == [[1, 2]] * 5
    assert video.contrast_limits is not None  # 16-bit: limits estimated like inference
    clip = ClipSampler(data, 32, ClipSettings(num_frames=3)).sample(np.random.default_rng(0))
    assert clip.frames.shape == (3, 3, 32, 32)
    with pytest.raises(TrainingError, match="cannot read"):
        from_files(tmp_path / "missing.tif", tmp_path / "labels.tif")
    tifffile.imwrite(tmp_path / "short.tif", labels[:3])
    with pytest.raises(TrainingError, match="labels have shape"):
        from_files(tmp_path / "movie.tif", tmp_path / "short.tif")
    with pytest.raises(TrainingError, match="in pairs"):
        from_files([tmp_path / "movie.tif"], [])


def test_ctc_folder_uses_seg_masks_with_track_ids(tmp_path):
    image, labels = blobs()
    write_ctc(tmp_path / "ds", image, labels)
    data = from_ctc(tmp_path / "ds")
    video = data.videos[0]
    frame1 = video.label_frame(1)  # SEG frame: full masks, renamed to the track ids
    assert np.array_equal(frame1, labels[1])
    frame0 = video.label_frame(0)  # TRA only: the markers
    assert (frame0 > 0).sum() == 2
    report = evaluate(miniature_model(64), data)
    assert report.seg is not None and 0.0 <= report.seg <= 1.0
    with pytest.raises(TrainingError, match="no CTC sequence"):
        from_ctc(tmp_path)


def test_ctrl_c_stops_after_the_step_and_saves(tmp_path, one_torch_thread):
    image, labels = blobs()
    data = from_arrays(image, labels)
    config = TrainConfig(steps=5, clip=ClipSettings(num_frames=2), prompts=PromptSettings(correction_rounds=1), checkpoint_every=0)

    def progress(p):
        if p.step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)  # Python's own, or "ignore" under nohup
    result = train(miniature_model(64), data, config, output=tmp_path / "m.pt", progress=progress)
    assert result.cancelled and result.step == 2
    assert (tmp_path / "m.pt").is_file() and result.state.is_file()
    assert signal.getsignal(signal.SIGINT) is before, "the handler in place before training is back"


def test_validation_every_k_steps(tmp_path, one_torch_thread):
    from napari_sam2.sample_data.synthetic import cells_timelapse

    gen = lambda s: cells_timelapse(num_frames=3, size=48, seed=s)  # noqa: E731
    config = TrainConfig(steps=2, validate_every=1, clip=ClipSettings(num_frames=2), prompts=PromptSettings(correction_rounds=1))
    reports = []
    result = train(
        miniature_model(64), from_generator(gen, seeds=range(10)), config, output=tmp_path / "m.pt",
        val_data=from_generator(gen, seeds=[99]), progress=lambda p: reports.append(p.validation),
    )
    assert [v["step"] for v in result.validation] == [1, 2]
    assert all(0.0 <= r["J&F"] <= 1.0 for r in reports)
    with pytest.raises(TrainingError, match="seeds"):
        train(miniature_model(64), from_generator(gen), config, output=tmp_path / "n.pt", val_data=from_generator(gen))
