"""Session prompts: versioned JSON round trip, validation with precise errors, replay."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from napari_sam2.io.prompts import SCHEMA_VERSION, PromptedObject, Prompt, PromptError, PromptSet
from napari_sam2.io.rle import encode_mask


def example() -> PromptSet:
    mask = np.zeros((48, 64), bool)
    mask[10:20, 30:40] = True
    prompts = PromptSet(model="sam2.1_hiera_tiny", image_size=512, frames_shape=(10, 48, 64),
                        frames_dtype="uint16", contrast_limits=(100.0, 4000.0))
    prompts.object(1, "cell 1")
    prompts.set_prompt(1, 0, points=[[5, 6], [7.5, 8]], labels=[1, 0])
    prompts.set_prompt(1, 6, box=[1, 2, 30, 40])
    prompts.object(2, "cell 2")
    prompts.set_prompt(2, 3, box=(10, 10, 20, 25), points=[(15, 17)], labels=[1])
    prompts.set_prompt(2, 0, mask=mask)
    return prompts


class RecordingSession:
    """Test double for the engine's VideoSession: records the prompt calls."""

    def __init__(self, num_frames=10, height=48, width=64):
        self.num_frames, self.height, self.width = num_frames, height, width
        self.calls: list[tuple] = []

    def add_points(self, frame, obj_id, points, labels):
        self.calls.append(("points", frame, obj_id, points, labels))
        return {}

    def add_box(self, frame, obj_id, box, points=None, labels=None):
        self.calls.append(("box", frame, obj_id, box, points, labels))
        return {}

    def add_mask(self, frame, obj_id, mask):
        self.calls.append(("mask", frame, obj_id, mask))
        return {}


def test_json_round_trip(tmp_path):
    prompts = example()
    path = prompts.to_json(tmp_path / "session.json")
    data = json.loads(path.read_text())
    assert data["version"] == SCHEMA_VERSION == 1
    assert data["frames"] == {"shape": [10, 48, 64], "dtype": "uint16"}
    assert data["objects"][0] == {
        "id": 1,
        "name": "cell 1",
        "prompts": [
            {"frame": 0, "points": [[5.0, 6.0], [7.5, 8.0]], "labels": [1, 0], "box": None, "mask_rle": None},
            {"frame": 6, "points": [], "labels": [], "box": [1.0, 2.0, 30.0, 40.0], "mask_rle": None},
        ],
    }
    assert data["objects"][1]["prompts"][0]["mask_rle"]["size"] == [48, 64]
    loaded = PromptSet.from_json(path)
    assert loaded.to_dict() == prompts.to_dict()
    mask = loaded.object(2).prompts[0].mask
    assert mask.dtype == bool and mask.sum() == 100


def test_apply_replays_in_frame_order():
    session = RecordingSession()
    assert example().apply(session) == 4
    kinds = [(c[0], c[1], c[2]) for c in session.calls]
    assert kinds == [("points", 0, 1), ("mask", 0, 2), ("box", 3, 2), ("box", 6, 1)]
    assert session.calls[0][3:] == ([[5.0, 6.0], [7.5, 8.0]], [1, 0])
    assert session.calls[2][3:] == ((10.0, 10.0, 20.0, 25.0), [[15.0, 17.0]], [1])
    assert session.calls[3][3:] == ((1.0, 2.0, 30.0, 40.0), None, None)  # box alone: no point keywords
    assert session.calls[1][3].shape == (48, 64)


def test_apply_checks_the_session_frames():
    with pytest.raises(PromptError, match=r"shape \(10, 48, 64\).*\(5, 48, 64\)"):
        example().apply(RecordingSession(num_frames=5))
    session = RecordingSession(num_frames=5)
    prompts = example()
    prompts.frames_shape = None
    with pytest.raises(PromptError, match="object 1 \\('cell 1'\\), prompt on frame 6: frame index out of range"):
        prompts.apply(session)
    assert session.calls == []  # nothing is applied when validation fails


def test_set_prompt_replaces_the_frame():
    prompts = example()
    prompts.set_prompt(1, 0, points=[[1, 1]], labels=[1])
    assert [p.frame for p in prompts.object(1).prompts] == [6, 0]
    assert prompts.object(1).prompts[-1].points == [(1.0, 1.0)]
    prompts.remove_object(2)
    assert [o.id for o in prompts.objects] == [1]


def test_validate_against_bounds():
    prompts = PromptSet()
    prompts.set_prompt(3, 2, points=[[47.4, 63.5]], labels=[1])
    prompts.validate_against((4, 48, 64))
    prompts.validate_against((4, 48, 64, 3))
    with pytest.raises(PromptError, match=r"object 3, prompt on frame 2: point \(47.4, 63.5\) lies outside the 40 x 64"):
        prompts.validate_against((4, 40, 64))
    prompts.set_prompt(3, 2, box=[-3, 0, 10, 10])
    with pytest.raises(PromptError, match="box .* lies outside"):
        prompts.validate_against((4, 48, 64))
    prompts.set_prompt(3, 2, mask=np.zeros((8, 8), bool))
    with pytest.raises(PromptError, match="mask of shape"):
        prompts.validate_against((4, 48, 64))
    with pytest.raises(PromptError, match="shape"):
        prompts.validate_against((48,))


