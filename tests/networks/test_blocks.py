"""Tests of the ECSD building blocks against hand-written or numpy computations."""

from __future__ import annotations

import math
import unittest

import numpy as np
import torch
import torch.nn.functional as F
from parameterized import parameterized

from emdiff_components.networks import blocks
from emdiff_components.networks.blocks import (
    ChannelAttention,
    ChannelLayerNorm,
    SoftmaxCrossAttention,
    SpatialAttention,
    TimeResBlock,
    TimestepEmbedding,
)



def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


class TestBlocksExports(unittest.TestCase):
    def test_all_matches_modules(self):
        import importlib
        import pkgutil

        modules = [importlib.import_module(f"{blocks.__name__}.{info.name}") for info in pkgutil.iter_modules(blocks.__path__)]
        names = [name for module in modules for name in module.__all__]
        self.assertEqual(sorted(blocks.__all__), sorted(names))
        for module in modules:
            for name in module.__all__:
                self.assertIs(getattr(blocks, name), getattr(module, name))


class TestTimestepEmbedding(unittest.TestCase):
    def test_sinusoid_values(self):
        torch.manual_seed(0)
        emb = TimestepEmbedding(6, 10)
        t = torch.tensor([0, 3, 49])
        half = 3
        freqs = np.exp(-math.log(10000) * np.arange(half) / half)
        args = t.numpy()[:, None] * freqs[None]
        features = torch.from_numpy(np.concatenate([np.cos(args), np.sin(args)], axis=1)).float()
        torch.testing.assert_close(emb(t), emb.mlp(features), atol=1e-5, rtol=1e-5)
        self.assertEqual(emb(t).shape, (3, 10))

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "TimestepEmbedding.*channels"):
            TimestepEmbedding(0)
        with self.assertRaisesRegex(ValueError, "TimestepEmbedding.*timesteps"):
            TimestepEmbedding(4)(torch.zeros(2, 1))


class TestChannelLayerNorm(unittest.TestCase):
    def test_values_against_numpy(self):
        norm = ChannelLayerNorm(5).double()
        with torch.no_grad():
            norm.weight.copy_(torch.arange(1.0, 6.0))
            norm.bias.copy_(torch.linspace(-1, 1, 5))
        x = _randn(2, 5, 3, 4)
        xn = x.numpy()
        mean = xn.mean(axis=1, keepdims=True)
        var = xn.var(axis=1, keepdims=True)
        expected = (xn - mean) / np.sqrt(var + 1e-5) * np.arange(1.0, 6.0)[None, :, None, None]
        expected += np.linspace(-1, 1, 5)[None, :, None, None]
        np.testing.assert_allclose(norm(x).detach().numpy(), expected, atol=1e-10)
        # channels-last input gives the same numbers
        np.testing.assert_allclose(
            norm(x.contiguous(memory_format=torch.channels_last)).detach().numpy(), expected, atol=1e-10
        )

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "ChannelLayerNorm.*channels"):
            ChannelLayerNorm(0)
        with self.assertRaisesRegex(ValueError, "ChannelLayerNorm"):
            ChannelLayerNorm(4)(torch.zeros(1, 3, 2, 2))


class TestTimeResBlock(unittest.TestCase):
    @parameterized.expand([(4, 8), (8, 8)])
    def test_matches_explicit_formula(self, cin, cout):
        torch.manual_seed(1)
        block = TimeResBlock(2, cin, cout, temb_channels=6, norm_num_groups=4).double()
        x, temb = _randn(2, cin, 5, 6, seed=2), _randn(2, 6, seed=3)
        s, t = F.linear(F.silu(temb), block.time_proj.weight, block.time_proj.bias).chunk(2, dim=1)
        h = F.conv2d(x, block.conv1.conv.weight, block.conv1.conv.bias, padding=1)
        h = F.group_norm(h, 4, block.norm1.weight, block.norm1.bias)
        h = F.silu(h * (1 + s[:, :, None, None]) + t[:, :, None, None])
        h = F.conv2d(h, block.conv2.conv.weight, block.conv2.conv.bias, padding=1)
        h = F.silu(F.group_norm(h, 4, block.norm2.weight, block.norm2.bias))
        skip = x if cin == cout else F.conv2d(x, block.skip.conv.weight, block.skip.conv.bias)
        expected = h + skip
        torch.testing.assert_close(block(x, temb), expected)
        with torch.no_grad():  # the in-place path used without autograd
            torch.testing.assert_close(block(x, temb), expected)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "TimeResBlock.*norm_num_groups"):
            TimeResBlock(2, 4, 12, norm_num_groups=8)
        with self.assertRaisesRegex(ValueError, "TimeResBlock.*temb"):
            TimeResBlock(2, 4, 8, temb_channels=3)(torch.zeros(1, 4, 4, 4))


