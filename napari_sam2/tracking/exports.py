"""Exports of a label stack: format choice from the output name, the destination check,
and the exporters (TIFF, Cell Tracking Challenge, COCO RLE, alpha mattes, GEFF graphs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from .errors import UsageError, with_option

if TYPE_CHECKING:
    from ..io.lineage import Lineage

__all__ = ["Progress", "FORMATS", "resolve_format", "output_name", "check_destination", "export_labels"]

FORMATS: dict[str, str] = {
    "tiff": "one compressed multi-page TIFF of labels (T, H, W)",
    "ctc": "a Cell Tracking Challenge result folder (maskTTT.tif + res_track.txt)",
    "coco": "one COCO JSON file with an RLE annotation per object and frame",
    "mattes": "a folder of per-object PNG alpha mattes (<id>/<frame>.png)",
    "geff": "a GEFF tracking graph folder (zarr): a node per object per frame, track and division edges",
}
Progress = Callable[[str, int, int], None]
"""Progress callback ``(stage, done, total)``; stages: 'download' (bytes), 'prompts',
'track' and 'export' (frames)."""

_FOLDER_FORMATS = ("ctc", "mattes", "geff")
_OUTPUT_SUFFIX = {"tiff": ".labels.tif", "ctc": "_RES", "coco": ".coco.json", "mattes": "_mattes", "geff": ".geff"}


def resolve_format(fmt: str | None, output: str | os.PathLike) -> str:
    """The export format: ``fmt`` if given, else guessed from the output name.

    A ``.tif``/``.tiff`` name means 'tiff', ``.json`` means 'coco', ``.geff`` means 'geff'
    (the name GEFF readers expect); the other folders (CTC, mattes) need an explicit
    format. A name that clearly belongs to another format is refused, since writing a
    folder called ``out.tif`` is never what was meant.
    """
    name = Path(output).name.lower()
    guessed = _guess_format(name)
    if fmt is None:
        if guessed is None:
            raise UsageError(
                f"cannot tell the export format from the output name {Path(output).name!r}; "
                f"choose a format ({', '.join(FORMATS)})",
                option="format",
            )
        return guessed
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if guessed is not None and guessed != fmt:
        kind = {"tiff": "a TIFF file", "coco": "a JSON file", "geff": "a GEFF folder"}[guessed]
        raise UsageError(f"the output {Path(output).name!r} looks like {kind}, but the format is {fmt!r}")
    return fmt


def _guess_format(name: str) -> str | None:
    if name.endswith((".tif", ".tiff")):
        return "tiff"
    if name.endswith(".json"):
        return "coco"
    if name.endswith(".geff"):
        return "geff"
    return None


def output_name(stem: str, fmt: str) -> str:
    """Default output name for an input stem: 'a.labels.tif', 'a_RES', 'a.coco.json',
    'a_mattes', 'a.geff'."""
    return stem + _OUTPUT_SUFFIX[fmt]


def check_destination(output: str | os.PathLike, fmt: str, overwrite: bool) -> Path:
    """Refuse an output that would be refused at export time, before any tracking work.

    The exporters check again when they write; this only moves the error to the start.
    """
    from ..io.ctc import is_ctc_folder
    from ..io.geff import is_geff_folder
    from ..io.mattes import is_matte_folder

    path = Path(output).expanduser()
    if not (path.exists() or path.is_symlink()):
        return path
    folder = fmt in _FOLDER_FORMATS
    if folder and path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
        return path  # an empty folder holds nothing to lose
    if not overwrite:
        raise with_option(FileExistsError(f"{path} already exists; it is replaced only when overwriting is asked for"), "overwrite")
    if path.is_dir() != folder or path.is_symlink():
        kind = "folder" if path.is_dir() else "file"
        raise FileExistsError(f"{path} exists and is a {kind}; refusing to replace it with a {fmt} export")
    if folder:
        ours = {"ctc": is_ctc_folder, "mattes": is_matte_folder, "geff": is_geff_folder}[fmt]
        if not ours(path):
            raise FileExistsError(
                f"{path} is a folder with other content; refusing to replace it. Choose a new or empty folder."
            )
    return path


def export_labels(
    labels: Any,
    output: str | os.PathLike,
    fmt: str,
    overwrite: bool = False,
    progress: Progress | None = None,
    names: Mapping[int, str] | None = None,
    frame_offset: int = 0,
    object_ids: Sequence[int] | None = None,
    feather: float = 0.0,
    lineage: "Lineage | Mapping[int, int] | None" = None,
) -> Path:
    """Write a (T, H, W) label stack with the exporter for ``fmt`` (atomically).

    ``lineage`` (a :class:`~napari_sam2.io.lineage.Lineage` or ``{track_id: parent_id}``)
    gives the divisions to the formats that record them: CTC's ``res_track.txt`` and
    GEFF's division edges; the other formats have no place for it and ignore it. Its
    tracks must appear in ``labels`` (the writers say which one does not).
    """
    from ..io.coco import write_coco_rle
    from ..io.ctc import write_ctc
    from ..io.geff import write_geff
    from ..io.labels_tiff import write_labels_tiff
    from ..io.mattes import write_mattes

    callback = None if progress is None else (lambda done, total: progress("export", done, total))
    num_frames = int(labels.shape[0])
    if fmt == "tiff":
        return write_labels_tiff(output, labels, overwrite=overwrite, progress=callback)
    parents = _parents(lineage)
    if fmt == "ctc":
        return write_ctc(output, labels, parents=parents, overwrite=overwrite, progress=callback).path
    if fmt == "geff":
        return write_geff(output, labels, lineage=parents, overwrite=overwrite, progress=callback).path
    if fmt == "coco":
        image_names = [f"frame_{frame_offset + t:05d}" for t in range(num_frames)]
        return write_coco_rle(output, labels, names=names, image_names=image_names, overwrite=overwrite, progress=callback)
    if fmt == "mattes":
        write_mattes(output, labels, obj_ids=object_ids, feather=feather, overwrite=overwrite, progress=callback)
        return Path(output)
    raise UsageError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")


def _parents(lineage: "Lineage | Mapping[int, int] | None") -> dict[int, int]:
    """``{daughter: mother}`` from either form a caller may hold (0 = no parent, left out)."""
    from ..io.lineage import Lineage

    if lineage is None:
        return {}
    if isinstance(lineage, Lineage):
        return lineage.parents()
    return {child: mother for child, mother in dict(lineage).items() if mother}
