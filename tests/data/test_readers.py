from __future__ import annotations

import os
import tempfile
import unittest

import cv2
import h5py
import nibabel as nib
import numpy as np
import pytest
import tifffile
from parameterized import parameterized

from emdiff_components.data import ImageReadError, read_image, read_voxel_size, supported_extensions, write_image

_RNG = np.random.default_rng(0)

# (case name, file name, array): write_image then read_image must give the array back exactly, dtype included
ROUND_TRIP_CASES = [
    ("tif_2d_uint8", "a.tif", _RNG.integers(0, 256, (17, 23), dtype=np.uint8)),
    ("tiff_3d_uint16", "a.tiff", _RNG.integers(0, 65536, (3, 17, 23), dtype=np.uint16)),
    ("tif_3d_float32", "a.tif", _RNG.normal(size=(4, 9, 11)).astype(np.float32)),
    ("png_uint8", "a.png", _RNG.integers(0, 256, (17, 23), dtype=np.uint8)),
    ("png_uint16", "a.png", _RNG.integers(0, 65536, (17, 23), dtype=np.uint16)),
    ("bmp_uint8", "a.bmp", _RNG.integers(0, 256, (16, 24), dtype=np.uint8)),
    ("npy_3d_int64", "a.npy", _RNG.integers(-5, 5, (2, 5, 7), dtype=np.int64)),
    ("nii_3d_int16", "a.nii", _RNG.integers(-100, 100, (3, 5, 7), dtype=np.int16)),
    ("niigz_3d_float32", "a.nii.gz", _RNG.normal(size=(3, 5, 7)).astype(np.float32)),
    ("h5_3d_uint8", "a.h5", _RNG.integers(0, 256, (3, 5, 7), dtype=np.uint8)),
    ("hdf5_key_2d_float64", "a.hdf5:/grp/img", _RNG.normal(size=(5, 7))),
]

# (case name, file name, array, expected message fragment)
BAD_ARRAY_CASES = [
    ("nan", "nan.npy", np.array([[0.0, np.nan], [1.0, 2.0]]), "NaN"),
    ("inf", "inf.npy", np.array([[0.0, np.inf], [1.0, 2.0]], dtype=np.float32), "inf"),
    ("four_dims", "big.npy", np.zeros((2, 2, 3, 3)), "after squeezing"),
    ("one_dim", "line.npy", np.zeros(5), "after squeezing"),
]

UNWRITABLE_CASES = [("png_stack", "a.png", np.zeros((2, 4, 4), np.uint8)), ("png_float", "a.png", np.zeros((4, 4)))]

CORRUPT_CASES = [("png", "bad.png"), ("tif", "bad.tif"), ("nii", "bad.nii"), ("h5", "bad.h5"), ("npy", "bad.npy")]


