"""Per-image, per-class Dice, Jaccard, precision, recall and accuracy from label maps, and the handler that writes them.

ECSD reports Jaccard and Dice (%, Table 1). Per image and class we keep the confusion counts (TP, FP, FN), so the
report gives the mean over images and the pooled (dataset-level) score from summed counts, which is what
Lucchi++ results are usually quoted as. BIEDSNet (Table 1) adds the Hausdorff distance; with ``distances=True`` the
report also gives the 95th-percentile and maximum Hausdorff distance per image and class, in pixels and, where the
pixel size is known, in mm (distances do not pool, so they have a mean over images only).

Empty masks follow MONAI's ``DiceMetric``: ``ignore_empty=True`` (BIEDSNet's evaluate) scores a class whose truth is
empty as NaN, left out of the means, so slices where truth and prediction are both empty are not averaged in as Dice 1;
``ignore_empty=False`` (the default, ECSD's evaluate) scores them 1 (and 0 where only the truth is empty). Either way
the report counts the empty cases per class and names the convention it used.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from ignite.engine import Engine, Events

from ..utils import atomic_write
from .distance import hausdorff_distances

__all__ = ["confusion_counts", "scores_from_counts", "SegmentationReport"]

logger = logging.getLogger(__name__)

# Distance metrics of the report, in the order of the rows of a per-image distance array.
DISTANCE_METRICS = ("hd95_px", "hd_max_px", "hd95_mm", "hd_max_mm")


def confusion_counts(pred: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor, num_classes: int) -> np.ndarray:
    """``(num_classes, 4)`` array of TP, FP, FN, TN per class (one class against the rest) for two label maps."""
    p = np.asarray(pred.detach().cpu() if isinstance(pred, torch.Tensor) else pred).astype(np.int64).ravel()
    g = np.asarray(truth.detach().cpu() if isinstance(truth, torch.Tensor) else truth).astype(np.int64).ravel()
    if p.shape != g.shape:
        raise ValueError(f"confusion_counts: prediction has {p.size} pixels, truth {g.size}.")
    joint = np.bincount(g * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    tp = np.diag(joint)
    fp, fn = joint.sum(0) - tp, joint.sum(1) - tp
    return np.stack([tp, fp, fn, p.size - tp - fp - fn], axis=1)


def scores_from_counts(counts: np.ndarray, ignore_empty: bool = False) -> dict[str, np.ndarray]:
    """Dice, Jaccard, precision, recall and accuracy per row of TP, FP, FN (, TN) counts.

    Dice ``2TP / (2TP + FP + FN)``, Jaccard ``TP / (TP + FP + FN)``, precision ``TP / (TP + FP)``, recall
    ``TP / (TP + FN)``, accuracy ``(TP + TN) / N`` (only when TN is given).

    Args:
        counts: ``(..., 3)`` or ``(..., 4)`` confusion counts (TP, FP, FN[, TN]).
        ignore_empty: the empty-mask convention, as MONAI's ``DiceMetric`` / ``MeanIoU`` (same name, same values).
            False (default): where a ratio is 0 / 0 the prediction and the truth agree that there is nothing to find
            or predict, so the score is 1.0 (both masks empty for Dice and Jaccard; an empty prediction against a
            non-empty truth gets precision 1.0 and recall 0.0); a false positive on an empty truth gives Dice 0.
            True: Dice, Jaccard and recall are NaN wherever the truth is empty (with or without false positives),
            precision NaN wherever the prediction is empty (MONAI's ``ConfusionMatrixMetric``); accuracy unchanged.

    Returns:
        ``{"dice", "jaccard", "precision", "recall"[, "accuracy"]}``, each of the counts' leading shape.
    """
    tp, fp, fn = (counts[..., i].astype(np.float64) for i in range(3))
    empty = np.nan if ignore_empty else 1.0

    def ratio(num, den, undefined=1.0):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1), undefined)

    # MONAI's DiceMetric(ignore_empty=True): NaN for an empty truth even with false positives (not 0)
    truth_empty = (tp + fn) == 0 if ignore_empty else np.zeros(tp.shape, dtype=bool)
    scores = {
        "dice": np.where(truth_empty, np.nan, ratio(2 * tp, 2 * tp + fp + fn)),
        "jaccard": np.where(truth_empty, np.nan, ratio(tp, tp + fp + fn)),
        "precision": ratio(tp, tp + fp, empty),
        "recall": ratio(tp, tp + fn, empty),
    }
    if counts.shape[-1] > 3:
        tn = counts[..., 3].astype(np.float64)
        scores["accuracy"] = ratio(tp + tn, tp + fp + fn + tn)
    return scores


def _empty_flags(counts: np.ndarray) -> np.ndarray:
    """Per row of confusion counts: ``"both"`` (truth and prediction empty), ``"truth"`` (only the truth),
    ``"prediction"`` (only the prediction) or ``""`` (neither)."""
    truth_empty = (counts[..., 0] + counts[..., 2]) == 0
    pred_empty = (counts[..., 0] + counts[..., 1]) == 0
    flags = np.full(truth_empty.shape, "", dtype=object)
    flags[truth_empty & pred_empty] = "both"
    flags[truth_empty & ~pred_empty] = "truth"
    flags[~truth_empty & pred_empty] = "prediction"
    return flags


def _nanmean(values: np.ndarray, axis: int | tuple[int, ...] | None = None) -> np.ndarray:
    """``np.nanmean`` without the warning for all-NaN slices (their mean is NaN: no defined distance)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def _label_map(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Integer label map without its leading channel axis: ``(1, H, W)`` -> ``(H, W)``."""
    a = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x).astype(np.int64)
    return a[0] if a.ndim >= 3 and a.shape[0] == 1 else a


def _json_safe(value: Any) -> Any:
    """Copy of a summary with NaN floats as ``None``, so that ``json.dumps`` writes ``null`` (valid JSON)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _csv_cell(value: Any) -> Any:
    """CSV cell: empty for a missing or NaN value (undefined distance, no pixel size, pooled distance)."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value


class SegmentationReport:
    """Ignite handler: per-image, per-class scores (Dice, Jaccard, precision, recall, accuracy), mean and pooled.

    Reads each decollated item of ``engine.state.output`` (integer label maps under ``pred_key`` and ``label_key``)
    and its batch item (``name``, ``slice`` and, for distances, the pixel size under ``spacing_key``). At the end of
    the run writes ``metrics.json`` (per image, mean, pooled) and ``metrics.csv`` (one row per image and class, then
    the mean and pooled rows) into ``output_dir``, logs the summary and stores the mean foreground Dice / Jaccard (and
    Hausdorff distances) in ``engine.state.metrics``.

    With ``distances=True`` each image also gets, per class, the 95th-percentile and maximum symmetric Hausdorff
    distance (BIEDSNet, Table 1) from :func:`~emdiff_components.metrics.hausdorff_distances`: ``hd95_px`` and
    ``hd_max_px`` in pixels, and ``hd95_mm`` / ``hd_max_mm`` when the batch item has a pixel size (NaN otherwise).
    A distance is 0 where both masks of a class are empty and NaN (JSON ``null``, empty CSV cell) where exactly one
    is; the mean over images leaves NaN out (``np.nanmean``) and ``hd_undefined`` counts, per class, the images whose
    pixel distance is undefined. Distances do not pool, so the pooled rows have none. Summary keys
    ``mean_hd95_px``, ``mean_hd_max_px``, ``mean_hd95_mm``, ``mean_hd_max_mm`` are the nanmean over images and
    foreground classes (as ``mean_dice`` is the mean over images and foreground classes).

    Empty masks (``ignore_empty``, MONAI's ``DiceMetric`` convention, see :func:`scores_from_counts`): with
    ``ignore_empty=True`` a class whose truth is empty in an image has NaN Dice, Jaccard and recall there (NaN
    precision where its prediction is empty) and, with ``distances``, NaN distances (as MONAI's
    ``HausdorffDistanceMetric``); every mean is over the defined values (``np.nanmean``), so an image where truth and
    prediction are both empty is not averaged in as Dice 1. Whatever the convention, the summary says which was used
    (``ignore_empty`` and ``empty_convention``) and counts per class the images where truth and prediction are both
    empty (``empty_counts["both"]``), only the truth is (``"truth"``, false positives) and only the prediction is
    (``"prediction"``, all missed); ``dice_images`` counts per class the images in the mean Dice. The CSV has an
    ``empty`` column (``both`` / ``truth`` / ``prediction`` per image and class; the convention on the mean rows)
    and rows ``empty_both``, ``empty_truth``, ``empty_prediction`` with the counts in that column.

    Args:
        output_dir: folder of the report files (created).
        num_classes: classes including background (default 2).
        class_names: names of the classes (default ``class_0 ...``); background is reported but left out of the
            ``mean_*`` / ``pooled_*`` summary keys.
        pred_key: output key of the predicted label map ``(1, H, W)`` (default ``"pred"``).
        label_key: output key of the true label map ``(1, H, W)`` (default ``"label"``).
        distances: also report Hausdorff distances (default ``False``: ECSD's evaluate; BIEDSNet turns it on).
        spacing_key: batch-item key of the in-plane pixel size in mm, 2 values in ``(y, x)`` order (a sequence,
            array or tensor, also as left by collation); an absent key, ``None`` or NaN means unknown (no mm
            distances for that image). ``None`` (argument): never report mm. Default ``"spacing"``.
        ignore_empty: MONAI's empty-truth convention (above); default False (empty-empty scores 1, ECSD's evaluate).
        labelled_only: score only images whose truth has foreground (any class but 0), as papers that evaluate the
            lesion slices only (BIEDSNet); the others are counted in ``skipped_unlabelled``; default False.
        skipped_cases: names of cases left out before inference, e.g. test volumes without any labelled slice
            (the second list of :func:`~emdiff_components.data.labelled_datalist`); they are in no mean, and the
            report names them (``skipped_cases``), counts them (``num_skipped_cases``) and logs them. Default none.

    Raises:
        ValueError: ``class_names`` does not have ``num_classes`` names; during the run, a pixel size that is not
            2 positive finite numbers.
        TypeError: during the run, a pixel size that is not numeric.

    Example:
        >>> from ignite.engine import Engine
        >>> square = torch.zeros(1, 8, 8, dtype=torch.long)
        >>> square[:, 2:5, 2:5] = 1
        >>> item = {"name": "a", "spacing": (0.5, 0.5), "pred": square.roll(2, -1), "label": square}
        >>> evaluator = Engine(lambda engine, batch: batch)  # the output items carry pred and label
        >>> SegmentationReport(tmp_dir, class_names=["bg", "mito"], distances=True).attach(evaluator)
        >>> evaluator.run([[item]]).metrics["mean_hd_max_mm"]  # 2 px at 0.5 mm; also writes tmp_dir/metrics.*
        1.0
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        num_classes: int = 2,
        class_names: Sequence[str] | None = None,
        pred_key: str = "pred",
        label_key: str = "label",
        distances: bool = False,
        spacing_key: str | None = "spacing",
        ignore_empty: bool = False,
        labelled_only: bool = False,
        skipped_cases: Sequence[str] = (),
    ) -> None:
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"SegmentationReport: {len(class_names)} class_names for {num_classes} classes.")
        self.output_dir = Path(output_dir)
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names else [f"class_{i}" for i in range(num_classes)]
        self.pred_key = pred_key
        self.label_key = label_key
        self.distances = bool(distances)
        self.spacing_key = spacing_key
        self.ignore_empty = bool(ignore_empty)
        self.labelled_only = bool(labelled_only)
        self.skipped_unlabelled = 0
        self.skipped_cases = [str(name) for name in skipped_cases]
        # (name, slice, confusion counts (C, 4), distances (4, C) or None, pixel size or None)
        self.rows: list[tuple[str, int, np.ndarray, np.ndarray | None, tuple[float, ...] | None]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def reset(self, engine: Engine | None = None) -> None:
        self.rows = []
        self.skipped_unlabelled = 0

    def update(self, engine: Engine) -> None:
        batch, output = engine.state.batch, engine.state.output
        for item, out in zip(batch, output):
            pred, truth = out[self.pred_key], out[self.label_key]
            counts = confusion_counts(pred, truth, self.num_classes)
            if self.labelled_only and counts[1:, 0].sum() + counts[1:, 2].sum() == 0:  # no foreground in the truth
                self.skipped_unlabelled += 1
                continue
            name = str(item.get("name", len(self.rows)))
            dist, spacing = None, None
            if self.distances:
                p, g = _label_map(pred), _label_map(truth)
                spacing = self._spacing(item, p.ndim, name)
                dist = self._distances(p, g, spacing)
            self.rows.append((name, int(item.get("slice", 0)), counts, dist, spacing))

    def _spacing(self, item: Any, ndim: int, name: str) -> tuple[float, ...] | None:
        """Pixel size in mm of a batch item, or ``None`` where it is unknown."""
        if self.spacing_key is None or not isinstance(item, Mapping) or item.get(self.spacing_key) is None:
            return None
        value = item[self.spacing_key]
        try:
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu().numpy()
            elif isinstance(value, (list, tuple)):  # decollated collation output: a list of 0-d tensors
                value = [float(v) for v in value]
            spacing = np.asarray(value, dtype=np.float64).ravel()
        except (TypeError, ValueError) as e:
            raise TypeError(
                f"SegmentationReport: {self.spacing_key!r} of image {name!r} must be numeric pixel sizes, "
                f"got {value!r}."
            ) from e
        if spacing.size and np.isnan(spacing).all():
            return None  # a datalist fills NaN for an unknown pixel size so that items still collate
        if spacing.size != ndim or not np.all(np.isfinite(spacing) & (spacing > 0)):
            raise ValueError(
                f"SegmentationReport: {self.spacing_key!r} of image {name!r} must be {ndim} positive pixel sizes "
                f"in mm, (y, x) order, got {spacing.tolist()}."
            )
        return tuple(spacing.tolist())

    def _distances(self, pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, ...] | None) -> np.ndarray:
        """``(4, num_classes)`` rows ``DISTANCE_METRICS``; the mm rows are NaN without a pixel size."""
        dist = np.full((len(DISTANCE_METRICS), self.num_classes), np.nan)
        px = hausdorff_distances(pred, truth, self.num_classes)
        dist[0], dist[1] = px["hd95"], px["hd_max"]
        if spacing is not None:
            mm = hausdorff_distances(pred, truth, self.num_classes, spacing=spacing)
            dist[2], dist[3] = mm["hd95"], mm["hd_max"]
        if self.ignore_empty:  # as MONAI's HausdorffDistanceMetric: no distance to an empty truth, not 0
            dist[:, [not (truth == c).any() for c in range(self.num_classes)]] = np.nan
        return dist

    def summary(self) -> dict[str, Any]:
        """Per-image scores, their mean per class, and pooled scores per class (NaN for undefined values)."""
        if not self.rows:
            raise RuntimeError(
                f"SegmentationReport: no images were evaluated ({self.skipped_unlabelled} skipped without foreground, "
                f"{len(self.skipped_cases)} cases left out before inference: {self.skipped_cases})."
            )
        all_counts = np.stack([row[2] for row in self.rows])
        per_image = scores_from_counts(all_counts, self.ignore_empty)
        pooled = scores_from_counts(all_counts.sum(0), self.ignore_empty)
        flags = _empty_flags(all_counts)
        names = self.class_names
        result: dict[str, Any] = {"num_images": len(self.rows), "classes": names, "per_image": []}
        for i, (name, z, *_) in enumerate(self.rows):
            entry = {"name": name, "slice": z, **{m: dict(zip(names, per_image[m][i].tolist())) for m in per_image}}
            result["per_image"].append({**entry, "empty": dict(zip(names, flags[i].tolist()))})
        result["mean"] = {m: dict(zip(names, _nanmean(per_image[m], axis=0).tolist())) for m in per_image}
        result["pooled"] = {m: dict(zip(names, pooled[m].tolist())) for m in pooled}
        foreground = slice(1, None)
        result["mean_dice"] = float(_nanmean(per_image["dice"][:, foreground]))
        result["mean_jaccard"] = float(_nanmean(per_image["jaccard"][:, foreground]))
        result["pooled_dice"] = float(_nanmean(pooled["dice"][foreground]))
        result["pooled_jaccard"] = float(_nanmean(pooled["jaccard"][foreground]))
        result["ignore_empty"] = self.ignore_empty
        result["empty_convention"] = (
            "MONAI DiceMetric ignore_empty=True: Dice, Jaccard, recall (and distances) NaN where the truth of a class "
            "is empty, precision NaN where its prediction is; NaN left out of every mean"
            if self.ignore_empty
            else "MONAI DiceMetric ignore_empty=False: Dice 1 where truth and prediction are both empty, 0 where only "
            "the truth is; included in the means"
        )
        result["empty_counts"] = {
            kind: dict(zip(names, (flags == kind).sum(0).tolist())) for kind in ("both", "truth", "prediction")
        }
        result["dice_images"] = dict(zip(names, np.isfinite(per_image["dice"]).sum(0).tolist()))
        result["skipped_unlabelled"] = self.skipped_unlabelled
        result["skipped_cases"] = list(self.skipped_cases)
        result["num_skipped_cases"] = len(self.skipped_cases)
        if self.distances:
            self._add_distances(result)
        return result

    def _add_distances(self, result: dict[str, Any]) -> None:
        """Put the Hausdorff distances into a summary: per image, nanmean per class, undefined counts, ``mean_hd*``."""
        dist = np.stack([row[3] for row in self.rows])  # (N, 4, C)
        names = self.class_names
        for entry, (*_, d, spacing) in zip(result["per_image"], self.rows):
            entry.update({m: dict(zip(names, d[k].tolist())) for k, m in enumerate(DISTANCE_METRICS)})
            entry["spacing"] = list(spacing) if spacing is not None else None
        means, foreground = _nanmean(dist, axis=0), _nanmean(dist[:, :, 1:], axis=(0, 2))
        result["mean"].update({m: dict(zip(names, means[k].tolist())) for k, m in enumerate(DISTANCE_METRICS)})
        result["hd_undefined"] = dict(zip(names, np.isnan(dist[:, 0]).sum(0).tolist()))
        result["hd_mm_images"] = sum(row[4] is not None for row in self.rows)
        result.update({f"mean_{m}": float(foreground[k]) for k, m in enumerate(DISTANCE_METRICS)})

    def write(self, engine: Engine | None = None) -> dict[str, Any]:
        summary = self.summary()
        json_path, csv_path = self.output_dir / "metrics.json", self.output_dir / "metrics.csv"
        with atomic_write(json_path) as tmp:
            tmp.write_text(json.dumps(_json_safe(summary), indent=2, allow_nan=False))
        with atomic_write(csv_path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            metrics = list(summary["mean"])
            writer.writerow(["name", "slice", "class", "empty", *metrics])
            for entry in summary["per_image"]:
                for cls in self.class_names:
                    cells = (_csv_cell(entry[m][cls]) for m in metrics)
                    writer.writerow([entry["name"], entry["slice"], cls, entry["empty"][cls], *cells])
            convention = {"mean": f"ignore_empty={self.ignore_empty}", "pooled": ""}
            for kind in ("mean", "pooled"):
                for cls in self.class_names:
                    values = (summary[kind].get(m, {}).get(cls) for m in metrics)  # pooled: no distances
                    writer.writerow([kind, "", cls, convention[kind], *map(_csv_cell, values)])
            for kind, counts in summary["empty_counts"].items():  # the count of images is in the `empty` column
                for cls in self.class_names:
                    writer.writerow([f"empty_{kind}", "", cls, counts[cls], *[""] * len(metrics)])
        logger.info(
            "%d images: mean Dice %.4f, mean Jaccard %.4f, pooled Dice %.4f, pooled Jaccard %.4f (foreground classes); "
            "written to %s",
            summary["num_images"], summary["mean_dice"], summary["mean_jaccard"], summary["pooled_dice"],
            summary["pooled_jaccard"], json_path,
        )
        logger.info(
            "empty masks (ignore_empty=%s): images per class with truth and prediction empty %s, truth only %s, "
            "prediction only %s; images in the mean Dice %s; skipped without foreground: %d",
            self.ignore_empty, summary["empty_counts"]["both"], summary["empty_counts"]["truth"],
            summary["empty_counts"]["prediction"], summary["dice_images"], summary["skipped_unlabelled"],
        )
        if self.skipped_cases:
            logger.warning(
                "%d cases left out before inference and in no mean (no labelled slice): %s",
                len(self.skipped_cases), ", ".join(self.skipped_cases),
            )
        keys = ["mean_dice", "mean_jaccard", "pooled_dice", "pooled_jaccard"]
        if self.distances:
            keys += [f"mean_{m}" for m in DISTANCE_METRICS]
            logger.info(
                "mean HD95 %.3f px (%.3f mm), mean max HD %.3f px (%.3f mm) (foreground classes, %d of %d images with "
                "a pixel size); images with an undefined distance per class: %s",
                summary["mean_hd95_px"], summary["mean_hd95_mm"], summary["mean_hd_max_px"], summary["mean_hd_max_mm"],
                summary["hd_mm_images"], summary["num_images"], summary["hd_undefined"],
            )
        if engine is not None:
            for key in keys:
                engine.state.metrics[key] = summary[key]
        return summary
