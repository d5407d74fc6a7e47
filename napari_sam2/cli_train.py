"""The ``napari-sam2 train`` and ``napari-sam2 evaluate`` commands.

Both follow the command line's conventions (see :mod:`napari_sam2.cli`): one
``error: ...`` line and exit status 1 for bad input, 2 for a wrong command line, 130
when interrupted; progress on stderr, results on stdout. A first Ctrl-C during training
finishes the current step, saves the model and the resumable state, and says how to go on.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from . import cli_values as values
from .console import Console
from .tracking.errors import UsageError

__all__ = ["add_training_commands"]

_TRAIN_EXAMPLES = """\
examples:
  napari-sam2 train --images movie.tif --labels movie.labels.tif --from sam2.1_hiera_tiny -o tuned.pt
  napari-sam2 train --ctc Fluo-N2DH-SIM+ --from sam2.1_hiera_tiny --train memory --steps 2000 -o tuned.pt
  napari-sam2 train --images a.tif --labels a_labels.tif --images b.tif --labels b_labels.tif \\
      --val-images c.tif --val-labels c_labels.tif --from demo --train all --image-size 512 -o tuned.pt
  napari-sam2 train ... -o tuned.pt --resume          # go on after Ctrl-C, with the same options

Labels are stacks of the image's shape whose values are object ids that persist
through time (0 = background). What is trained: decoder = mask decoder and prompt
encoder (fast, needs least data); memory = also memory attention and encoder (better
tracking); all = also the image encoder, more gently (new kinds of images, slowest).
The fine-tuned file loads with --checkpoint in track, batch and evaluate, and in the
widget (Weights: Local file). NAME.resume.pt next to it lets an interrupted run go on.
"""

_EVAL_EXAMPLES = """\
examples:
  napari-sam2 evaluate --images movie.tif --labels movie.labels.tif --checkpoint tuned.pt
  napari-sam2 evaluate --ctc Fluo-N2DH-SIM+ --model sam2.1_hiera_tiny --json scores.json

