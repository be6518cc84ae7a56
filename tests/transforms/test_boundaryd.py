from __future__ import annotations

import unittest

import numpy as np
import torch
from monai.data import CacheDataset, MetaTensor
from monai.transforms import Compose, RandFlipd, RandRotate90d
from parameterized import parameterized

import emdiff_components.transforms as transforms_pkg
from emdiff_components.transforms.boundary.array import BoundaryDistanceWeight
from emdiff_components.transforms.boundary.dictionary import BoundaryDistanceWeightd


def _label(size: int = 48) -> np.ndarray:
    # Asymmetric so that flips and rotations change it.
    lab = np.zeros((1, size, size), np.int64)
    lab[0, 5:20, 8:40] = 1
    lab[0, 26:44, 30:42] = 2
    return lab


def _image(size: int = 48) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    return (150.0 * (_label(size)[0] > 0) + 2.0 * xx + yy)[None]


# case name, wrapper of the arrays
KINDS = [
    ("numpy", lambda x: x),
    ("metatensor", lambda x: MetaTensor(torch.as_tensor(x), meta={"filename_or_obj": "label.tif"})),
]

# case name, kwargs, pattern
INIT_ERRORS = [
    ("two_keys", {"keys": ["label", "image"]}, "exactly one"),
    ("overwrite", {"keys": "label", "output_key": "label"}, "output_key"),
    ("bad_normalization", {"normalization": "sigmoid"}, "BoundaryDistanceWeight: normalization"),
]


class TestBoundaryDistanceWeightd(unittest.TestCase):
    @parameterized.expand(KINDS)
    def test_same_as_array(self, _, wrap):
        data = {"image": wrap(_image()), "label": wrap(_label())}
        out = BoundaryDistanceWeightd(keys="label", num_classes=3)(data)
        expected = BoundaryDistanceWeight(num_classes=3)(_label())
        np.testing.assert_array_equal(np.asarray(out["boundary_weight"]), expected)
        self.assertIs(out["label"], data["label"])  # the inputs are untouched
        self.assertIsInstance(out["boundary_weight"], type(data["label"]))
        self.assertLess(float(expected.min()), 0.1)  # a non-trivial map

    def test_image_source_uses_label_gate(self):
        image, label = _image(), _label()
        out = BoundaryDistanceWeightd(keys="image", source="image", canny_low=20, canny_high=60)(
            {"image": image, "label": label}
        )
        expected = BoundaryDistanceWeight(source="image", canny_low=20, canny_high=60)(image, label=label)
        np.testing.assert_array_equal(out["boundary_weight"], expected)
        tiny = np.zeros_like(label)
        tiny[0, 0, :3] = 1
        gated = BoundaryDistanceWeightd(keys="image", source="image")({"image": image, "label": tiny})
        np.testing.assert_array_equal(gated["boundary_weight"], np.ones((1, 48, 48), np.float32))
        ungated = BoundaryDistanceWeightd(keys="image", source="image", label_key=None)({"image": image, "label": tiny})
        self.assertLess(float(ungated["boundary_weight"].min()), 0.5)

    @parameterized.expand(KINDS)
    def test_follows_flip_and_rotation(self, _, wrap):
        keys = ["image", "label", "boundary_weight"]
        pipeline = Compose(
            [
                BoundaryDistanceWeightd(keys="label"),
                RandFlipd(keys=keys, prob=1.0, spatial_axis=1),
                RandRotate90d(keys=keys, prob=1.0, max_k=1),
            ]
        ).set_random_state(seed=0)
        out = pipeline({"image": wrap(_image()), "label": wrap(_label())})
        reference = BoundaryDistanceWeight()(_label())

        def move(x: np.ndarray) -> np.ndarray:
            return np.rot90(np.flip(x, axis=2), k=1, axes=(1, 2))

        np.testing.assert_array_equal(np.asarray(out["label"]), move(_label()))
        np.testing.assert_array_equal(np.asarray(out["boundary_weight"]), move(reference))

    def test_cached_with_random_flip(self):
        keys = ["label", "boundary_weight"]
        pipeline = Compose([BoundaryDistanceWeightd(keys="label"), RandFlipd(keys=keys, prob=0.5, spatial_axis=0)])
        pipeline.set_random_state(seed=3)
        dataset = CacheDataset([{"label": _label()}] * 2, transform=pipeline, num_workers=0, progress=False)
        reference, label = BoundaryDistanceWeight()(_label()), _label()
        flips = set()
        for _ in range(4):
            for item in dataset:
                flipped = not np.array_equal(np.asarray(item["label"]), label)
                flips.add(flipped)
                expected = np.flip(reference, axis=1) if flipped else reference
                np.testing.assert_array_equal(np.asarray(item["boundary_weight"]), expected)
        self.assertEqual(flips, {True, False})

    @parameterized.expand(INIT_ERRORS)
    def test_init_errors(self, _, kwargs, pattern):
        with self.assertRaisesRegex(ValueError, pattern):
            BoundaryDistanceWeightd(**kwargs)

    def test_missing_gate_label(self):
        with self.assertRaisesRegex(KeyError, "label_key"):
            BoundaryDistanceWeightd(keys="image", source="image")({"image": _image()})

    def test_exported(self):
        self.assertIs(transforms_pkg.BoundaryDistanceWeightd, BoundaryDistanceWeightd)


if __name__ == "__main__":
    unittest.main()
