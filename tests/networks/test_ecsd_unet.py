"""Tests of the ECSD / Cold SegDiffusion ResUNet (the published structure; its weights: test_ecsd_reference.py)."""

from __future__ import annotations

import math
import re
import unittest

import torch
import torch.nn.functional as F
from parameterized import parameterized

from emdiff_components import networks
from emdiff_components.networks import ECSDUNet, ecsd_unet
from emdiff_components.networks.blocks import ChannelLayerNorm, LinearSelfAttention, SoftmaxSelfAttention
from emdiff_components.networks.blocks import NearestUpsample

_THREADS = torch.get_num_threads()


def setUpModule() -> None:  # noqa: N802 - unittest hook name
    torch.set_num_threads(min(2, _THREADS))


def tearDownModule() -> None:  # noqa: N802
    torch.set_num_threads(_THREADS)


SMALL = {"channels": (16, 32, 64, 128), "attention_heads": 2, "attention_head_channels": 8, "filter_size": 32}

# (name, constructor overrides, batch, height, width)
SHAPE_CASES = [
    ("binary_non_square", {"in_channels": 1, "out_channels": 1}, 2, 64, 96),
    ("multiclass_4", {"in_channels": 4, "cond_channels": 1, "out_channels": 4}, 1, 64, 96),
    ("two_levels_rgb_condition", {"channels": (16, 32), "cond_channels": 3}, 2, 24, 40),
]

# (name, constructor overrides, expected message pattern)
BAD_ARGS = [
    ("spatial_dims_3", {"spatial_dims": 3}, "ECSDUNet.*spatial_dims"),
    ("groups", {"channels": (16, 20), "norm_num_groups": 8}, "ECSDUNet.*divisible by norm_num_groups"),
    ("no_levels", {"channels": ()}, "ECSDUNet.*channels"),
    ("zero_width", {"channels": (16, 0)}, "ECSDUNet.*channels"),
    ("mults_without_int_channels", {"channel_mults": (1, 2)}, "ECSDUNet.*channel_mults"),
    ("empty_mults", {"channels": 16, "channel_mults": ()}, "ECSDUNet.*channel_mults"),
    ("in_channels", {"in_channels": 0}, "ECSDUNet.*in_channels"),
    ("filter_size_one_axis", {"filter_size": (16,)}, "ECSDUNet.*filter_size"),
    ("filter_size_below_stride", {"filter_size": 4}, "ECSDUNet.*filter_size"),
    ("full_attention_length", {"full_attention": (False, True)}, "ECSDUNet.*full_attention"),
    ("init_channels_odd", {"init_channels": 9}, "ECSDUNet.*init_channels"),
]


def _inputs(batch: int, in_ch: int, cond_ch: int, h: int, w: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, in_ch, h, w, generator=g) * 2 - 1
    cond = torch.rand(batch, cond_ch, h, w, generator=g) * 2 - 1
    t = torch.randint(0, 50, (batch,), generator=g)
    return x, t, cond


def _net(seed: int = 0, **kwargs) -> ECSDUNet:
    torch.manual_seed(seed)
    return ECSDUNet(**{**SMALL, **kwargs})


def _perturbed(seed: int = 0, **kwargs) -> ECSDUNet:
    """A network whose parameters all differ from their initial values (FFT maps, gains, zero biases...)."""
    net = _net(seed, **kwargs)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return net.eval()


