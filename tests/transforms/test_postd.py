from __future__ import annotations

import unittest

import numpy as np
import torch

from emdiff_components.transforms import FuseEnsemble, FuseEnsembled


def _binary_members() -> torch.Tensor:
    """Three members over four pixels, in [-1, 1]: votes 3/3, 2/3, 1/3, 0/3."""
    return torch.tensor([[1.0, 1.0, -1.0, -1.0], [1.0, 0.6, 1.0, -1.0], [1.0, -1.0, -1.0, -1.0]])[:, None, :]


class TestFuseEnsembled(unittest.TestCase):
    def test_matches_array_transform(self):
        members = _binary_members().numpy()
        d = FuseEnsembled("pred", num_samples=3, method="majority")({"pred": members, "other": 7})
        label, uncertainty = FuseEnsemble(3, "majority")(members)
        self.assertIsInstance(d["pred"], np.ndarray)
        self.assertEqual(d["pred"].dtype, np.int64)
        np.testing.assert_array_equal(d["pred"], [[[1, 1, 0, 0]]])
        np.testing.assert_array_equal(d["pred"], label)
        np.testing.assert_array_equal(d["uncertainty"], uncertainty)
        self.assertEqual(d["other"], 7)

    def test_uncertainty_key_and_missing_key(self):
        fuser = FuseEnsembled("pred", num_samples=3, uncertainty_key="spread", allow_missing_keys=True)
        d = fuser({"pred": _binary_members()})
        f = torch.tensor([1.0, 2 / 3, 1 / 3, 0.0])
        torch.testing.assert_close(d["spread"].reshape(-1), (f * (1 - f)).sqrt())
        self.assertNotIn("uncertainty", d)
        self.assertEqual(fuser({"image": 1}), {"image": 1})

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, r"FuseEnsembled: one key holds the members, got keys \['a', 'b'\]"):
            FuseEnsembled(["a", "b"], num_samples=2)
        with self.assertRaisesRegex(ValueError, "FuseEnsemble: num_samples"):
            FuseEnsembled("pred", num_samples=0)
        with self.assertRaises(KeyError):
            FuseEnsembled("pred", num_samples=3)({"image": 1})


if __name__ == "__main__":
    unittest.main()
