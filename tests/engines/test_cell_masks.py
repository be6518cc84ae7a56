from __future__ import annotations

import unittest

import numpy as np

from emdiff_components.engines import cell_masks_from_samples
from emdiff_components.transforms.cells.array import REFERENCE_MASK_THRESHOLD


def disc(size: int, centre: tuple[int, int], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


class TestCellMasksFromSamples(unittest.TestCase):
    def setUp(self):
        # a cell of value 0.8 on a background left at -0.4, as the 800-step mask model of the README samples
        self.cell = disc(32, (16, 16), 5)
        self.sample = np.where(self.cell, 0.8, -0.4).astype(np.float32)

    def test_midpoint_keeps_the_cell_the_public_threshold_fills_the_crop(self):
        masks = cell_masks_from_samples(self.sample[None], threshold=0.0, min_size=4)
        np.testing.assert_array_equal(masks[0], self.cell.astype(np.uint8))
        self.assertEqual(int(masks[0].sum()), 81)  # the disc of radius 5: 81 pixels
        filled = cell_masks_from_samples(np.stack([self.sample, self.sample]), threshold=REFERENCE_MASK_THRESHOLD)
        np.testing.assert_array_equal(filled, np.ones((2, 32, 32), np.uint8))  # all touch the edge: kept, warned
        one = cell_masks_from_samples(np.stack([np.full_like(self.sample, 0.5), self.sample]), min_size=4)
        np.testing.assert_array_equal(one, self.cell[None].astype(np.uint8))  # a filled crop beside a cell: dropped

    def test_largest_component_size_and_border_filters(self):
        speck = self.sample.copy()
        speck[2:4, 25:27] = 0.9  # a 4-pixel speck away from the edge is removed by the largest component
        edge = np.where(disc(32, (16, 30), 5), 0.8, -0.4).astype(np.float32)  # a cell cut by the crop's edge
        small = np.where(disc(32, (16, 16), 1), 0.8, -0.4).astype(np.float32)  # 5 pixels
        masks = cell_masks_from_samples(np.stack([speck, edge, small, self.sample]), threshold=0.0, min_size=16)
        self.assertEqual(masks.shape, (2, 32, 32))
        for mask in masks:
            np.testing.assert_array_equal(mask, self.cell.astype(np.uint8))
        kept_all = cell_masks_from_samples(np.stack([speck, edge]), min_size=16, largest_component=False,
                                           drop_border=False)
        self.assertEqual([int(m.sum()) for m in kept_all], [85, int(disc(32, (16, 30), 5).sum())])

    def test_nothing_kept_names_the_reasons(self):
        with self.assertRaisesRegex(RuntimeError, r"all 2 sampled masks have fewer than 16 pixels at threshold 0.0"):
            cell_masks_from_samples(np.full((2, 32, 32), -0.5, dtype=np.float32), min_size=16)


if __name__ == "__main__":
    unittest.main()
