from __future__ import annotations

import json
import os
import tempfile
import unittest

import h5py
import numpy as np
import tifffile
from parameterized import parameterized

from emdiff_components.data import (
    DatasetError,
    condition_datalist,
    label_slices_2d,
    read_image,
    volume_datalist,
    write_image,
    write_volume_case,
    write_volume_dataset_json,
)

SHAPE = (4, 6, 8)


def _volumes(seed=0, shape=SHAPE):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    label = rng.integers(0, 5, shape).astype(np.uint32)
    mito = (rng.random(shape) < 0.2).astype(np.uint8)
    return image, label, mito


def _dataset(root, mito_for=("a",), names=("a", "b")):
    """Cases ``a`` (with mito) and ``b`` (without) in the TIFF layout."""
    for i, name in enumerate(names):
        image, label, mito = _volumes(i)
        write_volume_case(root, "Tr", name, image, label, mito if name in mito_for else None)


def _write(path, array):
    write_image(path, array)
    return path


# (name, voxel_size argument, dataset.json voxel size, expected)
VOXEL_CASES = [
    ("argument", (29, 6, 6), None, (29.0, 6.0, 6.0)),
    ("argument_z_xy", (50, 4), None, (50.0, 4.0, 4.0)),
    ("dataset_json", None, [10, 10, 10], (10.0, 10.0, 10.0)),
    ("argument_wins", (29, 6, 6), [10, 10, 10], (29.0, 6.0, 6.0)),
]


class TestVolumeDatalist(unittest.TestCase):
    @parameterized.expand(VOXEL_CASES)
    def test_entries_and_voxel_size(self, _, argument, in_json, expected):
        with tempfile.TemporaryDirectory() as root:
            _dataset(root)
            if in_json is not None:
                write_volume_dataset_json(root, "toy", in_json)
            entries = volume_datalist(root, "Tr", voxel_size=argument, min_shape=SHAPE)
            self.assertEqual([e["name"] for e in entries], ["a", "b"])
            self.assertEqual(entries[0]["image"], os.path.join(root, "imagesTr", "a.tif"))
            self.assertEqual(entries[0]["label"], os.path.join(root, "labelsTr", "a.tif"))
            self.assertEqual(entries[0]["mito"], os.path.join(root, "mitoTr", "a.tif"))
            self.assertNotIn("mito", entries[1])
            self.assertEqual([e["voxel_size"] for e in entries], [expected, expected])
            np.testing.assert_array_equal(read_image(entries[1]["label"]), _volumes(1)[1])

    def test_voxel_size_from_imagej_tiff(self):
        with tempfile.TemporaryDirectory() as root:
            _dataset(root, names=("a",))
            image = _volumes(0)[0]
            # ImageJ metadata: 0.006 um in-plane, 0.029 um between slices
            tifffile.imwrite(os.path.join(root, "imagesTr", "a.tif"), image, imagej=True,
                             resolution=(1 / 0.006, 1 / 0.006), metadata={"unit": "um", "spacing": 0.029})
            write_volume_dataset_json(root, "toy", (1, 1, 1))  # metadata comes before dataset.json
            (entry,) = volume_datalist(root)
            np.testing.assert_allclose(entry["voxel_size"], (29.0, 6.0, 6.0))

    def test_hdf5_keys_and_attributes(self):
        with tempfile.TemporaryDirectory() as root:
            image, label, mito = _volumes(0)
            for folder, data in (("imagesTr", image), ("labelsTr", label), ("mitoTr", mito)):
                os.makedirs(os.path.join(root, folder))
                with h5py.File(os.path.join(root, folder, "vol.h5"), "w") as handle:
                    handle.create_dataset("junk", data=np.zeros(3))  # first dataset: not the one wanted
                    handle.create_dataset("main", data=data).attrs["resolution"] = (40.0, 8.0, 8.0)
            keys = {"image": "/main", "label": "/main", "mito": "/main"}
            (entry,) = volume_datalist(root, h5_keys=keys)
            self.assertTrue(entry["image"].endswith("imagesTr/vol.h5:/main"))
            self.assertTrue(entry["mito"].endswith("mitoTr/vol.h5:/main"))
            self.assertEqual(entry["voxel_size"], (40.0, 8.0, 8.0))
            np.testing.assert_array_equal(read_image(entry["label"]), label)

    def test_unlabelled_images_listed(self):
        with tempfile.TemporaryDirectory() as root:
            _dataset(root)
            os.remove(os.path.join(root, "labelsTr", "b.tif"))
            entries = volume_datalist(root, require_labels=False, voxel_size=(29, 6, 6))
            self.assertIn("label", entries[0])
            self.assertNotIn("label", entries[1])

    def test_mito_mask_0_255_accepted(self):
        with tempfile.TemporaryDirectory() as root:
            _dataset(root, names=("a",))
            _write(os.path.join(root, "mitoTr", "a.tif"), _volumes(0)[2] * 255)
            self.assertTrue(volume_datalist(root, voxel_size=(1, 1, 1))[0]["mito"].endswith("a.tif"))


