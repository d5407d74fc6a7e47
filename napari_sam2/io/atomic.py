"""Atomic outputs: write under a hidden temporary name, then rename into place.

An export interrupted half-way (crash, full disk, cancelled job) must never leave a
file or folder that looks complete. Everything is written next to the destination
(same file system, so the final ``os.replace`` is atomic) and only renamed once done.
Files are flushed to disk (fsync) before the rename and the folder entry after it, so
a power cut cannot leave a renamed but empty output. A folder that replaces an older
one is swapped with it in one step where the system can (Linux ``renameat2`` with
``RENAME_EXCHANGE``, macOS ``renamex_np`` with ``RENAME_SWAP``), so readers never see a
moment without output; elsewhere the old folder is moved aside just before.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Callable, Iterator

__all__ = ["atomic_output", "check_output"]


def check_output(path: str | os.PathLike, overwrite: bool) -> Path:
    """Raise ``FileExistsError`` if ``path`` exists and ``overwrite`` is false."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
    return path


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike,
    overwrite: bool = False,
    directory: bool = False,
    replaceable: Callable[[Path], bool] | None = None,
) -> Iterator[Path]:
    """Yield a temporary path to write to; it becomes ``path`` only if the block succeeds.

    With ``directory`` the temporary path is an (empty) folder. An existing output is
    only replaced with ``overwrite=True``; an existing non-empty folder additionally
    has to pass ``replaceable`` (e.g. "contains only files we write"), so a mistyped
    destination can never wipe unrelated data. On error the temporary output is removed.
    """
    final = Path(path)
    exists = final.exists() or final.is_symlink()
    empty_folder = directory and exists and final.is_dir() and not final.is_symlink() and not any(final.iterdir())
    if not empty_folder:  # an empty folder (e.g. made by a "choose folder" dialog) holds nothing to lose
        check_output(final, overwrite)
    if exists and final.is_dir() and not final.is_symlink() and any(final.iterdir()):
        if not directory or replaceable is None or not replaceable(final):
            raise FileExistsError(
                f"{final} is a folder with other content; refusing to replace it. Choose a new or empty folder."
            )
    elif exists and final.is_dir() != directory:
        kind = "folder" if final.is_dir() else "file"
        raise FileExistsError(f"{final} exists and is a {kind}; refusing to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    temp = final.parent / f".{final.name}.partial-{token}"
    if directory:
        temp.mkdir()
    try:
        yield temp
        _fsync_tree(temp)
        if directory and final.is_dir() and not final.is_symlink():
            # a folder with content cannot be replaced by rename: swap the two in one step
            if _exchange(temp, final):
                _fsync_dir(final.parent)
                shutil.rmtree(temp, ignore_errors=True)  # temp now holds the old output
                return
            trash = final.parent / f".{final.name}.old-{token}"
            os.replace(final, trash)
            try:
                os.replace(temp, final)
            except BaseException:
                os.replace(trash, final)
                raise
            _fsync_dir(final.parent)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(temp, final)
            _fsync_dir(final.parent)
    except BaseException:
        _remove(temp)
        raise


def _fsync_tree(path: Path) -> None:
    """Flush a file, or every file and folder under a folder, to the disk."""
    if path.is_file():
        with open(path, "rb+") as handle:
            os.fsync(handle.fileno())
    elif path.is_dir():
        for root, dirs, files in os.walk(path, topdown=False):
            for name in files:
                file = os.path.join(root, name)
                if not os.path.islink(file):
                    with open(file, "rb+") as handle:
                        os.fsync(handle.fileno())
            _fsync_dir(Path(root))


def _fsync_dir(path: Path) -> None:
    """Flush a folder's entries (renames, new files); not possible on Windows."""
    if sys.platform == "win32":
        return
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # Linux renameat2 flag; macOS renamex_np's RENAME_SWAP has the same value


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths where the system supports it; False if it cannot."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return False
    encoded = os.fsencode(a), os.fsencode(b)
    if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):
        result = libc.renameat2(_AT_FDCWD, encoded[0], _AT_FDCWD, encoded[1], _RENAME_EXCHANGE)
    elif sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        result = libc.renamex_np(encoded[0], encoded[1], _RENAME_EXCHANGE)
    else:
        return False
    return result == 0  # e.g. EINVAL on a file system without exchange: fall back


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
