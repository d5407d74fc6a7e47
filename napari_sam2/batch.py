"""Track many stacks on dask.distributed: one input per task, outputs written by the workers.

A batch is a list of :class:`BatchJob` (input, prompt file, output; seed labels when
tracking everything, see :class:`TrackAllPlan`), planned from paths, glob patterns and
manifests by :func:`plan_batch`, then run by
:func:`run_batch` on a local cluster of worker processes (the default) or on an
existing scheduler. Each worker process builds the model once and keeps it for every
input it is given. A failing input is reported with its error and never stops the
others; the outputs of finished inputs are complete (exports are atomic), so a batch
can be re-run with ``skip_existing`` after fixing the failures.

Workers on another machine must see the same paths (a shared file system) and have
napari-sam2 installed.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .tracking.choice import ModelChoice
from .tracking.errors import UsageError, describe_error, expected_errors
from .tracking.exports import output_name, resolve_format
from .tracking.pipeline import TrackOptions, track_file
from .tracking.track_all import TrackAllSettings

__all__ = [
    "DEFAULT_PROMPTS",
    "BatchJob",
    "TrackAllPlan",
    "JobResult",
    "seed_labels_in",
    "session_path",
    "input_stem",
    "read_manifest",
    "plan_batch",
    "run_job",
    "run_batch",
    "prefetch_models",
    "format_summary",
]

DEFAULT_PROMPTS = "{dir}/{stem}.prompts.json"
"""Where each input's prompt file is looked for unless told otherwise."""

_MANIFEST_SUFFIXES = (".csv", ".json", ".txt")
_COMPOUND = (".ome.tiff", ".ome.tif", ".ome.zarr")


@dataclass(frozen=True)
class BatchJob:
    """One input, its prompt file and where its export goes (absolute paths).

    When tracking everything, ``prompts`` may be None and ``seed_labels`` names the
    input's labels image (None: automatic seeds).
    """

    input: str
    prompts: str | None
    output: str
    seed_labels: str | None = None


@dataclass(frozen=True)
class TrackAllPlan:
    """How a batch tracks everything instead of its prompt files' objects: ``auto``
    (automatic seeds and new objects), the settings, and whether each input's session
    file is written (:func:`session_path`)."""

    auto: bool = False
    settings: TrackAllSettings = TrackAllSettings()
    save_sessions: bool = False


@dataclass(frozen=True)
class JobResult:
    """How one input went. ``status``: 'done', 'skipped' (output existed) or 'failed'."""

    job: BatchJob
    status: str
    error: str | None = None
    details: str | None = None  # traceback of an unexpected error
    seconds: float = 0.0
    frames: int = 0
    objects: dict[int, int] = field(default_factory=dict)  # object id -> frames with a mask
    worker: str | None = None
    pid: int | None = None
    loaded_model: bool = False  # this task built its worker's model (the first one there did)
    model: str | None = None  # the model that ran ("demo" after a fallback from official weights)
    warnings: tuple[str, ...] = ()  # what the user must know, e.g. that fallback
    summary: str | None = None  # tracking everything: tracks, new objects, divisions, ends, timings

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["objects"] = {str(k): v for k, v in self.objects.items()}
        return data


