from __future__ import annotations

import os
import tempfile
import unittest

import h5py
import numpy as np
import torch
from parameterized import parameterized

from emdiff_components.data import ImageReadError, create_volume, open_volume, read_voxel_size
from emdiff_components.engines import predict_blockwise, predict_volume_file, slice_intensity_range
from emdiff_components.transforms.intensity.array import ScaleSliceIntensity

_VOLUME = np.random.default_rng(0).integers(0, 256, (10, 37, 41)).astype(np.uint8)
_VOLUME[3] = 17  # a constant slice: per-slice scaling maps it to 0


def _network() -> torch.nn.Module:
    """Two 3x3x3 convolutions: receptive-field radius 2 in every axis; sigmoid outputs like affinities."""
    generator = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv3d(4, 3, 3, padding=1), torch.nn.Sigmoid()
    )
    with torch.no_grad():
        for param in net.parameters():
            param.copy_(torch.rand(param.shape, generator=generator) - 0.5)
    return net.eval()


_NET = _network()
_THREADS = torch.get_num_threads()


def setUpModule():
    torch.set_num_threads(1)  # tiny convolutions: threads only add overhead (30x slower on a busy 2-core machine)


def tearDownModule():
    torch.set_num_threads(_THREADS)


def _whole(volume: np.ndarray, context: int, normalized: np.ndarray | None = None, mode: str = "reflect"):
    """The whole volume at once: normalise, pad by ``context``, predict, crop back (the reference)."""
    x = ScaleSliceIntensity()(volume[None])[0] if normalized is None else normalized
    x = np.pad(x, context, mode=mode)
    with torch.no_grad():
        y = _NET(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, None])[0]
    return y[(slice(None), *(slice(context, context + n) for n in volume.shape))]


def _blockwise(volume, block, context, **kwargs) -> torch.Tensor:
    out = np.full((3, *volume.shape), np.nan, np.float32)
    predict_blockwise(_NET, volume, out, block, context, progress=False, **kwargs)
    return torch.from_numpy(out)


class _ReadLog:
    """A (Z, Y, X) source that records the size of every read."""

    def __init__(self, array):
        self.array, self.shape, self.dtype, self.reads = array, array.shape, array.dtype, []

    def __getitem__(self, key):
        part = self.array[key]
        self.reads.append(part.shape)
        return part


# (case name, block shape, context, volume)
EQUAL_CASES = [
    ("context_2", (4, 16, 16), 2, _VOLUME),
    ("context_3_anisotropic", (4, 16, 16), (2, 3, 4), _VOLUME),
    ("one_axis_block", (10, 37, 8), 2, _VOLUME),
    ("volume_smaller_than_block", (4, 16, 16), 2, _VOLUME[:3, :9, :11]),
]


