"""Peak resident memory against the number of frames, ours and the reference.

Each (implementation, frame count) runs in a fresh process that clicks one object on
frame 0 and propagates through every frame; the process reports its peak RSS. Ours reads
frames lazily and keeps bounded caches (each given ``--cache-mib``, so that they are
full early in the run and what grows after is what is not bounded); the
reference loads every frame up front and keeps every frame's state.

    python benchmarks/bench_memory.py                    # 512px, 16/64/256 frames
    python benchmarks/bench_memory.py --frames 16 64 --size 256
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import machine_info, save_results, synthetic_frames

CHILD = r"""
import json, sys, torch
sys.path.insert(0, {bench!r}); sys.path.insert(0, {tests!r})
import numpy as np
from PIL import Image
from common import blob_centre
impl, folder, size, weights = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
CAP = int(sys.argv[5]) << 20
names = sorted(p for p in __import__("os").listdir(folder) if p.endswith(".jpg"))
r, c = blob_centre(0, 0, size)
if impl == "reference":
    from reference import build_reference
    ref = build_reference("sam2.1_hiera_tiny", image_size=size, checkpoint=weights)
    with torch.inference_mode():
        state = ref.init_state(folder)
        ref.add_new_points_or_box(state, 0, 1, points=[[c, r]], labels=[1])
        for _ in ref.propagate_in_video(state):
            pass
else:
    from napari_sam2.model import VideoSession, build_sam2
    from napari_sam2.io import open_stack
    frames, _ = open_stack(folder)
    model = build_sam2("sam2.1_hiera_tiny", checkpoint=weights, image_size=size, device="cpu")
    with VideoSession(model, frames, feature_cache_bytes=CAP, record_ram_bytes=CAP, conditioned_cache_bytes=CAP) as s:
        s.add_points(0, 1, [[r, c]], [1])
        for _ in s.propagate():
            pass
with open("/proc/self/status") as fh:  # this address space's peak, not the parent's
    peak_kb = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
print(json.dumps({{"peak_mib": peak_kb / 1024}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--cache-mib", type=int, default=16,
                        help="each of our three caches (image features, conditioned features, records in RAM) "
                        "is given this budget; the session defaults are 1024, 256 and 256 MiB")
    args = parser.parse_args()
    here = Path(__file__).resolve().parent
    child = CHILD.format(bench=str(here), tests=str(here.parent / "tests"))
    results: dict[str, dict[int, float]] = {"reference": {}, "ours": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sys.path.insert(0, str(here.parent / "tests"))
        from PIL import Image
        from reference import build_reference, save_checkpoint

        weights = save_checkpoint(build_reference("sam2.1_hiera_tiny", image_size=args.size), tmp / "w.pt")
        frames = synthetic_frames(args.size, max(args.frames))
        for count in args.frames:
            folder = tmp / f"f{count}"
            folder.mkdir()
            for t in range(count):
                Image.fromarray(frames[t]).save(folder / f"{t:05d}.jpg", quality=95)
            for impl in ("reference", "ours"):
                out = subprocess.run(
                    [sys.executable, "-c", child, impl, str(folder), str(args.size), str(weights), str(args.cache_mib)],
                    capture_output=True, text=True, env=dict(os.environ),
                )
                if out.returncode:
                    raise SystemExit(f"{impl} with {count} frames failed:\n{out.stderr[-3000:]}")
                peak = json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]
                results[impl][count] = peak
                print(f"{impl:10s} {count:5d} frames: peak RSS {peak:8.1f} MiB", flush=True)
    info = machine_info()
    last = max(args.frames)
    print(f"\nmachine: {info.get('cpu', info['processor'])}, {info['cpu_count']} cores; sam2.1_hiera_tiny at {args.size}px")
    counts = sorted(args.frames)
    for impl, peaks in results.items():
        for a, b in zip(counts, counts[1:]):
            growth = peaks[b] / peaks[a] - 1
            print(f"{impl:10s} growth from {a} to {b} frames: {growth:+.1%} "
                  f"({(peaks[b] - peaks[a]) / (b - a):.2f} MiB per extra frame)")
    ratio = results["ours"][last] / results["reference"][last]
    print(f"peak at {last} frames, ours / reference: {ratio:.3f}")
    save_results(f"memory_{args.size}", {"args": vars(args), "peak_mib": results})


if __name__ == "__main__":
    main()
