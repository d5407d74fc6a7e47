"""FrameSource: reference-exact uint8 normalization, contrast mapping, laziness, read-ahead."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from napari_sam2.model.frames import IMG_MEAN, IMG_STD, MIN_FRAME_SIZE, FrameSource, estimate_contrast_limits

MEAN = torch.tensor(IMG_MEAN, dtype=torch.float32)[:, None, None]
STD = torch.tensor(IMG_STD, dtype=torch.float32)[:, None, None]


class CountingArray:
    """An array-like that records which frames were read (and refuses bulk reads)."""

    def __init__(self, data: np.ndarray) -> None:
        self._data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.ndim = data.ndim
        self.reads: list[int] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if not isinstance(key, (int, np.integer)):
            raise AssertionError(f"only single frames may be read, got {key!r}")
        with self._lock:
            self.reads.append(int(key))
        return self._data[key]

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole stack must never be converted")


def reference_frames(tmp_path, frames: np.ndarray, image_size: int) -> torch.Tensor:
    """Normalize frames with the reference SAM 2 JPEG-folder loader (lossless PNG payloads).

    The reference picks files by their '.jpg' name but Pillow decodes by content, so
    PNG data named '<i>.jpg' takes exactly the reference path without JPEG loss.
    """
    from sam2.utils.misc import load_video_frames_from_jpg_images

    folder = tmp_path / f"ref_{image_size}"
    folder.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i}.jpg", format="PNG")
    images, height, width = load_video_frames_from_jpg_images(
        str(folder), image_size, offload_video_to_cpu=True, compute_device=torch.device("cpu")
    )
    assert (height, width) == frames.shape[1:3]
    return images


def rand_u8(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


# ------------------------------------------------------------------ uint8 parity
@pytest.mark.parametrize(
    "frame_shape, image_size",
    [((64, 64, 3), 64), ((48, 80, 3), 64), ((70, 50, 3), 96), ((64, 64), 64), ((40, 72), 32)],
)
def test_uint8_matches_reference_loader(tmp_path, frame_shape, image_size):
    frames = rand_u8((3, *frame_shape))
    expected = reference_frames(tmp_path, frames, image_size)
    with FrameSource(frames, image_size=image_size) as source:
        assert source.contrast_limits is None
        for i in range(len(frames)):
            got = source.model_input(i)
            assert got.shape == (3, image_size, image_size) and got.dtype == torch.float32
            assert torch.equal(got, expected[i]), f"frame {i} differs from the reference"


def test_uint8_formula_without_resize():
    frame = rand_u8((32, 32, 3))
    expected = torch.from_numpy(frame / 255.0).permute(2, 0, 1).to(torch.float32)
    expected = (expected - MEAN) / STD
    got = FrameSource(frame[None], image_size=32, prefetch=False).model_input(0)
    assert torch.equal(got, expected)


def test_gray_is_replicated_to_three_channels():
    frames = rand_u8((2, 40, 56))
    source = FrameSource(frames, image_size=64, prefetch=False)
    assert not source.rgb and source.shape == (2, 40, 56)
    x = source.model_input(1) * STD + MEAN  # undo the normalization
    assert torch.allclose(x[0], x[1], atol=1e-6) and torch.allclose(x[1], x[2], atol=1e-6)
    rgb = FrameSource(np.repeat(frames[..., None], 3, axis=-1), image_size=64, prefetch=False)
    assert torch.equal(source.model_input(1), rgb.model_input(1))


def test_rgba_alpha_is_dropped():
    rgb = rand_u8((2, 32, 32, 3))
    alpha = rand_u8((2, 32, 32, 1), seed=1)
    rgba = np.concatenate([rgb, alpha], axis=-1)
    a = FrameSource(rgba, image_size=48, prefetch=False)
    b = FrameSource(rgb, image_size=48, prefetch=False)
    assert a.shape == (2, 32, 32, 3)
    assert np.array_equal(a.raw(1), rgb[1])
    assert torch.equal(a.model_input(1), b.model_input(1))


def test_uint8_with_explicit_limits_uses_linear_mapping():
    frame = rand_u8((1, 32, 32))
    source = FrameSource(frame, image_size=32, contrast_limits=(50, 150), prefetch=False)
    assert source.contrast_limits == (50.0, 150.0)
    x = torch.from_numpy(np.clip((frame[0].astype(np.float32) - 50) / 100, 0, 1))
    assert torch.allclose(source.model_input(0), (x.expand(3, -1, -1) - MEAN) / STD, atol=1e-6)
    full = FrameSource(frame, image_size=32, contrast_limits=(0, 255), prefetch=False)
    assert torch.equal(full.model_input(0), FrameSource(frame, image_size=32, prefetch=False).model_input(0))


# ------------------------------------------------------------------ 16-bit and float
def test_uint16_mapping_without_resize():
    frames = np.random.default_rng(0).integers(0, 65536, size=(2, 32, 48), dtype=np.uint16)
    lo, hi = 1000.0, 60000.0
    source = FrameSource(frames, image_size=48, contrast_limits=(lo, hi), prefetch=False)
    # height 32 != 48, so resize; test the exact mapping on a square frame instead
    square = FrameSource(frames[:, :, :32], image_size=32, contrast_limits=(lo, hi), prefetch=False)
    x = np.clip((frames[1, :, :32].astype(np.float32) - np.float32(lo)) * np.float32(1 / (hi - lo)), 0, 1)
    expected = (torch.from_numpy(x).expand(3, -1, -1) - MEAN) / STD
    assert torch.allclose(square.model_input(1), expected, atol=1e-6)
    assert source.model_input(1).shape == (3, 48, 48)


def test_uint16_resize_is_antialiased_bilinear():
    frames = np.random.default_rng(1).integers(0, 4096, size=(1, 100, 60), dtype=np.uint16)
    source = FrameSource(frames, image_size=32, contrast_limits=(0, 4095), prefetch=False)
    x = torch.from_numpy(frames[0].astype(np.float32) / 4095)[None, None]
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)[0]
    expected = (x.expand(3, -1, -1) - MEAN) / STD
    assert torch.allclose(source.model_input(0), expected, atol=1e-5)


def test_uint16_values_beyond_limits_are_clipped():
    frame = np.full((1, 16, 16), 100, dtype=np.uint16)
    frame[0, :8] = 60000
    source = FrameSource(frame, image_size=16, contrast_limits=(200, 1000), prefetch=False)
    x = source.model_input(0) * STD + MEAN
    assert torch.allclose(x[:, :8], torch.ones(3, 8, 16), atol=1e-6)
    assert torch.allclose(x[:, 8:], torch.zeros(3, 8, 16), atol=1e-6)


def test_default_limits_are_robust_percentiles_from_a_bounded_sample():
    rng = np.random.default_rng(2)
    frames = rng.normal(20000, 3000, size=(100, 64, 64)).clip(0, 65535).astype(np.uint16)
    frames[:, 0, 0] = 65535  # hot pixels must not set the range
    counting = CountingArray(frames)
    source = FrameSource(counting, prefetch=False)
    lo, hi = source.contrast_limits
    assert len(set(counting.reads)) <= 16 and len(counting.reads) <= 16
    all_lo, all_hi = np.percentile(frames, (0.5, 99.5))
    assert abs(lo - all_lo) < 300 and abs(hi - all_hi) < 300
    assert hi < 65535
    counting.reads.clear()
    assert source.contrast_limits == (lo, hi)  # computed once
    source.model_input(3)
    assert counting.reads == [3]


def test_limits_are_estimated_lazily():
    frames = CountingArray(np.arange(8 * 16 * 16, dtype=np.uint16).reshape(8, 16, 16))
    FrameSource(frames, prefetch=False)
    assert frames.reads == []


def test_constant_and_sparse_images_do_not_divide_by_zero():
    constant = np.full((3, 16, 16), 7, dtype=np.uint16)
    source = FrameSource(constant, image_size=32, prefetch=False)
    assert source.contrast_limits == (7.0, 8.0)
    assert torch.isfinite(source.model_input(0)).all()
    sparse = np.zeros((3, 64, 64), dtype=np.float32)
    sparse[:, 5, 5] = 10.0  # a single bright spot: both percentiles are 0
    assert FrameSource(sparse, prefetch=False).contrast_limits == (0.0, 10.0)


def test_float_frames_with_nan_and_inf():
    frame = np.random.default_rng(3).random((1, 32, 32)).astype(np.float64)
    frame[0, 0, :4] = [np.nan, np.inf, -np.inf, 0.5]
    source = FrameSource(frame, image_size=32, prefetch=False)
    lo, hi = source.contrast_limits
    assert np.isfinite(lo) and np.isfinite(hi) and 0 <= lo < hi <= 1
    x = source.model_input(0) * STD + MEAN
    assert torch.isfinite(x).all()
    assert x[0, 0, 1] == pytest.approx(1.0) and x[0, 0, 2] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.uint32, np.int64, np.float16, np.float32])
def test_other_numeric_dtypes(dtype):
    data = (np.random.default_rng(4).random((2, 24, 24)) * 100).astype(dtype)
    source = FrameSource(data, image_size=32, contrast_limits=(0, 100), prefetch=False)
    x = source.model_input(1) * STD + MEAN
    expected = torch.from_numpy(np.clip(data[1].astype(np.float64) / 100, 0, 1).astype(np.float32))
    expected = F.interpolate(expected[None, None], size=(32, 32), mode="bilinear", antialias=True)[0, 0]
    assert torch.allclose(x[0], expected, atol=1e-5)


def test_big_endian_frames():
    data = np.random.default_rng(5).integers(0, 4000, size=(2, 16, 16)).astype(">u2")
    a = FrameSource(data, image_size=16, contrast_limits=(0, 4000), prefetch=False)
    b = FrameSource(data.astype(np.uint16), image_size=16, contrast_limits=(0, 4000), prefetch=False)
    assert torch.equal(a.model_input(1), b.model_input(1))


def test_estimate_contrast_limits_directly():
    frames = np.stack([np.full((16, 16), v, dtype=np.float32) for v in range(40)])
    lo, hi = estimate_contrast_limits(lambda i: frames[i], len(frames))
    assert 0 <= lo < 1 and 38 < hi <= 39


# ------------------------------------------------------------------ laziness and inputs
def test_only_requested_frames_are_read_without_prefetch():
    data = rand_u8((50, 16, 16))
    counting = CountingArray(data)
    source = FrameSource(counting, image_size=16, prefetch=False)
    source.model_input(7)
    np.testing.assert_array_equal(source.raw(30), data[30])
    assert counting.reads == [7, 30]


def test_prefetch_reads_the_next_frame_in_walking_direction():
    data = rand_u8((50, 16, 16))
    counting = CountingArray(data)
    with FrameSource(counting, image_size=16) as source:
        reference = FrameSource(data, image_size=16, prefetch=False)
        for i in (10, 11, 12):
            assert torch.equal(source.model_input(i), reference.model_input(i))
            source._join_prefetch()
        assert counting.reads == [10, 11, 12, 13]  # each frame once, plus one ahead
        for i in (30, 29, 28):  # walking backwards prefetches i - 1
            assert torch.equal(source.model_input(i), reference.model_input(i))
            source._join_prefetch()
        assert counting.reads[4:] == [30, 31, 29, 28, 27]
        assert len(source._cache) <= 2


def test_prefetch_stops_at_the_ends():
    counting = CountingArray(rand_u8((3, 16, 16)))
    with FrameSource(counting, image_size=16) as source:
        source.model_input(2)
        source._join_prefetch()
        source.model_input(0)
        source._join_prefetch()
        source.model_input(1)
        source._join_prefetch()
    assert sorted(set(counting.reads)) == [0, 1, 2] and len(counting.reads) <= 4


def test_concurrent_requests_are_consistent():
    data = rand_u8((20, 24, 24, 3))
    reference = FrameSource(data, image_size=32, prefetch=False)
    expected = [reference.model_input(i) for i in range(20)]
    errors: list[Exception] = []
    with FrameSource(data, image_size=32) as source:

        def work(offset: int) -> None:
            try:
                for k in range(20):
                    i = (k + offset) % 20
                    assert torch.equal(source.model_input(i), expected[i])
            except Exception as err:  # pragma: no cover - reported below
                errors.append(err)

        threads = [threading.Thread(target=work, args=(o,)) for o in (0, 5, 13)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors


def test_close_stops_the_thread_and_reading_still_works():
    data = rand_u8((5, 16, 16))
    source = FrameSource(data, image_size=16)
    source.model_input(0)
    executor = source._executor
    workers = list(executor._threads)
    source.close()
    assert source._executor is None and not source._cache
    assert workers and not any(t.is_alive() for t in workers)
    assert torch.equal(source.model_input(3), FrameSource(data, image_size=16, prefetch=False).model_input(3))
    source.close()  # idempotent


def test_garbage_collection_shuts_the_thread_down():
    import gc
    import weakref

    source = FrameSource(rand_u8((5, 16, 16)), image_size=16)
    source.model_input(0)
    source._join_prefetch()
    executor = source._executor
    ref = weakref.ref(source)
    del source
    gc.collect()
    assert ref() is None
    assert executor._shutdown


def test_dask_zarr_and_memmap_inputs(tmp_path):
    import dask.array as da
    import zarr

    data = np.random.default_rng(6).integers(0, 4096, size=(6, 20, 28), dtype=np.uint16)
    expected = FrameSource(data, image_size=32, contrast_limits=(0, 4095), prefetch=False)

    mm = np.lib.format.open_memmap(tmp_path / "frames.npy", mode="w+", dtype=data.dtype, shape=data.shape)
    mm[:] = data
    mm.flush()
    memmap = np.load(tmp_path / "frames.npy", mmap_mode="r")
    z = zarr.create_array(store=str(tmp_path / "frames.zarr"), shape=data.shape, chunks=(1, 20, 28), dtype=data.dtype)
    z[:] = data
    inputs = {
        "dask": da.from_array(data, chunks=(1, 20, 28)),
        "zarr": zarr.open_array(str(tmp_path / "frames.zarr"), mode="r"),
        "memmap": memmap,
    }
    for name, frames in inputs.items():
        with FrameSource(frames, image_size=32, contrast_limits=(0, 4095)) as source:
            assert source.shape == (6, 20, 28), name
            for i in (0, 5, 4):
                assert torch.equal(source.model_input(i), expected.model_input(i)), name
                np.testing.assert_array_equal(source.raw(i), data[i])
                assert isinstance(source.raw(i), np.ndarray)


def test_default_limits_are_identical_across_input_types():
    import dask.array as da

    data = np.random.default_rng(7).integers(0, 65535, size=(40, 32, 32), dtype=np.uint16)
    a = FrameSource(data, prefetch=False).contrast_limits
    b = FrameSource(da.from_array(data, chunks=(1, 32, 32)), prefetch=False).contrast_limits
    assert a == b


def test_single_image_is_a_one_frame_video():
    gray = rand_u8((32, 40))
    source = FrameSource(gray, image_size=32)
    assert (source.num_frames, source.height, source.width) == (1, 32, 40) and len(source) == 1
    np.testing.assert_array_equal(source.raw(0), gray)
    rgb = FrameSource(rand_u8((32, 40, 3)), image_size=32)
    assert rgb.shape == (1, 32, 40, 3) and rgb.model_input(0).shape == (3, 32, 32)
    with pytest.raises(IndexError):
        source.model_input(1)


def test_lists_of_frames_and_rgb_flag():
    frames = [rand_u8((16, 16), seed=i) for i in range(3)]
    assert FrameSource(frames, image_size=16).num_frames == 3
    # (16, 16, 3) is one RGB image by default, three gray frames with rgb=False ...
    assert FrameSource(rand_u8((16, 16, 3))).shape == (1, 16, 16, 3)
    assert FrameSource(rand_u8((16, 16, 3)), rgb=True).rgb
    with pytest.raises(ValueError, match="too small"):  # ... whose width of 3 is too small
        FrameSource(rand_u8((16, 16, 3)), rgb=False)
    # and a 4-long last axis of a large enough stack is gray with rgb=False
    stack = rand_u8((2, 16, 16, 4))
    assert FrameSource(stack).shape == (2, 16, 16, 3)
    with pytest.raises(ValueError, match="4D"):
        FrameSource(stack, rgb=False)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "data, message",
    [
        (np.zeros((0, 16, 16), np.uint8), "empty"),
        (np.zeros((2, 3, 16, 16, 3), np.uint8), "5D"),
        (np.zeros((16,), np.uint8), "1D"),
        (np.zeros((2, 16, 16), bool), "bool"),
        (np.zeros((2, 16, 16), np.complex64), "complex"),
        (np.zeros((2, MIN_FRAME_SIZE - 1, 16), np.uint8), "too small"),
        (np.zeros((2, 5, 16, 16), np.uint16), "4D"),
        (np.zeros((2, 16, 16, 2), np.uint16), "4D"),
    ],
)
def test_invalid_frames_raise_clear_errors(data, message):
    with pytest.raises(ValueError, match=message):
        FrameSource(data)


def test_invalid_arguments():
    data = rand_u8((2, 16, 16))
    with pytest.raises(ValueError, match="contrast_limits"):
        FrameSource(data, contrast_limits=(5, 5))
    with pytest.raises(ValueError, match="contrast_limits"):
        FrameSource(data, contrast_limits=(0, float("nan")))
    with pytest.raises(ValueError, match="contrast_limits"):
        FrameSource(data, contrast_limits="bad")
    with pytest.raises(ValueError, match="image_size"):
        FrameSource(data, image_size=0)
    with pytest.raises(ValueError, match="rgb=True"):
        FrameSource(rand_u8((16, 16)), rgb=True)
    with pytest.raises(ValueError, match="colour axis"):
        FrameSource(rand_u8((2, 16, 16)), rgb=True)
    with pytest.raises(IndexError):
        FrameSource(data).raw(2)
    with pytest.raises(IndexError):
        FrameSource(data).model_input(-1)
    with pytest.raises(TypeError):
        FrameSource(data).model_input(1.5)


def test_a_frame_of_the_wrong_shape_is_reported():
    class Ragged(CountingArray):
        def __getitem__(self, key):
            frame = super().__getitem__(key)
            return frame[:-1] if key == 1 else frame

    source = FrameSource(Ragged(rand_u8((3, 16, 16))), image_size=16, prefetch=False)
    source.model_input(0)
    with pytest.raises(ValueError, match="frame 1 has shape"):
        source.model_input(1)


def test_read_errors_propagate_through_prefetch():
    class Failing(CountingArray):
        def __getitem__(self, key):
            if key == 2:
                raise OSError("disk gone")
            return super().__getitem__(key)

    with FrameSource(Failing(rand_u8((4, 16, 16))), image_size=16) as source:
        source.model_input(1)  # schedules frame 2, which fails in the background
        source._join_prefetch()
        with pytest.raises(OSError, match="disk gone"):
            source.model_input(2)
