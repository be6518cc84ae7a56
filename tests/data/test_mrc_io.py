"""MRC through the reader registry: files written by mrcfile itself, read in (Z, Y, X) with the top row first and the
header's voxel size in nm; masks written ``like`` them keep it; lazy reading through open_volume."""

from __future__ import annotations

import shutil
import tempfile
import unittest
from pathlib import Path

import numpy as np
import pytest
import tifffile
from monai.utils import optional_import
from parameterized import parameterized

from emdiff_components.data import ImageReadError, open_volume, read_image, read_voxel_size, write_image

mrcfile, has_mrcfile = optional_import("mrcfile")

# (Z, Y, X) = (3, 4, 5); voxel (i, j, k) holds 100 * i + 10 * j + k, so every axis and the Y flip are told apart
VOLUME = (np.arange(3)[:, None, None] * 100 + np.arange(4)[None, :, None] * 10 + np.arange(5)).astype(np.float32)
VOXEL_SIZE_A = (4.0, 5.0, 40.0)  # mrcfile's (x, y, z), angstrom
VOXEL_SIZE_NM = (4.0, 0.5, 0.4)  # (Z, Y, X), nm

EXTENSION_CASES = [("mrc", ".mrc"), ("mrcs", ".mrcs"), ("map", ".map"), ("rec", ".rec")]
# (case, dtype written by write_image, dtype read back): mrcfile stores uint8 as uint16 (mode 6)
DTYPE_CASES = [
    ("int8", np.int8, np.int8),
    ("int16", np.int16, np.int16),
    ("uint16", np.uint16, np.uint16),
    ("float32", np.float32, np.float32),
    ("float16", np.float16, np.float16),
    ("uint8", np.uint8, np.uint16),
]
# (case, imodFlags or None for no IMOD stamp, dtype read): IMOD's unsigned bytes are told by the unset flag bit 1
IMOD_CASES = [("imod_unsigned", 0, np.uint8), ("imod_signed", 1, np.int8), ("no_stamp", None, np.int8)]


def write_mrc(path: Path, data: np.ndarray, voxel_size=VOXEL_SIZE_A) -> None:
    with mrcfile.new(str(path), overwrite=True) as handle:
        handle.set_data(data)
        if voxel_size is not None:
            handle.voxel_size = voxel_size


