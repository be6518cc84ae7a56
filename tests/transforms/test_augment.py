"""Tests of RandMisalignment and RandMissingSection: seeded draws checked against the volumes they produce."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from parameterized import parameterized

from emdiff_components.transforms import RandMisalignment, RandMissingSection

# (1, Z=3, Y=4, X=4): value 100 z + 10 y + x
VOLUME = (100 * np.arange(3)[:, None, None] + 10 * np.arange(4)[:, None] + np.arange(4))[None].astype(np.float32)


def _shifted(section: np.ndarray, dy: int, dx: int, padding: int) -> np.ndarray:
    """``out[y, x] = section[y + dy, x + dx]``, mirrored (without the edge) over ``padding`` voxels, 0 beyond."""
    h, w = section.shape
    out = np.zeros_like(section)
    for y in range(h):
        for x in range(w):
            sy, sx = y + dy, x + dx
            if -padding <= sy < h + padding and -padding <= sx < w + padding:
                sy = -sy if sy < 0 else (2 * (h - 1) - sy if sy >= h else sy)
                sx = -sx if sx < 0 else (2 * (w - 1) - sx if sx >= w else sx)
                out[y, x] = section[sy, sx]
    return out


BAD_MISALIGN = [
    ("prob", {"prob": 1.5}, "prob must be a probability"),
    ("prob_slip", {"prob_slip": -0.1}, "prob_slip must be a probability"),
    ("prob_shift", {"prob_shift": 2}, "prob_shift must be a probability"),
    ("max_misalign", {"max_misalign": -1}, "max_misalign must be an int >= 0"),
    ("max_misalign_float", {"max_misalign": 1.5}, "max_misalign must be an int >= 0"),
    ("padding", {"padding": -2}, "padding must be an int >= 0"),
]

BAD_MISSING = [
    ("prob", {"prob": -1}, "prob must be a probability"),
    ("fully", {"miss_fully_ratio": 1.2}, "miss_fully_ratio must be a probability"),
    ("part", {"miss_part_ratio": "0.5"}, "miss_part_ratio must be a probability"),
    ("mode", {"mode": "half"}, "mode must be one of"),
    ("size_ratio", {"size_ratio": 0.6}, "size_ratio must lie in"),
]


class TestRandMisalignment(unittest.TestCase):
    def test_hand_offsets(self):
        t = RandMisalignment(padding=2)
        t.offsets = np.array([[0, 0], [1, -1], [0, 0]])
        out = t(VOLUME, randomize=False)
        # section 1 (values 100 + 10 y + x) read at (y + 1, x - 1); x = -1 mirrors to 1, y = 4 mirrors to 2
        np.testing.assert_array_equal(
            out[0, 1], [[111, 110, 111, 112], [121, 120, 121, 122], [131, 130, 131, 132], [121, 120, 121, 122]]
        )
        np.testing.assert_array_equal(out[0, [0, 2]], VOLUME[0, [0, 2]])
        # no padding: what comes from outside the section is 0
        t = RandMisalignment(padding=0)
        t.offsets = np.array([[0, 2], [0, 0], [0, 0]])
        np.testing.assert_array_equal(t(VOLUME, randomize=False)[0, 0, 0], [2, 3, 0, 0])

    def test_seeded_golden(self):
        # the public defaults, seed 1: the call misaligns, draws a shift, and cuts above section 0 by (-6, -12)
        t = RandMisalignment()
        t.set_random_state(1)
        volume = np.random.default_rng(0).normal(size=(1, 8, 16, 16)).astype(np.float32)
        out = t(volume)
        np.testing.assert_array_equal(t.offsets, [[0, 0]] + [[-6, -12]] * 7)
        np.testing.assert_array_equal(out[0, 0], volume[0, 0])
        for z in range(1, 8):
            np.testing.assert_array_equal(out[0, z], _shifted(volume[0, z], -6, -12, padding=20))

    @parameterized.expand([("slip", 1.0), ("shift", 0.0)])
    def test_seeded_draws(self, kind, slip_ratio):
        volume = np.random.default_rng(0).normal(size=(2, 12, 10, 10)).astype(np.float32)
        gaps = moved_any = 0
        for seed in range(12):
            t = RandMisalignment(prob=1.0, prob_slip=0.3, prob_shift=0.3, max_misalign=3, padding=4,
                                 slip_ratio=slip_ratio)
            t.set_random_state(seed)
            out = t(volume)
            offsets = t.offsets
            for z in range(12):  # every section is its input section displaced by the drawn offset
                for c in range(2):
                    np.testing.assert_array_equal(out[c, z], _shifted(volume[c, z], *offsets[z], padding=4))
            self.assertTrue(np.all(np.abs(offsets) <= 3))
            moved = np.flatnonzero(offsets.any(axis=1))
            self.assertNotIn(0, moved)  # the first section never moves
            moved_any += len(moved) > 0
            gaps += len(moved) > 0 and moved[-1] - moved[0] + 1 > len(moved)
            if kind == "shift" and len(moved):  # one cut: every section from the first moved one on, same offset
                np.testing.assert_array_equal(moved, np.arange(moved[0], 12))
                np.testing.assert_array_equal(offsets[moved], np.repeat(offsets[moved[:1]], len(moved), axis=0))
        self.assertGreater(moved_any, 6)
        if kind == "slip":  # independent sections: some draws move sections with unmoved ones in between
            self.assertGreater(gaps, 0)

    def test_skip_and_types(self):
        t = RandMisalignment(prob=0.0)
        t.set_random_state(0)
        self.assertIs(t(VOLUME), VOLUME)
        t = RandMisalignment(prob=1.0, prob_slip=1.0, slip_ratio=1.0, max_misalign=2)
        t.set_random_state(1)
        out = t(torch.as_tensor(VOLUME).to(torch.int32))
        self.assertIsInstance(out, torch.Tensor)
        self.assertEqual(out.dtype, torch.int32)
        self.assertTrue(t.offsets[1:].any(axis=1).all())  # prob_slip 1: every section but the first slips
        # sections on the last axis: same draw as the transposed volume
        t2 = RandMisalignment(prob=1.0, prob_slip=1.0, slip_ratio=1.0, max_misalign=2, axis=3)
        t2.set_random_state(1)
        np.testing.assert_array_equal(t2(np.moveaxis(VOLUME, 1, 3)), np.moveaxis(out.numpy(), 1, 3))

    @parameterized.expand(BAD_MISALIGN)
    def test_bad_args(self, _, kwargs, match):
        with self.assertRaisesRegex(ValueError, f"RandMisalignment: {match}"):
            RandMisalignment(**kwargs)

    def test_bad_input(self):
        with self.assertRaisesRegex(ValueError, r"RandMisalignment: expected a channel-first volume"):
            RandMisalignment()(VOLUME[0])
        t = RandMisalignment()
        t.offsets = np.zeros((5, 2), dtype=int)
        with self.assertRaisesRegex(ValueError, "RandMisalignment: the drawn offsets are for 5 sections"):
            t(VOLUME, randomize=False)


class TestRandMissingSection(unittest.TestCase):
    def test_fully(self):
        out = RandMissingSection(mode="fully", miss_fully_ratio=1.0, fill_value=-1.0)(VOLUME)
        np.testing.assert_array_equal(out, -1.0)
        t = RandMissingSection(mode="fully", miss_fully_ratio=0.5)
        t.set_random_state(3)
        volume = np.ones((2, 20, 4, 4), dtype=np.float32)
        out = t(volume)
        missing = sorted(int(z) for z in t.boxes[:, 0])
        self.assertTrue(0 < len(missing) < 20)
        np.testing.assert_array_equal(t.boxes[:, 1:], [[0, 4, 0, 4]] * len(missing))
        blank = np.flatnonzero((out == 0).all(axis=(0, 2, 3)))
        self.assertEqual(blank.tolist(), missing)
        self.assertTrue((out[:, [z for z in range(20) if z not in missing]] == 1).all())

    def test_partially(self):
        t = RandMissingSection(mode="partially", miss_part_ratio=0.7, fill_value=-1.0)
        t.set_random_state(5)
        volume = np.arange(2 * 6 * 20 * 30, dtype=np.float32).reshape(2, 6, 20, 30)
        out = t(volume)
        self.assertGreater(len(t.boxes), 0)
        expected = volume.copy()
        for z, y0, y1, x0, x1 in t.boxes:
            self.assertTrue(6 <= y1 - y0 <= 14 and 9 <= x1 - x0 <= 21)  # [int(0.3 n), int(0.7 n)]
            self.assertTrue(y1 <= 19 and x1 <= 29)  # the corner leaves at least one voxel after the box
            expected[:, z, y0:y1, x0:x1] = -1.0
        np.testing.assert_array_equal(out, expected)

    def test_mix_and_types(self):
        modes = set()
        for seed in range(10):
            t = RandMissingSection(miss_fully_ratio=1.0, miss_part_ratio=1.0)
            t.set_random_state(seed)
            out = t(torch.ones(1, 3, 10, 10, dtype=torch.float64))
            self.assertEqual(out.dtype, torch.float64)
            modes.add("fully" if bool((out == 0).all()) else "partially")
        self.assertEqual(modes, {"fully", "partially"})
        self.assertIs(RandMissingSection(prob=0.0)(VOLUME), VOLUME)

    @parameterized.expand(BAD_MISSING)
    def test_bad_args(self, _, kwargs, match):
        with self.assertRaisesRegex(ValueError, f"RandMissingSection: {match}"):
            RandMissingSection(**kwargs)

    def test_bad_input(self):
        with self.assertRaisesRegex(ValueError, "RandMissingSection: expected a channel-first volume"):
            RandMissingSection()(np.zeros((4, 4)))


if __name__ == "__main__":
    unittest.main()
