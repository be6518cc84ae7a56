from __future__ import annotations

import os
import pickle
import tempfile
import unittest
from unittest import mock

import numpy as np
import pytest
import tifffile
from parameterized import parameterized

import emdiff_components.transforms.io.array as io_array
from emdiff_components.data import write_image
from emdiff_components.transforms import LoadSlice

# (case name, num_classes, stored label values, expected loaded values)
LABEL_CASES = [
    ("binary_0_1", 2, [0, 1], [0, 1]),
    ("binary_0_255", 2, [0, 255], [0, 1]),
    ("multiclass", 4, [0, 1, 3], [0, 1, 3]),
]

BAD_CTOR = [("num_classes_one", {"num_classes": 1}), ("cache", {"cache_size": -1}), ("bool", {"num_classes": True})]


def _stack(tmp, depth=5, name="s.tif"):
    stack = np.arange(depth * 6 * 7, dtype=np.uint16).reshape(depth, 6, 7)
    path = os.path.join(tmp, name)
    write_image(path, stack)
    return path, stack


class TestLoadSlice(unittest.TestCase):
    def test_picks_slice_like_tifffile(self):
        with tempfile.TemporaryDirectory() as tmp:
            path, _ = _stack(tmp)
            for z in (0, 3, 4):
                out = LoadSlice()(path, z)
                self.assertEqual(out.shape, (1, 6, 7))
                self.assertEqual(out.dtype, np.float32)
                np.testing.assert_array_equal(out[0], tifffile.imread(path, key=z).astype(np.float32))

    def test_stack_read_once(self):
        calls = []

        def counting_read(path):
            calls.append(path)
            return io_array_read(path)

        io_array_read = io_array.read_image
        with mock.patch.object(io_array, "read_image", counting_read), tempfile.TemporaryDirectory() as tmp:
            path, stack = _stack(tmp, depth=30)
            load = LoadSlice(cache_size=2)
            slices = [load(path, z) for z in range(30)]
            self.assertEqual(len(calls), 1)
            np.testing.assert_array_equal(np.concatenate(slices), stack.astype(np.float32))
            # LRU: two more files push the stack out of a 2-file cache
            others = [_stack(tmp, 2, f"o{i}.tif")[0] for i in range(2)]
            for other in others:
                load(other, 0)
            load(path, 1)
            self.assertEqual(len(calls), 4)
            # a pickled copy (DataLoader worker) starts with an empty cache but works
            clone = pickle.loads(pickle.dumps(load))
            self.assertEqual(len(clone._cache), 0)
            np.testing.assert_array_equal(clone(path, 2)[0], stack[2])

    def test_changed_file_is_read_again(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "a.npy")
            write_image(path, np.zeros((2, 3), np.float32))
            load = LoadSlice()
            self.assertEqual(load(path).sum(), 0)
            write_image(path, np.ones((2, 3), np.float32))
            os.utime(path, ns=(1, 10**18))  # make sure the modification time differs
            self.assertEqual(load(path).sum(), 6)

    @parameterized.expand(LABEL_CASES)
    def test_labels(self, _, num_classes, stored, expected):
        label = np.array([stored * 2, stored * 2], dtype=np.uint8)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "l.png")
            write_image(path, label)
            out = LoadSlice(num_classes=num_classes)(path)
            override = LoadSlice()(path, 0, num_classes=num_classes)
        self.assertEqual(out.dtype, np.int64)
        self.assertEqual(out.shape, (1, 2, 2 * len(stored)))
        np.testing.assert_array_equal(out[0, 1], expected * 2)
        np.testing.assert_array_equal(override, out)

    def test_errors(self):
        with tempfile.TemporaryDirectory() as tmp:
            path, _ = _stack(tmp, depth=3)
            with self.assertRaisesRegex(ValueError, r"LoadSlice: slice_index 3 is out of range 0\.\.2 for .*s\.tif"):
                LoadSlice()(path, 3)
            with self.assertRaisesRegex(TypeError, "slice_index must be an int"):
                LoadSlice()(path, 1.5)
            flat = os.path.join(tmp, "f.png")
            write_image(flat, np.full((3, 3), 5, np.uint8))
            with self.assertRaisesRegex(ValueError, r"slice_index 1 is out of range 0\.\.0"):
                LoadSlice()(flat, 1)
            with self.assertRaisesRegex(ValueError, r"label .*f\.png' slice 0 has values \[5\] outside 0\.\.2"):
                LoadSlice(num_classes=3)(flat)
            with self.assertRaisesRegex(ValueError, "does not exist"):
                LoadSlice()(os.path.join(tmp, "missing.tif"))

    @parameterized.expand(BAD_CTOR)
    def test_bad_constructor(self, _, kwargs):
        with self.assertRaisesRegex(ValueError, "LoadSlice"):
            LoadSlice(**kwargs)


class TestLoadSliceSharedData(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _shared(self, shared_data):
        # unittest methods cannot take fixtures as arguments; keep the path on the instance instead
        self.shared = shared_data

    def test_shared_isbi_slice(self):
        path = self.shared / "isbi2012_em" / "train-volume.tif"
        out = LoadSlice(dtype=np.uint8)(path, 17)
        self.assertEqual(out.dtype, np.uint8)
        np.testing.assert_array_equal(out[0], tifffile.imread(path, key=17))
