"""Held-out quality of the demo model on synthetic clips with ground truth.

Clips are drawn with seeds from ``HELDOUT_SEED`` on, which the demo recipe never trains
on. Protocol (``napari_sam2.training.evaluation.PROTOCOL``): one positive click at each
object's most interior pixel on its first frame, then forward propagation; J, F and
J&F per object, averaged over objects. Image mode is the same click scored on the
clicked frame only (J = IoU).

    python benchmarks/bench_demo_quality.py                        # the bundled demo model
    python benchmarks/bench_demo_quality.py --checkpoint other.pt --clips 10 --objects 0

Writes ``benchmarks/results/demo_quality.json`` (or ``--name``) and prints a table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from common import save_results

from napari_sam2.model import build_sam2
from napari_sam2.sample_data import random_clip
from napari_sam2.training import evaluate
from napari_sam2.training.data import make_video
from napari_sam2.training.demo import HELDOUT_SEED

#: (name, generator kind, frames per clip); targets from the demo-model issue
SETS = (
    ("fluorescence time-lapses", "fluorescence", 24),
    ("RGB clips", "rgb", 24),
    ("nuclei z-stacks", "nuclei", 16),
)
TARGETS = {"fluorescence time-lapses": 0.85, "RGB clips": 0.80, "image mode IoU": 0.90}


def _videos(kind: str, frames: int, count: int, offset: int, objects: int) -> list:
    """Held-out clips; each scores its ``objects`` largest objects of the first frame."""
    out = []
    for i in range(count):
        seed = HELDOUT_SEED + offset + i
        clip = random_clip(kind, seed, num_frames=frames)
        labels = clip.labels
        ids, areas = np.unique(labels[0][labels[0] > 0], return_counts=True)
        if objects and ids.size > objects:
            keep = ids[np.argsort(-areas, kind="stable")[:objects]]
            labels = np.where(np.isin(labels, keep), labels, 0).astype(labels.dtype)
        out.append(make_video(clip.image, labels, name=f"{kind}-{seed}"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="a checkpoint file (default: the bundled demo model)")
    parser.add_argument("--clips", type=int, default=20, help="held-out clips per kind (default 20)")
    parser.add_argument("--objects", type=int, default=8,
                        help="score the N largest objects of each clip's first frame (0: all; default 8)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--name", default="demo_quality", help="results file name (without .json)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.checkpoint is None:
        model = build_sam2("demo", device="cpu")
    else:
        model = build_sam2(checkpoint=args.checkpoint, device="cpu")
    rows: dict[str, dict] = {}
    image_j: list[float] = []
    for offset, (name, kind, frames) in enumerate(SETS):
        videos = _videos(kind, frames, args.clips, offset * 100_000, args.objects)
        t0 = time.perf_counter()
        report = evaluate(model, videos)
        seconds = time.perf_counter() - t0
        frames_done = sum(s.frames for s in report.objects)
        rows[name] = {
            "J": report.J, "F": report.F, "JF": report.JF, "objects": len(report.objects),
            "clips": len(videos), "frames_per_clip": frames,
            "object_frames_per_second": frames_done / seconds if seconds else None,
        }
        single = evaluate(model, videos, max_frames=1)
        image_j += [s.J for s in single.objects]
    rows["image mode IoU"] = {"J": float(np.mean(image_j)), "objects": len(image_j)}
    payload = {
        "model": args.checkpoint or "demo",
        "heldout_seeds_from": HELDOUT_SEED,
        "threads": torch.get_num_threads(),
        "objects_per_clip": args.objects or "all",
        "results": rows,
        "targets": TARGETS,
    }
    path = save_results(args.name, payload)
    print(f"{'set':28s} {'J':>6s} {'F':>6s} {'J&F':>6s} {'target':>7s} objects")
    for name, row in rows.items():
        jf = row.get("JF", row["J"])
        target = TARGETS.get(name)
        print(f"{name:28s} {row['J']:6.3f} {row.get('F', float('nan')):6.3f} {jf:6.3f} "
              f"{'' if target is None else f'{target:.2f}':>7s} {row['objects']}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
