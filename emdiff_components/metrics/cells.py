"""Cell Tracking Challenge SEG and object F1 at IoU 0.5 of cell instance segmentations, 2D or 3D.

Yilmaz et al. "Cascaded Diffusion Models for 2D and 3D Microscopy Image Synthesis to Enhance Cell Segmentation",
https://arxiv.org/abs/2411.11515, score segmentation networks trained on real and real + synthetic cell images with
the measures of the Cell Tracking Challenge:

- SEG (Maska et al. "A benchmark for comparison of cell tracking algorithms", Bioinformatics 2014; Ulman et al. "An
  objective comparison of cell-tracking algorithms", Nature Methods 2017): a reference (truth) object ``R`` is matched
  by the predicted object ``S`` with ``|R & S| > 0.5 |R|`` (at most one can cover more than half of ``R``); its score
  is the Jaccard index ``|R & S| / |R | S|`` of the match, 0 without one; SEG is the mean over the reference objects.
- F1 at IoU 0.5: a truth and a predicted object match when their IoU exceeds 0.5; such matches are one-to-one by
  construction (two objects overlapping one object by more than half of the union cannot both exist), so precision =
  matches / predicted objects, recall = matches / truth objects, F1 = 2 matches / (predicted + truth objects).

Label 0 is background in both images; every other value is one object (objects need not be connected).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.sparse import coo_matrix

from ..utils import atomic_write
from .segmentation import _csv_cell

__all__ = ["CellSegmentationReport", "cell_scores"]

logger = logging.getLogger(__name__)

CELL_METRICS = ("seg", "precision", "recall", "f1")
COUNTS = ("num_truth", "num_pred", "matched_seg", "matched_f1")


def _instance_labels(x: Any, what: str, owner: str) -> np.ndarray:
    """``int64`` labels from an array / tensor of non-negative integers (integral floats allowed), else ValueError."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    integral = np.issubdtype(a.dtype, np.floating) and bool(np.all(np.isfinite(a))) and bool(np.all(a == np.round(a)))
    if not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_ or integral):
        raise ValueError(f"{owner}: {what} must hold integer instance labels, got dtype {a.dtype}.")
    if a.ndim not in (2, 3):
        raise ValueError(f"{owner}: {what} must be a 2D (Y, X) or 3D (Z, Y, X) label image, got shape {a.shape}.")
    if a.size and a.min() < 0:
        raise ValueError(f"{owner}: {what} labels must be >= 0, got {a.min()}.")
    return a.astype(np.int64)


