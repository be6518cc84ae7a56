"""MetaImage, NRRD and DICOM through the reader registry: files written by ITK itself, read back in (Z, Y, X) with
their voxel size, and masks written ``like`` them keeping spacing, origin and direction (checked with ITK directly)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
from bundle_testing import write_dicom_series
from monai.utils import optional_import
from parameterized import parameterized

from emdiff_components.data import (
    DatasetError,
    ImageReadError,
    is_dicom_series,
    list_images,
    output_extension,
    read_image,
    read_voxel_size,
    single_file_datalist,
    supported_extensions,
    write_image,
)

itk, has_itk = optional_import("itk")

# (Z, Y, X) = (4, 5, 6); voxel (i, j, k) holds 100 * i + 10 * j + k - 200, so every axis is told apart
VOLUME = (np.arange(4)[:, None, None] * 100 + np.arange(5)[None, :, None] * 10 + np.arange(6) - 200).astype(np.int16)
SPACING = (0.7, 0.8, 2.5)  # ITK's (x, y, z), mm
ORIGIN = (-10.0, 20.0, 30.0)
_ANGLE = np.deg2rad(20.0)
DIRECTION = np.array([[np.cos(_ANGLE), -np.sin(_ANGLE), 0.0], [np.sin(_ANGLE), np.cos(_ANGLE), 0.0], [0.0, 0.0, 1.0]])
VOXEL_SIZE_NM = (2.5e6, 0.8e6, 0.7e6)  # (Z, Y, X) in nm

ITK_FILE_CASES = [("mha", ".mha"), ("mhd", ".mhd"), ("nrrd", ".nrrd"), ("nhdr", ".nhdr")]

# (case, source kind, output extension, tolerance of the geometry read back): NIfTI keeps float32 header fields
WRITE_LIKE_CASES = [
    ("mha_to_mha", ".mha", ".mha", 0.0),
    ("nrrd_to_nrrd", ".nrrd", ".nrrd", 1e-12),
    ("mhd_to_nrrd", ".mhd", ".nrrd", 1e-12),
    ("dicom_to_niigz", "dicom", ".nii.gz", 1e-5),
    ("dicom_to_mha", "dicom", ".mha", 1e-9),
    ("mha_to_niigz", ".mha", ".nii.gz", 1e-5),
]

OUTPUT_EXTENSION_CASES = [
    ("mha", "ct.mha", ".mha"),
    ("mhd", "ct.mhd", ".mha"),
    ("nrrd", "ct.NRRD", ".nrrd"),
    ("nhdr", "ct.nhdr", ".nrrd"),
    ("dcm_file", "slice.dcm", ".nii.gz"),
    ("niigz", "ct.nii.gz", ".nii.gz"),
    ("tif", "em.tif", ".tif"),
    ("h5_key", "em.h5:/raw", ".h5"),
]


def itk_image(array: np.ndarray, spacing=SPACING, origin=ORIGIN, direction=DIRECTION):
    image = itk.image_from_array(np.ascontiguousarray(array))
    image.SetSpacing(list(spacing))
    image.SetOrigin(list(origin))
    image.SetDirection(itk.matrix_from_array(np.asarray(direction, dtype=np.float64)))
    return image


def geometry(image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.array(image.GetSpacing()), np.array(image.GetOrigin()), itk.array_from_matrix(image.GetDirection())


@unittest.skipUnless(has_itk, "itk is not installed")
class TestItkRead(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    def test_registered(self):
        self.assertLessEqual({".mha", ".mhd", ".nrrd", ".nhdr", ".dcm"}, set(supported_extensions()))

    @parameterized.expand(ITK_FILE_CASES)
    def test_file_values_axes_and_voxel_size(self, _, ext):
        path = self.dir / f"ct{ext}"
        itk.imwrite(itk_image(VOLUME), str(path), compression=True)
        out = read_image(path)
        self.assertEqual(out.dtype, np.int16)
        self.assertEqual(out.shape, (4, 5, 6))
        self.assertEqual(out[3, 2, 1], 100 * 3 + 10 * 2 + 1 - 200)  # (Z, Y, X): ITK's x is the last axis
        np.testing.assert_array_equal(out, VOLUME)
        np.testing.assert_allclose(read_voxel_size(path), VOXEL_SIZE_NM, rtol=1e-12)

    def test_2d_and_singleton_axis(self):
        plane = VOLUME[1].astype(np.float32)
        itk.imwrite(itk_image(plane, SPACING[:2], ORIGIN[:2], DIRECTION[:2, :2]), str(self.dir / "p.mha"))
        np.testing.assert_array_equal(read_image(self.dir / "p.mha"), plane)
        np.testing.assert_allclose(read_voxel_size(self.dir / "p.mha"), (0.8e6, 0.7e6))
        itk.imwrite(itk_image(VOLUME[1:2]), str(self.dir / "s.nrrd"))  # (1, Y, X): squeezed, z spacing left out
        self.assertEqual(read_image(self.dir / "s.nrrd").shape, (5, 6))
        np.testing.assert_allclose(read_voxel_size(self.dir / "s.nrrd"), (0.8e6, 0.7e6))

    def test_dicom_series_in_position_order(self):
        # files named against the slice order: the series is sorted by ImagePositionPatient, not by name
        folder = write_dicom_series(self.dir / "series", VOLUME, SPACING, ORIGIN, DIRECTION, reverse_names=True)
        self.assertTrue(is_dicom_series(folder))
        out = read_image(folder)
        self.assertEqual(out.dtype, np.int16)
        np.testing.assert_array_equal(out, VOLUME)
        np.testing.assert_allclose(read_voxel_size(folder), VOXEL_SIZE_NM, rtol=1e-6)
        direct = itk.imread(str(folder))  # ITK's own series reading agrees
        np.testing.assert_array_equal(itk.array_from_image(direct), out)
        spacing, origin, direction = geometry(direct)
        np.testing.assert_allclose(spacing, SPACING, rtol=1e-6)
        np.testing.assert_allclose(origin, ORIGIN, atol=1e-6)
        np.testing.assert_allclose(direction, DIRECTION, atol=1e-6)

    def test_dicom_files_without_suffix(self):
        folder = write_dicom_series(self.dir / "series", VOLUME, SPACING, ORIGIN, DIRECTION)
        for path in folder.iterdir():  # many scanners write IM0001-style names: the DICM preamble tells them apart
            path.rename(path.with_suffix(""))
        self.assertTrue(is_dicom_series(folder))
        np.testing.assert_array_equal(read_image(folder), VOLUME)

    def test_is_dicom_series(self):
        (self.dir / "empty").mkdir()
        (self.dir / "text").mkdir()
        (self.dir / "text" / "notes.txt").write_text("x" * 200)
        self.assertFalse(is_dicom_series(self.dir / "empty"))
        self.assertFalse(is_dicom_series(self.dir / "text"))
        self.assertFalse(is_dicom_series(self.dir / "missing"))
        self.assertFalse(is_dicom_series(self.dir / "text" / "notes.txt"))

    def test_dataset_folder_lists_series_by_folder_name(self):
        images = self.dir / "imagesTs"
        write_dicom_series(images / "ct_002", VOLUME, SPACING, ORIGIN, DIRECTION)
        itk.imwrite(itk_image(VOLUME), str(images / "ct_001.mha"))
        (images / "not_dicom").mkdir()
        (images / ".hidden").mkdir()
        self.assertEqual(list_images(images), {"ct_001": "ct_001.mha", "ct_002": "ct_002"})
        entries = single_file_datalist(images / "ct_002")
        listed = [(e["name"], e["slice"], e["num_slices"]) for e in entries]
        self.assertEqual(listed, [("ct_002", z, 4) for z in range(4)])


@unittest.skipUnless(has_itk, "itk is not installed")
class TestItkWriteLike(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    def _source(self, kind: str) -> Path:
        if kind == "dicom":
            return write_dicom_series(self.dir / "series", VOLUME, SPACING, ORIGIN, DIRECTION)
        path = self.dir / f"ct{kind}"
        itk.imwrite(itk_image(VOLUME), str(path))
        return path

    @parameterized.expand(WRITE_LIKE_CASES)
    def test_mask_keeps_the_input_geometry(self, _, kind, ext, atol):
        source = self._source(kind)
        mask = (VOLUME > 0).astype(np.uint8)
        out = self.dir / f"mask{ext}"
        write_image(out, mask, like=source)
        written, expected = itk.imread(str(out)), itk.imread(str(source))  # both read by ITK, not by our code
        np.testing.assert_array_equal(itk.array_from_image(written), mask)
        for got, want in zip(geometry(written), geometry(expected)):
            np.testing.assert_allclose(got, want, rtol=0, atol=atol + 1e-15)
        np.testing.assert_array_equal(read_image(out), mask)
        self.assertEqual([f for f in os.listdir(self.dir) if f.startswith(".")], [])  # no temporary file left

    def test_niigz_like_dicom_is_a_ras_affine(self):
        """What nibabel sees: ITK's LPS direction becomes NIfTI's RAS affine (x and y negated)."""
        source = self._source("dicom")
        write_image(self.dir / "mask.nii.gz", np.zeros(VOLUME.shape, np.uint8), like=source)
        affine = nib.load(str(self.dir / "mask.nii.gz")).affine
        lps_to_ras = np.diag([-1.0, -1.0, 1.0])
        np.testing.assert_allclose(affine[:3, :3], lps_to_ras @ DIRECTION @ np.diag(SPACING), atol=1e-5)
        np.testing.assert_allclose(affine[:3, 3], lps_to_ras @ np.array(ORIGIN), atol=1e-4)

    def test_2d_mask_of_a_single_slice_volume(self):
        itk.imwrite(itk_image(VOLUME[2:3]), str(self.dir / "slice.mha"))
        write_image(self.dir / "mask.mha", np.ones((5, 6), np.uint8), like=self.dir / "slice.mha")
        written = itk.imread(str(self.dir / "mask.mha"))
        self.assertEqual(itk.array_from_image(written).shape, (1, 5, 6))
        np.testing.assert_allclose(geometry(written)[0], SPACING)

    def test_float_map_and_no_like(self):
        values = np.linspace(0, 1, VOLUME.size, dtype=np.float32).reshape(VOLUME.shape)
        write_image(self.dir / "map.nrrd", values)
        written = itk.imread(str(self.dir / "map.nrrd"))
        np.testing.assert_array_equal(itk.array_from_image(written), values)
        np.testing.assert_array_equal(geometry(written)[0], (1.0, 1.0, 1.0))

    @parameterized.expand(OUTPUT_EXTENSION_CASES)
    def test_output_extension(self, _, name, expected):
        self.assertEqual(output_extension(name), expected)

    def test_output_extension_of_a_series_folder(self):
        self.assertEqual(output_extension(self._source("dicom")), ".nii.gz")
        (self.dir / "volume.zarr").mkdir()  # other folders keep their extension
        self.assertEqual(output_extension(self.dir / "volume.zarr"), ".zarr")
        with self.assertRaisesRegex(ImageReadError, r"unsupported file extension '\.zarr'"):
            read_image(self.dir / "volume.zarr")

    def test_write_errors(self):
        source = self._source(".mha")
        with self.assertRaisesRegex(ValueError, r"shape \(4, 5\).*ct\.mha.*\(4, 5, 6\)"):
            write_image(self.dir / "bad.mha", np.zeros((4, 5), np.uint8), like=source)
        with self.assertRaisesRegex(ValueError, r"int64.*cast"):
            write_image(self.dir / "bad.mha", VOLUME.astype(np.int64))
        with self.assertRaisesRegex(ValueError, r"\.mhd keeps its voxels in a second file; write \.mha"):
            write_image(self.dir / "bad.mhd", VOLUME)
        with self.assertRaisesRegex(ValueError, "DICOM is read only"):
            write_image(self.dir / "bad.dcm", VOLUME)
        with self.assertRaisesRegex(ValueError, "series.*is a DICOM series folder"):
            write_image(self._source("dicom"), VOLUME)
        self.assertFalse(any(f.name.startswith(("bad", ".")) for f in self.dir.iterdir()))


@unittest.skipUnless(has_itk, "itk is not installed")
class TestItkBadInput(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    @parameterized.expand([("mha", "bad.mha"), ("nrrd", "bad.nrrd"), ("dcm", "bad.dcm")])
    def test_corrupt_file(self, _, name):
        (self.dir / name).write_bytes(b"this is not an image" * 10)
        with self.assertRaisesRegex(ImageReadError, rf"read_image: cannot decode .*{name.replace('.', '[.]')}"):
            read_image(self.dir / name)
        with self.assertRaisesRegex(ImageReadError, rf"read_voxel_size: .*{name.replace('.', '[.]')}"):
            read_voxel_size(self.dir / name)

    def test_empty_folder(self):
        folder = self.dir / "series"
        folder.mkdir()
        for func in (read_image, read_voxel_size):
            with self.assertRaisesRegex(ImageReadError, r"folder '.*/series' holds no DICOM files"):
                func(folder)
        with self.assertRaisesRegex(DatasetError, r"series.*holds no DICOM files"):
            single_file_datalist(folder)

    def test_folder_of_broken_dicom_files(self):
        folder = self.dir / "series"
        folder.mkdir()
        (folder / "a.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"garbage" * 10)
        with self.assertRaisesRegex(ImageReadError, r"cannot decode '.*/series'.*no DICOM series that ITK"):
            read_image(folder)

    def test_two_series_in_one_folder(self):
        folder = write_dicom_series(self.dir / "series", VOLUME, SPACING, ORIGIN, DIRECTION)
        other = write_dicom_series(self.dir / "other", VOLUME[:2], SPACING, ORIGIN, DIRECTION)
        for path in other.iterdir():  # the same series UID: give the second series its own
            image = itk.imread(str(path))
            tags = image.GetMetaDataDictionary()
            tags["0020|000e"] = "1.2.826.0.1.3680043.2.1125.7.9"
            io = itk.GDCMImageIO.New()
            io.SetKeepOriginalUID(True)
            itk.imwrite(image, str(folder / f"b{path.name}"), imageio=io)
        with self.assertRaisesRegex(ImageReadError, r"'.*/series' holds 2 DICOM series.*own folder"):
            read_image(folder)


# run in a fresh interpreter where itk and mrcfile cannot be imported (None in sys.modules blocks an import)
_WITHOUT_ITK_AND_MRCFILE = """
import sys
sys.modules["itk"] = sys.modules["mrcfile"] = None
from emdiff_components.data import ImageReadError, read_image
for path in sys.argv[1:]:
    try:
        read_image(path)
    except ImageReadError as err:
        print(err)
"""


class TestWithoutItkOrMrcfile(unittest.TestCase):
    def test_import_works_and_errors_name_the_package(self):
        with tempfile.TemporaryDirectory() as tmp:
            paths = [os.path.join(tmp, "ct.mha"), os.path.join(tmp, "em.mrc"), os.path.join(tmp, "series")]
            os.mkdir(paths[2])
            Path(paths[2], "a.dcm").write_bytes(b"x")
            result = subprocess.run([sys.executable, "-c", _WITHOUT_ITK_AND_MRCFILE, *paths], capture_output=True,
                                    text=True, check=True)
        lines = result.stdout.splitlines()
        self.assertEqual(len(lines), 3, result.stdout + result.stderr)
        self.assertRegex(lines[0], r"'\.mha' of '.*ct\.mha'.*\.mha needs itk \(pip install itk\)")
        self.assertRegex(lines[1], r"'\.mrc' of '.*em\.mrc'.*\.mrc needs mrcfile \(pip install mrcfile\)")
        self.assertRegex(lines[2], r"'.*/series' is a DICOM series folder; reading it needs itk")


if __name__ == "__main__":
    unittest.main()
