from __future__ import annotations

import os
import tempfile
import unittest

import h5py
import numpy as np
import tifffile
import zarr
from parameterized import parameterized

from emdiff_components.data import ImageReadError, LazyVolume, create_volume, open_volume, read_voxel_size

_RNG = np.random.default_rng(0)
_VOXEL = (40.0, 4.0, 6.0)

# (case name, path, array, voxel size read back): write in two halves, reopen, compare everything
ROUND_TRIP_CASES = [
    ("zarr_root", "out.zarr", _RNG.random((3, 5, 7, 9)).astype(np.float32), _VOXEL),
    ("zarr_key", "out.zarr:/pred/affs", _RNG.random((3, 5, 7, 9)).astype(np.float32), _VOXEL),
    ("h5_key", "out.h5:/affs", _RNG.integers(0, 256, (3, 5, 7, 9), dtype=np.uint8), _VOXEL),
    ("hdf5_default_key", "out.hdf5", _RNG.random((5, 7, 9)), _VOXEL),
    ("tif_float32_4d", "out.tif", _RNG.random((3, 5, 7, 9)).astype(np.float32), _VOXEL),
    ("tiff_uint16_3d", "out.tiff", _RNG.integers(0, 65536, (5, 7, 9), dtype=np.uint16), _VOXEL),
    ("tif_int32_no_imagej", "out.tif", _RNG.integers(-9, 9, (5, 7, 9), dtype=np.int32), None),
    ("npy", "out.npy", _RNG.random((2, 5, 7, 9)).astype(np.float32), None),
]
FORMATS = [("zarr", "x.zarr"), ("zarr_key", "x.zarr:/a/b"), ("h5", "x.h5:/a"), ("tif", "x.tif"), ("npy", "x.npy")]


