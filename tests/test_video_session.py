"""VideoSession behaviour beyond parity: errors, cancelling, reuse, bounded memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from miniature import miniature_model

from napari_sam2.model import VideoSession


class MovingBlob:
    """A lazy (T, H, W) uint8 stack: a bright disk drifting over noise, made per frame."""

    def __init__(self, num_frames: int, size: int = 64) -> None:
        self.shape = (num_frames, size, size)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 3
        self.reads = 0

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        t = int(index)
        self.reads += 1
        size = self.shape[1]
        rng = np.random.default_rng(t)
        yy, xx = np.mgrid[:size, :size]
        cy = size / 2 + size / 4 * np.sin(t / 20)
        cx = size / 2 + size / 4 * np.cos(t / 25)
        img = rng.integers(0, 60, (size, size)).astype(np.float32)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < (size / 6) ** 2] += 180
        return img.astype(np.uint8)


@pytest.fixture(scope="module")
def model():
    return miniature_model()


@pytest.fixture
def session(model):
    s = VideoSession(model, MovingBlob(12))
    yield s
    s.close()


def snapshot(session: VideoSession):
    return (
        session.obj_ids,
        {o: session.prompted_frames(o) for o in session.obj_ids},
        {o: session.tracked_frames(o) for o in session.obj_ids},
    )


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: s.add_points(12, 1, [[5, 5]], [1]), "out of range"),
        (lambda s: s.add_points(-1, 1, [[5, 5]], [1]), "out of range"),
        (lambda s: s.add_points(0, 0, [[5, 5]], [1]), "positive integers"),
        (lambda s: s.add_points(0, -3, [[5, 5]], [1]), "positive integers"),
        (lambda s: s.add_points(0, 1.5, [[5, 5]], [1]), "positive integers"),
        (lambda s: s.add_points(0, 1, [[5, 5], [6, 6]], [1]), "2 points but 1 labels"),
        (lambda s: s.add_points(0, 1, [], []), "no points"),
        (lambda s: s.add_points(0, 1, [[70, 5]], [1]), "outside"),
        (lambda s: s.add_points(0, 1, [[5, 5]], [2]), "labels must be 1"),
        (lambda s: s.add_points(0, 1, [[np.nan, 5]], [1]), "finite"),
        (lambda s: s.add_box(0, 1, (10, 10, 10, 30)), "zero area"),
        (lambda s: s.add_box(0, 1, (10, 10, 100, 30)), "outside"),
        (lambda s: s.add_box(0, 1, (1, 2, 3)), "four numbers"),
        (lambda s: s.add_mask(0, 1, np.ones((32, 32), bool)), "shape"),
        (lambda s: s.add_mask(0, 1, np.full((64, 64), "x")), "boolean or numeric"),
        (lambda s: s.propagate(start=99), "out of range"),
        (lambda s: s.propagate(max_frames=-1), "non-negative"),
        (lambda s: s.remove_object(7), "no object 7"),
    ],
)
def test_bad_input_is_rejected_and_changes_nothing(session, call, message):
    session.add_points(0, 1, [[32, 32]], [1])
    before = snapshot(session)
    with pytest.raises(ValueError, match=message):
        call(session)
    assert snapshot(session) == before


def test_propagating_without_prompts_is_a_clear_error(model):
    with VideoSession(model, MovingBlob(5)) as s:
        with pytest.raises(ValueError, match="nothing to propagate"):
            s.propagate()


def test_object_without_prompts_left_is_named(session):
    session.add_points(0, 1, [[32, 32]], [1])
    session.add_points(0, 2, [[10, 10]], [1])
    session.clear_prompts(0, 2)
    before = snapshot(session)
    with pytest.raises(ValueError, match="object 2 has no prompts"):
        session.propagate()
    assert snapshot(session) == before


def test_outputs_cover_every_object_on_the_frame(session):
    out = session.add_points(0, 1, [[32, 32]], [1])
    assert set(out) == {1}
    out = session.add_box(0, 2, (5, 5, 20, 25))
    assert set(out) == {1, 2}
    for logits in out.values():
        assert logits.shape == (64, 64) and logits.dtype == np.float32
    out = session.add_mask(3, 4, np.pad(np.ones((10, 10), bool), 27))
    assert set(out) == {4}
    assert session.prompted_frames(4) == [3]


def test_closing_propagation_keeps_finished_frames(model):
    frames = MovingBlob(10)
    with VideoSession(model, frames) as s:
        s.add_points(0, 1, [[32, 32]], [1])
        gen = s.propagate()
        seen = {}
        for frame, out in gen:
            seen[frame] = out[1]
            if len(seen) == 4:
                break
        gen.close()
        assert s.tracked_frames(1) == [0, 1, 2, 3]
        # resuming recomputes nothing that was finished: same results, and from frame 4 on
        calls = []
        original = s.model.condition_on_memory
        s.model.condition_on_memory = lambda *a, **k: calls.append(1) or original(*a, **k)
        try:
            again = dict(s.propagate())
        finally:
            del s.model.condition_on_memory
        assert len(calls) == 6  # frames 4..9 only
        for frame, logits in seen.items():
            np.testing.assert_array_equal(again[frame][1], logits)


def test_late_object_does_not_recompute_existing_ones(model):
    with VideoSession(model, MovingBlob(8)) as s:
        s.add_points(0, 1, [[32, 32]], [1])
        first = dict(s.propagate())
        s.add_points(0, 2, [[10, 12]], [1])
        batches = []
        original = s.model.condition_on_memory
        s.model.condition_on_memory = lambda f, m: batches.append(m.feats.shape[0]) or original(f, m)
        try:
            second = dict(s.propagate())
        finally:
            del s.model.condition_on_memory
        assert batches == [1] * 7  # only object 2, on frames 1..7
        for frame in first:
            np.testing.assert_array_equal(first[frame][1], second[frame][1])
            assert set(second[frame]) == {1, 2}


def test_objects_sharing_a_layout_are_batched(model):
    with VideoSession(model, MovingBlob(6)) as s:
        s.add_points(0, 1, [[32, 32]], [1])
        s.add_points(0, 2, [[10, 12]], [1])
        s.add_points(0, 3, [[50, 50]], [1])
        batches = []
        original = s.model.condition_on_memory
        s.model.condition_on_memory = lambda f, m: batches.append(m.feats.shape[0]) or original(f, m)
        try:
            list(s.propagate())
        finally:
            del s.model.condition_on_memory
        assert batches == [3] * 5


def test_click_on_propagated_frame_reuses_conditioned_features(model):
    frames = MovingBlob(8)
    with VideoSession(model, frames) as s:
        s.add_points(0, 1, [[32, 32]], [1])
        list(s.propagate())
        reads = frames.reads
        calls = []
        original = s.model.condition_on_memory
        s.model.condition_on_memory = lambda *a, **k: calls.append(1) or original(*a, **k)
        try:
            out = s.add_points(5, 1, [[30, 30], [5, 5]], [1, 0])
        finally:
            del s.model.condition_on_memory
        assert calls == [] and frames.reads == reads  # no memory attention, no image encoder
        assert set(out) == {1}
        assert s.prompted_frames(1) == [0, 5]


def test_reset_and_remove(session):
    session.add_points(0, 1, [[32, 32]], [1])
    session.add_points(2, 2, [[10, 10]], [1])
    list(session.propagate())
    session.remove_object(1)
    assert session.obj_ids == [2]
    session.reset()
    assert session.obj_ids == []
    session.add_points(1, 5, [[20, 20]], [1])
    frames = [f for f, _ in session.propagate()]
    assert frames == list(range(1, 12))


def test_one_frame_session_is_image_mode(model):
    image = MovingBlob(1)[0]
    with VideoSession(model, image) as s:
        assert s.num_frames == 1
        out = s.add_points(0, 1, [[32, 32]], [1])
        assert out[1].shape == (64, 64)
        assert [f for f, _ in s.propagate()] == [0]


def test_records_spill_to_disk_and_come_back_exactly(model):
    with VideoSession(model, MovingBlob(40), record_ram_bytes=8 << 10) as s:
        s.add_points(0, 1, [[32, 32]], [1])
        first = dict(s.propagate())
        assert s._records.spilled > 20 and s._records.ram_bytes <= 8 << 10
        for frame in range(1, 40):
            record = s._records.get((1, frame))  # most of these come back from the file
            np.testing.assert_array_equal(s._to_video(record.pred_masks), first[frame][1])
        # a correction far back in time reads its memories from the file too
        out = s.add_points(3, 1, [[33, 33]], [1])
        assert out[1].shape == (64, 64)


MEMORY_PROBE = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {tests!r})
    import numpy as np
    from miniature import miniature_model
    from test_video_session import MovingBlob
    from napari_sam2.model import VideoSession

    frames = int(sys.argv[1])
    model = miniature_model(image_size=256)
    session = VideoSession(model, MovingBlob(frames, 256), feature_cache_bytes=4 << 20,
                           conditioned_cache_bytes=2 << 20, record_ram_bytes=4 << 20)
    session.add_points(0, 1, [[128, 128]], [1])
    session.add_points(0, 2, [[40, 40]], [1])
    session.add_points(0, 3, [[200, 60]], [1])
    for frame, out in session.propagate():
        pass
    record = session._records.get((1, frames - 1))
    # VmHWM: this address space's peak (ru_maxrss would include the forking parent's peak)
    with open("/proc/self/status") as fh:
        peak_kb = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    print(json.dumps({{"peak_kb": peak_kb,
                       "spilled": session._records.spilled, "record_bytes": record.nbytes()}}))
    """
)


def _peak_memory(frames: int, tmp_path) -> dict:
    script = tmp_path / "probe.py"
    script.write_text(MEMORY_PROBE.format(tests=os.path.dirname(__file__)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, str(script), str(frames)], capture_output=True, text=True, env=env, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_peak_memory_does_not_grow_with_the_number_of_frames(tmp_path):
    small = _peak_memory(300, tmp_path)
    large = _peak_memory(1200, tmp_path)
    assert large["spilled"] > small["spilled"] > 0
    growth = large["peak_kb"] / small["peak_kb"] - 1
    # sanity of the test itself: keeping every record in RAM would exceed the bound
    kept_in_ram = 3 * (1200 - 300) * large["record_bytes"] / 1024
    assert kept_in_ram > 0.10 * small["peak_kb"]
    print(f"peak RSS 300 frames {small['peak_kb'] / 1024:.1f} MiB, 1200 frames {large['peak_kb'] / 1024:.1f} MiB, growth {growth:.1%}")
    assert growth < 0.10
