from __future__ import annotations

import json
import os
import tempfile
import unittest

import numpy as np
from monai.transforms import Compose
from parameterized import parameterized

from emdiff_components.data import read_image, write_image
from emdiff_components.engines import remodel_volumes
from emdiff_components.transforms import LoadVolumed, MitochondriaLibrary, RemodelMasksd

# (name, kwargs, message)
ARGUMENT_ERRORS = [
    ("copies_zero", {"datalist": [{"label": "x"}], "copies": 0}, "remodel_volumes: copies must be an int >= 1"),
    ("copies_bool", {"datalist": [{"label": "x"}], "copies": True}, "remodel_volumes: copies must be an int >= 1"),
    ("empty", {"datalist": []}, "remodel_volumes: the datalist is empty"),
]


def _neuron_slabs(shape=(4, 96, 96), width=24):
    """Instance labels: vertical slabs of neurons (ids 1..4) with a one-voxel unlabelled gap between them."""
    label = np.zeros(shape, np.uint32)
    for i in range(shape[2] // width):
        label[:, :, i * width + 1 : (i + 1) * width] = i + 1
    return label


class TestRemodelVolumes(unittest.TestCase):
    def setUp(self):
        self._dir = tempfile.TemporaryDirectory()
        self.root = self._dir.name
        write_image(os.path.join(self.root, "lab.tif"), _neuron_slabs())

    def tearDown(self):
        self._dir.cleanup()

    def _run(self, out, seed):
        transform = Compose([LoadVolumed("label", dtype="int64"), RemodelMasksd(place=False)])
        entries = [{"label": os.path.join(self.root, "lab.tif"), "name": "v", "voxel_size": (29.0, 6.0, 6.0)}]
        return remodel_volumes(entries, transform, os.path.join(self.root, out), copies=2, seed=seed)

    def test_layout_seeded_and_membranes_on_borders(self):
        first = self._run("a", seed=5)
        again = self._run("b", seed=5)
        self.assertEqual([w["name"] for w in first], ["v_r0", "v_r1"])
        self.assertEqual(first[0]["condition"], os.path.join(self.root, "a", "conditionsTr", "v_r0.tif"))
        self.assertEqual(first[1]["label"], os.path.join(self.root, "a", "labelsTr", "v_r1.tif"))
        conditions = [read_image(w["condition"]) for w in first]
        for condition, other in zip(conditions, again):
            np.testing.assert_array_equal(condition, read_image(other["condition"]))  # same seed, same files
        self.assertFalse(np.array_equal(conditions[0], conditions[1]))  # the copies differ
        self.assertEqual(conditions[0].dtype, np.uint8)
        label = read_image(first[0]["label"])
        self.assertEqual(label.dtype, np.uint32)
        self.assertEqual(set(np.unique(label).tolist()) - {0}, {1, 2, 3, 4})  # neurons kept
        self.assertEqual(set(np.unique(conditions[0]).tolist()), {0, 1})  # no mitochondria placed (place=False)
        borders = np.zeros(label.shape, bool)
        borders[:, :, 1:] |= label[:, :, 1:] != label[:, :, :-1]
        self.assertEqual(int(conditions[0][borders].min()), 1)  # every label border is membrane
        with open(os.path.join(self.root, "a", "dataset.json")) as handle:
            summary = json.load(handle)
        self.assertEqual(summary["voxel_size"], [29.0, 6.0, 6.0])
        self.assertEqual(summary["numTraining"], 2)
        self.assertEqual(summary["voxel_sizes"], {"v_r0": [29.0, 6.0, 6.0], "v_r1": [29.0, 6.0, 6.0]})
        self.assertEqual(sorted(os.listdir(os.path.join(self.root, "a"))), ["conditionsTr", "dataset.json", "labelsTr"])

    def test_library_saved_beside_the_dataset(self):
        mito = np.zeros((2, 64, 64), np.uint8)
        mito[:, 10:30, 20:32] = 1  # one 20 x 12 component per slice, off the border
        library = MitochondriaLibrary.from_volumes([mito], min_area=100)
        self.assertEqual(len(library), 2)
        transform = Compose([LoadVolumed("label", dtype="int64"), RemodelMasksd(place=False)])
        entries = [{"label": os.path.join(self.root, "lab.tif"), "name": "v", "voxel_size": (29.0, 6.0, 6.0)}]
        out = os.path.join(self.root, "lib")
        remodel_volumes(entries, transform, out, library=library)
        saved = MitochondriaLibrary.load(os.path.join(out, "mito_library.npz"))
        self.assertEqual(len(saved), 2)
        for a, b in zip(saved.contours, library.contours):
            np.testing.assert_allclose(a, b)
        # an empty library writes nothing
        remodel_volumes(entries, transform, os.path.join(self.root, "empty"), library=MitochondriaLibrary.from_volumes([]))
        self.assertNotIn("mito_library.npz", os.listdir(os.path.join(self.root, "empty")))

    def test_other_seed_other_copies(self):
        first, other = self._run("a", seed=5), self._run("b", seed=6)
        self.assertFalse(np.array_equal(read_image(first[0]["condition"]), read_image(other[0]["condition"])))

    @parameterized.expand(ARGUMENT_ERRORS)
    def test_bad_arguments(self, _, kwargs, message):
        with self.assertRaisesRegex(ValueError, message):
            remodel_volumes(transform=None, output_dir=os.path.join(self.root, "out"), **kwargs)
        self.assertFalse(os.path.exists(os.path.join(self.root, "out")))


if __name__ == "__main__":
    unittest.main()