def cell_scores(
    pred: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor, iou_threshold: float = 0.5
) -> dict[str, float | int]:
    """CTC SEG, and precision / recall / F1 of one-to-one object matches at IoU > ``iou_threshold``.

    Maska et al., Bioinformatics 2014 and Ulman et al., Nature Methods 2017 (SEG); the evaluation of Yilmaz et al.,
    https://arxiv.org/abs/2411.11515. Label 0 is background in both images.

    Args:
        pred: predicted instance labels, (Y, X) or (Z, Y, X), non-negative integers.
        truth: reference instance labels of the same shape; it needs at least one object.
        iou_threshold: IoU a match must exceed for the F1, default 0.5; values in [0.5, 1) keep matches one-to-one.

    Returns:
        ``{"seg", "precision", "recall", "f1"}`` as floats and the counts ``{"num_truth", "num_pred", "matched_seg"
        (truth objects with a SEG match), "matched_f1" (IoU matches)}`` as ints. Without predicted objects precision
        and F1 are 0.

    Raises:
        ValueError: shapes differ, labels are not non-negative integers, 2D / 3D expected, the truth has no object, or
            ``iou_threshold`` outside [0.5, 1).

    Example:
        >>> truth = np.zeros((4, 8), dtype=int); truth[:, :4] = 1; truth[:, 4:] = 2
        >>> cell_scores(truth, truth)["seg"], cell_scores(truth, truth)["f1"]
        (1.0, 1.0)
    """
    if not 0.5 <= float(iou_threshold) < 1.0:
        raise ValueError(f"cell_scores: iou_threshold must lie in [0.5, 1) (one-to-one matches), got {iou_threshold}.")
    p = _instance_labels(pred, "pred", "cell_scores")
    t = _instance_labels(truth, "truth", "cell_scores")
    if p.shape != t.shape:
        raise ValueError(f"cell_scores: pred shape {p.shape} differs from truth shape {t.shape}.")
    t_ids, t_inv = np.unique(t, return_inverse=True)
    p_ids, p_inv = np.unique(p, return_inverse=True)
    t_obj, p_obj = t_ids != 0, p_ids != 0
    num_truth, num_pred = int(t_obj.sum()), int(p_obj.sum())
    if num_truth == 0:
        raise ValueError("cell_scores: the truth holds no object (only label 0); SEG is undefined.")
    # overlap[i, j] = |truth object i & pred object j| over the compacted labels (background rows / columns dropped)
    overlap = coo_matrix(
        (np.ones(t.size, dtype=np.int64), (t_inv.ravel(), p_inv.ravel())), shape=(t_ids.size, p_ids.size)
    ).toarray()[np.ix_(t_obj, p_obj)]
    t_area = np.bincount(t_inv.ravel(), minlength=t_ids.size)[t_obj]
    p_area = np.bincount(p_inv.ravel(), minlength=p_ids.size)[p_obj]
    union = t_area[:, None] + p_area[None, :] - overlap
    iou = np.divide(overlap, union, out=np.zeros(overlap.shape, dtype=np.float64), where=union > 0)
    # SEG: the (unique) predicted object covering more than half of each truth object
    covers = 2 * overlap > t_area[:, None]
    jaccard = np.where(covers, iou, 0.0).max(axis=1) if num_pred else np.zeros(num_truth)
    matched_f1 = int(np.count_nonzero(iou > iou_threshold))
    precision = matched_f1 / num_pred if num_pred else 0.0
    recall = matched_f1 / num_truth
    return {
        "seg": float(jaccard.mean()),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(2 * matched_f1 / (num_pred + num_truth)),
        "num_truth": num_truth,
        "num_pred": num_pred,
        "matched_seg": int(np.count_nonzero(covers.any(axis=1))) if num_pred else 0,
        "matched_f1": matched_f1,
    }