Protocol: one positive click at each object's most interior pixel on the first frame
it appears on, then forward propagation; J (region IoU) and F (boundary F-measure,
DAVIS tolerance) per object over its frames from the click on, J&F = (J + F) / 2,
averaged over objects. For a CTC folder with SEG masks the CTC SEG measure is added.
"""

# ----------------------------------------------------------------------------- parsers
def _data_arguments(parser: argparse.ArgumentParser, validation: bool) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--images", action="append", default=[], metavar="STACK",
                       help="an image stack (TIFF, OME-TIFF, video, folder); repeat for more, each with its --labels")
    group.add_argument("--labels", action="append", default=[], metavar="STACK",
                       help="its labels stack: same frames and pixels, object ids as values")
    group.add_argument("--ctc", action="append", default=[], metavar="FOLDER",
                       help="a Cell Tracking Challenge dataset (NN/ images, NN_GT/TRA and SEG truth); repeatable")
    group.add_argument("--sequence", metavar="NN", help="only this sequence of the CTC folders (default: all)")
    if validation:
        group.add_argument("--val-images", action="append", default=[], metavar="STACK",
                           help="held-out stack to report J&F on during training; repeatable, with --val-labels")
        group.add_argument("--val-labels", action="append", default=[], metavar="STACK", help="its labels stack")
        group.add_argument("--val-ctc", action="append", default=[], metavar="FOLDER", help="held-out CTC folder")


def _device_arguments(group: Any) -> None:
    group.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps (default: auto)")
    group.add_argument("--image-size", type=values.image_size, metavar="PX",
                       help="model input size, e.g. 512 (about 8x faster than 1024 on a CPU); default: the model's")
    group.add_argument("--threads", type=values.positive, metavar="N", help="CPU threads for torch (default: torch's choice)")


def add_training_commands(commands: Any, common: Any) -> None:
    """Add ``train`` and ``evaluate`` to the ``napari-sam2`` sub-command parsers."""
    from .tracking.finetune import TRAINABLE_CHOICES

    names = _model_names()

    raw = argparse.RawDescriptionHelpFormatter
    train = commands.add_parser(
        "train", help="fine-tune SAM 2 on your own masklets (label stacks or CTC folders)",
        formatter_class=raw, epilog=_TRAIN_EXAMPLES,
        description=textwrap.fill("Fine-tune a SAM 2 model on image stacks with their labels, as SAM 2 is trained: "
                                  "clips of a few frames, simulated clicks, boxes and masks, corrective clicks.", 79),
    )
    _data_arguments(train, validation=True)
    model = train.add_argument_group("model")
    model.add_argument("--from", dest="start", metavar="MODEL|CHECKPOINT",
                       help="the model to start from: a name (" + ", ".join(names)
                       + "; official ones are downloaded once) or a .pt file, e.g. an earlier fine-tune. Required unless --resume")
    _device_arguments(model)
    run = train.add_argument_group("training")
    run.add_argument("--train", choices=tuple(TRAINABLE_CHOICES),
                     help="what to train: " + "; ".join(f"{k}: {v}" for k, v in TRAINABLE_CHOICES.items()) + " (default: decoder)")
    run.add_argument("--steps", type=values.positive, metavar="N", help="optimiser steps, one clip each (default: 1000)")
    run.add_argument("--lr", type=_positive_float, metavar="LR", help="peak learning rate (default: 1e-4; the image encoder learns slower)")
    run.add_argument("--seed", type=values.non_negative, metavar="S", help="random seed: the same seed and data give the same run (default: 0)")
    run.add_argument("--clip-frames", type=values.positive, metavar="N", help="frames per training clip (default: 8)")
    run.add_argument("--checkpoint-every", type=values.non_negative, metavar="N",
                     help="save the resumable state every N steps, 0 = only at the end or when stopped (default: 100)")
    run.add_argument("--validate-every", type=values.non_negative, metavar="N",
                     help="J&F on the validation data every N steps (default: four times per run when validation data is given)")
    run.add_argument("--precision", choices=("auto", "float32", "bfloat16"), help="auto: bfloat16 on GPUs that support it (default)")
    out = train.add_argument_group("output")
    out.add_argument("-o", "--output", required=True, metavar="OUT.pt", help="the fine-tuned model file")
    existing = out.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace an existing output (and its resumable state)")
    existing.add_argument("--resume", action="store_true",
                          help="go on with the interrupted run of this output (OUT.resume.pt); options not given keep their saved values")
    common(train)
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser(
        "evaluate", help="score a model on stacks with ground truth: J, F and J&F per object",
        formatter_class=raw, epilog=_EVAL_EXAMPLES,
        description=textwrap.fill("Score a model on image stacks with ground-truth labels, by the protocol below.", 79),
    )
    _data_arguments(evaluate, validation=False)
    model = evaluate.add_argument_group("model")
    choice = model.add_mutually_exclusive_group()
    choice.add_argument("--model", metavar="NAME", choices=names,
                        help="a model by name: " + ", ".join(names) + " (official ones are downloaded once; "
                        "default: sam2.1_hiera_tiny)")
    choice.add_argument("--checkpoint", metavar="PATH", help="a .pt file, e.g. a fine-tuned model (its architecture is read from it)")
    _device_arguments(model)
    evaluate.add_argument("--max-frames", type=values.positive, metavar="N", help="score at most N frames per object from its click on")
    evaluate.add_argument("--json", metavar="OUT", help="also write the scores as JSON (replaced if it exists)")
    common(evaluate)
    evaluate.set_defaults(handler=_evaluate)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 1e-4, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


# ----------------------------------------------------------------------------- model
def _named(name: str, args: argparse.Namespace) -> Any:
    """A model by name: bundled (the package's own file) or official (downloaded once)."""
    from .tracking.choice import OFFICIAL, ModelChoice

    return ModelChoice(name=name, checkpoint=OFFICIAL, device=None if args.device == "auto" else args.device,
                       image_size=args.image_size, torch_threads=args.threads)


def _start_choice(args: argparse.Namespace) -> Any:
    """``--from``: a model name or a checkpoint file, as a :class:`ModelChoice`."""
    from .tracking.choice import ModelChoice

    text = args.start
    path = Path(text).expanduser()
    if path.is_file():
        device = None if args.device == "auto" else args.device
        return ModelChoice(name=None, checkpoint=str(path), device=device, image_size=args.image_size,
                           torch_threads=args.threads)
    if text in _model_names():
        return _named(text, args)
    if path.suffix or "/" in text or "\\" in text:
        raise FileNotFoundError(f"no such checkpoint file: {text}")
    raise UsageError(f"{text!r} is neither a model name ({', '.join(_model_names())}) nor a checkpoint file")


def _eval_choice(args: argparse.Namespace) -> Any:
    from .tracking.choice import ModelChoice

    if args.checkpoint:
        device = None if args.device == "auto" else args.device
        return ModelChoice(name=None, checkpoint=args.checkpoint, device=device, image_size=args.image_size,
                           torch_threads=args.threads)
    if args.model:
        return _named(args.model, args)
    return ModelChoice(device=None if args.device == "auto" else args.device, image_size=args.image_size,
                       torch_threads=args.threads).resolved()


def _model_names() -> tuple[str, ...]:
    """Names ``--from`` and ``--model`` take: the bundled models, then the official ones."""
    from .model.bundled import BUNDLED_MODELS
    from .model.config import MODEL_NAMES

    return tuple(BUNDLED_MODELS) + tuple(MODEL_NAMES)


def _load(choice: Any, console: Console) -> Any:
    from dataclasses import replace

    from .tracking.models import LoadedModel

    # fine-tuning or scoring another model than the one named would mislead: no demo fallback
    choice = replace(choice, fallback_to_demo=False)
    loaded = LoadedModel.load(choice, progress=(lambda done, total: console.progress("download", done, total)))
    console.close()
    if loaded.note:
        console.note(loaded.note)
    return loaded.model


# ----------------------------------------------------------------------------- train
class _LossBar:
    """A tqdm bar of training steps whose postfix shows the loss (stderr)."""

    def __init__(self, console: Console, total: int, first: int) -> None:
        self.bar = None
        self.console = console
        if not console.quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=first, desc="training", unit="step", file=console.stream,
                            dynamic_ncols=True, mininterval=0.2)

    def step(self, report: Any) -> None:
        if report.validation is not None:
            v = report.validation
            line = f"step {report.step}: validation J {v['J']:.3f}, F {v['F']:.3f}, J&F {v['J&F']:.3f}"
            if self.bar is not None:
                self.bar.write(f"napari-sam2: {line}", file=self.console.stream)
            else:
                self.console.note(line)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{report.loss:.3f}", lr=f"{report.lr:.1e}", refresh=False)
            self.bar.update(report.step - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _val_data(args: argparse.Namespace) -> Any:
    from .tracking.finetune import data_from_files

    if not (args.val_images or args.val_labels or args.val_ctc):
        return None
    return data_from_files(args.val_images, args.val_labels, args.val_ctc, args.sequence)


def _train(args: argparse.Namespace, console: Console) -> int:
    from .tracking.finetune import FineTuneSettings, check_output, data_from_files, fine_tune, saved_step

    if args.start is None and not args.resume:
        raise UsageError("say which model to start from with --from (a model name or a .pt file)")
    output = check_output(args.output, args.overwrite, args.resume)  # before anything is read
    began = time.perf_counter()
    data = data_from_files(args.images, args.labels, args.ctc, args.sequence)
    val = _val_data(args)
    model = _load(_start_choice(args), console) if args.start is not None else None
    settings = FineTuneSettings(
        steps=args.steps, trainable=args.train, lr=args.lr, seed=args.seed, clip_frames=args.clip_frames,
        checkpoint_every=args.checkpoint_every, validate_every=args.validate_every, precision=args.precision,
    )
    first = saved_step(output) if args.resume else 0
    bar: _LossBar | None = None

    def progress(report: Any) -> None:
        nonlocal bar
        if bar is None:  # training has started: every check has passed
            console.note(f"training data: {data.describe()}" + (f"; validation: {val.describe()}" if val is not None else ""))
            bar = _LossBar(console, report.steps, first)
        bar.step(report)

    command = "napari-sam2 " + " ".join(_quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["train"] else None
    try:
        result = fine_tune(model, data, settings, output, overwrite=args.overwrite, resume=args.resume,
                           val_data=val, progress=progress, metadata={"command": command} if command else None)
    except KeyboardInterrupt:  # a second Ctrl-C: the loop saved what it could and gave up
        console.error(f"interrupted; {_resume_hint(output)}")
        return 130
    finally:
        if bar is not None:
            bar.close()
    if result.cancelled:
        console.error(f"interrupted at step {result.step} of {result.steps}: the model so far is in {output}; {_resume_hint(output)}")
        return 130
    loss = f", last loss {result.history[-1][1]:.3f}" if result.history else ""
    print(f"wrote {output} ({result.step} steps{loss}) in {time.perf_counter() - began:.0f} s; "
          f"use it with --checkpoint {_quote(str(output))}, or in the widget as a local file")
    if result.validation:
        v = result.validation[-1]
        print(f"validation at step {v['step']}: J {v['J']:.3f}  F {v['F']:.3f}  J&F {v['J&F']:.3f}")
    return 0


def _resume_hint(output: Path) -> str:
    state = output.with_name(output.stem + ".resume.pt")
    return f"to go on, run the same command with --resume (without --overwrite); the run's state is in {state}"


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


# ----------------------------------------------------------------------------- evaluate
def _describe(args: argparse.Namespace, choice: Any) -> str:
    if args.model or not args.checkpoint:
        return args.model or str(choice.name)
    return str(args.checkpoint)


def _evaluate(args: argparse.Namespace, console: Console) -> int:
    from .tracking.finetune import data_from_files, evaluate_model, evaluation_protocol

    data = data_from_files(args.images, args.labels, args.ctc, args.sequence)
    json_path = Path(args.json).expanduser() if args.json else None
    if json_path is not None and json_path.is_dir():
        raise ValueError(f"{json_path} is a folder; give a file name for the JSON scores")
    choice = _eval_choice(args)
    model = _load(choice, console)
    videos = len(data.videos)
    console.progress("evaluate", 0, videos)
    report = evaluate_model(model, data, max_frames=args.max_frames,
                            progress=lambda done, total: console.progress("evaluate", done, total))
    console.close()
    if not report.objects:
        raise ValueError("no object could be scored: the labels hold no object")
    print(f"model: {_describe(args, choice)}")
    print(f"protocol: {evaluation_protocol()}")
    print(report.table())
    if json_path is not None:
        from .io.atomic import atomic_output

        payload = {"model": _describe(args, choice), **report.to_dict()}
        with atomic_output(json_path, overwrite=True) as temp:
            temp.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {json_path}")
    return 0