def _mutate(kind):
    """Functions that break a fresh two-case dataset in ``root``; each returns nothing."""
    image, label, mito = _volumes(0)

    def run(root):
        tr = lambda *p: os.path.join(root, *p)  # noqa: E731
        if kind == "unreadable":
            with open(tr("labelsTr", "a.tif"), "wb") as handle:
                handle.write(b"not a tiff")
        elif kind == "2d":
            _write(tr("imagesTr", "a.tif"), image[0])
        elif kind == "label_shape":
            _write(tr("labelsTr", "a.tif"), label[:3])
        elif kind == "mito_shape":
            _write(tr("mitoTr", "a.tif"), mito[:, :5])
        elif kind == "no_label":
            os.remove(tr("labelsTr", "b.tif"))
        elif kind == "orphan_label":
            _write(tr("labelsTr", "c.tif"), label)
        elif kind == "orphan_mito":
            _write(tr("mitoTr", "c.tif"), mito)
        elif kind == "mito_values":
            _write(tr("mitoTr", "a.tif"), mito * 3)
        elif kind == "label_zero":
            _write(tr("labelsTr", "a.tif"), np.zeros_like(label))
        elif kind == "label_float":
            _write(tr("labelsTr", "a.tif"), label.astype(np.float32) + 0.5)
        elif kind == "label_negative":
            _write(tr("labelsTr", "a.tif"), label.astype(np.int32) - 2)
        elif kind == "bad_json":
            with open(tr("dataset.json"), "w") as handle:
                json.dump({"voxel_size": [0, 6, 6]}, handle)

    return run


# (name, break, datalist kwargs, fragments of the message)
ERROR_CASES = [
    ("unreadable", _mutate("unreadable"), {}, ["labelsTr/a.tif", "cannot use label"]),
    ("2d_file", _mutate("2d"), {}, ["imagesTr/a.tif", "(6, 8)", "2D"]),
    ("label_shape", _mutate("label_shape"), {}, ["imagesTr/a.tif", "(4, 6, 8)", "labelsTr/a.tif", "(3, 6, 8)"]),
    ("mito_shape", _mutate("mito_shape"), {}, ["imagesTr/a.tif", "mitoTr/a.tif", "(4, 5, 8)"]),
    ("no_label", _mutate("no_label"), {}, ["imagesTr/b.tif", "has no label"]),
    ("orphan_label", _mutate("orphan_label"), {}, ["labelsTr/c.tif", "no matching image"]),
    ("orphan_mito", _mutate("orphan_mito"), {}, ["mitoTr/c.tif", "no matching image"]),
    ("mito_values", _mutate("mito_values"), {}, ["mitoTr/a.tif", "binary"]),
    ("label_zero", _mutate("label_zero"), {}, ["labelsTr/a.tif", "all zero"]),
    ("label_float", _mutate("label_float"), {}, ["labelsTr/a.tif", "non-integer"]),
    ("label_negative", _mutate("label_negative"), {}, ["labelsTr/a.tif", "negative"]),
    ("too_small", lambda root: None, {"min_shape": (8, 6, 8)}, ["imagesTr/a.tif", "(4, 6, 8)", "(8, 6, 8)"]),
    ("no_voxel_size", lambda root: None, {"voxel_size": None}, ["imagesTr/a.tif", "voxel_size=(z, y, x)"]),
    ("bad_json", _mutate("bad_json"), {"voxel_size": None}, ["dataset.json", "voxel_size"]),
]