@unittest.skipUnless(has_mrcfile, "mrcfile is not installed")
class TestMrcRead(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    @parameterized.expand(EXTENSION_CASES)
    def test_volume_top_row_first_and_voxel_size(self, _, ext):
        path = self.dir / f"em{ext}"
        write_mrc(path, VOLUME)
        out = read_image(path)
        self.assertEqual(out.dtype, np.float32)
        self.assertEqual(out.shape, (3, 4, 5))
        # MRC's first stored row is the image's bottom: read top row first, as TIFF is
        self.assertEqual(out[2, 0, 1], 100 * 2 + 10 * 3 + 1)
        np.testing.assert_array_equal(out, VOLUME[:, ::-1, :])
        np.testing.assert_allclose(read_voxel_size(path), VOXEL_SIZE_NM)

    def test_single_image(self):
        write_mrc(self.dir / "img.mrc", VOLUME[1], voxel_size=(12.0, 12.0, 1.0))
        np.testing.assert_array_equal(read_image(self.dir / "img.mrc"), VOLUME[1, ::-1])
        np.testing.assert_allclose(read_voxel_size(self.dir / "img.mrc"), (1.2, 1.2))

    def test_unset_voxel_size_is_none(self):
        write_mrc(self.dir / "v.mrc", VOLUME, voxel_size=None)  # mrcfile leaves the cell at 0
        self.assertIsNone(read_voxel_size(self.dir / "v.mrc"))

    def test_axes_stored_in_another_order(self):
        # sections along X, rows along Y, columns along Z (mapc 3, mapr 2, maps 1): stored array is (X, Y, Z)
        with mrcfile.new(str(self.dir / "p.map")) as handle:
            handle.set_data(np.ascontiguousarray(VOLUME.transpose(2, 1, 0)))
            handle.header.mapc, handle.header.mapr, handle.header.maps = 3, 2, 1
        np.testing.assert_array_equal(read_image(self.dir / "p.map"), VOLUME[:, ::-1, :])

    def test_old_serialem_machine_stamp(self):
        write_mrc(self.dir / "old.mrc", VOLUME)
        with open(self.dir / "old.mrc", "r+b") as handle:  # machst, file bytes 212..215, as old SerialEM wrote it
            handle.seek(212)
            handle.write(bytes([0x44, 0, 0, 0]))
        with self.assertLogs("emdiff_components.data.mrc_io", level="WARNING") as logs:
            np.testing.assert_array_equal(read_image(self.dir / "old.mrc"), VOLUME[:, ::-1, :])
        self.assertIn("machine stamp", logs.output[0])

    @parameterized.expand(IMOD_CASES)
    def test_imod_unsigned_bytes(self, _, flags, dtype):
        signed = np.array([[0, 1, -1], [127, -128, -2]], dtype=np.int8)
        with mrcfile.new(str(self.dir / "b.mrc")) as handle:
            handle.set_data(signed)
            if flags is not None:  # IMOD's imodStamp and imodFlags sit at file bytes 152 and 156
                extra = bytearray(handle.header.extra2.tobytes())
                extra[40:48] = np.array([1146047817, flags], dtype="<i4").tobytes()
                handle.header.extra2 = bytes(extra)
        out = read_image(self.dir / "b.mrc")
        self.assertEqual(out.dtype, dtype)
        np.testing.assert_array_equal(out, signed.view(dtype)[::-1])
        if dtype == np.uint8:
            self.assertEqual(out[0, 1], 128)  # -128 stored is 128 unsigned


@unittest.skipUnless(has_mrcfile, "mrcfile is not installed")
class TestMrcWrite(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    @parameterized.expand(DTYPE_CASES)
    def test_round_trip(self, _, dtype, read_dtype):
        array = VOLUME.astype(dtype) if np.dtype(dtype).kind == "f" else (VOLUME % 120).astype(dtype)
        write_image(self.dir / "a.mrc", array)
        out = read_image(self.dir / "a.mrc")
        self.assertEqual(out.dtype, read_dtype)
        np.testing.assert_array_equal(out, array)
        with mrcfile.open(str(self.dir / "a.mrc")) as handle:  # on disk, bottom row first again
            np.testing.assert_array_equal(handle.data, array[:, ::-1, :])

    def test_mask_like_input_keeps_voxel_size_and_origin(self):
        source = self.dir / "em.rec"
        write_mrc(source, VOLUME)
        with mrcfile.open(str(source), mode="r+") as handle:
            handle.header.origin = (10.0, 20.0, 30.0)
        mask = (read_image(source) > 150).astype(np.uint8)
        write_image(self.dir / "mask.rec", mask, like=source)
        with mrcfile.open(str(self.dir / "mask.rec")) as handle:  # checked with mrcfile, not with our reader
            np.testing.assert_allclose([handle.voxel_size[a] for a in "xyz"], VOXEL_SIZE_A, rtol=1e-6)
            np.testing.assert_allclose([handle.header.origin[a] for a in "xyz"], (10.0, 20.0, 30.0))
            np.testing.assert_array_equal(handle.data, mask[:, ::-1, :])
        np.testing.assert_allclose(read_voxel_size(self.dir / "mask.rec"), VOXEL_SIZE_NM, rtol=1e-6)

    def test_unwritable_dtype(self):
        with self.assertRaisesRegex(ValueError, r"write_image: MRC holds .*not int64.*a\.mrc"):
            write_image(self.dir / "a.mrc", VOLUME.astype(np.int64))
        self.assertEqual(list(self.dir.iterdir()), [])

    def test_corrupt_file_names_the_file(self):
        (self.dir / "bad.mrc").write_bytes(b"this is not an MRC file" * 100)
        with self.assertRaisesRegex(ImageReadError, r"read_image: cannot decode .*bad\.mrc"):
            read_image(self.dir / "bad.mrc")
        with self.assertRaisesRegex(ImageReadError, r"read_voxel_size: .*bad\.mrc"):
            read_voxel_size(self.dir / "bad.mrc")


@unittest.skipUnless(has_mrcfile, "mrcfile is not installed")
class TestMrcOpenVolume(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    def test_lazy_read_equals_read_image(self):
        write_mrc(self.dir / "t.rec", VOLUME)
        with open_volume(self.dir / "t.rec", ndim=3) as volume:
            self.assertEqual(volume.shape, (3, 4, 5))
            np.testing.assert_allclose(volume.voxel_size, VOXEL_SIZE_NM)
            np.testing.assert_array_equal(volume[1:3, 0:2, 1:4], read_image(self.dir / "t.rec")[1:3, 0:2, 1:4])

    def test_edit_in_place_reaches_the_right_row(self):
        write_mrc(self.dir / "t.mrc", VOLUME)
        with open_volume(self.dir / "t.mrc", mode="r+") as volume:
            volume[0, 0, :] = -1.0  # the top row, which MRC stores last
        with mrcfile.open(str(self.dir / "t.mrc")) as handle:
            np.testing.assert_array_equal(handle.data[0, -1], np.full(5, -1.0, np.float32))
            np.testing.assert_array_equal(handle.data[0, :-1], VOLUME[0, :-1])


class TestMrcSharedData(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _shared(self, shared_data):
        self.shared = shared_data

    @unittest.skipUnless(has_mrcfile, "mrcfile is not installed")
    def test_isbi_as_imod_writes_it(self):
        """ISBI 2012 written bottom row first (as IMOD's tif2mrc converts a TIFF) reads back equal to the TIFF."""
        volume = tifffile.imread(self.shared / "isbi2012_em" / "train-volume.tif")[:3]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "isbi.mrc"
            write_mrc(path, np.ascontiguousarray(volume[:, ::-1, :]).astype(np.int16), voxel_size=(40.0, 40.0, 500.0))
            np.testing.assert_array_equal(read_image(path), volume)
            np.testing.assert_allclose(read_voxel_size(path), (50.0, 4.0, 4.0))


if __name__ == "__main__":
    unittest.main()
