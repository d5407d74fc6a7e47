"""Cell Tracking Challenge measures of a tracking result against the truth.

DET (detection), SEG (segmentation), TRA (tracking: the AOGM graph-edit cost) and the
divisions found with the right mother, computed by ``py-ctcmetrics`` (the challenge's
own Python implementation) on both sides written as CTC folders. Used by the track-all
benchmarks and tests; a result and the truth are each a ``(T, H, W)`` label stack plus
its lineage, ``{track_id: parent_id}`` (0 or no entry = no parent), the convention of
:func:`napari_sam2.io.ctc.write_ctc`.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..io.ctc import write_ctc

__all__ = ["TrackingScores", "tracking_scores"]


@dataclass(frozen=True)
class TrackingScores:
    """DET, SEG, TRA in [0, 1] and the division counts behind recall and precision.

    A division is found when the result's mother track matches the true mother and its
    daughters the true daughters, within ``division_tolerance`` frames (CTC's BC(i)).
    """

    det: float
    seg: float
    tra: float
    divisions_true: int
    divisions_found: int  # true positives
    divisions_false: int  # result divisions matching no true one
    division_tolerance: int

    @property
    def divisions_missed(self) -> int:
        return self.divisions_true - self.divisions_found

    @property
    def division_recall(self) -> float:
        """Share of true divisions found; 1.0 when there are none to find."""
        return self.divisions_found / self.divisions_true if self.divisions_true else 1.0

    @property
    def division_precision(self) -> float:
        """Share of result divisions that are true; 1.0 when the result has none."""
        claimed = self.divisions_found + self.divisions_false
        return self.divisions_found / claimed if claimed else 1.0

    def as_dict(self) -> dict[str, float]:
        out: dict[str, float] = asdict(self)
        out.update(division_recall=self.division_recall, division_precision=self.division_precision)
        return out


def _parents(lineage: Mapping[int, int] | None) -> dict[int, int]:
    return {int(c): int(p) for c, p in dict(lineage or {}).items() if int(p)}


def _write_truth(folder: Path, labels: Any, lineage: Mapping[int, int] | None) -> None:
    """A CTC ground-truth folder: ``TRA`` (tracks) and ``SEG`` (every frame segmented)."""
    tra, seg = folder / "TRA", folder / "SEG"
    write_ctc(tra, labels, parents=_parents(lineage))
    seg.mkdir()
    (tra / "res_track.txt").rename(tra / "man_track.txt")
    for mask in sorted(tra.glob("mask*.tif")):
        digits = mask.stem[len("mask"):]
        os.link(mask, seg / f"man_seg{digits}.tif")
        mask.rename(tra / f"man_track{digits}.tif")


def tracking_scores(
    result_labels: Any,
    result_lineage: Mapping[int, int] | None,
    truth_labels: Any,
    truth_lineage: Mapping[int, int] | None,
    division_tolerance: int = 1,
) -> TrackingScores:
    """Score a tracking result (labels + lineage) against the truth (labels + lineage).

    Label stacks are ``(T, H, W)`` (numpy, zarr, memory-mapped), read one frame at a
    time while both are written as CTC folders to a temporary directory.
    """
    from ctc_metrics import evaluate_sequence

    if division_tolerance < 0:
        raise ValueError(f"division_tolerance must be >= 0, got {division_tolerance}")
    r_shape, t_shape = tuple(result_labels.shape), tuple(truth_labels.shape)
    if r_shape != t_shape:
        raise ValueError(f"result labels {r_shape} and truth labels {t_shape} must have the same shape")
    if not any(np.asarray(result_labels[t]).any() for t in range(r_shape[0])):
        # nothing found: the measures' own code cannot read a result without tracks
        mothers = [m for m in _parents(truth_lineage).values() if m]
        truth_divisions = sum(1 for m in set(mothers) if mothers.count(m) >= 2)
        return TrackingScores(0.0, 0.0, 0.0, truth_divisions, 0, 0, int(division_tolerance))
    with tempfile.TemporaryDirectory(prefix="ctc-scores-") as tmp:
        res, gt = Path(tmp) / "res", Path(tmp) / "gt"
        write_ctc(res, result_labels, parents=_parents(result_lineage))
        gt.mkdir()
        _write_truth(gt, truth_labels, truth_lineage)
        bc = f"BC({int(division_tolerance)})"
        with contextlib.redirect_stdout(io.StringIO()):  # it prints every result
            scores = evaluate_sequence(str(res), str(gt), metrics=["DET", "SEG", "TRA", bc], threads=1)
    i = int(division_tolerance)
    return TrackingScores(
        det=float(scores["DET"]),
        seg=float(scores["SEG"]),
        tra=float(scores["TRA"]),
        divisions_true=int(scores["gt_divisions"]),
        divisions_found=int(scores[f"tp_div({i})"]),
        divisions_false=int(scores[f"fp_div({i})"]),
        division_tolerance=i,
    )