class TestECSDUNet(unittest.TestCase):
    def test_exports(self):
        self.assertLessEqual(set(ecsd_unet.__all__), set(networks.__all__))
        self.assertIs(networks.ECSDUNet, ecsd_unet.ECSDUNet)

    @parameterized.expand(SHAPE_CASES)
    def test_shape_finite_and_gradients(self, _, overrides, batch, h, w):
        net = _net(**overrides)
        x, t, cond = _inputs(batch, net.in_channels, net.cond_channels, h, w)
        out = net(x, t, cond)
        self.assertEqual(out.shape, (batch, net.out_channels, h, w))
        self.assertTrue(torch.isfinite(out).all())
        out.sum().backward()
        missing = [name for name, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
        self.assertEqual(missing, [])

    def test_published_layout(self):
        # widths (init, dim, 2 dim, 4 dim) widened to 8 dim by a 3x3 conv; two skips into both decoder ResBlocks
        net = _net()
        dims = [16, 16, 32, 64, 128]
        for i, level in enumerate(net.encoder.levels):
            self.assertEqual(level.block1.conv1.conv.in_channels, dims[i])
            self.assertEqual(level.resample.conv.out_channels, dims[i + 1])
            self.assertEqual(level.resample.conv.kernel_size, (3, 3) if i == 3 else (2, 2))
            self.assertIsInstance(level.attention, SoftmaxSelfAttention if i == 3 else LinearSelfAttention)
        for j, level in enumerate(net.decoder):
            i = 3 - j
            for block in (level.block1, level.block2):
                self.assertEqual(block.conv1.conv.in_channels, dims[i + 1] + dims[i])
                self.assertEqual(block.conv1.conv.out_channels, dims[i + 1])
            self.assertIsInstance(level.attention, SoftmaxSelfAttention if i == 3 else LinearSelfAttention)
        self.assertIsInstance(net.decoder[-1].resample, type(net.encoder.levels[-1].resample))
        self.assertIsInstance(net.decoder[0].resample, NearestUpsample)
        # LayerNorms: gains only, except the CEM's input norm
        with_bias = [n for n, m in net.named_modules() if isinstance(m, ChannelLayerNorm) and m.bias is not None]
        self.assertEqual(with_bias, [f"cems.{i}.norm" for i in range(4)])
        self.assertEqual({m.num_groups for m in net.modules() if isinstance(m, torch.nn.GroupNorm)}, {8})

    def test_image_enters_only_at_the_bottleneck(self):
        net = _perturbed()
        x, t, cond = _inputs(1, 1, 1, 32, 32)
        seen: dict[str, list[torch.Tensor]] = {"skips": [], "bottleneck": []}
        hooks = [m.register_forward_hook(lambda m, i, o: seen["skips"].append(o.clone())) for m in net.cems]
        hooks.append(net.bottleneck.register_forward_hook(lambda m, i, o: seen["bottleneck"].append(o.clone())))
        with torch.no_grad():
            a = net(x, t, cond)
            b = net(x, t, cond.flip(-1))
        for hook in hooks:
            hook.remove()
        # every main-encoder level (hence every skip) is the same for two images; the bottleneck and output differ
        for first, second in zip(seen["skips"][:4], seen["skips"][4:]):
            torch.testing.assert_close(first, second, atol=0, rtol=0)
        self.assertGreater((seen["bottleneck"][0] - seen["bottleneck"][1]).abs().max().item(), 1e-3)
        self.assertGreater((a - b).abs().max().item(), 1e-4)

    def test_time_embedding_frequencies(self):
        net = _net()  # 16 sinusoidal features: half = 8
        t = torch.tensor([0, 7, 49])
        freqs = torch.tensor([math.exp(-math.log(10000) * i / 7) for i in range(8)])
        expected = torch.cat([torch.sin(t[:, None] * freqs), torch.cos(t[:, None] * freqs)], dim=1)
        torch.testing.assert_close(net.time_embedding.features(t), expected)
        self.assertEqual(net.time_embedding.mlp[0].in_features, 16)
        self.assertEqual(net.time_embedding.mlp[2].out_features, 64)

    def test_fourier_maps_exact_at_filter_size_and_resampled_elsewhere(self):
        net = _perturbed(filter_size=(32, 48))
        for i, cem in enumerate(net.cems):
            filt = cem.fourier_filter
            self.assertEqual(filt.filter_size, (32 // 2**i, 48 // 2**i))
            real, imag = filt.resampled_maps(32 // 2**i, 48 // 2**i)
            self.assertTrue(torch.equal(real, filt.map_real * filt.theta))
            self.assertTrue(torch.equal(imag, filt.map_imag * filt.theta))
        # other sizes run through the resampled maps: the batch of a 32 x 48 and a 64 x 96 input both work
        for size in ((32, 48), (64, 96), (40, 16)):
            x, t, cond = _inputs(1, 1, 1, *size)
            with torch.no_grad():
                self.assertTrue(torch.isfinite(net(x, t, cond)).all())

    def test_samples_are_independent(self):
        # every block acts per sample (GroupNorm, channel LayerNorm, FFT, attention): a batch equals its samples
        net = _perturbed()
        x, t, cond = _inputs(3, 1, 1, 32, 48)
        with torch.no_grad():
            batched = net(x, t, cond)
            single = torch.cat([net(x[i : i + 1], t[i : i + 1], cond[i : i + 1]) for i in range(3)])
        torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)

    def test_condition_and_time_change_the_output(self):
        net = _perturbed()
        x, t, cond = _inputs(1, 1, 1, 32, 32)
        with torch.no_grad():
            out = net(x, t, cond)
            self.assertGreater((out - net(x, (t + 10) % 50, cond)).abs().max().item(), 1e-4)
            # a 0-d time step is broadcast over the batch
            torch.testing.assert_close(net(x, t[0], cond), out)

    def test_no_grad_equals_grad_forward(self):
        # without autograd the blocks reuse their temporaries in place; the numbers must not change
        net = _perturbed()
        x, t, cond = _inputs(2, 1, 1, 32, 40)
        with_grad = net(x, t, cond)
        with torch.no_grad():
            torch.testing.assert_close(net(x, t, cond), with_grad.detach(), atol=1e-5, rtol=1e-5)

    def test_checkpointing_same_output_and_gradients(self):
        # in float64, so that the per-sample recomputation's different float rounding does not hide a real change
        x, t, cond = _inputs(2, 1, 1, 32, 48)
        x, cond = x.double(), cond.double()
        results = []
        for flag in (False, True):
            net = _net(seed=3, use_checkpointing=flag).double().train()
            out = net(x, t, cond)
            out.square().mean().backward()
            results.append((out.detach(), {n: p.grad.clone() for n, p in net.named_parameters()}))
        torch.testing.assert_close(results[0][0], results[1][0])
        self.assertEqual(results[0][1].keys(), results[1][1].keys())
        for name, grad in results[0][1].items():
            torch.testing.assert_close(results[1][1][name], grad, msg=name)

    def test_checkpointing_flag_reaches_blocks(self):
        net = _net()
        net.use_checkpointing = True
        self.assertTrue(all(m.use_checkpointing for m in (*net.cems, net.bottleneck)))

    def test_deterministic_with_seed(self):
        x, t, cond = _inputs(1, 1, 1, 32, 32)
        a, b = _net(seed=7).eval(), _net(seed=7).eval()
        for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
            torch.testing.assert_close(pa, pb, atol=0, rtol=0, msg=name)
        with torch.no_grad():
            torch.testing.assert_close(a(x, t, cond), b(x, t, cond), atol=0, rtol=0)
        self.assertFalse(torch.equal(_net(seed=8).final_conv.conv.weight, a.final_conv.conv.weight))

    @parameterized.expand([((5, 7),), ((8, 6),)])
    def test_upsample_equals_nearest_then_conv(self, size):
        torch.manual_seed(0)
        up = NearestUpsample(6, 4).double()
        g = torch.Generator().manual_seed(1)
        x = torch.randn(2, 6, *size, generator=g, dtype=torch.float64).requires_grad_()
        reference = up.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        out = up(x)
        torch.testing.assert_close(out, reference)
        grads = torch.autograd.grad(out.square().sum(), [x, up.conv.conv.weight])
        ref_grads = torch.autograd.grad(reference.square().sum(), [x, up.conv.conv.weight])
        for g, r in zip(grads, ref_grads):
            torch.testing.assert_close(g, r)

    @parameterized.expand(BAD_ARGS)
    def test_bad_arguments(self, _, overrides, pattern):
        with self.assertRaisesRegex(ValueError, pattern):
            ECSDUNet(**{**SMALL, **overrides})

    def test_stride(self):
        # one 2x2 stride-2 convolution between consecutive levels: 2 ** (levels - 1)
        self.assertEqual(_net().stride, 8)
        self.assertEqual(_net(channels=(16, 32)).stride, 2)
        self.assertEqual(_net(channels=(16,)).stride, 1)

    def test_deprecated_int_channels_build_the_same_network(self):
        # saved configs (channels=64, channel_mults=[1, 2, 4, 8]) still load, with a warning naming the replacement
        new = _net(channels=(16, 32, 64))
        for old_args, widths in (
            ({"channels": 16, "channel_mults": (1, 2, 4)}, "[16, 32, 64]"),
            ({"channels": 16}, "[16, 32, 64, 128]"),
        ):
            with self.assertWarnsRegex(DeprecationWarning, rf"ECSDUNet.*channels={re.escape(widths)}"):
                old = _net(**old_args)
            if "channel_mults" in old_args:
                self.assertEqual(
                    {k: v.shape for k, v in old.state_dict().items()}, {k: v.shape for k, v in new.state_dict().items()}
                )
                old.load_state_dict(new.state_dict())
                x, t, cond = _inputs(1, 1, 1, 32, 32)
                with torch.no_grad():
                    torch.testing.assert_close(old.eval()(x, t, cond), new.eval()(x, t, cond), rtol=0, atol=0)
            else:
                self.assertEqual(old.widths, [16, 32, 64, 128])

    def test_bad_inputs(self):
        net = _net()  # total stride 8
        x, t, cond = _inputs(2, 1, 1, 60, 96)
        with self.assertRaisesRegex(ValueError, r"ECSDUNet.*\(60, 96\).*divisible.*8"):
            net(x, t, cond)
        x, t, cond = _inputs(2, 1, 1, 32, 32)
        with self.assertRaisesRegex(ValueError, "ECSDUNet: x must have shape"):
            net(torch.zeros(2, 3, 32, 32), t, cond)
        with self.assertRaisesRegex(ValueError, "ECSDUNet.*spatial size"):
            net(x, t, cond[..., :16])
        with self.assertRaisesRegex(ValueError, "ECSDUNet: timesteps"):
            net(x, t[:1], cond)


if __name__ == "__main__":
    unittest.main()
