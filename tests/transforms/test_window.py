"""Tests of ScaleIntensityWindow (min-max without a window, clip-and-scale with one)."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from parameterized import parameterized

from emdiff_components.transforms import ScaleIntensityWindow

# (name, intensity_range, minv, maxv, input, expected): expected values worked out by hand
VALUE_CASES = [
    ("minmax", None, -1.0, 1.0, [[0.0, 5.0, 10.0]], [[-1.0, 0.0, 1.0]]),
    ("minmax_offset", None, 0.0, 1.0, [[-4.0, -3.0, 0.0]], [[0.0, 0.25, 1.0]]),
    # lung window: -1000 -> -1, -300 (the middle, 700 / 1400) -> 0, 400 -> 1, values outside clipped
    ("ct_window", (-1000, 400), -1.0, 1.0, [[-2000.0, -1000.0, -300.0, 400.0, 1000.0]], [[-1.0, -1.0, 0.0, 1.0, 1.0]]),
    ("window_unit", (0, 200), 0.0, 1.0, [[50.0, 150.0, 250.0]], [[0.25, 0.75, 1.0]]),
]

BAD_ARGS = [
    ("reversed_window", {"intensity_range": (400, -1000)}, "intensity_range"),
    ("three_values", {"intensity_range": (0, 1, 2)}, "intensity_range"),
    ("empty_output", {"minv": 1.0, "maxv": 1.0}, "minv"),
]


class TestScaleIntensityWindow(unittest.TestCase):
    @parameterized.expand(VALUE_CASES)
    def test_values(self, _, intensity_range, minv, maxv, image, expected):
        scale = ScaleIntensityWindow(intensity_range, minv, maxv)
        np.testing.assert_allclose(np.asarray(scale(np.array(image, np.float32))), expected, atol=1e-6)
        out = scale(torch.tensor(image))
        self.assertIsInstance(out, torch.Tensor)
        np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)

    def test_window_is_fixed_but_minmax_follows_the_image(self):
        # the same grey value maps to the same output under a window, whatever else the image holds
        window = ScaleIntensityWindow((0, 100))
        minmax = ScaleIntensityWindow()
        a, b = np.array([[0.0, 50.0, 100.0]]), np.array([[50.0, 60.0, 100.0]])
        self.assertEqual(float(np.asarray(window(a))[0, 1]), float(np.asarray(window(b))[0, 0]))
        self.assertNotEqual(float(np.asarray(minmax(a))[0, 1]), float(np.asarray(minmax(b))[0, 0]))

    @parameterized.expand(BAD_ARGS)
    def test_bad_arguments(self, _, kwargs, pattern):
        with self.assertRaisesRegex(ValueError, f"ScaleIntensityWindow.*{pattern}"):
            ScaleIntensityWindow(**kwargs)


if __name__ == "__main__":
    unittest.main()
