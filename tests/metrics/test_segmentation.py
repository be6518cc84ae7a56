from __future__ import annotations

import csv
import json
import math
import os
import tempfile
import unittest
from types import SimpleNamespace

import numpy as np
import torch
from monai.metrics import DiceMetric, MeanIoU, compute_confusion_matrix_metric, get_confusion_matrix
from monai.networks.utils import one_hot
from ignite.engine import Engine
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


# (name, prediction, truth, class-1 Dice with ignore_empty=True, with ignore_empty=False), by hand
EMPTY_CASES = [
    ("empty_both", [[0, 0, 0, 0]], [[0, 0, 0, 0]], np.nan, 1.0),
    ("false_positive_on_empty_truth", [[1, 0, 0, 0]], [[0, 0, 0, 0]], np.nan, 0.0),  # MONAI: NaN, not 0
    ("empty_prediction", [[0, 0, 0, 0]], [[1, 1, 0, 0]], 0.0, 0.0),
    ("overlap", [[1, 1, 0, 0]], [[1, 0, 0, 0]], 2 / 3, 2 / 3),
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

    @parameterized.expand(EMPTY_CASES)
    def test_empty_conventions_match_monai(self, _, pred, truth, dice_ignore, dice_count):
        pred_t, truth_t = torch.tensor(pred)[None, None], torch.tensor(truth)[None, None]
        counts = confusion_counts(np.array(pred), np.array(truth), 2)
        for ignore_empty, expected in ((True, dice_ignore), (False, dice_count)):
            ours = scores_from_counts(counts, ignore_empty=ignore_empty)
            np.testing.assert_array_equal(ours["dice"][1], expected)  # by hand; NaN equals NaN here
            for metric, monai_cls in (("dice", DiceMetric), ("jaccard", MeanIoU)):
                theirs = monai_cls(include_background=True, reduction="none", ignore_empty=ignore_empty)(
                    one_hot(pred_t, 2), one_hot(truth_t, 2)
                )
                np.testing.assert_allclose(ours[metric], theirs[0].numpy(), rtol=1e-6, equal_nan=True)
        # precision and recall under ignore_empty=True: NaN for 0 / 0, as MONAI's ConfusionMatrixMetric
        matrix = get_confusion_matrix(one_hot(pred_t, 2), one_hot(truth_t, 2), include_background=True)
        ours = scores_from_counts(counts, ignore_empty=True)
        for metric in ("precision", "recall", "accuracy"):
            theirs = compute_confusion_matrix_metric(metric, matrix)[0].numpy()
            np.testing.assert_allclose(ours[metric], theirs, rtol=1e-6, equal_nan=True)

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
            # the file holds the returned summary; numpy recount of image a slice 0: Jaccard |A n B| / |A u B|
            pred, label = np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0])
            jaccard = np.logical_and(pred, label).sum() / np.logical_or(pred, label).sum()
            self.assertAlmostEqual(saved["per_image"][0]["jaccard"]["mito"], float(jaccard))
            for key in ("mean_dice", "mean_jaccard", "pooled_dice", "pooled_jaccard"):
                self.assertAlmostEqual(saved[key], summary[key])
            self.assertEqual(sorted(os.listdir(tmp)), ["metrics.csv", "metrics.json"])  # no temporary files
            rows = list(csv.DictReader(open(f"{tmp}/metrics.csv")))
            # 2 images x 2 classes, mean and pooled x 2 classes, 3 empty-count rows x 2 classes
            self.assertEqual(len(rows), 2 * 2 + 2 * 2 + 3 * 2)
            columns = {"name", "slice", "class", "empty", "dice", "jaccard", "precision", "recall", "accuracy"}
            self.assertEqual(set(rows[0]), columns)
            self.assertAlmostEqual(float(rows[1]["precision"]), 0.5)  # image a slice 0, mito: TP 1, FP 1

    def _empty_case_report(self, tmp: str, **kwargs) -> tuple[dict, list[dict]]:
        """Three slices: an overlap (Dice 2/3), truth and prediction both empty, a false positive on empty truth."""
        report = SegmentationReport(tmp, num_classes=2, class_names=["bg", "lesion"], **kwargs)
        engine = SimpleNamespace(state=SimpleNamespace(metrics={}))
        engine.state.batch = [{"name": "a", "slice": z} for z in range(3)]
        engine.state.output = [
            {"pred": torch.tensor([[1, 1, 0, 0]]), "label": torch.tensor([[1, 0, 0, 0]])},
            {"pred": torch.tensor([[0, 0, 0, 0]]), "label": torch.tensor([[0, 0, 0, 0]])},
            {"pred": torch.tensor([[0, 1, 0, 0]]), "label": torch.tensor([[0, 0, 0, 0]])},
        ]
        report.reset()
        report.update(engine)
        summary = report.write(engine)
        return summary, list(csv.DictReader(open(f"{tmp}/metrics.csv")))

    def test_empty_truth_left_out_under_monai_convention(self):
        with tempfile.TemporaryDirectory() as tmp:
            summary, rows = self._empty_case_report(tmp, ignore_empty=True)
            saved = json.load(open(f"{tmp}/metrics.json"))
        # the empty-empty and the false-positive slice have no Dice (NaN, JSON null); the mean is the overlap's 2/3
        self.assertAlmostEqual(summary["mean_dice"], 2 / 3)
        self.assertAlmostEqual(summary["mean"]["dice"]["lesion"], 2 / 3)
        self.assertAlmostEqual(summary["mean_jaccard"], 1 / 2)
        self.assertEqual([e["dice"]["lesion"] for e in saved["per_image"]], [2 / 3, None, None])
        self.assertEqual(summary["empty_counts"]["both"], {"bg": 0, "lesion": 1})
        self.assertEqual(summary["empty_counts"]["truth"], {"bg": 0, "lesion": 1})
        self.assertEqual(summary["empty_counts"]["prediction"], {"bg": 0, "lesion": 0})
        self.assertEqual(summary["dice_images"], {"bg": 3, "lesion": 1})
        self.assertTrue(saved["ignore_empty"])
        self.assertIn("ignore_empty=True", saved["empty_convention"])
        # pooled over the three slices: TP 1, FP 2, FN 0 (the truth is not empty in total)
        self.assertAlmostEqual(summary["pooled_dice"], 2 / (2 + 2))
        # recall NaN on both empty-truth slices, precision NaN on the empty-empty one only; nanmean over the rest
        self.assertAlmostEqual(summary["mean"]["recall"]["lesion"], 1.0)
        self.assertAlmostEqual(summary["mean"]["precision"]["lesion"], (1 / 2 + 0) / 2)
        by_key = {(r["name"], r["slice"], r["class"]): r for r in rows}
        self.assertEqual([by_key[("a", str(z), "lesion")]["empty"] for z in range(3)], ["", "both", "truth"])
        self.assertEqual(by_key[("a", "1", "lesion")]["dice"], "")
        self.assertEqual(by_key[("mean", "", "lesion")]["empty"], "ignore_empty=True")
        self.assertEqual(by_key[("empty_both", "", "lesion")]["empty"], "1")
        self.assertEqual(by_key[("empty_truth", "", "lesion")]["empty"], "1")

    def test_empty_counted_as_one_without_ignore_empty(self):
        with tempfile.TemporaryDirectory() as tmp:
            summary, rows = self._empty_case_report(tmp, ignore_empty=False)
        self.assertAlmostEqual(summary["mean_dice"], (2 / 3 + 1 + 0) / 3)  # MONAI ignore_empty=False: 1 and 0
        self.assertEqual(summary["empty_counts"]["both"]["lesion"], 1)  # counted all the same
        self.assertEqual(summary["dice_images"]["lesion"], 3)
        self.assertFalse(summary["ignore_empty"])
        self.assertEqual({r["empty"] for r in rows if r["name"] == "mean"}, {"ignore_empty=False"})

    def test_labelled_only_skips_slices_without_foreground(self):
        with tempfile.TemporaryDirectory() as tmp:
            summary, _ = self._empty_case_report(tmp, ignore_empty=True, labelled_only=True)
            self.assertEqual(summary["num_images"], 1)
            self.assertEqual(summary["skipped_unlabelled"], 2)
            self.assertEqual([e["slice"] for e in summary["per_image"]], [0])
            self.assertAlmostEqual(summary["pooled_dice"], 2 / 3)  # the false positive of slice 2 is not scored
            self.assertEqual(summary["empty_counts"]["both"]["lesion"], 0)
            report = SegmentationReport(tmp, labelled_only=True)
            engine = SimpleNamespace(state=SimpleNamespace(metrics={}))
            engine.state.batch = [{"name": "b"}]
            engine.state.output = [{"pred": torch.ones(1, 4, dtype=torch.long), "label": torch.zeros(1, 4)}]
            report.update(engine)
            with self.assertRaisesRegex(RuntimeError, "no images.*1 skipped"):
                report.summary()

    def test_skipped_cases_are_named_and_counted(self):
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertLogs("emdiff_components.metrics", level="WARNING") as logs:
                summary, _ = self._empty_case_report(tmp, ignore_empty=True, skipped_cases=["vol_7"])
            with open(f"{tmp}/metrics.json") as f:
                saved = json.load(f)
        self.assertEqual((saved["skipped_cases"], saved["num_skipped_cases"]), (["vol_7"], 1))
        self.assertAlmostEqual(summary["mean_dice"], 2 / 3)  # the skipped case is in no mean
        self.assertIn("vol_7", "".join(logs.output))
        with self.assertRaisesRegex(RuntimeError, r"no images.*1 cases left out before inference: \['v'\]"):
            SegmentationReport("x", skipped_cases=["v"]).summary()

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "class_names"):
            SegmentationReport("x", num_classes=3, class_names=["a"])
        with self.assertRaisesRegex(RuntimeError, "no images"):
            SegmentationReport("x").summary()