class TestVolumeDatalistErrors(unittest.TestCase):
    @parameterized.expand(ERROR_CASES)
    def test_dataset_errors(self, _, breaker, kwargs, fragments):
        with tempfile.TemporaryDirectory() as root:
            _dataset(root)
            breaker(root)
            with self.assertRaises(DatasetError) as info:
                volume_datalist(root, **{"voxel_size": (29, 6, 6), **kwargs})
        for fragment in fragments:
            self.assertIn(fragment, str(info.exception), (fragment, str(info.exception)))

    @parameterized.expand([
        ("missing_images", "imagesTr", "missing folder"),
        ("missing_labels", "labelsTr", "missing folder"),
    ])
    def test_missing_folders(self, _, folder, fragment):
        with tempfile.TemporaryDirectory() as root:
            _dataset(root)
            for name in os.listdir(os.path.join(root, folder)):
                os.remove(os.path.join(root, folder, name))
            os.rmdir(os.path.join(root, folder))
            with self.assertRaisesRegex(DatasetError, fragment):
                volume_datalist(root, voxel_size=(1, 1, 1))

    def test_empty_images_folder(self):
        with tempfile.TemporaryDirectory() as root:
            os.makedirs(os.path.join(root, "imagesTs"))
            with self.assertRaisesRegex(DatasetError, "empty dataset folder"):
                volume_datalist(root, "Ts", require_labels=False, voxel_size=(1, 1, 1))

    @parameterized.expand([
        ("voxel_size_len", {"voxel_size": (1, 2, 3, 4)}, "voxel_size"),
        ("voxel_size_negative", {"voxel_size": (29, -6, 6)}, "voxel_size"),
        ("min_shape_len", {"min_shape": (8, 8)}, "min_shape"),
        ("min_shape_float", {"min_shape": (8, 8.5, 8)}, "min_shape"),
        ("h5_keys", {"h5_keys": {"raw": "/main"}}, "h5_keys"),
    ])
    def test_bad_arguments(self, _, kwargs, fragment):
        with tempfile.TemporaryDirectory() as root:
            with self.assertRaisesRegex(ValueError, f"volume_datalist: {fragment}"):
                volume_datalist(root, **kwargs)


# (name, volume, min_shape, message)
CONDITION_ERRORS = [
    ("values", np.full((2, 4, 4), 3, np.uint8), None, r"^condition_datalist: condition '.*c\.tif' has values \[3\]"),
    ("flat", np.zeros((4, 4), np.uint8), None, r"^condition_datalist: condition '.*c\.tif' has shape \(4, 4\), a 2D"),
    ("small", np.zeros((2, 4, 4), np.uint8), (4, 4, 4), r"shape \(2, 4, 4\), smaller than \(4, 4, 4\)"),
]


class TestConditionDatalist(unittest.TestCase):
    def test_folder_and_file(self):
        condition = np.array([[[0, 1], [2, 0]]] * 2, np.uint8)
        with tempfile.TemporaryDirectory() as root:
            for name in ("c10", "c2", ".hidden"):
                write_image(os.path.join(root, f"{name}.tif"), condition)
            with open(os.path.join(root, "notes.txt"), "w") as handle:
                handle.write("not a volume")
            entries = condition_datalist(root, min_shape=(2, 2, 2))
            self.assertEqual(
                entries,
                [{"condition": os.path.join(root, f"{n}.tif"), "name": n} for n in ("c2", "c10")],
            )
            self.assertEqual(
                condition_datalist(os.path.join(root, "c2.tif")),
                [{"condition": os.path.join(root, "c2.tif"), "name": "c2"}],
            )

    @parameterized.expand(CONDITION_ERRORS)
    def test_errors(self, _, volume, min_shape, message):
        with tempfile.TemporaryDirectory() as root:
            write_image(os.path.join(root, "c.tif"), volume)
            with self.assertRaisesRegex(DatasetError, message):
                condition_datalist(root, min_shape=min_shape)

    def test_missing_and_empty(self):
        with tempfile.TemporaryDirectory() as root:
            with self.assertRaisesRegex(DatasetError, "condition_datalist: no condition volumes in"):
                condition_datalist(root)
            with self.assertRaisesRegex(DatasetError, "condition_datalist: '.*nothing' does not exist"):
                condition_datalist(os.path.join(root, "nothing"))
            with self.assertRaisesRegex(ValueError, r"condition_datalist: min_shape must be 3 positive ints"):
                condition_datalist(root, min_shape=(4, 4))


