from __future__ import annotations

import unittest
from unittest import mock

import numpy as np
import torch
from monai.utils import OptionalImportError
from parameterized import parameterized

import emdiff_components.postprocessing.watershed as watershed_module
from emdiff_components.postprocessing import affinity_supervoxels

SHAPE = (4, 32, 32)


def nn_affinities(labels: np.ndarray) -> np.ndarray:
    """(3, Z, Y, X) affinities of a label volume, public ``seg_to_affgraph(mknhood3d(1), pad="replicate")`` order:
    channel c links a voxel to its predecessor along axis c; 1 where both carry the same non-zero label. The first
    plane along each axis (no predecessor) is 1 inside labels, as the public replicate padding."""
    affs = np.zeros((3, *labels.shape), dtype=np.float32)
    for axis in range(3):
        here = [slice(None)] * 3
        prev = [slice(None)] * 3
        here[axis], prev[axis] = slice(1, None), slice(None, -1)
        same = (labels[tuple(here)] == labels[tuple(prev)]) & (labels[tuple(here)] > 0)
        affs[axis][tuple(here)] = same
        first = [slice(None)] * 3
        first[axis] = 0
        affs[axis][tuple(first)] = labels[tuple(first)] > 0
    return affs


def two_boxes(axis: int = 2) -> np.ndarray:
    """Labels 1 and 2 in the two halves of SHAPE along ``axis`` (the shared face in the middle)."""
    labels = np.ones(SHAPE, dtype=np.int64)
    index = [slice(None)] * 3
    index[axis] = slice(SHAPE[axis] // 2, None)
    labels[tuple(index)] = 2
    return labels


def noisy(affs: np.ndarray, sigma: float = 0.1, seed: int = 0) -> np.ndarray:
    return np.clip(affs + np.random.default_rng(seed).normal(0.0, sigma, affs.shape), 0.0, 1.0).astype(np.float32)


def purity(fragments: np.ndarray, labels: np.ndarray) -> bool:
    """Every fragment lies inside one label (an over-segmentation of ``labels``)."""
    pairs = np.unique(np.stack([fragments.ravel(), labels.ravel().astype(np.uint64)]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1]


class TestAffinitySupervoxels(unittest.TestCase):
    def test_two_boxes_side_by_side_in_x(self):
        labels = two_boxes(axis=2)
        frags = affinity_supervoxels(nn_affinities(labels))
        self.assertEqual(frags.dtype, np.uint64)
        self.assertEqual(frags.shape, SHAPE)
        # two fragments per section, numbered 1..8 over the volume, each exactly one box in one section
        np.testing.assert_array_equal(np.unique(frags), np.arange(1, 9))
        for z in range(SHAPE[0]):
            left, right = np.unique(frags[z, :, :16]), np.unique(frags[z, :, 16:])
            self.assertEqual((left.size, right.size), (1, 1))
            self.assertNotEqual(left[0], right[0])
        self.assertEqual(len(set(frags[:, 0, 0].tolist())), 4)  # no fragment spans two sections

    def test_boundary_along_y_and_z_affinity_unused(self):
        labels = two_boxes(axis=1)
        affs = nn_affinities(labels)
        frags = affinity_supervoxels(affs)
        self.assertTrue(purity(frags, labels))
        self.assertEqual(np.unique(frags).size, 8)
        affs[0] = 0.0  # per-section watershed: the z affinities do not matter
        np.testing.assert_array_equal(affinity_supervoxels(affs), frags)

    def test_no_boundary_gives_one_fragment_per_section(self):
        frags = affinity_supervoxels(np.ones((3, *SHAPE), dtype=np.float32))
        np.testing.assert_array_equal(frags, np.broadcast_to(np.arange(1, 5, dtype=np.uint64)[:, None, None], SHAPE))

    def test_boxes_stacked_in_z(self):
        # the face lies between sections: one fragment per section, each inside one box
        labels = two_boxes(axis=0)
        frags = affinity_supervoxels(nn_affinities(labels))
        self.assertTrue(purity(frags, labels))
        np.testing.assert_array_equal(np.unique(frags), np.arange(1, 5))

    def test_noisy_affinities_never_cross_the_face(self):
        # The public boundary map max(1 - a_y, 1 - a_x) marks the voxel AFTER a face (its link to its predecessor is
        # cut), here column x = 16, the first column of box 2. With noise the watershed may give some of those voxels
        # to the left fragments; everywhere else every fragment lies inside one box.
        labels = two_boxes(axis=2)
        frags = affinity_supervoxels(noisy(nn_affinities(labels)))
        off_face = np.ones(SHAPE, dtype=bool)
        off_face[:, :, 16] = False
        self.assertTrue(purity(frags[off_face], labels[off_face]))
        self.assertFalse(purity(frags, labels))  # the face column is where the recipe is ambiguous
        self.assertGreaterEqual(np.unique(frags).size, 8)

    @parameterized.expand([(0,), (1,), (2,)])
    def test_symmetric_boundary_keeps_noisy_fragments_inside_one_box(self, seed):
        labels = two_boxes(axis=2)
        frags = affinity_supervoxels(noisy(nn_affinities(labels), seed=seed), boundary="symmetric")
        self.assertTrue(purity(frags, labels))
        self.assertGreaterEqual(np.unique(frags).size, 8)

    def test_min_size(self):
        # a 6 x 6 square (36 pixels) enclosed by its own boundary in every section
        labels = np.ones(SHAPE, dtype=np.int64)
        labels[:, 10:16, 10:16] = 2
        affs = nn_affinities(labels)

        def smallest(frags):
            return min(np.unique(frags[z], return_counts=True)[1].min() for z in range(SHAPE[0]))

        self.assertLess(smallest(affinity_supervoxels(affs, min_size=0)), 100)  # the square's own fragment
        merged = affinity_supervoxels(affs, min_size=100)  # flooded by its neighbours
        self.assertGreaterEqual(smallest(merged), 100)
        self.assertLess(np.unique(merged).size, np.unique(affinity_supervoxels(affs, min_size=0)).size)

    def test_tensor_input(self):
        affs = nn_affinities(two_boxes())
        np.testing.assert_array_equal(affinity_supervoxels(torch.from_numpy(affs)), affinity_supervoxels(affs))

    @parameterized.expand(
        [
            ("two_channels", np.ones((2, *SHAPE), np.float32), "3 channels"),
            ("twelve_channels", np.ones((12, *SHAPE), np.float32), "got 12 channels"),
            ("three_d", np.ones((3, 32, 32), np.float32), "4D"),
            ("above_one", np.full((3, *SHAPE), 1.5, np.float32), "[0, 1]"),
            ("negative", np.full((3, *SHAPE), -0.1, np.float32), "[0, 1]"),
            ("nan", np.full((3, *SHAPE), np.nan, np.float32), "NaN"),
        ]
    )
    def test_bad_affinities(self, _, affs, message):
        with self.assertRaises(ValueError) as ctx:
            affinity_supervoxels(affs)
        self.assertIn("affinity_supervoxels", str(ctx.exception))
        self.assertIn(message, str(ctx.exception))

    def test_negative_min_size(self):
        with self.assertRaisesRegex(ValueError, "min_size"):
            affinity_supervoxels(np.ones((3, *SHAPE), np.float32), min_size=-1)

    def test_unknown_boundary(self):
        with self.assertRaisesRegex(ValueError, "boundary must be one of.*previous.*symmetric"):
            affinity_supervoxels(np.ones((3, *SHAPE), np.float32), boundary="both")

    def test_missing_elf_names_the_pip_command(self):
        with (
            mock.patch.object(watershed_module, "has_elf", False),
            self.assertRaisesRegex(OptionalImportError, r"pip install python-elf==0\.9\.2"),
        ):
            affinity_supervoxels(np.ones((3, *SHAPE), np.float32))


if __name__ == "__main__":
    unittest.main()
