"""Tests of NeuroDiffUNet (3D noise-predicting U-Net with MSC and RGM)."""

from __future__ import annotations

import unittest

import torch
from parameterized import parameterized

from emdiff_components.networks import NeuroDiffUNet
from emdiff_components.networks.blocks import MSC, RGM



# small widths, 4 levels (in-plane factors 1, 2, 4, 8), RGM at 2, 4, 8 so that every kind of block is present
TINY = {"channels": (8, 8, 16, 16), "time_channels": 8, "norm_num_groups": 4, "rgm_factors": (2, 4, 8)}

# (name, overrides, input (B, D, H, W), expected stride)
SHAPE_CASES = [
    ("anisotropic_nonsquare", {}, (1, 4, 64, 96), (1, 8, 8)),
    ("z_down_after_ratio", {"anisotropy_ratio": 2}, (2, 4, 16, 24), (4, 8, 8)),
    ("two_res_blocks_msc_sets_stride", {"num_res_blocks": 2, "channels": (8, 16, 16)}, (1, 2, 8, 16), (1, 8, 8)),
    ("no_msc_stride", {"use_msc": False, "channels": (8, 16, 16)}, (1, 2, 4, 12), (1, 4, 4)),
]

# (name, overrides, expected RGM count, has MSC): encoder 1 per RGM level, decoder 2 per level, middle 1
SWITCH_CASES = [
    ("both", {}, 3 + 6 + 1, True),
    ("msc_only", {"use_rgm": False}, 0, True),
    ("rgm_only", {"use_msc": False}, 10, False),
]

BAD_ARGS = [
    ("spatial_dims", {"spatial_dims": 2}, "spatial_dims"),
    ("in_channels", {"in_channels": 0}, "in_channels"),
    ("groups", {"channels": (8, 10)}, "norm_num_groups"),
    ("no_levels", {"channels": ()}, "channels"),
    ("float_width", {"channels": (8, 8.0)}, "channels"),
    ("time_channels", {"time_channels": 0}, "time_channels"),
    ("deprecated_model_channels", {"model_channels": 0}, "model_channels"),
    ("voxel_size", {"voxel_size": (29, 6, 6, 6)}, "voxel_size"),
    ("anisotropy", {"anisotropy_ratio": 0}, "anisotropy_ratio"),
]

BAD_INPUTS = [
    ("x_channels", (1, 2, 4, 16, 16), (1, 2, 4, 16, 16), "x must have shape"),
    ("cond_channels", (1, 1, 4, 16, 16), (1, 3, 4, 16, 16), "condition must have shape"),
    ("sizes_differ", (1, 1, 4, 16, 16), (1, 2, 4, 16, 24), "differ in spatial size"),
    ("not_divisible", (1, 1, 4, 20, 16), (1, 2, 4, 20, 16), "divisible by .* \\(the total stride\\)"),
]


def _net(seed: int = 0, **kwargs) -> NeuroDiffUNet:
    torch.manual_seed(seed)
    return NeuroDiffUNet(**{**TINY, **kwargs})


def _inputs(b: int, d: int, h: int, w: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 1, d, h, w, generator=g)
    cond = torch.randint(0, 2, (b, 2, d, h, w), generator=g).float() * 2 - 1
    t = torch.randint(0, 250, (b,), generator=g)
    return x, t, cond


