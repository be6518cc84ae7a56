from __future__ import annotations

import unittest

import numpy as np
import torch

from emdiff_components.transforms.intensity import ScaleSliceIntensity, ScaleSliceIntensityd


class TestScaleSliceIntensity(unittest.TestCase):
    def test_every_slice_on_its_own(self):
        volume = np.stack([np.array([[0.0, 10.0], [5.0, 10.0]]), np.array([[100.0, 200.0], [150.0, 100.0]]),
                           np.full((2, 2), 7.0)])[None]  # (1, 3, 2, 2); the last slice is constant
        out = ScaleSliceIntensity()(volume)
        np.testing.assert_allclose(out[0, 0], [[-1, 1], [0, 1]])  # (x - 0) / 10 * 2 - 1
        np.testing.assert_allclose(out[0, 1], [[-1, 1], [0, -1]])
        np.testing.assert_allclose(out[0, 2], 0.0)  # a constant slice sits mid-range
        self.assertEqual(out.dtype, np.float32)

    def test_dictionary_and_tensor(self):
        d = ScaleSliceIntensityd("image", minv=0.0, maxv=1.0)({"image": torch.tensor([[[[2.0, 4.0]]]])})
        torch.testing.assert_close(d["image"], torch.tensor([[[[0.0, 1.0]]]]))

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "ScaleSliceIntensity: minv"):
            ScaleSliceIntensity(1.0, 0.0)
        with self.assertRaisesRegex(ValueError, "ScaleSliceIntensity: expected"):
            ScaleSliceIntensity()(np.zeros((4, 4)))


if __name__ == "__main__":
    unittest.main()
