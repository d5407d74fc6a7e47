"""Prompt files from anywhere: every malformed document gives a PromptError, never a crash.

Hand-written cases for each known way to break the parser, then hypothesis: thousands
of random JSON documents and random mutations of a valid one. Only ``PromptError`` may
escape, and parsing never allocates more than a small multiple of the frame size.
"""

from __future__ import annotations

import copy
import json
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_sam2.io.prompts import MAX_OBJECT_ID, PromptError, PromptSet
from napari_sam2.io.rle import decode_mask, encode_mask

SHAPE = (10, 48, 64)


def valid() -> dict:
    mask = np.zeros(SHAPE[1:], bool)
    mask[10:20, 30:40] = True
    return {
        "version": 1,
        "model": "sam2.1_hiera_tiny",
        "image_size": 512,
        "frames": {"shape": list(SHAPE), "dtype": "uint16"},
        "contrast_limits": [100.0, 4000.0],
        "objects": [
            {"id": 1, "name": "cell 1", "prompts": [
                {"frame": 0, "points": [[5.0, 6.0], [7.5, 8.0]], "labels": [1, 0], "box": None, "mask_rle": None},
                {"frame": 6, "points": [], "labels": [], "box": [1.0, 2.0, 30.0, 40.0], "mask_rle": None},
            ]},
            {"id": 2, "name": "cell 2", "prompts": [
                {"frame": 0, "points": None, "labels": None, "box": None, "mask_rle": encode_mask(mask)},
                {"frame": 3, "points": [[15.0, 17.0]], "labels": [1], "box": [10, 10, 20, 25], "mask_rle": None},
            ]},
        ],
    }


def first_prompt(d: dict) -> dict:
    return d["objects"][0]["prompts"][0]


def mask_prompt(d: dict) -> dict:
    return d["objects"][1]["prompts"][0]


CASES = [
    (lambda d: mask_prompt(d)["mask_rle"].update(counts=3072), r"object 2 \('cell 2'\), prompt on frame 0: invalid mask_rle: RLE counts must be"),
    (lambda d: mask_prompt(d)["mask_rle"].update(counts=[1.5, 3070.5]), "prompt on frame 0: invalid mask_rle"),
    (lambda d: mask_prompt(d)["mask_rle"].update(counts=[True, 3071]), "prompt on frame 0: invalid mask_rle"),
    (lambda d: mask_prompt(d)["mask_rle"].update(size=[48.0, 64]), "RLE size must be"),
    (lambda d: mask_prompt(d)["mask_rle"].update(size=[-48, -64]), "RLE size must be"),
    (lambda d: mask_prompt(d)["mask_rle"].update(counts="o" * 40 + "0"), "too large"),
    (lambda d: mask_prompt(d).update(mask_rle=[48, 64]), "mask_rle must be"),
    (lambda d: mask_prompt(d).update(mask_rle=False), "mask_rle must be"),
    # a mask of 10^10 pixels in a few bytes: refused before anything is allocated
    (lambda d: mask_prompt(d).update(mask_rle={"size": [100000, 100000], "counts": [10**10]}),
     r"object 2 \('cell 2'\), prompt on frame 0: invalid mask_rle: the mask is 100000 x 100000 but the frame is 48 x 64"),
    (lambda d: first_prompt(d).update(points=[[10**300, 5], [1, 2]]), r"object 1 \(.cell 1.\), prompt on frame 0: point \(1000.*\.\.\., 5\) lies outside"),
    (lambda d: first_prompt(d).update(points=[[int("9" * 400), 5], [1, 2]]), "point 0 must be"),
    (lambda d: d["objects"][0]["prompts"][1].update(box=[0, 0, 10**400, 5]), "prompt on frame 6: box must be"),
    (lambda d: d.update(contrast_limits=[0, 10**400]), "contrast_limits"),
    (lambda d: first_prompt(d).update(points=False), "prompt on frame 0: points must be a list"),
    (lambda d: first_prompt(d).update(labels=0), "prompt on frame 0: labels must be a list"),
    (lambda d: first_prompt(d).update(box=False), "prompt on frame 0: box must be"),
    (lambda d: d["objects"][0].update(prompts=False), "object 1: prompts must be a list"),
    (lambda d: d["objects"][0].update(name=False), "object 1: name must be a string"),
    (lambda d: d.update(objects=False), "objects must be a list"),
    (lambda d: d["objects"][0].update(id=2**32), r"objects\[0\]: id must be a positive integer up to 4294967295"),
    (lambda d: d["objects"][0].update(id=10**30), r"objects\[0\]: id must be"),
    (lambda d: first_prompt(d).update(frame=10**30), "frame index out of range for 10 frames"),
    (lambda d: first_prompt(d).update(frame="0"), "frame must be an integer"),
    (lambda d: d.update(image_size=2**40), "image_size"),
    (lambda d: d.update(frames={"shape": [10, 48, 64], "dtype": "(99999999999999999)f8"}), "not a numpy dtype"),
    (lambda d: d.update(frames={"shape": [10, 480, 640], "dtype": "uint16"}), "were made on frames of shape"),
    (lambda d: d.update(version=10**30), "newer"),
]


