from __future__ import annotations

import csv
import json
import math
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch
from parameterized import parameterized

from emdiff_components.metrics import InstanceSegmentationReport, instance_scores


def log2(x: float) -> float:
    return math.log(x) / math.log(2)


# Conditional entropies in bits: H(A | B) = -sum_ab p(a, b) log2(p(a, b) / p(b)).
# 8 voxels of one neuron; the prediction cuts 2 of them off. H(pred | truth) = H(6/8, 2/8); H(truth | pred) = 0.
SPLIT_ENTROPY = -(6 / 8 * log2(6 / 8) + 2 / 8 * log2(2 / 8))  # 0.811 bits
# Rand F-score over voxel pairs: F = 2 * pairs together in both / (pairs together in truth + pairs together in pred).
# split case: truth C(8, 2) = 28 pairs, prediction C(6, 2) + C(2, 2) = 16 pairs, both 16: ARAND = 1 - 32 / 44.
SPLIT_ARAND = 1 - 2 * 16 / (28 + 16)
# mixed case, truth [1 1 1 1 2 2 2 2], pred [1 1 2 2 2 2 3 3]: joint cells (1,1) (1,2) (2,2) (2,3), 2 voxels each.
# H(pred | truth): each true neuron splits 2 / 2 -> 1 bit each, weight 1/2 each -> 1 bit.
# H(truth | pred): pred 2 (weight 4/8) holds 2 + 2 of the two neurons -> 1 bit; preds 1 and 3 are pure -> 0.5 bit.
# pairs: truth 2 * C(4, 2) = 12, pred 1 + C(4, 2) + 1 = 8, both 4 * C(2, 2) = 4 -> F = 8 / 20.
MIXED_SPLIT, MIXED_MERGE, MIXED_ARAND = 4 / 8 * 1 + 4 / 8 * 1, 4 / 8 * 1, 1 - 2 * 4 / (12 + 8)

# (name, pred, truth, vi_split, vi_merge, arand), by hand (above)
HAND_CASES = [
    ("split", [1, 1, 1, 1, 1, 1, 2, 2], [1] * 8, SPLIT_ENTROPY, 0.0, SPLIT_ARAND),
    ("merge", [1] * 8, [1, 1, 1, 1, 1, 1, 2, 2], 0.0, SPLIT_ENTROPY, SPLIT_ARAND),  # the split case mirrored
    ("mixed", [1, 1, 2, 2, 2, 2, 3, 3], [1, 1, 1, 1, 2, 2, 2, 2], MIXED_SPLIT, MIXED_MERGE, MIXED_ARAND),
    ("half_and_half", [1, 1, 1, 1, 2, 2, 2, 2], [1] * 8, 1.0, 0.0, 1 - 2 * 12 / (28 + 12)),
]


def boxes() -> np.ndarray:
    truth = np.zeros((4, 16, 16), dtype=np.int64)
    truth[:, :, :8], truth[:, :, 8:] = 1, 2
    return truth