class TestPredictBlockwise(unittest.TestCase):
    @parameterized.expand(EQUAL_CASES)
    def test_equals_whole_volume_prediction(self, _, block, context, volume):
        margin = context if isinstance(context, int) else max(context)
        if isinstance(context, tuple):  # the reference pads each axis by its own context
            x = np.pad(ScaleSliceIntensity()(volume[None])[0], [(c, c) for c in context], mode="reflect")
            with torch.no_grad():
                y = _NET(torch.from_numpy(x)[None, None])[0]
            expected = y[:, context[0] : -context[0], context[1] : -context[1], context[2] : -context[2]]
        else:
            expected = _whole(volume, margin)
        got = _blockwise(volume, block, context)
        self.assertFalse(torch.isnan(got).any())  # every voxel written
        torch.testing.assert_close(got, expected)

    def test_per_slice_statistics_come_from_whole_slices(self):
        # normalising each block on its own would change the values: the check below would then fail
        expected = _whole(_VOLUME, 2)
        own_stats = _whole(_VOLUME[:, :16, :16], 2)
        self.assertGreater(float((own_stats - expected[:, :, :16, :16]).abs().max()), 1e-3)
        torch.testing.assert_close(_blockwise(_VOLUME, (4, 16, 16), 2)[:, :, :16, :16], expected[:, :, :16, :16])

    def test_context_below_receptive_field_differs_at_block_borders(self):
        got, expected = _blockwise(_VOLUME, (4, 16, 16), 1), _whole(_VOLUME, 1)
        diff = (got - expected).abs()
        self.assertGreater(float(diff[:, :, 15:17].max()), 1e-3)  # the y border between the first two blocks
        self.assertGreater(float(diff[:, 3:5].max()), 1e-3)  # the z border between the first two blocks
        self.assertLess(float(diff[:, 1:3, 1:15, 1:15].max()), 1e-6)  # but the inside of a block is exact

    @parameterized.expand([("volume", "volume"), ("none", None)])
    def test_other_normalisations(self, _, normalize):
        volume = _VOLUME.astype(np.float32)
        scaled = (volume - volume.min()) / (volume.max() - volume.min()) * 2 - 1 if normalize else volume
        expected = _whole(_VOLUME, 2, normalized=scaled)
        torch.testing.assert_close(_blockwise(_VOLUME, (4, 16, 16), 2, normalize=normalize), expected)

    def test_replicate_padding(self):
        expected = _whole(_VOLUME, 2, mode="edge")
        torch.testing.assert_close(_blockwise(_VOLUME, (4, 16, 16), 2, padding_mode="replicate"), expected)

    def test_uint8_target_stores_rounded_255_p(self):
        out = np.zeros((3, *_VOLUME.shape), np.uint8)
        predict_blockwise(_NET, _VOLUME, out, (4, 16, 16), 2, progress=False)
        expected = np.rint(_whole(_VOLUME, 2).numpy() * 255).astype(np.uint8)
        np.testing.assert_array_equal(out, expected)

    def test_memory_is_bounded_by_one_block(self):
        source = _ReadLog(_VOLUME)
        with self.assertLogs("emdiff_components.engines.blockwise", "INFO") as logs:
            predict_blockwise(_NET, source, np.zeros((3, 10, 37, 41), np.float32), (4, 16, 16), 2, progress=False)
        self.assertIn("3x3x3 grid of 27 blocks", logs.output[0])
        stats_reads, block_reads = source.reads[:2], source.reads[2:]
        self.assertEqual(stats_reads, [(8, 37, 41), (2, 37, 41)])  # slices_per_read=8 slices at a time
        self.assertEqual(len(block_reads), 27)
        self.assertTrue(all(z <= 8 and y <= 20 and x <= 20 for z, y, x in block_reads), block_reads)

    def test_errors(self):
        target = np.zeros((3, *_VOLUME.shape), np.float32)
        with self.assertRaisesRegex(ValueError, r"block_shape \+ 2 \* context = \(8, 20, 20\).*divisible_by"):
            predict_blockwise(_NET, _VOLUME, target, (4, 16, 16), 2, divisible_by=(1, 16, 16))
        predict_blockwise(_NET, _VOLUME, target, (4, 12, 12), 2, divisible_by=(1, 16, 16), progress=False)
        with self.assertRaisesRegex(ValueError, "context"):
            predict_blockwise(_NET, _VOLUME, target, (4, 16, 16), -1)
        with self.assertRaisesRegex(ValueError, "block_shape"):
            predict_blockwise(_NET, _VOLUME, target, (4, 16), 2)
        with self.assertRaisesRegex(ValueError, "padding_mode"):
            predict_blockwise(_NET, _VOLUME, target, 8, 2, padding_mode="wrap")
        with self.assertRaisesRegex(ValueError, r"3D \(Z, Y, X\)"):
            predict_blockwise(_NET, _VOLUME[0], target, 8, 2)
        with self.assertRaisesRegex(ValueError, "target must have shape"):
            predict_blockwise(_NET, _VOLUME, target[:, 1:], 8, 2)
        with self.assertRaisesRegex(ValueError, "dtype"):
            predict_blockwise(_NET, _VOLUME, target.astype(np.int16), 8, 2)
        with self.assertRaisesRegex(ValueError, "2 channels, target has 3"):
            predict_blockwise(lambda x: x.repeat(1, 2, 1, 1, 1), _VOLUME, target, 8, 2, progress=False)
        with self.assertRaisesRegex(ValueError, "predictor must map"):
            predict_blockwise(lambda x: x[..., 1:], _VOLUME, target, 8, 2, progress=False)


class TestSliceIntensityRange(unittest.TestCase):
    def test_values_and_errors(self):
        low, high = slice_intensity_range(_VOLUME, slices_per_read=3)
        np.testing.assert_array_equal(low, _VOLUME.min(axis=(1, 2)))
        np.testing.assert_array_equal(high, _VOLUME.max(axis=(1, 2)))
        self.assertEqual((low[3], high[3]), (17.0, 17.0))
        bad = _VOLUME.astype(np.float32)
        bad[6, 2, 2] = np.nan
        with self.assertRaisesRegex(ValueError, r"NaN or inf in z-slices \[6\]"):
            slice_intensity_range(bad)
        with self.assertRaisesRegex(ValueError, "slices_per_read"):
            slice_intensity_range(_VOLUME, slices_per_read=0)


