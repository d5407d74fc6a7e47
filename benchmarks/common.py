"""Shared set-up for benchmarks: both implementations on the same weights and pixels.

The reference is Meta's ``sam2==1.1.0`` video predictor; it is installed for tests and
benchmarks only. Both sides get identical random weights (saved once in the official
checkpoint layout), identical frames (the reference reads a JPEG folder; we pass the
decoded pixels) and identical prompts, in one process with the same thread count.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from reference import build_reference, save_checkpoint  # noqa: E402

RESULTS = HERE / "results"


def machine_info() -> dict:
    """What the numbers were measured on."""
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def synthetic_frames(size: int, num: int, seed: int = 0) -> np.ndarray:
    """Coloured disks drifting over a textured background, uint8 (T, size, size, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    background = rng.normal(0, 12, (size, size, 3))
    blobs = [(0.3, 0.3, 0.12, (230, 70, 60)), (0.62, 0.6, 0.14, (60, 190, 90)), (0.45, 0.78, 0.08, (70, 90, 230))]
    frames = []
    for t in range(num):
        img = 50.0 + background + rng.normal(0, 4, (size, size, 3))
        for k, (cy, cx, r, col) in enumerate(blobs):
            cy2 = (cy + 0.006 * t * (k + 1)) * size
            cx2 = (cx + 0.004 * t * (1 - k)) * size
            img[(yy - cy2) ** 2 + (xx - cx2) ** 2 < (r * size) ** 2] = col
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(frames)


def blob_centre(k: int, t: int, size: int) -> tuple[float, float]:
    """(row, col) of blob ``k`` on frame ``t`` in ``synthetic_frames``."""
    cy, cx = [(0.3, 0.3), (0.62, 0.6), (0.45, 0.78)][k]
    return ((cy + 0.006 * t * (k + 1)) * size, (cx + 0.004 * t * (1 - k)) * size)


class Pair:
    """Reference predictor + our model on one checkpoint, and one JPEG folder of frames."""

    def __init__(self, workdir: Path, name: str, size: int, num_frames: int, seed: int = 0):
        from PIL import Image

        from napari_sam2.model import build_sam2

        workdir.mkdir(parents=True, exist_ok=True)
        self.ref = build_reference(name, image_size=size, seed=seed,
                                   extra_overrides=["++model.add_all_frames_to_correct_as_cond=true"])
        ckpt = save_checkpoint(self.ref, workdir / "weights.pt")
        self.ours = build_sam2(name, checkpoint=ckpt, image_size=size, device="cpu")
        self.size = size
        self.jpeg_dir = workdir / "jpg"
        self.jpeg_dir.mkdir(exist_ok=True)
        for t, frame in enumerate(synthetic_frames(size, num_frames, seed)):
            Image.fromarray(frame).save(self.jpeg_dir / f"{t:05d}.jpg", quality=95)
        self.frames = np.stack(
            [np.array(Image.open(self.jpeg_dir / f"{t:05d}.jpg").convert("RGB")) for t in range(num_frames)]
        )


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def timed_iter(iterable):
    """Yield (item, seconds spent producing it)."""
    it = iter(iterable)
    while True:
        start = time.perf_counter()
        try:
            item = next(it)
        except StopIteration:
            return
        yield item, time.perf_counter() - start


def save_results(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = dict(payload, machine=machine_info(), date=time.strftime("%Y-%m-%d %H:%M"))
    path.write_text(json.dumps(payload, indent=2))
    return path
