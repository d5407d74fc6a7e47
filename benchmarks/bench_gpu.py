"""Frames per second on a GPU for every SAM 2 variant (float32, bfloat16, torch.compile).

Run it wherever a CUDA GPU is available:

    python benchmarks/bench_gpu.py                          # all eight variants
    python benchmarks/bench_gpu.py --models sam2.1_hiera_tiny --compile
    python benchmarks/bench_gpu.py --checkpoint official    # real weights from the cache

Each variant tracks ``--objects`` objects clicked on frame 0 through ``--frames``
frames at 1024px; the first ``--warmup`` frames are not timed. With ``--reference`` the
reference predictor is timed on the same weights and frames too. ``--device cpu`` runs a
small smoke test on machines without a GPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from common import Pair, blob_centre, machine_info, save_results

ALL_MODELS = [
    "sam2.1_hiera_tiny", "sam2.1_hiera_small", "sam2.1_hiera_base_plus", "sam2.1_hiera_large",
    "sam2_hiera_tiny", "sam2_hiera_small", "sam2_hiera_base_plus", "sam2_hiera_large",
]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_ours(model, frames, objects: int, size: int, precision: str, warmup: int, device) -> float:
    from napari_sam2.model import VideoSession

    with VideoSession(model, frames, precision=precision) as session:
        for k in range(objects):
            session.add_points(0, k + 1, [blob_centre(k, 0, size)], [1])
        start = None
        count = 0
        for i, _ in enumerate(session.propagate()):
            if i == warmup:
                sync(device)
                start = time.perf_counter()
            elif i > warmup:
                count += 1
        sync(device)
        return count / (time.perf_counter() - start)


def time_reference(ref, jpeg_dir, objects: int, size: int, precision: str, warmup: int, device) -> float:
    ctx = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bfloat16" else torch.autocast(device.type, enabled=False)
    with torch.inference_mode(), ctx:
        state = ref.init_state(str(jpeg_dir))
        for k in range(objects):
            r, c = blob_centre(k, 0, size)
            ref.add_new_points_or_box(state, 0, k + 1, points=[[c, r]], labels=[1])
        start, count = None, 0
        for i, _ in enumerate(ref.propagate_in_video(state)):
            if i == warmup:
                sync(device)
                start = time.perf_counter()
            elif i > warmup:
                count += 1
        sync(device)
        return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=ALL_MODELS)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd image encoder")
    parser.add_argument("--reference", action="store_true", help="also time the reference predictor")
    parser.add_argument("--checkpoint", default=None, help="'official' to use the real weights")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here; use --device cpu --size 256 --frames 4 for a smoke test")
    precisions = ["float32", "bfloat16"] if device.type == "cuda" else ["float32"]
    table = {}
    for name in args.models:
        with tempfile.TemporaryDirectory() as tmp:
            pair = Pair(Path(tmp), name, args.size, args.frames)
            if args.checkpoint == "official":
                from napari_sam2.model import build_sam2

                pair.ours = build_sam2(name, checkpoint="official", device=device)
            model = pair.ours.to(device)
            row = {}
            for precision in precisions:
                row[f"ours {precision}"] = time_ours(model, pair.frames, args.objects, args.size, precision, args.warmup, device)
                if args.reference:
                    ref = pair.ref.to(device)
                    row[f"reference {precision}"] = time_reference(
                        ref, pair.jpeg_dir, args.objects, args.size, precision, args.warmup, device
                    )
            if args.compile:
                model.image_encoder.forward = torch.compile(model.image_encoder.forward, dynamic=False)
                for precision in precisions:
                    row[f"ours {precision} compiled"] = time_ours(
                        model, pair.frames, args.objects, args.size, precision, args.warmup, device
                    )
            table[name] = row
            print(name, "  ".join(f"{k}: {v:.2f} fps" for k, v in row.items()), flush=True)
    info = machine_info()
    print(f"\n{info.get('gpu', info.get('cpu'))}; {args.objects} objects, {args.size}px")
    save_results(f"gpu_{device.type}", {"args": vars(args), "fps": table})


if __name__ == "__main__":
    main()
