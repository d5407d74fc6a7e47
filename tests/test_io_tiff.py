"""Lazy TIFF / OME-TIFF / ImageJ reading: memory-mapped or zarr-backed, never read whole."""

from __future__ import annotations

import struct

import dask.array as da
import numpy as np
import pytest
import tifffile
import torch

from napari_sam2.io.tiff import guess_frame_axis, read_tiff
from napari_sam2.model.frames import FrameSource


def stack(shape, dtype=np.uint16, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4000, size=shape).astype(dtype)


@pytest.fixture
def count_page_decodes(monkeypatch):
    """Counts how many TIFF segments (strips/tiles) tifffile decodes."""
    calls = {"n": 0}
    original = tifffile.TiffPage.decode

    def counting(self):
        decode = original.__get__(self)

        def wrapped(*args, **kwargs):
            calls["n"] += 1
            return decode(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(tifffile.TiffPage, "decode", property(counting))
    return calls


def test_uncompressed_multipage_is_memory_mapped(tmp_path):
    data = stack((12, 40, 56))
    tifffile.imwrite(tmp_path / "plain.tif", data)
    array, meta = read_tiff(tmp_path / "plain.tif")
    assert isinstance(array, np.memmap) and meta["storage"] == "memmap"
    assert array.shape == data.shape and array.dtype == np.uint16
    assert meta["frame_axis"] == 0 and meta["axes"][-2:] == "YX" and not meta["rgb"]
    np.testing.assert_array_equal(array[7], data[7])
    assert not array.flags.writeable


def test_compressed_stack_is_zarr_backed_and_reads_one_frame(tmp_path, count_page_decodes):
    data = stack((20, 64, 48))
    tifffile.imwrite(tmp_path / "deflate.tif", data, compression="zlib", rowsperstrip=16)
    array, meta = read_tiff(tmp_path / "deflate.tif")
    assert isinstance(array, da.Array) and meta["storage"] == "zarr"
    assert array.chunks[0] == (1,) * 20 and array.chunks[1:] == ((64,), (48,))
    count_page_decodes["n"] = 0
    np.testing.assert_array_equal(np.asarray(array[13]), data[13])
    # one page of four strips, not the whole stack of 80 strips
    assert 0 < count_page_decodes["n"] <= 4


def test_tiled_compressed_ome_tiff(tmp_path):
    data = stack((5, 3, 64, 80))
    path = tmp_path / "tiled.ome.tif"
    tifffile.imwrite(
        path, data, ome=True, compression="zlib", tile=(32, 32),
        metadata={"axes": "TZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "TimeIncrement": 2.0},
    )
    array, meta = read_tiff(path)
    assert meta["format"] == "ome-tiff" and meta["axes"] == "TZYX" and meta["storage"] == "zarr"
    assert array.chunks[2:] == ((64,), (80,))  # tiles merged into one chunk per plane
    np.testing.assert_array_equal(np.asarray(array[3, 1]), data[3, 1])
    assert meta["scale"]["X"] == 0.5 and meta["scale"]["T"] == 2.0 and meta["fps"] == 0.5


def test_frame_interval_units(tmp_path):
    tifffile.imwrite(
        tmp_path / "ms.ome.tif", stack((3, 16, 16)), ome=True,
        metadata={"axes": "TYX", "TimeIncrement": 500.0, "TimeIncrementUnit": "ms"},
    )
    _, meta = read_tiff(tmp_path / "ms.ome.tif")
    assert meta["scale"] == {"T": 500.0} and meta["units"] == {"T": "ms"} and meta["fps"] == 2.0


def test_uncompressed_ome_tiff_is_memory_mapped(tmp_path):
    data = stack((4, 32, 32))
    tifffile.imwrite(tmp_path / "a.ome.tiff", data, ome=True, metadata={"axes": "ZYX"})
    array, meta = read_tiff(tmp_path / "a.ome.tiff")
    assert isinstance(array, np.memmap) and meta["axes"] == "ZYX" and meta["frame_axis"] == 0
    np.testing.assert_array_equal(array[:], data)


def test_imagej_hyperstack_axes_and_scale(tmp_path):
    data = stack((6, 4, 32, 40))
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(
        path, data, imagej=True, resolution=(4.0, 4.0),
        metadata={"axes": "TZYX", "spacing": 1.5, "unit": "um", "finterval": 30.0},
    )
    array, meta = read_tiff(path)
    assert meta["format"] == "imagej" and meta["axes"] == "TZYX" and meta["frame_axis"] == 0
    assert isinstance(array, np.memmap)
    assert meta["scale"] == {"X": 0.25, "Y": 0.25, "Z": 1.5, "T": 30.0}
    assert meta["units"]["X"] == "um"
    np.testing.assert_array_equal(array[5, 2], data[5, 2])


def test_imagej_file_with_a_single_page_directory(tmp_path):
    """ImageJ writes files over 4 GB with one page directory and all frames after it."""
    data = stack((9, 24, 32))
    path = tmp_path / "bigstyle.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TYX"})
    with tifffile.TiffFile(path) as tif:
        offset, byteorder = tif.pages.first.offset, tif.byteorder
    raw = bytearray(path.read_bytes())
    (count,) = struct.unpack(byteorder + "H", raw[offset : offset + 2])
    next_ifd = offset + 2 + 12 * count
    raw[next_ifd : next_ifd + 4] = b"\0\0\0\0"  # drop every page directory but the first
    path.write_bytes(bytes(raw))
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 1
    array, meta = read_tiff(path)
    assert array.shape == (9, 24, 32) and meta["axes"] == "TYX" and meta["storage"] == "memmap"
    np.testing.assert_array_equal(array[8], data[8])


