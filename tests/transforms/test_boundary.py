from __future__ import annotations

import os
import unittest
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from monai.data import MetaTensor
from monai.utils import optional_import
from parameterized import parameterized
from scipy import ndimage

import emdiff_components.transforms as transforms_pkg
from emdiff_components.transforms.boundary import array as boundary_array
from emdiff_components.transforms.boundary.array import BoundaryDistanceWeight

cv2, has_cv2 = optional_import("cv2")
tifffile, has_tifffile = optional_import("tifffile")

SHARED_DATA = Path(os.environ.get("EMDIFF_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))
ISBI = SHARED_DATA / "isbi2012_em"


def _square(size: int = 64) -> np.ndarray:
    lab = np.zeros((1, size, size), np.int64)
    lab[0, 16:48, 16:48] = 1
    return lab


def _disk(size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return ((yy - 30) ** 2 + (xx - 34) ** 2 < 18**2).astype(np.int64)[None]


def _two_classes(size: int = 64) -> np.ndarray:
    lab = np.zeros((1, size, size), np.int64)
    lab[0, 8:40, 8:30] = 1
    lab[0, 20:56, 36:60] = 2
    return lab


MASKS = {"square": (_square, 2), "disk": (_disk, 2), "two_classes": (_two_classes, 3)}


def _reference(lab: np.ndarray, num_classes: int, ksize: int, low: float, high: float, normalization: str):
    """Independent computation: scipy's exact EDT on the edges of the same cv2.Canny call."""
    grey = (lab[0] * 255 // (num_classes - 1)).astype(np.uint8)
    if ksize:
        grey = cv2.GaussianBlur(grey, (ksize, ksize), 0)
    edges = cv2.Canny(grey, low, high) > 0
    dist = ndimage.distance_transform_edt(~edges)
    if normalization == "minmax":
        return 1.0 - dist / dist.max()
    return (max(lab.shape[1:]) * 1.1415 - dist) / dist.max()


# case name, mask name, blur_kernel_size, normalization
REFERENCE_CASES = [
    (f"{name}_k{k}_{norm}", name, k, norm) for name in MASKS for k in (0, 5) for norm in ("minmax", "paper")
]

# (kwargs, pattern of the error message)
INIT_ERRORS = [
    ({"normalization": "sigmoid"}, "normalization"),
    ({"source": "mask"}, "source"),
    ({"blur_kernel_size": 4}, "blur_kernel_size"),
    ({"blur_kernel_size": -1}, "blur_kernel_size"),
    ({"blur_sigma": -1.0}, "blur_sigma"),
    ({"canny_low": 50, "canny_high": 10}, "canny_high"),
    ({"canny_low": -1}, "canny_low"),
    ({"min_foreground_fraction": 1.5}, "min_foreground_fraction"),
    ({"size_factor": 0.0}, "size_factor"),
    ({"num_classes": 1}, "num_classes"),
]


class TestBoundaryDistanceWeight(unittest.TestCase):
    @parameterized.expand(REFERENCE_CASES)
    @unittest.skipUnless(has_cv2, "needs OpenCV")
    def test_matches_independent_edt(self, _, name, ksize, normalization):
        make, num_classes = MASKS[name]
        lab = make()
        out = BoundaryDistanceWeight(num_classes=num_classes, blur_kernel_size=ksize, normalization=normalization)(lab)
        self.assertEqual(out.shape, (1, 64, 64))
        self.assertEqual(out.dtype, np.float32)
        expected = _reference(lab, num_classes, ksize, 0, 0, normalization)
        np.testing.assert_allclose(out[0], expected, rtol=1e-5, atol=1e-5)

    def test_hand_values_half_plane(self):
        # Border between columns 15 and 16; without blur, Canny(0, 0) marks column 15, so d = |col - 15|, max 16.
        lab = np.zeros((1, 32, 32), np.int64)
        lab[0, :, 16:] = 1
        out = BoundaryDistanceWeight(blur_kernel_size=0)(lab)[0]
        np.testing.assert_array_equal(np.where(out[5] == 1.0)[0], [15])
        cols = [0, 15, 16, 20, 31]
        np.testing.assert_allclose(out[5, cols], [1 - 15 / 16, 1.0, 1 - 1 / 16, 1 - 5 / 16, 0.0], atol=1e-6)
        paper = BoundaryDistanceWeight(blur_kernel_size=0, normalization="paper")(lab)[0]
        s = 32 * 1.1415
        expected = [(s - 15) / 16, s / 16, (s - 1) / 16, (s - 5) / 16, (s - 16) / 16]
        np.testing.assert_allclose(paper[5, cols], expected, rtol=1e-6)
        # Every row is the same (the border is straight).
        np.testing.assert_array_equal(out, np.broadcast_to(out[:1], out.shape))

    def test_hand_values_square(self):
        # Unblurred square [16, 48): Canny(0, 0) marks column / row 15 (top, left) and 47 (bottom, right); the
        # image corners are the farthest pixels, 16 * sqrt(2) from the ring's corners.
        lab = _square()
        out = BoundaryDistanceWeight(blur_kernel_size=0)(lab)[0]
        dmax = 16 * np.sqrt(2)
        rows, cols = [31, 31, 31, 31, 0, 63], [31, 20, 15, 47, 0, 63]
        np.testing.assert_allclose(out[rows, cols], [1 - 16 / dmax, 1 - 5 / dmax, 1, 1, 0, 0], atol=1e-6)
        paper = BoundaryDistanceWeight(blur_kernel_size=0, normalization="paper")(lab)[0]
        s = 64 * 1.1415
        expected = [(s - 16) / dmax, s / dmax, (s - dmax) / dmax]
        np.testing.assert_allclose(paper[[31, 31, 0], [31, 15, 0]], expected, rtol=1e-6)

    @parameterized.expand([("below", 40, True), ("above", 42, False)])
    def test_area_gate(self, _, area, gated):
        # 64 x 64 = 4096 px, 1 % = 40.96 px: a compact block of `area` foreground pixels.
        lab = np.zeros((1, 64, 64), np.int64)
        idx = np.arange(area)
        lab[0, 20 + idx // 8, 20 + idx % 8] = 1
        self.assertEqual(int(lab.sum()), area)
        out = BoundaryDistanceWeight()(lab)
        if gated:
            np.testing.assert_array_equal(out, np.ones_like(out))
        else:
            self.assertLess(float(out.min()), 0.5)
            self.assertEqual(float(out.max()), 1.0)
        # min_foreground_fraction=0 switches the gate off
        self.assertLess(float(BoundaryDistanceWeight(min_foreground_fraction=0.0)(lab).min()), 0.5)

    @parameterized.expand(
        [
            ("empty_label", np.zeros((1, 16, 16), np.int64), "label"),
            ("full_label", np.ones((1, 16, 16), np.int64), "label"),
            ("constant_image", np.full((1, 16, 16), 7.5, np.float32), "image"),
        ]
    )
    def test_no_edges_gives_ones(self, _, data, source):
        out = BoundaryDistanceWeight(source=source)(data)
        np.testing.assert_array_equal(out, np.ones((1, 16, 16), np.float32))

    def test_all_edges_gives_ones(self):
        lab = np.zeros((1, 16, 16), np.int64)
        lab[0, 4:12, 4:12] = 1
        with mock.patch.object(boundary_array.cv2, "Canny", return_value=np.full((16, 16), 255, np.uint8)) as canny:
            out = BoundaryDistanceWeight()(lab)
        canny.assert_called_once()
        np.testing.assert_array_equal(out, np.ones((1, 16, 16), np.float32))

    def test_bitwise_reproducible(self):
        # OpenCV's threaded distance transform varies by 1 ulp between runs; the transform snaps it to the exact EDT.
        lab = np.zeros((1, 256, 256), np.int64)
        lab[0, 40:200, 30:90] = 1
        lab[0, 120:230, 150:240] = 1
        first = BoundaryDistanceWeight()(lab)
        for _ in range(3):
            np.testing.assert_array_equal(BoundaryDistanceWeight()(lab), first)

    def test_one_hot_equals_class_map(self):
        lab = _two_classes()
        one_hot = np.eye(3, dtype=np.float32)[lab[0]].transpose(2, 0, 1)
        np.testing.assert_array_equal(BoundaryDistanceWeight()(one_hot), BoundaryDistanceWeight(num_classes=3)(lab))

    @parameterized.expand([("tensor", torch.as_tensor), ("metatensor", lambda x: MetaTensor(torch.as_tensor(x)))])
    def test_torch_in_torch_out(self, _, wrap):
        lab = _disk()
        out = BoundaryDistanceWeight()(wrap(lab.astype(np.float32)))
        self.assertIsInstance(out, type(wrap(lab)))
        self.assertEqual(out.dtype, torch.float32)
        np.testing.assert_array_equal(out.numpy(), BoundaryDistanceWeight()(lab))

    def test_image_source_matches_reference_and_gate(self):
        # A smooth synthetic "cell" image: a bright disk on a gradient background.
        yy, xx = np.mgrid[:64, :64].astype(np.float32)
        img = (200.0 * (((yy - 30) ** 2 + (xx - 34) ** 2) < 18**2) + xx)[None]
        out = BoundaryDistanceWeight(source="image", canny_low=20, canny_high=60)(img)
        grey = np.round((img[0] - img.min()) * 255.0 / (img.max() - img.min())).astype(np.uint8)
        edges = cv2.Canny(cv2.GaussianBlur(grey, (5, 5), 0), 20, 60) > 0
        dist = ndimage.distance_transform_edt(~edges)
        np.testing.assert_allclose(out[0], 1.0 - dist / dist.max(), atol=1e-5)
        tiny = np.zeros((1, 64, 64), np.int64)
        tiny[0, :2, :2] = 1
        gated = BoundaryDistanceWeight(source="image", canny_low=20, canny_high=60)(img, label=tiny)
        np.testing.assert_array_equal(gated, np.ones_like(gated))

    @unittest.skipUnless(has_tifffile and (ISBI.is_dir() or os.environ.get("CI") == "true"), "shared data missing")
    def test_real_em_defaults(self):
        # ISBI 2012 section 0 (256 x 256 crop): image-source defaults give sparse edges; label source hits borders.
        raw = tifffile.imread(str(ISBI / "train-volume.tif"), key=0)[None, :256, :256]
        mem = (tifffile.imread(str(ISBI / "train-labels.tif"), key=0)[None, :256, :256] > 0).astype(np.int64)
        img_map = BoundaryDistanceWeight(source="image")(raw)
        edge_fraction = float((img_map == 1.0).mean())
        self.assertGreater(edge_fraction, 0.05)
        self.assertLess(edge_fraction, 0.3)
        lab_map = BoundaryDistanceWeight()(mem)
        border = ndimage.binary_dilation(mem[0]) != ndimage.binary_erosion(mem[0])
        # every label edge lies within 2 px of a true class border
        self.assertLessEqual(ndimage.distance_transform_edt(~border)[lab_map[0] == 1.0].max(), 2.0)

    @parameterized.expand(INIT_ERRORS)
    def test_init_errors(self, kwargs, pattern):
        with self.assertRaisesRegex(ValueError, f"BoundaryDistanceWeight.*{pattern}"):
            BoundaryDistanceWeight(**kwargs)

    @parameterized.expand(
        [
            ("non_integer", {}, np.full((1, 8, 8), 0.5, np.float32), None, "integer"),
            ("negative", {}, np.full((1, 8, 8), -1, np.int64), None, ">= 0"),
            ("too_many_classes", {"num_classes": 2}, np.full((1, 8, 8), 2, np.int64), None, "num_classes"),
            ("one_hot_mismatch", {"num_classes": 2}, np.zeros((3, 8, 8), np.float32), None, "num_classes"),
            ("3d", {}, np.zeros((1, 4, 8, 8), np.int64), None, r"\(C, H, W\)"),
            ("label_shape", {}, np.zeros((1, 8, 8), np.int64), np.zeros((1, 8, 9), np.int64), "label spatial"),
            ("nan_image", {"source": "image"}, np.full((1, 8, 8), np.nan, np.float32), None, "NaN"),
        ]
    )
    def test_call_errors(self, _, kwargs, data, label, pattern):
        with self.assertRaisesRegex(ValueError, f"BoundaryDistanceWeight.*{pattern}"):
            BoundaryDistanceWeight(**kwargs)(data, label=label)

    def test_type_error(self):
        with self.assertRaisesRegex(TypeError, "BoundaryDistanceWeight.*img"):
            BoundaryDistanceWeight()([[[0, 1]]])

    def test_exported(self):
        self.assertIn("BoundaryDistanceWeight", transforms_pkg.__all__)
        self.assertIs(transforms_pkg.BoundaryDistanceWeight, BoundaryDistanceWeight)


if __name__ == "__main__":
    unittest.main()
