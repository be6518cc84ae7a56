from __future__ import annotations

import unittest

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import ScaleIntensity
from parameterized import parameterized

from emdiff_components.transforms import (
    BinarizeMask,
    BinarizeMaskd,
    CellClasses,
    CellClassesd,
    GreyLevelMask,
    GreyLevelMaskd,
)

IMAGE = np.array([[[0.0, 2.0, 4.0], [6.0, 8.0, 8.0]]])
LABEL = np.array([[[0, 1, 1], [2, 2, 0]]])

GREY_CASES = [
    # a_min, a_max, expected: cell 1 = mean(2, 4), cell 2 = mean(6, 8), scaled by the range
    ("fixed_range", 0.0, 8.0, [[[0.0, 0.375, 0.375], [0.875, 0.875, 0.0]]]),
    ("image_range", None, None, [[[0.0, 0.375, 0.375], [0.875, 0.875, 0.0]]]),
    ("offset_range", 2.0, 6.0, [[[0.0, 0.25, 0.25], [1.25, 1.25, 0.0]]]),  # no clipping, as the reference
]

BINARY_CASES = [
    ("reference", {}, [[-1.0, -0.999, -0.99, 0.5, -0.5]], [[0, 0, 1, 1, 1]]),
    ("zero", {"threshold": 0.0}, [[-1.0, -0.999, -0.99, 0.5, 0.0]], [[0, 0, 0, 1, 0]]),
]


class TestGreyLevelMask(unittest.TestCase):
    @parameterized.expand(GREY_CASES)
    def test_hand_values(self, _, a_min, a_max, expected):
        out = GreyLevelMask(a_min=a_min, a_max=a_max)(IMAGE, LABEL)
        self.assertIsInstance(out, np.ndarray)
        self.assertEqual(out.dtype, np.float32)
        np.testing.assert_allclose(out, expected, atol=1e-7)

    def test_reference_hela_range_and_torch(self):
        """HeLa's 16-bit range of the reference (32995 .. 36863): a cell of 33381 and 34155 -> mean 0.2."""
        image = torch.tensor([[[32995.0, 33381.0], [34155.0, 36863.0]]])
        label = torch.tensor([[[0, 7], [7, 0]]], dtype=torch.int32)
        out = GreyLevelMask(a_min=32995, a_max=36863)(image, label)
        expected = ((33381 - 32995) + (34155 - 32995)) / 2 / (36863 - 32995)
        self.assertIsInstance(out, torch.Tensor)
        torch.testing.assert_close(out, torch.tensor([[[0.0, expected], [expected, 0.0]]]))

    def test_3d_two_channels_and_meta(self):
        image = MetaTensor(torch.stack([torch.arange(8.0).reshape(2, 2, 2), 10 * torch.ones(2, 2, 2)]))
        label = torch.zeros(1, 2, 2, 2, dtype=torch.long)
        label[0, 0] = 3  # cell 3 = the first z slice: values 0, 1, 2, 3 -> mean 1.5
        out = GreyLevelMask(a_min=0.0, a_max=10.0)(image, label)
        self.assertIsInstance(out, MetaTensor)
        self.assertEqual(tuple(out.shape), (2, 2, 2, 2))
        torch.testing.assert_close(out[0, 0], torch.full((2, 2), 0.15))
        torch.testing.assert_close(out[1, 0], torch.full((2, 2), 1.0))
        self.assertEqual(float(out[:, 1].abs().sum()), 0.0)

    def test_scale_intensity_reproduces_the_reference_division_by_max(self):
        """dataset_CTC.py divides a single-cell mask by its maximum: the grey level becomes 1."""
        out = ScaleIntensity(minv=0.0, maxv=1.0)(GreyLevelMask(0.0, 8.0)(IMAGE, np.where(LABEL > 0, 1, 0)))
        np.testing.assert_allclose(np.asarray(out), (LABEL > 0).astype(np.float32))

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "GreyLevelMask: a_max must be > a_min"):
            GreyLevelMask(a_min=1.0, a_max=1.0)
        with self.assertRaisesRegex(ValueError, "GreyLevelMask: a_min"):
            GreyLevelMask(a_min=float("nan"))
        with self.assertRaisesRegex(ValueError, "spatial shape"):
            GreyLevelMask()(IMAGE, LABEL[:, :, :2])
        with self.assertRaisesRegex(ValueError, "spatial shape"):
            GreyLevelMask()(IMAGE, np.concatenate([LABEL, LABEL]))
        with self.assertRaisesRegex(ValueError, ">= 0"):
            GreyLevelMask()(IMAGE, -LABEL)
        with self.assertRaisesRegex(ValueError, "integer"):
            GreyLevelMask()(IMAGE, LABEL + 0.5)


