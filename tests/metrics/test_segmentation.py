from __future__ import annotations

import csv
import json
import tempfile
import unittest
from types import SimpleNamespace

import numpy as np
import torch
from monai.metrics import DiceMetric, MeanIoU
from monai.networks.utils import one_hot
from parameterized import parameterized

from emdiff_components.metrics import SegmentationReport, confusion_counts, scores_from_counts

# (prediction, truth, num_classes, expected dice per class, expected jaccard per class), counted by hand
HAND_CASES = [
    ("binary", [[1, 1, 0, 0]], [[1, 0, 0, 0]], 2, [2 * 2 / (2 * 2 + 0 + 1), 2 * 1 / (2 + 1)], [2 / 3, 1 / 2]),
    ("empty_both", [[0, 0]], [[0, 0]], 2, [1.0, 1.0], [1.0, 1.0]),
    ("empty_truth", [[1, 0]], [[0, 0]], 2, [2 / 3, 0.0], [1 / 2, 0.0]),
    ("empty_pred", [[0, 0]], [[1, 0]], 2, [2 / 3, 0.0], [1 / 2, 0.0]),
    ("three_class", [[0, 1, 2, 2]], [[0, 1, 1, 2]], 3, [1.0, 2 / 3, 2 / 3], [1.0, 1 / 2, 1 / 2]),
]


class TestSegmentationScores(unittest.TestCase):
    @parameterized.expand(HAND_CASES)
    def test_hand_values(self, _, pred, truth, k, dice, jaccard):
        scores = scores_from_counts(confusion_counts(np.array(pred), np.array(truth), k))
        np.testing.assert_allclose(scores["dice"], dice)
        np.testing.assert_allclose(scores["jaccard"], jaccard)

    def test_precision_recall_accuracy_by_hand(self):
        # pred [1,1,0,0,0], truth [1,0,0,1,0]: class 1 TP 1, FP 1, FN 1, TN 2
        counts = confusion_counts(np.array([1, 1, 0, 0, 0]), np.array([1, 0, 0, 1, 0]), 2)
        np.testing.assert_array_equal(counts[1], [1, 1, 1, 2])
        scores = scores_from_counts(counts)
        self.assertAlmostEqual(scores["precision"][1], 0.5)
        self.assertAlmostEqual(scores["recall"][1], 0.5)
        self.assertAlmostEqual(scores["accuracy"][1], 3 / 5)
        # empty prediction against a non-empty truth: nothing predicted wrongly, everything missed
        empty = scores_from_counts(confusion_counts(np.array([0, 0]), np.array([1, 0]), 2))
        self.assertEqual((empty["precision"][1], empty["recall"][1], empty["dice"][1]), (1.0, 0.0, 0.0))

    def test_parity_with_monai(self):
        g = torch.Generator().manual_seed(0)
        pred = torch.randint(0, 4, (3, 1, 32, 32), generator=g)
        truth = torch.randint(0, 4, (3, 1, 32, 32), generator=g)
        dice = DiceMetric(include_background=True, reduction="none")(one_hot(pred, 4), one_hot(truth, 4))
        iou = MeanIoU(include_background=True, reduction="none")(one_hot(pred, 4), one_hot(truth, 4))
        for i in range(3):
            ours = scores_from_counts(confusion_counts(pred[i], truth[i], 4))
            np.testing.assert_allclose(ours["dice"], dice[i].numpy(), rtol=1e-5)
            np.testing.assert_allclose(ours["jaccard"], iou[i].numpy(), rtol=1e-5)

    def test_shape_mismatch(self):
        with self.assertRaisesRegex(ValueError, "pixels"):
            confusion_counts(np.zeros(4), np.zeros(5), 2)


class TestSegmentationReport(unittest.TestCase):
    def test_report_files_and_values(self):
        with tempfile.TemporaryDirectory() as tmp:
            report = SegmentationReport(tmp, num_classes=2, class_names=["bg", "mito"])
            engine = SimpleNamespace(state=SimpleNamespace(metrics={}))
            engine.state.batch = [{"name": "a", "slice": 0}, {"name": "a", "slice": 1}]
            engine.state.output = [
                {"pred": torch.tensor([[1, 1, 0, 0]]), "label": torch.tensor([[1, 0, 0, 0]])},
                {"pred": torch.tensor([[1, 1, 1, 1]]), "label": torch.tensor([[1, 1, 1, 1]])},
            ]
            report.update(engine)
            summary = report.write(engine)
            # per image: mito dice 2/3 and 1 -> mean 5/6; pooled: TP 5, FP 1, FN 0 -> 10/11
            self.assertAlmostEqual(summary["mean_dice"], (2 / 3 + 1) / 2)
            self.assertAlmostEqual(summary["pooled_dice"], 10 / 11)
            self.assertAlmostEqual(summary["pooled_jaccard"], 5 / 6)
            self.assertAlmostEqual(engine.state.metrics["mean_jaccard"], (0.5 + 1) / 2)
            saved = json.load(open(f"{tmp}/metrics.json"))
            self.assertEqual(saved["per_image"][0]["dice"]["mito"], 2 / 3)
            rows = list(csv.DictReader(open(f"{tmp}/metrics.csv")))
            self.assertEqual(len(rows), 2 * 2 + 2 * 2)  # 2 images x 2 classes, mean and pooled x 2 classes
            self.assertEqual(set(rows[0]), {"name", "slice", "class", "dice", "jaccard", "precision", "recall", "accuracy"})
            self.assertAlmostEqual(float(rows[1]["precision"]), 0.5)  # image a slice 0, mito: TP 1, FP 1

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "class_names"):
            SegmentationReport("x", num_classes=3, class_names=["a"])
        with self.assertRaisesRegex(RuntimeError, "no images"):
            SegmentationReport("x").summary()


if __name__ == "__main__":
    unittest.main()
