"""Model choice and loading: one rule for the widget, the command line and batch.

A :class:`~.choice.ModelChoice` says what to run; :func:`load_model` builds it. Every failure a user can cause
(unknown file, wrong variant, no network) raises an error whose message says what is
wrong, without naming a command-line flag or a widget control.

The rule for a local file: its variant is read from the weights. When a variant is
also named and the file holds another one, loading is refused
(:class:`VariantMismatch`), never silently switched to the file's variant.

The rule for official weights that cannot be had (not cached, download failed):
:meth:`LoadedModel.load` falls back to the bundled ``demo`` model and records both
what was asked and what was built, with a warning to show (see :func:`demo_fallback`).
A local file that is missing or broken, a factory and a cancelled download never fall
back. :func:`load_model` itself never falls back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..model.checkpoint import CheckpointError, DownloadError
from .choice import OFFICIAL, ModelChoice
from .errors import SetupError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from ..model.sam2 import Sam2

__all__ = [
    "LoadedModel",
    "VariantMismatch",
    "demo_fallback",
    "fallback_warning",
    "load_model",
    "resolve_device",
    "resolve_factory",
    "available_devices",
]


DownloadProgress = Callable[[int, int], None]
"""``(bytes done, bytes total)`` while an official checkpoint downloads."""


class VariantMismatch(CheckpointError):
    """A local checkpoint holds another official variant than the one named."""

    def __init__(self, path: Path, found: str, requested: str) -> None:
        super().__init__(f"{path.name} holds {found} weights, not {requested}")
        self.path, self.found, self.requested = path, found, requested


@dataclass(frozen=True)
class LoadedModel:
    """A built model, the choice it was built from and the one asked for (what the widget keeps).

    ``choice`` is what really runs (exports and prompt files name it); ``requested`` is
    what was asked for, which differs only after a fallback to the bundled demo model,
    when ``warning`` says why.
    """

    model: Any
    choice: ModelChoice
    note: str = ""  # something the user should know, e.g. "untrained weights"
    requested: ModelChoice | None = None  # None: the same as ``choice``
    warning: str = ""  # something the user must see, e.g. the fallback to the demo model

    def __post_init__(self) -> None:
        if self.requested is None:
            object.__setattr__(self, "requested", self.choice)

    @property
    def fell_back(self) -> bool:
        """Whether another model than the one asked for was built (the demo fallback)."""
        return self.requested != self.choice

    @classmethod
    def load(cls, choice: ModelChoice, progress: DownloadProgress | None = None) -> "LoadedModel":
        """:func:`load_model`, keeping the choice and a note for untrained weights.

        When official weights cannot be downloaded and ``choice.fallback_to_demo`` allows
        it, the bundled demo model is built instead (:func:`demo_fallback`); the result
        then records the demo choice, the one requested and a warning. Any other error,
        and a cancel raised by ``progress``, propagates unchanged.
        """
        try:
            model = load_model(choice, progress)
        except DownloadError as err:
            fallback = demo_fallback(choice)
            if fallback is None:
                raise
            try:
                model = load_model(fallback)
            except Exception:
                raise err from None  # the download is the problem to report
            return cls(model, fallback, requested=choice, warning=fallback_warning(choice.name or "", err))
        note = "untrained weights: for testing only" if choice.checkpoint is None and choice.factory is None else ""
        return cls(model, choice, note)

    @property
    def description(self) -> str:
        size = self.choice.image_size or getattr(self.model, "image_size", 1024)
        name = self.choice.name or self.choice.describe()
        return f"{name} on {self.model.device.type}, {size} px"


def demo_fallback(choice: ModelChoice) -> ModelChoice | None:
    """The bundled demo model to build when ``choice``'s official weights cannot be downloaded.

    ``None`` when no fallback applies: ``choice.fallback_to_demo`` is off, the choice is
    not an official model's official weights (a local file, a factory, untrained
    weights, a bundled model), or this installation lacks the demo model. The demo runs
    at its own input size (a size chosen for the official model would not fit it), on
    the same device, with the same threads and quantization.
    """
    from ..model.bundled import DEMO_MODEL, bundled_path, is_bundled
    from ..model.config import MODEL_NAMES

    if not choice.fallback_to_demo or choice.factory is not None or choice.checkpoint != OFFICIAL:
        return None
    if choice.name not in MODEL_NAMES or is_bundled(choice.name):
        return None
    try:
        bundled_path(DEMO_MODEL)
    except CheckpointError:
        return None
    return replace(choice, name=DEMO_MODEL, image_size=None)


def fallback_warning(name: str, error: BaseException | None = None) -> str:
    """What to tell the user when ``name``'s weights could not be downloaded and the demo runs instead."""
    from ..model.checkpoint import OFFICIAL_CHECKPOINTS, cache_dir

    why = error.summary if isinstance(error, DownloadError) else (str(error).splitlines()[0] if error else "")
    entry = OFFICIAL_CHECKPOINTS.get(name)
    where = f": {entry.filename} in {cache_dir()}" if entry is not None else ""
    return (
        f"could not download {name}" + (f" ({why})" if why else "")
        + "; using the bundled demo model instead (trained on synthetic data; "
        f"for real data install the official weights{where})"
    )


