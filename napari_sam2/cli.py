"""The ``napari-sam2`` command: headless tracking, batches on dask, models, and the GUI.

Exit status: 0 on success, 1 when something fails while running (unreadable input,
prompts that do not fit the stack, an existing output, no network, a failed batch
input), 2 for a wrong command line, 130 when interrupted. Expected errors print one
``error: ...`` line; ``--debug`` shows the traceback. Progress bars go to stderr,
results to stdout. Only ``gui`` imports napari.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import textwrap
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from . import __version__, cli_values as values
from .console import Console
from .tracking.choice import ModelChoice
from .tracking.errors import UsageError, describe_error, expected_errors, option_of
from .tracking.exports import FORMATS
from .tracking.pipeline import TrackOptions
from .tracking.plan import DIRECTIONS

if TYPE_CHECKING:  # pragma: no cover
    from .tracking.track_all import TrackAllSettings

__all__ = ["main", "build_parser"]

SAMPLES = ("cells", "clip", "nuclei")  # sample data keys of the plugin manifest
WIDGET = "Segment and track"  # display name of the dock widget in the manifest
PLUGIN = "napari-sam2"

_TRACK_EXAMPLES = """\
examples:
  napari-sam2 track movie.tif --prompts movie.prompts.json --output movie.labels.tif
  napari-sam2 track movie.tif -o movie.labels.tif      # prompts from movie.prompts.json
  napari-sam2 track clip.mp4 -p clip.json -o clip.coco.json --model sam2.1_hiera_large --image-size 512
  napari-sam2 track stack.ome.tif -p p.json -o stack_RES --format ctc --axis T --at Z=12 --frames 0:200
  napari-sam2 track cells.tif -p p.json -o mattes --format mattes --feather 3 --overwrite

Track everything (no prompt file needed):
  napari-sam2 track movie.tif --auto -o movie_RES -f ctc
  napari-sam2 track movie.tif --seed-labels cellpose.tif -o movie.geff --auto --redetect-every 10

The prompt file is the JSON the plugin saves (version 1): per object, clicks, boxes or
painted masks on chosen frames, in (row, col) pixels of the original frames. Output
frame 0 is input frame START of --frames. Object ids are the label values.

With --auto or --seed-labels every object is tracked, forward from the first frame of
the range (START of --frames), where the seeds are: the objects of a labels image (its
label values become the track ids) or those automatic mask generation finds. With
--auto, new objects are searched for every --redetect-every frames. Objects below
--min-size pixels for --end-after frames end; a mask that splits divides. CTC and GEFF
exports record the divisions (res_track.txt parents, division edges); a prompt file
given with --prompts is tracked along (its ids must differ from the seed labels).
A session saved with --save-session is replayed by 'track -p SESSION.json'.
"""

_BATCH_EXAMPLES = """\
examples:
  napari-sam2 batch 'data/*.tif' --output-dir results
  napari-sam2 batch 'data/**/*.tif' -o results --prompts '{dir}/prompts/{stem}.json' --workers 4
  napari-sam2 batch jobs.csv -o results --format coco --scheduler tcp://10.0.0.5:8786
  napari-sam2 batch 'data/*.tif' -o results --skip-existing --report results/report.json

  napari-sam2 batch 'data/*.tif' -o results --auto --format ctc
  napari-sam2 batch 'data/*.tif' -o results --seed-labels-dir masks --format geff --save-sessions

Inputs are files, folders, glob patterns (quote them) or manifests: a .csv with the
columns input[,prompts][,seed_labels][,output], a .json list of such objects, or a
.txt with one input per line; manifest paths are relative to the manifest. Each
input's prompt file is --prompts (one file, or a template with {stem}, {name}, {dir}),
by default {dir}/{stem}.prompts.json next to the input. Outputs are named
<stem>.labels.tif, <stem>_RES, <stem>.coco.json, <stem>_mattes or <stem>.geff. With
--scheduler, the workers must see the same paths and have napari-sam2 installed.

