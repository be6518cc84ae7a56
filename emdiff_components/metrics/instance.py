"""Instance-segmentation scores of neuron volumes: variation of information (split, merge) and adapted Rand error.

NeuroDiff (Jiang et al. "Diffusion Model-Based Data Augmentation for Enhanced Neuron Segmentation", ISBI 2026,
https://arxiv.org/abs/2601.15779) reports VI (split + merge) and ARAND of the segments that
:func:`~emdiff_components.postprocessing.segment_affinities` makes from the predicted affinities, with label 0 of the
ground truth ignored. Both come from scikit-image (``variation_of_information``, ``adapted_rand_error``), called as the
public ``segmentation_scripts/evaluate.py`` does: ground truth first, ``ignore_labels=(0,)``.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skimage.metrics import adapted_rand_error, variation_of_information

from ..utils import atomic_write
from .segmentation import _csv_cell

__all__ = ["InstanceSegmentationReport", "instance_scores"]

logger = logging.getLogger(__name__)

INSTANCE_METRICS = ("vi_split", "vi_merge", "vi", "arand")


def _labels(x: Any, what: str) -> np.ndarray:
    """Non-negative ``int64`` label volume from a numpy array or tensor; ``ValueError`` naming ``what`` if not."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    integral_floats = np.issubdtype(a.dtype, np.floating) and np.all(np.isfinite(a)) and np.all(a == np.round(a))
    if not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_ or integral_floats):
        raise ValueError(f"instance_scores: {what} must hold integer labels, got dtype {a.dtype}.")
    if a.size and a.min() < 0:
        raise ValueError(f"instance_scores: {what} labels must be >= 0, got {a.min()}.")
    return a.astype(np.int64)


def instance_scores(
    pred: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor, ignore_labels: Sequence[int] = (0,)
) -> dict[str, float]:
    """VI split, VI merge, their sum and the adapted Rand error of a predicted instance labelling against the truth.

    NeuroDiff (Jiang et al., https://arxiv.org/abs/2601.15779) Table 1 metrics. Voxels whose TRUE label is in
    ``ignore_labels`` are left out of every score, whatever the prediction says there (the paper's convention: label 0
    of the ground truth is unlabelled); a predicted 0 inside a labelled neuron is an ordinary segment.

    With ``P`` the prediction and ``T`` the truth (entropies in bits, ``log2``):

    - ``vi_split = H(P | T)``: over-segmentation. Cutting one true neuron into pieces raises only this term.
    - ``vi_merge = H(T | P)``: under-segmentation. Joining two true neurons into one segment raises only this term.
    - ``vi = vi_split + vi_merge``.
    - ``arand``: 1 - the F-score of the Rand precision and recall over voxel pairs (skimage's ``adapted_rand_error``,
      first return value); 0 is perfect.

    scikit-image's ``variation_of_information(image0, image1)`` returns ``[H(image1 | image0), H(image0 | image1)]``
    (its code calls them "false splits, false merges" when ``image0`` is the truth), and ``ignore_labels`` applies to
    ``image0`` only; so it is called with the truth first (as the public ``evaluate.py``) and the two values are
    (split, merge) in that order.

    Args:
        pred: predicted instance labels, any shape (e.g. ``(Z, Y, X)``), non-negative integers.
        truth: true instance labels of the same shape.
        ignore_labels: true labels whose voxels are not scored (default ``(0,)``; ``()`` scores every voxel).

    Returns:
        ``{"vi_split", "vi_merge", "vi", "arand"}`` as floats.

    Raises:
        ValueError: shapes differ, labels not non-negative integers, or no truth voxel is left to score.
    """
    p, t = _labels(pred, "pred"), _labels(truth, "truth")
    if p.shape != t.shape:
        raise ValueError(f"instance_scores: pred shape {p.shape} differs from truth shape {t.shape}.")
    ignore = tuple(int(v) for v in ignore_labels)
    if not np.any(~np.isin(t, ignore)):
        raise ValueError(f"instance_scores: every truth voxel has an ignored label {list(ignore)}; nothing to score.")
    split, merge = variation_of_information(t, p, ignore_labels=ignore)
    arand = adapted_rand_error(t, p, ignore_labels=ignore)[0]
    split, merge = max(float(split), 0.0), max(float(merge), 0.0)  # -0.0 / tiny negatives from float round-off
    return {"vi_split": split, "vi_merge": merge, "vi": split + merge, "arand": float(arand)}


