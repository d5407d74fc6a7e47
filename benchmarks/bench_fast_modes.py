"""Optional faster modes against exact mode: speed and mask agreement.

Modes: a lower input resolution (same weights, ``image_size=512``), dynamic int8
quantization of the linear layers on the CPU (``quantize="int8"``), and both. Each mode
tracks the same objects through the same frames as exact mode (1024px, float32); the
script prints seconds per frame, the speed-up, and the IoU of every object's mask with
exact mode's (mean and worst frame).

    python benchmarks/bench_fast_modes.py                    # tiny, 10 frames, 2 objects
    python benchmarks/bench_fast_modes.py --checkpoint official   # with the real weights

Without real weights (``--checkpoint official`` needs the downloaded file) the IoU
numbers describe random-weight masks, which are noisier than real ones.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from common import Pair, blob_centre, machine_info, save_results, timed_iter

MODES = {
    "exact (1024, float32)": {"image_size": 1024},
    "512 input": {"image_size": 512},
    "int8": {"image_size": 1024, "quantize": "int8"},
    "512 input + int8": {"image_size": 512, "quantize": "int8"},
}


def track(model, frames, objects: int, size: int) -> tuple[list[float], dict[int, list[np.ndarray]]]:
    from napari_sam2.model import VideoSession

    masks: dict[int, list[np.ndarray]] = {k + 1: [] for k in range(objects)}
    with VideoSession(model, frames) as session:
        for k in range(objects):
            session.add_points(0, k + 1, [blob_centre(k, 0, size)], [1])
        times = []
        for (frame, out), dt in timed_iter(session.propagate()):
            times.append(dt)
            for obj_id, logits in out.items():
                masks[obj_id].append(logits > 0)
    return times, masks


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sam2.1_hiera_tiny")
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--objects", type=int, default=2)
    parser.add_argument("--checkpoint", default=None, help="'official' or a path; default: random weights")
    args = parser.parse_args()
    from napari_sam2.model import build_sam2

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        pair = Pair(Path(tmp), args.model, 1024, args.frames)
        weights = args.checkpoint or str(Path(tmp) / "weights.pt")
        exact = None
        for label, kwargs in MODES.items():
            model = build_sam2(args.model, checkpoint=weights, device="cpu", **kwargs)
            times, masks = track(model, pair.frames, args.objects, 1024)
            per_frame = float(np.mean(times[1:]))  # frame 0 is the prompted frame
            if exact is None:
                exact = (per_frame, masks)
            ious = [iou(a, b) for obj in masks for a, b in zip(masks[obj], exact[1][obj])]
            results[label] = {
                "seconds_per_frame": per_frame,
                "speedup": exact[0] / per_frame,
                "mean_iou_vs_exact": float(np.mean(ious)),
                "min_iou_vs_exact": float(np.min(ious)),
            }
            r = results[label]
            print(f"{label:24s} {per_frame:7.3f} s/frame  x{r['speedup']:.2f}  "
                  f"IoU vs exact mean {r['mean_iou_vs_exact']:.3f} min {r['min_iou_vs_exact']:.3f}", flush=True)
    info = machine_info()
    print(f"\n{args.model}, {args.frames} frames, {args.objects} objects, weights: {args.checkpoint or 'random'}; "
          f"{info.get('cpu', info['processor'])}, {info['cpu_count']} cores")
    save_results("fast_modes", {"args": vars(args), "modes": results})


if __name__ == "__main__":
    main()