class TestReadImage(unittest.TestCase):
    @parameterized.expand(ROUND_TRIP_CASES)
    def test_round_trip(self, _, filename, array):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, filename)
            write_image(path, array)
            out = read_image(path)
            self.assertEqual(out.dtype, array.dtype)
            np.testing.assert_array_equal(out, array)
            # the atomic write leaves no temp files behind
            self.assertEqual([f for f in os.listdir(tmp) if f.startswith(".")], [])

    def test_jpeg_round_trip_is_close(self):
        yy, xx = np.mgrid[0:32, 0:48]
        array = (100 + 50 * np.sin(xx / 6.0) * np.cos(yy / 5.0)).astype(np.uint8)
        with tempfile.TemporaryDirectory() as tmp:
            for ext in (".jpg", ".jpeg"):
                write_image(os.path.join(tmp, "a" + ext), array)
                out = read_image(os.path.join(tmp, "a" + ext))
                self.assertEqual(out.dtype, np.uint8)
                self.assertEqual(out.shape, array.shape)
                self.assertLess(np.abs(out.astype(float) - array).mean(), 3.0)

    def test_nifti_axis_order(self):
        xyz = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)  # nibabel order (X, Y, Z)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "v.nii.gz")
            nib.save(nib.Nifti1Image(xyz, np.eye(4)), path)
            out = read_image(path)
        self.assertEqual(out.shape, (4, 3, 2))
        self.assertEqual(out[3, 2, 1], xyz[1, 2, 3])
        np.testing.assert_array_equal(out, xyz.transpose(2, 1, 0))

    def test_hdf5_dataset_path(self):
        first, second = np.ones((4, 5), np.uint8), np.arange(60, dtype=np.int32).reshape(3, 4, 5)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "f.h5")
            with h5py.File(path, "w") as handle:
                handle["a"] = first
                handle["g/b"] = second
            np.testing.assert_array_equal(read_image(path), first)  # first dataset by default
            np.testing.assert_array_equal(read_image(path + ":/g/b"), second)
            np.testing.assert_array_equal(read_image(path + ":g/b"), second)
            write_image(path + ":/g/c", second * 2)  # adding a dataset keeps the others
            np.testing.assert_array_equal(read_image(path + ":/g/c"), second * 2)
            np.testing.assert_array_equal(read_image(path + ":/a"), first)
            with self.assertRaisesRegex(ImageReadError, "no dataset 'missing'"):
                read_image(path + ":missing")

    def test_colour_png_to_grey(self):
        rng = np.random.default_rng(1)
        bgr = rng.integers(0, 256, (8, 9, 3), dtype=np.uint8)
        grey = np.repeat(rng.integers(0, 256, (8, 9, 1), dtype=np.uint8), 3, axis=2)
        with tempfile.TemporaryDirectory() as tmp:
            cv2.imwrite(os.path.join(tmp, "c.png"), bgr)
            cv2.imwrite(os.path.join(tmp, "g.png"), np.concatenate([grey, np.full((8, 9, 1), 255, np.uint8)], 2))
            colour_out, grey_out = read_image(os.path.join(tmp, "c.png")), read_image(os.path.join(tmp, "g.png"))
        expected = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(int)
        self.assertEqual(colour_out.dtype, np.uint8)
        self.assertEqual(colour_out.shape, (8, 9))
        self.assertLessEqual(np.abs(colour_out.astype(int) - expected).max(), 1)
        np.testing.assert_array_equal(grey_out, grey[..., 0])

    def test_missing_file(self):
        with self.assertRaisesRegex(ImageReadError, "does not exist"):
            read_image("/nonexistent/dir/x.tif")

    def test_unknown_extension_lists_supported(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "x.xyz")
            open(path, "wb").close()
            with self.assertRaisesRegex(ImageReadError, r"'\.xyz'.*\.tif"):
                read_image(path)
            with self.assertRaisesRegex(ImageReadError, "supported extensions"):
                write_image(path, np.zeros((2, 2)))

    @parameterized.expand(CORRUPT_CASES)
    def test_corrupt_file(self, _, filename):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, filename)
            with open(path, "wb") as handle:
                handle.write(b"this is not an image" * 10)
            with self.assertRaisesRegex(ImageReadError, filename.replace(".", r"\.")):
                read_image(path)

    @parameterized.expand(BAD_ARRAY_CASES)
    def test_bad_arrays(self, _, filename, array, fragment):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, filename)
            np.save(path, array)
            with self.assertRaisesRegex(ImageReadError, fragment) as info:
                read_image(path)
            self.assertIn(filename, str(info.exception))

    def test_singleton_dims_squeezed(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "s.npy")
            np.save(path, np.arange(12).reshape(1, 3, 1, 4))
            self.assertEqual(read_image(path).shape, (3, 4))


class TestReadImageSharedData(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _shared(self, shared_data):
        # parameterized tests cannot take fixtures as arguments; keep the path on the instance instead
        self.shared = shared_data

    def test_epfl_grey_alpha_png(self):
        path = self.shared / "epfl_hippocampus_6class_graphlab" / "slices" / "training0000.png"
        out = read_image(path)
        self.assertEqual(out.shape, (768, 1024))
        self.assertEqual(out.dtype, np.uint8)
        np.testing.assert_array_equal(out, cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., 0])
        self.assertEqual(out.min(), 40)

    @parameterized.expand([("train-volume.tif",), ("train-labels.tif",), ("train-mito.tif",)])
    def test_isbi_stacks(self, filename):
        path = self.shared / "isbi2012_em" / filename
        out = read_image(path)
        self.assertEqual(out.shape, (30, 512, 512))
        self.assertEqual(out.dtype, np.uint8)
        np.testing.assert_array_equal(out[7], tifffile.imread(path, key=7))

    def test_plain_tiff_and_png_have_no_voxel_size(self):
        self.assertIsNone(read_voxel_size(self.shared / "isbi2012_em" / "train-mito.tif"))
        png = self.shared / "epfl_hippocampus_6class_graphlab" / "slices" / "training0000.png"
        self.assertIsNone(read_voxel_size(png))


