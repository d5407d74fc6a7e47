"""What track-all costs: seconds for automatic seeding, per re-detection and per tracked frame.

Cost does not depend on what the weights have learnt, only on the architecture, the
input size and the number of objects, so this runs any official architecture with
random weights (no download) on a synthetic fluorescence time-lapse with many cells,
seeded from the truth's first frame so that the number of objects is known.

    python benchmarks/bench_autotrack_cost.py                       # sam2.1_hiera_tiny at 1024 px
    python benchmarks/bench_autotrack_cost.py --model demo-architecture --image-size 256

Writes ``benchmarks/results/autotrack_cost_<model>_<image size>.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sam2.1_hiera_tiny", help="an official architecture, or 'demo-architecture'")
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--size", type=int, default=512, help="frame size in pixels")
    parser.add_argument("--frames", type=int, default=11)
    parser.add_argument("--redetect-every", type=int, default=5)
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--results-dir", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)

    import torch

    from napari_sam2.model import VideoSession, build_sam2
    from napari_sam2.sample_data.fluorescence import fluorescence_clip
    from napari_sam2.tracking.track_all import AutomaticDetector, TrackAllSettings, track_all
    from napari_sam2.training.demo import HELDOUT_SEED, demo_config

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.model == "demo-architecture":
        model = build_sam2(demo_config(args.image_size), device="cpu")
    else:
        model = build_sam2(args.model, image_size=args.image_size, device="cpu")
    clip = fluorescence_clip(HELDOUT_SEED + 900, num_frames=args.frames, size=args.size, radius=10, density=0.3,
                             division_rate=0.0)
    seeds = clip.labels[0]
    settings = TrackAllSettings(redetect_every=args.redetect_every, points_per_side=args.points_per_side,
                                divisions=False, end_after=args.frames + 1, min_size=1)
    out = np.zeros(clip.labels.shape, np.uint16)
    with VideoSession(model, clip.image) as session:
        detector = AutomaticDetector(model, session.frames, settings)
        began = time.perf_counter()
        detector(0)  # automatic seeding of one frame
        seeding = time.perf_counter() - began
        began = time.perf_counter()
        result = track_all(session, out, 0, args.frames - 1, seeds=seeds, detector=detector, settings=settings)
        total = time.perf_counter() - began
    per_detection = result.seconds_per_detection
    tracking = (total - result.seconds_detecting) / max(result.frames_tracked - 1, 1)
    report = {
        "command": "python benchmarks/" + Path(__file__).name + " " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": args.model,
        "image_size": args.image_size,
        "frame_size": args.size,
        "objects_seeded": result.seeded,
        "frames": args.frames,
        "redetect_every": args.redetect_every,
        "points_per_side": args.points_per_side,
        "seconds_automatic_seeding": round(seeding, 3),
        "seconds_per_detection": round(per_detection, 3),
        "detections": result.detections,
        "seconds_per_tracked_frame": round(tracking, 3),
        "seconds_per_frame_for_redetection": round(per_detection / max(args.redetect_every, 1), 3),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    print(json.dumps(report, indent=2))
    folder = Path(args.results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"autotrack_cost_{args.model}_{args.image_size}.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