class TestPredictVolumeFile(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.dir = self._tmp.name
        self.input = os.path.join(self.dir, "raw.h5")
        with h5py.File(self.input, "w") as handle:
            handle.create_dataset("main", data=_VOLUME[None], chunks=(1, 4, 16, 16))  # (1, Z, Y, X) on disk
            handle["main"].attrs["resolution"] = (40.0, 4.0, 4.0)

    def tearDown(self):
        self._tmp.cleanup()

    @parameterized.expand(
        [
            ("zarr_float32", "affs.zarr", "float32", (40.0, 4.0, 4.0)),
            ("h5_uint8", "affs.h5:/affs", "uint8", (40.0, 4.0, 4.0)),
            ("tif_float32", "affs.tif", "float32", (40.0, 4.0, 4.0)),
            ("npy_uint8", "affs.npy", "uint8", None),
        ]
    )
    def test_file_round_trip(self, _, name, dtype, voxel):
        output = os.path.join(self.dir, name)
        shape = predict_volume_file(_NET, self.input + ":/main", output, (4, 16, 16), 2, dtype, progress=False)
        self.assertEqual(shape, (3, 10, 37, 41))
        expected = _whole(_VOLUME, 2).numpy()
        if dtype == "uint8":
            expected = np.rint(expected * 255).astype(np.uint8)
        with open_volume(output) as back:
            self.assertEqual((back.shape, back.dtype, back.voxel_size), (shape, np.dtype(dtype), voxel))
            np.testing.assert_allclose(back[...], expected, atol=1e-6, rtol=0)
        if not name.endswith((".zarr", ".npy")):
            self.assertEqual(read_voxel_size(output), voxel)

    def test_killed_run_leaves_no_output(self):
        calls = []

        def dies_at_third_block(x):
            calls.append(1)
            if len(calls) == 3:
                raise RuntimeError("killed")
            return _NET(x)

        for name in ("affs.zarr", "affs.h5", "affs.tif", "affs.npy"):
            with self.assertRaisesRegex(RuntimeError, "killed"):
                predict_volume_file(dies_at_third_block, self.input, os.path.join(self.dir, name), 8, 2, progress=False)
            calls.clear()
        self.assertEqual(os.listdir(self.dir), ["raw.h5"])  # nor any temporary file

    def test_errors(self):
        out = os.path.join(self.dir, "out.zarr")
        with self.assertRaisesRegex(ImageReadError, r"no dataset 'raw'.*\['main'\]"):
            predict_volume_file(_NET, self.input + ":/raw", out, 8, 2)
        with self.assertRaisesRegex(ImageReadError, r"'\.png'.*supported extensions"):
            predict_volume_file(_NET, self.input, os.path.join(self.dir, "out.png"), 8, 2)
        with self.assertRaisesRegex(ValueError, "output_dtype"):
            predict_volume_file(_NET, self.input, out, 8, 2, output_dtype="int16")
        with self.assertRaisesRegex(ValueError, "divisible_by"):
            predict_volume_file(_NET, self.input, out, 8, 2, divisible_by=16)
        with self.assertRaisesRegex(ValueError, "is the input file"):
            predict_volume_file(_NET, self.input, self.input + ":/affs", 8, 2)
        flat = os.path.join(self.dir, "flat.npy")
        np.save(flat, np.zeros((5, 6)))
        with self.assertRaisesRegex(ImageReadError, r"flat\.npy.*2D.*3D"):
            predict_volume_file(_NET, flat, out, 8, 2)
        self.assertEqual(sorted(os.listdir(self.dir)), ["flat.npy", "raw.h5"])

    def test_create_volume_then_predict(self):
        # the two-step form: predict_blockwise between open_volume and create_volume
        output = os.path.join(self.dir, "two.zarr:/pred")
        with open_volume(self.input, ndim=3) as raw, create_volume(output, (3, *raw.shape), like=raw) as target:
            predict_blockwise(_NET, raw, target, (4, 16, 16), 2, progress=False)
        with open_volume(output) as back:
            torch.testing.assert_close(torch.from_numpy(back[...]), _whole(_VOLUME, 2))


if __name__ == "__main__":
    unittest.main()
