"""Size and CPU speed of the demo architecture next to sam2.1_hiera_tiny (random weights).

For each model: parameters, float32 state-dict size, propagation speed in a
VideoSession (one object, frames per second at the model's input size, after two
warm-up frames), and, for the demo model, the time of a training-like pass: image
encoder forward + backward on a batch of 8 frames plus the SAM heads on them.

    python benchmarks/bench_demo_speed.py                    # 2 threads, demo + tiny 512 + tiny 1024
    python benchmarks/bench_demo_speed.py --threads 1 --skip-1024

Writes ``benchmarks/results/demo_speed_<N>threads.json``. Other processes on the
machine slow everything down (two threads on a busy two-core machine far more than
one); the printed load average says how busy it was, and the CPU seconds per frame of
this process (with one thread: what a dedicated core would take) do not depend on it.
"""

from __future__ import annotations

import argparse
import io
import os
import time

import numpy as np
import torch

from common import RESULTS, machine_info, save_results

from napari_sam2.model import VideoSession, build_sam2
from napari_sam2.model.config import Sam2Config, get_config
from napari_sam2.sample_data import random_clip
from napari_sam2.training.demo import demo_config


def _model(config: Sam2Config):
    torch.manual_seed(0)
    model = build_sam2(config, device="cpu")
    with torch.no_grad():  # "object present", so every frame runs the full path
        model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.add_(8.0)
    return model


def size_of(model) -> dict:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return {"parameters": int(sum(p.numel() for p in model.parameters())), "state_dict_mb": buffer.tell() / 1e6}


def propagation_fps(model, size: int, frames: int) -> dict:
    """Frames per second for one object, clicked on frame 0, propagated to the end."""
    clip = random_clip("fluorescence", 11, num_frames=frames, size=size)
    label = max(clip.centers, key=lambda k: sum(c is not None for c in clip.centers[k]))
    first = next(t for t, c in enumerate(clip.centers[label]) if c is not None)
    times, cpu = [], []
    with VideoSession(model, clip.image) as session:
        start = time.perf_counter()
        session.add_points(first, 1, [clip.centers[label][first]], [1])
        click = time.perf_counter() - start
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in session.propagate(start=first):
            now, now_cpu = time.perf_counter(), time.process_time()
            times.append(now - start)
            cpu.append(now_cpu - start_cpu)
            start, start_cpu = now, now_cpu
    skip = 2 if len(times) > 3 else 0
    steady, steady_cpu = times[skip:], cpu[skip:]
    # CPU seconds of this process: with one thread, what a dedicated core would take
    return {"first_click_s": click, "seconds_per_frame": float(np.mean(steady)), "fps": float(1 / np.mean(steady)),
            "cpu_seconds_per_frame": float(np.mean(steady_cpu)), "frames_timed": len(steady)}


def train_pass_seconds(model, batch: int = 8, repeats: int = 2) -> dict:
    """Encoder forward + backward on ``batch`` frames, plus the heads (one click each)."""
    size = model.config.image_size
    model.train()
    model.requires_grad_(True)
    x = torch.randn(batch, 3, size, size)
    coords = torch.full((batch, 1, 2), size / 2.0)
    labels = torch.ones(batch, 1, dtype=torch.int32)
    best: dict[str, float] = {}
    for _ in range(repeats):
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        feats = model.encode_image(x)
        heads = model.run_heads(feats.vision, feats.high_res, coords, labels, multimask=True)
        forward = time.perf_counter() - start
        loss = sum(t.float().mean() for t in vars(heads).values() if torch.is_tensor(t) and t.is_floating_point())
        start = time.perf_counter()
        loss.backward()
        backward = time.perf_counter() - start
        if not best or forward + backward < best["total_s"]:
            best = {"forward_s": forward, "backward_s": backward, "total_s": forward + backward}
    model.eval()
    model.requires_grad_(False)
    return best | {"batch_frames": batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=12, help="frames propagated by the demo model")
    parser.add_argument("--tiny-frames", type=int, default=5, help="frames propagated by sam2.1_hiera_tiny")
    parser.add_argument("--skip-1024", action="store_true", help="leave out tiny at 1024 (slowest)")
    parser.add_argument("--demo-only", action="store_true", help="time the demo model alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    load_before = os.getloadavg()[0]
    runs = [("demo", demo_config(), args.frames)]
    if not args.demo_only:
        runs.append(("sam2.1_hiera_tiny", get_config("sam2.1_hiera_tiny", 512), args.tiny_frames))
    if not (args.skip_1024 or args.demo_only):
        runs.append(("sam2.1_hiera_tiny", get_config("sam2.1_hiera_tiny"), args.tiny_frames))
    rows = []
    for name, config, frames in runs:
        model = _model(config)
        row = {"model": name, "image_size": config.image_size, **size_of(model)}
        row |= propagation_fps(model, config.image_size, frames)
        if name == "demo":
            row["train_pass"] = train_pass_seconds(model)
        rows.append(row)
        del model
    info = machine_info() | {"load_average": (load_before, os.getloadavg()[0])}
    print(f"machine: {info.get('cpu', info['processor'])}, {info['cpu_count']} cores, torch {info['torch']}, "
          f"{args.threads} threads, load average {load_before:.2f} before, {info['load_average'][1]:.2f} after")
    print(f"{'model':20s} {'input':>6s} {'params':>10s} {'MB':>7s} {'s/frame':>8s} {'fps':>7s} {'cpu s/frame':>12s}")
    for r in rows:
        print(f"{r['model']:20s} {r['image_size']:6d} {r['parameters']:10,d} {r['state_dict_mb']:7.1f} "
              f"{r['seconds_per_frame']:8.3f} {r['fps']:7.2f} {r['cpu_seconds_per_frame']:12.3f}")
    demo = rows[0]["train_pass"]
    print(f"demo training-like pass, 8 frames: forward {demo['forward_s']:.2f} s + backward {demo['backward_s']:.2f} s "
          f"= {demo['total_s']:.2f} s")
    RESULTS.mkdir(exist_ok=True)
    stem = f"demo_speed_{args.threads}threads" + ("_demo_only" if args.demo_only else "")
    save_results(stem, {"args": vars(args), "load_average": info["load_average"], "rows": rows})
    print(f"wrote {RESULTS / (stem + '.json')}")


if __name__ == "__main__":
    main()
