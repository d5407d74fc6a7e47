"""The shared tracking layer without a viewer: plans, live sessions, axes, errors."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2.tracking.axes import AxisView, PlaneStack, TrackGeometry
from napari_sam2.tracking.errors import UsageError, option_of
from napari_sam2.tracking.exports import check_destination, resolve_format
from napari_sam2.tracking.interactive import FramePrompt, LiveSession
from napari_sam2.tracking.plan import Pass, frames_covered, plan_passes
from napari_sam2.tracking.selection import select_frames


class FakeSession:
    """Records engine calls; every object's mask is a square at its click."""

    def __init__(self, shape=(8, 10)) -> None:
        self.shape, self.calls, self.obj_ids, self.closed = shape, [], [], False

    def _mask(self, points):
        logits = np.full(self.shape, -1.0, np.float32)
        r, c = (int(v) for v in points[0])
        logits[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2] = 1.0
        return logits

    def add_points(self, frame, obj, points, labels):
        self.calls.append(("points", frame, obj))
        self.obj_ids = sorted(set(self.obj_ids) | {obj})
        return {obj: self._mask(points)}

    def clear_prompts(self, frame, obj):
        self.calls.append(("clear", frame, obj))

    def propagate(self, start, reverse, max_frames):
        def frames():
            for i in range(max_frames + 1):
                yield (start - i if reverse else start + i), {1: self._mask([(2, 2)])}

        return frames()

    def close(self):
        self.closed = True


def _plan(live, prompts, session=None):
    geometry = TrackGeometry((6, 8, 10), 0)
    plan = live.plan_sync(geometry, prompts, np.zeros((6, 8, 10), np.uint8), None, lambda f, o: None, np.uint16)
    if plan is not None and plan.session is None:
        plan.session = session  # stands in for the session the worker would make
    return geometry, plan


def test_live_session_sends_only_changes_and_forgets_cleared_prompts():
    live = LiveSession()
    live.set_model(object())
    session = FakeSession()
    click = FramePrompt(((3.0, 4.0),), (1,))
    geometry, plan = _plan(live, {(2, 1): click}, session)
    result = live.run_sync(plan)
    live.accept_sync(plan, result)
    assert session.calls == [("points", 2, 1)] and live.synced == {(2, 1): click}
    assert result.planes[(2, 1)][3, 4] == 1 and result.planes[(2, 1)][0, 0] == 0
    assert _plan(live, {(2, 1): click})[1] is None, "nothing changed: nothing to send"
    _, plan = _plan(live, {})
    live.accept_sync(plan, live.run_sync(plan))
    assert session.calls[-1] == ("clear", 2, 1) and live.synced == {}
    live.reset()
    assert session.closed and live.session is None


def test_live_session_propagation_plan_and_frames():
    live = LiveSession()
    geometry = TrackGeometry((6, 8, 10), 0)
    with pytest.raises(ValueError, match="Nothing to propagate yet"):
        live.plan_propagation(geometry, "both", None, None, np.uint16)
    live.session, live.synced = FakeSession(), {(3, 1): FramePrompt(((2.0, 2.0),), (1,))}
    plan = live.plan_propagation(geometry, "both", 9, -4, np.uint16)  # clipped, then ordered
    assert plan.passes == [Pass(3, False, 2), Pass(3, True, 3)] and plan.total == 7 and plan.objects == (1,)
    frames = [frame for frame, plane, objects in LiveSession.run_propagation(plan)]
    assert frames == [3, 4, 5, 3, 2, 1, 0]


def test_one_propagation_rule():
    assert plan_passes([0], 0, 11, "backward") == [Pass(0, False, 0)], "just the first frame, for both front ends"
    passes = plan_passes([4, 7], 0, 11, "both")
    assert [(p.first, p.last) for p in passes] == [(4, 11), (0, 4)] and frames_covered(passes) == 13
    with pytest.raises(UsageError, match="unknown direction"):
        plan_passes([1], 0, 3, "sideways")


def test_file_axes_share_the_widget_geometry():
    class Lazy:
        def __init__(self, a):
            self.a, self.shape, self.dtype, self.reads = a, a.shape, a.dtype, []

        def __getitem__(self, key):
            self.reads.append(key)
            return self.a[key]

    data = np.arange(3 * 4 * 5 * 6, dtype=np.uint16).reshape(3, 4, 5, 6)
    lazy = Lazy(data)
    chosen = select_frames(lazy, {"axes": "ZTYX"}, axis="T", at={"Z": 2})
    assert isinstance(chosen.frames, AxisView) and chosen.shape == (4, 5, 6)
    assert np.array_equal(chosen.frames[1], data[2, 1]) and len(lazy.reads) == 1
    planes = PlaneStack(data)
    assert planes.shape == (12, 5, 6) and np.array_equal(planes[5], data[1, 1])


def test_library_errors_carry_the_option_not_a_flag(tmp_path):
    with pytest.raises(UsageError) as err:
        resolve_format(None, tmp_path / "out")
    assert option_of(err.value) == "format" and "--" not in str(err.value)
    (tmp_path / "o.tif").write_bytes(b"x")
    with pytest.raises(FileExistsError) as exists:
        check_destination(tmp_path / "o.tif", "tiff", overwrite=False)
    assert option_of(exists.value) == "overwrite" and "--" not in str(exists.value)


def test_self_describing_checkpoint_loads_by_its_record_and_refuses_another_name(tmp_path):
    import torch

    from napari_sam2.model.saved import save_checkpoint
    from napari_sam2.tracking.choice import ModelChoice
    from napari_sam2.tracking.models import VariantMismatch, load_model

    from .miniature import miniature_model

    torch.set_num_threads(1)
    original = miniature_model()
    path = save_checkpoint(original, tmp_path / "mini.pt")
    model = load_model(ModelChoice(checkpoint=str(path), device="cpu"))
    assert model.config.name == original.config.name
    key = next(iter(original.state_dict()))
    assert torch.equal(model.state_dict()[key], original.state_dict()[key])
    with pytest.raises(VariantMismatch) as refused:
        load_model(ModelChoice(name="sam2.1_hiera_tiny", checkpoint=str(path), device="cpu"))
    assert refused.value.found == original.config.name and "--" not in str(refused.value)


def test_bundled_model_loads_from_the_package_never_a_download(tmp_path, monkeypatch):
    import torch

    from napari_sam2.model import bundled
    from napari_sam2.model.saved import save_checkpoint
    from napari_sam2.tracking.choice import ModelChoice
    from napari_sam2.tracking.models import load_model

    from .miniature import miniature_model

    torch.set_num_threads(1)
    original = miniature_model()
    save_checkpoint(original, tmp_path / "demo.pt")
    monkeypatch.setattr(bundled, "_WEIGHTS", tmp_path)
    model = load_model(ModelChoice(name="demo", device="cpu"))  # checkpoint "official" by default
    key = next(iter(original.state_dict()))
    assert model.config.name == original.config.name and torch.equal(model.state_dict()[key], original.state_dict()[key])
