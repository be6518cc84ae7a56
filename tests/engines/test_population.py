from __future__ import annotations

import unittest

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from parameterized import parameterized
from scipy import ndimage

from emdiff_components.engines import compose_population

SHAPE = (96, 128)
ELLIPSE = (36.0, 50.0)
CLUSTER = {"window": 16, "mu": 6.0, "first_margin": (20, 30)}  # the public rule, scaled to a small image
RADII = (3.0, 3.5, 4.0, 4.5, 5.0, 5.5)


def disk_cells(n: int = 12, size: int = 12):
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    masks = [np.hypot(yy, xx) <= RADII[i % len(RADII)] for i in range(n)]
    textures = [m * (60.0 + 20 * i) for i, m in enumerate(masks)]
    return textures, masks


def compose(seed: int, **kwargs):
    textures, masks = kwargs.pop("cells", disk_cells())
    options = {"shape": SHAPE, "num_cells": (6, 9), "ellipse": ELLIPSE, "cluster": CLUSTER, **kwargs}
    return compose_population(textures, masks, rng=np.random.default_rng(seed), return_placements=True, **options)


class TestComposePopulation(unittest.TestCase):
    @parameterized.expand([(seed,) for seed in range(3)])
    def test_no_overlap_count_and_ids(self, seed):
        image, labels, placements = compose(seed)
        _, masks = disk_cells()
        self.assertTrue(6 <= len(placements) <= 9)
        self.assertEqual((image.shape, labels.shape, image.dtype), (SHAPE, SHAPE, np.float32))
        # every instance keeps its whole mask: nothing was pasted over it, so no two cells overlap
        areas = np.bincount(labels.ravel(), minlength=len(placements) + 1)[1:]
        self.assertEqual(areas.tolist(), [int(masks[p["cell"]].sum()) for p in placements])
        self.assertEqual(int(np.count_nonzero(labels)), sum(int(masks[p["cell"]].sum()) for p in placements))
        for k, p in enumerate(placements, 1):  # each id sits where its placement says
            y, x = p["offset"]
            np.testing.assert_array_equal(labels[y : y + 12, x : x + 12] == k, masks[p["cell"]])

    def test_cells_inside_the_ellipse(self):
        y, x = np.ogrid[: SHAPE[0], : SHAPE[1]]
        ellipse = ((y - SHAPE[0] // 2) / ELLIPSE[0]) ** 2 + ((x - SHAPE[1] // 2) / ELLIPSE[1]) ** 2 <= 1
        for seed in range(3):
            _, labels, _ = compose(seed, inside="cell")
            self.assertFalse(np.any(labels[~ellipse]))
            _, _, placements = compose(seed)  # the public rule: the crop's centre lies in the ellipse
            for p in placements:
                cy, cx = p["offset"][0] + 6, p["offset"][1] + 6
                self.assertLessEqual(((cy - 48) / ELLIPSE[0]) ** 2 + ((cx - 64) / ELLIPSE[1]) ** 2, 1.0)

    def test_seeds(self):
        a, b, c = compose(7), compose(7), compose(8)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        self.assertFalse(np.array_equal(a[0], c[0]))
        self.assertFalse(np.array_equal(a[1] > 0, c[1] > 0))

    def test_cluster_positions_are_near_placed_cells(self):
        """With probability 1 each later cell's corner is free and within window / 2 of a forbidden position."""
        _, masks = disk_cells()
        _, _, placements = compose(3)
        occupancy = np.zeros(SHAPE, dtype=bool)
        for k, p in enumerate(placements):
            mask = masks[p["cell"]]
            y, x = p["offset"]
            if k:
                # overlap of the mask with the occupancy at every corner, by brute force (no FFT)
                overlap = np.einsum("abij,ij->ab", sliding_window_view(occupancy, mask.shape), mask)
                forbidden = overlap > 0
                self.assertFalse(forbidden[y, x])
                distance = ndimage.distance_transform_cdt(~forbidden, metric="chessboard")[y, x]
                self.assertLessEqual(distance, CLUSTER["window"] // 2)
            occupancy[y : y + 12, x : x + 12] |= mask

    def test_textures_and_blur(self):
        raw, labels, placements = compose(5, background={"blur": ()})
        textures, _ = disk_cells()
        for k, p in enumerate(placements, 1):
            texture = textures[p["cell"]]  # values 60..280: clipped to [0, 255] as the public code does
            np.testing.assert_array_equal(raw[labels == k], np.clip(texture[texture > 0], 0, 255))
        blurred, labels_b, _ = compose(5)  # the blur draws nothing: same cells, same noise
        np.testing.assert_array_equal(labels, labels_b)
        weights = np.array([1, 2, 3, 4, 4, 3, 2, 1]) / 20
        np.testing.assert_allclose(blurred, ndimage.convolve1d(raw, weights, axis=0), rtol=1e-6, atol=1e-4)

    def test_background_model(self):
        image, labels, _ = compose(2, background={"blur": (), "ellipse_dilation": 1})
        y, x = np.ogrid[: SHAPE[0], : SHAPE[1]]
        ellipse = ((y - 48) / ELLIPSE[0]) ** 2 + ((x - 64) / ELLIPSE[1]) ** 2 <= 1
        outside, inside = ~ellipse & (labels == 0), ellipse & (labels == 0)
        noisy = image[outside] != 23.0  # level 23 plus 2000 noise pixels per 512 x 708, scaled to the area
        expected = round(2000 * SHAPE[0] * SHAPE[1] / (512 * 708))  # 68 over the whole image
        self.assertTrue(0 < noisy.sum() <= expected)
        self.assertTrue(np.all((image[outside][noisy] >= 20) & (image[outside][noisy] < 500)))
        # 15000 more per 512 x 708 are added inside the ellipse only: a denser noise there
        density_in, density_out = np.mean(image[inside] != 23.0), noisy.mean()
        self.assertGreater(density_in, 3 * density_out)
        self.assertTrue(np.all(image >= 0))

    def test_3d_stacks(self):
        textures, masks = disk_cells(6)
        stacks = [np.stack([t] * 3) for t in textures]
        stack_masks = [np.stack([m] * 3) for m in masks]
        image, labels, placements = compose(1, cells=(stacks, stack_masks), shape=(5, *SHAPE))
        self.assertEqual((image.shape, labels.shape), ((5, *SHAPE), (5, *SHAPE)))
        self.assertFalse(labels[0].any() or labels[4].any())  # 3-slice cells centred in 5 slices
        np.testing.assert_array_equal(labels[1], labels[3])
        areas = np.bincount(labels.ravel())[1:]
        self.assertEqual(areas.tolist(), [3 * int(masks[p["cell"]].sum()) for p in placements])
        self.assertTrue(all(p["offset"][0] == 1 for p in placements))

    def test_space_running_out(self):
        textures, masks = disk_cells(6)
        options = {"shape": (24, 24), "num_cells": 5, "ellipse": None, "cluster": {"probability": 0.0}}
        with self.assertLogs("emdiff_components.engines.population", "WARNING"):
            _, labels, placements = compose(0, cells=(textures, masks), **options)
        self.assertTrue(1 <= len(placements) < 5)
        self.assertEqual(int(labels.max()), len(placements))
        with self.assertRaisesRegex(RuntimeError, "found a place"):
            compose(0, cells=(textures, masks), strict=True, **options)

    @parameterized.expand([
        ("mismatch", {"cells": (disk_cells()[0], disk_cells()[1][:3])}, ValueError, "need equal"),
        ("too_large", {"shape": (8, 8)}, ValueError, "larger than"),
        ("num_cells", {"num_cells": (5, 2)}, ValueError, "num_cells"),
        ("inside", {"inside": "edge"}, ValueError, "inside"),
        ("cluster_key", {"cluster": {"sigma": 0.2}}, ValueError, "unknown cluster"),
        ("dims", {"shape": (4, *SHAPE)}, ValueError, "3D like"),
    ])
    def test_errors(self, _, kwargs, error, message):
        with self.assertRaisesRegex(error, message):
            compose(0, **kwargs)

    def test_rng_required(self):
        textures, masks = disk_cells()
        with self.assertRaisesRegex(TypeError, "rng"):
            compose_population(textures, masks, SHAPE)


if __name__ == "__main__":
    unittest.main()
