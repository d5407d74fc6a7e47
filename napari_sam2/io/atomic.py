"""Atomic outputs: write under a hidden temporary name, then rename into place.

An export interrupted half-way (crash, full disk, cancelled job) must never leave a
file or folder that looks complete. Everything is written next to the destination
(same file system, so the final ``os.replace`` is atomic) and only renamed once done.
"""

from __future__ import annotations

import contextlib
import os
import shutil
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
        if not directory:
            _fsync(temp)
        if directory and final.is_dir() and not final.is_symlink():
            trash = final.parent / f".{final.name}.old-{token}"
            os.replace(final, trash)  # a folder cannot be replaced by rename while it has content
            try:
                os.replace(temp, final)
            except BaseException:
                os.replace(trash, final)
                raise
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(temp, final)
    except BaseException:
        _remove(temp)
        raise


def _fsync(path: Path) -> None:
    if path.is_file():
        with open(path, "rb+") as handle:
            os.fsync(handle.fileno())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
