"""Speed of ours against the reference on the same weights, frames and prompts.

Measures, in one run:
  1. cold propagation (seconds per frame), two objects clicked on frame 0;
  2. latency of a refinement click on an already propagated frame;
  3. re-propagation from that frame to the end after the click.
Prints ratios (ours / reference) and absolute figures, writes
``benchmarks/results/propagation.json`` and a plot of seconds per frame.

    python benchmarks/bench_propagation.py                # tiny, 1024, 16 frames, 2 objects
    python benchmarks/bench_propagation.py --size 512 --frames 8
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from common import RESULTS, Pair, Timer, blob_centre, machine_info, save_results, timed_iter


def run_reference(pair: Pair, objects: int, click_frame: int) -> dict:
    ref = pair.ref
    with torch.inference_mode():
        state = ref.init_state(str(pair.jpeg_dir))
        for k in range(objects):
            r, c = blob_centre(k, 0, pair.size)
            ref.add_new_points_or_box(state, 0, k + 1, points=[[c, r]], labels=[1])
        cold = [dt for _, dt in timed_iter(ref.propagate_in_video(state))]
        r, c = blob_centre(0, click_frame, pair.size)
        with Timer() as click:
            ref.add_new_points_or_box(state, click_frame, 1, points=[[c, r], [8, 8]], labels=[1, 0])
        again = [dt for _, dt in timed_iter(ref.propagate_in_video(state, start_frame_idx=click_frame))]
    return {"cold": cold, "click": click.seconds, "repropagate": again}


def run_ours(pair: Pair, objects: int, click_frame: int) -> dict:
    from napari_sam2.model import VideoSession

    with VideoSession(pair.ours, pair.frames) as session:
        for k in range(objects):
            session.add_points(0, k + 1, [blob_centre(k, 0, pair.size)], [1])
        cold = [dt for _, dt in timed_iter(session.propagate())]
        r, c = blob_centre(0, click_frame, pair.size)
        with Timer() as click:
            session.add_points(click_frame, 1, [[r, c], [8, 8]], [1, 0])
        again = [dt for _, dt in timed_iter(session.propagate(start=click_frame))]
    return {"cold": cold, "click": click.seconds, "repropagate": again}


def plot(ref: dict, ours: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    ax.plot(ref["cold"], "o-", label="reference sam2 1.1.0", color="#888888")
    ax.plot(ours["cold"], "o-", label="napari-sam2", color="#d9480f")
    ax.set_xlabel("frame index")
    ax.set_ylabel("seconds per frame")
    ax.set_title(title, fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sam2.1_hiera_tiny")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--objects", type=int, default=2)
    parser.add_argument("--click-frame", type=int, default=None, help="default: 2/3 through the clip")
    args = parser.parse_args()
    click_frame = args.click_frame if args.click_frame is not None else (2 * args.frames) // 3
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        pair = Pair(Path(tmp), args.model, args.size, args.frames)
        ref = run_reference(pair, args.objects, click_frame)
        ours = run_ours(pair, args.objects, click_frame)

    def per_frame(xs: list[float]) -> float:
        return float(np.mean(xs))

    rows = {
        "cold propagation (s/frame)": (per_frame(ref["cold"]), per_frame(ours["cold"])),
        "  of which the second half of the clip (s/frame)": (
            per_frame(ref["cold"][args.frames // 2:]), per_frame(ours["cold"][args.frames // 2:])
        ),
        "refinement click on a propagated frame (s)": (ref["click"], ours["click"]),
        "re-propagation after the click (s/frame)": (per_frame(ref["repropagate"]), per_frame(ours["repropagate"])),
    }
    info = machine_info()
    print(f"{args.model} at {args.size}px, {args.frames} frames, {args.objects} objects, click on frame {click_frame}")
    print(f"machine: {info.get('cpu', info['processor'])}, {info['cpu_count']} cores, torch {info['torch']} ({info['torch_threads']} threads)")
    print(f"{'measure':50s} {'reference':>10s} {'ours':>10s} {'ratio':>8s}")
    for label, (r, o) in rows.items():
        print(f"{label:50s} {r:10.3f} {o:10.3f} {o / r:8.3f}")
    RESULTS.mkdir(exist_ok=True)
    stem = f"propagation_{args.model}_{args.size}"
    plot(ref, ours, RESULTS / f"{stem}.png",
         f"{args.model}, {args.size}px, {args.objects} objects, cold propagation ({info.get('cpu', '')})")
    save_results(stem, {"args": vars(args) | {"click_frame": click_frame}, "reference": ref, "ours": ours,
                        "ratios": {k: o / r for k, (r, o) in rows.items()}})
    print(f"wrote {RESULTS / (stem + '.json')} and {stem}.png")


if __name__ == "__main__":
    main()