class TestChannelAttention(unittest.TestCase):
    def test_values_against_numpy(self):
        att = ChannelAttention(4, reduction=2).double()
        w1 = _randn(2, 4, seed=4)
        w2 = _randn(4, 2, seed=5)
        with torch.no_grad():
            att.mlp[0].weight.copy_(w1[:, :, None, None])
            att.mlp[2].weight.copy_(w2[:, :, None, None])
        x = _randn(2, 4, 3, 2, seed=6)
        xn = x.numpy()

        def mlp(v):  # v: (B, C)
            return np.maximum(v @ w1.numpy().T, 0) @ w2.numpy().T

        logits = mlp(xn.mean(axis=(2, 3))) + mlp(xn.max(axis=(2, 3)))
        expected = 1 / (1 + np.exp(-logits))
        np.testing.assert_allclose(att(x).detach().numpy()[:, :, 0, 0], expected, atol=1e-12)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "ChannelAttention.*channels"):
            ChannelAttention(0)


class TestSpatialAttention(unittest.TestCase):
    def test_values_against_numpy(self):
        att = SpatialAttention(7).double()
        weight = _randn(1, 2, 7, 7, seed=7)
        with torch.no_grad():
            att.conv.conv.weight.copy_(weight)
        x = _randn(1, 3, 5, 6, seed=8)
        pooled = np.stack([x.numpy()[0].mean(axis=0), x.numpy()[0].max(axis=0)])  # (2, H, W)
        padded = np.pad(pooled, ((0, 0), (3, 3), (3, 3)))
        logits = np.zeros((5, 6))
        for i in range(5):
            for j in range(6):
                logits[i, j] = np.sum(padded[:, i : i + 7, j : j + 7] * weight.numpy()[0])
        expected = 1 / (1 + np.exp(-logits))
        np.testing.assert_allclose(att(x).detach().numpy()[0, 0], expected, atol=1e-12)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "SpatialAttention.*kernel_size"):
            SpatialAttention(6)


class TestSoftmaxCrossAttention(unittest.TestCase):
    def test_matches_explicit_computation(self):
        torch.manual_seed(4)
        att = SoftmaxCrossAttention(6, 5, heads=2, head_channels=3).double()
        x, c = _randn(2, 6, 3, 4, seed=12), _randn(2, 5, 3, 4, seed=13)
        q = att.to_q(att.norm_q(x)).reshape(2, 2, 3, -1)  # (B, heads, d, N)
        kv = att.to_kv(att.norm_kv(c))
        k, v = kv[:, :6].reshape(2, 2, 3, -1), kv[:, 6:].reshape(2, 2, 3, -1)
        weights = torch.softmax(torch.einsum("bhdn,bhdm->bhnm", q, k) / math.sqrt(3), dim=-1)
        out = torch.einsum("bhnm,bhdm->bhdn", weights, v).reshape(2, 6, 3, 4)
        torch.testing.assert_close(att(x, c), att.to_out(out))

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "SoftmaxCrossAttention.*batch"):
            SoftmaxCrossAttention(4, heads=1, head_channels=4)(torch.zeros(1, 4, 2, 2), torch.zeros(2, 4, 2, 2))


if __name__ == "__main__":
    unittest.main()
