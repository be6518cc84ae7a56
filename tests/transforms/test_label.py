from __future__ import annotations

import unittest

import numpy as np
import torch
from parameterized import parameterized

from emdiff_components.transforms import (
    LabelToSignedMask,
    LabelToSignedMaskd,
    SignedMaskToLabel,
    SignedMaskToLabeld,
)

CASES = [
    ("binary", 2, np.array([[[0, 1], [1, 0]]]), np.array([[[-1.0, 1.0], [1.0, -1.0]]])),
    ("three", 3, np.array([[[0, 2]]]), np.array([[[1.0, -1.0]], [[-1.0, -1.0]], [[-1.0, 1.0]]])),
]


class TestLabelToSignedMask(unittest.TestCase):
    @parameterized.expand(CASES)
    def test_values_and_round_trip(self, _, k, label, expected):
        mask = LabelToSignedMask(k)(label)
        self.assertIsInstance(mask, np.ndarray)
        np.testing.assert_array_equal(mask, expected)
        np.testing.assert_array_equal(SignedMaskToLabel()(mask), label)
        back = SignedMaskToLabel()(torch.as_tensor(mask))
        self.assertIsInstance(back, torch.Tensor)

    def test_dict_twins(self):
        d = LabelToSignedMaskd("label", num_classes=3)({"label": np.array([[[0, 2]]]), "other": 1})
        self.assertEqual(d["label"].shape, (3, 1, 2))
        self.assertEqual(d["other"], 1)
        np.testing.assert_array_equal(SignedMaskToLabeld("label")(d)["label"], [[[0, 2]]])

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "num_classes"):
            LabelToSignedMask(1)
        with self.assertRaisesRegex(ValueError, r"\[0, 1\]"):
            LabelToSignedMask(2)(np.array([[[0, 2]]]))
        with self.assertRaisesRegex(ValueError, "one channel"):
            LabelToSignedMask(2)(np.zeros((2, 3, 3)))


if __name__ == "__main__":
    unittest.main()
