"""Fine-tuning on a new imaging domain: held-out J&F before and after, within a time budget.

The demo model never sees phase contrast (dark cells with bright halos on a bright
background); it is fine-tuned on synthetic phase-contrast clips drawn from seeds below
``HELDOUT_SEED`` and scored on clips from ``HELDOUT_SEED`` on, which training never sees.
Up to ``--objects`` cells of each held-out clip's first frame are the masklets to track
(chosen at random per seed), as video benchmarks annotate a few objects per clip.
Protocol (``napari_sam2.training.evaluation.PROTOCOL``): one positive click at each
object's most interior pixel on its first frame, then forward propagation; J, F and
J&F per object, averaged over objects.

The training budget (``--minutes``) is wall time and includes a 3-step pace probe; the
number of steps is chosen from the probe so that the learning-rate schedule ends in
time, and a hard stop at the budget keeps the promise on a slower machine.

    python benchmarks/bench_finetune.py                     # the bundled demo model, 15 min, 2 threads
    python benchmarks/bench_finetune.py --checkpoint other.pt --minutes 5
    python benchmarks/bench_finetune.py --steps 3 --clips 2 --eval-frames 4 --name smoke   # smoke test

Writes ``benchmarks/results/finetune.json`` (or ``--name``) and prints a table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import save_results

from napari_sam2.model.sam2 import Sam2
from napari_sam2.sample_data import random_clip
from napari_sam2.training import (
    ClipSettings,
    OptimSettings,
    PromptSettings,
    TrainConfig,
    evaluate,
    from_generator,
    start_model,
    train,
)
from napari_sam2.training.data import Video, make_video
from napari_sam2.training.demo import HELDOUT_SEED

DOMAIN = "phase"
TARGET_GAIN = 0.15
PROBE_STEPS = 3


def heldout_videos(count: int, frames: int, objects: int) -> list[Video]:
    """Held-out phase-contrast clips, each keeping up to ``objects`` cells of its first frame."""
    videos = []
    for i in range(count):
        seed = HELDOUT_SEED + i
        clip = random_clip(DOMAIN, seed, num_frames=frames)
        labels = np.asarray(clip.labels)
        first = np.unique(labels[0])
        first = first[first != 0]
        rng = np.random.default_rng(seed)
        keep = rng.choice(first, size=min(objects, first.size), replace=False) if first.size else first
        labels = np.where(np.isin(labels, keep), labels, 0).astype(labels.dtype)
        videos.append(make_video(clip.image, labels, name=f"{DOMAIN}-{seed}", require_objects=False))
    return videos


def training_config(args: argparse.Namespace, steps: int) -> TrainConfig:
    return TrainConfig(
        steps=steps,
        trainable=args.train,
        seed=args.seed,
        # many objects per clip: the image encoder runs once per frame, objects are cheap supervision
        clip=ClipSettings(num_frames=args.frames, max_objects=args.max_objects),
        # scored with clicks: fewer mask prompts than SAM 2's 0.5, as in the demo recipe
        prompts=PromptSettings(prob_mask=0.3, prob_box=0.2, correction_rounds=args.rounds),
        optim=OptimSettings(lr=args.lr),
        checkpoint_every=0,
        grad_checkpoint=False,  # the demo model fits easily; recomputation would cost time
    )


def fresh_copy(model: Sam2) -> Sam2:
    """An independent copy with the same weights (nothing shared with the original)."""
    copy = Sam2(model.config)
    copy.load_state_dict(model.state_dict(), strict=True)
    return copy.to(model.device)


def probe_pace(model: Sam2, data, args: argparse.Namespace, workdir: Path) -> float:
    """Seconds per training step, from a few steps on a throw-away copy (first one excluded)."""
    times = [time.perf_counter()]
    train(fresh_copy(model), data, training_config(args, PROBE_STEPS), output=workdir / "probe.pt", overwrite=True,
          progress=lambda p: times.append(time.perf_counter()))
    gaps = np.diff(times)
    return float(np.mean(gaps[1:])) if gaps.size > 1 else float(gaps[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="demo", help="starting model: 'demo' (bundled) or a checkpoint file")
    parser.add_argument("--minutes", type=float, default=15.0, help="training wall-time budget (default 15)")
    parser.add_argument("--steps", type=int, default=None, help="fixed number of steps (default: as many as fit)")
    parser.add_argument("--train", default="all", choices=("decoder", "memory", "all"), help="what to train (default all)")
    parser.add_argument("--lr", type=float, default=3e-4, help="peak learning rate of the heads (default 3e-4)")
    parser.add_argument("--frames", type=int, default=4, help="frames per training clip (default 4)")
    parser.add_argument("--max-objects", type=int, default=8, help="objects per training clip (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="corrective-click rounds per clip (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clips", type=int, default=10, help="held-out clips (default 10)")
    parser.add_argument("--eval-frames", type=int, default=16, help="frames per held-out clip (default 16)")
    parser.add_argument("--objects", type=int, default=5, help="tracked cells per held-out clip (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--output", default=None, help="keep the fine-tuned model in this file")
    parser.add_argument("--name", default="finetune", help="results file name (without .json)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    command = "python benchmarks/bench_finetune.py " + " ".join(sys.argv[1:])

    model = start_model(args.checkpoint, device="cpu")
    videos = heldout_videos(args.clips, args.eval_frames, args.objects)
    t0 = time.perf_counter()
    before = evaluate(model, videos)
    eval_seconds = time.perf_counter() - t0
    print(f"before: J&F {before.JF:.3f} on {len(before.objects)} objects ({eval_seconds:.0f} s)", flush=True)

    data = from_generator(lambda s: random_clip(DOMAIN, s, num_frames=args.frames), seeds=range(HELDOUT_SEED),
                          name=f"synthetic {DOMAIN} clips")
    budget = args.minutes * 60.0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        if args.steps is None:
            pace = probe_pace(model, data, args, work)
            left = budget - (time.perf_counter() - started)
            steps = max(1, int(0.85 * left / pace))  # margin: a shared CPU slows down
        else:
            pace, steps = None, args.steps
        print(f"training {steps} steps ({args.train}, {args.frames}-frame clips)"
              + (f", {pace:.1f} s per step" if pace else ""), flush=True)
        output = Path(args.output) if args.output else work / "finetuned.pt"

        def report(p) -> None:
            if p.step % 10 == 0 or p.step == p.steps:
                print(f"step {p.step}/{p.steps} loss {p.loss:.3f} lr {p.lr:.1e} {p.elapsed:.0f} s", flush=True)

        result = train(
            fresh_copy(model), data, training_config(args, steps), output=output, overwrite=True,
            progress=report, cancel=lambda: time.perf_counter() - started > budget,
            metadata={"recipe": command},
        )
        train_seconds = time.perf_counter() - started
    after = evaluate(result.model, videos)
    gain = after.JF - before.JF
    rows = {
        "before": {"J": before.J, "F": before.F, "JF": before.JF},
        "after": {"J": after.J, "F": after.F, "JF": after.JF},
    }
    payload = {
        "command": command,
        "model": args.checkpoint,
        "domain": DOMAIN,
        "train": args.train, "lr": args.lr, "frames_per_clip": args.frames, "objects_per_clip": args.max_objects,
        "correction_rounds": args.rounds,
        "steps_planned": steps, "steps_done": result.step, "seconds_per_step_probe": pace,
        "training_minutes": train_seconds / 60.0, "budget_minutes": args.minutes,
        "training_seeds": f"0..{HELDOUT_SEED - 1}",
        "heldout": {"seeds": f"{HELDOUT_SEED}..{HELDOUT_SEED + args.clips - 1}", "frames": args.eval_frames,
                    "objects_per_clip": args.objects, "objects": len(after.objects)},
        "protocol": after.protocol,
        "results": rows,
        "gain_JF": gain,
        "target_gain": TARGET_GAIN,
        "loss_first_last": [result.history[0][1], result.history[-1][1]] if result.history else None,
        "threads": torch.get_num_threads(),
    }
    path = save_results(args.name, payload)
    print(f"\n{command}")
    print(f"{result.step} steps in {train_seconds / 60:.1f} min; held-out: {args.clips} clips x {args.eval_frames} "
          f"frames, {len(after.objects)} objects")
    print(f"{'':8s} {'J':>6s} {'F':>6s} {'J&F':>6s}")
    for name, row in rows.items():
        print(f"{name:8s} {row['J']:6.3f} {row['F']:6.3f} {row['JF']:6.3f}")
    print(f"gain in J&F: {gain:+.3f} (target >= {TARGET_GAIN})")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
