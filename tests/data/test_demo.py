from __future__ import annotations

import logging
import os
import tempfile

import numpy as np
import pytest
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


class TestMakeDemoDataset:
    @parameterized.expand(CLASS_CASES)
    def test_layout_and_labels(self, _, num_classes, values):
        with tempfile.TemporaryDirectory() as tmp:
            root = make_demo_dataset(os.path.join(tmp, "demo"), num_train=3, num_test=1, num_classes=num_classes)
            assert _files(root) == [
                "README.txt",
                "imagesTr/demo_000.tif", "imagesTr/demo_001.tif", "imagesTr/demo_002.tif",
                "imagesTs/demo_000.tif",
                "labelsTr/demo_000.tif", "labelsTr/demo_001.tif", "labelsTr/demo_002.tif",
                "labelsTs/demo_000.tif",
            ]
            with open(os.path.join(root, "README.txt")) as handle:
                first = handle.readline()
            assert first.startswith("SYNTHETIC demo data") and "seed=0" in first
            assert "not for measuring accuracy" in first
            entries = segmentation_datalist(root, num_classes=num_classes)
            assert len(entries) == 3
            for entry in entries:
                image, label = read_image(entry["image"]), read_image(entry["label"])
                assert image.shape == (192, 192) and image.dtype == np.uint8 and label.dtype == np.uint8
                assert set(np.unique(label).tolist()) == values
                foreground = float(np.mean(label > 0))
                assert 0.02 <= foreground <= 0.40
                # a simple model can separate them: organelles are clearly darker than the rest
                assert image[label == 1].mean() < image[label == 0].mean() - 40

    def test_same_seed_same_bytes_and_idempotent(self, caplog):
        with tempfile.TemporaryDirectory() as tmp:
            a, b, c = (os.path.join(tmp, n) for n in "abc")
            with caplog.at_level(logging.INFO, logger="emdiff_components.data.demo"):
                make_demo_dataset(a, seed=3)
            assert sum("SYNTHETIC" in r.getMessage() for r in caplog.records) == 1
            make_demo_dataset(b, seed=3)
            make_demo_dataset(c, seed=4)
            for name in _files(a):
                with open(os.path.join(a, name), "rb") as fa, open(os.path.join(b, name), "rb") as fb:
                    assert fa.read() == fb.read(), name
            with open(os.path.join(a, "imagesTr", "demo_000.tif"), "rb") as fa:
                with open(os.path.join(c, "imagesTr", "demo_000.tif"), "rb") as fc:
                    assert fa.read() != fc.read()
            # existing data is left alone, even when asked for another seed or size
            before = {n: os.path.getmtime(os.path.join(a, n)) for n in _files(a)}
            assert make_demo_dataset(a, seed=9, size=(64, 64)) == os.path.abspath(a)
            assert {n: os.path.getmtime(os.path.join(a, n)) for n in _files(a)} == before
            assert read_image(os.path.join(a, "imagesTr", "demo_000.tif")).shape == (192, 192)

    def test_no_test_split_and_size(self):
        with tempfile.TemporaryDirectory() as tmp:
            root = make_demo_dataset(tmp, num_train=1, num_test=0, size=(64, 96))
            assert not os.path.exists(os.path.join(root, "imagesTs"))
            assert read_image(os.path.join(root, "imagesTr", "demo_000.tif")).shape == (64, 96)

    @parameterized.expand(BAD_ARGS)
    def test_bad_arguments(self, name, kwargs):
        with tempfile.TemporaryDirectory() as tmp:
            with pytest.raises(ValueError, match=f"make_demo_dataset: {name.split('_len')[0]}"):
                make_demo_dataset(tmp, **kwargs)
            assert os.listdir(tmp) == []
