from __future__ import annotations

import csv
import json
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch
from parameterized import parameterized

from emdiff_components.metrics import CellSegmentationReport, cell_scores

# (name, pred, truth, seg, precision, recall, f1), by hand:
HAND_CASES = [
    # truth A = 4 px, the prediction covers A and 4 more px: |A & S| = 4 > 2, J = 4 / 8 = 0.5; truth B missed -> 0.
    # SEG = (0.5 + 0) / 2; IoU 0.5 is not > 0.5: no F1 match, precision 0 / 1, recall 0 / 2.
    ("half_jaccard_and_missed", [[1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]], [[1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 2, 2]],
     0.25, 0.0, 0.0, 0.0),
    # covering exactly half of the truth object is not a SEG match (strictly more than half is needed)
    ("exactly_half_cover", [[0, 0, 3, 3, 0, 0]], [[1, 1, 1, 1, 0, 0]], 0.0, 0.0, 0.0, 0.0),
    # one truth object split 3 + 1: the 3-px piece covers 3 > 2 -> J = 3/4 = IoU > 0.5; precision 1/2, recall 1/1
    ("split", [[5, 5, 5, 9]], [[1, 1, 1, 1]], 0.75, 0.5, 1.0, 2 / 3),
    # two truth objects (3 px, 1 px) merged into one 4-px segment: J = 3/4 and 1/4 (1 > 0.5 of the 1-px object);
    # only the first has IoU > 0.5: precision 1/1, recall 1/2
    ("merge", [[4, 4, 4, 4]], [[1, 1, 1, 2]], 0.5, 1.0, 0.5, 2 / 3),
    # background predicted as an object: SEG untouched (1), precision 1/2
    ("false_positive", [[1, 1, 0, 0, 7, 7]], [[1, 1, 0, 0, 0, 0]], 1.0, 0.5, 1.0, 2 / 3),
]