def square(top: int = 2, left: int = 2, size: int = 3, shape=(10, 10)) -> torch.Tensor:
    """``(1, H, W)`` label map with a ``size`` x ``size`` square of class 1."""
    m = torch.zeros(1, *shape, dtype=torch.long)
    m[:, top : top + size, left : left + size] = 1
    return m


def run_report(report: SegmentationReport, batches: list[list[dict]]) -> Engine:
    """Drive the handler with a real ignite Engine; each batch item carries its own pred and label."""
    engine = Engine(lambda e, batch: [{"pred": item["pred"], "label": item["label"]} for item in batch])
    report.attach(engine)
    engine.run(batches, max_epochs=1)
    return engine


# (name, pixel size as it may reach the handler, expected class-1 hd_max in mm for a square shifted 2 px along x)
SPACING_CASES = [
    ("iso_tuple", (0.5, 0.5), 1.0),
    ("collated_tensor", torch.tensor([0.5, 0.5], dtype=torch.float64), 1.0),
    ("decollated_list", [torch.tensor(0.5), torch.tensor(0.5)], 1.0),
    ("coarse_y_only", np.array([1.0, 0.5]), 1.0),  # (y, x) order: the shift is along x, 2 x 0.5 mm
    ("coarse_x", [0.5, 1.0], 2.0),
    ("nan_is_unknown", [math.nan, math.nan], math.nan),
    ("none_is_unknown", None, math.nan),
]