class TestGreyLevelMaskd(unittest.TestCase):
    def test_values_and_keys(self):
        out = GreyLevelMaskd("label", image_key="image", a_min=0.0, a_max=8.0)({"image": IMAGE, "label": LABEL})
        np.testing.assert_allclose(out["grey_mask"], GREY_CASES[0][3], atol=1e-7)
        self.assertIs(out["label"], LABEL)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "exactly one"):
            GreyLevelMaskd(["label", "other"])
        with self.assertRaisesRegex(ValueError, "overwrite"):
            GreyLevelMaskd("label", output_key="image")
        with self.assertRaisesRegex(KeyError, "image_key 'image'"):
            GreyLevelMaskd("label")({"label": LABEL})


class TestBinarizeMask(unittest.TestCase):
    @parameterized.expand(BINARY_CASES)
    def test_hand_values(self, _, kwargs, values, expected):
        out = BinarizeMask(**kwargs)(np.array(values, dtype=np.float32))
        self.assertEqual(out.dtype, np.float32)
        np.testing.assert_array_equal(out, np.array(expected, dtype=np.float32))

    def test_matches_the_uint8_rule_of_the_public_script(self):
        """x -> round((x + 1) / 2 * 255) as uint8, pixel != 0: the public mask binarisation."""
        x = torch.linspace(-1.0, -0.98, 2001, dtype=torch.float64)
        uint8 = np.round(((x.numpy() + 1) / 2).clip(0, 1) * 255).astype(np.uint8)
        expected = torch.from_numpy((uint8 != 0).astype(np.float32))
        exact = (x + 1) / 2 * 255 == 0.5  # the tie (rounds to 0) is at float precision: leave it out
        out = BinarizeMask()(x)
        torch.testing.assert_close(out[~exact], expected[~exact])

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "BinarizeMask: threshold"):
            BinarizeMask(threshold=float("inf"))
        with self.assertRaisesRegex(ValueError, "float"):
            BinarizeMask()(np.array([[0, 1]]))
        with self.assertRaisesRegex(ValueError, "NaN"):
            BinarizeMask()(np.array([[np.nan, 1.0]]))


class TestBinarizeMaskd(unittest.TestCase):
    def test_values(self):
        out = BinarizeMaskd(keys=["pred", "other"], threshold=0.0)(
            {"pred": torch.tensor([[-0.5, 0.5]]), "other": torch.tensor([[0.1, -0.1]])}
        )
        torch.testing.assert_close(out["pred"], torch.tensor([[0.0, 1.0]]))
        torch.testing.assert_close(out["other"], torch.tensor([[1.0, 0.0]]))

    def test_missing_key(self):
        with self.assertRaises(KeyError):
            BinarizeMaskd(keys="pred")({"image": np.zeros((1, 2), np.float32)})


class TestCellClasses(unittest.TestCase):
    # two touching 3 x 3 / 3 x 4 cells in a 5 x 9 image: every cell pixel next to another label is boundary (2)
    LABEL = np.array([[
        [0, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, 1, 1, 1, 2, 2, 2, 2, 0],
        [0, 1, 1, 1, 2, 2, 2, 2, 0],
        [0, 1, 1, 1, 2, 2, 2, 2, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 0],
    ]])
    EXPECTED = np.array([[
        [0, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, 2, 2, 2, 2, 2, 2, 2, 0],
        [0, 2, 1, 2, 2, 1, 1, 2, 0],
        [0, 2, 2, 2, 2, 2, 2, 2, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 0],
    ]])

    def test_hand_values(self):
        out = CellClasses()(self.LABEL)
        np.testing.assert_array_equal(out, self.EXPECTED)
        self.assertEqual(out.dtype, np.int64)

    def test_width_two_leaves_no_interior_in_thin_cells(self):
        out = CellClasses(width=2)(self.LABEL)
        np.testing.assert_array_equal(out, np.where(self.LABEL > 0, 2, 0))

    def test_torch_float_ids_and_dictionary(self):
        out = CellClassesd("label")({"label": torch.as_tensor(self.LABEL, dtype=torch.float32)})["label"]
        self.assertIsInstance(out, torch.Tensor)
        np.testing.assert_array_equal(out.numpy(), self.EXPECTED)

    def test_3d(self):
        label = np.zeros((1, 5, 5, 5), int)
        label[0, 1:4, 1:4, 1:4] = 7
        out = CellClasses()(label)[0]
        self.assertEqual(out[2, 2, 2], 1)
        self.assertEqual(int((out == 2).sum()), 26)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "width"):
            CellClasses(width=0)
        with self.assertRaisesRegex(ValueError, "shape"):
            CellClasses()(np.zeros((4, 4), int))
        with self.assertRaisesRegex(ValueError, "integer"):
            CellClasses()(np.full((1, 4, 4), 0.5))
        with self.assertRaisesRegex(ValueError, ">= 0"):
            CellClasses()(np.full((1, 4, 4), -1))


if __name__ == "__main__":
    unittest.main()
