"""Conversion part of scripts/download_ac3_ac4.py on small fake files with the published structure.

This machine cannot reach the public URLs, so the SNEMI3D HDF5 files (torch_em) and ``snemi.zip`` (PyTorch
Connectomics) are built here.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import unittest
import zipfile

import h5py
import numpy as np
import tifffile
from bundle_testing import load_script
from parameterized import parameterized

from emdiff_components.data import read_image, sha256sum, volume_datalist

ac = load_script("download_ac3_ac4")

TRAIN_SHAPE, TEST_SHAPE = (5, 8, 10), (7, 8, 10)


def _volumes(seed, shape):
    rng = np.random.default_rng(seed)
    # SNEMI3D ids are large integers stored as uint64 in some copies
    return rng.integers(0, 256, shape, dtype=np.uint8), rng.integers(0, 40, shape).astype(np.uint64) * 1000


def _h5(path, seed, shape, labels=True):
    image, label = _volumes(seed, shape)
    with h5py.File(path, "w") as handle:
        handle.create_dataset(ac.RAW_KEY, data=image)
        if labels:
            handle.create_dataset(ac.LABEL_KEY, data=label)
    return image, label


def _tif_bytes(array):
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, photometric="minisblack")
    return buffer.getvalue()


def _snemi_zip(path, tmp, with_test_labels=True):
    train, test = _volumes(0, TRAIN_SHAPE), _volumes(1, TEST_SHAPE)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("__MACOSX/snemi/._train-input.tif", b"junk")
        archive.writestr("snemi/image/train-input.tif", _tif_bytes(train[0]))
        archive.writestr("snemi/seg/train-labels.tif", _tif_bytes(train[1].astype(np.uint32)))
        archive.writestr("snemi/image/test-input.tif", _tif_bytes(test[0]))
        if with_test_labels:
            h5_path = os.path.join(tmp, "test-labels.h5")
            with h5py.File(h5_path, "w") as handle:
                handle.create_dataset("main", data=test[1])
            archive.write(h5_path, "snemi/seg/test-labels.h5")
    return train, test


def _check_layout(case: unittest.TestCase, root, train, test, test_slices, test_labelled=True):
    tr = volume_datalist(root, "Tr")
    ts = volume_datalist(root, "Ts", require_labels=test_labelled)
    case.assertEqual([e["name"] for e in tr], ["ac4"])
    case.assertEqual([e["name"] for e in ts], ["ac3"])
    case.assertEqual(tr[0]["voxel_size"], (29.0, 6.0, 6.0))
    case.assertEqual(ts[0]["voxel_size"], (29.0, 6.0, 6.0))
    np.testing.assert_array_equal(read_image(tr[0]["image"]), train[0])
    label = read_image(tr[0]["label"])
    case.assertEqual(label.dtype, np.uint32)
    np.testing.assert_array_equal(label, train[1])
    np.testing.assert_array_equal(read_image(ts[0]["image"]), test[0][:test_slices])
    if test_labelled:
        np.testing.assert_array_equal(read_image(ts[0]["label"]), test[1][:test_slices])
    else:
        case.assertNotIn("label", ts[0])
    case.assertFalse(os.path.exists(os.path.join(root, "mitoTr")))
    case.assertEqual(json.load(open(os.path.join(root, "dataset.json")))["voxel_size"], [29.0, 6.0, 6.0])


class TestConvertH5(unittest.TestCase):
    @parameterized.expand([("first_4", 4, True), ("all_when_short", 100, True), ("unlabelled_test", 3, False)])
    def test_layout(self, _, test_slices, labelled):
        with tempfile.TemporaryDirectory() as tmp:
            train = _h5(os.path.join(tmp, "train.h5"), 0, TRAIN_SHAPE)
            test = _h5(os.path.join(tmp, "test.h5"), 1, TEST_SHAPE, labels=labelled)
            root = ac.convert_h5(os.path.join(tmp, "train.h5"), os.path.join(tmp, "test.h5"), os.path.join(tmp, "o"),
                                 test_slices=test_slices)
            _check_layout(self, root, train, test, test_slices, labelled)

    def test_main_with_local_files_and_checksums(self):
        with tempfile.TemporaryDirectory() as tmp:
            paths = [os.path.join(tmp, f) for f in ("train.h5", "test.h5")]
            train, test = _h5(paths[0], 0, TRAIN_SHAPE), _h5(paths[1], 1, TEST_SHAPE)
            root = ac.main(["--out", os.path.join(tmp, "o"), "--train", paths[0], "--test", paths[1],
                            "--sha256-train", sha256sum(paths[0]), "--sha256-test", "none", "--test-slices", "2"])
            _check_layout(self, root, train, test, 2)

    @parameterized.expand([
        ("published_digest_mismatch", [], "SHA-256"),
        ("given_digest_mismatch", ["--sha256-train", "0" * 64, "--sha256-test", "none"], "SHA-256"),
    ])
    def test_checksum_errors(self, _, extra, fragment):
        with tempfile.TemporaryDirectory() as tmp:
            paths = [os.path.join(tmp, f) for f in ("train.h5", "test.h5")]
            _h5(paths[0], 0, TRAIN_SHAPE), _h5(paths[1], 1, TEST_SHAPE)
            with self.assertRaisesRegex(ValueError, fragment):
                ac.main(["--out", os.path.join(tmp, "o"), "--train", paths[0], "--test", paths[1], *extra])
            self.assertFalse(os.path.exists(os.path.join(tmp, "o", "dataset.json")))

    @parameterized.expand([
        ("no_train_labels", {"train_labels": False}, 100, "volumes/labels/neuron_ids"),
        ("bad_test_slices", {}, 0, "test_slices"),
    ])
    def test_errors(self, _, options, test_slices, fragment):
        with tempfile.TemporaryDirectory() as tmp:
            _h5(os.path.join(tmp, "train.h5"), 0, TRAIN_SHAPE, labels=options.get("train_labels", True))
            _h5(os.path.join(tmp, "test.h5"), 1, TEST_SHAPE)
            with self.assertRaisesRegex(ValueError, fragment):
                ac.convert_h5(os.path.join(tmp, "train.h5"), os.path.join(tmp, "test.h5"), tmp, test_slices)

    def test_published_sources(self):
        for source in ac.SOURCES.values():
            for url, digest in source.values():
                self.assertTrue(url.startswith("http"))
                self.assertTrue(digest is None or re.fullmatch(r"[0-9a-f]{64}", digest))


class TestConvertSnemiZip(unittest.TestCase):
    @parameterized.expand([("labelled", True), ("unlabelled_test", False)])
    def test_layout(self, _, with_test_labels):
        with tempfile.TemporaryDirectory() as tmp:
            archive = os.path.join(tmp, "snemi.zip")
            train, test = _snemi_zip(archive, tmp, with_test_labels)
            root = ac.main(["--out", os.path.join(tmp, "o"), "--source", "pytc", "--archive", archive,
                            "--test-slices", "5"])
            _check_layout(self, root, train, test, 5, with_test_labels)
            self.assertEqual(sorted(os.listdir(root)), ["dataset.json", "imagesTr", "imagesTs", "labelsTr"] + (
                ["labelsTs"] if with_test_labels else []
            ))

    def test_not_snemi_archive(self):
        with tempfile.TemporaryDirectory() as tmp:
            archive = os.path.join(tmp, "other.zip")
            with zipfile.ZipFile(archive, "w") as handle:
                handle.writestr("readme.txt", "nothing here")
            with self.assertRaisesRegex(ValueError, "train-input.tif"):
                ac.convert_snemi_zip(archive, os.path.join(tmp, "o"))
