"""Tests of ScaleIntensityWindowd, the dictionary twin of ScaleIntensityWindow."""

from __future__ import annotations

import unittest

import numpy as np
from parameterized import parameterized

from emdiff_components.transforms import ScaleIntensityWindowd

# (name, intensity_range, expected image): input image [-1000, -300, 400, 1000]
CASES = [
    ("minmax", None, [[-1.0, -0.3, 0.4, 1.0]]),  # (x + 1000) / 2000 * 2 - 1
    ("window", (-1000, 400), [[-1.0, 0.0, 1.0, 1.0]]),
]


class TestScaleIntensityWindowd(unittest.TestCase):
    @parameterized.expand(CASES)
    def test_scales_only_its_keys(self, _, intensity_range, expected):
        data = {"image": np.array([[-1000.0, -300.0, 400.0, 1000.0]]), "label": np.array([[0, 1, 1, 0]])}
        out = ScaleIntensityWindowd("image", intensity_range)(data)
        np.testing.assert_allclose(np.asarray(out["image"]), expected, atol=1e-6)
        np.testing.assert_array_equal(out["label"], [[0, 1, 1, 0]])
        np.testing.assert_array_equal(data["image"], [[-1000.0, -300.0, 400.0, 1000.0]])  # input dict untouched

    def test_missing_key(self):
        with self.assertRaises(KeyError):
            ScaleIntensityWindowd("image")({"label": np.zeros((1, 2))})
        out = ScaleIntensityWindowd("image", allow_missing_keys=True)({"label": np.zeros((1, 2))})
        self.assertEqual(set(out), {"label"})


if __name__ == "__main__":
    unittest.main()