Track everything with --auto and/or seed labels: --seed-labels-dir DIR takes each
input's labels from DIR, from a file of the input's name (DIR/cells.tif for
cells.tif), else of its stem with .tif, .tiff or .npy; --seed-labels is a template
like --prompts (e.g. '{dir}/{stem}_masks.tif'). Prompt files are then used only when
--prompts (or a manifest) names them. --save-sessions writes <stem>.session.json next
to each output.
"""


# ----------------------------------------------------------------------------- parser
def _common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output and diagnostics")
    group.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes, only errors and results")
    group.add_argument("--debug", action="store_true", help="show tracebacks for errors")


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    from .model.bundled import BUNDLED_MODELS, describe_bundled
    from .model.config import MODEL_NAMES

    group = parser.add_argument_group("model")
    group.add_argument(
        "--model", metavar="NAME", choices=tuple(MODEL_NAMES) + tuple(BUNDLED_MODELS),
        help="official variant: " + ", ".join(MODEL_NAMES) + "; or "
        + ", ".join(describe_bundled(name) for name in BUNDLED_MODELS)
        + ", which needs no download. Default: the one the prompt file names, "
        "else sam2.1_hiera_base_plus on a GPU and sam2.1_hiera_tiny elsewhere",
    )
    group.add_argument(
        "--checkpoint", metavar="PATH",
        help="a local .pt checkpoint instead of the official download (its variant is read from the weights)",
    )
    group.add_argument(
        "--no-demo-fallback", action="store_true",
        help="fail when official weights are not cached and cannot be downloaded, instead of running the "
        "bundled demo model (trained on synthetic data) with a warning",
    )
    group.add_argument(
        "--model-factory", metavar="MODULE:FUNC",
        help="build the model by calling a Python function ('package.module:function' or 'file.py:function'); "
        "for custom or fine-tuned architectures. Called with image_size= when --image-size is given",
    )
    group.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps (default: auto)")
    group.add_argument(
        "--image-size", type=values.image_size, metavar="PX",
        help="model input size; 512 runs about 8x faster than the full 1024 on a CPU, with the same weights and coarser masks "
        "(default: the prompt file's, else the model's)",
    )
    group.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto",
                       help="auto: bfloat16 on GPUs that support it, float32 elsewhere (default: auto)")
    group.add_argument(
        "--int8", action="store_true",
        help="dynamic int8 quantization on the CPU: approximate (mask IoU about 0.99 against exact mode), "
        "a few percent faster at 1024 and most useful together with --image-size 512",
    )
    group.add_argument("--threads", type=values.positive, metavar="N", help="CPU threads for torch (default: torch's choice; in a batch, the cores divided among the workers)")


def _track_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("tracking")
    group.add_argument(
        "--direction", choices=DIRECTIONS,
        help="both (default): forward from the earliest prompted frame, then backward from it, so every frame gets "
        "labels; forward: from the earliest prompted frame to the end; backward: from the latest to the start "
        "(tracking everything always runs forward)",
    )
    group.add_argument("--frames", type=values.frames, metavar="START:END", help="track and export only frames START..END-1 (either side may be left out)")
    group.add_argument("--axis", metavar="AXIS", help="the axis to walk: a letter of the file's axes (T, Z, ...) or an index (default: T, else Z)")
    group.add_argument("--at", type=values.held, action="append", metavar="AXIS=INDEX",
                       help="hold another stack axis at one index, e.g. --at Z=12 or --at C=1 (default: index 0)")
    group.add_argument("--fill-holes", type=values.non_negative, default=8, metavar="N",
                       help="fill holes up to N pixels inside masks, at the model's mask resolution (default: 8, as Meta's video predictor; 0: off)")
    group.add_argument("--remove-small", type=values.non_negative, default=0, metavar="N",
                       help="remove specks up to N pixels, at the model's mask resolution (default: 0, off)")
    group.add_argument("--contrast", type=values.contrast, metavar="LOW,HIGH",
                       help="intensity range mapped to the model input for 16-bit and float data "
                       "(default: the prompt file's, else a robust estimate)")
    group.add_argument("--feather", type=values.feather, default=0.0, metavar="PX", help="soft matte edge radius in pixels (mattes only; default: 0, hard edges)")
    group.add_argument("--temp-dir", metavar="DIR", help="where the temporary label stack is kept while tracking (default: next to the output)")


def _track_all_arguments(parser: argparse.ArgumentParser, batch: bool = False) -> None:
    group = parser.add_argument_group(
        "track everything", "every object, forward from the first frame of the range; new objects, ends, divisions"
    )
    group.add_argument(
        "--auto", action="store_true",
        help="find the objects by automatic mask generation: on the first frame of the range (unless seed labels are "
        "given) and every --redetect-every frames after it",
    )
    if batch:
        seeds = group.add_mutually_exclusive_group()
        seeds.add_argument("--seed-labels", metavar="TEMPLATE",
                           help="each input's seed labels: one file, or a template with {stem}, {name}, {dir} as --prompts")
        seeds.add_argument("--seed-labels-dir", metavar="DIR",
                           help="a folder of seed labels named like the inputs (DIR/<name>, else DIR/<stem>.tif, .tiff or .npy)")
    else:
        group.add_argument(
            "--seed-labels", metavar="LABELS",
            help="start from the objects of a labels image (one (H, W) plane, or a (T, H, W) stack of which the plane of "
            "the first tracked frame is used); its label values become the track ids",
        )
    group.add_argument("--redetect-every", type=values.non_negative, metavar="K",
                       help="with --auto, search for new objects every K frames (default: 5; 0: only on the first frame)")
    group.add_argument("--min-size", type=values.non_negative, metavar="N",
                       help="objects, new detections and division parts under N pixels are ignored (default: 20)")
    group.add_argument("--end-after", type=values.positive, metavar="M",
                       help="an object absent (under --min-size) on M frames in a row ends (default: 3)")
    group.add_argument("--no-divisions", action="store_true", help="do not look for divisions")
    group.add_argument("--points-per-side", type=values.positive, metavar="N",
                       help="automatic detection: a grid of N x N points per frame (default: 32)")
    group.add_argument("--pred-iou-thresh", type=values.fraction, metavar="X",
                       help="automatic detection: keep masks whose predicted IoU is at least X "
                            "(default: the model's own: 0.8 for official weights, 0.5 for the demo model)")
    group.add_argument("--stability-thresh", type=values.fraction, metavar="X",
                       help="automatic detection: keep masks whose stability score is at least X "
                            "(default: the model's own: 0.9 for official weights, 0.8 for the demo model)")
    if batch:
        group.add_argument("--save-sessions", action="store_true",
                           help="also write a session file (<stem>.session.json next to each output) that replays the run")
    else:
        group.add_argument("--save-session", metavar="JSON",
                           help="also write a session file (prompt file with the lineage) that replays the run in the plugin")


_TRACK_ALL_FLAGS = {
    "redetect_every": "--redetect-every", "min_size": "--min-size", "end_after": "--end-after",
    "no_divisions": "--no-divisions", "points_per_side": "--points-per-side", "pred_iou_thresh": "--pred-iou-thresh",
    "stability_thresh": "--stability-thresh", "save_session": "--save-session", "save_sessions": "--save-sessions",
}


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=79)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``napari-sam2`` command."""
    parser = argparse.ArgumentParser(
        prog="napari-sam2",
        description="Segment and track objects through time-lapses, z-stacks and videos with SAM 2.",
        epilog="Run 'napari-sam2 COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"napari-sam2 {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    raw = argparse.RawDescriptionHelpFormatter

    gui = commands.add_parser(
        "gui", help="open napari with the SAM 2 panel", formatter_class=raw,
        description="Open napari with the SAM 2 dock widget, and a file or a sample dataset.",
        epilog="examples:\n  napari-sam2 gui\n  napari-sam2 gui --sample cells\n  napari-sam2 gui movie.tif",
    )
    gui.add_argument("path", nargs="?", help="a stack, video or image folder to open")
    gui.add_argument("--sample", choices=SAMPLES, help="open a sample: cells (16-bit time-lapse), clip (RGB video), nuclei (z-stack)")
    _common(gui)
    gui.set_defaults(handler=_gui)

    track = commands.add_parser(
        "track", help="track the objects of a prompt file, or every object (--auto, --seed-labels), through one stack",
        formatter_class=raw, epilog=_TRACK_EXAMPLES,
        description=_wrap(
            "Track the objects of a prompt file through a stack (TIFF, OME-TIFF, video, image folder, .npy, "
            "zarr) and export the labels; or, with --auto or --seed-labels, track every object forward from the "
            "first frame of the range, with new objects, ends and divisions. The stack is read lazily and the "
            "labels are written frame by frame, so long stacks need little memory; the output appears only when "
            "it is complete."
        ),
    )
    track.add_argument("input", help="the stack or video")
    track.add_argument("-p", "--prompts", metavar="JSON",
                       help="the prompt file (default: <input stem>.prompts.json next to the input; with --auto or "
                       "--seed-labels only when given)")
    track.add_argument("-o", "--output", required=True, metavar="OUT", help="the output file or folder")
    track.add_argument("-f", "--format", choices=tuple(FORMATS), help="; ".join(f"{k}: {v}" for k, v in FORMATS.items())
                       + " (default: from the output name, .tif = tiff, .json = coco)")
    track.add_argument("--overwrite", action="store_true", help="replace an existing output (and session file)")
    _model_arguments(track)
    _track_arguments(track)
    _track_all_arguments(track)
    _common(track)
    track.set_defaults(handler=_track)

    batch = commands.add_parser(
        "batch", help="track many stacks in parallel on dask (local processes or a cluster)",
        formatter_class=raw, epilog=_BATCH_EXAMPLES,
        description=_wrap(
            "Track many stacks, one dask task per input, on a local cluster of worker processes or an existing "
            "dask scheduler. Each worker loads the model once and writes its own outputs. A failing input is "
            "reported and the others go on; the exit status is 1 if any failed."
        ),
    )
    batch.add_argument("inputs", nargs="+", metavar="INPUT", help="inputs, glob patterns or manifests (.csv, .json, .txt)")
    batch.add_argument("-o", "--output-dir", metavar="DIR", help="folder for the outputs (required unless a manifest gives every output)")
    batch.add_argument("-p", "--prompts", metavar="JSON_OR_TEMPLATE",
                       help="one prompt file for every input, or a template such as '{dir}/{stem}.json' (default: '{dir}/{stem}.prompts.json')")
    batch.add_argument("-f", "--format", choices=tuple(FORMATS), default="tiff", help="export format for every input (default: tiff)")
    existing = batch.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    existing.add_argument("--skip-existing", action="store_true", help="leave inputs whose output exists alone (to resume a batch)")
    cluster = batch.add_argument_group("cluster")
    cluster.add_argument("--scheduler", metavar="ADDRESS", help="an existing dask scheduler, e.g. tcp://host:8786 (default: start local workers)")
    cluster.add_argument("--workers", type=values.positive, metavar="N", help="local worker processes (default: one per two CPU cores; one on a GPU)")
    cluster.add_argument("--threads-per-worker", type=values.positive, default=1, metavar="M", help="inputs each local worker runs at once (default: 1)")
    batch.add_argument("--report", metavar="JSON", help="also write the results (status, error, timing, worker) to this JSON file (replaced on each run)")
    _model_arguments(batch)
    _track_arguments(batch)
    _track_all_arguments(batch, batch=True)
    _common(batch)
    batch.set_defaults(handler=_batch)

    models = commands.add_parser("models", help="list the official models and which are downloaded, and the bundled ones",
                                 description="List the official SAM 2 models, their download size and whether they are cached, "
                                 "and the models bundled with napari-sam2.")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _common(models)
    models.set_defaults(handler=_models)

    download = commands.add_parser(
        "download", help="download official models into the cache", formatter_class=raw,
        description="Download official SAM 2 checkpoints into the cache (checked by SHA-256).",
        epilog="examples:\n  napari-sam2 download sam2.1_hiera_tiny\n  napari-sam2 download --all\n\n"
        "The cache folder can be moved with the NAPARI_SAM2_CACHE environment variable.",
    )
    download.add_argument("names", nargs="*", metavar="NAME", help="model names (see 'napari-sam2 models')")
    download.add_argument("--all", action="store_true", help="download every official model")
    _common(download)
    download.set_defaults(handler=_download)

    from .cli_train import add_training_commands

    add_training_commands(commands, _common)
    return parser


# ----------------------------------------------------------------------------- commands
def _model_choice(args: argparse.Namespace) -> ModelChoice:
    from .model.bundled import is_bundled

    if args.model_factory and (args.model or args.checkpoint):
        raise UsageError("--model-factory builds the model itself; do not combine it with --model or --checkpoint")
    if is_bundled(args.model) and args.checkpoint:
        raise UsageError(
            f"--model {args.model} is the bundled model with its own weights; do not combine it with --checkpoint "
            "(a fine-tune of it loads with --checkpoint alone)"
        )
    return ModelChoice(
        name=args.model,
        checkpoint=args.checkpoint or "official",
        factory=args.model_factory,
        device=None if args.device == "auto" else args.device,
        image_size=args.image_size,
        torch_threads=args.threads,
        quantize="int8" if args.int8 else None,
        fallback_to_demo=not args.no_demo_fallback,
    )


def _track_options(args: argparse.Namespace) -> TrackOptions:
    held: dict[str, int] = {}
    for part in args.at or []:
        held.update(part)
    return TrackOptions(
        direction=args.direction or "both",
        frames=args.frames,
        axis=args.axis,
        at=held or None,
        fill_holes=args.fill_holes,
        remove_small=args.remove_small,
        contrast_limits=args.contrast,
        feather=args.feather,
        precision=args.precision,
        temp_dir=args.temp_dir,
    )


def _track_all_settings(args: argparse.Namespace, wanted: bool) -> "TrackAllSettings | None":
    """The track-all settings of the command line, or None when it does not track everything
    (then a track-all option is a mistake worth saying)."""
    from .tracking.track_all import TrackAllSettings

    if not wanted:
        given = [flag for name, flag in _TRACK_ALL_FLAGS.items() if getattr(args, name, None) not in (None, False)]
        if given:
            raise UsageError(f"{given[0]} only applies when tracking everything (--auto or seed labels)")
        return None
    if args.direction not in (None, "forward"):
        raise UsageError("tracking everything runs forward from the first frame of the range; drop --direction")
    settings: dict[str, Any] = {
        "redetect_every": args.redetect_every, "min_size": args.min_size, "end_after": args.end_after,
        "points_per_side": args.points_per_side, "pred_iou_thresh": args.pred_iou_thresh,
        "stability_score_thresh": args.stability_thresh,
    }
    if args.no_divisions:
        settings["divisions"] = False
    return TrackAllSettings(**{k: v for k, v in settings.items() if v is not None})


def _has_lineage(path: str) -> bool:
    """Whether a prompt file is a track-all session (then it is replayed as one); an
    unreadable file says no here and is reported by the reader."""
    try:
        data = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and bool(data.get("lineage"))


def _track(args: argparse.Namespace, console: Console) -> int:
    from .tracking.exports import resolve_format
    from .tracking.pipeline import track_file

    fmt = resolve_format(args.format, args.output)
    if args.feather and fmt != "mattes":
        raise UsageError("--feather only applies to --format mattes")
    everything = args.auto or args.seed_labels is not None
    prompts = args.prompts
    if prompts is None and not everything:
        from .batch import DEFAULT_PROMPTS, input_stem

        source = Path(args.input).expanduser().absolute()
        prompts = DEFAULT_PROMPTS.format(dir=source.parent, stem=input_stem(source), name=source.name)
        if not Path(prompts).is_file():
            raise UsageError(
                f"nothing to track: no prompt file given and none next to the input ({prompts}); "
                "pass --prompts, or track every object with --auto or --seed-labels"
            )
    replay = not everything and _has_lineage(prompts)
    settings = _track_all_settings(args, everything or replay)
    if settings is not None:
        return _track_everything(args, console, fmt, prompts, settings, replay)
    report = track_file(
        args.input, prompts, args.output, format=fmt, model=_model_choice(args),
        options=_track_options(args), overwrite=args.overwrite, progress=console.progress, notify=console.note,
        warn=console.warning,
    )
    console.close()
    first, last = report.frames
    objects = ", ".join(f"{obj}: {n}" for obj, n in report.object_frames.items())
    print(
        f"wrote {report.output} ({report.format}, frames {first}-{last}, {len(report.object_frames)} objects; "
        f"frames with a mask per object: {objects}) in {report.seconds:.1f} s"
    )
    return 0


def _track_everything(
    args: argparse.Namespace, console: Console, fmt: str, prompts: str | None, settings: Any, replay: bool
) -> int:
    from .tracking.track_all_file import track_all_file

    if replay:
        console.note(f"{Path(prompts or '').name} is a track-all session: replaying it forward with its lineage")
    report = track_all_file(
        args.input, args.output, auto=args.auto, seed_labels=args.seed_labels, prompts=prompts, settings=settings,
        format=fmt, model=_model_choice(args), options=_track_options(args), overwrite=args.overwrite,
        progress=console.progress, notify=console.note, warn=console.warning, session_out=args.save_session,
    )
    console.close()
    first, last = report.frames
    print(f"wrote {report.output} ({report.format}, frames {first}-{last}) in {report.seconds:.1f} s")
    print(report.summary())
    if report.session is not None:
        print(f"session: {report.session}")
    return 0


def _batch(args: argparse.Namespace, console: Console) -> int:
    from .batch import TrackAllPlan, format_summary, plan_batch, run_batch

    if args.scheduler and (args.workers or args.threads_per_worker != 1):
        raise UsageError("--workers and --threads-per-worker set up local workers; they do not apply with --scheduler")
    if args.feather and args.format != "mattes":
        raise UsageError("--feather only applies to --format mattes")
    everything = args.auto or args.seed_labels is not None or args.seed_labels_dir is not None
    settings = _track_all_settings(args, everything)
    plan = None if settings is None else TrackAllPlan(args.auto, settings, args.save_sessions)
    jobs = plan_batch(
        args.inputs, args.output_dir, args.format, args.prompts, track_all=everything,
        seed_labels=args.seed_labels, seed_labels_dir=args.seed_labels_dir,
    )
    report_path = Path(args.report).expanduser() if args.report else None
    where = f"the scheduler at {args.scheduler}" if args.scheduler else "local workers"
    console.note(f"{len(jobs)} inputs on {where}")
    console.progress("batch", 0, len(jobs))
    done = 0
    warned: set[str] = set()

    def warn(message: str) -> None:  # once per message, however many inputs it concerns
        if message not in warned:
            warned.add(message)
            console.warning(message)

    def on_result(result: Any) -> None:
        nonlocal done
        done += 1
        for message in result.warnings:
            warn(message)
        if result.summary:
            console.note(f"{Path(result.job.input).name}: {result.summary}")
        if not result.ok:
            console.note(f"failed: {result.job.input}: {result.error}")
            if args.debug and result.details:
                console.note(result.details)
        console.progress("batch", done, len(jobs))

    began = time.perf_counter()
    results = run_batch(
        jobs, model=_model_choice(args), options=_track_options(args), format=args.format,
        overwrite=args.overwrite, skip_existing=args.skip_existing, scheduler=args.scheduler,
        workers=args.workers, threads_per_worker=args.threads_per_worker, on_result=on_result,
        progress=console.progress, warn=warn, track_all=plan,
    )
    console.close()
    print(format_summary(results))
    print(f"total {time.perf_counter() - began:.1f} s")
    if report_path is not None:
        from .io.atomic import atomic_output

        text = json.dumps([r.to_dict() for r in results], indent=1)
        with atomic_output(report_path, overwrite=True) as temp:
            temp.write_text(text + "\n", encoding="utf-8")
    return 0 if all(r.ok for r in results) else 1


def _models(args: argparse.Namespace, console: Console) -> int:
    from .model.bundled import BUNDLED_MODELS, bundled_path
    from .model.checkpoint import CACHE_ENV, OFFICIAL_CHECKPOINTS, CheckpointError, cache_dir, checkpoint_path, is_cached

    rows = [
        {
            "name": name,
            "size": entry.size,
            "cached": is_cached(name),
            "path": str(checkpoint_path(name)),
            "bundled": False,
        }
        for name, entry in OFFICIAL_CHECKPOINTS.items()
    ]
    for name in BUNDLED_MODELS:
        try:
            path = bundled_path(name)
        except CheckpointError:  # an installation without it
            rows.append({"name": name, "size": None, "cached": False, "path": None, "bundled": True})
        else:
            rows.append({"name": name, "size": path.stat().st_size, "cached": True, "path": str(path), "bundled": True})
    if args.json:
        print(json.dumps({"cache": str(cache_dir()), "models": rows}, indent=1))
        return 0
    print(f"cache folder: {cache_dir()}  (set {CACHE_ENV} to move it)")
    width = max(len(r["name"]) for r in rows)
    print(f"{'model'.ljust(width)}  {'download':>9}  cached")
    for r in rows:
        size = f"{r['size'] / 1e6:.0f} MB" if r["size"] else "?"
        if r["bundled"]:
            state = "bundled (trained on synthetic data)" if r["cached"] else "bundled, missing from this installation"
            print(f"{r['name'].ljust(width)}  {'-':>9}  {state}")
        else:
            print(f"{r['name'].ljust(width)}  {size:>9}  {'yes' if r['cached'] else 'no'}")
    print("default: sam2.1_hiera_tiny on CPU, sam2.1_hiera_base_plus on a GPU (or the one a prompt file names); "
          "when it cannot be downloaded, the bundled demo model runs instead, with a warning")
    return 0


def _download(args: argparse.Namespace, console: Console) -> int:
    from .model.checkpoint import OFFICIAL_CHECKPOINTS, download_checkpoint, is_cached

    names = list(OFFICIAL_CHECKPOINTS) if args.all else list(dict.fromkeys(args.names))
    if not names:
        raise UsageError("name at least one model (see 'napari-sam2 models'), or pass --all")
    from .model.bundled import is_bundled

    bundled = [n for n in names if is_bundled(n)]
    if bundled:
        raise UsageError(f"{bundled[0]} is bundled with napari-sam2: there is nothing to download")
    unknown = [n for n in names if n not in OFFICIAL_CHECKPOINTS]
    if unknown:
        raise UsageError(f"unknown model {unknown[0]!r}; known models: {', '.join(OFFICIAL_CHECKPOINTS)}")
    failed = 0
    for name in names:
        was_cached = is_cached(name)
        try:
            callback = (lambda done, total: console.progress("download", done, total)) if not console.quiet else False
            path = download_checkpoint(name, progress=callback)
        except Exception as exc:
            console.error(f"{name}: {user_message(exc)}")
            failed += 1
            continue
        console.close()
        print(f"{name}: {'already cached' if was_cached else 'downloaded'} at {path}")
    return 1 if failed else 0


def _gui(args: argparse.Namespace, console: Console) -> int:
    if args.path is not None and not Path(args.path).expanduser().exists():
        raise FileNotFoundError(f"no such file or folder: {args.path}")
    try:
        import napari
    except ImportError as err:
        raise RuntimeError(f"napari is not installed or cannot start ({err}); install napari-sam2 with a Qt backend, e.g. pip install 'napari-sam2[qt]'") from None
    viewer = napari.Viewer(title="napari-sam2")
    if args.path is not None:
        _open_in(viewer, Path(args.path).expanduser())
    if args.sample is not None:
        viewer.open_sample(PLUGIN, args.sample)
    viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    napari.run()
    return 0


def _open_in(viewer: Any, path: Path) -> None:
    """Open with our lazy reader when it takes the file, else with napari's own choice."""
    from .io.tiff import TIFF_SUFFIXES
    from .io.video import VIDEO_SUFFIXES

    ours = path.is_file() and path.name.lower().endswith(tuple(TIFF_SUFFIXES) + tuple(VIDEO_SUFFIXES))
    viewer.open(str(path), plugin=PLUGIN if ours else None)


# ----------------------------------------------------------------------------- errors
_HINTS = {
    "seed-labels": "see --seed-labels",
    "format": "choose one with --format",
    "overwrite": "use --overwrite to replace it",
    "device": "see --device",
    "factory": "see --model-factory",
    "quantize": "see --int8",
    "model": "pass --model",
}


def user_message(err: BaseException) -> str:
    """The library's message plus the flag that fixes it (library errors name no flags)."""
    from .tracking.models import VariantMismatch

    message = describe_error(err)
    if isinstance(err, VariantMismatch):
        return f"{message}; drop --model or pass --model {err.found}"
    hint = _HINTS.get(option_of(err) or "")
    return f"{message}; {hint}" if hint else message


# ----------------------------------------------------------------------------- entry point
def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version and usage errors
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    console = Console(quiet=args.quiet)
    if args.quiet:
        logging.getLogger("pooch").setLevel(logging.WARNING)  # its "Downloading ..." lines
    handler: Callable[[argparse.Namespace, Console], int] = args.handler
    try:
        return handler(args, console)
    except KeyboardInterrupt:
        console.error("interrupted; outputs that were not finished were not written")
        return 130
    except UsageError as err:
        if args.debug:
            traceback.print_exc()
        console.error(user_message(err))
        return 2
    except Exception as err:
        if args.debug:
            traceback.print_exc()
        message = user_message(err)
        if not isinstance(err, expected_errors()) and not args.debug:
            message += " (run with --debug for the traceback)"
        console.error(message)
        return 1
    finally:
        console.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