# ----------------------------------------------------------------------------- planning
def input_stem(path: str | os.PathLike) -> str:
    """The name of an input without its suffix ('a.ome.tif' -> 'a', 'frames/' -> 'frames')."""
    name = Path(path).name
    lower = name.lower()
    for suffix in _COMPOUND:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem if Path(name).suffix else name


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def read_manifest(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows ``{'input', 'prompts'?, 'seed_labels'?, 'output'?}`` of a manifest, paths
    resolved against its folder.

    CSV needs a header with an ``input`` column (``prompts``, ``seed_labels`` and ``output`` optional);
    JSON is a list (or ``{"jobs": [...]}``) of such objects or of input paths; TXT is one
    input per line (``#`` starts a comment). Relative outputs are returned as written.
    """
    path = Path(path).expanduser()
    base = path.parent
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"no such manifest: {path}") from None
    rows: list[dict[str, Any]]
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        if reader.fieldnames is None or "input" not in [f.strip() for f in reader.fieldnames]:
            raise UsageError(f"{path.name}: a CSV manifest needs a header line with an 'input' column (and optionally 'prompts', 'output')")
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise UsageError(f"{path.name} is not valid JSON: {err}") from None
        if isinstance(data, dict) and isinstance(data.get("jobs"), list):
            data = data["jobs"]
        if not isinstance(data, list):
            raise UsageError(f"{path.name}: a JSON manifest is a list of inputs or of {{\"input\", \"prompts\", \"output\"}} objects")
        rows = [{"input": item} if isinstance(item, str) else item for item in data]
    else:
        rows = [{"input": line.strip()} for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    out = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not isinstance(row.get("input"), str) or not row["input"]:
            raise UsageError(f"{path.name}, entry {number}: needs an 'input' path")
        unknown = set(row) - {"input", "prompts", "seed_labels", "output"}
        if unknown:
            raise UsageError(f"{path.name}, entry {number}: unknown field(s) {sorted(unknown)}")
        entry = {"input": str(base / Path(row["input"]).expanduser())}
        for key in ("prompts", "seed_labels"):
            if row.get(key):
                entry[key] = str(base / Path(str(row[key])).expanduser())
        if row.get("output"):
            entry["output"] = str(row["output"])
        out.append(entry)
    return out


def _prompts_for(input_path: Path, template: str, what: str = "prompts") -> Path:
    try:
        text = template.format(stem=input_stem(input_path), name=input_path.name, dir=str(input_path.parent))
    except (KeyError, IndexError, ValueError):
        raise UsageError(f"the {what} template {template!r} may only use {{stem}}, {{name}} and {{dir}}") from None
    return Path(text).expanduser().absolute()


_SEED_SUFFIXES = (".tif", ".tiff", ".npy")


def seed_labels_in(folder: str | os.PathLike, input_path: str | os.PathLike) -> Path:
    """The seed labels of an input in a folder of labels named like the inputs: the
    input's own name (cells.tif), else its stem with .tif, .tiff or .npy (a video's
    labels are TIFFs). When none exists, the own name (its job then says so)."""
    folder = Path(folder).expanduser().absolute()
    input_path = Path(input_path)
    same = folder / input_path.name
    if same.is_file():
        return same
    for suffix in _SEED_SUFFIXES:
        candidate = folder / (input_stem(input_path) + suffix)
        if candidate.is_file():
            return candidate
    return same


def session_path(job: BatchJob) -> Path:
    """Where a job's session file goes: ``<stem>.session.json`` next to its output."""
    return Path(job.output).parent / f"{input_stem(job.input)}.session.json"


def plan_batch(
    sources: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike | None = None,
    format: str = "tiff",
    prompts: str | None = None,
    *,
    track_all: bool = False,
    seed_labels: str | None = None,
    seed_labels_dir: str | os.PathLike | None = None,
) -> list[BatchJob]:
    """Jobs for inputs, glob patterns and manifests (.csv, .json, .txt).

    Each input's prompt file is the manifest's ``prompts`` entry, else ``prompts``: one
    file for every input or a template using ``{stem}``, ``{name}`` and ``{dir}``,
    else :data:`DEFAULT_PROMPTS` (with ``track_all``, prompts are optional: none unless
    given). Seed labels (``track_all`` only) are the manifest's ``seed_labels``, else
    ``seed_labels`` (a file or template as for prompts), else the input's file in
    ``seed_labels_dir`` (:func:`seed_labels_in`), else none. Outputs are the manifest's
    ``output`` (relative to ``output_dir``), else ``output_dir/<stem>`` plus the
    format's suffix. Two inputs writing the same output, or a pattern matching
    nothing, is an error.
    """
    if format not in ("tiff", "ctc", "coco", "mattes", "geff"):
        resolve_format(format, "x")  # raises the usual message
    if seed_labels is not None and seed_labels_dir is not None:
        raise UsageError("give the seed labels as a template or as a folder, not both")
    if not track_all and (seed_labels is not None or seed_labels_dir is not None):
        raise UsageError("seed labels are for tracking everything")
    template = prompts if prompts is not None else None if track_all else DEFAULT_PROMPTS
    out_dir = None if output_dir is None else Path(output_dir).expanduser().absolute()
    entries: list[dict[str, str]] = []
    for source in sources:
        text = str(source)
        if Path(text).suffix.lower() in _MANIFEST_SUFFIXES and not _is_glob(text):
            entries.extend(read_manifest(text))
        elif _is_glob(text):
            matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
            matches = [m for m in matches if Path(m).suffix.lower() not in _MANIFEST_SUFFIXES]
            if not matches:
                raise UsageError(f"no inputs match {text!r}")
            entries.extend({"input": m} for m in matches)
        else:
            entries.append({"input": text})
    if not entries:
        raise UsageError("no inputs given")
    jobs: list[BatchJob] = []
    for entry in entries:
        input_path = Path(entry["input"]).expanduser().absolute()
        prompt_path = (
            Path(entry["prompts"]) if "prompts" in entry else None if template is None else _prompts_for(input_path, template)
        )
        seeds = None
        if "seed_labels" in entry:
            if not track_all:
                raise UsageError(f"the manifest gives seed labels for {input_path.name}; they are for tracking everything")
            seeds = Path(entry["seed_labels"])
        elif seed_labels is not None:
            seeds = _prompts_for(input_path, seed_labels, "seed labels")
        elif seed_labels_dir is not None:
            seeds = seed_labels_in(seed_labels_dir, input_path)
        if "output" in entry:
            output = Path(entry["output"]).expanduser()
            if not output.is_absolute():
                if out_dir is None:
                    raise UsageError(f"the manifest gives a relative output {entry['output']!r}; pass an output folder for it")
                output = out_dir / output
            resolve_format(format, output)
        else:
            if out_dir is None:
                raise UsageError("pass an output folder (--output-dir) for the inputs without an output in a manifest")
            output = out_dir / output_name(input_stem(input_path), format)
        jobs.append(BatchJob(
            str(input_path), None if prompt_path is None else str(prompt_path.absolute()), str(output.absolute()),
            None if seeds is None else str(seeds.absolute()),
        ))
    seen: dict[str, str] = {}
    for job in jobs:
        if job.output in seen:
            raise UsageError(
                f"{seen[job.output]} and {job.input} would both be written to {job.output}; "
                "give them distinct outputs in a manifest"
            )
        seen[job.output] = job.input
    return jobs


# ----------------------------------------------------------------------------- workers
_MODELS: "OrderedDict[tuple, Any]" = OrderedDict()
_MODELS_LOCK = threading.Lock()
_MODELS_KEPT = 2  # models kept per worker process (prompt files may name different ones)


def _cached_model(choice: ModelChoice) -> tuple[Any, bool]:
    """This process's model for ``choice`` (a ``LoadedModel``) and whether this call built it."""
    from .tracking.models import LoadedModel

    key = choice.key()
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is not None:
            _MODELS.move_to_end(key)
            return model, False
        model = LoadedModel.load(choice)
        _MODELS[key] = model
        while len(_MODELS) > _MODELS_KEPT:
            _MODELS.popitem(last=False)
        return model, True


def _worker_address() -> str | None:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return None


def run_job(
    job: BatchJob,
    model: ModelChoice,
    options: TrackOptions,
    format: str,
    overwrite: bool = False,
    skip_existing: bool = False,
    threads: Mapping[str, int] | None = None,
    track_all: TrackAllPlan | None = None,
) -> JobResult:
    """Track one input and write its export; never raises (the error goes into the result).

    ``track_all``: track everything (seeds from the job's labels and/or automatic) instead
    of the prompt file's objects.

    ``threads`` maps worker addresses to the torch CPU threads their tasks should use
    (dask starts workers with one OpenMP thread, which would leave cores idle).
    """
    began = time.perf_counter()
    where = {"worker": _worker_address(), "pid": os.getpid()}
    if model.torch_threads is None and threads and where["worker"] in threads:
        model = replace(model, torch_threads=threads[where["worker"]])
    output = Path(job.output)
    if skip_existing and (output.exists() and not (output.is_dir() and not any(output.iterdir()))):
        return JobResult(job, "skipped", seconds=0.0, **where)
    loaded = False

    def loader(choice: ModelChoice) -> Any:
        nonlocal loaded
        net, loaded = _cached_model(choice)
        return net

    try:
        if track_all is not None:
            from .tracking.track_all_file import track_all_file

            report: Any = track_all_file(
                job.input, job.output, auto=track_all.auto, seed_labels=job.seed_labels, prompts=job.prompts,
                settings=track_all.settings, format=format, model=model, options=options, overwrite=overwrite,
                loader=loader, session_out=session_path(job) if track_all.save_sessions else None,
            )
        else:
            if job.prompts is None:
                raise UsageError("no prompt file for this input")
            report = track_file(
                job.input, job.prompts, job.output, format=format, model=model, options=options,
                overwrite=overwrite, loader=loader,
            )
    except Exception as exc:
        details = None if isinstance(exc, expected_errors()) else traceback.format_exc()
        return JobResult(job, "failed", describe_error(exc), details, time.perf_counter() - began, loaded_model=loaded, **where)
    return JobResult(
        job, "done", seconds=time.perf_counter() - began, frames=report.frames[1] - report.frames[0] + 1,
        objects=dict(report.object_frames), loaded_model=loaded, model=report.model_name,
        warnings=report.warnings, summary=report.summary() if track_all is not None else None, **where,
    )


# ----------------------------------------------------------------------------- client
def prefetch_models(
    jobs: Iterable[BatchJob], model: ModelChoice, progress: Callable[[str, int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[str]:
    """Download the official checkpoints the jobs will use, once, before workers start.

    Without this every worker process would fetch the same file at the same time. The
    model of each job is the one given, else the one its prompt file names; unreadable
    prompt files are skipped here (their job reports the error). Bundled models need no
    download. A download that fails where the demo fallback applies is passed to
    ``warn`` and the batch goes on (its jobs then run the demo model); otherwise it
    raises. Returns the names fetched or cached.
    """
    from .io.prompts import PromptSet
    from .model.bundled import is_bundled
    from .model.checkpoint import DownloadError, download_checkpoint, is_cached
    from .tracking.models import demo_fallback, fallback_warning

    if model.factory is not None or model.checkpoint != "official":
        return []
    names = set()
    for job in jobs:
        try:
            prompts = None if job.prompts is None else PromptSet.from_json(job.prompts)
        except Exception:
            prompts = None
        names.add(model.resolved(prompts).name)
    fetched = []
    for name in sorted(n for n in names if n and not is_bundled(n)):
        if not is_cached(name):
            callback = None if progress is None else (lambda done, total: progress("download", done, total))
            try:
                download_checkpoint(name, progress=callback or False)
            except DownloadError as err:
                if demo_fallback(replace(model, name=name)) is None:
                    raise
                if warn is not None:
                    warn(fallback_warning(name, err))
                continue
        fetched.append(name)
    return fetched


def _on_cpu(device: str | None) -> bool:
    from .tracking.models import resolve_device

    return resolve_device(device).type == "cpu"


def _default_workers(jobs: int, device: str | None) -> int:
    """One worker per two CPU cores, or a single one that has the GPU to itself."""
    if not _on_cpu(device):
        return 1
    return max(1, min(jobs, (os.cpu_count() or 1) // 2))


def run_batch(
    jobs: Sequence[BatchJob],
    *,
    model: ModelChoice | None = None,
    options: TrackOptions = TrackOptions(),
    format: str = "tiff",
    overwrite: bool = False,
    skip_existing: bool = False,
    scheduler: str | None = None,
    client: Any = None,
    workers: int | None = None,
    threads_per_worker: int = 1,
    on_result: Callable[[JobResult], None] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
    track_all: TrackAllPlan | None = None,
) -> list[JobResult]:
    """Run every job as one dask task and return the results in job order.

    ``track_all``: track everything in each input (see :func:`run_job`).

    Uses ``client`` if given, else connects to ``scheduler``, else starts a local
    cluster of ``workers`` processes with ``threads_per_worker`` threads each (default:
    one worker per two CPU cores, one on a GPU; torch gets the cores divided among the
    tasks that run at once). ``model`` is built once per worker process; its ``factory``
    may be a callable (importable by the workers) or a 'module:function' spec.
    ``on_result`` is called on this side as each job finishes; ``warn`` receives what the
    user must know before the jobs start (a failed download that the bundled demo model
    stands in for: see :func:`prefetch_models`; each job's result lists its own warnings).
    """
    from distributed import Client, LocalCluster, as_completed

    if not jobs:
        return []
    if overwrite and skip_existing:
        raise UsageError("choose either overwrite or skip_existing, not both")
    model = model or ModelChoice()
    cluster = None
    own_client = None
    if client is None:
        if scheduler is None:
            n_workers = workers or _default_workers(len(jobs), model.device)
            if threads_per_worker < 1 or n_workers < 1:
                raise UsageError("workers and threads per worker must be at least 1")
            prefetch_models(jobs, model, progress, warn)
            cluster = LocalCluster(
                n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True,
                dashboard_address=":0", silence_logs=40,  # any free port: several batches may run
            )
            own_client = client = Client(cluster)
        else:
            try:
                own_client = client = Client(scheduler, timeout="20s")
            except OSError as err:
                raise OSError(f"cannot reach the dask scheduler at {scheduler}: {err}") from None
    try:
        threads = _threads_per_worker(client) if model.torch_threads is None else {}
        futures = {}
        for index, job in enumerate(jobs):
            key = f"napari-sam2-{index}-{input_stem(job.input)}-{os.urandom(4).hex()}"
            future = client.submit(
                run_job, job, model, options, format, overwrite, skip_existing, threads, track_all, key=key, pure=False
            )
            futures[future] = index
        results: list[JobResult | None] = [None] * len(jobs)
        try:
            for future in as_completed(list(futures)):
                index = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # the task itself never raises: its worker died
                    result = JobResult(jobs[index], "failed", f"the worker running it was lost ({describe_error(exc)})")
                results[index] = result
                if on_result is not None:
                    on_result(result)
        except BaseException:
            client.cancel(list(futures), force=True)
            raise
        return [r for r in results if r is not None]
    finally:
        if own_client is not None:
            own_client.close()
        if cluster is not None:
            cluster.close()


def _threads_per_worker(client: Any) -> dict[str, int]:
    """Torch threads per worker: its host's cores shared by all task slots on that host."""
    try:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        cores = client.run(os.cpu_count, on_error="ignore")
    except Exception:  # an old or unusual scheduler: leave torch's default
        return {}
    slots: dict[str, int] = {}
    for info in workers.values():
        slots[info["host"]] = slots.get(info["host"], 0) + int(info.get("nthreads", 1))
    return {
        address: max(1, int(cores.get(address) or 1) // max(1, slots[info["host"]]))
        for address, info in workers.items()
    }


def format_summary(results: Sequence[JobResult]) -> str:
    """A plain-text table of the results and a count line."""
    rows = [("status", "input", "frames", "seconds", "output / error")]
    for r in results:
        detail = r.job.output if r.ok else (r.error or "")
        rows.append((r.status, Path(r.job.input).name, str(r.frames) if r.frames else "-", f"{r.seconds:.1f}", detail))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(row)).rstrip() for row in rows]
    counts = {status: sum(r.status == status for r in results) for status in ("done", "skipped", "failed")}
    lines.append(f"{len(results)} inputs: " + ", ".join(f"{n} {status}" for status, n in counts.items() if n or status == "failed"))
    return "\n".join(lines)
