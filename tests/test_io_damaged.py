"""Truncated and corrupted stacks of every format: a ReadError naming the file, never a crash.

``check_readable`` is the cheap check made before a model is loaded: it must catch
truncation (the usual damage: an interrupted copy or save) in every format, and
whatever it lets through must still fail with a ReadError naming the file and frame
when that frame is read, never with a decoder's own exception or a hang.
"""

from __future__ import annotations

import logging

import av
import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_sam2.io.errors import ReadError
from napari_sam2.io.readers import check_readable, open_stack

T, H, W = 6, 48, 64
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _quiet_decoders(caplog):
    # tifffile logs every damage it works around. (PyAV's own logging stays off: a Python
    # log callback can deadlock with the decoder's threads when a damaged file is closed.)
    caplog.set_level(logging.CRITICAL, logger="tifffile")
    yield


def _frames(rgb: bool = False) -> np.ndarray:
    rng = np.random.default_rng(0)
    shape = (T, H, W, 3) if rgb else (T, H, W)
    return (rng.random(shape) * (255 if rgb else 4000)).astype(np.uint8 if rgb else np.uint16)


def _tiff(path, **kwargs):
    tifffile.imwrite(path, _frames(), metadata={"axes": "TYX"}, **kwargs)
    return path


def _ome(path):
    tifffile.imwrite(path, _frames()[:, None], metadata={"axes": "TCYX"}, ome=True)
    return path


def _video(path, **options):
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for frame in _frames(rgb=True):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


MAKERS = {
    "plain.tif": _tiff,
    "zlib.tif": lambda p: _tiff(p, compression="zlib"),
    "tiled.tif": lambda p: _tiff(p, compression="zlib", tile=(16, 16)),
    "stack.ome.tif": _ome,
    "moov-at-end.mp4": _video,
    "faststart.mp4": lambda p: _video(p, movflags="faststart"),
    "clip.mkv": _video,
}


def _read_everything(path) -> None:
    """What tracking does: check, open, then read every frame."""
    check_readable(path)
    array, meta = open_stack(path)
    for i in range(array.shape[0]):
        np.asarray(array[i])


@pytest.mark.parametrize("name", sorted(MAKERS))
@pytest.mark.parametrize("keep", [0.0, 0.05, 0.3, 0.6, 0.95, 0.995])
def test_truncated_files_are_caught_before_any_model(tmp_path, name, keep):
    good = MAKERS[name](tmp_path / f"good-{name}")
    check_readable(good)
    data = good.read_bytes()
    cut = tmp_path / f"cut-{name}"
    cut.write_bytes(data[: int(len(data) * keep)])
    try:
        _read_everything(cut)
    except ReadError as err:
        assert cut.name in str(err) and err.path == str(cut)
        return
    # a few cuts only remove trailing metadata; then every frame must really be there
    array, _ = open_stack(cut)
    reference, _ = open_stack(good)
    assert array.shape == reference.shape, f"{name} cut at {keep} silently lost frames"


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_corrupted_bytes_only_ever_give_read_errors(tmp_path, name):
    good = MAKERS[name](tmp_path / f"good-{name}")
    data = good.read_bytes()
    rng = np.random.default_rng(len(name))
    for trial in range(12):
        damaged = bytearray(data)
        start = int(rng.integers(0, len(data)))
        if trial % 3 == 0:  # a burst of garbage
            damaged[start : start + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()[: len(damaged[start : start + 64])]
        else:  # scattered bit rot
            for i in rng.integers(0, len(data), 40):
                damaged[i] ^= 1 << int(rng.integers(0, 8))
        path = tmp_path / f"bad{trial}-{name}"
        path.write_bytes(bytes(damaged))
        try:
            _read_everything(path)
        except ReadError as err:
            assert path.name in str(err)


def test_a_damaged_plane_in_the_middle_names_the_frame(tmp_path):
    path = _tiff(tmp_path / "mid.tif", compression="zlib")
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[3]
        offset, count = page.dataoffsets[0], page.databytecounts[0]
    data = bytearray(path.read_bytes())
    data[offset : offset + count] = b"\x00" * count
    path.write_bytes(bytes(data))
    check_readable(path)  # first and last planes are fine
    array, _ = open_stack(path)
    with pytest.raises(ReadError, match=r"frame 3 of .*mid\.tif") as err:
        np.asarray(array[3])
    assert err.value.frame == 3


def test_image_folders(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(_frames(rgb=True)):
        Image.fromarray(frame).save(folder / f"f{i}.png")
    check_readable(folder)
    last = folder / f"f{T - 1}.png"
    last.write_bytes(last.read_bytes()[:200])  # truncated last file: caught up front
    with pytest.raises(ReadError, match=rf"frame {T - 1} of .*frames.*f{T - 1}\.png") as err:
        check_readable(folder)
    assert err.value.frame == T - 1
    last.write_bytes(b"")  # an empty file
    with pytest.raises(ReadError, match=f"f{T - 1}.png"):
        check_readable(folder)
    Image.fromarray(_frames(rgb=True)[0]).save(last)
    middle = folder / "f2.png"
    middle.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)  # garbage in the middle: named when read
    array, _ = open_stack(folder)
    with pytest.raises(ReadError, match=r"frame 2 of .*f2\.png"):
        np.asarray(array[2])
    first = folder / "f0.png"
    first.write_text("not an image")
    with pytest.raises(ReadError, match="f0.png"):
        check_readable(folder)


def test_single_images_and_numpy_files(tmp_path):
    image = tmp_path / "one.png"
    Image.fromarray(_frames(rgb=True)[0]).save(image)
    image.write_bytes(image.read_bytes()[:100])
    with pytest.raises(ReadError, match="one.png"):
        check_readable(image)
    npy = tmp_path / "stack.npy"
    np.save(npy, _frames())
    npy.write_bytes(npy.read_bytes()[:1000])
    with pytest.raises(ReadError, match="stack.npy"):
        check_readable(npy)


def test_check_readable_returns_the_metadata_and_reports_missing_files(tmp_path):
    path = _tiff(tmp_path / "ok.tif")
    meta = check_readable(path)
    assert meta["shape"] == (T, H, W) and meta["frame_axis"] == 0
    with pytest.raises(FileNotFoundError, match="missing.tif"):
        check_readable(tmp_path / "missing.tif")
