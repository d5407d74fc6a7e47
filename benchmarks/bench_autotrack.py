"""Quality of track-all on held-out synthetic time-lapses: DET, SEG, TRA and divisions.

Each clip is a fluorescence time-lapse (``fluorescence_clip``) whose cells move, touch,
divide, enter and leave; seeds run from ``HELDOUT_SEED + 500`` on, which training never
sees, and a seed whose truth has fewer than ``--min-divisions`` divisions, no cell
entering or no cell leaving is skipped (the seeds used and skipped are recorded).
Scores are the Cell Tracking Challenge measures (``tracking_scores``, py-ctcmetrics).

Modes:

- a model (``--model demo``, the default, or ``--model PATH.pt``, a checkpoint that
  records its architecture): a real run, seeded automatically (``--seeding auto``) or
  from the truth's first frame (``--seeding labels``, to tell detection from tracking
  errors), with automatic re-detection for new cells and divisions;
- ``--oracle``: a session and a detector that follow the truth (tests/oracle_tracking.py),
  so the masks are perfect and the scores are the ceiling of track-all's bookkeeping.

    python benchmarks/bench_autotrack.py --oracle
    python benchmarks/bench_autotrack.py                         # the bundled demo model
    python benchmarks/bench_autotrack.py --model other.pt --seeding labels

Writes ``benchmarks/results/autotrack_<mode>.json`` (or ``--name``) and prints a table.
Exits with 2 and the loader's message when the model file is missing.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (HERE, ROOT):  # common.py; tests/oracle_tracking.py
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from common import RESULTS, machine_info  # noqa: E402

from napari_sam2.sample_data.fluorescence import fluorescence_clip  # noqa: E402
from napari_sam2.tracking.track_all import TrackAllSettings, TrackAllResult, track_all  # noqa: E402
from napari_sam2.training.demo import HELDOUT_SEED  # noqa: E402
from napari_sam2.training.tracking_metrics import TrackingScores, tracking_scores  # noqa: E402

#: first seed of this benchmark's clips (held out from training, apart from other benchmarks)
FIRST_SEED = HELDOUT_SEED + 500
#: what the track-all issue asks of the mean over clips
TARGETS = {"DET": 0.95, "TRA": 0.9, "SEG": 0.75, "division_recall": 0.8}
#: at most this many seeds are tried per clip wanted before giving up
TRIES_PER_CLIP = 25


@dataclass(frozen=True)
class ClipParams:
    """How the clips are drawn: busy enough for divisions, touching and crossings."""

    frames: int = 32
    size: int = 224
    radius: float = 9.0
    density: float = 0.25
    division_rate: float = 0.15


@dataclass(frozen=True)
class TruthCounts:
    """What a clip's truth holds: tracks, divisions, cells entering and leaving."""

    tracks: int
    divisions: int
    entering: int
    leaving: int


def truth_counts(clip: Any) -> TruthCounts:
    """Counted from the truth: a division is a mother with two daughters (as the CTC
    measures count them; a daughter born outside the frame leaves a one-daughter link),
    a track entering starts after frame 0 without a mother, a track leaving ends before
    the last frame without daughters."""
    num_frames = int(clip.labels.shape[0])
    mothers = list(clip.parents.values())  # one entry per daughter
    divisions = sum(1 for m in set(mothers) if mothers.count(m) >= 2)
    entering = leaving = 0
    for label, centers in clip.centers.items():
        on = [t for t, c in enumerate(centers) if c is not None]
        if on[0] > 0 and label not in clip.parents:
            entering += 1
        if on[-1] < num_frames - 1 and label not in mothers:
            leaving += 1
    return TruthCounts(len(clip.centers), divisions, entering, leaving)


def pick_clips(count: int, params: ClipParams, min_divisions: int, first_seed: int = FIRST_SEED) -> tuple[list, list[int]]:
    """``count`` qualifying clips as ``(seed, clip, counts)`` and the seeds skipped: a
    benchmark of lineages needs divisions and cells entering and leaving in every clip."""
    chosen: list = []
    skipped: list[int] = []
    seed = first_seed
    while len(chosen) < count:
        if seed - first_seed >= TRIES_PER_CLIP * count:
            raise SystemExit(
                f"only {len(chosen)} of {count} clips among seeds {first_seed}..{seed - 1} have {min_divisions} "
                "divisions and cells entering and leaving; change --frames, --size or --min-divisions"
            )
        clip = fluorescence_clip(seed, params.frames, params.size, radius=params.radius,
                                 density=params.density, division_rate=params.division_rate)
        counts = truth_counts(clip)
        if counts.divisions >= min_divisions and counts.entering >= 1 and counts.leaving >= 1:
            chosen.append((seed, clip, counts))
        else:
            skipped.append(seed)
        seed += 1
    return chosen, skipped


