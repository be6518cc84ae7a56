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
    ConditionalCrossAttentionModule,
    ContrastEnhancementModule,
    LearnableFourierFilter,
    LinearCrossAttention,
    SoftmaxCrossAttention,
    SpatialAttention,
    TimeResBlock,
    TimestepEmbedding,
)



def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# (image size, frequency grid) for the Fourier filter
FILTER_IDENTITY_CASES = [((32, 48), (64, 64)), ((64, 64), (64, 64)), ((33, 47), (10, 7))]
FILTER_NUMPY_CASES = [((32, 48), (64, 64)), ((64, 64), (64, 64)), ((33, 47), (10, 7)), ((8, 6), (16, 16))]
# (channels, context channels, heads, head channels, height, width)
ATTENTION_CASES = [(8, 6, 2, 4, 5, 7), (4, 4, 1, 8, 3, 3)]


def _numpy_resample(grid_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """Independent bilinear, frequency-periodic resampling of a centred (C, G_h, G_w) map with np.interp."""
    _, gh, gw = grid_map.shape
    grid_fh = (np.arange(gh) - gh // 2) / gh
    grid_fw = (np.arange(gw) - gw // 2) / gw
    fh, fw = np.fft.fftfreq(height), np.fft.fftfreq(width)
    channels = range(len(grid_map))
    rows = np.stack([[np.interp(fh, grid_fh, grid_map[c, :, j], period=1.0) for j in range(gw)] for c in channels])
    rows = rows.transpose(0, 2, 1)  # (C, height, G_w)
    return np.stack([[np.interp(fw, grid_fw, rows[c, i], period=1.0) for i in range(height)] for c in channels])


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


def _explicit_linear_attention(att: LinearCrossAttention, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Efficient attention written head by head: softmax over d for q, over tokens for k."""
    heads, d = att.heads, att.head_channels
    q = att.to_q(att.norm_q(x))
    cn = att.norm_kv(c)
    k, v = att.to_k(cn), att.to_v(cn)
    q = q + att.channel_attention(q) * q
    k = k + att.spatial_attention(k) * k
    b, _, h, w = x.shape
    out = torch.zeros(b, heads * d, h * w, dtype=x.dtype)
    for i in range(b):
        for head in range(heads):
            sl = slice(head * d, (head + 1) * d)
            qh, kh, vh = (t[i, sl].reshape(d, -1) for t in (q, k, v))
            context = kh.softmax(dim=1) @ vh.T  # (d, d): sum_n softmax_n(k)[d, n] v[e, n]
            out[i, sl] = context.T @ (qh.softmax(dim=0) * d**-0.5)
    return att.out_norm(att.to_out(out.reshape(b, heads * d, h, w)))


class TestLinearCrossAttention(unittest.TestCase):
    @parameterized.expand(ATTENTION_CASES)
    def test_matches_explicit_computation(self, channels, context_channels, heads, d, h, w):
        torch.manual_seed(3)
        att = LinearCrossAttention(channels, context_channels, heads, d).double()
        x, c = _randn(2, channels, h, w, seed=9), _randn(2, context_channels, h, w, seed=10)
        expected = _explicit_linear_attention(att, x, c)
        torch.testing.assert_close(att(x, c), expected)
        with torch.no_grad():
            torch.testing.assert_close(att(x, c), expected)

    def test_self_attention_default(self):
        att = LinearCrossAttention(4, heads=2, head_channels=2).double()
        x = _randn(1, 4, 3, 5, seed=11)
        torch.testing.assert_close(att(x), _explicit_linear_attention(att, x, x))

    def test_errors(self):
        att = LinearCrossAttention(4, heads=2, head_channels=2)
        with self.assertRaisesRegex(ValueError, "LinearCrossAttention.*spatial"):
            att(torch.zeros(1, 4, 3, 3), torch.zeros(1, 4, 3, 4))
        with self.assertRaisesRegex(ValueError, "LinearCrossAttention.*heads"):
            LinearCrossAttention(4, heads=0)


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


class TestLearnableFourierFilter(unittest.TestCase):
    @parameterized.expand(FILTER_IDENTITY_CASES)
    def test_identity_at_init(self, size, grid):
        filt = LearnableFourierFilter(3, grid)
        x = _randn(2, 3, *size, seed=14, dtype=torch.float32)
        torch.testing.assert_close(filt(x), x, atol=1e-5, rtol=1e-5)
        with torch.no_grad():
            torch.testing.assert_close(filt(x), x, atol=1e-5, rtol=1e-5)

    @parameterized.expand(FILTER_NUMPY_CASES)
    def test_matches_numpy_fft(self, size, grid):
        filt = LearnableFourierFilter(3, grid).double()
        maps = {name: _randn(3, *grid, seed=s).abs() + 0.5 for name, s in (("weight_real", 15), ("weight_imag", 16))}
        thetas = {"theta_real": torch.tensor([0.5, 1.0, 2.0]), "theta_imag": torch.tensor([1.5, -1.0, 0.25])}
        with torch.no_grad():
            for name, value in maps.items():
                getattr(filt, name).copy_(value)
            for name, value in thetas.items():
                getattr(filt, name).copy_(value[:, None, None])
        x = _randn(2, 3, *size, seed=17)
        real_map = _numpy_resample(maps["weight_real"].numpy(), *size) * thetas["theta_real"].numpy()[:, None, None]
        imag_map = _numpy_resample(maps["weight_imag"].numpy(), *size) * thetas["theta_imag"].numpy()[:, None, None]
        spec = np.fft.fft2(x.numpy())
        expected = np.real(np.fft.ifft2(spec.real * real_map + 1j * spec.imag * imag_map))
        np.testing.assert_allclose(filt(x).detach().numpy(), expected, atol=1e-10)
        with torch.no_grad():
            np.testing.assert_allclose(filt(x).numpy(), expected, atol=1e-10)
        # the full-spectrum maps the module reports are the independently resampled ones
        np.testing.assert_allclose(filt.resampled_maps(*size)[0].detach().numpy(), real_map, atol=1e-12)

    def test_grid_sized_input_uses_stored_map(self):
        filt = LearnableFourierFilter(2, (8, 6)).double()
        with torch.no_grad():
            filt.weight_real.copy_(_randn(2, 8, 6, seed=18))
        real, _ = filt.resampled_maps(8, 6)
        expected = np.fft.ifftshift(filt.weight_real.detach().numpy(), axes=(1, 2))
        np.testing.assert_allclose(real.detach().numpy(), expected, atol=1e-12)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "LearnableFourierFilter.*filter_grid"):
            LearnableFourierFilter(2, (8,))
        with self.assertRaisesRegex(ValueError, "LearnableFourierFilter"):
            LearnableFourierFilter(2)(torch.zeros(1, 3, 8, 8))


class TestContrastEnhancementModule(unittest.TestCase):
    def _module(self, **kwargs) -> ContrastEnhancementModule:
        torch.manual_seed(5)
        return ContrastEnhancementModule(8, 8, 12, 4, 2, 4, (8, 8), **kwargs).double()

    def test_matches_composition(self):
        cem = self._module()
        x, c, temb = _randn(2, 8, 6, 10, seed=19), _randn(2, 8, 6, 10, seed=20), _randn(2, 12, seed=21)
        z = cem.norm(cem.fourier_filter(x)) + x
        z = z + _explicit_linear_attention(cem.attention, z, c)
        torch.testing.assert_close(cem(x, c, temb), cem.block(z, temb))
        # the condition enters through the keys / values
        self.assertGreater((cem(x, c, temb) - cem(x, c.flip(-1), temb)).abs().max().item(), 1e-6)

    def test_checkpointing_same_values_and_gradients(self):
        x, c, temb = (t.requires_grad_() for t in (_randn(2, 8, 6, 10), _randn(2, 8, 6, 10, seed=1), _randn(2, 12)))
        results = []
        for flag in (False, True):
            cem = self._module(use_checkpointing=flag).train()
            out = cem(x, c, temb)
            grads = torch.autograd.grad(out.square().sum(), [x, c, temb, *cem.parameters()])
            results.append((out, grads))
        torch.testing.assert_close(results[0][0], results[1][0])
        for a, b in zip(results[0][1], results[1][1]):
            torch.testing.assert_close(a, b)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "ContrastEnhancementModule.*spatial_dims"):
            ContrastEnhancementModule(8, spatial_dims=3)


class TestConditionalCrossAttentionModule(unittest.TestCase):
    def test_matches_composition(self):
        torch.manual_seed(6)
        ccam = ConditionalCrossAttentionModule(8, 12, 4, 2, 4).double()
        x, c, temb = _randn(2, 8, 3, 5, seed=22), _randn(2, 8, 3, 5, seed=23), _randn(2, 12, seed=24)
        h = ccam.mid1(x, temb) + ccam.cond_mid1(c, temb)
        h = h + ccam.cross_attention(c, h)
        h1, h2 = h + ccam.ff1(h), h + ccam.ff2(h)
        expected = ccam.mid2(h2 + ccam.branch_attention(h2, h1), temb)
        torch.testing.assert_close(ccam(x, c, temb), expected)
        with torch.no_grad():
            torch.testing.assert_close(ccam(x, c, temb), expected)

    def test_errors(self):
        ccam = ConditionalCrossAttentionModule(8, None, 4, 2, 4)
        with self.assertRaisesRegex(ValueError, "ConditionalCrossAttentionModule.*same shape"):
            ccam(torch.zeros(1, 8, 2, 2), torch.zeros(1, 8, 2, 3))
        with self.assertRaisesRegex(ValueError, "ConditionalCrossAttentionModule.*ff_mult"):
            ConditionalCrossAttentionModule(8, ff_mult=0)


if __name__ == "__main__":
    unittest.main()
