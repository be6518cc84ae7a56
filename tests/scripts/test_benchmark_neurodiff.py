"""scripts/benchmark_neurodiff.py, the tile-size comparison: fitting the held-back volume, and one tiny run of both
tile sizes through the bundle (an untrained narrow network, DDIM 2 steps, in this process)."""

from __future__ import annotations

import math
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from bundle_testing import load_script
from monai.bundle import ConfigParser
from parameterized import parameterized

from emdiff_components.data import write_volume_case, write_volume_dataset_json

REPO = Path(__file__).resolve().parents[2]
benchmark = load_script("benchmark_neurodiff")

# a three-level NeuroDiff network, stride (1, 8, 8): tiles of 4 x 8k x 8k
TINY = {
    "channels": [8, 8, 8],
    "time_channels": 8,
    "norm_num_groups": 8,
    "msc_channels": [8, 8, 8, 8],
    "patch_size": [4, 32, 32],
}

# (name, volume, shape, expected): symmetric mirroring repeats the face voxel; larger volumes are cropped
FITS = [
    ("mirror", np.arange(5), (9,), np.array([1, 0, 0, 1, 2, 3, 4, 4, 3])),
    ("crop", np.arange(10), (4,), np.arange(4)),
    ("crop_and_mirror", np.arange(6).reshape(3, 2), (2, 4), np.array([[0, 0, 1, 1], [2, 2, 3, 3]])),
]


def tiny_model(root: Path) -> dict:
    """A dataset with one held-back 6 x 50 x 50 case (blocky neurons, textured EM) and an untrained checkpoint."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:50, :50]
    label = np.broadcast_to(1 + (yy // 12) * 5 + xx // 12, (6, 50, 50)).astype(np.uint32)
    image = (100 + 20 * (label % 3) + rng.integers(0, 40, (6, 50, 50))).astype(np.uint8)
    data = root / "data"
    write_volume_case(data, "Ts", "case", image, label)
    write_volume_dataset_json(data, "tiny", (10.0, 10.0, 10.0))
    common = {"bundle_root": str(root / "bundle"), "dataset_dir": str(data), "progress": False, **TINY}
    parser = ConfigParser()
    parser.read_config(str(benchmark.CONFIGS / "inference.json"))
    parser.update(common)
    torch.manual_seed(0)
    (root / "bundle" / "models").mkdir(parents=True)
    torch.save(parser.get_parsed_content("network_def").state_dict(), root / "bundle" / "models" / "model.pt")
    return {"common": common, "data": str(data), "budget_minutes": 0.0, "iterations": 0}


class TestFitVolume(unittest.TestCase):
    @parameterized.expand(FITS)
    def test_values(self, _, volume, shape, expected):
        np.testing.assert_array_equal(benchmark.fit_volume(volume, shape), expected)


class TestTiles(unittest.TestCase):
    def setUp(self):
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a busy machine's cores are oversubscribed by more threads

    def tearDown(self):
        torch.set_num_threads(self.threads)

    def test_both_tile_sizes_on_one_checkpoint(self):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            model = tiny_model(root)
            result = benchmark.tiles(
                model, root, 1, volume=(4, 64, 64), sizes=(32, 64), setting=("ddim", 2), fresh_process=False
            )
            # the whole-slice tile again, to read the tensors the row was computed from
            row, pred, real, overlap = benchmark.evaluate(
                model["common"], str(root / "data_tiles"), str(root / "again"), "ddim", 2, [4, 64, 64]
            )
        self.assertEqual(list(result["rows"]), ["32", "64"])
        self.assertEqual([r["tile"] for r in result["rows"].values()], [[4, 32, 32], [4, 64, 64]])
        self.assertEqual((result["seam_tile"], result["volume"], overlap), (32, [4, 64, 64], 0.25))
        for r in result["rows"].values():
            for key in ("mae", "seam_y", "seam_x", "seconds", "peak_rss_gb"):
                self.assertTrue(math.isfinite(r[key]) and r[key] > 0, (key, r))
        # the bundle's MAE (its metrics.csv) is numpy's on the synthesized and real EM
        self.assertEqual(pred.shape, (1, 1, 4, 64, 64))
        expected = np.abs(np.asarray(pred) - np.asarray(real)).mean()
        self.assertAlmostEqual(row["mae"], float(expected), places=5)
        # same seed, same steps, same tiles: the run repeats the tiles row exactly
        self.assertEqual(row["mae"], result["rows"]["64"]["mae"])
        # the real EM is the 50 x 50 case mirrored out by 7 voxels: the face column repeated, no new edge
        real = np.asarray(real)[0, 0]
        np.testing.assert_array_equal(real[:, :, 6], real[:, :, 7])
        np.testing.assert_array_equal(real[:, :, 5], real[:, :, 8])
        np.testing.assert_array_equal(real[:, 56, :], real[:, 57, :])
        self.assertGreater(np.abs(real[:, :, 7] - real[:, :, 8]).max(), 0)


class TestTrainNarrowModel(unittest.TestCase):
    def test_progress_counts_to_the_time_budget(self):
        """A budget shorter than one iteration stops after it; the progress line then counts to 1, not to the
        config's num_steps (100000), so the last line logged is "iteration 1/1"."""
        with tempfile.TemporaryDirectory() as tmp, mock.patch.object(benchmark, "QUALITY_MODEL", TINY):
            root = Path(tmp)
            model = tiny_model(root)
            rng = np.random.default_rng(1)
            label = np.broadcast_to(1 + np.arange(50)[None, :, None] // 10, (6, 50, 50)).astype(np.uint32)
            write_volume_case(Path(model["data"]), "Tr", "train", rng.integers(0, 255, (6, 50, 50), np.uint8), label)
            with self.assertLogs("emdiff_components.engines.progress", "INFO") as logs:
                result = benchmark.train_narrow_model(root, 0.001, root / "run", Path(model["data"]))
        self.assertEqual(result["iterations"], 1)
        self.assertIn("iteration 1/1 (100 %)", logs.output[-1])


if __name__ == "__main__":
    unittest.main()
