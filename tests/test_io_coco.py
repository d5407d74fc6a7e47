"""COCO RLE: our encoder against pycocotools (exact strings), and the JSON export read back."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO

from napari_sam2.io import read_coco_rle, write_coco_rle
from napari_sam2.io.rle import (
    counts_to_string,
    decode_mask,
    encode_labels,
    encode_mask,
    rle_area,
    rle_bbox,
    string_to_counts,
)


def random_masks(count=200, seed=0):
    rng = np.random.default_rng(seed)
    for trial in range(count):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        kind = trial % 5
        if kind == 0:
            mask = rng.random((h, w)) < 0.5
        elif kind == 1:
            mask = np.zeros((h, w), bool)
        elif kind == 2:
            mask = np.ones((h, w), bool)
        elif kind == 3:
            mask = np.zeros((h, w), bool)
            r, c = rng.integers(0, h), rng.integers(0, w)
            mask[r : r + rng.integers(1, 12), c : c + rng.integers(1, 12)] = True
        else:  # long runs that wrap across columns
            mask = np.zeros((h, w), bool)
            mask.T.flat[rng.integers(0, h * w) :] = True
        yield mask


def reference_rle(mask):
    return coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))


def test_compressed_rle_equals_pycocotools():
    for mask in random_masks():
        ours, ref = encode_mask(mask), reference_rle(mask)
        assert ours["size"] == list(ref["size"])
        assert ours["counts"] == ref["counts"].decode("ascii")
        assert np.array_equal(coco_mask.decode(ours).astype(bool), mask)
        assert rle_area(ours) == int(coco_mask.area(ref))
        assert rle_bbox(ours) == coco_mask.toBbox(ref).tolist()


def test_uncompressed_counts_are_column_major():
    mask = np.zeros((3, 4), bool)
    mask[0, 1] = mask[1, 1] = mask[2, 3] = True
    rle = encode_mask(mask, compressed=False)
    # column-major: column 0 (3 px) + row 0 of column 1 are background
    assert rle == {"size": [3, 4], "counts": [3, 2, 6, 1]}
    decoded = coco_mask.decode(coco_mask.frPyObjects(rle, 3, 4))
    assert np.array_equal(decoded.astype(bool), mask)
    assert encode_mask(np.ones((2, 2), bool), compressed=False)["counts"] == [0, 4]


def test_string_counts_round_trip_with_large_and_negative_deltas():
    counts = [0, 5, 100000, 3, 7, 250000, 1, 1, 0, 2]
    text = counts_to_string(counts)
    assert string_to_counts(text) == counts
    rle = {"size": [1, sum(counts)], "counts": text}
    assert np.array_equal(decode_mask(rle), coco_mask.decode(rle).astype(bool))


def test_encode_labels_matches_one_mask_at_a_time():
    labels = np.random.default_rng(1).integers(0, 6, (33, 27))
    labels[labels == 4] = 0  # an absent id
    encoded = encode_labels(labels)
    assert sorted(encoded) == [1, 2, 3, 5]
    for obj, rle in encoded.items():
        assert rle["counts"] == reference_rle(labels == obj)["counts"].decode("ascii")
    assert encode_labels(np.zeros((4, 4), int)) == {}


def test_decode_rejects_bad_rles():
    with pytest.raises(ValueError, match="sum"):
        decode_mask({"size": [2, 2], "counts": [1, 1]})
    with pytest.raises(ValueError, match="size"):
        decode_mask({"counts": [4]})
    with pytest.raises(ValueError):
        decode_mask({"size": [2, 2], "counts": "\x7f"})


@pytest.mark.parametrize("compressed", [True, False])
def test_json_export_reads_back_with_pycocotools(tmp_path, compressed):
    rng = np.random.default_rng(2)
    labels = np.zeros((4, 30, 40), np.uint16)
    labels[:, 5:15, 5:20] = 1
    labels[1:3, 18:28, 22:39] = 7
    labels[3] = np.where(rng.random((30, 40)) < 0.3, 3, labels[3])
    path = write_coco_rle(
        tmp_path / "masks.json", labels, compressed=compressed, names={1: "cell", 7: "bud"}
    )
    coco = COCO(str(path))
    assert len(coco.getImgIds()) == 4
    seen = set()
    for annotation in coco.loadAnns(coco.getAnnIds()):
        frame = coco.imgs[annotation["image_id"]]["frame_index"]
        obj = annotation["object_id"]
        mask = coco.annToMask(annotation).astype(bool)
        np.testing.assert_array_equal(mask, labels[frame] == obj)
        assert annotation["area"] == int(mask.sum())
        rows, cols = np.nonzero(mask)
        assert annotation["bbox"] == [cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1]
        assert isinstance(annotation["segmentation"]["counts"], str if compressed else list)
        seen.add((frame, obj))
    assert seen == {(t, o) for t in range(4) for o in np.unique(labels[t]) if o}  # absent objects: no entry
    document = json.loads(path.read_text())
    assert {o["id"]: o["name"] for o in document["objects"]} == {1: "cell", 3: "object 3", 7: "bud"}
    back, names = read_coco_rle(path)
    np.testing.assert_array_equal(back, labels)
    assert names[7] == "bud"


def test_json_export_errors(tmp_path):
    labels = np.ones((2, 8, 8), np.uint8)
    write_coco_rle(tmp_path / "a.json", labels)
    with pytest.raises(FileExistsError):
        write_coco_rle(tmp_path / "a.json", labels)
    write_coco_rle(tmp_path / "a.json", labels * 2, overwrite=True)
    assert read_coco_rle(tmp_path / "a.json")[0].max() == 2
    with pytest.raises(ValueError, match="image_names"):
        write_coco_rle(tmp_path / "b.json", labels, image_names=["only one"])
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(ValueError, match="junk.json"):
        read_coco_rle(tmp_path / "junk.json")