class InstanceSegmentationReport:
    """Per-volume VI split / merge, VI and ARAND of neuron segmentations, their mean and standard deviation.

    NeuroDiff (Jiang et al., https://arxiv.org/abs/2601.15779) evaluation table, one row per test volume (or per
    post-processing of it, e.g. ``"AC3/waterz"`` and ``"AC3/multicut"``). Scores come from :func:`instance_scores`;
    :meth:`write` leaves ``instance_metrics.json`` (per volume, mean, std, the label convention) and
    ``instance_metrics.csv`` (one row per volume, then ``mean`` and ``std`` rows), each written atomically.

    Args:
        ignore_labels: true labels not scored (default ``(0,)``, the paper's).
        output_dir: default folder of :meth:`write` (optional).

    Raises:
        ValueError: :meth:`add` with a name already used or ``mean`` / ``std``, or the errors of
            :func:`instance_scores`.

    Example:
        >>> truth = np.zeros((2, 8, 8), dtype=np.int64); truth[:, :, :4], truth[:, :, 4:] = 1, 2
        >>> report = InstanceSegmentationReport()
        >>> report.add("perfect", truth, truth)["vi"]
        0.0
        >>> report.add("merged", np.ones_like(truth), truth)["vi_merge"]  # two neurons in one segment: 1 bit
        1.0
        >>> report.summary()["mean"]["vi_merge"]
        0.5
    """

    def __init__(self, ignore_labels: Sequence[int] = (0,), output_dir: str | os.PathLike | None = None) -> None:
        self.ignore_labels = tuple(int(v) for v in ignore_labels)
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.rows: list[tuple[str, dict[str, float]]] = []

    def reset(self) -> None:
        self.rows = []

    def add(self, name: str, pred: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor) -> dict[str, float]:
        """Score one volume, keep it under ``name`` and return its scores."""
        name = str(name)
        if name in ("mean", "std"):
            raise ValueError(f"InstanceSegmentationReport: {name!r} names a summary row of the CSV; pick another name.")
        if any(name == row[0] for row in self.rows):
            raise ValueError(f"InstanceSegmentationReport: a volume named {name!r} was already added.")
        scores = instance_scores(pred, truth, self.ignore_labels)
        self.rows.append((name, scores))
        return scores

    def summary(self) -> dict[str, Any]:
        """Scores per volume, their mean and population standard deviation (``ddof=0``) per metric."""
        if not self.rows:
            raise RuntimeError("InstanceSegmentationReport: no volumes were added.")
        values = np.array([[scores[m] for m in INSTANCE_METRICS] for _, scores in self.rows], dtype=np.float64)
        return {
            "num_volumes": len(self.rows),
            "ignore_labels": list(self.ignore_labels),
            "convention": "vi_split = H(pred | truth) (over-segmentation), vi_merge = H(truth | pred) "
            "(under-segmentation), bits; arand = skimage adapted_rand_error; voxels with an ignored truth label "
            "are not scored",
            "per_volume": [{"name": name, **scores} for name, scores in self.rows],
            "mean": dict(zip(INSTANCE_METRICS, values.mean(0).tolist())),
            "std": dict(zip(INSTANCE_METRICS, values.std(0).tolist())),
        }

    def write(self, output_dir: str | os.PathLike | None = None) -> dict[str, Any]:
        """Write ``instance_metrics.json`` and ``instance_metrics.csv`` into ``output_dir`` (or the constructor's)."""
        folder = Path(output_dir) if output_dir is not None else self.output_dir
        if folder is None:
            raise ValueError("InstanceSegmentationReport: write needs an output_dir (argument or constructor).")
        summary = self.summary()
        json_path, csv_path = folder / "instance_metrics.json", folder / "instance_metrics.csv"
        with atomic_write(json_path) as tmp:
            tmp.write_text(json.dumps(summary, indent=2))
        with atomic_write(csv_path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["name", *INSTANCE_METRICS])
            for entry in summary["per_volume"]:
                writer.writerow([entry["name"], *(_csv_cell(entry[m]) for m in INSTANCE_METRICS)])
            for kind in ("mean", "std"):
                writer.writerow([kind, *(_csv_cell(summary[kind][m]) for m in INSTANCE_METRICS)])
        mean = summary["mean"]
        logger.info(
            "%d volumes: VI %.4f (split %.4f, merge %.4f), ARAND %.4f (means); written to %s",
            summary["num_volumes"],
            mean["vi"],
            mean["vi_split"],
            mean["vi_merge"],
            mean["arand"],
            json_path,
        )
        return summary