def available_devices() -> list[str]:
    """Devices torch can use here, best first."""
    import torch

    devices = []
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    devices.append("cpu")
    return devices


def resolve_device(device: str | None) -> Any:
    """A torch device: the best available one for None/'auto', else the one named."""
    import torch

    from ..model.checkpoint import default_device

    if device is None or device == "auto":
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps", option="device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SetupError(f"device {device!r} was requested, but torch sees no CUDA GPU on this machine")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise SetupError(f"device {device!r} was requested, but Apple MPS is not available on this machine")
    return dev


def resolve_factory(spec: str | Callable[..., Any]) -> Callable[..., Any]:
    """The callable named by ``"package.module:function"`` or ``"path/to/file.py:function"``."""
    if callable(spec):
        return spec
    import importlib
    import importlib.util

    module_name, sep, attr = str(spec).rpartition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"a model factory must look like 'package.module:function' or 'file.py:function', got {spec!r}", option="factory")
    if module_name.endswith(".py"):
        path = Path(module_name).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"model factory file not found: {path}")
        loader_spec = importlib.util.spec_from_file_location(f"_napari_sam2_factory_{path.stem}", path)
        assert loader_spec is not None and loader_spec.loader is not None
        module = importlib.util.module_from_spec(loader_spec)
        loader_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise UsageError(f"cannot import the model factory module {module_name!r}: {err}", option="factory") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UsageError(f"{module_name} has no callable {attr!r}", option="factory")
    return factory


def load_model(choice: ModelChoice, progress: DownloadProgress | None = None) -> "Sam2":
    """Build the model ``choice`` describes, downloading official weights on first use.

    Call :meth:`ModelChoice.resolved` first when the name may be unset. ``progress``
    receives download bytes. Raises ``UsageError`` for an impossible request,
    ``CheckpointError`` for a file that does not fit (``VariantMismatch`` for one of
    another variant than the one named, ``DownloadError`` when official weights cannot
    be fetched: this function never falls back, :meth:`LoadedModel.load` does).
    """
    if choice.quantize not in (None, "int8"):
        raise UsageError(f"unknown quantization {choice.quantize!r}; the only one is int8", option="quantize")
    if choice.quantize and resolve_device(choice.device).type != "cpu":
        raise UsageError("int8 quantization is a CPU mode; on a GPU leave it out (bfloat16 is used there)", option="quantize")
    model = _load_float(choice, progress)
    if choice.quantize:
        from ..model.quantize import quantize_int8

        model = quantize_int8(model)
    return model


def _load_float(choice: ModelChoice, progress: DownloadProgress | None) -> "Sam2":
    import torch

    from ..model import build_sam2
    from ..model.bundled import is_bundled
    from ..model.checkpoint import download_checkpoint

    device = resolve_device(choice.device)
    if choice.torch_threads:
        torch.set_num_threads(int(choice.torch_threads))
    if choice.factory is not None:
        return _from_factory(choice, device)
    if choice.checkpoint is None or choice.checkpoint == OFFICIAL:
        if choice.name is None:
            raise UsageError("no model name given", option="model")
        if is_bundled(choice.name):  # shipped with the package: its own file, never a download
            return build_sam2(choice.name, device=device, image_size=choice.image_size)
        path = None
        if choice.checkpoint == OFFICIAL:
            path = download_checkpoint(choice.name, progress=progress or False)
        return build_sam2(choice.name, checkpoint=path, device=device, image_size=choice.image_size)
    return _from_file(choice, Path(choice.checkpoint).expanduser(), device)


def _from_factory(choice: ModelChoice, device: Any) -> "Sam2":
    from ..model.sam2 import Sam2

    factory = resolve_factory(choice.factory)  # type: ignore[arg-type]
    kwargs = {} if choice.image_size is None else {"image_size": int(choice.image_size)}
    model = factory(**kwargs)
    if not isinstance(model, Sam2):
        raise TypeError(f"the model factory returned {type(model).__name__}, not a SAM 2 model built with build_sam2")
    return model.to(device)


def _from_file(choice: ModelChoice, path: Path, device: Any) -> "Sam2":
    """A local checkpoint: its architecture comes from the file and must fit the name given.

    A self-describing checkpoint records its architecture (any size, e.g. a reduced
    model); an official-style file is matched against the official variants.
    """
    from ..model import build_sam2
    from ..model.sam2 import matching_variants
    from ..model.saved import read_checkpoint

    saved = read_checkpoint(path)
    if saved.config is not None:
        recorded = saved.config.name
        if choice.name is not None and choice.name != recorded:
            raise VariantMismatch(path, recorded, choice.name)
        return build_sam2(None, checkpoint=path, device=device, image_size=choice.image_size)
    fits = matching_variants(saved.state)
    if not fits:
        raise CheckpointError(f"{path.name} is not a SAM 2 or SAM 2.1 checkpoint: its weights match none of the official variants")
    if choice.name is not None and choice.name not in fits:
        raise VariantMismatch(path, fits[0], choice.name)
    name = choice.name or fits[0]
    model = build_sam2(name, checkpoint=None, device=device, image_size=choice.image_size)
    model.load_official_state_dict(saved.state, source=str(path))
    model.eval()
    return model
