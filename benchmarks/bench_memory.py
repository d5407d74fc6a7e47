"""Peak resident memory against the number of frames, ours and the reference.

Each (implementation, frame count) runs in a fresh process that clicks one object on
frame 0 and propagates through every frame; the process reports its peak RSS (VmHWM)
and its time per frame. Ours reads a JPEG folder lazily and keeps bounded caches, each
given ``--cache-mib`` so that they are full early in the run and what grows after is
what is not bounded; the reference loads every frame up front and keeps every frame's
state. ``--no-reference`` leaves the reference out (long runs).

    python benchmarks/bench_memory.py                                  # 512 px, 40 and 200 frames
    python benchmarks/bench_memory.py --size 256 --frames 40 200 1000 --no-reference --tag long
    python benchmarks/bench_memory.py --size 1024 --frames 20 60 --no-reference
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
import json, os, resource, sys, time, torch
sys.path.insert(0, {bench!r}); sys.path.insert(0, {tests!r})
from common import blob_centre
impl, folder, size, weights = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
CAP = int(sys.argv[5]) << 20
names = sorted(p for p in os.listdir(folder) if p.endswith(".jpg"))
trim_s = 0.0
r, c = blob_centre(0, 0, size)
def cpu():
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime
if impl == "reference":
    from reference import build_reference
    ref = build_reference("sam2.1_hiera_tiny", image_size=size, checkpoint=weights)
    with torch.inference_mode():
        state = ref.init_state(folder)
        ref.add_new_points_or_box(state, 0, 1, points=[[c, r]], labels=[1])
        wall, used = time.perf_counter(), cpu()
        for _ in ref.propagate_in_video(state):
            pass
else:
    from napari_sam2.model import VideoSession, allocator, build_sam2
    from napari_sam2.io import open_stack
    release = allocator.release_free_memory
    def timed_release():  # what the heap trimming costs, measured in the run itself
        global trim_s
        t0 = time.perf_counter()
        done = release()
        trim_s += time.perf_counter() - t0
        return done
    allocator.release_free_memory = timed_release
    frames, _ = open_stack(folder)
    model = build_sam2("sam2.1_hiera_tiny", checkpoint=weights, image_size=size, device="cpu")
    with VideoSession(model, frames, feature_cache_bytes=CAP, record_ram_bytes=CAP, conditioned_cache_bytes=CAP) as s:
        s.add_points(0, 1, [[r, c]], [1])
        wall, used = time.perf_counter(), cpu()
        for _ in s.propagate():
            pass
wall, used = time.perf_counter() - wall, cpu() - used
with open("/proc/self/status") as fh:  # this address space's peak, not the parent's
    peak_kb = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
print(json.dumps({{"peak_mib": peak_kb / 1024, "s_per_frame": wall / len(names), "cpu_s_per_frame": used / len(names),
                  "trim_s_per_frame": trim_s / len(names)}}))
"""

# "ours, allocator untouched" runs with the package's allocator tuning switched off
VARIANTS = {"reference": {}, "ours": {}, "ours-untuned": {"NAPARI_SAM2_MALLOC": "0"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[40, 200])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--cache-mib", type=int, default=6,
                        help="each of our three caches (image features, conditioned features, results in RAM) "
                        "gets this budget, so that all are full before the first count at 512 px "
                        "(the defaults are sized to the machine: see napari_sam2.model.budgets)")
    parser.add_argument("--no-reference", action="store_true", help="only our implementation (long runs)")
    parser.add_argument("--untuned", action="store_true", help="also run ours with the allocator tuning off")
    parser.add_argument("--tag", default="", help="suffix of the results file name")
    args = parser.parse_args()
    impls = [i for i in VARIANTS if (i != "reference" or not args.no_reference) and (i != "ours-untuned" or args.untuned)]
    here = Path(__file__).resolve().parent
    child = CHILD.format(bench=str(here), tests=str(here.parent / "tests"))
    results: dict[str, dict[int, dict[str, float]]] = {impl: {} for impl in impls}
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
            for impl in impls:
                out = subprocess.run(
                    [sys.executable, "-c", child, impl.split("-")[0], str(folder), str(args.size), str(weights),
                     str(args.cache_mib)],
                    capture_output=True, text=True, env=dict(os.environ, **VARIANTS[impl]),
                )
                if out.returncode:
                    raise SystemExit(f"{impl} with {count} frames failed:\n{out.stderr[-3000:]}")
                row = json.loads(out.stdout.strip().splitlines()[-1])
                results[impl][count] = row
                print(f"{impl:13s} {count:5d} frames: peak RSS {row['peak_mib']:8.1f} MiB, "
                      f"{row['s_per_frame']:.3f} s/frame ({row['cpu_s_per_frame']:.3f} CPU s, "
                      f"heap trimming {row['trim_s_per_frame'] * 1000:.2f} ms)", flush=True)
            shutil_rmtree(folder)
    info = machine_info()
    print(f"\nmachine: {info.get('cpu', info['processor'])}, {info['cpu_count']} cores; sam2.1_hiera_tiny at {args.size}px")
    counts = sorted(args.frames)
    growth: dict[str, dict[str, float]] = {}
    for impl, rows in results.items():
        growth[impl] = {}
        for a, b in zip(counts, counts[1:]):
            per_frame = (rows[b]["peak_mib"] - rows[a]["peak_mib"]) / (b - a)
            growth[impl][f"{a}-{b}"] = per_frame
            print(f"{impl:13s} growth from {a} to {b} frames: {per_frame * 1.048576:+.3f} MB per extra frame")
    save_results(f"memory_{args.size}{'_' + args.tag if args.tag else ''}",
                 {"args": vars(args), "runs": results, "growth_mib_per_frame": growth})


def shutil_rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
