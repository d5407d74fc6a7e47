"""Where the time of a steady-state propagation frame goes, ours and the reference.

Both propagate two objects through ``--warmup`` frames (so the memory bank is full),
then the next ``--frames`` frames run under ``torch.profiler``; the tables list the
operators by self CPU time.

    python benchmarks/profile_propagation.py                 # tiny, 1024, warm-up 8, profile 2
    python benchmarks/profile_propagation.py --size 512 --rows 25
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from common import Pair, blob_centre, machine_info


def _profile(frames_iter, warmup: int, count: int):
    for _ in itertools.islice(frames_iter, warmup):
        pass
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in itertools.islice(frames_iter, count):
            pass
    return prof


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sam2.1_hiera_tiny")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--only", choices=("ours", "reference"), default=None)
    args = parser.parse_args()
    total = args.warmup + args.frames
    with tempfile.TemporaryDirectory() as tmp:
        pair = Pair(Path(tmp), args.model, args.size, total)
        points = [blob_centre(k, 0, pair.size) for k in range(2)]
        if args.only != "reference":
            from napari_sam2.model import VideoSession

            with VideoSession(pair.ours, pair.frames) as session:
                for k, (r, c) in enumerate(points):
                    session.add_points(0, k + 1, [[r, c]], [1])
                prof = _profile(session.propagate(), args.warmup, args.frames)
            print(f"\n=== ours: {args.frames} frames after {args.warmup} ===")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
        if args.only != "ours":
            with torch.inference_mode():
                state = pair.ref.init_state(str(pair.jpeg_dir))
                for k, (r, c) in enumerate(points):
                    pair.ref.add_new_points_or_box(state, 0, k + 1, points=[[c, r]], labels=[1])
                prof = _profile(pair.ref.propagate_in_video(state), args.warmup, args.frames)
            print(f"\n=== reference: {args.frames} frames after {args.warmup} ===")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    info = machine_info()
    print(f"machine: {info.get('cpu', info['processor'])}, {info['cpu_count']} cores, torch {info['torch']}")


if __name__ == "__main__":
    main()
