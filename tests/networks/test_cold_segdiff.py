"""Tests of the Cold SegDiffusion blocks (time features, self-attentions, CEM, MID bottleneck) and the FF-Parser."""

from __future__ import annotations

import math
import unittest

import numpy as np
import torch
import torch.nn.functional as F
from parameterized import parameterized

from emdiff_components.networks.blocks import (
    ContrastEnhancementBlock,
    FFParserFilter,
    LinearSelfAttention,
    MIDBottleneck,
    SinusoidalTimeEmbedding,
    SoftmaxSelfAttention,
)


def _randn(*shape: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _perturb(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Move every parameter away from its initial value (LayerNorm gains of 1, zero biases...)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def _layer_norm(x: torch.Tensor, g: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Channel LayerNorm as the reference writes it: biased variance, eps 1e-5."""
    mean = x.mean(dim=1, keepdim=True)
    var = x.var(dim=1, unbiased=False, keepdim=True)
    out = (x - mean) / torch.sqrt(var + 1e-5) * g.view(1, -1, 1, 1)
    return out if b is None else out + b.view(1, -1, 1, 1)


def _heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, heads * d, H, W) -> (B, heads, d, N)."""
    b, c, h, w = t.shape
    return t.reshape(b, heads, c // heads, h * w)


# (image size, filter size): equal (exact maps), larger, smaller, odd
FILTER_CASES = [((8, 6), (8, 6)), ((16, 20), (8, 6)), ((9, 13), (7, 5)), ((5, 7), (8, 8))]


class TestSinusoidalTimeEmbedding(unittest.TestCase):
    def test_features_by_hand(self):
        emb = SinusoidalTimeEmbedding(8)
        t = torch.tensor([0, 3, 41])
        # half = 4: frequencies 1e4 ** (-i / 3) for i = 0..3, the last one exactly 1e-4
        freqs = [10000 ** (-i / 3) for i in range(4)]
        expected = [[math.sin(s * f) for f in freqs] + [math.cos(s * f) for f in freqs] for s in (0, 3, 41)]
        torch.testing.assert_close(emb.features(t), torch.tensor(expected, dtype=torch.float32))
        self.assertEqual(emb(t).shape, (3, 32))

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "SinusoidalTimeEmbedding.*even"):
            SinusoidalTimeEmbedding(7)
        with self.assertRaisesRegex(ValueError, "SinusoidalTimeEmbedding.*timesteps"):
            SinusoidalTimeEmbedding(8)(torch.zeros(2, 1))


class TestLinearSelfAttention(unittest.TestCase):
    def _naive(self, att: LinearSelfAttention, x: torch.Tensor) -> torch.Tensor:
        heads, d = att.heads, att.head_channels
        x = _layer_norm(x, att.norm.weight)
        q, k, v = F.conv2d(x, att.to_qkv.weight).chunk(3, dim=1)
        if att.channel_attention is not None:
            pooled = (q.mean(dim=(2, 3), keepdim=True), q.amax(dim=(2, 3), keepdim=True))
            q = q + torch.sigmoid(sum(att.channel_attention.mlp(p) for p in pooled)) * q
            spatial = torch.cat([k.mean(dim=1, keepdim=True), k.amax(dim=1, keepdim=True)], dim=1)
            conv = att.spatial_attention.conv.conv
            k = k + torch.sigmoid(F.conv2d(spatial, conv.weight, conv.bias, padding=3)) * k
        q, k, v = (_heads(t, heads) for t in (q, k, v))
        q = q.softmax(dim=-2) * d**-0.5
        k = k.softmax(dim=-1)
        context = torch.einsum("bhdn,bhen->bhde", k, v)
        out = torch.einsum("bhde,bhdn->bhen", context, q).reshape(x.shape[0], heads * d, *x.shape[2:])
        out = F.conv2d(out, att.to_out.weight, att.to_out.bias)
        return _layer_norm(out, att.out_norm.weight)

    @parameterized.expand([("plain", False), ("cbam", True)])
    def test_matches_formula(self, _, cbam):
        att = _perturb(LinearSelfAttention(8, heads=2, head_channels=16, cbam=cbam).double(), seed=1)
        x = _randn(2, 8, 6, 10, seed=2)
        expected = self._naive(att, x)
        torch.testing.assert_close(att(x), expected)
        with torch.no_grad():
            torch.testing.assert_close(att(x), expected)
        self.assertIsNone(att.norm.bias)
        self.assertIsNone(att.out_norm.bias)

    @parameterized.expand([("plain", False), ("cbam", True)])
    def test_gradients_match_formula(self, _, cbam):
        # the softmax over tokens subtracts a detached max: the gradients must still be those of the plain softmax
        att = _perturb(LinearSelfAttention(8, heads=2, head_channels=16, cbam=cbam).double(), seed=11)
        x = _randn(2, 8, 6, 10, seed=12).requires_grad_()
        weight = _randn(2, 8, 6, 10, seed=13)
        inputs = [x, *att.parameters()]
        grads = torch.autograd.grad((att(x) * weight).sum(), inputs)
        expected = torch.autograd.grad((self._naive(att, x) * weight).sum(), inputs)
        for got, want in zip(grads, expected):
            torch.testing.assert_close(got, want)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "LinearSelfAttention.*heads"):
            LinearSelfAttention(8, heads=0)


class TestSoftmaxSelfAttention(unittest.TestCase):
    def test_matches_formula(self):
        att = _perturb(SoftmaxSelfAttention(8, heads=2, head_channels=4).double(), seed=3)
        x = _randn(2, 8, 3, 5, seed=4)
        q, k, v = (_heads(t, 2) for t in F.conv2d(_layer_norm(x, att.norm.weight), att.to_qkv.weight).chunk(3, 1))
        attn = torch.einsum("bhdi,bhdj->bhij", q * 4**-0.5, k).softmax(dim=-1)
        out = torch.einsum("bhij,bhdj->bhid", attn, v).permute(0, 1, 3, 2).reshape(2, 8, 3, 5)
        torch.testing.assert_close(att(x), F.conv2d(out, att.to_out.weight, att.to_out.bias))


class TestContrastEnhancementBlock(unittest.TestCase):
    def test_matches_composition(self):
        cem = _perturb(ContrastEnhancementBlock(8, 4, heads=2, head_channels=8, filter_size=(6, 10)).double(), 5)
        x = _randn(2, 8, 6, 10, seed=6)
        # LayerNorm with bias on the filtered map, plus x, into the attention (no residual), then the ResBlock
        z = _layer_norm(cem.fourier_filter(x), cem.norm.weight, cem.norm.bias) + x
        expected = cem.block(cem.attention(z))
        torch.testing.assert_close(cem(x), expected)
        self.assertIsNone(cem.block.time_proj)

    def test_checkpointing_same_values_and_gradients(self):
        cem = _perturb(ContrastEnhancementBlock(8, 4, heads=2, head_channels=8, filter_size=4).double(), 7)
        x = _randn(2, 8, 8, 8, seed=8).requires_grad_()
        out = cem(x)
        (grad,) = torch.autograd.grad(out.square().sum(), x)
        cem.use_checkpointing = True
        out_ckpt = cem(x)
        (grad_ckpt,) = torch.autograd.grad(out_ckpt.square().sum(), x)
        torch.testing.assert_close(out_ckpt, out)
        torch.testing.assert_close(grad_ckpt, grad)


class TestMIDBottleneck(unittest.TestCase):
    def test_matches_formula(self):
        mid = _perturb(MIDBottleneck(8, temb_channels=12, norm_num_groups=4, heads=2, head_channels=4).double(), 9)
        x, c, temb = _randn(2, 8, 3, 4, seed=10), _randn(2, 8, 3, 4, seed=11), _randn(2, 12, seed=12)
        layer = mid.layers[0]

        def attend(att, query_from, kv_from):  # queries from one map, keys and values from the other
            q = F.conv2d(_layer_norm(query_from, att.norm_q.weight), att.to_q.weight)
            k, v = F.conv2d(_layer_norm(kv_from, att.norm_kv.weight), att.to_kv.weight).chunk(2, dim=1)
            q, k, v = (_heads(t, 2) for t in (q, k, v))
            attn = torch.einsum("bhdi,bhdj->bhij", q * 4**-0.5, k).softmax(dim=-1)
            out = torch.einsum("bhij,bhdj->bhdi", attn, v).reshape(query_from.shape)
            return F.conv2d(out, att.to_out.weight, att.to_out.bias)

        def ff(seq, h):
            h = _layer_norm(h, seq[0].weight)
            return F.conv2d(F.gelu(F.conv2d(h, seq[1].weight, seq[1].bias)), seq[3].weight, seq[3].bias)

        c1 = mid.cond_mid1(c, temb)
        h = mid.mid1(x, temb) + c1
        h = h + attend(layer.attention1, c1, h)
        x1, x2 = h + ff(layer.ff1, h), h + ff(layer.ff2, h)
        h = x1 + attend(layer.attention2, x2, x1)  # the residual adds x1
        torch.testing.assert_close(mid(x, c, temb), mid.mid2(h, temb))
        self.assertEqual(layer.ff1[1].out_channels, 32)  # 4x feed-forward

    def test_errors(self):
        mid = MIDBottleneck(8, temb_channels=12, norm_num_groups=4, heads=2, head_channels=4)
        with self.assertRaisesRegex(ValueError, "MIDBottleneck.*same shape"):
            mid(torch.zeros(1, 8, 2, 2), torch.zeros(1, 8, 2, 3), torch.zeros(1, 12))
        with self.assertRaisesRegex(ValueError, "MIDBottleneck.*depth"):
            MIDBottleneck(8, 12, 4, depth=0)


class TestFFParserFilter(unittest.TestCase):
    def _filter(self, size) -> FFParserFilter:
        filt = FFParserFilter(3, size).double()
        with torch.no_grad():
            filt.map_real.copy_(_randn(3, *size, seed=13))
            filt.map_imag.copy_(_randn(3, *size, seed=14))
            filt.theta.copy_(torch.tensor([0.5, -1.0, 2.0]).view(3, 1, 1))
        return filt

    @parameterized.expand(FILTER_CASES)
    def test_matches_numpy_fft(self, image, size):
        filt = self._filter(size)
        x = _randn(2, 3, *image, seed=15)
        real, imag = (m.detach().numpy() for m in filt.resampled_maps(*image))
        spec = np.fft.fft2(x.numpy())
        expected = np.real(np.fft.ifft2(spec.real * real + 1j * spec.imag * imag))
        np.testing.assert_allclose(filt(x).detach().numpy(), expected, atol=1e-10)
        with torch.no_grad():
            np.testing.assert_allclose(filt(x).numpy(), expected, atol=1e-10)

    def test_resampling_by_hand(self):
        # a 4-point grid read at 8 points: even outputs hit grid points, odd ones average two neighbours (periodic)
        filt = FFParserFilter(1, (1, 4))
        with torch.no_grad():
            filt.map_real.copy_(torch.tensor([[[1.0, 2.0, 3.0, 4.0]]]))
        real, _ = filt.resampled_maps(1, 8)
        # fft order of 8 bins: 0, 1, 2, 3, -4, -3, -2, -1 -> grid positions 0, .5, 1, 1.5, -2, -1.5, -1, -.5
        expected = [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 2.5]
        torch.testing.assert_close(real[0, 0], torch.tensor(expected))

    def test_stored_maps_at_the_filter_size(self):
        filt = self._filter((8, 6)).float()
        real, imag = filt.resampled_maps(8, 6)
        self.assertTrue(torch.equal(real, filt.map_real * filt.theta))
        self.assertTrue(torch.equal(imag, filt.map_imag * filt.theta))

    def test_sampling_cache_follows_the_parameters(self):
        # without a graph the resampled maps are cached per size; an optimiser step or a load must not reuse them
        filt = self._filter((8, 6))
        x = _randn(1, 3, 12, 10, seed=17)

        def numpy_filter(x=x):
            real, imag = (m.detach().numpy() for m in filt.resampled_maps(*x.shape[-2:]))
            spec = np.fft.fft2(x.numpy())
            return np.real(np.fft.ifft2(spec.real * real + 1j * spec.imag * imag))

        with torch.no_grad():
            first = filt(x)
            np.testing.assert_allclose(filt(x).numpy(), first.numpy(), atol=0)  # the cached maps, same output
            filt.map_imag.mul_(-2.0)  # in place, as an optimiser step
            np.testing.assert_allclose(filt(x).numpy(), numpy_filter(), atol=1e-10)
            state = {k: v.clone() for k, v in filt.state_dict().items()}
            state["theta"].fill_(3.0)
            filt.load_state_dict(state)
            np.testing.assert_allclose(filt(x).numpy(), numpy_filter(), atol=1e-10)
            filt.float().double()  # new parameter tensors (rounded to float32), same version counters
            np.testing.assert_allclose(filt(x).numpy(), numpy_filter(), atol=1e-10)
            np.testing.assert_allclose(filt(x[..., :8, :8]).numpy(), numpy_filter(x[..., :8, :8]), atol=1e-10)

    def test_identity_at_init(self):
        filt = FFParserFilter(2, 8)
        x = _randn(1, 2, 12, 20, seed=16, dtype=torch.float32)
        torch.testing.assert_close(filt(x), x, atol=1e-5, rtol=1e-5)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "FFParserFilter.*filter_size"):
            FFParserFilter(2, (8,))
        with self.assertRaisesRegex(ValueError, "FFParserFilter.*expected"):
            FFParserFilter(2, 8)(torch.zeros(1, 3, 8, 8))


if __name__ == "__main__":
    unittest.main()
