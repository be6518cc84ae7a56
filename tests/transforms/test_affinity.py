"""Tests of LabelToAffinity against affinities worked out by hand."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from parameterized import parameterized

from emdiff_components.transforms import LabelToAffinity

# (Z=2, Y=3, X=4); 0 is background
LABELS = np.array(
    [
        [[1, 1, 2, 2], [1, 1, 2, 2], [0, 3, 3, 3]],
        [[1, 1, 1, 2], [0, 1, 2, 2], [3, 3, 3, 3]],
    ]
)
# Channel c at voxel p: labels of p and p - e_c equal and > 0; the first plane of each axis is (label > 0).
EXPECTED = np.array(
    [
        [  # z: plane 0 = foreground of section 0; section 1 compared with section 0
            [[1, 1, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1]],
            [[1, 1, 0, 1], [0, 1, 1, 1], [0, 1, 1, 1]],
        ],
        [  # y: row 0 = foreground of row 0; row y compared with row y - 1
            [[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0]],
            [[1, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 0]],
        ],
        [  # x: column 0 = foreground of column 0; column x compared with column x - 1
            [[1, 1, 0, 1], [1, 1, 0, 1], [0, 0, 1, 1]],
            [[1, 1, 1, 0], [0, 0, 0, 1], [1, 1, 1, 1]],
        ],
    ],
    dtype=np.float32,
)

# one section: labels 1 | 2 side by side over label 3 (Z=1, Y=5, X=6)
SECTION = np.array([[[1, 1, 1, 2, 2, 2]] * 2 + [[3] * 6] * 3])
# boundary voxels (label differs from the -Y or -X neighbour): (0, 3), (1, 3) and all of row 2
WIDENED_0 = np.array([[[1, 1, 1, 0, 2, 2]] * 2 + [[0] * 6] + [[3] * 6] * 2])
# one 3x3 dilation of those: rows 1-3 whole, columns 2-4 of row 0
WIDENED_1 = np.array([[[1, 1, 0, 0, 0, 2]] + [[0] * 6] * 3 + [[3] * 6]])

BAD_LABELS = [
    ("negative", np.array([[[0, -1]]]), "must be >= 0"),
    ("fractional", np.array([[[0.0, 1.5]]]), "whole numbers"),
    ("nan", np.array([[[0.0, np.nan]]]), "whole numbers"),
    ("two_d", np.zeros((4, 4), dtype=int), r"expected labels \(Z, Y, X\)"),
    ("two_channels", np.zeros((2, 1, 4, 4), dtype=int), r"expected labels \(Z, Y, X\)"),
    ("complex", np.zeros((1, 2, 2), dtype=complex), "must be integers"),
]


class TestLabelToAffinity(unittest.TestCase):
    def test_hand_made_affinities(self):
        out = LabelToAffinity(widen_border=None)(LABELS)
        self.assertEqual(out.dtype, np.float32)
        np.testing.assert_array_equal(out, EXPECTED)
        # without replicate padding the first plane of each axis is 0
        flat = LabelToAffinity(widen_border=None, replicate_border=False)(LABELS[None])
        np.testing.assert_array_equal(flat[0, 0], 0)
        np.testing.assert_array_equal(flat[1, :, 0], 0)
        np.testing.assert_array_equal(flat[2, :, :, 0], 0)
        np.testing.assert_array_equal(flat[0, 1:], EXPECTED[0, 1:])

    def test_border_widening(self):
        np.testing.assert_array_equal(LabelToAffinity(0).widen(SECTION), WIDENED_0)
        np.testing.assert_array_equal(LabelToAffinity(1).widen(SECTION), WIDENED_1)
        np.testing.assert_array_equal(LabelToAffinity(None).widen(SECTION), SECTION)
        out = LabelToAffinity()(torch.as_tensor(SECTION[None]))  # the public default: widen once, replicate
        self.assertIsInstance(out, torch.Tensor)
        self.assertEqual(out.dtype, torch.float32)
        fg = (WIDENED_1 > 0).astype(np.float32)
        np.testing.assert_array_equal(out[0].numpy(), fg)  # a single section: z affinity = foreground
        np.testing.assert_array_equal(out[1, 0, 0].numpy(), fg[0, 0])  # y: row 0 replicated ...
        np.testing.assert_array_equal(out[1, 0, 1:].numpy(), 0)  # ... row 4 (label 3) sits under erased row 3
        np.testing.assert_array_equal(out[2, 0].numpy(), [[1, 1, 0, 0, 0, 0]] + [[0] * 6] * 3 + [[1] * 6])

    def test_float_labels_with_whole_numbers(self):
        np.testing.assert_array_equal(LabelToAffinity(None)(LABELS.astype(np.float64)), EXPECTED)

    @parameterized.expand(BAD_LABELS)
    def test_bad_labels(self, _, labels, match):
        with self.assertRaisesRegex(ValueError, f"LabelToAffinity: .*{match}"):
            LabelToAffinity()(labels)

    def test_bad_widen_border(self):
        for value in (-1, 1.5, True):
            with self.assertRaisesRegex(ValueError, "LabelToAffinity: widen_border"):
                LabelToAffinity(widen_border=value)


if __name__ == "__main__":
    unittest.main()
