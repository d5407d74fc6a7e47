"""The lineage of a track-all run, and its place in the prompt/session file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_sam2.io.lineage import Lineage, LineageError, Track
from napari_sam2.io.prompts import PromptError, PromptSet


def _division() -> Lineage:
    """Track 1 on frames 0-3 divides into 2 and 3 (frames 4-7); 4 comes in later."""
    return Lineage([Track(1, 0, 3), Track(2, 4, 7, 1), Track(3, 4, 6, 1), Track(4, 2, 7)])


# ------------------------------------------------------------------ the API
def test_lineage_queries() -> None:
    lineage = _division()
    assert len(lineage) == 4 and lineage.ids == [1, 2, 3, 4] and 2 in lineage and 9 not in lineage
    assert [t.id for t in lineage] == [1, 2, 3, 4] and lineage[3] == Track(3, 4, 6, 1)
    assert lineage.parents() == {2: 1, 3: 1}
    assert lineage.children(1) == [2, 3] and lineage.children(2) == []
    assert lineage.divisions() == [(1, [2, 3])]
    assert lineage.roots(3) == 1 and lineage.roots(4) == 4
    lineage.check(num_frames=8)
    assert lineage.copy() == lineage and lineage.copy() is not lineage


def test_lineage_changes_during_a_run() -> None:
    lineage = Lineage()
    lineage.add(Track(np.uint32(1), np.int64(0), np.int64(0)))  # ids straight from a label array
    assert type(lineage[1].id) is int and json.dumps(lineage.to_list())
    lineage.end(1, 5)
    lineage.add(Track(2, 6, 6))
    lineage.set_parent(2, 1)
    lineage.replace(Track(3, 6, 9, 1))
    lineage.end(2, 9)
    assert lineage.divisions() == [(1, [2, 3])]
    with pytest.raises(LineageError, match="already in the lineage"):
        lineage.add(Track(2, 0, 1))
    lineage.remove(1)
    with pytest.raises(LineageError, match="parent 1, which is not a track"):
        lineage.check()


@pytest.mark.parametrize(
    "track, message",
    [
        (Track(0, 0, 1), "track ids are positive"),
        (Track(1, -1, 1), r"frames -1\.\.1"),
        (Track(1, 3, 2), r"frames 3\.\.2"),
        (Track(1, 0, 1, 1), "cannot have parent 1"),
        (Track(1, 0, 1, -2), "cannot have parent -2"),
        (Track(1, 0.5, 1), "first must be an integer"),  # type: ignore[arg-type]
        (Track(True, 0, 1), "id must be an integer"),  # type: ignore[arg-type]
    ],
)
def test_impossible_tracks_are_refused(track: Track, message: str) -> None:
    with pytest.raises(LineageError, match=message):
        Lineage([track])


def test_check() -> None:
    with pytest.raises(LineageError, match="track 2 starts on frame 3, but its parent 1 lasts until frame 3"):
        Lineage([Track(1, 0, 3), Track(2, 3, 5, 1)]).check()
    with pytest.raises(LineageError, match="track 2 ends on frame 7, but there are 6 frames"):
        _division().check(num_frames=6)
    _division().check(num_frames=8)


# ------------------------------------------------------------------ lists
def test_list_round_trip() -> None:
    lineage = _division()
    data = lineage.to_list()
    assert data[1] == {"id": 2, "first": 4, "last": 7, "parent": 1}
    assert Lineage.from_list(json.loads(json.dumps(data))) == lineage
    # parent may be left out or null
    assert Lineage.from_list([{"id": 5, "first": 0, "last": 2, "parent": None}, {"id": 6, "first": 1, "last": 1}]) == Lineage(
        [Track(5, 0, 2), Track(6, 1, 1)]
    )


@pytest.mark.parametrize(
    "data, message",
    [
        ({"id": 1}, "lineage must be a list of tracks, got dict"),
        ([[1, 0, 3]], r"lineage\[0\] must be an object"),
        ([{"id": 1, "first": 0, "last": 3, "colour": "red"}], r"lineage\[0\] has unknown keys: \['colour'\]"),
        ([{"id": 1, "first": 0}], r"lineage\[0\] has no 'last'"),
        ([{"id": "1", "first": 0, "last": 3}], r"lineage\[0\]\.id must be an integer, got '1'"),
        ([{"id": 1, "first": 0, "last": 3.0}], r"lineage\[0\]\.last must be an integer"),
        ([{"id": 1, "first": 0, "last": 3, "parent": True}], r"lineage\[0\]\.parent must be an integer"),
        ([{"id": 1, "first": 0, "last": 3}, {"id": 0, "first": 0, "last": 3}], r"lineage\[1\]: track ids are positive"),
        ([{"id": 1, "first": 4, "last": 3}], r"lineage\[0\]: track 1 has frames 4\.\.3"),
        ([{"id": 1, "first": 0, "last": 3}, {"id": 1, "first": 5, "last": 6}], r"lineage\[1\]: track 1 appears twice"),
        (
            [{"id": 2, "first": 4, "last": 6, "parent": 7}, {"id": 1, "first": 0, "last": 3}],
            r"lineage\[0\]: track 2 has parent 7, which is not a track",
        ),
        (
            [{"id": 1, "first": 0, "last": 3}, {"id": 3, "first": 2, "last": 6, "parent": 1}],
            r"lineage\[1\]: track 3 starts on frame 2, but its parent 1 lasts until frame 3",
        ),
        ([{"id": 1, "first": 0, "last": "x" * 10_000}], r"got 'xxx.*\.\.\.$"),  # long values are cut
    ],
)
def test_from_list_names_the_entry(data, message: str) -> None:
    with pytest.raises(LineageError, match=message):
        Lineage.from_list(data)


# ------------------------------------------------------------------ the session file
def _prompts(lineage: Lineage | None = None) -> PromptSet:
    prompts = PromptSet(frames_shape=(8, 16, 16), frames_dtype="uint8", lineage=lineage)
    prompts.set_prompt(1, 0, points=[(4, 4)], labels=[1])
    prompts.set_prompt(4, 2, box=(1, 1, 6, 6))
    return prompts


def test_session_file_round_trip_with_lineage(tmp_path) -> None:
    prompts = _prompts(_division())  # tracks 2 and 3 have no prompts: they came from a division
    path = prompts.to_json(tmp_path / "s.json")
    data = json.loads(path.read_text())
    assert data["version"] == 1 and data["lineage"] == _division().to_list()
    back = PromptSet.from_json(path, shape=(8, 16, 16))
    assert back.lineage == _division() and back == prompts
    assert PromptSet.from_json(path).lineage == _division()


def test_session_file_without_lineage_is_unchanged(tmp_path) -> None:
    path = _prompts().to_json(tmp_path / "s.json")
    data = json.loads(path.read_text())
    assert "lineage" not in data  # what every earlier reader expects
    assert PromptSet.from_json(path).lineage is None
    # an older file, written before there was a lineage
    old = {"version": 1, "model": None, "image_size": None, "frames": None, "contrast_limits": None,
           "objects": [{"id": 3, "name": "cell", "prompts": [{"frame": 1, "points": [[2, 2]], "labels": [1]}]}]}
    (tmp_path / "old.json").write_text(json.dumps(old))
    read = PromptSet.from_json(tmp_path / "old.json", shape=(4, 8, 8))
    assert read.lineage is None and read.objects[0].id == 3
    assert PromptSet.from_dict({**old, "lineage": None}).lineage is None


@pytest.mark.parametrize(
    "lineage, message",
    [
        ("tracks", "lineage must be a list of tracks, got str"),
        ([{"id": 1, "first": 0, "last": 3}, {"id": 2, "first": 3, "last": 5, "parent": 1}],
         r"lineage\[1\]: track 2 starts on frame 3"),
        ([{"id": 2**32, "first": 0, "last": 3}], "label values up to"),
        ([{"id": 1, "first": 0, "last": 8}], "track 1 ends on frame 8, but there are 8 frames"),
    ],
)
def test_broken_lineage_in_a_file_is_named(tmp_path, lineage, message: str) -> None:
    data = _prompts().to_dict()
    data["lineage"] = lineage
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PromptError, match=message) as err:
        PromptSet.from_json(path, shape=(8, 16, 16))
    assert str(err.value).startswith(str(path))


def test_lineage_frames_must_fit_the_stack() -> None:
    prompts = _prompts(_division())
    prompts.validate_against((8, 16, 16))
    with pytest.raises(PromptError, match="lineage: track 2 ends on frame 7, but there are 7 frames"):
        PromptSet(objects=prompts.objects, lineage=prompts.lineage).validate_against((7, 16, 16))
    prompts.lineage = Lineage([Track(2, 4, 6, 1)])  # a parent that is not a track
    with pytest.raises(PromptError, match="lineage: track 2 has parent 1"):
        prompts.validate()
    with pytest.raises(PromptError, match="lineage: track 2 has parent 1"):
        prompts.to_dict()
    prompts.lineage = {2: 1}  # type: ignore[assignment]
    with pytest.raises(PromptError, match="must be a Lineage"):
        prompts.validate()
