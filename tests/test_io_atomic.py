"""Atomic outputs: a replaced folder never disappears, and what is written is synced."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from napari_sam2.io import atomic
from napari_sam2.io.atomic import atomic_output


def _folder(path: Path, names: dict[str, str]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in names.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)


def _watch_renames(monkeypatch, final: Path) -> list[bool]:
    """Record, after every rename-like call, whether the output exists."""
    seen: list[bool] = []
    replace, exchange = os.replace, atomic._exchange

    def watched_replace(a, b):
        replace(a, b)
        seen.append(final.exists())

    def watched_exchange(a, b):
        done = exchange(a, b)
        seen.append(final.exists())
        return done

    monkeypatch.setattr(atomic.os, "replace", watched_replace)
    monkeypatch.setattr(atomic, "_exchange", watched_exchange)
    return seen


def test_replacing_a_folder_leaves_no_moment_without_output(tmp_path, monkeypatch):
    final = tmp_path / "out"
    _folder(final, {"old.txt": "old", "sub/a.txt": "a"})
    seen = _watch_renames(monkeypatch, final)
    with atomic_output(final, overwrite=True, directory=True, replaceable=lambda p: True) as temp:
        _folder(temp, {"new.txt": "new"})
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # old output and temporaries gone
    assert seen and all(seen)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the exchange is a Linux/macOS system call")
def test_the_swap_is_one_system_call_here(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _folder(a, {"1": "a"})
    _folder(b, {"2": "b"})
    assert atomic._exchange(a, b)
    assert (a / "2").exists() and (b / "1").exists()


def test_without_an_exchange_the_old_folder_comes_back_on_failure(tmp_path, monkeypatch):
    final = tmp_path / "out"
    _folder(final, {"old.txt": "old"})
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    calls = []
    replace = os.replace

    def failing(a, b):
        calls.append((a, b))
        if len(calls) == 2:
            raise OSError("disk gone")
        replace(a, b)

    monkeypatch.setattr(atomic.os, "replace", failing)
    with pytest.raises(OSError, match="disk gone"):
        with atomic_output(final, overwrite=True, directory=True, replaceable=lambda p: True) as temp:
            _folder(temp, {"new.txt": "new"})
    assert [p.name for p in final.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_every_written_file_and_folder_is_synced(tmp_path, monkeypatch):
    synced: list[str] = []
    fsync = os.fsync

    def recording(fd):
        synced.append(os.path.realpath(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else str(fd))
        fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", recording)
    final = tmp_path / "out"
    with atomic_output(final, directory=True) as temp:
        _folder(temp, {"a.txt": "a", "sub/b.txt": "b"})
        written = {os.path.realpath(p) for p in (temp / "a.txt", temp / "sub/b.txt", temp / "sub", temp)}
    assert written <= set(synced)  # the files and folders, while still under the temporary name
    assert str(tmp_path) in synced  # and the rename itself
    synced.clear()
    with atomic_output(tmp_path / "one.txt") as temp:
        temp.write_text("x")
        name = os.path.realpath(temp)
    assert name in synced and str(tmp_path) in synced
