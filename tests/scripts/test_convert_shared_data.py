from __future__ import annotations

import json
import os
import tempfile
import unittest

import cv2
import numpy as np
import pytest
from bundle_testing import load_script
from parameterized import parameterized

from emdiff_components.data import read_image, segmentation_datalist, volume_datalist

convert_shared_data = load_script("convert_shared_data")

# (set, num_classes, Tr slices, Ts slices, in-plane shape)
SPLIT_CASES = [
    ("isbi_mito", 2, 24, 6, (512, 512)),
    ("isbi_membranes", 2, 24, 6, (512, 512)),
    ("sstem", 4, 10, 4, (512, 512)),
    ("epfl", 2, 4, 2, (768, 1024)),
]


class TestConvert(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _shared(self, shared_data):
        # parameterized tests cannot take fixtures as arguments; keep the path on the instance instead
        self.shared = shared_data

    @parameterized.expand(SPLIT_CASES)
    def test_split_sizes(self, name, num_classes, n_tr, n_ts, shape):
        with tempfile.TemporaryDirectory() as tmp:
            root = convert_shared_data.convert(name, tmp, self.shared)
            train = segmentation_datalist(root, "Tr", num_classes=num_classes)
            test = segmentation_datalist(root, "Ts", num_classes=num_classes)
            self.assertEqual((len(train), len(test)), (n_tr, n_ts))
            self.assertEqual(read_image(train[0]["image"]).shape, (n_tr, *shape))
            self.assertEqual(json.load(open(os.path.join(root, "dataset.json")))["numTraining"], 1)

    @parameterized.expand([("covid", {0, 1}), ("covid_multiclass", {0, 1, 2})])
    def test_covid_slices(self, name, values):
        with tempfile.TemporaryDirectory() as tmp:
            root = convert_shared_data.convert(name, tmp, self.shared)
            num_classes = len(values)
            train = segmentation_datalist(root, "Tr", num_classes=num_classes)
            test = segmentation_datalist(root, "Ts", num_classes=num_classes)
            self.assertEqual((len(train), len(test)), (27, 9))
            seen = set()
            for entry in train + test:
                image, label = read_image(entry["image"]), read_image(entry["label"])
                self.assertEqual(image.ndim, 2)
                self.assertEqual(image.shape, label.shape)
                seen |= set(np.unique(label).tolist())
            self.assertEqual(seen, values)

    def test_isbi_mito_values(self):
        with tempfile.TemporaryDirectory() as tmp:
            root = convert_shared_data.convert("isbi_mito", tmp, self.shared)
            image = read_image(os.path.join(root, "imagesTs", "isbi2012_mito_test.tif"))
            label = read_image(os.path.join(root, "labelsTs", "isbi2012_mito_test.tif"))
        volume = read_image(self.shared / "isbi2012_em" / "train-volume.tif")
        mito = read_image(self.shared / "isbi2012_em" / "train-mito.tif")
        np.testing.assert_array_equal(image, volume[24:30])
        np.testing.assert_array_equal(label, mito[24:30])
        self.assertEqual(label.dtype, np.uint8)
        self.assertEqual(set(np.unique(label).tolist()), {0, 1})

    def test_isbi_membranes_inverted(self):
        with tempfile.TemporaryDirectory() as tmp:
            root = convert_shared_data.convert("isbi_membranes", tmp, self.shared)
            label = read_image(os.path.join(root, "labelsTr", "isbi2012_membranes_train.tif"))
        raw = read_image(self.shared / "isbi2012_em" / "train-labels.tif")[:24]
        np.testing.assert_array_equal(label, (raw == 0).astype(np.uint8))
        self.assertGreater(label.mean(), 0.15)
        self.assertLess(label.mean(), 0.3)

    def test_sstem_class_map(self):
        with tempfile.TemporaryDirectory() as tmp:
            root = convert_shared_data.convert("sstem", tmp, self.shared)
            label = read_image(os.path.join(root, "labelsTs", "sstem_vnc_test.tif"))
        raw = read_image(self.shared / "sstem_drosophila_vnc_gerhard" / "labels.tif")[10:14]
        self.assertEqual(label.shape, (4, 512, 512))
        self.assertEqual(set(np.unique(label).tolist()), {0, 1, 2, 3})
        expected = {0: 1, 32: 1, 64: 1, 96: 1, 128: 1, 159: 0, 191: 2, 223: 3, 255: 0}
        for value, cls in expected.items():
            self.assertTrue(np.all(label[raw == value] == cls), value)

    def test_epfl_multiclass_later_wins(self):
        folder = self.shared / "epfl_hippocampus_6class_graphlab"
        with tempfile.TemporaryDirectory() as tmp:
            root = convert_shared_data.main(["epfl", "--out", tmp, "--shared", str(self.shared), "--classes",
                                             "mitochondrion,mitochondrial_boundaries"])
            label = read_image(os.path.join(root, "labelsTs", "epfl_test.tif"))
            labels = json.load(open(os.path.join(root, "dataset.json")))["labels"]
        mito = read_image(folder / "mitochondrion" / "training0045.png") > 127
        rim = read_image(folder / "mitochondrial_boundaries" / "training0045.png") > 127
        expected = np.where(rim, 2, np.where(mito, 1, 0))
        np.testing.assert_array_equal(label[0], expected)
        self.assertEqual(labels, {"0": "background", "1": "mitochondrion", "2": "mitochondrial_boundaries"})


# (set, Tr depth, Ts depth, in-plane shape, voxel size, has mito)
VOLUME_CASES = [
    ("fibsem_neurons", 48, 16, (250, 250), (10.0, 10.0, 10.0), False),
    ("isbi_neurons", 24, 6, (512, 512), (50.0, 4.0, 4.0), True),
]


class TestConvertVolumes(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _shared(self, shared_data):
        self.shared = shared_data

    @parameterized.expand(VOLUME_CASES)
    def test_volume_layout(self, name, n_tr, n_ts, shape, voxel_size, has_mito):
        with tempfile.TemporaryDirectory() as tmp:
            root = convert_shared_data.convert(name, tmp, self.shared)
            for split, depth in (("Tr", n_tr), ("Ts", n_ts)):
                (entry,) = volume_datalist(root, split, min_shape=(depth, *shape))
                self.assertEqual(entry["voxel_size"], voxel_size)
                self.assertEqual("mito" in entry, has_mito)
                image, label = read_image(entry["image"]), read_image(entry["label"])
                self.assertEqual(image.shape, (depth, *shape))
                self.assertEqual(label.shape, (depth, *shape))
                self.assertEqual(image.dtype, np.uint8)
                self.assertEqual(label.dtype, np.uint32)
                if has_mito:
                    mito = read_image(entry["mito"])
                    self.assertEqual(mito.dtype, np.uint8)
                    self.assertEqual(set(np.unique(mito).tolist()), {0, 1})

    def test_fibsem_values(self):
        folder = self.shared / "fibsem_medulla_neurons_neuroproof"
        with tempfile.TemporaryDirectory() as tmp:
            root = convert_shared_data.convert("fibsem_neurons", tmp, self.shared)
            image = read_image(os.path.join(root, "imagesTs", "fibsem_medulla_test.tif"))
            label = read_image(os.path.join(root, "labelsTs", "fibsem_medulla_test.tif"))
        np.testing.assert_array_equal(image, read_image(folder / "raw.tif")[48:])
        np.testing.assert_array_equal(label, read_image(folder / "neuron_ids.tif")[48:])

    def test_isbi_instances_match_opencv(self):
        folder = self.shared / "isbi2012_em"
        with tempfile.TemporaryDirectory() as tmp:
            root = convert_shared_data.convert("isbi_neurons", tmp, self.shared)
            label = read_image(os.path.join(root, "labelsTs", "isbi2012_test.tif"))
            mito = read_image(os.path.join(root, "mitoTs", "isbi2012_test.tif"))
        membranes = read_image(folder / "train-labels.tif")[24:]
        np.testing.assert_array_equal(mito, read_image(folder / "train-mito.tif")[24:])
        self.assertTrue(np.all((label == 0) == (membranes == 0)))
        seen = set()
        for z in range(label.shape[0]):
            count, reference = cv2.connectedComponents((membranes[z] == 255).astype(np.uint8), connectivity=4)
            ids = set(np.unique(label[z]).tolist()) - {0}
            self.assertEqual(len(ids), count - 1)
            self.assertFalse(ids & seen)
            seen |= ids
            # the partition is the same as OpenCV's: each of our ids maps to exactly one OpenCV component
            pairs = np.unique(np.stack([label[z].ravel(), reference.ravel()]), axis=1)
            self.assertEqual(pairs.shape[1], count)


class TestConvertArguments(unittest.TestCase):
    @parameterized.expand([
        ("unknown_set", ("nope",), {}, ValueError, "unknown data set"),
        ("bad_class", ("epfl",), {"classes": "cytoplasm"}, ValueError, "epfl classes"),
        ("classes_not_epfl", ("sstem",), {"classes": ["membranes"]}, ValueError, "applies to 'epfl' only"),
        ("missing_shared", ("sstem",), {"shared_dir": "/nonexistent/shared"}, FileNotFoundError, "/nonexistent/shared"),
    ])
    def test_errors(self, _, args, kwargs, error, fragment):
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaisesRegex(error, fragment):
                convert_shared_data.convert(args[0], tmp, **kwargs)
