"""VideoFrames: exact random access by keyframe seeking, fast sequential reads, bounded cache."""

from __future__ import annotations

import pickle
import random
import threading

import av
import numpy as np
import pytest
import torch

from napari_sam2.io.video import VideoFrames, read_video
from napari_sam2.model.frames import FrameSource

H, W = 64, 96


def synthetic_frame(i: int) -> np.ndarray:
    image = np.zeros((H, W, 3), np.uint8)
    image[..., 0] = (i * 4) % 256
    image[i % H : i % H + 8, :, 1] = 255
    image[:, (i * 3) % W, 2] = 200
    return image


def write_video(path, codec="libx264", n=48, rate=25, options=None, rotation=None) -> str:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        if options:
            stream.options = options
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(n):
            for packet in stream.encode(av.VideoFrame.from_ndarray(synthetic_frame(i), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


def decode_all(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


VIDEOS = {
    # B-frames and short GOPs: presentation order differs from decode order
    "h264.mp4": ("libx264", {"g": "12", "bf": "2"}),
    "mpeg4.avi": ("mpeg4", {"g": "10"}),
    "h264.mkv": ("libx264", {"g": "15"}),  # Matroska does not declare a frame count
    "h264.mov": ("libx264", {"g": "8", "bf": "3"}),
    "vp9.webm": ("libvpx-vp9", {"g": "16"}),
}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    paths = {}
    for name, (codec, options) in VIDEOS.items():
        paths[name] = write_video(folder / name, codec, options=options)
    return paths


@pytest.mark.parametrize("name", list(VIDEOS))
def test_random_access_matches_sequential_decode(videos, name):
    expected = decode_all(videos[name])
    with VideoFrames(videos[name], cache_bytes=4 * H * W * 3) as frames:
        assert frames.shape == (len(expected), H, W, 3) and len(frames) == 48
        assert frames.dtype == np.uint8 and frames.ndim == 4
        order = list(range(len(expected)))
        random.Random(0).shuffle(order)
        for i in order:
            np.testing.assert_array_equal(frames[i], expected[i], err_msg=f"{name} frame {i}")
        for i in reversed(range(len(expected))):  # reverse propagation walks backwards
            np.testing.assert_array_equal(frames[i], expected[i], err_msg=f"{name} frame {i} (reverse)")
        assert len(frames._cache) <= 4


def test_frame_count_without_declared_count(videos):
    with av.open(videos["h264.mkv"]) as container:
        assert container.streams.video[0].frames == 0  # nothing declared: counted from packets
    assert len(VideoFrames(videos["h264.mkv"])) == 48


def test_sequential_reading_never_seeks_again(videos):
    frames = VideoFrames(videos["h264.mp4"])
    seeks = frames.seeks
    for i in range(len(frames)):
        frames[i]
    assert frames.seeks == seeks  # the decoder opened at frame 0 just keeps going
    assert frames.decoded <= 48 + 1 + 1


def test_random_frame_decodes_only_its_group_of_pictures(videos):
    frames = VideoFrames(videos["h264.mp4"])  # keyframe every 12 frames
    before = frames.decoded
    frames[40]
    assert frames.decoded - before <= 12 + 4  # from keyframe 36 (plus decoder delay), not from 0


def test_numpy_style_indexing(videos):
    expected = np.stack(decode_all(videos["h264.mp4"]))
    frames = VideoFrames(videos["h264.mp4"])
    np.testing.assert_array_equal(frames[-1], expected[-1])
    np.testing.assert_array_equal(frames[5:12:3], expected[5:12:3])
    np.testing.assert_array_equal(frames[[3, 1, 30]], expected[[3, 1, 30]])
    np.testing.assert_array_equal(frames[7, 10:20, ::2, 1], expected[7, 10:20, ::2, 1])
    np.testing.assert_array_equal(frames[2:4, 5], expected[2:4, 5])
    np.testing.assert_array_equal(frames[np.int64(9)], expected[9])
    assert frames[10:10].shape == (0, H, W, 3)
    np.testing.assert_array_equal(np.asarray(frames), expected)
    with pytest.raises(IndexError):
        frames[48]
    assert not frames[3].flags.writeable


def test_thread_safe_concurrent_reads(videos):
    expected = decode_all(videos["h264.mov"])
    frames = VideoFrames(videos["h264.mov"], cache_bytes=3 * H * W * 3)
    errors = []

    def worker(seed):
        rng = random.Random(seed)
        try:
            for _ in range(40):
                i = rng.randrange(len(expected))
                np.testing.assert_array_equal(frames[i], expected[i])
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_frame_source_over_video(videos):
    expected = np.stack(decode_all(videos["h264.mp4"]))
    with FrameSource(VideoFrames(videos["h264.mp4"]), image_size=64) as source:
        reference = FrameSource(expected, image_size=64, prefetch=False)
        assert source.contrast_limits is None  # uint8: reference normalization
        for i in (0, 1, 2, 20, 19):
            assert torch.equal(source.model_input(i), reference.model_input(i))


def test_display_rotation_is_applied(tmp_path):
    plain = decode_all(write_video(tmp_path / "plain.mp4", n=6))
    rotated = VideoFrames(write_video(tmp_path / "rotated.mp4", n=6, rotation=90))
    assert rotated.shape == (6, W, H, 3)
    np.testing.assert_array_equal(rotated[3], np.rot90(plain[3]))


def test_metadata_and_pickling(videos):
    frames, meta = read_video(videos["h264.mp4"])
    assert meta["axes"] == "TYXS" and meta["rgb"] and meta["frame_axis"] == 0
    assert meta["fps"] == pytest.approx(25.0) and meta["shape"] == (48, H, W, 3)
    np.testing.assert_allclose(frames.timestamps[:3], [0, 0.04, 0.08])
    clone = pickle.loads(pickle.dumps(frames))
    np.testing.assert_array_equal(clone[17], frames[17])


def test_close(videos):
    frames = VideoFrames(videos["h264.mp4"])
    frames.close()
    assert frames.closed
    frames.close()  # idempotent


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        VideoFrames(tmp_path / "missing.mp4")
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"\x00\x01 definitely not a video" * 50)
    with pytest.raises(ValueError, match="fake.mp4"):
        VideoFrames(fake)
    with av.open(str(tmp_path / "audio.mkv"), "w") as container:  # a file without a video stream
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(ValueError, match="video stream"):
        VideoFrames(tmp_path / "audio.mkv")