class TestWriteImage(unittest.TestCase):
    @parameterized.expand(UNWRITABLE_CASES)
    def test_format_cannot_hold_array(self, _, filename, array):
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaisesRegex(ValueError, "write_image"):
                write_image(os.path.join(tmp, filename), array)
            self.assertEqual(os.listdir(tmp), [])

    def test_bool_written_as_uint8_and_replaces_existing(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "sub", "m.tif")
            write_image(path, np.zeros((3, 3), np.uint8))
            mask = np.eye(3, dtype=bool)
            write_image(path, mask)
            out = read_image(path)
            self.assertEqual(out.dtype, np.uint8)
            np.testing.assert_array_equal(out, mask.astype(np.uint8))
            with tifffile.TiffFile(path) as tif:
                self.assertEqual(tif.pages[0].compression, 8)

    @parameterized.expand([("three", 3), ("four", 4)])
    def test_small_stacks_stay_grey_pages(self, _, depth):
        stack = np.arange(depth * 6 * 7, dtype=np.uint8).reshape(depth, 6, 7)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "s.tif")
            write_image(path, stack)
            with tifffile.TiffFile(path) as tif:  # not stored as one RGB(A) image
                self.assertEqual(len(tif.pages), depth)
                self.assertEqual(tif.pages[0].photometric, tifffile.PHOTOMETRIC.MINISBLACK)
            np.testing.assert_array_equal(read_image(path), stack)


class TestReadVoxelSize(unittest.TestCase):
    def test_imagej_tiff(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "v.tif")
            # 5 nm pixels (200 px per um), 50 nm sections
            tifffile.imwrite(
                path, np.zeros((3, 4, 5), np.uint8), imagej=True, resolution=(200.0, 200.0),
                metadata={"spacing": 0.05, "unit": "um", "axes": "ZYX"},
            )
            np.testing.assert_allclose(read_voxel_size(path), (50.0, 5.0, 5.0))

    def test_tiff_cm_resolution_2d(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "v.tif")
            tifffile.imwrite(path, np.zeros((4, 5), np.uint8), resolution=(1e6, 5e5), resolutionunit="CENTIMETER")
            np.testing.assert_allclose(read_voxel_size(path), (20.0, 10.0))

    def test_nifti_mm_to_nm(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "v.nii.gz")
            img = nib.Nifti1Image(np.zeros((4, 5, 6), np.uint8), np.eye(4))
            img.header.set_zooms((0.004, 0.005, 0.05))  # x, y, z in mm
            img.header.set_xyzt_units("mm")
            nib.save(img, path)
            np.testing.assert_allclose(read_voxel_size(path), (50000.0, 5000.0, 4000.0))

    def test_hdf5_attributes(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "v.h5")
            with h5py.File(path, "w") as handle:
                handle["raw"] = np.zeros((2, 3, 4), np.uint8)
                handle["raw"].attrs["resolution"] = (40.0, 4.0, 4.0)
                handle["um"] = np.zeros((2, 3, 4), np.uint8)
                handle["um"].attrs["element_size_um"] = (0.05, 0.004, 0.004)
                handle["plain"] = np.zeros((2, 3), np.uint8)
            np.testing.assert_allclose(read_voxel_size(path + ":raw"), (40.0, 4.0, 4.0))
            np.testing.assert_allclose(read_voxel_size(path + ":um"), (50.0, 4.0, 4.0))
            self.assertIsNone(read_voxel_size(path + ":plain"))

    def test_errors(self):
        with self.assertRaisesRegex(ImageReadError, "does not exist"):
            read_voxel_size("/nonexistent/v.tif")
        with self.assertRaisesRegex(ImageReadError, "supported extensions"):
            read_voxel_size("v.xyz")


class TestImageReadError(unittest.TestCase):
    def test_is_value_error_and_registry(self):
        self.assertTrue(issubclass(ImageReadError, ValueError))
        expected = {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".nii", ".nii.gz", ".h5", ".hdf5", ".npy"}
        self.assertLessEqual(expected, set(supported_extensions()))
        self.assertEqual(list(supported_extensions()), sorted(supported_extensions()))
