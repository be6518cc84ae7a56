from __future__ import annotations

import unittest

import numpy as np
import torch
from parameterized import parameterized

from emdiff_components.transforms import KeepSections, KeepSectionsd

# (Z, fraction, min_sections, expected section indices); the padding is numpy's reflect, half before, half after
CASES = [
    (10, 1.0, 1, list(range(10))),
    (10, 0.2, 1, [0, 1]),
    (10, 0.3, 6, [1, 0, 1, 2, 1, 0]),  # 3 kept, pad (1, 2): reflect -> 1 | 0 1 2 | 1 0
    (64, 0.04, 16, [2, 1, 0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2, 1, 0, 1]),
    (5, 0.1, 3, [0, 0, 0]),  # one section: reflection of a single section repeats it
]


class TestKeepSections(unittest.TestCase):
    @parameterized.expand(CASES)
    def test_sections(self, z, fraction, min_sections, expected):
        volume = np.arange(z).reshape(1, z, 1, 1) * np.ones((1, 1, 2, 2))
        out = KeepSections(fraction, min_sections)(volume)
        self.assertEqual(out[0, :, 0, 0].tolist(), expected)
        out_t = KeepSections(fraction, min_sections)(torch.as_tensor(volume))
        self.assertIsInstance(out_t, torch.Tensor)
        self.assertEqual(out_t[0, :, 1, 1].tolist(), expected)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "fraction must be in"):
            KeepSections(0.0)
        with self.assertRaisesRegex(ValueError, "min_sections"):
            KeepSections(0.5, min_sections=0)
        with self.assertRaisesRegex(ValueError, "section axis"):
            KeepSections()(np.zeros(3))


class TestKeepSectionsd(unittest.TestCase):
    def test_per_entry_fraction_and_same_cut(self):
        z = np.arange(20).reshape(1, 20, 1, 1)
        t = KeepSectionsd(["image", "label"], fraction=1.0, min_sections=4)
        out = t({"image": z, "label": z + 100, "label_fraction": 0.1})
        self.assertEqual(out["image"][0, :, 0, 0].tolist(), [1, 0, 1, 0])
        self.assertEqual(out["label"][0, :, 0, 0].tolist(), [101, 100, 101, 100])
        full = t({"image": z, "label": z})  # no per-entry fraction: the constructor's
        self.assertEqual(full["image"].shape[1], 20)


if __name__ == "__main__":
    unittest.main()
