"""Tests of LabelToAffinityd (dictionary twin of LabelToAffinity)."""

from __future__ import annotations

import unittest

import numpy as np

from emdiff_components.transforms import LabelToAffinityd

# (1, Z=2, Y=1, X=3): label 1 continues in z at x = 0 only; label 2 sits at x = 1, 2 of section 0
LABELS = np.array([[[[1, 2, 2]], [[1, 0, 5]]]])
# z: section 0 = foreground; section 1: 1 = 1, 0, 5 vs 2 -> 0.  y: one row -> foreground.  x: column 0 = foreground,
# then section 0: 2 vs 1 -> 0, 2 = 2 -> 1; section 1: 0 -> 0, 5 vs 0 -> 0
EXPECTED = np.array(
    [[[[1, 1, 1]], [[1, 0, 0]]], [[[1, 1, 1]], [[1, 0, 1]]], [[[1, 0, 1]], [[1, 0, 0]]]], dtype=np.float32
)


class TestLabelToAffinityd(unittest.TestCase):
    def test_new_key(self):
        d = LabelToAffinityd(widen_border=None)({"image": np.zeros((1, 2, 1, 3)), "label": LABELS})
        np.testing.assert_array_equal(d["affinity"], EXPECTED)
        self.assertIs(d["label"], LABELS)  # the labels stay for the metrics

    def test_configurable_keys(self):
        d = LabelToAffinityd("seg", output_keys=None, widen_border=None)({"seg": LABELS})
        np.testing.assert_array_equal(d["seg"], EXPECTED)
        d = LabelToAffinityd(("a", "b"), ("aff_a", "aff_b"), widen_border=None)({"a": LABELS, "b": LABELS * 0})
        np.testing.assert_array_equal(d["aff_a"], EXPECTED)
        np.testing.assert_array_equal(d["aff_b"], 0)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "LabelToAffinityd: output_keys needs one key per key"):
            LabelToAffinityd(("a", "b"), "aff")
        with self.assertRaisesRegex(ValueError, "LabelToAffinity: labels must be >= 0"):
            LabelToAffinityd()({"label": -LABELS})
        with self.assertRaises(KeyError):
            LabelToAffinityd()({"image": LABELS})


if __name__ == "__main__":
    unittest.main()
