"""Official SAM 2 checkpoints: where they live, how they are fetched and checked.

Downloads go through :mod:`pooch` (temporary file, SHA-256 check, atomic rename), so an
interrupted or corrupted download never looks complete. Files are cached per user; the
cache folder can be moved with the ``NAPARI_SAM2_CACHE`` environment variable. Without a
network the error says exactly which file to fetch and where to put it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import torch

__all__ = [
    "CheckpointError",
    "DownloadError",
    "OfficialCheckpoint",
    "OFFICIAL_CHECKPOINTS",
    "cache_dir",
    "checkpoint_path",
    "is_cached",
    "download_checkpoint",
    "read_state_dict",
    "sha256sum",
    "default_device",
    "autocast_dtype",
]

CACHE_ENV = "NAPARI_SAM2_CACHE"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be found, fetched, read or does not fit the model."""


class DownloadError(CheckpointError):
    """An official checkpoint could not be fetched (no network, every mirror failed).

    ``name`` is the model; ``reasons`` holds one line per mirror tried.
    """

    def __init__(self, message: str, name: str = "", reasons: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.name, self.reasons = name, tuple(reasons)

    def __reduce__(self) -> tuple:  # keeps name and reasons across processes (batch workers)
        return (type(self), (str(self), self.name, self.reasons))

    @property
    def summary(self) -> str:
        """The cause in a few words, for a one-line warning."""
        text = self.reasons[0].split(": ", 1)[-1] if self.reasons else str(self).splitlines()[0]
        return text if len(text) <= 100 else text[:97] + "..."


@dataclass(frozen=True)
class OfficialCheckpoint:
    """One file published by the SAM 2 authors."""

    name: str
    filename: str
    urls: tuple[str, ...]
    sha256: str
    size: int | None  # bytes, for progress and a sanity check


def _official(name: str, sha256: str, size: int | None) -> OfficialCheckpoint:
    filename = f"{name}.pt"
    repo = name.replace("_hiera_", "-hiera-").replace("_", "-")  # sam2.1-hiera-base-plus
    if name.startswith("sam2.1"):
        mirror = f"https://dl.fbaipublicfiles.com/segment_anything_2/092824/{filename}"
    else:
        mirror = f"https://dl.fbaipublicfiles.com/segment_anything_2/072824/{filename}"
    urls = (f"https://huggingface.co/facebook/{repo}/resolve/main/{filename}", mirror)
    return OfficialCheckpoint(name, filename, urls, sha256, size)


OFFICIAL_CHECKPOINTS: Mapping[str, OfficialCheckpoint] = {
    c.name: c
    for c in (
        _official("sam2.1_hiera_tiny", "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69", 156008466),
        _official("sam2.1_hiera_small", "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38", 184416285),
        _official("sam2.1_hiera_base_plus", "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5", 323606802),
        _official("sam2.1_hiera_large", "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318", 898083611),
        _official("sam2_hiera_tiny", "65b50056e05bcb13694174f51bb6da89c894b57b75ccdf0ba6352c597c5d1125", 155906050),
        _official("sam2_hiera_small", "95949964d4e548409021d47b22712d5f1abf2564cc0c3c765ba599a24ac7dce3", None),
        _official("sam2_hiera_base_plus", "d0bb7f236400a49669ffdd1be617959a8b1d1065081789d7bbff88eded3a8071", 323493298),
        _official("sam2_hiera_large", "7442e4e9b732a508f80e141e7c2913437a3610ee0c77381a66658c3a445df87b", 897952466),
    )
}


def _official_entry(name: str) -> OfficialCheckpoint:
    try:
        return OFFICIAL_CHECKPOINTS[name]
    except KeyError:
        known = ", ".join(OFFICIAL_CHECKPOINTS)
        raise CheckpointError(f"unknown SAM 2 model {name!r}; known models: {known}") from None


def cache_dir() -> Path:
    """Folder holding downloaded checkpoints (``$NAPARI_SAM2_CACHE`` or the user cache)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("napari-sam2")) / "checkpoints"


def checkpoint_path(name: str) -> Path:
    """Where the official file for ``name`` is (or will be) cached."""
    return cache_dir() / _official_entry(name).filename


def sha256sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def is_cached(name: str, verify: bool = False) -> bool:
    """Whether the official file is in the cache (optionally checking its SHA-256)."""
    path = checkpoint_path(name)
    if not path.is_file():
        return False
    return not verify or sha256sum(path) == _official_entry(name).sha256


class _ProgressAdapter:
    """Just enough of tqdm's interface for pooch to report bytes to a callback.

    An exception raised by the callback is how a caller cancels a download; it is
    remembered so that the download stops at once instead of trying the next mirror.
    """

    def __init__(self, callback: Callable[[int, int], None]) -> None:
        self.callback = callback
        self.total = 0
        self.n = 0
        self.raised: BaseException | None = None

    def _report(self) -> None:
        try:
            self.callback(self.n, self.total)
        except BaseException as exc:
            self.raised = exc
            raise

    def update(self, chunk: int) -> None:
        self.n += chunk
        self._report()

    def reset(self) -> None:
        self.n = 0
        self._report()

    def close(self) -> None:
        pass


def download_checkpoint(
    name: str,
    progress: Callable[[int, int], None] | bool | None = True,
) -> Path:
    """Return the cached official checkpoint for ``name``, downloading it if needed.

    ``progress`` is ``True`` for a terminal progress bar, ``False``/``None`` for none, or a
    callable ``(bytes_done, bytes_total)``; an exception the callable raises (a cancel)
    ends the download at once and propagates unchanged, with no partial file left. The
    file is verified by SHA-256; a cached file that fails the check is fetched again.
    """
    import pooch

    entry = _official_entry(name)
    target = checkpoint_path(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    adapter = _ProgressAdapter(progress) if callable(progress) else None
    progressbar: object = adapter if adapter is not None else bool(progress)
    errors: list[str] = []
    for url in entry.urls:
        if adapter is not None:
            adapter.raised = None
        try:
            path = pooch.retrieve(
                url,
                known_hash=f"sha256:{entry.sha256}",
                fname=entry.filename,
                path=target.parent,
                progressbar=progressbar,
            )
            return Path(path)
        except Exception as exc:
            if adapter is not None and adapter.raised is not None:
                raise adapter.raised from None  # cancelled by the caller: no other mirror
            if isinstance(exc, ValueError):  # hash mismatch: pooch removed the bad file
                errors.append(f"{url}: {exc}")
            else:  # network errors come in many types (requests, OS)
                errors.append(f"{url}: {type(exc).__name__}: {exc}")
    raise DownloadError(
        f"could not download the {name} checkpoint.\n"
        + "\n".join(errors)
        + f"\nWithout a network, download {entry.filename} on another machine from\n  "
        + "\n  ".join(entry.urls)
        + f"\nand copy it to {target} (or point ${CACHE_ENV} at the folder holding it), "
        "or choose the file directly as a local checkpoint.",
        name,
        tuple(errors),
    )


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read an official-style checkpoint file (``{"model": state_dict}``) safely."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path} is not a readable SAM 2 checkpoint (it may be truncated or another "
            f"kind of file): {type(exc).__name__}: {exc}"
        ) from None
    if isinstance(payload, dict) and "model" in payload and isinstance(payload["model"], dict):
        state = payload["model"]
    elif isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
        state = payload  # a bare state dict is accepted too
    else:
        raise CheckpointError(
            f"{path} does not hold a SAM 2 state dict (expected {{'model': state_dict}})"
        )
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not tensors: {bad[:5]}")
    return state


def default_device() -> torch.device:
    """CUDA if present, then Apple MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """bfloat16 on GPUs that support it, otherwise None (plain float32)."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None