def _randomize_zero_layers(net: NeuroDiffUNet, seed: int = 1) -> None:
    """Give the zero-initialised convolutions random weights (as after some training)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if not p.abs().sum():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


class TestNeuroDiffUNet(unittest.TestCase):
    @parameterized.expand(SHAPE_CASES)
    def test_shapes(self, _, overrides, size, stride):
        net = _net(**overrides).eval()
        self.assertEqual(net.stride, stride)
        with torch.no_grad():
            out = net(*_inputs(*size))
        self.assertEqual(tuple(out.shape), (size[0], 1, *size[1:]))

    def test_default_layout(self):
        net = NeuroDiffUNet()
        self.assertEqual(net.widths, (32, 64, 64, 128, 128, 256, 256))
        self.assertEqual(net.stride, (1, 64, 64))  # anisotropy ratio 512 / 8: depth is never down-sampled
        self.assertEqual(sum(isinstance(m, RGM) for m in net.modules()), 10)
        self.assertEqual(len(net.msc.hints), 7)
        self.assertEqual(net.msc.embed_ratio, (1, 8, 8))
        self.assertEqual([m.channels for m in net.modules() if isinstance(m, RGM)][:3], [128, 128, 256])

    def test_stride_by_hand(self):
        # 4 levels, anisotropy ratio 64: three (1, 2, 2) down-samplings = (1, 8, 8); the MSC embedding is (1, 8, 8)
        self.assertEqual(_net().stride, (1, 8, 8))
        # ratio 2: (1, 2, 2) at factor 1, then (2, 2, 2) at factors 2 and 4 -> (4, 8, 8)
        self.assertEqual(_net(anisotropy_ratio=2).stride, (4, 8, 8))
        # two levels, no MSC: one (1, 2, 2); with MSC the lcm with the embedding's (1, 8, 8)
        self.assertEqual(_net(channels=(8, 8), use_msc=False).stride, (1, 2, 2))
        self.assertEqual(_net(channels=(8, 8)).stride, (1, 8, 8))

    def test_deprecated_width_arguments_build_the_same_network(self):
        # saved configs (model_channels + channel_mult) still load, with a warning naming the replacement
        with self.assertWarnsRegex(DeprecationWarning, r"NeuroDiffUNet.*channels=\[4, 8, 8, 16\], time_channels=8"):
            old = NeuroDiffUNet(model_channels=8, channel_mult=(0.5, 1, 1, 2), norm_num_groups=4, rgm_factors=(2, 4, 8))
        new = _net(channels=(4, 8, 8, 16), time_channels=8)
        self.assertEqual({k: v.shape for k, v in old.state_dict().items()},
                         {k: v.shape for k, v in new.state_dict().items()})
        _randomize_zero_layers(new)
        old.load_state_dict(new.state_dict())
        inputs = _inputs(1, 2, 16, 16)
        with torch.no_grad():
            torch.testing.assert_close(old.eval()(*inputs), new.eval()(*inputs), rtol=0, atol=0)
        # the old defaults are the new defaults
        with self.assertWarns(DeprecationWarning):
            old_default = NeuroDiffUNet(model_channels=64)
        self.assertEqual(old_default.widths, NeuroDiffUNet().widths)
        self.assertEqual(old_default.time_channels, 64)

    def test_zero_output_at_init(self):
        net = _net()
        with torch.no_grad():
            out = net(*_inputs(1, 2, 16, 24))
        self.assertEqual(float(out.abs().max()), 0.0)

    def test_msc_hints_zero_at_init(self):
        # with the other zero layers trained, the initial MSC still changes nothing: same output as without MSC
        net = _net()
        _randomize_zero_layers(net)
        torch.manual_seed(5)
        with torch.no_grad():
            for hint in net.msc.hints:
                hint.conv.weight.zero_()
                hint.conv.bias.zero_()
        bare = _net(use_msc=False)
        bare.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("msc.")})
        inputs = _inputs(1, 2, 16, 24)
        with torch.no_grad():
            with_msc, without = net(*inputs), bare(*inputs)
        self.assertGreater(float(with_msc.abs().max()), 0.0)
        torch.testing.assert_close(with_msc, without, rtol=0, atol=0)
        # and a trained hint does change the output
        _randomize_zero_layers(net, seed=2)
        with torch.no_grad():
            self.assertGreater(float((net(*inputs) - without).abs().max()), 1e-6)

    def test_condition_reaches_output(self):
        net = _net(use_msc=False, use_rgm=False)
        _randomize_zero_layers(net)
        x, t, cond = _inputs(1, 2, 16, 16)
        with torch.no_grad():
            self.assertGreater(float((net(x, t, cond) - net(x, t, -cond)).abs().max()), 1e-6)

    @parameterized.expand(SWITCH_CASES)
    def test_switches(self, _, overrides, n_rgm, has_msc):
        net = _net(**overrides)
        full = _net()
        self.assertEqual(sum(isinstance(m, RGM) for m in net.modules()), n_rgm)
        self.assertEqual(any(isinstance(m, MSC) for m in net.modules()), has_msc)
        keys, full_keys = set(net.state_dict()), set(full.state_dict())
        self.assertTrue(keys <= full_keys)
        extra = full_keys - keys
        self.assertEqual(any(k.startswith("msc.") for k in extra), not has_msc)
        self.assertEqual(any(".rpge." in k or ".mamba." in k for k in extra), n_rgm == 0)

    def test_forward_backward_reaches_every_parameter(self):
        net = _net()
        _randomize_zero_layers(net)
        x, t, cond = _inputs(2, 2, 16, 16)
        loss = (net(x, t, cond) - x).abs().mean()  # the L1 noise loss
        loss.backward()
        missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum()]
        self.assertEqual(missing, [])

    def test_checkpointing_same_gradients(self):
        net = _net()
        _randomize_zero_layers(net)
        ckpt = _net(use_checkpointing=True)
        ckpt.load_state_dict(net.state_dict())
        inputs = _inputs(2, 2, 16, 16)
        net(*inputs).square().sum().backward()
        ckpt(*inputs).square().sum().backward()
        for (name, p), q in zip(net.named_parameters(), ckpt.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-4 * float(p.grad.abs().max()), msg=name)

    def test_scalar_timestep_broadcast(self):
        net = _net()
        _randomize_zero_layers(net)
        x, _, cond = _inputs(2, 2, 16, 16)
        with torch.no_grad():
            torch.testing.assert_close(net(x, 7, cond), net(x, torch.tensor([7, 7]), cond))

    def test_onednn_conv_matches_native(self):
        # the network's convolutions call oneDNN directly on CPU; values and gradients must be those of F.conv3d
        from emdiff_components.networks.neurodiff_unet import _Conv3d

        net = _net()
        self.assertTrue(all(type(m) is not torch.nn.Conv3d for m in net.modules()))
        torch.manual_seed(0)
        conv = torch.nn.Conv3d(6, 5, 3, stride=(1, 2, 2), padding=1)
        conv.__class__ = _Conv3d
        x1 = torch.randn(1, 6, 4, 10, 12, requires_grad=True)
        x2 = x1.detach().clone().requires_grad_(True)
        out = conv(x1)
        expected = torch.nn.functional.conv3d(x2, conv.weight, conv.bias, stride=(1, 2, 2), padding=1)
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
        out.sum().backward()
        expected.sum().backward()
        torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-4)

    @parameterized.expand(BAD_ARGS)
    def test_bad_arguments(self, _, overrides, pattern):
        with self.assertRaisesRegex(ValueError, f"NeuroDiffUNet.*{pattern}"):
            _net(**overrides)

    @parameterized.expand(BAD_INPUTS)
    def test_bad_inputs(self, _, x_shape, cond_shape, pattern):
        net = _net()
        with self.assertRaisesRegex(ValueError, f"NeuroDiffUNet.*{pattern}"):
            net(torch.zeros(x_shape), torch.tensor([1]), torch.zeros(cond_shape))


if __name__ == "__main__":
    unittest.main()