class TestInstanceScores(unittest.TestCase):
    @parameterized.expand(HAND_CASES)
    def test_hand_values(self, _, pred, truth, split, merge, arand):
        scores = instance_scores(np.array(pred), np.array(truth))
        self.assertAlmostEqual(scores["vi_split"], split)
        self.assertAlmostEqual(scores["vi_merge"], merge)
        self.assertAlmostEqual(scores["vi"], split + merge)
        self.assertAlmostEqual(scores["arand"], arand)

    def test_identical_and_relabelled_inputs_are_perfect(self):
        truth = boxes()
        for pred in (truth, 7 * truth + 3, torch.from_numpy(3 - truth)):  # ids need not match, only the partition
            self.assertEqual(instance_scores(pred, truth), {"vi_split": 0.0, "vi_merge": 0.0, "vi": 0.0, "arand": 0.0})

    def test_over_segmentation_is_split_only_and_merge_is_merge_only(self):
        truth = boxes()
        over = truth * 10 + np.arange(4)[:, None, None]  # every neuron cut into its 4 sections
        scores = instance_scores(over, truth)
        self.assertAlmostEqual(scores["vi_split"], 2.0)  # log2(4): 4 equal pieces per neuron
        self.assertEqual(scores["vi_merge"], 0.0)
        merged = instance_scores(np.ones_like(truth), truth)
        self.assertEqual(merged["vi_split"], 0.0)
        self.assertAlmostEqual(merged["vi_merge"], 1.0)  # log2(2): two equal neurons in one segment

    def test_true_label_zero_is_ignored(self):
        truth = np.pad(boxes(), ((0, 0), (0, 0), (0, 4)))  # 4 unlabelled columns on the right
        pred = np.pad(boxes(), ((0, 0), (0, 0), (0, 4)))
        reference = instance_scores(pred, truth)
        self.assertEqual(reference["vi"], 0.0)
        for fill in (1, 2, 99):  # anything predicted where the truth is 0 changes nothing
            pred[..., 16:] = fill
            self.assertEqual(instance_scores(pred, truth), reference)
        pred[..., 16:] = np.arange(4 * 16 * 4).reshape(4, 16, 4)  # not even a different segment per voxel
        self.assertEqual(instance_scores(pred, truth), reference)
        # not ignoring label 0 scores those voxels: the many segments there are a split of the unlabelled region
        self.assertGreater(instance_scores(pred, truth, ignore_labels=())["vi_split"], 0.0)

    def test_predicted_zero_is_an_ordinary_segment(self):
        truth = boxes()
        self.assertEqual(instance_scores(truth - 1, truth)["vi"], 0.0)  # labels 0 and 1 for the two neurons

    def test_parity_with_skimage_argument_order(self):
        from skimage.metrics import adapted_rand_error, variation_of_information

        rng = np.random.default_rng(0)
        truth, pred = rng.integers(0, 5, (4, 16, 16)), rng.integers(0, 7, (4, 16, 16))
        scores = instance_scores(pred, truth)
        split, merge = variation_of_information(truth, pred, ignore_labels=(0,))
        self.assertAlmostEqual(scores["vi_split"], split)
        self.assertAlmostEqual(scores["vi_merge"], merge)
        self.assertAlmostEqual(scores["arand"], adapted_rand_error(truth, pred, ignore_labels=(0,))[0])

    @parameterized.expand(
        [
            ("shape", np.ones((4, 16, 16), np.int64), np.ones((4, 16, 15), np.int64), "shape"),
            ("negative", -np.ones((2, 2), np.int64), np.ones((2, 2), np.int64), ">= 0"),
            ("fractional", np.full((2, 2), 0.5), np.ones((2, 2), np.int64), "integer"),
            ("all_ignored", np.ones((2, 2), np.int64), np.zeros((2, 2), np.int64), "nothing to score"),
        ]
    )
    def test_errors(self, _, pred, truth, message):
        with self.assertRaisesRegex(ValueError, message):
            instance_scores(pred, truth)


class TestInstanceSegmentationReport(unittest.TestCase):
    def test_summary_and_files(self):
        truth = boxes()
        report = InstanceSegmentationReport()
        report.add("perfect", truth, truth)
        report.add("merged", np.ones_like(truth), truth)  # vi_merge 1 bit, ARAND 1 - 2 * 2C / (2C + 4C) = 1/3
        summary = report.summary()
        self.assertEqual(summary["num_volumes"], 2)
        self.assertAlmostEqual(summary["mean"]["vi_merge"], 0.5)
        self.assertAlmostEqual(summary["std"]["vi_merge"], 0.5)  # population std of [0, 1]
        self.assertAlmostEqual(summary["mean"]["arand"], 1 / 6, places=3)  # C(n, 2) ~ n^2 / 2 for n = 512 voxels
        self.assertEqual(summary["mean"]["vi_split"], 0.0)
        with tempfile.TemporaryDirectory() as tmp:
            report.write(tmp)
            data = json.loads((Path(tmp) / "instance_metrics.json").read_text())
            self.assertEqual([v["name"] for v in data["per_volume"]], ["perfect", "merged"])
            self.assertAlmostEqual(data["per_volume"][1]["vi"], 1.0)
            with open(Path(tmp) / "instance_metrics.csv", newline="") as f:
                rows = list(csv.reader(f))
            self.assertEqual(rows[0], ["name", "vi_split", "vi_merge", "vi", "arand"])
            self.assertEqual([r[0] for r in rows[1:]], ["perfect", "merged", "mean", "std"])
            self.assertAlmostEqual(float(rows[3][2]), 0.5)
            self.assertEqual(
                sorted(p.name for p in Path(tmp).iterdir()), ["instance_metrics.csv", "instance_metrics.json"]
            )

    def test_arand_by_pairs(self):
        # merged boxes of n = 512 voxels each: pairs together in truth 2 * C(n, 2), in pred C(2n, 2), in both 2 C(n, 2)
        n = 4 * 16 * 8
        expected = 1 - 2 * (2 * math.comb(n, 2)) / (2 * math.comb(n, 2) + math.comb(2 * n, 2))
        truth = boxes()
        self.assertAlmostEqual(InstanceSegmentationReport().add("m", np.ones_like(truth), truth)["arand"], expected)

    def test_errors(self):
        report = InstanceSegmentationReport()
        with self.assertRaisesRegex(RuntimeError, "no volumes"):
            report.summary()
        report.add("a", boxes(), boxes())
        with self.assertRaisesRegex(ValueError, "already added"):
            report.add("a", boxes(), boxes())
        with self.assertRaisesRegex(ValueError, "summary row"):
            report.add("mean", boxes(), boxes())
        with self.assertRaisesRegex(ValueError, "output_dir"):
            report.write()
        with self.assertRaisesRegex(ValueError, "shape"):
            report.add("b", boxes()[:2], boxes())


if __name__ == "__main__":
    unittest.main()
