"""Image folders and the open_stack dispatcher."""

from __future__ import annotations

import av
import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

import napari_sam2.io.folder as folder_module
from napari_sam2.io import open_stack
from napari_sam2.io.folder import ImageFolder, natural_key, read_folder, read_image
from napari_sam2.io.readers import is_supported, supported_formats
from napari_sam2.io.video import VideoFrames


def rand(shape, dtype=np.uint8, seed=0):
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max, size=shape).astype(dtype)


def test_natural_sort_order():
    names = ["f10.png", "f2.png", "f1.png", "F3.png", "f100.png"]
    assert sorted(names, key=natural_key) == ["f1.png", "f2.png", "F3.png", "f10.png", "f100.png"]


def test_png_folder_is_lazy_and_naturally_sorted(tmp_path, monkeypatch):
    frames = rand((12, 20, 30, 3))
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"frame_{i}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden.png").write_bytes(b"ignored")
    reads = []
    original = folder_module.read_image
    monkeypatch.setattr(folder_module, "read_image", lambda p: reads.append(p.name) or original(p))
    stack, meta = read_folder(tmp_path)
    assert reads == ["frame_0.png"]  # only the first file, for shape and dtype
    assert stack.shape == (12, 20, 30, 3) and stack.dtype == np.uint8 and len(stack) == 12
    assert meta["axes"] == "TYXS" and meta["rgb"] and meta["frame_axis"] == 0
    assert [p.name for p in stack.files][:3] == ["frame_0.png", "frame_1.png", "frame_2.png"]
    np.testing.assert_array_equal(stack[10], frames[10])  # 'frame_10' after 'frame_9'
    assert reads[-1] == "frame_10.png" and len(reads) == 2
    np.testing.assert_array_equal(stack[2:5, :4], frames[2:5, :4])
    np.testing.assert_array_equal(stack[-1], frames[-1])


def test_16bit_png_and_tiff_folders(tmp_path):
    frames = rand((4, 16, 24), np.uint16)
    png, tif = tmp_path / "png", tmp_path / "tif"
    png.mkdir()
    tif.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(png / f"{i:03d}.png")
        tifffile.imwrite(tif / f"t{i}.tif", frame)
    for folder in (png, tif):
        stack = ImageFolder(folder)
        assert stack.dtype == np.uint16 and stack.shape == (4, 16, 24)
        np.testing.assert_array_equal(np.asarray(stack), frames)


def test_gray_jpeg_among_colour_ones_is_expanded(tmp_path):
    Image.fromarray(rand((16, 16, 3))).save(tmp_path / "0.jpg")
    Image.fromarray(rand((16, 16))).save(tmp_path / "1.jpg")
    stack = ImageFolder(tmp_path)
    assert stack[1].shape == (16, 16, 3)


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        ImageFolder(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="no images"):
        ImageFolder(empty)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(rand((16, 16))).save(mixed / "a1.png")
    Image.fromarray(rand((16, 20))).save(mixed / "a2.png")
    stack = ImageFolder(mixed)
    with pytest.raises(ValueError, match="a2.png"):
        stack[1]
    broken = tmp_path / "broken"
    broken.mkdir()
    Image.fromarray(rand((16, 16))).save(broken / "0.png")
    (broken / "1.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="1.png"):
        ImageFolder(broken)[1]


def test_read_image_modes(tmp_path):
    palette = Image.fromarray(rand((8, 8))).convert("P")
    palette.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (8, 8, 3)
    Image.fromarray(rand((8, 8)) > 128).save(tmp_path / "bits.png")
    bits = read_image(tmp_path / "bits.png")
    assert bits.dtype == np.uint8 and set(np.unique(bits)) <= {0, 255}


# ------------------------------------------------------------------ open_stack
def test_open_stack_dispatches_by_type(tmp_path):
    data = rand((5, 20, 24), np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", data)
    tifffile.imwrite(tmp_path / "b.ome.tif", data, ome=True, compression="zlib", metadata={"axes": "TYX"})
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(data):
        Image.fromarray(frame).save(folder / f"{i}.png")
    Image.fromarray(rand((20, 24, 3))).save(tmp_path / "one.png")
    np.save(tmp_path / "c.npy", data)
    z = zarr.create_array(store=str(tmp_path / "d.zarr"), shape=data.shape, chunks=(1, 20, 24), dtype=data.dtype)
    z[:] = data
    with av.open(str(tmp_path / "e.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(rand((24, 32, 3), seed=i), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)

    cases = {
        "a.tif": (np.memmap, "tiff"),
        "b.ome.tif": (da.Array, "ome-tiff"),
        "frames": (ImageFolder, "folder"),
        "c.npy": (np.ndarray, "npy"),
        "d.zarr": (zarr.Array, "zarr"),
        "e.mp4": (VideoFrames, "video"),
    }
    for name, (kind, fmt) in cases.items():
        array, meta = open_stack(tmp_path / name)
        assert isinstance(array, kind), name
        assert meta["format"] == fmt and meta["frame_axis"] == 0, name
        assert tuple(meta["shape"]) == tuple(array.shape), name
        if fmt != "video":
            np.testing.assert_array_equal(np.asarray(array[3]), data[3], err_msg=name)
    image, meta = open_stack(str(tmp_path / "one.png"))
    assert image.shape == (20, 24, 3) and meta["axes"] == "YXS" and meta["frame_axis"] is None
    assert isinstance(open_stack(tmp_path / "c.npy")[0], np.memmap)


def test_open_stack_errors_name_the_path_and_formats(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.tif"):
        open_stack(tmp_path / "missing.tif")
    unknown = tmp_path / "data.xyz"
    unknown.write_text("?")
    with pytest.raises(ValueError, match=r"data\.xyz.*Supported: TIFF"):
        open_stack(unknown)
    corrupt = tmp_path / "broken.mov"
    corrupt.write_bytes(b"\x00" * 300)
    with pytest.raises(ValueError, match="broken.mov"):
        open_stack(corrupt)
    bad_npy = tmp_path / "bad.npy"
    bad_npy.write_bytes(b"nonsense")
    with pytest.raises(ValueError, match="bad.npy"):
        open_stack(bad_npy)


def test_is_supported_and_format_list(tmp_path):
    assert is_supported("movie.MP4") and is_supported("cells.ome.tiff") and is_supported(tmp_path)
    assert not is_supported("table.csv")
    text = supported_formats()
    assert ".tif" in text and ".mp4" in text and "folders" in text
