from __future__ import annotations

import math
import unittest

import torch
from parameterized import parameterized
from torch import nn

from monai.data.utils import compute_importance_map

from emdiff_components.diffusion import blend_weights, tile_size, tiled_prediction



class PointwiseNet(nn.Module):
    """Voxel-wise map of (x, condition, t): tiling and blending must reproduce the whole-volume call exactly."""

    def forward(self, x, t, condition):
        scale = t.to(x.dtype).view(-1, *([1] * (x.ndim - 1))) / 100.0
        return torch.tanh(x * (1 + scale) + condition.sum(1, keepdim=True) * 0.3 - condition[:, :1] ** 2)


class ConvNet(nn.Module):
    def __init__(self, spatial_dims: int):
        super().__init__()
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        self.conv = conv(3, 1, 3, padding=1)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.3)

    def forward(self, x, t, condition):
        return self.conv(torch.cat([x, condition], 1))


class StrideCheckNet(nn.Module):
    """Refuses tiles that are not a multiple of its stride; records the time steps it was called with."""

    def __init__(self, stride):
        super().__init__()
        self.stride = stride
        self.calls = []

    def forward(self, x, t, condition):
        for size, s in zip(x.shape[2:], self.stride):
            if size % s:
                raise RuntimeError(f"tile {tuple(x.shape[2:])} not a multiple of {self.stride}")
        self.calls.append(t.clone())
        return x + condition[:, :1]


TILE_CASES = [
    ("shrunk_3d", (8, 128, 128), (5, 100, 60), (1, 8, 8), (5, 104, 64)),
    ("kept_3d", (8, 128, 128), (16, 512, 512), (1, 8, 8), (8, 128, 128)),
    ("roi_rounded_up", (8, 100, 100), (16, 512, 512), (1, 8, 8), (8, 104, 104)),
    ("int_roi_int_stride_2d", 64, (30, 200), 8, (32, 64)),
]

SHAPES = [
    ("2d", (2, 1, 40, 36), (2, 2, 40, 36), (16, 16)),
    ("3d", (2, 1, 6, 30, 26), (2, 2, 6, 30, 26), (4, 12, 12)),
]


class TestBlendWeights(unittest.TestCase):
    @parameterized.expand([((16,),), ((16, 12),), ((4, 16, 20),)])
    def test_monai_floor_reproduces_monai(self, size):
        expected = compute_importance_map(size, mode="gaussian", sigma_scale=0.125)
        torch.testing.assert_close(blend_weights(size, min_weight=1e-3), expected, atol=0, rtol=0)

    def test_unfloored_gaussian_values(self):
        weights = blend_weights((4, 16, 16))
        # separable: corner = product of the 1D end weights exp(-(l - 1)^2 / (8 (l / 8)^2))
        ends = [math.exp(-(((n - 1) / 2) ** 2) / (2 * (n * 0.125) ** 2)) for n in (4, 16, 16)]
        self.assertAlmostEqual(float(weights[0, 0, 0]), ends[0] * ends[1] * ends[2], delta=1e-12)
        self.assertLess(float(weights.min()), 1e-3)  # where MONAI's floor would flatten the corners
        self.assertAlmostEqual(float(weights.max()), math.exp(-0.5 * (0.5 / 0.5) ** 2 - 2 * 0.5 * (0.5 / 2) ** 2), 6)
        torch.testing.assert_close(blend_weights((3, 5), mode="constant"), torch.ones(3, 5))


class TestTileSize(unittest.TestCase):
    @parameterized.expand(TILE_CASES)
    def test_values(self, _, roi, shape, stride, expected):
        self.assertEqual(tile_size(roi, shape, stride), expected)

    def test_wrong_length_raises(self):
        with self.assertRaisesRegex(ValueError, "roi_size"):
            tile_size((8, 8), (4, 16, 16))
        with self.assertRaisesRegex(ValueError, "stride"):
            tile_size(8, (4, 16, 16), (0, 2, 2))


class TestTiledPrediction(unittest.TestCase):
    @parameterized.expand(SHAPES)
    def test_pointwise_network_equals_whole_volume(self, _, x_shape, c_shape, roi):
        g = torch.Generator().manual_seed(1)
        x, c = torch.randn(x_shape, generator=g), torch.randn(c_shape, generator=g)
        out = tiled_prediction(PointwiseNet(), x, c, 37, roi, sw_batch_size=3, overlap=0.25)
        expected = PointwiseNet()(x, torch.full((x.shape[0],), 37), c)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)

    @parameterized.expand(SHAPES)
    def test_one_tile_equals_direct_call(self, _, x_shape, c_shape, roi):
        g = torch.Generator().manual_seed(2)
        x, c = torch.randn(x_shape, generator=g), torch.randn(c_shape, generator=g)
        net = ConvNet(len(x_shape) - 2)
        out = tiled_prediction(net, x, c, 5, (64,) * (len(x_shape) - 2))
        torch.testing.assert_close(out, net(x, torch.full((2,), 5), c), atol=1e-5, rtol=1e-5)

    def test_tiles_rounded_to_stride_and_timesteps_passed(self):
        x, c = torch.zeros(1, 1, 3, 21, 19), torch.ones(1, 2, 3, 21, 19)
        net = StrideCheckNet((1, 4, 4))
        # Y and X fit in one tile, padded from (21, 19) to (24, 20); Z takes two tiles
        out = tiled_prediction(net, x, c, 7, (2, 32, 32), sw_batch_size=2, stride=net.stride)
        self.assertEqual(out.shape, x.shape)
        torch.testing.assert_close(out, torch.ones_like(x))
        steps = torch.cat(net.calls)
        self.assertEqual(steps.dtype, torch.long)
        self.assertTrue(bool((steps == 7).all()))

    def test_bad_input_raises(self):
        x = torch.zeros(1, 1, 4, 8, 8)
        with self.assertRaisesRegex(ValueError, "tiled_prediction"):
            tiled_prediction(PointwiseNet(), x, torch.zeros(1, 2, 4, 8, 9), 0, 8)
        with self.assertRaisesRegex(ValueError, "overlap"):
            tiled_prediction(PointwiseNet(), x, torch.zeros(1, 2, 4, 8, 8), 0, 8, overlap=1.0)
        with self.assertRaisesRegex(ValueError, "mode"):
            tiled_prediction(PointwiseNet(), x, torch.zeros(1, 2, 4, 8, 8), 0, 8, mode="mean")


if __name__ == "__main__":
    unittest.main()
