"""Cell Tracking Challenge (CTC) result format: ``maskTTT.tif`` files plus ``res_track.txt``.

The CTC format requires every track to be continuous in time. An object that
vanishes and reappears is therefore split: its first continuous segment keeps the
object's label, each later segment gets a new label (above all object ids) whose
parent is the previous segment, which is how the CTC represents a gap. Divisions are
given as ``parents={daughter_id: mother_id}``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .atomic import atomic_output
from .labels import Progress, check_labels, iter_frames, scan_labels

__all__ = ["CTCTrack", "CTCExport", "write_ctc", "read_ctc_tracks", "validate_ctc", "mask_name", "is_ctc_folder"]

TRACK_FILE = "res_track.txt"
_MASK_RE = re.compile(r"^mask(\d{3,})\.tif$")
_UINT16_MAX = 65535


@dataclass(frozen=True)
class CTCTrack:
    """One line of ``res_track.txt``: label, first and last frame (inclusive), parent (0 = none)."""

    label: int
    begin: int
    end: int
    parent: int = 0
    object_id: int | None = field(default=None, compare=False)  # the object id in the exported labels

    def line(self) -> str:
        return f"{self.label} {self.begin} {self.end} {self.parent}"


@dataclass(frozen=True)
class CTCExport:
    """What :func:`write_ctc` wrote: the folder, the tracks, and which labels were split off."""

    path: Path
    tracks: tuple[CTCTrack, ...]
    relabelled: dict[int, int]  # new track label -> object id it continues after a gap


def mask_name(frame: int, num_frames: int) -> str:
    """'mask007.tif'; four digits for sequences of more than 1000 frames, as the CTC does."""
    digits = 3 if num_frames <= 1000 else max(4, len(str(num_frames - 1)))
    return f"mask{frame:0{digits}d}.tif"


def _segments(frames: list[int]) -> list[tuple[int, int]]:
    """Continuous runs (begin, end) of a sorted list of frame indices."""
    runs: list[tuple[int, int]] = []
    for t in frames:
        if runs and t == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], t)
        else:
            runs.append((t, t))
    return runs


def _plan_tracks(
    present: list[np.ndarray], largest: int, parents: Mapping[int, int] | None
) -> tuple[list[CTCTrack], dict[int, list[tuple[int, int, int]]]]:
    """Tracks, and per object its segments as (begin, end, output label)."""
    frames_of: dict[int, list[int]] = {}
    for t, ids in enumerate(present):
        for obj in ids.tolist():
            frames_of.setdefault(obj, []).append(t)
    segments = {obj: _segments(ts) for obj, ts in frames_of.items()}

    # later segments get fresh labels in order of appearance
    later = sorted(
        ((begin, obj, k) for obj, runs in segments.items() for k, (begin, _) in enumerate(runs) if k > 0)
    )
    next_label = largest + 1
    label_of: dict[tuple[int, int], int] = {(obj, 0): obj for obj in segments}
    for _, obj, k in later:
        label_of[(obj, k)] = next_label
        next_label += 1
    if next_label - 1 > _UINT16_MAX:
        raise ValueError(
            f"the CTC format stores 16-bit labels, but {next_label - 1} labels are needed "
            f"(largest object id {largest}, {len(later)} extra labels for objects that reappear)"
        )

    parents = dict(parents or {})
    for child, mother in parents.items():
        if child not in segments:
            raise ValueError(f"parents: object {child} does not appear in the labels")
        if mother not in segments:
            raise ValueError(f"parents: object {mother} (parent of {child}) does not appear in the labels")

    tracks: list[CTCTrack] = []
    plan: dict[int, list[tuple[int, int, int]]] = {}
    for obj, runs in segments.items():
        plan[obj] = []
        for k, (begin, end) in enumerate(runs):
            label = label_of[(obj, k)]
            parent = 0
            if k > 0:
                parent = label_of[(obj, k - 1)]
            elif obj in parents:
                mother = parents[obj]
                before = [j for j, (_, e) in enumerate(segments[mother]) if e < begin]
                if not before:
                    raise ValueError(
                        f"parents: object {mother} must end before its daughter {obj} begins "
                        f"(frame {begin}); it first appears on frame {segments[mother][0][0]}"
                    )
                parent = label_of[(mother, before[-1])]
            tracks.append(CTCTrack(label, begin, end, parent, obj))
            plan[obj].append((begin, end, label))
    tracks.sort(key=lambda track: track.label)
    return tracks, plan


def write_ctc(
    path: str | os.PathLike,
    labels: Any,
    parents: Mapping[int, int] | None = None,
    overwrite: bool = False,
    compression: str | None = None,
    progress: Progress | None = None,
) -> CTCExport:
    """Write a (T, H, W) label stack as a CTC result folder and check it by re-reading.

    Masks are uint16 TIFFs (uncompressed by default, which every CTC tool reads).
    Frames are read twice, one at a time: once to find the tracks, once to write.
    The folder appears only when complete; an existing non-empty folder is replaced
    only with ``overwrite=True`` and only if it holds nothing but CTC files.
    """
    import tifffile

    labels, num_frames, _, _ = check_labels(labels)
    present, largest = scan_labels(labels, num_frames)
    tracks, plan = _plan_tracks(present, largest, parents)
    relabelled = {t.label: t.object_id for t in tracks if t.object_id is not None and t.label != t.object_id}

    with atomic_output(path, overwrite=overwrite, directory=True, replaceable=is_ctc_folder) as temp:
        for t, frame in enumerate(iter_frames(labels, num_frames, progress)):
            out = frame.astype(np.uint16)
            for obj in present[t].tolist():
                label = next(lab for begin, end, lab in plan[obj] if begin <= t <= end)
                if label != obj:
                    out[frame == obj] = label
            tifffile.imwrite(temp / mask_name(t, num_frames), out, compression=compression, photometric="minisblack")
        (temp / TRACK_FILE).write_text("".join(track.line() + "\n" for track in tracks))
        validate_ctc(temp)
    return CTCExport(Path(path), tuple(tracks), relabelled)


def is_ctc_folder(path: Path) -> bool:
    """True for a folder that holds only CTC result files (safe to replace)."""
    return all(p.is_file() and (p.name == TRACK_FILE or _MASK_RE.match(p.name)) for p in path.iterdir())


def read_ctc_tracks(path: str | os.PathLike) -> list[CTCTrack]:
    """Parse ``res_track.txt`` (or ``man_track.txt``) of a CTC folder, or the file itself."""
    path = Path(path)
    file = path / TRACK_FILE if path.is_dir() else path
    if not file.exists():
        raise FileNotFoundError(f"no {TRACK_FILE} in {path}")
    tracks = []
    for number, line in enumerate(file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            values = [int(v) for v in parts]
        except ValueError:
            values = []
        if len(values) != 4 or min(values) < 0:
            raise ValueError(f"{file}, line {number}: expected four non-negative integers 'L B E P', got {line!r}")
        tracks.append(CTCTrack(*values))
    return tracks


def validate_ctc(path: str | os.PathLike) -> list[CTCTrack]:
    """Check a CTC result folder against the format's rules; returns its tracks.

    Masks must be numbered from 0 without holes and be 16-bit; each track's label must
    be present on every frame from its begin to its end and nowhere else; every label
    in the masks must have a track; a parent must exist and end before its child begins.
    """
    import tifffile

    path = Path(path)
    tracks = read_ctc_tracks(path)
    masks = sorted(
        ((int(m.group(1)), p) for p in path.iterdir() if (m := _MASK_RE.match(p.name))), key=lambda item: item[0]
    )
    if not masks:
        raise ValueError(f"{path} contains no mask files")
    if [t for t, _ in masks] != list(range(len(masks))):
        raise ValueError(f"{path}: mask files must be numbered 0 to {len(masks) - 1} without gaps")
    by_label: dict[int, CTCTrack] = {}
    for track in tracks:
        if track.label == 0 or track.label in by_label:
            raise ValueError(f"{path}: track label {track.label} is zero or listed twice")
        if track.begin > track.end or track.end >= len(masks):
            raise ValueError(f"{path}: track {track.label} spans frames {track.begin}-{track.end} of {len(masks)}")
        by_label[track.label] = track
    for track in tracks:
        if track.parent:
            mother = by_label.get(track.parent)
            if mother is None:
                raise ValueError(f"{path}: track {track.label} has unknown parent {track.parent}")
            if mother.end >= track.begin:
                raise ValueError(f"{path}: parent {mother.label} of track {track.label} must end before it begins")
    for t, file in masks:
        mask = tifffile.imread(file)
        if mask.dtype != np.uint16:
            raise ValueError(f"{file.name}: masks must be uint16, got {mask.dtype}")
        found = set(np.unique(mask).tolist()) - {0}
        expected = {label for label, tr in by_label.items() if tr.begin <= t <= tr.end}
        if found != expected:
            missing, extra = sorted(expected - found), sorted(found - expected)
            raise ValueError(
                f"{file.name}: labels do not match {TRACK_FILE} "
                f"(listed but absent: {missing[:10]}, present but not listed for this frame: {extra[:10]})"
            )
    return tracks