@pytest.mark.parametrize("edit, message", CASES)
def test_each_known_breakage_is_a_prompt_error(tmp_path, edit, message):
    data = valid()
    edit(data)
    path = tmp_path / "bad.prompts.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PromptError, match=message) as info:
        PromptSet.from_json(path, shape=SHAPE)
    assert str(info.value).startswith(str(path))


def test_the_valid_document_reads_with_and_without_a_shape(tmp_path):
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(valid()))
    assert PromptSet.from_json(path, shape=SHAPE).to_dict() == PromptSet.from_json(path).to_dict()
    assert PromptSet.from_json(path, shape=(*SHAPE, 3)).objects[1].prompts[0].mask.sum() == 100
    data = valid()
    data["objects"][0]["id"] = MAX_OBJECT_ID  # the largest label value is a valid id
    assert PromptSet.from_dict(data, SHAPE).objects[0].id == 2**32 - 1


def test_masks_without_any_frame_size_must_agree_and_stay_bounded():
    data = valid()
    data["frames"] = None
    data["objects"][0]["prompts"][1] = {"frame": 6, "mask_rle": encode_mask(np.ones((8, 8), bool))}
    with pytest.raises(PromptError, match="the mask is 48 x 64 but the frame is 8 x 8"):
        PromptSet.from_dict(data)
    data["objects"][0]["prompts"][1] = {"frame": 6, "mask_rle": {"size": [2**20, 2**20], "counts": [2**40]}}
    with pytest.raises(PromptError, match="larger than"):
        PromptSet.from_dict(data)


@pytest.mark.parametrize("text", ["[" * 100000 + "]" * 100000, '{"version": ' + "9" * 5000 + "}", "\udcff", "{"])
def test_unreadable_json_is_a_prompt_error(tmp_path, text):
    path = tmp_path / "p.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(PromptError, match="p.json is not valid JSON"):
        PromptSet.from_json(path)


# ----------------------------------------------------------------------------- fuzzing
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2, 5, 48, 64, 2**32, 10**400, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["version", "objects", "frame", "points", "mask_rle", "size", "counts", "uint8", "0", "P1"]),
)
_json = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(
            st.sampled_from(["version", "model", "image_size", "frames", "contrast_limits", "objects", "id", "name",
                             "prompts", "frame", "points", "labels", "box", "mask_rle", "size", "counts", "shape",
                             "dtype", "x"]),
            children,
            max_size=6,
        ),
    ),
    max_leaves=25,
)


def _paths(node, prefix=()):
    """Every position in a JSON tree, as a tuple of keys / indices."""
    yield prefix
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _paths(child, prefix + (key,))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from _paths(child, prefix + (i,))


def _set(tree, path, value):
    if not path:
        return value
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return tree


def _parse(data, shape):
    """Parse ``data``; fail the test on anything but PromptError or on a large allocation.

    tracemalloc sees numpy's buffers too, so a mask decoded at a size from the file
    instead of the frame's would show here.
    """
    tracemalloc.start()
    try:
        PromptSet.from_dict(data, shape)
    except PromptError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    height, width = shape[-2:] if len(shape) == 2 else shape[1:3]
    # a few frame-sized masks at most, plus the parser's own small objects
    assert peak < 8 * height * width + 2_000_000, f"parsing allocated {peak} bytes"


# about 2000 documents in all; CI time matters more than more examples of the same shapes
_FUZZ = settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@_FUZZ
@given(data=_json)
def test_random_documents_only_raise_prompt_errors(data):
    _parse(data, SHAPE)


@_FUZZ
@given(st.data())
def test_mutated_documents_only_raise_prompt_errors(data):
    document = valid()
    for _ in range(data.draw(st.integers(1, 3))):
        paths = list(_paths(document))
        where = data.draw(st.sampled_from(paths))
        action = data.draw(st.sampled_from(["replace", "drop", "duplicate"]))
        if action == "replace" or not where:
            document = _set(document, where, data.draw(_json))
        else:
            parent = document
            for key in where[:-1]:
                parent = parent[key]
            if action == "drop":
                del parent[where[-1]]
            elif isinstance(parent, list):
                parent.append(copy.deepcopy(parent[where[-1]]))
            else:
                parent[where[-1]] = [copy.deepcopy(parent[where[-1]])]
        if not isinstance(document, (dict, list)):
            break
    _parse(document, SHAPE)


@settings(_FUZZ, max_examples=400)
@given(size=st.lists(st.integers(-2, 2**40), min_size=0, max_size=3) | _json,
       counts=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=130), max_size=40)
       | st.lists(st.integers(-(2**64), 2**64), max_size=8) | _json)
def test_random_masks_only_raise_prompt_errors(size, counts):
    document = valid()
    document["objects"][1]["prompts"][0]["mask_rle"] = {"size": size, "counts": counts}
    _parse(document, SHAPE)
    with pytest.raises(ValueError):  # never anything else, and never a mask of another size
        mask = decode_mask({"size": size, "counts": counts}, shape=SHAPE[1:])
        assert mask.shape == SHAPE[1:]
        raise ValueError("decoded")
