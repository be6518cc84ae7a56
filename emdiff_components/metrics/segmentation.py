"""Per-image, per-class Dice, Jaccard, precision, recall and accuracy from label maps, and the handler that writes them.

ECSD reports Jaccard and Dice (%, Table 1). Per image and class we keep the confusion counts (TP, FP, FN), so the
report gives the mean over images and the pooled (dataset-level) score from summed counts, which is what
Lucchi++ results are usually quoted as.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from ignite.engine import Engine, Events

__all__ = ["confusion_counts", "scores_from_counts", "SegmentationReport"]

logger = logging.getLogger(__name__)


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


def scores_from_counts(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Dice, Jaccard, precision, recall and accuracy per row of TP, FP, FN (, TN) counts.

    Dice ``2TP / (2TP + FP + FN)``, Jaccard ``TP / (TP + FP + FN)``, precision ``TP / (TP + FP)``, recall
    ``TP / (TP + FN)``, accuracy ``(TP + TN) / N`` (only when TN is given). Where a ratio is 0 / 0 the prediction
    and the truth agree that there is nothing to find or predict, so the score is 1.0: both masks empty for Dice and
    Jaccard, no predicted and no missed pixel for precision and recall (an empty prediction against a non-empty truth
    gets precision 1.0 and recall 0.0).
    """
    tp, fp, fn = (counts[..., i].astype(np.float64) for i in range(3))

    def ratio(num, den):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1), 1.0)

    scores = {
        "dice": ratio(2 * tp, 2 * tp + fp + fn),
        "jaccard": ratio(tp, tp + fp + fn),
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
    }
    if counts.shape[-1] > 3:
        tn = counts[..., 3].astype(np.float64)
        scores["accuracy"] = ratio(tp + tn, tp + fp + fn + tn)
    return scores


class SegmentationReport:
    """Ignite handler: per-image, per-class scores (Dice, Jaccard, precision, recall, accuracy), mean and pooled.

    Reads each decollated item of ``engine.state.output`` (integer label maps under ``pred_key`` and ``label_key``)
    and its batch item (``name`` and ``slice``). At the end of the run writes ``metrics.json`` (per image, mean,
    pooled) and ``metrics.csv`` (one row per image and class) into ``output_dir``, logs the summary and stores the
    mean foreground Dice / Jaccard in ``engine.state.metrics``.

    Args:
        output_dir: folder of the report files (created).
        num_classes: classes including background.
        class_names: names of the classes (default ``class_0 ...``); background is reported but left out of the
            ``mean_dice`` / ``mean_jaccard`` summary.
        pred_key: output key of the predicted label map ``(1, H, W)``.
        label_key: output key of the true label map ``(1, H, W)``.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        num_classes: int = 2,
        class_names: Sequence[str] | None = None,
        pred_key: str = "pred",
        label_key: str = "label",
    ) -> None:
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"SegmentationReport: {len(class_names)} class_names for {num_classes} classes.")
        self.output_dir = Path(output_dir)
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names else [f"class_{i}" for i in range(num_classes)]
        self.pred_key = pred_key
        self.label_key = label_key
        self.rows: list[tuple[str, int, np.ndarray]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def reset(self, engine: Engine | None = None) -> None:
        self.rows = []

    def update(self, engine: Engine) -> None:
        batch, output = engine.state.batch, engine.state.output
        for item, out in zip(batch, output):
            counts = confusion_counts(out[self.pred_key], out[self.label_key], self.num_classes)
            self.rows.append((str(item.get("name", len(self.rows))), int(item.get("slice", 0)), counts))

    def summary(self) -> dict[str, Any]:
        """Per-image scores, their mean per class, and pooled scores per class."""
        if not self.rows:
            raise RuntimeError("SegmentationReport: no images were evaluated.")
        all_counts = np.stack([c for _, _, c in self.rows])
        per_image = scores_from_counts(all_counts)
        pooled = scores_from_counts(all_counts.sum(0))
        result: dict[str, Any] = {"num_images": len(self.rows), "classes": self.class_names, "per_image": []}
        for i, (name, z, _) in enumerate(self.rows):
            result["per_image"].append(
                {"name": name, "slice": z, **{m: dict(zip(self.class_names, per_image[m][i].tolist())) for m in per_image}}
            )
        result["mean"] = {m: dict(zip(self.class_names, per_image[m].mean(0).tolist())) for m in per_image}
        result["pooled"] = {m: dict(zip(self.class_names, pooled[m].tolist())) for m in pooled}
        foreground = slice(1, None)
        result["mean_dice"] = float(per_image["dice"][:, foreground].mean())
        result["mean_jaccard"] = float(per_image["jaccard"][:, foreground].mean())
        result["pooled_dice"] = float(pooled["dice"][foreground].mean())
        result["pooled_jaccard"] = float(pooled["jaccard"][foreground].mean())
        return result

    def write(self, engine: Engine | None = None) -> dict[str, Any]:
        summary = self.summary()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        json_path, csv_path = self.output_dir / "metrics.json", self.output_dir / "metrics.csv"
        tmp = json_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(summary, indent=2))
        os.replace(tmp, json_path)
        with open(csv_path.with_suffix(".csv.tmp"), "w", newline="") as f:
            writer = csv.writer(f)
            metrics = list(summary["mean"])
            writer.writerow(["name", "slice", "class", *metrics])
            for entry in summary["per_image"]:
                for cls in self.class_names:
                    writer.writerow([entry["name"], entry["slice"], cls, *(entry[m][cls] for m in metrics)])
            for kind in ("mean", "pooled"):
                for cls in self.class_names:
                    writer.writerow([kind, "", cls, *(summary[kind][m][cls] for m in metrics)])
        os.replace(csv_path.with_suffix(".csv.tmp"), csv_path)
        logger.info(
            "%d images: mean Dice %.4f, mean Jaccard %.4f, pooled Dice %.4f, pooled Jaccard %.4f (foreground classes); "
            "written to %s",
            summary["num_images"], summary["mean_dice"], summary["mean_jaccard"], summary["pooled_dice"],
            summary["pooled_jaccard"], json_path,
        )
        if engine is not None:
            for key in ("mean_dice", "mean_jaccard", "pooled_dice", "pooled_jaccard"):
                engine.state.metrics[key] = summary[key]
        return summary