class CellSegmentationReport:
    """Per-image CTC SEG and F1 at IoU 0.5 of cell segmentations, their mean / std and the object-pooled values.

    The evaluation of Yilmaz et al., https://arxiv.org/abs/2411.11515 (SEG: Maska et al. 2014, Ulman et al. 2017).
    Scores come from :func:`cell_scores`. Besides the mean over images, :meth:`summary` gives ``pooled`` scores as
    the Cell Tracking Challenge computes a data set's SEG: the mean Jaccard over all truth objects of all images (an
    image with many cells weighs more), and precision / recall / F1 from the summed match counts. :meth:`write`
    leaves ``cell_metrics.json`` and ``cell_metrics.csv`` (one row per image, then ``mean``, ``std`` and ``pooled``
    rows), each written atomically.

    Args:
        iou_threshold: IoU a match must exceed for the F1 (default 0.5).
        output_dir: default folder of :meth:`write` (optional).

    Raises:
        ValueError: :meth:`add` with a name already used or a summary row's name, or the errors of :func:`cell_scores`.

    Example:
        >>> truth = np.zeros((8, 8), dtype=np.int64); truth[:, :4], truth[:, 4:] = 1, 2
        >>> report = CellSegmentationReport()
        >>> report.add("perfect", truth, truth)["seg"]
        1.0
        >>> report.add("one_missed", np.where(truth == 1, 1, 0), truth)["seg"]
        0.5
        >>> report.summary()["mean"]["seg"]
        0.75
    """

    SUMMARY_ROWS = ("mean", "std", "pooled")

    def __init__(self, iou_threshold: float = 0.5, output_dir: str | os.PathLike | None = None) -> None:
        if not 0.5 <= float(iou_threshold) < 1.0:
            raise ValueError(f"CellSegmentationReport: iou_threshold must lie in [0.5, 1), got {iou_threshold}.")
        self.iou_threshold = float(iou_threshold)
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.rows: list[tuple[str, dict[str, float | int]]] = []

    def reset(self) -> None:
        self.rows = []

    def add(
        self, name: str, pred: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor
    ) -> dict[str, float | int]:
        """Score one image, keep it under ``name`` and return its scores."""
        name = str(name)
        if name in self.SUMMARY_ROWS:
            raise ValueError(f"CellSegmentationReport: {name!r} names a summary row of the CSV; pick another name.")
        if any(name == row[0] for row in self.rows):
            raise ValueError(f"CellSegmentationReport: an image named {name!r} was already added.")
        scores = cell_scores(pred, truth, self.iou_threshold)
        self.rows.append((name, scores))
        return scores

    def summary(self) -> dict[str, Any]:
        """Scores per image, their mean and population std (``ddof=0``), and the object-pooled scores."""
        if not self.rows:
            raise RuntimeError("CellSegmentationReport: no images were added.")
        values = np.array([[scores[m] for m in CELL_METRICS] for _, scores in self.rows], dtype=np.float64)
        totals = {c: int(sum(scores[c] for _, scores in self.rows)) for c in COUNTS}
        jaccard_sum = sum(scores["seg"] * scores["num_truth"] for _, scores in self.rows)
        matched, n_pred, n_truth = totals["matched_f1"], totals["num_pred"], totals["num_truth"]
        pooled = {
            "seg": jaccard_sum / n_truth,
            "precision": matched / n_pred if n_pred else 0.0,
            "recall": matched / n_truth,
            "f1": 2 * matched / (n_pred + n_truth),
        }
        return {
            "num_images": len(self.rows),
            "iou_threshold": self.iou_threshold,
            "convention": "SEG: mean Jaccard over truth objects of the predicted object covering > 1/2 of each (0 if "
            "none); F1: one-to-one matches with IoU > threshold; label 0 = background; pooled = over all objects",
            "per_image": [{"name": name, **scores} for name, scores in self.rows],
            "mean": dict(zip(CELL_METRICS, values.mean(0).tolist())),
            "std": dict(zip(CELL_METRICS, values.std(0).tolist())),
            "pooled": {**pooled, **totals},
        }

    def write(self, output_dir: str | os.PathLike | None = None) -> dict[str, Any]:
        """Write ``cell_metrics.json`` and ``cell_metrics.csv`` into ``output_dir`` (or the constructor's)."""
        folder = Path(output_dir) if output_dir is not None else self.output_dir
        if folder is None:
            raise ValueError("CellSegmentationReport: write needs an output_dir (argument or constructor).")
        summary = self.summary()
        json_path, csv_path = folder / "cell_metrics.json", folder / "cell_metrics.csv"
        with atomic_write(json_path) as tmp:
            tmp.write_text(json.dumps(summary, indent=2))
        columns = (*CELL_METRICS, *COUNTS)
        with atomic_write(csv_path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["name", *columns])
            for entry in summary["per_image"]:
                writer.writerow([entry["name"], *(_csv_cell(entry[c]) for c in columns)])
            for kind in self.SUMMARY_ROWS:
                writer.writerow([kind, *(_csv_cell(summary[kind].get(c)) for c in columns)])
        pooled = summary["pooled"]
        logger.info(
            "%d images: SEG %.4f, F1@%.2f %.4f (pooled over %d cells; mean per image SEG %.4f); written to %s",
            summary["num_images"],
            pooled["seg"],
            self.iou_threshold,
            pooled["f1"],
            pooled["num_truth"],
            summary["mean"]["seg"],
            json_path,
        )
        return summary
