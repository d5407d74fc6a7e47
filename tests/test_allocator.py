"""Freed heap memory goes back to the system during propagation (glibc, Linux)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from miniature import miniature_model

from napari_sam2.model import VideoSession, allocator


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim is a Linux feature")
def test_holes_in_the_heap_are_given_back():
    assert allocator.enabled()
    blocks = [bytearray(b"x" * (96 << 10)) for _ in range(1500)]  # ~140 MiB on the heap, not mmap'ed
    del blocks[:-1:2]  # free every other one, but keep the top: nothing can shrink from the top
    allocator.release_free_memory()  # settle what earlier tests left
    before = _rss_mib()
    holes = [bytearray(b"y" * (96 << 10)) for _ in range(750)]
    del holes  # freed into holes, so RSS stays high without trimming...
    after_free = _rss_mib()
    allocator.release_free_memory()
    after_trim = _rss_mib()
    assert after_free - after_trim > 40, (before, after_free, after_trim)
    del blocks


def test_the_trimmer_runs_every_few_frames(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "release_free_memory", lambda: calls.append(1) or True)
    trimmer = allocator.FrameTrimmer(every=3)
    for _ in range(10):
        trimmer.frame_done()
    assert len(calls) == 3
    calls.clear()
    with VideoSession(miniature_model(image_size=64), np.zeros((20, 64, 64), np.uint8)) as session:
        session.add_points(0, 1, [[32, 32]], [1])
        assert len(list(session.propagate())) == 20
    assert len(calls) == 20 // allocator.TRIM_EVERY


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv(allocator.ENV, "0")
    allocator._malloc_trim.cache_clear()
    try:
        assert not allocator.enabled() and not allocator.release_free_memory()
    finally:
        monkeypatch.delenv(allocator.ENV)
        allocator._malloc_trim.cache_clear()