def document() -> dict:
    return example().to_dict()


def broken(edit) -> dict:
    data = copy.deepcopy(document())
    edit(data)
    return data


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(version=2), "newer"),
        (lambda d: d.pop("version"), "version"),
        (lambda d: d.update(version="1"), "version"),
        (lambda d: d.update(model="sam3_giant"), "unknown model"),
        (lambda d: d.update(image_size=500), "multiple of 32"),
        (lambda d: d.update(frames={"shape": [10, -1, 3], "dtype": "uint16"}), "frames shape"),
        (lambda d: d.update(frames={"shape": [10, 48, 64], "dtype": "pixels"}), "not a numpy dtype"),
        (lambda d: d.update(contrast_limits=[5, 5]), "contrast_limits"),
        (lambda d: d.update(extra=1), "unknown top-level"),
        (lambda d: d.update(objects={}), "objects must be a list"),
        (lambda d: d["objects"][0].update(id=0), r"objects\[0\]: id must be a positive integer"),
        (lambda d: d["objects"][0].update(id=True), r"objects\[0\]: id must be a positive integer"),
        (lambda d: d["objects"][1].update(id=1), "object id 1 is used twice"),
        (lambda d: d["objects"][0].update(name=7), "object 1: name must be a string"),
        (lambda d: d["objects"][0]["prompts"][0].update(labels=[1]),
         r"object 1 \('cell 1'\), prompt on frame 0: 1 labels for 2 points"),
        (lambda d: d["objects"][0]["prompts"][0].update(labels=[1, 2]), "prompt on frame 0: label 1 must be 1"),
        (lambda d: d["objects"][0]["prompts"][0].update(points=[[1, 2, 3], [4, 5]]), "point 0 must be"),
        (lambda d: d["objects"][0]["prompts"][0].update(points=[[1, None], [4, 5]]), "point 0 must be"),
        (lambda d: d["objects"][0]["prompts"][0].update(frame=-1), "frame must be an integer >= 0"),
        (lambda d: d["objects"][0]["prompts"][0].update(frame=1.5), "frame must be an integer >= 0"),
        (lambda d: d["objects"][0]["prompts"][1].update(box=[30, 2, 1, 40]), "prompt on frame 6: box .* r0 <= r1"),
        (lambda d: d["objects"][0]["prompts"][1].update(box=[1, 2, 3]), "prompt on frame 6: box must be"),
        (lambda d: d["objects"][0]["prompts"][1].update(box=None), "prompt on frame 6: the prompt has no points"),
        (lambda d: d["objects"][0]["prompts"][1].update(frame=0), "more than one prompt on frame 0"),
        (lambda d: d["objects"][0]["prompts"][0].update(mask_rle=encode_mask(np.ones((4, 4), bool))),
         "cannot be combined"),
        (lambda d: d["objects"][1]["prompts"][0].update(mask_rle={"size": [48, 64], "counts": [5]}),
         r"object 2 \('cell 2'\), prompt on frame 0: invalid mask_rle"),
        (lambda d: d["objects"][0]["prompts"][0].update(colour="red"), "unknown prompt field"),
        (lambda d: d["objects"][0]["prompts"][0].pop("frame"), "needs a 'frame'"),
    ],
)
def test_invalid_documents_name_the_problem(tmp_path, edit, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(broken(edit)))
    with pytest.raises(PromptError, match=message) as info:
        PromptSet.from_json(path)
    assert "bad.json" in str(info.value)


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        PromptSet.from_json(tmp_path / "missing.json")
    (tmp_path / "garbage.json").write_text("{not json")
    with pytest.raises(PromptError, match="not valid JSON"):
        PromptSet.from_json(tmp_path / "garbage.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(PromptError, match="JSON object"):
        PromptSet.from_json(tmp_path / "list.json")
    path = example().to_json(tmp_path / "p.json")
    with pytest.raises(FileExistsError):
        example().to_json(path)
    example().to_json(path, overwrite=True)


def test_minimal_document_and_direct_construction():
    data = {"version": 1, "objects": [{"id": 5, "prompts": [{"frame": 2, "points": [[1, 2]], "labels": [1]}]}]}
    prompts = PromptSet.from_dict(data)
    assert prompts.model is None and prompts.objects[0].prompts[0].box is None
    built = PromptSet(objects=[PromptedObject(5, "", [Prompt(2, [(1.0, 2.0)], [1])])])
    assert built.to_dict() == prompts.to_dict()
    with pytest.raises(PromptError, match="no points, box or mask"):
        PromptSet().set_prompt(1, 0)