def run_clip(clip: Any, settings: TrackAllSettings, seeding: str, model: Any = None) -> tuple[np.ndarray, TrackAllResult]:
    """Track-all on one clip: with the model (a real session and automatic detection), or
    with the oracle stand-ins when ``model`` is None."""
    out = np.zeros(clip.labels.shape, np.uint16)
    last = int(clip.labels.shape[0]) - 1
    seeds = clip.labels[0] if seeding == "labels" else None
    if model is None:
        from tests.oracle_tracking import OracleDetector, OracleSession

        session = OracleSession(clip.labels, clip.parents)
        detector = OracleDetector(clip.labels, settings.min_size)
        return out, track_all(session, out, 0, last, seeds=seeds, detector=detector, settings=settings)
    from napari_sam2.model.video import VideoSession
    from napari_sam2.tracking.track_all import AutomaticDetector

    with VideoSession(model, clip.image) as session:
        detector = AutomaticDetector(model, session.frames, settings)
        result = track_all(session, out, 0, last, seeds=seeds, detector=detector, settings=settings)
    return out, result


def score(out: np.ndarray, result: TrackAllResult, clip: Any, counts: TruthCounts) -> TrackingScores:
    """The CTC measures of one run; a run that kept nothing scores 0 (py-ctcmetrics fails
    on a result without tracks, and an untrained model may find nothing)."""
    if not out.any():
        return TrackingScores(det=0.0, seg=0.0, tra=0.0, divisions_true=counts.divisions,
                              divisions_found=0, divisions_false=0, division_tolerance=1)
    return tracking_scores(out, result.lineage.parents(), clip.labels, clip.parents)


def clip_row(seed: int, counts: TruthCounts, scores: TrackingScores, result: TrackAllResult, seeding: str) -> dict:
    """One clip's numbers for the table and the results file."""
    tracking = result.seconds_total - result.seconds_detecting - (result.seconds_seeding if seeding == "labels" else 0.0)
    return {
        "seed": seed,
        "DET": scores.det,
        "SEG": scores.seg,
        "TRA": scores.tra,
        "divisions_true": scores.divisions_true,
        "divisions_found": scores.divisions_found,
        "divisions_false": scores.divisions_false,
        "division_recall": scores.division_recall,
        "division_precision": scores.division_precision,
        "divisions_claimed": result.divisions,
        "tracks": len(result.lineage),
        "tracks_true": counts.tracks,
        "entering_true": counts.entering,
        "leaving_true": counts.leaving,
        "seeded": result.seeded,
        "added": result.added,
        "ended": result.ended,
        "detections": result.detections,
        "frames_tracked": result.frames_tracked,
        "seconds_seeding": result.seconds_seeding,
        "seconds_per_detection": result.seconds_per_detection,
        "seconds_per_tracked_frame": tracking / result.frames_tracked if result.frames_tracked else 0.0,
        "seconds_total": result.seconds_total,
    }


def mean_row(rows: list[dict]) -> dict:
    """DET, SEG, TRA and timings averaged over clips; divisions pooled (recall and
    precision over all divisions, so a clip with few does not weigh as much as a busy one)."""
    mean: dict[str, Any] = {}
    timings = ("seconds_seeding", "seconds_per_detection", "seconds_per_tracked_frame", "seconds_total")
    for key in ("DET", "SEG", "TRA", *timings):
        mean[key] = float(np.mean([r[key] for r in rows]))
    for key in ("divisions_true", "divisions_found", "divisions_false", "divisions_claimed", "tracks", "tracks_true"):
        mean[key] = int(sum(r[key] for r in rows))
    found, true, false = mean["divisions_found"], mean["divisions_true"], mean["divisions_false"]
    mean["division_recall"] = found / true if true else 1.0
    mean["division_precision"] = found / (found + false) if found + false else 1.0
    return mean


def judge(mean: dict) -> dict:
    """Each target of the issue with the value reached and whether it passes."""
    return {key: {"target": target, "value": mean[key], "pass": bool(mean[key] >= target)}
            for key, target in TARGETS.items()}


