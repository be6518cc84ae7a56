from __future__ import annotations

import unittest

import numpy as np
import torch
from parameterized import parameterized

from emdiff_components.transforms import FuseEnsemble


def _binary_members() -> torch.Tensor:
    """Three members over four pixels, in [-1, 1]: votes 3/3, 2/3, 1/3, 0/3 (pixel 2's lone vote is confident)."""
    return torch.tensor([[1.0, 1.0, -1.0, -1.0], [1.0, 0.6, 1.0, -1.0], [1.0, -1.0, -1.0, -1.0]])[:, None, :]


# (method, expected fused mask of the four pixels) for _binary_members
BINARY_FUSIONS = [
    # probabilities (x + 1) / 2: pixel 1 mean (1 + 0.8 + 0) / 3 = 0.6 > 0.5; pixel 2 mean 1/3
    ("mean", [1, 1, 0, 0]),
    ("majority", [1, 1, 0, 0]),
    ("staple", [1, 1, 0, 0]),
]


class TestFuseEnsemble(unittest.TestCase):
    @parameterized.expand(BINARY_FUSIONS)
    def test_binary_members(self, method, expected):
        label, uncertainty = FuseEnsemble(3, method)(_binary_members())
        self.assertEqual(label.dtype, torch.int64)
        self.assertEqual(label.reshape(-1).tolist(), expected)
        f = torch.tensor([1.0, 2 / 3, 1 / 3, 0.0])  # foreground votes
        torch.testing.assert_close(uncertainty.reshape(-1), (f * (1 - f)).sqrt())

    def test_agreeing_members_have_zero_uncertainty(self):
        members = torch.tensor([[1.0, -1.0, 1.0]] * 4)[:, None, :]
        for method in ("mean", "majority", "staple"):
            label, uncertainty = FuseEnsemble(4, method)(members)
            self.assertEqual(label.reshape(-1).tolist(), [1, 0, 1])
            self.assertEqual(float(uncertainty.abs().max()), 0.0)

    def test_multiclass_mean_and_majority(self):
        # 3 members, 3 one-hot classes, 2 pixels; pixel 0 votes 1, 1, 2; pixel 1 votes 0, 1, 2 (tie -> class 0)
        votes = [[1, 0], [1, 1], [2, 2]]
        members = torch.full((3, 3, 1, 2), -1.0)
        for k, pixel_votes in enumerate(votes):
            for x, c in enumerate(pixel_votes):
                members[k, c, 0, x] = 1.0
        members[2, 0, 0, 1] = 0.9  # member 2 leans to class 0 too at pixel 1: the mean favours class 0 more
        stacked = members.reshape(9, 1, 2)
        label, uncertainty = FuseEnsemble(3, "majority")(stacked)
        self.assertEqual(label.reshape(-1).tolist(), [1, 0])
        a = torch.tensor([2 / 3, 1 / 3])  # members agreeing with the fused label
        torch.testing.assert_close(uncertainty.reshape(-1), (a * (1 - a)).sqrt())
        label, _ = FuseEnsemble(3, "mean")(stacked)
        self.assertEqual(label.reshape(-1).tolist(), [1, 0])
        with self.assertRaisesRegex(ValueError, "FuseEnsemble: STAPLE fuses binary masks only"):
            FuseEnsemble(3, "staple")(stacked)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "FuseEnsemble: num_samples"):
            FuseEnsemble(0)
        with self.assertRaisesRegex(ValueError, "FuseEnsemble: method"):
            FuseEnsemble(3, "vote")
        with self.assertRaisesRegex(ValueError, r"FuseEnsemble: expected \(K \* C"):
            FuseEnsemble(3)(torch.zeros(4, 2, 2))

    def test_numpy_in_numpy_out(self):
        label, uncertainty = FuseEnsemble(3, "majority")(_binary_members().numpy())
        self.assertIsInstance(label, np.ndarray)
        self.assertEqual(label.dtype, np.int64)
        self.assertEqual(uncertainty.dtype, np.float32)
        np.testing.assert_array_equal(label, [[[1, 1, 0, 0]]])
        f = np.array([1.0, 2 / 3, 1 / 3, 0.0])
        np.testing.assert_allclose(uncertainty, np.sqrt(f * (1 - f))[None, None], rtol=1e-6)


if __name__ == "__main__":
    unittest.main()
