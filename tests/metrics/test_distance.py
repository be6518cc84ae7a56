from __future__ import annotations

import math
import unittest

import numpy as np
from parameterized import parameterized
from scipy.ndimage import distance_transform_edt

from emdiff_components.metrics import hausdorff_distances


def square(shape, top, left, size):
    m = np.zeros(shape, dtype=np.int64)
    m[top : top + size, left : left + size] = 1
    return m


def brute_force_hd(a: np.ndarray, b: np.ndarray, spacing=(1.0, 1.0)) -> float:
    """Independent symmetric Hausdorff distance over the mask boundaries (scipy EDT of the other boundary)."""

    def boundary(m):
        inner = np.zeros_like(m, dtype=bool)
        inner[1:-1, 1:-1] = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
        return m.astype(bool) & ~inner

    ba, bb = boundary(a.astype(bool)), boundary(b.astype(bool))
    da = distance_transform_edt(~ba, sampling=spacing)
    db = distance_transform_edt(~bb, sampling=spacing)
    return float(max(db[ba].max(), da[bb].max()))


# (name, pred, truth, expected hd_max of class 1), distances by hand
HAND = [
    ("shift_3_rows", square((32, 32), 5, 5, 8), square((32, 32), 8, 5, 8), 3.0),
    ("diagonal_shift", square((32, 32), 5, 5, 8), square((32, 32), 8, 9, 8), 5.0),  # 3-4-5 triangle
    ("identical", square((16, 24), 2, 3, 5), square((16, 24), 2, 3, 5), 0.0),
]


class TestHausdorffDistances(unittest.TestCase):
    @parameterized.expand(HAND)
    def test_hand_values(self, _, pred, truth, expected):
        result = hausdorff_distances(pred, truth, num_classes=2)
        self.assertAlmostEqual(result["hd_max"][1], expected, places=5)
        self.assertAlmostEqual(result["hd_max"][1], brute_force_hd(pred, truth), places=5)
        self.assertLessEqual(result["hd95"][1], result["hd_max"][1] + 1e-9)

    def test_spacing_scales(self):
        pred, truth = square((32, 32), 5, 5, 8), square((32, 32), 8, 5, 8)
        result = hausdorff_distances(pred, truth, spacing=(0.5, 2.0))
        self.assertAlmostEqual(result["hd_max"][1], 1.5, places=5)  # 3 rows of 0.5 mm

    def test_empty_conventions(self):
        empty = np.zeros((16, 16), dtype=np.int64)
        both = hausdorff_distances(empty, empty)
        self.assertEqual(both["hd_max"][1], 0.0)
        one = hausdorff_distances(square((16, 16), 2, 2, 4), empty)
        self.assertTrue(math.isnan(one["hd_max"][1]) and math.isnan(one["hd95"][1]))

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "shape"):
            hausdorff_distances(np.zeros((4, 4)), np.zeros((4, 5)))
        with self.assertRaisesRegex(ValueError, "percentile"):
            hausdorff_distances(np.zeros((4, 4)), np.zeros((4, 4)), percentile=0)


if __name__ == "__main__":
    unittest.main()
