"""Conversion part of scripts/download_lucchi_pp.py and scripts/download_betaseg.py on small fake archives.

This machine cannot reach the public URLs, so the archives are built here with the published folder structure.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import tempfile
import unittest
import zipfile
from pathlib import Path

import cv2
import numpy as np
import tifffile
from parameterized import parameterized

from emdiff_components.data import read_image, segmentation_datalist

_SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, _SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lucchi = _load("download_lucchi_pp")
betaseg = _load("download_betaseg")


def _png_bytes(array):
    return cv2.imencode(".png", array)[1].tobytes()


def _tif_bytes(array):
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, photometric="minisblack")
    return buffer.getvalue()


def _lucchi_zip(path, depth=11):
    """Lucchi++ structure: images mask%04d.png, masks %d.png (RGBA white = mitochondria); returns the volumes."""
    rng = np.random.default_rng(0)
    volumes = {}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("__MACOSX/Lucchi++/Train_In/._mask0000.png", b"junk")
        for split, prefix in (("Tr", "Train"), ("Ts", "Test")):
            image = rng.integers(0, 256, (depth, 12, 16), dtype=np.uint8)
            label = (rng.random((depth, 12, 16)) < 0.2).astype(np.uint8)
            for z in range(depth):
                archive.writestr(f"Lucchi++/{prefix}_In/mask{z:04d}.png", _png_bytes(image[z]))
                rgba = np.repeat((label[z] * 255)[..., None], 4, axis=2)
                rgba[..., 3] = 255
                archive.writestr(f"Lucchi++/{prefix}_Out/{z}.png", _png_bytes(rgba))
            volumes[split] = (image, label)
    return volumes


def _betaseg_zip(path, cells=("high_c1", "high_c2", "low_c1"), bad_shape=False):
    shape = (3, 8, 10)
    expected = {}
    with zipfile.ZipFile(path, "w") as archive:
        for i, cell in enumerate(cells):
            source = np.full(shape, 10 * i, np.uint8)
            nucleus = np.zeros(shape, np.uint8)
            nucleus[:, :4] = 255
            mito = np.zeros(shape, np.uint8)
            mito[:, 2:6, :5] = 1
            golgi = np.zeros(shape, np.uint8)
            golgi[:, 6:, 6:] = 1
            granules = np.zeros(shape, np.uint16)
            granules[:, 3, 3] = 7  # instance ids, inside the mitochondrion: granules win
            granules[:, 7, 9] = 300
            folder = f"download/{cell}/{cell}"
            archive.writestr(f"{folder}_source.tif", _tif_bytes(source))
            archive.writestr(f"{folder}_nucleus_mask.tif", _tif_bytes(nucleus))
            archive.writestr(f"{folder}_mitochondria_mask.tif", _tif_bytes(mito[:, :-1] if bad_shape else mito))
            archive.writestr(f"{folder}_golgi_corrected.tif", _tif_bytes(golgi))
            archive.writestr(f"{folder}_granules.tif", _tif_bytes(granules))
            archive.writestr(f"{folder}_microtubules.tif", _tif_bytes(np.zeros(shape, np.uint8)))
            label = np.zeros(shape, np.uint8)
            label[nucleus > 0] = 3
            label[mito > 0] = 1
            label[golgi > 0] = 2
            label[granules > 0] = 4
            expected[cell] = (source, label)
    return expected


class TestDownloadLucchiPP(unittest.TestCase):
    def test_convert_archive(self):
        with tempfile.TemporaryDirectory() as tmp:
            archive = os.path.join(tmp, "lucchi_pp.zip")
            volumes = _lucchi_zip(archive)
            out = os.path.join(tmp, "out")
            root = lucchi.main(["--out", out, "--archive", archive, "--sha256", "none"])
            for split, name in (("Tr", "lucchi_pp_train"), ("Ts", "lucchi_pp_test")):
                image, label = volumes[split]
                # natural order: mask 10.png follows 9.png, not 1.png
                np.testing.assert_array_equal(read_image(os.path.join(root, f"images{split}", f"{name}.tif")), image)
                np.testing.assert_array_equal(read_image(os.path.join(root, f"labels{split}", f"{name}.tif")), label)
                self.assertEqual(len(segmentation_datalist(root, split)), 11)
            doc = json.load(open(os.path.join(root, "dataset.json")))
            self.assertEqual(doc["labels"], {"0": "background", "1": "mitochondria"})
            self.assertEqual(sorted(os.listdir(root)), ["dataset.json", "imagesTr", "imagesTs", "labelsTr", "labelsTs"])
            self.assertTrue(os.path.exists(archive))

    def test_swap_splits(self):
        with tempfile.TemporaryDirectory() as tmp:
            archive = os.path.join(tmp, "l.zip")
            volumes = _lucchi_zip(archive, depth=2)
            root = lucchi.convert_archive(archive, os.path.join(tmp, "out"), swap_splits=True)
            out = read_image(os.path.join(root, "imagesTr", "lucchi_pp_train.tif"))
            np.testing.assert_array_equal(out, volumes["Ts"][0])

    def test_errors(self):
        with tempfile.TemporaryDirectory() as tmp:
            archive = os.path.join(tmp, "l.zip")
            _lucchi_zip(archive, depth=2)
            with self.assertRaisesRegex(ValueError, "SHA-256"):
                lucchi.main(["--out", os.path.join(tmp, "o"), "--archive", archive, "--sha256", "0" * 64])
            other = os.path.join(tmp, "other.zip")
            with zipfile.ZipFile(other, "w") as handle:
                handle.writestr("readme.txt", "hello")
            with self.assertRaisesRegex(ValueError, "is it the Lucchi\\+\\+ archive"):
                lucchi.convert_archive(other, os.path.join(tmp, "o2"))
            uneven = os.path.join(tmp, "uneven.zip")
            with zipfile.ZipFile(archive) as src, zipfile.ZipFile(uneven, "w") as dst:
                for item in src.namelist():
                    if not item.endswith("Train_Out/1.png"):
                        dst.writestr(item, src.read(item))
            with self.assertRaisesRegex(ValueError, "Train_In has 2 slices but Train_Out has 1"):
                lucchi.convert_archive(uneven, os.path.join(tmp, "o3"))

    def test_published_checksum_constant(self):
        self.assertTrue(lucchi.URL.endswith("lucchi_pp.zip"))
        self.assertEqual(len(lucchi.SHA256), 64)
        int(lucchi.SHA256, 16)


class TestDownloadBetaSeg(unittest.TestCase):
    def test_convert_archive_default_split(self):
        with tempfile.TemporaryDirectory() as tmp:
            archive = os.path.join(tmp, "betaseg.zip")
            expected = _betaseg_zip(archive)
            root = betaseg.main(["--out", os.path.join(tmp, "out"), "--archive", archive, "--sha256", "none"])
            self.assertEqual(sorted(os.listdir(os.path.join(root, "imagesTr"))), ["high_c1.tif", "high_c2.tif"])
            self.assertEqual(os.listdir(os.path.join(root, "imagesTs")), ["low_c1.tif"])
            for cell, (source, label) in expected.items():
                split = "Ts" if cell == "low_c1" else "Tr"
                np.testing.assert_array_equal(read_image(os.path.join(root, f"images{split}", f"{cell}.tif")), source)
                np.testing.assert_array_equal(read_image(os.path.join(root, f"labels{split}", f"{cell}.tif")), label)
            self.assertEqual(len(segmentation_datalist(root, "Tr", num_classes=5)), 6)
            labels = json.load(open(os.path.join(root, "dataset.json")))["labels"]
            names = ["background", "mitochondria", "golgi", "nucleus", "insulin_granules"]
            self.assertEqual(labels, {str(i): n for i, n in enumerate(names)})

    def test_label_values_hand_checked(self):
        with tempfile.TemporaryDirectory() as tmp:
            archive = os.path.join(tmp, "b.zip")
            _betaseg_zip(archive, cells=("c1",))
            root = betaseg.convert_archive(archive, os.path.join(tmp, "out"), test_cells=[])
            label = read_image(os.path.join(root, "labelsTr", "c1.tif"))[0]
        self.assertEqual(label[0, 0], 3)
        self.assertEqual(label[2, 2], 1)
        self.assertEqual(label[3, 3], 4)
        self.assertEqual(label[7, 9], 4)
        self.assertEqual(label[7, 7], 2)
        self.assertEqual(label[5, 8], 0)

    @parameterized.expand([
        ("unknown_cell", {"cells": ["high_c9"]}, {}, "unknown cells \\['high_c9'\\]"),
        ("bad_shape", {}, {"bad_shape": True}, "mitochondria_mask.tif' has shape \\(3, 7, 10\\)"),
    ])
    def test_errors(self, _, kwargs, zip_kwargs, fragment):
        with tempfile.TemporaryDirectory() as tmp:
            archive = os.path.join(tmp, "b.zip")
            _betaseg_zip(archive, **zip_kwargs)
            with self.assertRaisesRegex(ValueError, fragment):
                betaseg.convert_archive(archive, os.path.join(tmp, "out"), **kwargs)

    def test_not_betaseg(self):
        with tempfile.TemporaryDirectory() as tmp:
            other = os.path.join(tmp, "other.zip")
            with zipfile.ZipFile(other, "w") as handle:
                handle.writestr("x/y.tif", b"")
            with self.assertRaisesRegex(ValueError, "is it the BetaSeg archive"):
                betaseg.convert_archive(other, os.path.join(tmp, "out"))
