"""Cell instances from background / interior / boundary probabilities, on images whose answer is known."""

from __future__ import annotations

import unittest

import numpy as np
import torch

from emdiff_components.metrics import cell_scores
from emdiff_components.postprocessing import cell_instances
from emdiff_components.transforms import CellClasses


def touching_discs(shape=(40, 60)) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    label = np.zeros(shape, np.int64)
    label[(yy - 20) ** 2 + (xx - 20) ** 2 < 100] = 1
    label[((yy - 20) ** 2 + (xx - 37) ** 2 < 100) & (label == 0)] = 2
    return label


def one_hot(classes: np.ndarray) -> np.ndarray:
    return np.moveaxis(np.eye(3, dtype=np.float32)[classes], -1, 0)


class TestCellInstances(unittest.TestCase):
    def test_touching_discs_are_recovered_exactly(self):
        label = touching_discs()
        self.assertTrue(np.any((label[:, 1:] == 1) & (label[:, :-1] == 2) | (label[:, 1:] == 2) & (label[:, :-1] == 1)))
        out = cell_instances(one_hot(CellClasses()(label[None])[0]))
        np.testing.assert_array_equal(out, label)  # ids in raster order: the left disc starts first
        self.assertEqual(out.dtype, np.int32)

    def test_noisy_probabilities(self):
        label = touching_discs()
        rng = np.random.default_rng(0)
        logits = one_hot(CellClasses()(label[None])[0]) * 3.0 + rng.normal(0.0, 0.6, (3, *label.shape))
        probabilities = torch.softmax(torch.as_tensor(logits), 0)
        out = cell_instances(probabilities)
        scores = cell_scores(out, label)
        self.assertEqual((scores["num_pred"], scores["matched_f1"]), (2, 2))
        self.assertGreater(scores["seg"], 0.9)

    def test_small_seeds_and_cells_are_dropped(self):
        classes = np.zeros((20, 20), np.int64)
        classes[2:8, 2:8] = 2
        classes[4:6, 4:6] = 1  # a seed of 4 pixels in a 36-pixel cell
        classes[12:14, 12:14] = 1  # a 4-pixel cell
        np.testing.assert_array_equal(np.unique(cell_instances(one_hot(classes))), [0, 1])
        # the 2 x 2 seed is below min_seed_size 5: its cell has no seed and stays background
        self.assertEqual(cell_instances(one_hot(classes), min_seed_size=5).max(), 0)
        self.assertEqual(cell_instances(one_hot(classes), min_size=1).max(), 2)

    def test_3d(self):
        label = np.zeros((6, 12, 20), np.int64)
        label[1:5, 2:10, 2:10], label[1:5, 2:10, 10:18] = 1, 2
        out = cell_instances(one_hot(CellClasses()(label[None])[0]))
        np.testing.assert_array_equal(out, label)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, r"\(3, \[Z,\] Y, X\)"):
            cell_instances(np.zeros((2, 8, 8)))


if __name__ == "__main__":
    unittest.main()
