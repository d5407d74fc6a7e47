"""Per-object PNG alpha mattes, hard and feathered, read back with Pillow."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from napari_sam2.io import feather_mask, write_mattes


def scene() -> np.ndarray:
    labels = np.zeros((3, 60, 80), np.uint16)
    labels[:, 20:40, 20:50] = 4
    labels[1, 0:10, 60:80] = 9  # only on frame 1, touching the border
    return labels


def read_png(path) -> tuple[str, np.ndarray]:
    with Image.open(path) as image:
        return image.mode, np.asarray(image)


def test_hard_mattes(tmp_path):
    labels = scene()
    folders = write_mattes(tmp_path / "mattes", labels)
    assert set(folders) == {4, 9}
    for obj in (4, 9):
        names = sorted(p.name for p in folders[obj].iterdir())
        assert names == ["00000.png", "00001.png", "00002.png"]
        for t in range(3):
            mode, alpha = read_png(folders[obj] / f"{t:05d}.png")
            assert mode == "L" and alpha.dtype == np.uint8
            np.testing.assert_array_equal(alpha, np.where(labels[t] == obj, 255, 0))
    assert read_png(folders[9] / "00000.png")[1].max() == 0  # absent: an empty matte keeps the sequence


def test_sixteen_bit_and_selected_objects(tmp_path):
    folders = write_mattes(tmp_path / "m16", scene(), obj_ids=[4], bit_depth=16)
    assert list(folders) == [4] and sorted(p.name for p in (tmp_path / "m16").iterdir()) == ["4"]
    mode, alpha = read_png(folders[4] / "00001.png")
    assert mode.startswith("I") and set(np.unique(alpha).tolist()) == {0, 65535}


def test_feathered_edges(tmp_path):
    labels = scene()
    folders = write_mattes(tmp_path / "soft", labels, feather=6, bit_depth=16)
    _, alpha = read_png(folders[4] / "00000.png")
    alpha = alpha.astype(np.float64) / 65535
    row = alpha[30]  # across the left edge at column 20 (inside from 20 on)
    assert row[5] == 0 and row[35] == pytest.approx(1.0, abs=1e-3)  # far outside / deep inside
    assert np.all(np.diff(row[5:36]) >= -1e-6)  # monotonic ramp
    assert 0.35 < (row[19] + row[20]) / 2 < 0.65  # about one half on the outline
    assert 0.02 < row[14] < 0.2 and 0.8 < row[25] < 0.98  # soft over about the radius
    _, border = read_png(folders[9] / "00001.png")
    assert border[0, 79] > 0.97 * 65535  # the frame border does not fade the object


def test_feather_mask_function():
    mask = np.zeros((30, 30), bool)
    assert feather_mask(mask, 3).max() == 0
    mask[10:20, 10:20] = True
    np.testing.assert_array_equal(feather_mask(mask, 0), mask.astype(np.float32))
    soft = feather_mask(mask, 3)
    assert soft.dtype == np.float32 and 0 <= soft.min() and soft.max() <= 1
    np.testing.assert_allclose(soft, soft.T, atol=1e-6)  # symmetric square stays symmetric


def test_errors_and_overwrite(tmp_path):
    labels = scene()
    with pytest.raises(ValueError, match="bit_depth"):
        write_mattes(tmp_path / "a", labels, bit_depth=12)
    with pytest.raises(ValueError, match="feather"):
        write_mattes(tmp_path / "a", labels, feather=-1)
    with pytest.raises(ValueError, match="no objects"):
        write_mattes(tmp_path / "a", np.zeros((2, 16, 16), np.uint8))
    with pytest.raises(ValueError, match="positive"):
        write_mattes(tmp_path / "a", labels, obj_ids=[0])
    write_mattes(tmp_path / "out", labels)
    with pytest.raises(FileExistsError):
        write_mattes(tmp_path / "out", labels)
    write_mattes(tmp_path / "out", labels, obj_ids=[9], overwrite=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["9"]
    other = tmp_path / "footage"
    other.mkdir()
    (other / "clip.mov").write_bytes(b"...")
    with pytest.raises(FileExistsError):
        write_mattes(other, labels, overwrite=True)
    assert (other / "clip.mov").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
