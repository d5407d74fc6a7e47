"""Cell Tracking Challenge export: masks + res_track.txt, continuous tracks, validation."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_sam2.io.ctc import CTCTrack, mask_name, read_ctc_tracks, validate_ctc, write_ctc


def movie() -> np.ndarray:
    """Object 1 vanishes on frames 2-3 and comes back; object 2 divides into 3 and 4."""
    labels = np.zeros((6, 20, 20), np.uint16)
    labels[0:2, 1:5, 1:5] = 1
    labels[4:6, 2:6, 2:6] = 1
    labels[0:3, 10:16, 10:16] = 2
    labels[3:6, 10:13, 10:13] = 3
    labels[3:6, 14:17, 14:17] = 4
    return labels


def test_tracks_gaps_and_divisions(tmp_path):
    labels = movie()
    result = write_ctc(tmp_path / "01_RES", labels, parents={3: 2, 4: 2})
    folder = tmp_path / "01_RES"
    assert sorted(p.name for p in folder.iterdir()) == [f"mask{t:03d}.tif" for t in range(6)] + ["res_track.txt"]
    lines = (folder / "res_track.txt").read_text().splitlines()
    assert lines == ["1 0 1 0", "2 0 2 0", "3 3 5 2", "4 3 5 2", "5 4 5 1"]
    assert result.relabelled == {5: 1}  # the reappearing object continues as track 5
    assert [t.object_id for t in result.tracks] == [1, 2, 3, 4, 1]
    for t in range(6):
        mask = tifffile.imread(folder / mask_name(t, 6))
        assert mask.dtype == np.uint16 and mask.shape == (20, 20)
        expected = labels[t].copy()
        if t >= 4:
            expected[expected == 1] = 5
        np.testing.assert_array_equal(mask, expected)
    assert validate_ctc(folder) == list(result.tracks)


def test_read_tracks_and_line_format(tmp_path):
    write_ctc(tmp_path / "res", movie())
    tracks = read_ctc_tracks(tmp_path / "res")
    assert tracks[0] == CTCTrack(1, 0, 1, 0) and tracks[0].line() == "1 0 1 0"
    assert read_ctc_tracks(tmp_path / "res" / "res_track.txt") == tracks


def test_mask_names_follow_the_ctc_digits():
    assert mask_name(7, 10) == "mask007.tif"
    assert mask_name(999, 1000) == "mask999.tif"
    assert mask_name(7, 1001) == "mask0007.tif"
    assert mask_name(1000, 1001) == "mask1000.tif"


def test_four_digit_names_for_long_sequences(tmp_path):
    labels = np.zeros((1001, 8, 8), np.uint16)
    labels[:, 2:4, 2:4] = 1
    write_ctc(tmp_path / "long", labels)
    names = sorted(p.name for p in (tmp_path / "long").glob("mask*.tif"))
    assert names[0] == "mask0000.tif" and names[-1] == "mask1000.tif" and len(names) == 1001
    assert read_ctc_tracks(tmp_path / "long") == [CTCTrack(1, 0, 1000, 0)]


def test_parent_errors(tmp_path):
    labels = movie()
    with pytest.raises(ValueError, match="must end before its daughter 2"):
        write_ctc(tmp_path / "a", labels, parents={2: 3})
    with pytest.raises(ValueError, match="object 9"):
        write_ctc(tmp_path / "b", labels, parents={3: 9})
    with pytest.raises(ValueError, match="object 8 does not appear"):
        write_ctc(tmp_path / "c", labels, parents={8: 2})
    assert list(tmp_path.iterdir()) == []


def test_labels_must_fit_16_bits(tmp_path):
    labels = np.zeros((3, 8, 8), np.uint32)
    labels[0, 0, 0] = labels[2, 0, 0] = 65535  # its reappearance would need label 65536
    with pytest.raises(ValueError, match="16-bit"):
        write_ctc(tmp_path / "big", labels)


def test_overwrite_rules(tmp_path):
    out = tmp_path / "res"
    write_ctc(out, movie())
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_ctc(out, movie())
    single = movie()
    single[single > 1] = 0
    write_ctc(out, single, overwrite=True)
    assert read_ctc_tracks(out) == [CTCTrack(1, 0, 1, 0), CTCTrack(2, 4, 5, 1)]
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.docx").write_text("precious")
    with pytest.raises(FileExistsError, match="other content"):
        write_ctc(foreign, movie(), overwrite=True)
    assert (foreign / "chapter1.docx").read_text() == "precious"


def test_validation_catches_broken_folders(tmp_path):
    out = tmp_path / "res"
    write_ctc(out, movie(), parents={3: 2, 4: 2})
    track_file = out / "res_track.txt"
    good = track_file.read_text()

    track_file.write_text(good.replace("1 0 1 0", "1 0 2 0"))
    with pytest.raises(ValueError, match=r"mask002.tif.*listed but absent: \[1\]"):
        validate_ctc(out)
    track_file.write_text(good.replace("3 3 5 2", "3 3 5 7"))
    with pytest.raises(ValueError, match="unknown parent 7"):
        validate_ctc(out)
    track_file.write_text(good.replace("3 3 5 2", "3 2 5 2"))
    with pytest.raises(ValueError, match="parent 2 of track 3"):
        validate_ctc(out)
    track_file.write_text(good + "oops\n")
    with pytest.raises(ValueError, match="line 6"):
        validate_ctc(out)
    track_file.write_text(good)
    (out / "mask002.tif").unlink()
    with pytest.raises(ValueError, match="without gaps"):
        validate_ctc(out)


def test_interrupted_export_leaves_no_folder(tmp_path):
    class Failing:
        shape, dtype, ndim = (6, 20, 20), np.dtype(np.uint16), 3

        def __init__(self):
            self.calls = 0

        def __getitem__(self, t):
            self.calls += 1
            if self.calls > 6 + 3:  # fails while writing frame 3 (after the scan pass)
                raise OSError("disk full")
            return movie()[t]

    with pytest.raises(OSError, match="disk full"):
        write_ctc(tmp_path / "res", Failing())
    assert list(tmp_path.iterdir()) == []
