"""Tests of ECSDCrossAttentionUNet, the earlier emdiff ECSD network kept as a named alternative."""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import torch
from parameterized import parameterized

from emdiff_components import networks
from emdiff_components.engines import CheckpointError, load_network_weights
from emdiff_components.networks import ECSDCrossAttentionUNet, ECSDUNet, ecsd_cross_attention_unet

_THREADS = torch.get_num_threads()


def setUpModule() -> None:  # noqa: N802 - unittest hook name
    torch.set_num_threads(min(2, _THREADS))


def tearDownModule() -> None:  # noqa: N802
    torch.set_num_threads(_THREADS)


SMALL = {"channels": (16, 32, 64, 128), "attention_heads": 2, "attention_head_channels": 8, "filter_grid": (16, 16)}

# (name, constructor overrides, batch, height, width)
SHAPE_CASES = [
    ("binary_non_square", {"in_channels": 1, "out_channels": 1}, 2, 64, 96),
    ("multiclass_4", {"in_channels": 4, "cond_channels": 1, "out_channels": 4}, 1, 64, 96),
    ("two_levels_rgb_condition", {"channels": (16, 32), "cond_channels": 3}, 2, 24, 40),
]

# (name, constructor overrides, expected message pattern)
BAD_ARGS = [
    ("spatial_dims_3", {"spatial_dims": 3}, "ECSDCrossAttentionUNet.*spatial_dims"),
    ("groups", {"channels": (12, 24), "norm_num_groups": 8}, "ECSDCrossAttentionUNet.*divisible by norm_num_groups"),
    ("no_levels", {"channels": ()}, "ECSDCrossAttentionUNet.*channels"),
    ("zero_width", {"channels": (16, 0)}, "ECSDCrossAttentionUNet.*channels"),
    ("in_channels", {"in_channels": 0}, "ECSDCrossAttentionUNet.*in_channels"),
    ("filter_grid", {"filter_grid": (16,)}, "ECSDCrossAttentionUNet.*filter_grid"),
]


def _inputs(batch: int, in_ch: int, cond_ch: int, h: int, w: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, in_ch, h, w, generator=g) * 2 - 1
    cond = torch.rand(batch, cond_ch, h, w, generator=g) * 2 - 1
    t = torch.randint(0, 50, (batch,), generator=g)
    return x, t, cond


def _net(seed: int = 0, **kwargs) -> ECSDCrossAttentionUNet:
    torch.manual_seed(seed)
    return ECSDCrossAttentionUNet(**{**SMALL, **kwargs})


class TestECSDCrossAttentionUNet(unittest.TestCase):
    def test_exports(self):
        self.assertLessEqual(set(ecsd_cross_attention_unet.__all__), set(networks.__all__))
        self.assertIs(networks.ECSDCrossAttentionUNet, ecsd_cross_attention_unet.ECSDCrossAttentionUNet)

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

    def test_samples_are_independent(self):
        # every block acts per sample (GroupNorm, channel LayerNorm, FFT, attention): a batch equals its samples
        net = _net().eval()
        x, t, cond = _inputs(3, 1, 1, 32, 48)
        with torch.no_grad():
            batched = net(x, t, cond)
            single = torch.cat([net(x[i : i + 1], t[i : i + 1], cond[i : i + 1]) for i in range(3)])
        torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)

    def test_condition_and_time_change_the_output(self):
        net = _net().eval()
        x, t, cond = _inputs(1, 1, 1, 32, 32)
        with torch.no_grad():
            out = net(x, t, cond)
            self.assertGreater((out - net(x, t, cond.flip(-1))).abs().max().item(), 1e-4)
            self.assertGreater((out - net(x, (t + 10) % 50, cond)).abs().max().item(), 1e-4)
            # a 0-d time step is broadcast over the batch
            torch.testing.assert_close(net(x, t[0], cond), out)

    def test_no_grad_equals_grad_forward(self):
        # without autograd the blocks reuse their temporaries in place; the numbers must not change
        net = _net().eval()
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
        self.assertTrue(all(m.use_checkpointing for m in (*net.cems, net.ccam)))

    def test_deterministic_with_seed(self):
        x, t, cond = _inputs(1, 1, 1, 32, 32)
        a, b = _net(seed=7).eval(), _net(seed=7).eval()
        for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
            torch.testing.assert_close(pa, pb, atol=0, rtol=0, msg=name)
        with torch.no_grad():
            torch.testing.assert_close(a(x, t, cond), b(x, t, cond), atol=0, rtol=0)
        self.assertFalse(torch.equal(_net(seed=8).final_conv.conv.weight, a.final_conv.conv.weight))

    @parameterized.expand(BAD_ARGS)
    def test_bad_arguments(self, _, overrides, pattern):
        with self.assertRaisesRegex(ValueError, pattern):
            ECSDCrossAttentionUNet(**{**SMALL, **overrides})

    def test_stride(self):
        # one 2x2 stride-2 convolution between consecutive levels: 2 ** (levels - 1)
        self.assertEqual(_net().stride, 8)
        self.assertEqual(_net(channels=(16, 32)).stride, 2)
        self.assertEqual(_net(channels=(16,)).stride, 1)

    def test_checkpoints_of_this_layout_do_not_load_into_ecsdunet(self):
        # the published ECSDUNet has other keys: the bundle's loader names the file and the mismatch
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.pt"
            torch.save(_net(channels=(16, 32)).state_dict(), path)
            load_network_weights(_net(channels=(16, 32)), path)
            with self.assertRaisesRegex(CheckpointError, r"model\.pt does not fit ECSDUNet.*missing keys"):
                load_network_weights(ECSDUNet(channels=(16, 32), filter_size=32), path)

    def test_bad_inputs(self):
        net = _net()  # total stride 8
        x, t, cond = _inputs(2, 1, 1, 60, 96)
        with self.assertRaisesRegex(ValueError, r"ECSDCrossAttentionUNet.*\(60, 96\).*divisible.*8"):
            net(x, t, cond)
        x, t, cond = _inputs(2, 1, 1, 32, 32)
        with self.assertRaisesRegex(ValueError, "ECSDCrossAttentionUNet: x must have shape"):
            net(torch.zeros(2, 3, 32, 32), t, cond)
        with self.assertRaisesRegex(ValueError, "ECSDCrossAttentionUNet.*spatial size"):
            net(x, t, cond[..., :16])
        with self.assertRaisesRegex(ValueError, "ECSDCrossAttentionUNet: timesteps"):
            net(x, t[:1], cond)


if __name__ == "__main__":
    unittest.main()