# (name, pixel size, error, message)
BAD_SPACING = [
    ("three_values", [0.5, 0.5, 0.5], ValueError, "SegmentationReport.*'spacing'.*image 'a'.*2 positive"),
    ("negative", [0.5, -0.5], ValueError, "SegmentationReport.*'spacing'.*2 positive"),
    ("partly_nan", [0.5, math.nan], ValueError, "SegmentationReport.*'spacing'.*2 positive"),
    ("text", "half", TypeError, "SegmentationReport.*'spacing'.*numeric"),
]


class TestSegmentationReportDistances(unittest.TestCase):
    def test_two_image_report_by_hand(self):
        # classes bg, mito, other (other is empty everywhere: both masks empty -> distance 0)
        spacing = torch.tensor([0.5, 0.5])
        shifted = {"name": "a", "slice": 0, "pred": square(left=4), "label": square(), "spacing": spacing}
        missed = {"name": "a", "slice": 1, "pred": torch.zeros(1, 10, 10, dtype=torch.long), "label": square()}
        with tempfile.TemporaryDirectory() as tmp:
            report = SegmentationReport(tmp, num_classes=3, class_names=["bg", "mito", "other"], distances=True)
            engine = run_report(report, [[shifted], [missed]])
            summary = report.summary()
            first, second = summary["per_image"]
            # image 1: boundary pixels of the shifted square are at most 2 px (1.0 mm) from the true boundary
            for m, v in (("hd95_px", 2.0), ("hd_max_px", 2.0), ("hd95_mm", 1.0), ("hd_max_mm", 1.0)):
                self.assertAlmostEqual(first[m]["mito"], v, places=5)
                self.assertEqual(first[m]["other"], 0.0)
            self.assertEqual(first["spacing"], [0.5, 0.5])
            # image 2: empty prediction against a square -> undefined; no pixel size -> no mm at all
            self.assertTrue(math.isnan(second["hd95_px"]["mito"]) and math.isnan(second["hd_max_px"]["mito"]))
            self.assertEqual(second["hd95_px"]["other"], 0.0)
            self.assertTrue(all(math.isnan(second["hd95_mm"][c]) for c in ("bg", "mito", "other")))
            self.assertIsNone(second["spacing"])
            # mean over images leaves the NaN image out; mean_* over images and foreground classes
            self.assertAlmostEqual(summary["mean"]["hd95_px"]["mito"], 2.0, places=5)
            self.assertAlmostEqual(summary["mean"]["hd_max_mm"]["mito"], 1.0, places=5)
            self.assertEqual(summary["hd_undefined"], {"bg": 0, "mito": 1, "other": 0})
            self.assertEqual(summary["hd_mm_images"], 1)
            self.assertAlmostEqual(summary["mean_hd95_px"], (2 + 0 + 0) / 3, places=5)  # NaN of image 2 left out
            self.assertAlmostEqual(summary["mean_hd_max_mm"], (1 + 0) / 2, places=5)  # image 2 has no mm
            self.assertAlmostEqual(engine.state.metrics["mean_hd95_px"], 2 / 3, places=5)
            self.assertAlmostEqual(engine.state.metrics["mean_hd95_mm"], 0.5, places=5)
            # overlap scores unchanged: mito dice 2*3/(6+6+6) = 1/3 and 0, other 1 and 1
            self.assertAlmostEqual(summary["mean_dice"], (1 / 3 + 0 + 1 + 1) / 4)
            self.assertNotIn("hd95_px", summary["pooled"])

            text = open(f"{tmp}/metrics.json").read()
            self.assertNotIn("NaN", text)
            saved = json.loads(text)
            self.assertIsNone(saved["per_image"][1]["hd95_px"]["mito"])
            self.assertIsNone(saved["per_image"][1]["hd_max_mm"]["other"])
            self.assertEqual(saved["hd_undefined"]["mito"], 1)
            self.assertAlmostEqual(saved["mean_hd_max_px"], 2 / 3, places=5)

            rows = list(csv.DictReader(open(f"{tmp}/metrics.csv")))
            self.assertEqual(len(rows), 2 * 3 + 2 * 3 + 3 * 3)
            self.assertEqual(list(rows[0])[-4:], ["hd95_px", "hd_max_px", "hd95_mm", "hd_max_mm"])
            by_key = {(r["name"], r["slice"], r["class"]): r for r in rows}
            self.assertAlmostEqual(float(by_key[("a", "0", "mito")]["hd_max_mm"]), 1.0, places=5)
            self.assertEqual(by_key[("a", "1", "mito")]["hd95_px"], "")  # undefined
            self.assertEqual(by_key[("a", "1", "other")]["hd95_mm"], "")  # no pixel size
            self.assertAlmostEqual(float(by_key[("mean", "", "mito")]["hd95_px"]), 2.0, places=5)
            pooled = by_key[("pooled", "", "mito")]
            self.assertEqual([pooled[m] for m in ("hd95_px", "hd_max_px", "hd95_mm", "hd_max_mm")], [""] * 4)
            self.assertAlmostEqual(float(pooled["dice"]), 2 * 3 / (2 * 3 + 6 + 15))  # TP 3, FP 6, FN 6 + 9

    def test_no_distance_to_empty_truth_under_ignore_empty(self):
        # class "other" is empty in truth and prediction: distance 0 by default, NaN (left out) with ignore_empty
        item = {"name": "a", "pred": square(left=4), "label": square()}
        with tempfile.TemporaryDirectory() as tmp:
            report = SegmentationReport(tmp, num_classes=3, distances=True, ignore_empty=True)
            run_report(report, [[item]])
            summary = report.summary()
        self.assertTrue(math.isnan(summary["per_image"][0]["hd95_px"]["class_2"]))
        self.assertAlmostEqual(summary["mean_hd95_px"], 2.0, places=5)  # class 1 only, not (2 + 0) / 2
        self.assertEqual(summary["hd_undefined"]["class_2"], 1)

    @parameterized.expand(SPACING_CASES)
    def test_spacing_forms_and_axis_order(self, _, spacing, expected_mm):
        item = {"name": "a", "pred": square(left=4), "label": square(), "spacing": spacing}
        with tempfile.TemporaryDirectory() as tmp:
            report = SegmentationReport(tmp, distances=True)
            run_report(report, [[item]])
            entry = report.summary()["per_image"][0]
        np.testing.assert_allclose(entry["hd_max_mm"]["class_1"], expected_mm, rtol=1e-5)
        self.assertAlmostEqual(entry["hd_max_px"]["class_1"], 2.0, places=5)

    def test_identical_maps_have_zero_distance(self):
        g = torch.Generator().manual_seed(0)
        labels = torch.randint(0, 3, (1, 16, 16), generator=g)
        item = {"name": "a", "pred": labels, "label": labels.clone(), "spacing": (0.3, 0.7)}
        with tempfile.TemporaryDirectory() as tmp:
            report = SegmentationReport(tmp, num_classes=3, distances=True)
            summary = run_report(report, [[item]]).state.metrics
        self.assertEqual([summary[f"mean_{m}"] for m in ("hd95_px", "hd_max_px", "hd95_mm", "hd_max_mm")], [0.0] * 4)

    def test_spacing_key_none_and_distances_off(self):
        item = {"name": "a", "pred": square(left=4), "label": square(), "spacing": (0.5, 0.5)}
        with tempfile.TemporaryDirectory() as tmp:
            no_mm = SegmentationReport(tmp, distances=True, spacing_key=None)
            run_report(no_mm, [[item]])
            self.assertTrue(math.isnan(no_mm.summary()["mean_hd95_mm"]))
            self.assertEqual(no_mm.summary()["hd_mm_images"], 0)
            off = SegmentationReport(tmp, distances=False)
            engine = run_report(off, [[item]])
            summary = json.load(open(f"{tmp}/metrics.json"))
        self.assertFalse(any("hd" in key for key in summary) or any("hd" in key for key in engine.state.metrics))
        scores = {"name", "slice", "empty", "dice", "jaccard", "precision", "recall", "accuracy"}
        self.assertEqual(set(summary["per_image"][0]), scores)

    @parameterized.expand(BAD_SPACING)
    def test_bad_spacing(self, _, spacing, error, message):
        item = {"name": "a", "pred": square(), "label": square(), "spacing": spacing}
        with tempfile.TemporaryDirectory() as tmp, self.assertRaisesRegex(error, message):
            run_report(SegmentationReport(tmp, distances=True), [[item]])


if __name__ == "__main__":
    unittest.main()
