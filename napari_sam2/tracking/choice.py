"""What model to run, as plain data: picklable, comparable, and cheap to import.

The command line, batch and the widget describe their choice with one
:class:`ModelChoice`; :func:`.models.load_model` builds it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from ..io.prompts import PromptSet

__all__ = ["OFFICIAL", "DEFAULT_IMAGE_SIZES", "ModelChoice", "default_model_name", "guess_variant", "is_local_file"]

OFFICIAL = "official"
"""``ModelChoice.checkpoint`` for the official weights (downloaded once, then cached)."""
DEFAULT_IMAGE_SIZES = (1024, 768, 512, 256)
"""Model input sizes offered in the widget; smaller is faster with the same weights."""


@dataclass(frozen=True)
class ModelChoice:
    """Which model to run; picklable, so batch workers can build it themselves.

    ``name``: an official variant or a bundled model (``"demo"``); ``None`` takes the one recorded in the prompt file,
    else :func:`default_model_name` (for a local file: the file's own variant).
    ``checkpoint``: ``"official"`` (cached, downloaded on first use), a ``.pt`` path
    (its variant is read from the weights), or ``None`` for untrained weights.
    ``factory``: instead of all that, a callable or a ``"module:function"`` /
    ``"file.py:function"`` spec returning a model (custom or fine-tuned architectures);
    it is called with ``image_size=`` when one is set.
    ``image_size``: ``None`` takes the prompt file's, else the model's own (1024).
    ``torch_threads``: CPU threads for torch (``None`` leaves torch's default).
    ``quantize``: ``"int8"`` for the approximate, faster CPU mode (see the README).
    ``fallback_to_demo``: when official weights are neither cached nor downloadable,
    :meth:`.models.LoadedModel.load` builds the bundled ``demo`` model instead and says
    so (never for a local file, a factory or a cancelled download).
    """

    name: str | None = None
    checkpoint: str | None = OFFICIAL
    factory: str | Callable[..., Any] | None = None
    device: str | None = None
    image_size: int | None = None
    torch_threads: int | None = None
    quantize: str | None = None
    fallback_to_demo: bool = True

    def resolved(self, prompts: "PromptSet | None" = None) -> "ModelChoice":
        """Fill the unset name and input size from the prompt file and the device."""
        choice = self
        if choice.factory is None and choice.name is None and not is_local_file(choice.checkpoint):
            default = prompts.model if prompts is not None and prompts.model else None
            choice = replace(choice, name=default or default_model_name(choice.device))
        if choice.image_size is None and prompts is not None and prompts.image_size:
            choice = replace(choice, image_size=int(prompts.image_size))
        return choice

    def key(self) -> tuple:
        """Identifies the model to build (for per-process caches)."""
        factory = self.factory
        if callable(factory):
            qualname = getattr(factory, "__qualname__", "")
            factory = f"{getattr(factory, '__module__', '')}:{qualname}" if "<" not in qualname else f"id:{id(factory)}"
        return (self.name, self.checkpoint, factory, self.device, self.image_size, self.quantize, self.fallback_to_demo)

    def describe(self) -> str:
        if self.factory is not None:
            what = self.factory if isinstance(self.factory, str) else getattr(self.factory, "__qualname__", "factory")
            return f"model from {what}"
        if self.checkpoint == OFFICIAL and self.name is not None:
            from ..model.bundled import describe_bundled, is_bundled

            if is_bundled(self.name):  # its own file, shipped with the package
                return describe_bundled(self.name)
        weights = (
            "official weights" if self.checkpoint == OFFICIAL
            else "untrained weights" if self.checkpoint is None
            else Path(str(self.checkpoint)).name
        )
        return f"{self.name or 'auto'} ({weights})"


def is_local_file(checkpoint: str | None) -> bool:
    """True when ``checkpoint`` names a local file (not official, not untrained)."""
    return checkpoint is not None and checkpoint != OFFICIAL


def default_model_name(device: str | None = None) -> str:
    """sam2.1_hiera_base_plus on a CUDA GPU, sam2.1_hiera_tiny elsewhere."""
    from .models import resolve_device

    return "sam2.1_hiera_base_plus" if resolve_device(device).type == "cuda" else "sam2.1_hiera_tiny"


def guess_variant(path: str | os.PathLike, names: list[str]) -> str | None:
    """The official variant named in a checkpoint's file name, if any (longest match)."""
    stem = Path(path).name.lower().replace("-", "_").replace("sam2_1", "sam2.1")
    hits = [n for n in names if n in stem]
    return max(hits, key=len) if hits else None
