"""Conversion part of scripts/download_covid_ct.py on small fake archives (no network).

The archives are built here with the published member names and formats: MedSeg's three NIfTI volumes (figshare
record zip or a folder), COVID-19-CT-Seg's two zips of 3D volumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import unittest
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
from bundle_testing import load_script
from parameterized import parameterized

from emdiff_components.data import read_image, read_voxel_size, segmentation_datalist

covid = load_script("download_covid_ct")

ZOOMS = (0.7, 0.8, 5.0)  # mm, NIfTI (X, Y, Z) order
# (classes, include_effusion, expected written value for MedSeg classes 0, 1, 2, 3)
LABEL_CASES = [
    ("binary", False, [0, 1, 1, 0]),
    ("binary", True, [0, 1, 1, 1]),
    ("multiclass", False, [0, 1, 2, 3]),
]
CORONA = ["coronacases_001", "coronacases_002", "coronacases_010"]
RADIO = ["radiopaedia_4_85506_1", "radiopaedia_10_85902_1"]
COVID_CASES = [RADIO[1], CORONA[2], CORONA[1], RADIO[0], CORONA[0]]  # zip order
COVID_ORDER = CORONA + RADIO  # natural order: 2 before 10, 4 before 10


def _nifti(path, data, zooms=ZOOMS, slope=None):
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = (-90.0, -110.0, 20.0)
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm")
    if slope is not None:
        image.header.set_slope_inter(*slope)
    nib.save(image, path)
    return path


def _medseg_files(folder, mask_shape=(16, 12, 5), bad_value=None):
    """tr_im (int16 with HU scaling), tr_mask (float64 0..3), val_im; returns their paths."""
    os.makedirs(folder, exist_ok=True)
    raw = (np.arange(16 * 12 * 5).reshape(16, 12, 5) % 700 - 350).astype(np.int16)
    mask = np.zeros((16, 12, 5))
    mask[1, 2, 0], mask[3, 4, 1], mask[5, 6, 2], mask[7, 8, 4] = 1, 2, 3, 2
    if bad_value is not None:
        mask[0, 0, 3] = bad_value
    mask = mask[: mask_shape[0], : mask_shape[1], : mask_shape[2]]
    return {
        "tr_im.nii.gz": _nifti(os.path.join(folder, "tr_im.nii.gz"), raw, slope=(2.0, -1024.0)),
        "tr_mask.nii.gz": _nifti(os.path.join(folder, "tr_mask.nii.gz"), mask),
        "val_im.nii.gz": _nifti(os.path.join(folder, "val_im.nii.gz"), raw[:, :, :2].astype(np.float32)),
    }


def _medseg_zip(tmp, skip=(), **kwargs):
    files = _medseg_files(os.path.join(tmp, "src"), **kwargs)
    archive = os.path.join(tmp, "medseg.zip")
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("Test-Images-Clinical-Details.csv", "a,b\n")
        handle.writestr("__MACOSX/._tr_im.nii.gz", b"junk")
        for name, path in files.items():
            if name not in skip:
                handle.write(path, name)
    return archive, files


def _md5(path):
    return hashlib.md5(Path(path).read_bytes(), usedforsecurity=False).hexdigest()


def _covid_zips(tmp, names=COVID_CASES, drop_mask=None, bad_shape=None, mask_values=(0, 1)):
    """Images zip (int16 volumes, zooms per case) and mask zip (float64 0/1 under Infection_Mask/)."""
    rng = np.random.default_rng(0)
    images, masks = os.path.join(tmp, "COVID-19-CT-Seg_20cases.zip"), os.path.join(tmp, "Infection_Mask.zip")
    expected = {}
    with zipfile.ZipFile(images, "w") as image_zip, zipfile.ZipFile(masks, "w") as mask_zip:
        for i, name in enumerate(names):
            shape, zooms = (16, 16, 3 + i), (0.6 + 0.1 * i, 0.6 + 0.1 * i, 1.0 + i)
            volume = rng.integers(-1024, 1500, shape).astype(np.int16)
            mask = rng.choice(np.array(mask_values, dtype=np.float64), size=shape)
            path = _nifti(os.path.join(tmp, f"{name}.nii.gz"), volume, zooms)
            image_zip.write(path, f"{name}.nii.gz")
            if name != drop_mask:
                mask_shape = (16, 15, 3 + i) if name == bad_shape else shape
                mpath = _nifti(os.path.join(tmp, f"m_{name}.nii.gz"), mask[:, : mask_shape[1]], zooms)
                mask_zip.write(mpath, f"Infection_Mask/{name}.nii.gz")
            expected[name] = (path, mask.T, tuple(1e6 * z for z in reversed(zooms)))
    return images, masks, expected


class TestConvertMedseg(unittest.TestCase):
    def test_main_binary_default(self):
        with tempfile.TemporaryDirectory() as tmp:
            archive, files = _medseg_zip(tmp)
            argv = ["--dataset", "medseg", "--out", os.path.join(tmp, "out"), "--archive", archive, "--md5", "none"]
            root = covid.main(argv)
            source = read_image(files["tr_im.nii.gz"])  # (Z, Y, X) in HU: raw * 2 - 1024
            self.assertLess(source.min(), -1024)
            train = segmentation_datalist(root, "Tr", num_classes=2)
            self.assertEqual([e["name"] for e in train], [f"medseg_tr_{z:03d}" for z in range(5)])
            for z, entry in enumerate(train):
                np.testing.assert_array_equal(read_image(entry["image"]), source[z])  # HU kept bit-exactly
                np.testing.assert_allclose(read_voxel_size(entry["image"]), (0.8e6, 0.7e6))
                np.testing.assert_allclose(read_voxel_size(entry["label"]), (0.8e6, 0.7e6))
            labels = np.stack([read_image(e["label"]) for e in train])
            self.assertEqual(labels.dtype, np.uint8)
            # hand check: mask (x, y, z) = (1, 2, 0) GGO, (3, 4, 1) consolidation, (5, 6, 2) effusion, (7, 8, 4) cons.
            self.assertEqual(labels[0, 2, 1], 1)
            self.assertEqual(labels[1, 4, 3], 1)
            self.assertEqual(labels[2, 6, 5], 0)
            self.assertEqual(labels[4, 8, 7], 1)
            self.assertEqual(labels.sum(), 3)
            test = segmentation_datalist(root, "Ts", num_classes=2, require_labels=False)
            self.assertEqual(len(test), 2)
            self.assertNotIn("label", test[0])
            np.testing.assert_array_equal(read_image(test[1]["image"]), read_image(files["val_im.nii.gz"])[1])
            self.assertFalse(os.path.exists(os.path.join(root, "labelsTs")))
            doc = json.load(open(os.path.join(root, "dataset.json")))
            self.assertEqual(doc["labels"], {"0": "background", "1": "infection"})
            self.assertEqual((doc["numTraining"], doc["numTest"]), (5, 2))
            self.assertEqual(sorted(os.listdir(root)), ["dataset.json", "imagesTr", "imagesTs", "labelsTr"])
            self.assertTrue(os.path.exists(archive))

    @parameterized.expand(LABEL_CASES)
    def test_label_mapping(self, classes, include_effusion, expected):
        with tempfile.TemporaryDirectory() as tmp:
            files = _medseg_files(os.path.join(tmp, "folder"))  # a folder works as well as the zip
            folder = os.path.dirname(files["tr_im.nii.gz"])
            root = covid.convert_medseg(folder, os.path.join(tmp, "out"), classes, include_effusion)
            paths = [os.path.join(root, "labelsTr", f"medseg_tr_{z:03d}.nii.gz") for z in range(5)]
            labels = np.stack([read_image(p) for p in paths])
            source = read_image(files["tr_mask.nii.gz"]).astype(int)
            np.testing.assert_array_equal(labels, np.array(expected)[source])
            names = json.load(open(os.path.join(root, "dataset.json")))["labels"]
            self.assertEqual(len(names), 4 if classes == "multiclass" else 2)

    def test_md5(self):
        with tempfile.TemporaryDirectory() as tmp:
            archive, files = _medseg_zip(tmp)
            good = {name: _md5(path) for name, path in files.items()}
            covid.convert_medseg(archive, os.path.join(tmp, "ok"), md5=good)
            with self.assertRaisesRegex(ValueError, "MD5 of 'tr_mask.nii.gz'"):
                covid.convert_medseg(archive, os.path.join(tmp, "bad"), md5={**good, "tr_mask.nii.gz": "0" * 32})
            # the published figshare MD5s are checked by default and do not match these fakes
            with self.assertRaisesRegex(ValueError, "published one is 54f82e3a"):
                covid.main(["--dataset", "medseg", "--out", os.path.join(tmp, "d"), "--archive", archive])
            self.assertFalse(os.path.exists(os.path.join(tmp, "bad", "dataset.json")))

    @parameterized.expand([
        ("missing_member", {"skip": ("tr_mask.nii.gz",)}, "medseg.zip' has no 'tr_mask.nii.gz'"),
        ("shape", {"mask_shape": (16, 12, 4)}, "has shape \\(16, 12, 5\\) but 'tr_mask.nii.gz' has \\(16, 12, 4\\)"),
        ("values", {"bad_value": 7}, "'tr_mask.nii.gz' of .* holds values \\[7.0\\]"),
        ("fraction", {"bad_value": 1.5}, "holds values \\[1.5\\]"),
    ])
    def test_errors(self, _, kwargs, fragment):
        with tempfile.TemporaryDirectory() as tmp:
            archive, _ = _medseg_zip(tmp, **kwargs)
            out = os.path.join(tmp, "out")
            with self.assertRaisesRegex(ValueError, fragment):
                covid.convert_medseg(archive, out)
            self.assertFalse(os.path.exists(os.path.join(out, "imagesTr")))

    def test_bad_arguments(self):
        with tempfile.TemporaryDirectory() as tmp:
            not_zip = os.path.join(tmp, "x.zip")
            Path(not_zip).write_text("hello")
            with self.assertRaisesRegex(ValueError, "x.zip' is not a readable zip archive"):
                covid.convert_medseg(not_zip, os.path.join(tmp, "o"))
            with self.assertRaisesRegex(ValueError, "include_effusion applies to classes='binary'"):
                covid.convert_medseg(not_zip, tmp, classes="multiclass", include_effusion=True)
            with self.assertRaisesRegex(ValueError, "classes must be"):
                covid.convert_medseg(not_zip, tmp, classes="three")
            with self.assertRaises(SystemExit):
                covid.main(["--dataset", "medseg", "--out", tmp, "--mask-archive", not_zip])


class TestConvertCovid19CtSeg(unittest.TestCase):
    @parameterized.expand([("default", None, 4), ("two", 2, 2), ("none", 0, 0)])
    def test_main(self, _, num_test, expected_test):
        with tempfile.TemporaryDirectory() as tmp:
            images, masks, expected = _covid_zips(tmp)
            argv = ["--dataset", "covid19_ct_seg", "--out", os.path.join(tmp, "out"), "--archive", images,
                    "--mask-archive", masks, "--sha256", "none", "--mask-sha256", "none"]
            root = covid.main(argv + ([] if num_test is None else ["--num-test", str(num_test)]))
            tests = COVID_ORDER[len(COVID_ORDER) - expected_test :]
            for name in COVID_ORDER:
                split = "Ts" if name in tests else "Tr"
                image_path = os.path.join(root, f"images{split}", f"{name}.nii.gz")
                label_path = os.path.join(root, f"labels{split}", f"{name}.nii.gz")
                source, mask, voxel_size = expected[name]
                self.assertEqual(Path(image_path).read_bytes(), Path(source).read_bytes())
                label = read_image(label_path)
                self.assertEqual(label.ndim, 3)
                self.assertEqual(label.dtype, np.uint8)
                np.testing.assert_array_equal(label, mask)
                np.testing.assert_allclose(read_voxel_size(image_path), voxel_size)
                np.testing.assert_allclose(read_voxel_size(label_path), voxel_size)
                np.testing.assert_allclose(nib.load(label_path).affine, nib.load(source).affine)
            doc = json.load(open(os.path.join(root, "dataset.json")))
            self.assertEqual((doc["numTraining"], doc["numTest"]), (5 - expected_test, expected_test))
            depths = [3 + COVID_CASES.index(n) for n in COVID_ORDER if n not in tests]  # as built by _covid_zips
            self.assertEqual(len(segmentation_datalist(root, "Tr")), sum(depths))
            self.assertFalse([f for f in os.listdir(root) if f.startswith(".")])

    @parameterized.expand([
        ("missing_mask", {"drop_mask": "coronacases_002"}, {},
         "Infection_Mask.zip' has no mask 'coronacases_002.nii.gz'"),
        ("shape", {"bad_shape": "coronacases_010"}, {},
         "image 'coronacases_010.nii.gz' has shape \\(16, 16, 4\\) but mask 'Infection_Mask/coronacases_010.nii.gz'"),
        ("values", {"mask_values": (0, 2)}, {}, "Infection_Mask/.*holds values \\[2.0\\]; expected \\[0, 1\\]"),
        ("num_test", {}, {"num_test": 6}, "num_test=6 but the archives hold 5 cases"),
        ("negative", {}, {"num_test": -1}, "num_test must be an int >= 0"),
    ])
    def test_errors(self, _, zip_kwargs, kwargs, fragment):
        with tempfile.TemporaryDirectory() as tmp:
            images, masks, _ = _covid_zips(tmp, **zip_kwargs)
            out = os.path.join(tmp, "out")
            with self.assertRaisesRegex(ValueError, fragment):
                covid.convert_covid19_ct_seg(images, masks, out, **kwargs)
            self.assertFalse(os.path.exists(os.path.join(out, "dataset.json")))

    def test_wrong_archives(self):
        with tempfile.TemporaryDirectory() as tmp:
            images, masks, _ = _covid_zips(tmp, names=COVID_CASES[:2])
            other = os.path.join(tmp, "other.zip")
            with zipfile.ZipFile(other, "w") as handle:
                handle.writestr("readme.txt", "hello")
            with self.assertRaisesRegex(ValueError, "other.zip' holds no NIfTI files; is it Infection_Mask.zip"):
                covid.convert_covid19_ct_seg(images, other, os.path.join(tmp, "o"))
            argv = ["--dataset", "covid19_ct_seg", "--out", os.path.join(tmp, "o2"), "--archive", images]
            with self.assertRaisesRegex(ValueError, "SHA-256"):  # default: the SHA-256 published by torch_em
                covid.main(argv + ["--mask-archive", masks, "--mask-sha256", "none"])
            with self.assertRaises(SystemExit):
                covid.main(["--dataset", "covid19_ct_seg", "--out", tmp, "--classes", "multiclass"])

    def test_patient_split_warning(self):
        with tempfile.TemporaryDirectory() as tmp:
            names = ["radiopaedia_29_86490_1", "radiopaedia_29_86491_1"]
            images, masks, _ = _covid_zips(tmp, names=names)
            with self.assertLogs("download_covid_ct", level="WARNING") as logs:
                covid.convert_covid19_ct_seg(images, masks, os.path.join(tmp, "out"), num_test=1)
            self.assertIn("radiopaedia_29", "\n".join(logs.output))

    def test_published_constants(self):
        for digest in (covid.COVID19_CT_SEG_SHA256, covid.COVID19_CT_SEG_MASK_SHA256):
            self.assertRegex(digest, r"^[0-9a-f]{64}$")
        names = {"tr_im.nii.gz", "tr_mask.nii.gz", "val_im.nii.gz"}
        self.assertEqual(set(covid.MEDSEG_MD5), names)
        self.assertEqual(set(covid.MEDSEG_FILE_URLS), names)
        for digest in covid.MEDSEG_MD5.values():
            self.assertRegex(digest, r"^[0-9a-f]{32}$")
        self.assertIn("3757476", covid.COVID19_CT_SEG_URL)
        self.assertIn("13521488", covid.MEDSEG_URL)
