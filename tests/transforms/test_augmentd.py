"""Tests of RandMisalignmentd and RandMissingSectiond (one draw shared by every key)."""

from __future__ import annotations

import unittest

import numpy as np
import torch

from emdiff_components.transforms import RandMisalignment, RandMisalignmentd, RandMissingSection, RandMissingSectiond


def _sample(seed: int = 0):
    rng = np.random.default_rng(seed)
    label = rng.integers(1, 1000, size=(1, 10, 12, 12)).astype(np.int64)
    return {"image": label.astype(np.float32) / 1000, "label": label}


class TestRandMisalignmentd(unittest.TestCase):
    def test_image_and_label_move_together(self):
        moved = 0
        for seed in range(8):
            sample = _sample(seed)
            t = RandMisalignmentd(("image", "label"), prob=1.0, prob_slip=0.4, prob_shift=0.4, max_misalign=3,
                                  padding=4)
            t.set_random_state(seed)
            out = t(sample)
            self.assertEqual(out["label"].dtype, np.int64)
            # the image is label / 1000, so the same displacement keeps that relation voxel by voxel
            np.testing.assert_allclose(out["image"], out["label"].astype(np.float32) / 1000)
            # and the draw is the array transform's with the same seed
            single = RandMisalignment(prob=1.0, prob_slip=0.4, prob_shift=0.4, max_misalign=3, padding=4)
            single.set_random_state(seed)
            np.testing.assert_array_equal(out["label"], single(sample["label"]))
            moved += int(t.transform.offsets.any())
        self.assertGreater(moved, 3)

    def test_mixed_types_and_missing_key(self):
        sample = _sample(1)
        t = RandMisalignmentd(("image", "label", "mask"), prob=1.0, prob_slip=1.0, slip_ratio=1.0, max_misalign=2,
                              allow_missing_keys=True)
        t.set_random_state(0)
        out = t({"image": torch.as_tensor(sample["image"]), "label": sample["label"]})
        self.assertIsInstance(out["image"], torch.Tensor)
        np.testing.assert_allclose(out["image"].numpy(), out["label"].astype(np.float32) / 1000)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "RandMisalignmentd: every key needs one spatial shape"):
            RandMisalignmentd(("image", "label"), prob=1.0)({"image": np.zeros((1, 4, 8, 8)),
                                                             "label": np.zeros((1, 4, 8, 6))})
        with self.assertRaisesRegex(ValueError, "RandMisalignment: max_misalign must be an int >= 0"):
            RandMisalignmentd("image", max_misalign=-3)


class TestRandMissingSectiond(unittest.TestCase):
    def test_same_sections_for_every_image_key(self):
        sample = _sample(2)
        sample["image2"] = sample["image"] + 1
        t = RandMissingSectiond(("image", "image2"), mode="fully", miss_fully_ratio=0.4, fill_value=-1.0)
        t.set_random_state(4)
        out = t(sample)
        missing = sorted(int(z) for z in t.transform.boxes[:, 0])
        self.assertTrue(0 < len(missing) < 10)
        for key in ("image", "image2"):
            np.testing.assert_array_equal(np.flatnonzero((out[key] == -1).all(axis=(0, 2, 3))), missing)
        self.assertIs(out["label"], sample["label"])  # labels are not keys: untouched
        single = RandMissingSection(mode="fully", miss_fully_ratio=0.4, fill_value=-1.0)
        single.set_random_state(4)
        np.testing.assert_array_equal(out["image"], single(sample["image"]))

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "RandMissingSection: mode must be one of"):
            RandMissingSectiond("image", mode="some")
        with self.assertRaises(KeyError):
            RandMissingSectiond("image")({"label": np.zeros((1, 2, 4, 4))})


if __name__ == "__main__":
    unittest.main()