def print_table(rows: list[dict], mean: dict, verdicts: dict) -> None:
    head = (f"{'clip seed':>10s} {'DET':>6s} {'SEG':>6s} {'TRA':>6s} {'div found/true':>14s} {'div prec':>8s} "
            f"{'tracks/true':>11s} {'seed s':>7s} {'s/detect':>8s} {'s/frame':>8s}")
    print(head)
    print("-" * len(head))
    for r in [*rows, dict(mean, seed="mean")]:
        print(f"{r['seed']!s:>10s} {r['DET']:6.3f} {r['SEG']:6.3f} {r['TRA']:6.3f} "
              f"{str(r['divisions_found']) + '/' + str(r['divisions_true']):>14s} {r['division_precision']:8.3f} "
              f"{str(r['tracks']) + '/' + str(r['tracks_true']):>11s} {r['seconds_seeding']:7.3f} "
              f"{r['seconds_per_detection']:8.3f} {r['seconds_per_tracked_frame']:8.3f}")
    print("targets: " + ", ".join(
        f"{key} {v['value']:.3f} >= {v['target']} {'pass' if v['pass'] else 'FAIL'}" for key, v in verdicts.items()))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    d, p = TrackAllSettings(), ClipParams()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", default="demo", help="'demo' (the bundled model, default) or a checkpoint file")
    which.add_argument("--oracle", action="store_true", help="perfect masks from the truth: track-all's bookkeeping ceiling")
    parser.add_argument("--seeding", choices=("auto", "labels"), default="auto",
                        help="first-frame seeds: automatic detection (default) or the truth's labels")
    parser.add_argument("--clips", type=int, default=4, help="held-out clips (default 4)")
    parser.add_argument("--frames", type=int, default=p.frames, help=f"frames per clip (default {p.frames})")
    parser.add_argument("--size", type=int, default=p.size, help=f"frame size in pixels (default {p.size})")
    parser.add_argument("--min-divisions", type=int, default=2, help="divisions a clip must have (default 2)")
    parser.add_argument("--redetect-every", type=int, default=d.redetect_every)
    parser.add_argument("--min-size", type=int, default=d.min_size)
    parser.add_argument("--points-per-side", type=int, default=d.points_per_side)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--device", default=None, help="where the model runs (default: CUDA, then MPS, then CPU)")
    parser.add_argument("--name", default=None, help="results file name without .json (default autotrack_<mode>)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="folder of the results file")
    args = parser.parse_args(argv)
    if args.clips < 1 or args.frames < 2 or args.size < 32 or args.min_divisions < 0:
        parser.error("need --clips >= 1, --frames >= 2, --size >= 32 and --min-divisions >= 0")
    return args


def mode_name(args: argparse.Namespace) -> str:
    """``oracle``, ``demo`` or the checkpoint's stem, with ``_labels`` for truth seeds."""
    base = "oracle" if args.oracle else "demo" if args.model == "demo" else Path(args.model).stem
    return base + ("_labels" if args.seeding == "labels" else "")


def load_model(args: argparse.Namespace) -> Any:
    """The model to benchmark; a missing or unreadable file raises CheckpointError."""
    from napari_sam2.model import build_sam2

    if args.model == "demo":
        return build_sam2("demo", device=args.device)
    return build_sam2(checkpoint=args.model, device=args.device)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = TrackAllSettings(redetect_every=args.redetect_every, min_size=args.min_size,
                                points_per_side=args.points_per_side)
    model = None
    if not args.oracle:
        from napari_sam2.model.checkpoint import CheckpointError

        try:
            model = load_model(args)
        except (CheckpointError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        settings = settings.for_model(model)  # recorded as used: the model's own thresholds
    params = ClipParams(args.frames, args.size)
    chosen, skipped = pick_clips(args.clips, params, args.min_divisions)
    rows = []
    for seed, clip, counts in chosen:
        out, result = run_clip(clip, settings, args.seeding, model)
        scores = score(out, result, clip, counts)
        if not out.any():
            print(f"clip {seed}: nothing was tracked (no object found or kept)", file=sys.stderr)
        rows.append(clip_row(seed, counts, scores, result, args.seeding))
    mean = mean_row(rows)
    verdicts = judge(mean)
    mode = mode_name(args)
    argv_shown = list(sys.argv[1:] if argv is None else argv)
    payload = {
        "command": "python benchmarks/bench_autotrack.py" + "".join(" " + shlex.quote(a) for a in argv_shown),
        "mode": mode,
        "model": None if args.oracle else args.model,
        "oracle": bool(args.oracle),
        "seeding": args.seeding,
        "settings": asdict(settings),
        "clip_params": asdict(params),
        "min_divisions": args.min_divisions,
        "seeds": [seed for seed, _, _ in chosen],
        "seeds_skipped": skipped,
        "heldout_seed": HELDOUT_SEED,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "clips": rows,
        "mean": mean,
        "targets": verdicts,
        "machine": machine_info(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"{args.name or 'autotrack_' + mode}.json"
    path.write_text(json.dumps(payload, indent=2))
    what = "oracle (perfect masks: the bookkeeping ceiling)" if args.oracle else f"model {args.model}"
    print(f"track-all on {len(rows)} held-out clips ({params.frames} frames, {params.size} px), {what}, "
          f"{args.seeding} seeding; seeds {payload['seeds']}" + (f", skipped {skipped}" if skipped else ""))
    print_table(rows, mean, verdicts)
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