def brute_force(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """SEG and F1 by a loop over every pair of objects (an independent formula)."""
    jaccards, matches = [], 0
    pred_ids = [p for p in np.unique(pred) if p != 0]
    for t in (t for t in np.unique(truth) if t != 0):
        r = truth == t
        best = 0.0
        for p in pred_ids:
            s = pred == p
            inter, union = np.sum(r & s), np.sum(r | s)
            if inter > 0.5 * r.sum():
                best = inter / union
            matches += inter / union > 0.5
        jaccards.append(best)
    return float(np.mean(jaccards)), 2 * matches / (len(pred_ids) + len(jaccards))


class TestCellScores(unittest.TestCase):
    @parameterized.expand(HAND_CASES)
    def test_hand_values(self, _, pred, truth, seg, precision, recall, f1):
        scores = cell_scores(np.array(pred), np.array(truth))
        self.assertAlmostEqual(scores["seg"], seg)
        self.assertAlmostEqual(scores["precision"], precision)
        self.assertAlmostEqual(scores["recall"], recall)
        self.assertAlmostEqual(scores["f1"], f1)

    def test_counts(self):
        scores = cell_scores(np.array([[4, 4, 4, 4]]), np.array([[1, 1, 1, 2]]))
        self.assertEqual((scores["num_truth"], scores["num_pred"], scores["matched_seg"], scores["matched_f1"]),
                         (2, 1, 2, 1))

    def test_identical_and_relabelled_inputs_are_perfect_2d_and_3d(self):
        truth = np.zeros((3, 10, 10), dtype=np.int64)
        truth[:, :4, :4], truth[1:, 5:, 5:], truth[0, 6:, :3] = 1, 2, 3
        for t in (truth, truth[1]):
            for pred in (t, 5 * t, torch.from_numpy(np.where(t > 0, 10 - t, 0))):
                scores = cell_scores(pred, t)
                self.assertEqual((scores["seg"], scores["precision"], scores["recall"], scores["f1"]),
                                 (1.0, 1.0, 1.0, 1.0))

    def test_empty_prediction_scores_zero(self):
        scores = cell_scores(np.zeros((4, 4), dtype=int), np.eye(4, dtype=int))
        self.assertEqual((scores["seg"], scores["precision"], scores["f1"], scores["num_pred"]), (0.0, 0.0, 0.0, 0))

    def test_matches_brute_force_on_random_labels(self):
        rng = np.random.default_rng(0)
        for _ in range(5):
            truth = rng.integers(0, 5, size=(12, 12))
            # a noisy copy: most pixels keep their object, some are relabelled or erased
            pred = np.where(rng.random((12, 12)) < 0.8, truth + 10 * (truth > 0), rng.integers(0, 8, size=(12, 12)))
            seg, f1 = brute_force(pred, truth)
            scores = cell_scores(pred, truth)
            self.assertAlmostEqual(scores["seg"], seg)
            self.assertAlmostEqual(scores["f1"], f1)

    @parameterized.expand([
        ("shape", np.zeros((4, 4), int), np.ones((4, 5), int), "shape"),
        ("float_labels", np.full((4, 4), 0.5), np.ones((4, 4), int), "integer"),
        ("negative", -np.ones((4, 4), int), np.ones((4, 4), int), ">= 0"),
        ("no_truth_object", np.ones((4, 4), int), np.zeros((4, 4), int), "no object"),
        ("1d", np.ones(4, int), np.ones(4, int), "2D"),
    ])
    def test_errors(self, _, pred, truth, message):
        with self.assertRaisesRegex(ValueError, message):
            cell_scores(pred, truth)

    def test_threshold_below_half_is_rejected(self):
        with self.assertRaisesRegex(ValueError, "iou_threshold"):
            cell_scores(np.ones((2, 2), int), np.ones((2, 2), int), iou_threshold=0.3)


class TestCellSegmentationReport(unittest.TestCase):
    def test_summary_and_files(self):
        report = CellSegmentationReport()
        truth_a = np.array([[1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 2, 2]])
        report.add("a", np.array([[1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]]), truth_a)  # SEG 0.25, 2 truth, 1 pred, 0 tp
        report.add("b", np.array([[5, 5, 5, 9]]), np.array([[1, 1, 1, 1]]))  # SEG 0.75, 1 truth, 2 pred, 1 tp
        with tempfile.TemporaryDirectory() as tmp:
            summary = report.write(tmp)
            stored = json.loads((Path(tmp) / "cell_metrics.json").read_text())
            with open(Path(tmp) / "cell_metrics.csv", newline="") as f:
                rows = list(csv.reader(f))
        self.assertAlmostEqual(summary["mean"]["seg"], 0.5)
        self.assertAlmostEqual(summary["std"]["seg"], 0.25)
        # pooled over the 3 truth objects: Jaccards 0.5, 0, 0.75; matches 1 of 3 predicted and 3 truth objects
        self.assertAlmostEqual(summary["pooled"]["seg"], 1.25 / 3)
        self.assertAlmostEqual(summary["pooled"]["f1"], 2 * 1 / (3 + 3))
        self.assertAlmostEqual(summary["pooled"]["precision"], 1 / 3)
        self.assertEqual(stored["per_image"][1]["name"], "b")
        self.assertEqual([r[0] for r in rows], ["name", "a", "b", "mean", "std", "pooled"])
        self.assertAlmostEqual(float(rows[1][1]), 0.25)
        self.assertAlmostEqual(float(rows[5][1]), 1.25 / 3)
        self.assertEqual(rows[5][5], "3")  # pooled num_truth

    def test_errors(self):
        report = CellSegmentationReport()
        with self.assertRaisesRegex(RuntimeError, "no images"):
            report.summary()
        report.add("x", np.ones((2, 2), int), np.ones((2, 2), int))
        with self.assertRaisesRegex(ValueError, "already added"):
            report.add("x", np.ones((2, 2), int), np.ones((2, 2), int))
        with self.assertRaisesRegex(ValueError, "summary row"):
            report.add("pooled", np.ones((2, 2), int), np.ones((2, 2), int))
        with self.assertRaisesRegex(ValueError, "output_dir"):
            report.write()
        with self.assertRaisesRegex(ValueError, "iou_threshold"):
            CellSegmentationReport(iou_threshold=1.0)


if __name__ == "__main__":
    unittest.main()