class TestWriteVolumeCase(unittest.TestCase):
    def test_round_trip(self):
        image, label, mito = _volumes(3)
        with tempfile.TemporaryDirectory() as root:
            paths = write_volume_case(root, "Ts", "case", image, label, mito * 7)
            self.assertEqual(sorted(paths), ["image", "label", "mito"])
            np.testing.assert_array_equal(read_image(paths["image"]), image)
            np.testing.assert_array_equal(read_image(paths["label"]), label)
            written = read_image(paths["mito"])
            self.assertEqual(written.dtype, np.uint8)
            np.testing.assert_array_equal(written, (mito > 0).astype(np.uint8))

    @parameterized.expand([
        ("2d", lambda v: (v[0][0], None, None), "(Z, Y, X)"),
        ("mito_shape", lambda v: (v[0], v[1], v[2][:2]), "mito shape"),
        ("label_shape", lambda v: (v[0], v[1][:2], None), "label shape"),
    ])
    def test_errors(self, _, pick, fragment):
        with tempfile.TemporaryDirectory() as root:
            with self.assertRaisesRegex(ValueError, fragment):
                write_volume_case(root, "Tr", "x", *pick(_volumes(0)))
            self.assertFalse(os.path.exists(os.path.join(root, "imagesTr", "x.tif")))


class TestWriteVolumeDatasetJson(unittest.TestCase):
    def test_voxel_size_and_mito_entries(self):
        with tempfile.TemporaryDirectory() as root:
            _dataset(root)
            path = write_volume_dataset_json(root, "toy", (50, 4), description="d")
            doc = json.load(open(path))
        self.assertEqual(doc["voxel_size"], [50.0, 4.0, 4.0])
        self.assertEqual(doc["label_type"], "instance")
        first = {"image": "./imagesTr/a.tif", "label": "./labelsTr/a.tif", "mito": "./mitoTr/a.tif"}
        self.assertEqual(doc["training"][0], first)
        self.assertNotIn("mito", doc["training"][1])
        self.assertEqual(doc["numTraining"], 2)

    def test_bad_voxel_size(self):
        with tempfile.TemporaryDirectory() as root:
            with self.assertRaisesRegex(ValueError, "write_volume_dataset_json: voxel_size"):
                write_volume_dataset_json(root, "toy", (0, 1, 1))


class TestLabelSlices2d(unittest.TestCase):
    def test_hand_example(self):
        # slice 0: two cells split by a membrane column, slice 1: one cell and a diagonal-only neighbour
        mask = np.array(
            [
                [[1, 1, 0, 1], [1, 1, 0, 1], [0, 0, 0, 1]],
                [[1, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0]],
            ]
        )
        expected = np.array(
            [
                [[1, 1, 0, 2], [1, 1, 0, 2], [0, 0, 0, 2]],
                [[3, 0, 0, 0], [0, 4, 4, 0], [0, 4, 4, 0]],
            ]
        )
        out = label_slices_2d(mask)
        self.assertEqual(out.dtype, np.uint32)
        np.testing.assert_array_equal(out, expected)
        # 8-neighbourhood joins the diagonal pixel to the block in slice 1
        np.testing.assert_array_equal(label_slices_2d(mask, connectivity=2)[1], np.where(mask[1] > 0, 3, 0))
        np.testing.assert_array_equal(label_slices_2d(mask[0]), expected[0])

    def test_ids_unique_across_slices(self):
        mask = np.ones((3, 4, 4))  # the same cell in every slice is still 3 instances: no 3D linking
        np.testing.assert_array_equal(np.unique(label_slices_2d(mask)), [1, 2, 3])

    @parameterized.expand([
        ("1d", np.ones(4), {}, "mask must be"),
        ("connectivity", np.ones((2, 2)), {"connectivity": 3}, "connectivity"),
    ])
    def test_errors(self, _, mask, kwargs, fragment):
        with self.assertRaisesRegex(ValueError, f"label_slices_2d: {fragment}"):
            label_slices_2d(mask, **kwargs)

