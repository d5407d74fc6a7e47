"""Atomic outputs and the compressed label TIFF export."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import tifffile

from napari_sam2.io import write_labels_tiff
from napari_sam2.io.atomic import atomic_output


class FrameReads:
    """Label array-like that counts frame reads and can fail on a given frame."""

    def __init__(self, data: np.ndarray, fail_at: int | None = None) -> None:
        self._data = data
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim
        self.reads: list[int] = []
        self.fail_at = fail_at

    def __getitem__(self, key):
        assert isinstance(key, (int, np.integer)), f"exports must read whole frames, got {key!r}"
        if key == self.fail_at:
            raise RuntimeError("interrupted")
        self.reads.append(int(key))
        return self._data[key]

    def __len__(self):
        return self.shape[0]

    def __array__(self, *args, **kwargs):
        raise AssertionError("exports must not materialize the whole stack")


def labels_stack(shape=(5, 24, 32), high=6, dtype=np.uint16, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, high, size=shape).astype(dtype)


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------ atomic
def test_atomic_file_appears_only_on_success(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as temp:
            temp.write_bytes(b"half")
            assert temp.parent == tmp_path and temp.name.startswith(".")
            raise RuntimeError("crash")
    assert not target.exists() and leftovers(tmp_path) == []
    with atomic_output(target) as temp:
        temp.write_bytes(b"done")
    assert target.read_bytes() == b"done" and leftovers(tmp_path) == []


def test_atomic_refuses_existing_outputs(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        with atomic_output(target):
            pass
    with atomic_output(target, overwrite=True) as temp:
        temp.write_bytes(b"new")
    assert target.read_bytes() == b"new"


def test_atomic_folders(tmp_path):
    target = tmp_path / "result"
    target.mkdir()  # an empty folder (e.g. from a folder dialog) is fine without overwrite
    with atomic_output(target, directory=True) as temp:
        (temp / "a.txt").write_text("1")
    assert (target / "a.txt").read_text() == "1"
    with pytest.raises(FileExistsError):
        with atomic_output(target, directory=True):
            pass
    # a folder with content is only replaced when the caller recognizes it as its own
    with pytest.raises(FileExistsError, match="other content"):
        with atomic_output(target, overwrite=True, directory=True, replaceable=lambda p: False):
            pass
    with atomic_output(target, overwrite=True, directory=True, replaceable=lambda p: True) as temp:
        (temp / "b.txt").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"] and leftovers(tmp_path) == []
    with pytest.raises(FileExistsError, match="is a file"):
        (tmp_path / "file").write_text("x")
        with atomic_output(tmp_path / "file", overwrite=True, directory=True):
            pass


# ------------------------------------------------------------------ labels TIFF
def test_labels_tiff_round_trip_and_compression(tmp_path):
    labels = labels_stack()
    path = write_labels_tiff(tmp_path / "labels.tif", labels)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 5
        assert tif.pages.first.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert tif.series[0].axes == "TYX"
        data = tif.asarray()
    assert data.dtype == np.uint16
    np.testing.assert_array_equal(data, labels)


def test_labels_tiff_chooses_uint32_for_large_labels(tmp_path):
    labels = labels_stack(dtype=np.int64)
    labels[3, 0, 0] = 70000
    reader = FrameReads(labels)
    write_labels_tiff(tmp_path / "big.tif", reader)
    data = tifffile.imread(tmp_path / "big.tif")
    assert data.dtype == np.uint32
    np.testing.assert_array_equal(data, labels)
    # a wide source type needs one scan for the largest label, then one read to write
    assert reader.reads == list(range(5)) * 2


def test_labels_tiff_reads_narrow_sources_once(tmp_path):
    reader = FrameReads(labels_stack(dtype=np.uint16))
    write_labels_tiff(tmp_path / "once.tif", reader)
    assert reader.reads == list(range(5))


def test_labels_tiff_from_dask_and_forced_dtype(tmp_path):
    labels = labels_stack(dtype=np.int32)
    write_labels_tiff(tmp_path / "d.tif", da.from_array(labels, chunks=(1, 24, 32)), dtype="uint32")
    assert tifffile.imread(tmp_path / "d.tif").dtype == np.uint32
    write_labels_tiff(tmp_path / "u8.tif", labels, dtype=np.uint8)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "u8.tif"), labels)
    labels[2, 1, 1] = 300
    with pytest.raises(ValueError, match="frame 2 has label 300"):
        write_labels_tiff(tmp_path / "over.tif", labels, dtype="uint8")
    assert not (tmp_path / "over.tif").exists() and leftovers(tmp_path) == []
    with pytest.raises(ValueError, match="dtype"):
        write_labels_tiff(tmp_path / "x.tif", labels, dtype="float32")


def test_labels_tiff_single_frame_and_bool(tmp_path):
    mask = labels_stack((20, 20), high=2).astype(bool)
    write_labels_tiff(tmp_path / "mask.tif", mask)
    data = tifffile.imread(tmp_path / "mask.tif")
    np.testing.assert_array_equal(data, mask.astype(np.uint16))


def test_labels_tiff_interrupted_leaves_nothing(tmp_path):
    reader = FrameReads(labels_stack(), fail_at=3)
    with pytest.raises(RuntimeError, match="interrupted"):
        write_labels_tiff(tmp_path / "partial.tif", reader)
    assert list(tmp_path.iterdir()) == []


def test_labels_tiff_overwrite_and_errors(tmp_path):
    path = tmp_path / "labels.tif"
    write_labels_tiff(path, labels_stack(seed=1))
    with pytest.raises(FileExistsError, match="labels.tif"):
        write_labels_tiff(path, labels_stack(seed=2))
    np.testing.assert_array_equal(tifffile.imread(path), labels_stack(seed=1))
    write_labels_tiff(path, labels_stack(seed=2), overwrite=True)
    np.testing.assert_array_equal(tifffile.imread(path), labels_stack(seed=2))
    with pytest.raises(ValueError, match="negative"):
        write_labels_tiff(tmp_path / "neg.tif", -labels_stack(dtype=np.int16))
    with pytest.raises(ValueError, match="integers"):
        write_labels_tiff(tmp_path / "float.tif", labels_stack().astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        write_labels_tiff(tmp_path / "4d.tif", np.zeros((2, 2, 8, 8), np.uint16))


def test_labels_tiff_progress(tmp_path):
    calls = []
    write_labels_tiff(tmp_path / "p.tif", labels_stack(), progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 5) for i in range(1, 6)]


# ------------------------------------------------------------------ exports with a lineage
def division_stack() -> np.ndarray:
    """Track 1 on frames 0-2 divides into 2 and 3 (frames 3-5); 4 has no parent."""
    labels = np.zeros((6, 20, 20), np.uint16)
    labels[:3, 4:12, 4:12] = 1
    labels[3:, 2:8, 2:8] = 2
    labels[3:, 10:16, 10:16] = 3
    labels[:, 17:19, 17:19] = 4
    return labels


def test_export_ctc_and_geff_with_a_lineage(tmp_path):
    import geff

    from napari_sam2.io.ctc import read_ctc_tracks
    from napari_sam2.io.lineage import Lineage, Track
    from napari_sam2.tracking.exports import export_labels

    labels = division_stack()
    lineage = Lineage([Track(1, 0, 2), Track(2, 3, 5, 1), Track(3, 3, 5, 1), Track(4, 0, 5)])

    ctc = export_labels(labels, tmp_path / "cells_RES", "ctc", lineage=lineage)
    lines = (ctc / "res_track.txt").read_text().split("\n")
    assert {"1 0 2 0", "2 3 5 1", "3 3 5 1", "4 0 5 0"} <= set(lines)
    assert {(t.label, t.parent) for t in read_ctc_tracks(ctc)} == {(1, 0), (2, 1), (3, 1), (4, 0)}
    # a plain {daughter: mother} mapping does the same
    same = export_labels(labels, tmp_path / "same_RES", "ctc", lineage={2: 1, 3: 1, 4: 0})
    assert (same / "res_track.txt").read_text() == (ctc / "res_track.txt").read_text()

    path = export_labels(labels, tmp_path / "cells.geff", "geff", lineage=lineage)
    graph, _ = geff.read(str(path))
    node = {(int(d["t"]), int(d["label"])): n for n, d in graph.nodes(data=True)}
    assert graph.number_of_nodes() == 3 + 3 + 3 + 6
    divisions = {e for e, d in graph.edges.items() if d["division"]}
    assert divisions == {(node[(2, 1)], node[(3, 2)]), (node[(2, 1)], node[(3, 3)])}
    assert graph.nodes[node[(5, 3)]]["lineage_id"] == 1 and graph.nodes[node[(5, 4)]]["lineage_id"] == 4

    # without a lineage every object is its own track
    plain = export_labels(labels, tmp_path / "plain.geff", "geff")
    graph, _ = geff.read(str(plain))
    assert not any(d["division"] for d in graph.edges.values())
    assert "1 0 2 0\n2 3 5 0" in (export_labels(labels, tmp_path / "p_RES", "ctc") / "res_track.txt").read_text()
    # formats without a place for it ignore it
    tif = export_labels(labels, tmp_path / "l.tif", "tiff", lineage=lineage)
    np.testing.assert_array_equal(tifffile.imread(tif), labels)


def test_export_with_a_lineage_that_does_not_fit_the_labels(tmp_path):
    from napari_sam2.tracking.exports import export_labels

    for fmt, name in (("ctc", "bad_RES"), ("geff", "bad.geff")):
        with pytest.raises(ValueError, match="9 does not appear"):
            export_labels(division_stack(), tmp_path / name, fmt, lineage={9: 1})
    assert list(tmp_path.iterdir()) == []


def test_geff_format_choice_and_destination(tmp_path):
    from napari_sam2.tracking.errors import UsageError
    from napari_sam2.tracking.exports import FORMATS, check_destination, export_labels, output_name, resolve_format

    assert "geff" in FORMATS and output_name("cells", "geff") == "cells.geff"
    assert resolve_format(None, tmp_path / "cells.geff") == "geff" == resolve_format("GEFF", tmp_path / "graph")
    with pytest.raises(UsageError, match="looks like a GEFF folder"):
        resolve_format("ctc", tmp_path / "cells.geff")
    with pytest.raises(UsageError, match="looks like a TIFF file"):
        resolve_format("geff", tmp_path / "cells.tif")

    out = tmp_path / "cells.geff"
    assert check_destination(out, "geff", overwrite=False) == out
    out.mkdir()
    assert check_destination(out, "geff", overwrite=False) == out  # empty
    out.rmdir()
    export_labels(division_stack(), out, "geff")
    with pytest.raises(FileExistsError, match="overwriting"):
        check_destination(out, "geff", overwrite=False)
    assert check_destination(out, "geff", overwrite=True) == out  # a GEFF may be replaced
    with pytest.raises(FileExistsError, match="other content"):
        check_destination(_ctc(tmp_path), "geff", overwrite=True)
    other = tmp_path / "photos"
    other.mkdir()
    (other / "a.jpg").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="other content"):
        check_destination(other, "geff", overwrite=True)
    (tmp_path / "file.geff").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="is a file"):
        check_destination(tmp_path / "file.geff", "geff", overwrite=True)


def _ctc(folder):
    """A CTC result folder: not a GEFF, so a GEFF export may not replace it."""
    from napari_sam2.tracking.exports import export_labels

    return export_labels(division_stack(), folder / "c_RES", "ctc")
