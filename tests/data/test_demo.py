from __future__ import annotations

import logging
import os
import tempfile
import unittest

import numpy as np
from parameterized import parameterized

from emdiff_components.data import make_demo_dataset, read_image, segmentation_datalist

# (case name, num_classes, expected label values)
CLASS_CASES = [("binary", 2, {0, 1}), ("three_classes", 3, {0, 1, 2})]

BAD_ARGS = [
    ("num_train", {"num_train": 0}),
    ("num_test", {"num_test": -1}),
    ("num_classes", {"num_classes": 4}),
    ("size", {"size": (16, 192)}),
    ("size_len", {"size": (192,)}),
]


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


class TestMakeDemoDataset(unittest.TestCase):
    @parameterized.expand(CLASS_CASES)
    def test_layout_and_labels(self, _, num_classes, values):
        with tempfile.TemporaryDirectory() as tmp:
            root = make_demo_dataset(os.path.join(tmp, "demo"), num_train=3, num_test=1, num_classes=num_classes)
            self.assertEqual(_files(root), [
                "README.txt",
                "imagesTr/demo_000.tif", "imagesTr/demo_001.tif", "imagesTr/demo_002.tif",
                "imagesTs/demo_000.tif",
                "labelsTr/demo_000.tif", "labelsTr/demo_001.tif", "labelsTr/demo_002.tif",
                "labelsTs/demo_000.tif",
            ])
            with open(os.path.join(root, "README.txt")) as handle:
                first = handle.readline()
            self.assertTrue(first.startswith("SYNTHETIC demo data"))
            self.assertIn("seed=0", first)
            self.assertIn("not for measuring accuracy", first)
            entries = segmentation_datalist(root, num_classes=num_classes)
            self.assertEqual(len(entries), 3)
            for entry in entries:
                image, label = read_image(entry["image"]), read_image(entry["label"])
                self.assertEqual(image.shape, (192, 192))
                self.assertEqual(image.dtype, np.uint8)
                self.assertEqual(label.dtype, np.uint8)
                self.assertEqual(set(np.unique(label).tolist()), values)
                foreground = float(np.mean(label > 0))
                self.assertGreaterEqual(foreground, 0.02)
                self.assertLessEqual(foreground, 0.40)
                # a simple model can separate them: organelles are clearly darker than the rest
                self.assertLess(image[label == 1].mean(), image[label == 0].mean() - 40)

    def test_same_seed_same_bytes_and_idempotent(self):
        with tempfile.TemporaryDirectory() as tmp:
            a, b, c = (os.path.join(tmp, n) for n in "abc")
            with self.assertLogs("emdiff_components.data.demo", level=logging.INFO) as logs:
                make_demo_dataset(a, seed=3)
            self.assertEqual(sum("SYNTHETIC" in r.getMessage() for r in logs.records), 1)
            make_demo_dataset(b, seed=3)
            make_demo_dataset(c, seed=4)
            for name in _files(a):
                with open(os.path.join(a, name), "rb") as fa, open(os.path.join(b, name), "rb") as fb:
                    self.assertEqual(fa.read(), fb.read(), name)
            with open(os.path.join(a, "imagesTr", "demo_000.tif"), "rb") as fa:
                with open(os.path.join(c, "imagesTr", "demo_000.tif"), "rb") as fc:
                    self.assertNotEqual(fa.read(), fc.read())
            # existing data is left alone, even when asked for another seed or size
            before = {n: os.path.getmtime(os.path.join(a, n)) for n in _files(a)}
            self.assertEqual(make_demo_dataset(a, seed=9, size=(64, 64)), os.path.abspath(a))
            self.assertEqual({n: os.path.getmtime(os.path.join(a, n)) for n in _files(a)}, before)
            self.assertEqual(read_image(os.path.join(a, "imagesTr", "demo_000.tif")).shape, (192, 192))

    def test_no_test_split_and_size(self):
        with tempfile.TemporaryDirectory() as tmp:
            root = make_demo_dataset(tmp, num_train=1, num_test=0, size=(64, 96))
            self.assertFalse(os.path.exists(os.path.join(root, "imagesTs")))
            self.assertEqual(read_image(os.path.join(root, "imagesTr", "demo_000.tif")).shape, (64, 96))

    @parameterized.expand(BAD_ARGS)
    def test_bad_arguments(self, name, kwargs):
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaisesRegex(ValueError, f"make_demo_dataset: {name.split('_len')[0]}"):
                make_demo_dataset(tmp, **kwargs)
            self.assertEqual(os.listdir(tmp), [])
