from __future__ import annotations

import os
import tempfile
import unittest
from unittest import mock

import numpy as np
import pytest
import tifffile
from monai.data import Dataset, DataLoader
from parameterized import parameterized

import emdiff_components.transforms.io.array as io_array
from emdiff_components.data import segmentation_datalist, write_image, write_layout
from emdiff_components.transforms import LoadSliced, LoadVolume, LoadVolumed

# (case name, num_classes argument, expected label values of a {0, 2} mask)
NUM_CLASSES_CASES = [("binary_int", 2, [0, 1]), ("dict", {"label": 3}, [0, 2])]

BAD_CTOR = [
    ("label_key_not_in_keys", {"keys": "image", "label_keys": ("label",)}, "label_keys"),
    ("num_classes_extra_key", {"keys": ("image", "label"), "num_classes": {"seg": 2}}, "num_classes"),
    ("num_classes_one", {"keys": ("image", "label"), "num_classes": 1}, "num_classes"),
]


def _layout(root, depth=4):
    image = np.arange(depth * 5 * 6, dtype=np.uint8).reshape(depth, 5, 6)
    label = (image % 2 * 2).astype(np.uint8)
    write_layout(root, "Tr", "vol", image, label)
    return image, label


class TestLoadSliced(unittest.TestCase):
    @parameterized.expand(NUM_CLASSES_CASES)
    def test_values_paths_and_passthrough(self, _, num_classes, expected):
        with tempfile.TemporaryDirectory() as root:
            image, label = _layout(root)
            entry = segmentation_datalist(root, num_classes=3)[2]
            out = LoadSliced(keys=("image", "label"), num_classes=num_classes)(entry)
        self.assertEqual(out["image"].shape, (1, 5, 6))
        self.assertEqual(out["image"].dtype, np.float32)
        np.testing.assert_array_equal(out["image"][0], image[2])
        self.assertEqual(out["label"].dtype, np.int64)
        self.assertEqual(sorted(np.unique(out["label"]).tolist()), expected)
        np.testing.assert_array_equal(out["label"][0] > 0, label[2] > 0)
        self.assertEqual(out["image_path"], entry["image"])
        self.assertEqual(out["label_path"], entry["label"])
        self.assertEqual((out["name"], out["slice"], out["num_slices"]), ("vol", 2, 4))

    def test_one_shared_cache_reads_each_file_once(self):
        calls = []
        original = io_array.read_image
        counting = mock.patch.object(io_array, "read_image", lambda path: calls.append(path) or original(path))
        with counting, tempfile.TemporaryDirectory() as root:
            image, _ = _layout(root, depth=6)
            load = LoadSliced(keys=("image", "label"))
            loaded = [load(e) for e in segmentation_datalist(root, num_classes=3)]
        self.assertEqual(len(calls), 2)
        np.testing.assert_array_equal(np.concatenate([d["image"] for d in loaded]), image.astype(np.float32))

    def test_missing_keys_and_errors(self):
        with tempfile.TemporaryDirectory() as root:
            path = os.path.join(root, "a.png")
            write_image(path, np.zeros((3, 4), np.uint8))
            out = LoadSliced(keys=("image", "label"), allow_missing_keys=True)({"image": path})
            self.assertEqual(out["image"].shape, (1, 3, 4))
            self.assertNotIn("label", out)
            with self.assertRaises(KeyError):
                LoadSliced(keys=("image", "label"))({"image": path})
            with self.assertRaisesRegex(TypeError, "LoadSliced: d\\['image'\\] must be a file path"):
                LoadSliced(keys="image", label_keys=())({"image": out["image"]})

    @parameterized.expand(BAD_CTOR)
    def test_bad_constructor(self, _, kwargs, fragment):
        with self.assertRaisesRegex(ValueError, f"LoadSliced: {fragment}"):
            LoadSliced(**kwargs)



class TestLoadSlicedSharedData(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _shared(self, shared_data):
        # unittest methods cannot take fixtures as arguments; keep the path on the instance instead
        self.shared = shared_data

    def test_in_a_dataloader_with_shared_isbi(self):
        path = str(self.shared / "isbi2012_em" / "train-volume.tif")
        data = [{"image": path, "slice": z} for z in (0, 29)]
        loader = DataLoader(Dataset(data, LoadSliced(keys="image", label_keys=())), batch_size=2, num_workers=0)
        batch = next(iter(loader))
        self.assertEqual(tuple(batch["image"].shape), (2, 1, 512, 512))
        np.testing.assert_array_equal(batch["image"][1, 0].numpy(), tifffile.imread(path, key=29))

class TestLoadVolumed(unittest.TestCase):
    def test_volumes_per_key_dtype_and_paths(self):

        with tempfile.TemporaryDirectory() as tmp:
            image = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
            labels = np.full((2, 3, 4), 135709, np.uint32)  # FIB-SEM body ids exceed 16 bits
            write_image(os.path.join(tmp, "em.tif"), image)
            write_image(os.path.join(tmp, "ids.tif"), labels)
            dtypes = {"image": "float32", "label": "int64", "mito": "uint8"}
            load = LoadVolumed(["image", "label", "mito"], dtype=dtypes, allow_missing_keys=True)
            out = load({"image": os.path.join(tmp, "em.tif"), "label": os.path.join(tmp, "ids.tif"), "name": "v"})
        self.assertEqual(out["image"].shape, (1, 2, 3, 4))
        self.assertEqual(out["image"].dtype, np.float32)
        np.testing.assert_array_equal(out["image"][0], image)
        self.assertEqual(out["label"].dtype, np.int64)
        self.assertEqual(int(out["label"].max()), 135709)
        self.assertTrue(out["label_path"].endswith("ids.tif"))
        self.assertNotIn("mito", out)

    def test_errors(self):

        with tempfile.TemporaryDirectory() as tmp:
            write_image(os.path.join(tmp, "flat.tif"), np.zeros((3, 4), np.uint8))
            with self.assertRaisesRegex(ValueError, r"LoadVolume: .*flat.tif' has shape \(3, 4\)"):
                LoadVolume()(os.path.join(tmp, "flat.tif"))
        with self.assertRaisesRegex(ValueError, "LoadVolumed: no dtype for keys"):
            LoadVolumed(["image", "label"], dtype={"image": "float32"})