class TestCreateVolume(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.dir = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    @parameterized.expand(ROUND_TRIP_CASES)
    def test_round_trip(self, _, name, array, voxel):
        path = self.path(name)
        with create_volume(path, array.shape, array.dtype, chunks=(2,) * array.ndim, voxel_size=_VOXEL) as out:
            half = array.shape[-3] // 2
            out[..., :half, :, :] = array[..., :half, :, :]
            out[..., half:, :, :] = array[..., half:, :, :]
            self.assertEqual(out.voxel_size, voxel)
        with open_volume(path) as back:
            self.assertEqual(back.shape, array.shape)
            self.assertEqual(back.dtype, array.dtype)
            self.assertEqual(back.voxel_size, voxel)
            np.testing.assert_array_equal(back[...], array)
            np.testing.assert_array_equal(back[..., 1:3, 2:5, 0:4], array[..., 1:3, 2:5, 0:4])
        if name.endswith((".tif", ".tiff", ".h5:/affs", ".hdf5")):  # the package's reader sees the same geometry
            self.assertEqual(read_voxel_size(path), voxel)

    def test_tiff_drops_a_singleton_channel(self):
        # ImageJ has no way to say "one channel": like read_image, a (1, Z, Y, X) TIFF reopens as (Z, Y, X)
        with create_volume(self.path("one.tif"), (1, 2, 3, 4), np.uint8) as out:
            out[0, 1] = 9
        with open_volume(self.path("one.tif")) as back:
            self.assertEqual(back.shape, (2, 3, 4))
            np.testing.assert_array_equal(back[1], np.full((3, 4), 9, np.uint8))

    def test_tiff_is_an_imagej_hyperstack(self):
        array = _RNG.random((2, 3, 4, 5)).astype(np.float32)  # (C, Z, Y, X)
        with create_volume(self.path("h.tif"), array.shape, np.float32, voxel_size=_VOXEL) as out:
            out[...] = array
        with tifffile.TiffFile(self.path("h.tif")) as tif:
            self.assertEqual(tif.series[0].axes, "ZCYX")  # ImageJ order, so Fiji shows 2 channels and 3 slices
            self.assertEqual(tif.imagej_metadata["channels"], 2)
            np.testing.assert_array_equal(tif.asarray(), array.transpose(1, 0, 2, 3))

    def test_like_copies_voxel_size(self):
        src = self.path("raw.h5")
        with h5py.File(src, "w") as handle:
            handle.create_dataset("main", data=np.zeros((4, 5, 6), np.uint8)).attrs["resolution"] = (30.0, 8.0, 8.0)
        for name in ("o.zarr", "o.h5", "o.tif"):
            with create_volume(self.path(name), (2, 4, 5, 6), np.float32, like=src + ":/main"):
                pass
            with open_volume(self.path(name)) as back:
                self.assertEqual(back.voxel_size, (30.0, 8.0, 8.0), name)
        with open_volume(src) as raw, create_volume(self.path("p.zarr"), (1, 4, 5, 6), like=raw) as out:
            self.assertEqual(out.voxel_size, (30.0, 8.0, 8.0))

    @parameterized.expand(FORMATS)
    def test_error_inside_with_leaves_no_file(self, _, name):
        with self.assertRaises(KeyError), create_volume(self.path(name), (2, 3, 4, 5), np.float32) as out:
            out[0] = 1.0
            raise KeyError("killed")
        leftovers = [f for f in os.listdir(self.dir) if not f.startswith("x.zarr")]
        self.assertEqual(leftovers, [])
        if "zarr:" in name:  # the group may exist; the array (and any temporary folder) must not
            self.assertEqual(sorted(os.listdir(self.path("x.zarr/a"))), ["zarr.json"])
        else:
            self.assertFalse(os.path.exists(self.path(name.split(":")[0])))

    @parameterized.expand(FORMATS)
    def test_failed_rewrite_keeps_the_old_volume(self, _, name):
        with create_volume(self.path(name), (2, 2, 3, 4), np.float32) as out:
            out[...] = 7.0
        with self.assertRaises(RuntimeError), create_volume(self.path(name), (2, 2, 3, 4), np.float32) as out:
            out[...] = 1.0
            raise RuntimeError("killed")
        with open_volume(self.path(name)) as back:
            np.testing.assert_array_equal(back[...], np.full((2, 2, 3, 4), 7.0, np.float32))
        with create_volume(self.path(name), (2, 2, 3, 4), np.float32) as out:  # a finished rewrite replaces it
            out[...] = 2.0
        with open_volume(self.path(name)) as back:
            np.testing.assert_array_equal(back[...], np.full((2, 2, 3, 4), 2.0, np.float32))

    def test_h5_key_keeps_other_datasets(self):
        path = self.path("both.h5")
        with h5py.File(path, "w") as handle:
            handle["raw"] = np.arange(6).reshape(1, 2, 3)
        with create_volume(path + ":/affs", (3, 1, 2, 3), np.float32) as out:
            out[...] = 0.5
        with h5py.File(path, "r") as handle:
            np.testing.assert_array_equal(handle["raw"][...], np.arange(6).reshape(1, 2, 3))
            np.testing.assert_array_equal(handle["affs"][...], np.full((3, 1, 2, 3), 0.5, np.float32))

    def test_bad_arguments(self):
        with self.assertRaisesRegex(ImageReadError, r"'\.png'.*supported extensions: .*\.npy.*\.zarr"):
            create_volume(self.path("a.png"), (2, 3, 4))
        with self.assertRaisesRegex(ValueError, "shape"):
            create_volume(self.path("a.npy"), (2, 0, 4))
        with self.assertRaisesRegex(ValueError, "chunks"):
            create_volume(self.path("a.h5"), (2, 3, 4), chunks=(2, 3))
        self.assertEqual(os.listdir(self.dir), [])


class TestOpenVolume(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.dir = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def test_lazy_h5_zarr_npy(self):
        array = _RNG.random((6, 7, 8)).astype(np.float32)
        h5_path, zarr_path, npy_path = (os.path.join(self.dir, n) for n in ("v.h5", "v.zarr", "v.npy"))
        with h5py.File(h5_path, "w") as handle:
            handle.create_dataset("grp/raw", data=array, chunks=(2, 7, 8))
        zarr.create_array(store=zarr_path, data=array, chunks=(2, 7, 8))
        np.save(npy_path, array)
        for path in (h5_path, h5_path + ":/grp/raw", zarr_path, npy_path):
            with open_volume(path) as volume:
                self.assertIsInstance(volume, LazyVolume)
                self.assertEqual((volume.shape, volume.dtype, volume.ndim), (array.shape, array.dtype, 3))
                np.testing.assert_array_equal(volume[2:4, 1:5, 3:8], array[2:4, 1:5, 3:8])
                np.testing.assert_array_equal(np.asarray(volume), array)
            with self.assertRaisesRegex(ValueError, "closed"):
                volume[0]

    def test_ndim_drops_leading_singletons_and_rejects_2d(self):
        path = os.path.join(self.dir, "lead.npy")
        array = _RNG.random((1, 1, 3, 4, 5))
        np.save(path, array)
        with open_volume(path, ndim=3) as volume:
            self.assertEqual(volume.shape, (3, 4, 5))
            np.testing.assert_array_equal(volume[1:3, :, 2], array[0, 0, 1:3, :, 2])
        np.save(os.path.join(self.dir, "flat.npy"), np.zeros((4, 5)))
        with self.assertRaisesRegex(ImageReadError, r"flat\.npy.* 2D .*3D \(Z, Y, X\)"):
            open_volume(os.path.join(self.dir, "flat.npy"), ndim=3)

    def test_compressed_tiff_is_read_whole_with_a_log_line(self):
        path = os.path.join(self.dir, "z.tif")
        array = _RNG.integers(0, 256, (3, 8, 9), dtype=np.uint8)
        tifffile.imwrite(path, array, compression="zlib", photometric="minisblack")
        with self.assertLogs("emdiff_components.data.arrays", "INFO") as logs, open_volume(path) as volume:
            np.testing.assert_array_equal(volume[1:3], array[1:3])
        self.assertIn("compressed", logs.output[0])
        with self.assertRaisesRegex(ImageReadError, "in place"):
            open_volume(path, mode="r+")

    def test_edit_in_place_and_read_only(self):
        path = os.path.join(self.dir, "e.npy")
        np.save(path, np.zeros((2, 3, 4), np.float32))
        with open_volume(path, mode="r+") as volume:
            volume[1, 2] = 5.0
        expected = np.zeros((2, 3, 4), np.float32)
        expected[1, 2] = 5.0
        np.testing.assert_array_equal(np.load(path), expected)
        with open_volume(path) as volume, self.assertRaisesRegex(ValueError, "read-only"):
            volume[0] = 1.0

    def test_errors_name_the_file_and_problem(self):
        h5_path = os.path.join(self.dir, "k.h5")
        with h5py.File(h5_path, "w") as handle:
            handle["raw"] = np.zeros((2, 2, 2))
            handle["seg/labels"] = np.zeros((2, 2, 2))
        with self.assertRaisesRegex(ImageReadError, r"k\.h5.*no dataset 'nope'.*\['raw', 'seg/labels'\]"):
            open_volume(h5_path + ":/nope")
        zarr.open_group(os.path.join(self.dir, "g.zarr"), mode="w").create_array("a", shape=(2, 2), dtype="u1")
        with self.assertRaisesRegex(ImageReadError, r"g\.zarr.*no zarr array 'b'.*\['a'\]"):
            open_volume(os.path.join(self.dir, "g.zarr:/b"))
        with self.assertRaisesRegex(ImageReadError, r"missing\.h5.*does not exist"):
            open_volume(os.path.join(self.dir, "missing.h5"))
        with self.assertRaisesRegex(ImageReadError, r"'\.xyz'.*supported extensions: .*\.h5.*\.mrc"):
            open_volume(os.path.join(self.dir, "a.xyz"))
        with self.assertRaisesRegex(ValueError, "mode"):
            open_volume(h5_path, mode="w")
        with open(os.path.join(self.dir, "junk.npy"), "wb") as handle:
            handle.write(b"not a numpy file")
        with self.assertRaisesRegex(ImageReadError, r"cannot open .*junk\.npy"):
            open_volume(os.path.join(self.dir, "junk.npy"))


if __name__ == "__main__":
    unittest.main()
