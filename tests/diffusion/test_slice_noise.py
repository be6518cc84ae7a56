from __future__ import annotations

import math
import unittest

import torch
from parameterized import parameterized

from emdiff_components.diffusion import SliceConsistentNoise, slice_consistent_noise

N = 40_000  # independent samples per slice pair: standard errors below are for this n


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def five_se_corr(r: float, n: int = N) -> float:
    """Five standard errors of a sample correlation (normal data): (1 - r^2) / sqrt(n)."""
    return 5 * (1 - r * r) / math.sqrt(n)


CORRELATION_CASES = [("paper", 0.7), ("weak", 0.3), ("strong", 2.0)]


class TestSliceConsistentNoise(unittest.TestCase):
    @parameterized.expand(CORRELATION_CASES)
    def test_unit_variance_and_slice_correlation(self, _, rho):
        noise = slice_consistent_noise((N, 1, 3, 1, 1), rho=rho, generator=torch.Generator().manual_seed(1))
        slices = [noise[:, 0, z].flatten() for z in range(3)]
        for s in slices:
            self.assertAlmostEqual(float(s.double().var()), 1.0, delta=5 * math.sqrt(2 / N))
            self.assertAlmostEqual(float(s.double().mean()), 0.0, delta=5 / math.sqrt(N))
        expected = rho**2 / (1 + rho**2)
        for i, j in ((0, 1), (0, 2), (1, 2)):
            self.assertAlmostEqual(correlation(slices[i], slices[j]), expected, delta=five_se_corr(expected))

    def test_pixels_and_batch_do_not_share_the_base(self):
        noise = slice_consistent_noise((N, 2, 2, 1, 2), rho=0.7, generator=torch.Generator().manual_seed(2))
        for a, b in ((noise[:, 0, 0, 0, 0], noise[:, 0, 1, 0, 1]), (noise[:, 0, 0, 0, 0], noise[:, 1, 1, 0, 0])):
            self.assertAlmostEqual(correlation(a, b), 0.0, delta=five_se_corr(0.0))
        self.assertAlmostEqual(correlation(noise[:-1, 0, 0, 0, 0], noise[1:, 0, 1, 0, 0]), 0.0, delta=five_se_corr(0))

    def test_rho_zero_is_the_eps_draw(self):
        """rho = 0: independent slices, exactly the second draw (after the base) of the generator."""
        shape = (2, 1, 4, 3, 3)
        noise = slice_consistent_noise(shape, rho=0.0, generator=torch.Generator().manual_seed(3))
        g = torch.Generator().manual_seed(3)
        torch.randn((2, 1, 1, 3, 3), generator=g)
        torch.testing.assert_close(noise, torch.randn(shape, generator=g), rtol=0, atol=0)
        wide = slice_consistent_noise((N, 1, 2, 1, 1), rho=0.0, generator=torch.Generator().manual_seed(4))
        self.assertAlmostEqual(correlation(wide[:, 0, 0], wide[:, 0, 1]), 0.0, delta=five_se_corr(0.0))

    def test_formula_against_hand_mix(self):
        shape = (1, 2, 5, 4)
        g = torch.Generator().manual_seed(5)
        base, eps = torch.randn((1, 2, 1, 4), generator=g), torch.randn(shape, generator=g)
        rho = 0.7
        expected = rho / math.sqrt(1 + rho**2) * base + 1 / math.sqrt(1 + rho**2) * eps
        out = slice_consistent_noise(shape, rho=rho, slice_dim=-2, generator=torch.Generator().manual_seed(5))
        torch.testing.assert_close(out, expected)

    def test_base_slice_as_the_public_sampler(self):
        """base_slice = 0: slice 0 is the base itself, correlation rho / sqrt(1 + rho^2) with the mixed slices."""
        rho = 0.7
        generator = torch.Generator().manual_seed(6)
        noise = slice_consistent_noise((N, 3), rho=rho, slice_dim=1, base_slice=0, generator=generator)
        g = torch.Generator().manual_seed(6)
        torch.testing.assert_close(noise[:, :1], torch.randn((N, 1), generator=g))
        self.assertAlmostEqual(float(noise[:, 0].double().var()), 1.0, delta=5 * math.sqrt(2 / N))
        to_base = rho / math.sqrt(1 + rho**2)
        mixed = rho**2 / (1 + rho**2)
        self.assertAlmostEqual(correlation(noise[:, 0], noise[:, 2]), to_base, delta=five_se_corr(to_base))
        self.assertAlmostEqual(correlation(noise[:, 1], noise[:, 2]), mixed, delta=five_se_corr(mixed))

    def test_same_seed_same_noise_and_provider(self):
        a = slice_consistent_noise((2, 1, 3, 4, 4), generator=torch.Generator().manual_seed(7))
        b = SliceConsistentNoise(rho=0.7)((2, 1, 3, 4, 4), generator=torch.Generator().manual_seed(7))
        c = slice_consistent_noise((2, 1, 3, 4, 4), generator=torch.Generator().manual_seed(8))
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        self.assertGreater(float((a - c).abs().max()), 0.1)
        d = SliceConsistentNoise()((1, 1, 2, 2), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
        self.assertEqual(d.dtype, torch.float64)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "slice_consistent_noise: rho"):
            slice_consistent_noise((1, 1, 2), rho=-0.1)
        with self.assertRaisesRegex(ValueError, "slice_consistent_noise: rho"):
            slice_consistent_noise((1, 1, 2), rho=float("inf"))
        with self.assertRaisesRegex(ValueError, "slice_dim"):
            slice_consistent_noise((1, 1, 2), slice_dim=3)
        with self.assertRaisesRegex(ValueError, "shape"):
            slice_consistent_noise((1, 0, 2))
        with self.assertRaisesRegex(ValueError, "base_slice"):
            slice_consistent_noise((1, 1, 2), base_slice=2)
        with self.assertRaisesRegex(ValueError, "SliceConsistentNoise: rho"):
            SliceConsistentNoise(rho=-1.0)
        with self.assertRaisesRegex(ValueError, "SliceConsistentNoise: slice_dim"):
            SliceConsistentNoise(slice_dim=1.5)
        with self.assertRaisesRegex(ValueError, "slice_dim"):
            SliceConsistentNoise(slice_dim=4)((1, 1, 2))


if __name__ == "__main__":
    unittest.main()
