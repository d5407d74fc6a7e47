"""How many cells automatic detection finds with a model, per pair of thresholds.

Automatic mask generation keeps a mask when its predicted IoU and its stability score
pass two thresholds; how sure a model is of itself depends on its weights, so each
model's thresholds are calibrated (see ``napari_sam2/model/bundled.py``). This runs
track-all's detector (``AutomaticDetector``: masks, then one labels plane, the most
confident mask first) on the first frames of fluorescence clips from **training seeds**
(calibration never looks at the held-out seeds the benchmarks score) and counts the true
cells matched with IoU > 0.5 and the objects found.

    python benchmarks/calibrate_detection.py                 # the bundled demo model
    python benchmarks/calibrate_detection.py --model other.pt --seeds 10 11 12

Writes ``benchmarks/results/detection_thresholds_<model>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from common import RESULTS, machine_info  # noqa: E402

from napari_sam2.sample_data.fluorescence import fluorescence_clip  # noqa: E402
from napari_sam2.tracking.track_all import AutomaticDetector, TrackAllSettings  # noqa: E402
from napari_sam2.training.demo import HELDOUT_SEED  # noqa: E402

GRID = [(0.8, 0.9), (0.7, 0.85), (0.6, 0.8), (0.5, 0.8), (0.5, 0.75), (0.4, 0.8), (0.4, 0.7)]


def matched_cells(plane: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """(true cells whose best object has IoU > 0.5, true cells, objects found)."""
    cells = [int(c) for c in np.unique(truth) if c]
    found = [int(j) for j in np.unique(plane) if j]
    hits = 0
    for cell in cells:
        mine = truth == cell
        candidates = np.unique(plane[mine])
        best = max(((mine & (plane == j)).sum() / (mine | (plane == j)).sum() for j in candidates if j), default=0.0)
        hits += best > 0.5
    return hits, len(cells), len(found)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="demo", help="'demo' (the bundled model, default) or a checkpoint file")
    parser.add_argument("--seeds", type=int, nargs="+", default=[4242, 4243, 4244], help="training seeds of the clips")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--radius", type=float, default=9.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--grid", nargs="+", metavar="IOU:STABILITY", type=_pair, default=GRID,
                        help="threshold pairs to try (default: " + " ".join(f"{a}:{b}" for a, b in GRID) + ")")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def _pair(text: str) -> tuple[float, float]:
    try:
        first, second = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected IOU:STABILITY such as 0.5:0.8, got {text!r}") from None
    return first, second


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from napari_sam2.model import build_sam2

    torch.set_num_threads(args.threads)
    if any(seed >= HELDOUT_SEED for seed in args.seeds):
        print(f"error: seeds from {HELDOUT_SEED} on are held out for the benchmarks; calibrate on training seeds",
              file=sys.stderr)
        return 2
    model = build_sam2("demo", device="cpu") if args.model == "demo" else build_sam2(checkpoint=args.model, device="cpu")
    frames = []
    for seed in args.seeds:
        clip = fluorescence_clip(seed, 1, args.size, radius=args.radius, density=0.25)
        frames.append((clip.image, clip.labels[0]))
    rows = []
    print(f"{'pred IoU':>8} {'stability':>9} {'cells found':>12} {'objects':>8} {'seconds':>8}")
    for pred_iou, stability in args.grid:
        settings = TrackAllSettings(pred_iou_thresh=pred_iou, stability_score_thresh=stability)
        total = np.zeros(3, int)
        began = time.perf_counter()
        for image, truth in frames:
            total += matched_cells(AutomaticDetector(model, image, settings)(0), truth)
        seconds = time.perf_counter() - began
        rows.append({"pred_iou_thresh": pred_iou, "stability_score_thresh": stability, "cells_found": int(total[0]),
                     "cells": int(total[1]), "objects": int(total[2]), "seconds": round(seconds, 1)})
        print(f"{pred_iou:>8} {stability:>9} {f'{total[0]}/{total[1]}':>12} {total[2]:>8} {seconds:>8.1f}", flush=True)
    own = TrackAllSettings().for_model(model)
    name = "demo" if args.model == "demo" else Path(args.model).stem
    payload = {
        "command": "python benchmarks/calibrate_detection.py" + "".join(" " + shlex.quote(a) for a in (argv or sys.argv[1:])),
        "model": args.model,
        "seeds": args.seeds,
        "clip": {"size": args.size, "radius": args.radius, "density": 0.25},
        "model_thresholds": {"pred_iou_thresh": own.pred_iou_thresh, "stability_score_thresh": own.stability_score_thresh},
        "rows": rows,
        "machine": machine_info(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"detection_thresholds_{name}.json"
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"model's own: {own.pred_iou_thresh} / {own.stability_score_thresh}; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
