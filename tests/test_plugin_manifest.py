"""The npe2 manifest and the reader/writer hooks, through napari's own plugin machinery."""

from __future__ import annotations

import numpy as np
import pytest


def _manifest():
    import npe2

    pm = npe2.PluginManager.instance()
    pm.discover()
    return pm.get_manifest("napari-sam2")


def test_manifest_is_valid_and_complete():
    from npe2 import PluginManifest

    manifest = _manifest()
    PluginManifest.validate(manifest.model_dump() if hasattr(manifest, "model_dump") else manifest.dict())
    contributions = manifest.contributions
    assert [w.display_name for w in contributions.widgets] == ["Segment and track"]
    assert {s.key for s in contributions.sample_data} == {"cells", "clip", "nuclei"}
    assert contributions.writers[0].layer_types == ["labels"]
    patterns = contributions.readers[0].filename_patterns
    assert "*.tif" in patterns and "*.mp4" in patterns
    # every command resolves to something importable
    for command in contributions.commands:
        assert callable(_resolve(command.python_name)), command.id


def _resolve(python_name: str):
    from importlib import import_module

    module, _, attr = python_name.partition(":")
    return getattr(import_module(module), attr)


def test_importing_the_package_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, napari_sam2, napari_sam2.sample_data, napari_sam2._reader, napari_sam2._writer; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_reader_opens_a_tiff_stack_lazily(tmp_path):
    import tifffile
    from npe2 import read

    stack = (np.arange(5 * 32 * 40) % 4000).astype(np.uint16).reshape(5, 32, 40)
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "TYX"})
    layers = read([str(path)], stack=False, plugin_name="napari-sam2")
    ((data, meta, kind),) = layers
    assert kind == "image" and meta["name"] == "movie"
    assert tuple(data.shape) == (5, 32, 40)
    assert np.array_equal(np.asarray(data[3]), stack[3])
    assert meta["axis_labels"] == ("t", "y", "x")


def test_reader_opens_a_video(tmp_path):
    import av
    from npe2 import read

    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(6):
            frame = np.full((48, 64, 3), 40 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    ((data, meta, kind),) = read([str(path)], stack=False, plugin_name="napari-sam2")
    assert meta["rgb"] is True and tuple(data.shape) == (6, 48, 64, 3)
    assert abs(int(np.asarray(data[3]).mean()) - 120) < 10


def test_reader_declines_other_files(tmp_path):
    from napari_sam2._reader import get_reader

    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader([str(tmp_path / "a.tif"), str(tmp_path / "b.tif")]) is None


@pytest.mark.parametrize("shape", [(4, 20, 30), (2, 3, 20, 30)])
def test_labels_writer_round_trip(tmp_path, shape):
    import tifffile
    from npe2 import write

    from napari.layers import Labels

    labels = np.zeros(shape, np.uint16)
    labels[..., 5:10, 5:12] = 3
    labels.reshape(-1, *shape[-2:])[1, 0, 0] = 300
    path = tmp_path / "masks.tif"
    written = write(str(path), [Labels(labels).as_layer_data_tuple()], plugin_name="napari-sam2")
    assert written == [str(path)]
    back = tifffile.imread(path)
    assert np.array_equal(back.reshape(shape), labels)
