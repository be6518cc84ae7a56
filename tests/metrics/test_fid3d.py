from __future__ import annotations

import unittest

import numpy as np
import torch
from scipy import linalg

from emdiff_components.metrics.fid3d import FID3D, fid_3d, volume_features


def _network() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ELU(), torch.nn.Conv3d(4, 6, 1)).eval()


def _frechet_numpy(a: np.ndarray, b: np.ndarray) -> float:
    """The FID formula written out independently: |mu_a - mu_b|^2 + tr(Sa + Sb - 2 sqrt(Sa Sb))."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(sa @ sb).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(sa + sb - 2 * root))


class TestVolumeFeatures(unittest.TestCase):
    def test_crops_and_pooling(self):
        net = _network()
        volume = torch.rand(5, 9, 8, generator=torch.Generator().manual_seed(1))
        feats = volume_features(net, volume, (4, 4, 4), "2")
        # crops start at z (0, 1), y (0, 4, 5), x (0, 4): 2 * 3 * 2 = 12 crops
        self.assertEqual(tuple(feats.shape), (12, 6))
        with torch.no_grad():
            last = net(volume[1:5, 5:9, 4:8][None, None]).mean(dim=(2, 3, 4))[0]
        torch.testing.assert_close(feats[-1], last)

    def test_unknown_layer_and_small_volume(self):
        with self.assertRaisesRegex(ValueError, "no layer 'encoder'"):
            volume_features(_network(), torch.zeros(4, 4, 4), (4, 4, 4), "encoder")
        with self.assertRaisesRegex(ValueError, "smaller than the crop"):
            volume_features(_network(), torch.zeros(3, 4, 4), (4, 4, 4), "2")


class TestFID3D(unittest.TestCase):
    def test_identical_is_zero_and_shift_grows(self):
        rng = np.random.default_rng(0)
        real = torch.as_tensor(rng.normal(size=(40, 3)))
        self.assertAlmostEqual(fid_3d(real, real.clone()), 0.0, places=6)
        small, large = fid_3d(real, real + 0.5), fid_3d(real, real + 2.0)
        self.assertAlmostEqual(small, 3 * 0.25, places=6)  # a pure mean shift adds |shift|^2 per feature
        self.assertAlmostEqual(large, 3 * 4.0, places=6)

    def test_matches_formula(self):
        rng = np.random.default_rng(1)
        a, b = rng.normal(size=(30, 4)), rng.normal(size=(25, 4)) * 1.5 + 0.3
        self.assertAlmostEqual(fid_3d(torch.as_tensor(a), torch.as_tensor(b)), _frechet_numpy(a, b), places=5)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "same C"):
            fid_3d(torch.zeros(3, 2), torch.zeros(3, 4))
        with self.assertRaisesRegex(ValueError, "at least 2"):
            fid_3d(torch.zeros(1, 2), torch.zeros(3, 2))
        with self.assertRaisesRegex(ValueError, "high > low"):
            FID3D(_network(), "2", input_range=(1, 1))

    def test_metric_accumulates_and_rescales(self):
        net = _network()
        gen = torch.Generator().manual_seed(2)
        real = torch.rand(2, 1, 8, 8, 8, generator=gen) * 2 - 1
        metric = FID3D(net, "2", patch_size=(4, 4, 4), divisible_by=(1, 1, 1))
        metric.reset()
        metric.update((real, real))
        self.assertAlmostEqual(metric.compute(), 0.0, places=6)
        metric.reset()
        metric.update((real * 0.5, real))
        shifted = metric.compute()
        expected = fid_3d(
            torch.cat([volume_features(net, (v + 1) / 2, (4, 4, 4), "2") for v in real]),
            torch.cat([volume_features(net, (v * 0.5 + 1) / 2, (4, 4, 4), "2") for v in real]),
        )
        self.assertAlmostEqual(shifted, expected, places=6)
        self.assertGreater(shifted, 0.0)


if __name__ == "__main__":
    unittest.main()