def test_rgb_image_and_rgb_stack(tmp_path):
    image = stack((30, 40, 3), np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", image, photometric="rgb")
    array, meta = read_tiff(tmp_path / "rgb.tif")
    assert meta["axes"] == "YXS" and meta["rgb"] and meta["frame_axis"] is None
    np.testing.assert_array_equal(np.asarray(array), image)
    movie = stack((5, 30, 40, 3), np.uint8)
    tifffile.imwrite(tmp_path / "rgbs.tif", movie, photometric="rgb", compression="zlib")
    array, meta = read_tiff(tmp_path / "rgbs.tif")
    assert meta["rgb"] and meta["axes"].endswith("YXS") and meta["frame_axis"] == 0
    assert array.chunks[1:] == ((30,), (40,), (3,))
    np.testing.assert_array_equal(np.asarray(array[4]), movie[4])


def test_big_endian_file_feeds_the_frame_source(tmp_path):
    data = stack((3, 32, 32))
    tifffile.imwrite(tmp_path / "be.tif", data, byteorder=">")
    array, _ = read_tiff(tmp_path / "be.tif")
    assert array.dtype.byteorder == ">"
    a = FrameSource(array, image_size=32, contrast_limits=(0, 4000), prefetch=False)
    b = FrameSource(data, image_size=32, contrast_limits=(0, 4000), prefetch=False)
    assert torch.equal(a.model_input(2), b.model_input(2))


def test_zarr_backed_stack_feeds_the_frame_source(tmp_path):
    data = stack((6, 40, 40))
    tifffile.imwrite(tmp_path / "c.tif", data, compression="zlib")
    array, _ = read_tiff(tmp_path / "c.tif")
    with FrameSource(array, image_size=32) as source, FrameSource(data, image_size=32, prefetch=False) as ref:
        assert source.contrast_limits == ref.contrast_limits
        for i in (0, 1, 5):
            assert torch.equal(source.model_input(i), ref.model_input(i))


def test_pyramid_returns_full_resolution(tmp_path):
    data = stack((2, 64, 64))
    path = tmp_path / "pyramid.ome.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(data, subifds=1, metadata={"axes": "TYX"}, tile=(32, 32))
        tif.write(data[:, ::2, ::2], subfiletype=1, tile=(32, 32))
    array, meta = read_tiff(path)
    assert array.shape == (2, 64, 64)
    np.testing.assert_array_equal(np.asarray(array[1]), data[1])
    low, _ = read_tiff(path, level=1)
    assert low.shape == (2, 32, 32)


def test_guess_frame_axis():
    assert guess_frame_axis("TZYX") == 0
    assert guess_frame_axis("ZTYX") == 1
    assert guess_frame_axis("CZYX") == 1
    assert guess_frame_axis("QYX") == 0
    assert guess_frame_axis("CYX") is None
    assert guess_frame_axis("YXS") is None


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.tif"):
        read_tiff(tmp_path / "missing.tif")
    bad = tmp_path / "corrupt.tif"
    bad.write_bytes(b"II*\x00" + b"\xff" * 64)
    with pytest.raises(ValueError, match="corrupt.tif"):
        read_tiff(bad)
    text = tmp_path / "text.tif"
    text.write_text("not a tiff at all")
    with pytest.raises(ValueError, match="text.tif"):
        read_tiff(text)
    tifffile.imwrite(tmp_path / "ok.tif", stack((2, 16, 16)))
    with pytest.raises(ValueError, match="series 3"):
        read_tiff(tmp_path / "ok.tif", series=3)
