"""Tests of NeuroDiff's blocks: MambaLayer (mambapy path and back-end dispatch), RPGE, RGM and MSC."""

from __future__ import annotations

import logging
import unittest
from unittest import mock

import numpy as np
import torch
from mambapy.mamba import MambaBlock, MambaConfig
from parameterized import parameterized

from emdiff_components.networks.blocks import MSC, RGM, RPGE, MambaLayer
from emdiff_components.networks.blocks import mamba as mamba_module
from emdiff_components.networks.blocks import trilinear_upsample



# mamba_ssm.Mamba(d_model=8) parameters, written out from mamba_ssm/modules/mamba_simple.py (state-spaces/mamba):
# d_inner = expand * d_model = 16, dt_rank = ceil(8 / 16) = 1, d_state = 16, d_conv = 4; A_log and D are direct
# parameters (listed first by state_dict), then in_proj, conv1d, x_proj, dt_proj, out_proj (bias=False projections).
MAMBA_SSM_KEYS_D8 = [
    ("A_log", (16, 16)),
    ("D", (16,)),
    ("in_proj.weight", (32, 8)),
    ("conv1d.weight", (16, 1, 4)),
    ("conv1d.bias", (16,)),
    ("x_proj.weight", (33, 16)),
    ("dt_proj.weight", (16, 1)),
    ("dt_proj.bias", (16,)),
    ("out_proj.weight", (8, 16)),
]

# (name, d_model, d_state, d_conv, expand, batch, length); lengths off a power of two exercise mambapy's padding
MAMBA_CASES = [
    ("d8_L37", 8, 16, 4, 2, 2, 37),
    ("d24_L64_state4", 24, 4, 3, 1, 1, 64),
]

BAD_MAMBA = [
    ("d_model", {"d_model": 0}),
    ("d_state", {"d_model": 8, "d_state": 0}),
    ("expand", {"d_model": 8, "expand": 1.5}),
]


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class TestMambaLayer(unittest.TestCase):
    def test_state_dict_matches_mamba_ssm(self):
        sd = MambaLayer(8).state_dict()
        self.assertEqual([(k, tuple(v.shape)) for k, v in sd.items()], MAMBA_SSM_KEYS_D8)

    @parameterized.expand(MAMBA_CASES)
    def test_matches_mambapy_block_and_gradients(self, _, d_model, d_state, d_conv, expand, batch, length):
        torch.manual_seed(0)
        layer = MambaLayer(d_model, d_state, d_conv, expand)
        config = MambaConfig(d_model=d_model, n_layers=1, d_state=d_state, expand_factor=expand, d_conv=d_conv)
        ref = MambaBlock(config)
        ref.load_state_dict(layer.state_dict())
        x = _rand(batch, length, d_model, seed=1)
        x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        out, expected = layer(x1), ref(x2)
        torch.testing.assert_close(out, expected)
        weights = _rand(*out.shape, seed=2)
        (out * weights).sum().backward()
        (expected * weights).sum().backward()
        torch.testing.assert_close(x1.grad, x2.grad)
        ref_params = dict(ref.named_parameters())
        for name, p in layer.named_parameters():
            self.assertIsNotNone(p.grad, name)
            self.assertGreater(float(p.grad.abs().sum()), 0.0, name)
            torch.testing.assert_close(p.grad, ref_params[name].grad, msg=name)

    def test_causal(self):
        # a selective scan is causal: changing token k changes no output before k
        layer = MambaLayer(8).eval()
        x = _rand(1, 20, 8)
        y = x.clone()
        y[:, 12] += 1.0
        with torch.no_grad():
            a, b = layer(x), layer(y)
        torch.testing.assert_close(a[:, :12], b[:, :12])
        self.assertGreater(float((a[:, 12:] - b[:, 12:]).abs().max()), 1e-4)

    def test_cuda_backend_uses_same_parameters(self):
        # stand-in for mamba_ssm.Mamba with mamba_ssm's constructor and parameter names: the dispatch must run it
        # with the layer's own tensors (functional_call), so the output equals the mambapy path exactly
        def fake_mamba(d_model, d_state, d_conv, expand, dt_rank, device=None):
            cfg = MambaConfig(d_model, 1, dt_rank=dt_rank, d_state=d_state, expand_factor=expand, d_conv=d_conv)
            return MambaBlock(cfg)

        torch.manual_seed(0)
        layer = MambaLayer(8)
        x = _rand(2, 9, 8)
        expected = layer(x)
        with (
            mock.patch.object(mamba_module, "_mamba_ssm_class", lambda: fake_mamba),
            mock.patch.object(MambaLayer, "use_mamba_ssm", lambda self, x: True),
            self.assertLogs(mamba_module.logger, logging.INFO) as logs,
        ):
            mamba_module._ANNOUNCED.discard("mamba_ssm")
            out = layer(x)
        torch.testing.assert_close(out, expected)
        self.assertTrue(any("mamba-ssm" in line for line in logs.output))
        self.assertEqual(list(layer.state_dict()), [k for k, _ in MAMBA_SSM_KEYS_D8])  # twin adds no keys

    def test_cpu_input_takes_mambapy(self):
        self.assertFalse(MambaLayer(8).use_mamba_ssm(torch.zeros(1, 2, 8)))

    @parameterized.expand(BAD_MAMBA)
    def test_bad_arguments(self, name, kwargs):
        with self.assertRaisesRegex(ValueError, f"MambaLayer.*{name}"):
            MambaLayer(**kwargs)

    def test_bad_input(self):
        with self.assertRaisesRegex(ValueError, "MambaLayer.*x must have shape"):
            MambaLayer(8)(torch.zeros(1, 4, 6))


class TestRPGE(unittest.TestCase):
    def test_scaled_coordinates_hand_case(self):
        # 2 x 2 x 3 grid, voxel (29, 6, 6) nm: z in {0, 29}, y in {0, 6}, x in {0, 6, 12}, raster order x fastest
        rpge = RPGE(4, voxel_size=(29, 6, 6))
        expected = [[z, y, x] for z in (0.0, 29.0) for y in (0.0, 6.0) for x in (0.0, 6.0, 12.0)]
        np.testing.assert_array_equal(rpge.coordinates((2, 2, 3)).numpy(), np.array(expected, dtype=np.float32))

    def test_mlp_receives_scaled_coordinates(self):
        torch.manual_seed(0)
        rpge = RPGE(5, voxel_size=(29, 6, 6))
        seen = []
        rpge.mlp[0].register_forward_hook(lambda m, i, o: seen.append(i[0].clone()))
        pe = rpge((2, 2, 3))
        self.assertEqual(tuple(pe.shape), (1, 5, 2, 2, 3))
        self.assertEqual(float(seen[0][7, 0]), 29.0)  # voxel (1, 0, 1): (29, 0, 6)
        self.assertEqual(seen[0][7].tolist(), [29.0, 0.0, 6.0])
        # independent evaluation of the MLP on voxel (z=1, y=1, x=2) = (29, 6, 12)
        w1, b1, w2, b2 = (t.detach().numpy() for t in (rpge.mlp[0].weight, rpge.mlp[0].bias,
                                                       rpge.mlp[2].weight, rpge.mlp[2].bias))
        hidden = np.maximum(w1 @ np.array([29.0, 6.0, 12.0]) + b1, 0.0)
        np.testing.assert_allclose(pe[0, :, 1, 1, 2].detach().numpy(), w2 @ hidden + b2, rtol=1e-5, atol=1e-5)

    @parameterized.expand([("four", (29, 6, 6, 6)), ("zero", (29, 0, 6)), ("text", "abc")])
    def test_bad_voxel_size(self, _, voxel_size):
        with self.assertRaisesRegex(ValueError, "RPGE.*voxel_size"):
            RPGE(4, voxel_size=voxel_size)

    def test_two_values_mean_z_and_in_plane(self):
        self.assertEqual(RPGE(4, voxel_size=(29, 6)).voxel_size, (29.0, 6.0, 6.0))


class TestRGM(unittest.TestCase):
    def test_equals_manual_composition(self):
        torch.manual_seed(0)
        rgm = RGM(8, voxel_size=(29, 6, 6))
        x = _rand(2, 8, 2, 3, 4)
        tokens = (x + rgm.rpge((2, 3, 4))).permute(0, 2, 3, 4, 1).reshape(2, 24, 8)  # (z, y, x) raster order
        expected = rgm.mamba(rgm.norm(tokens)).reshape(2, 2, 3, 4, 8).permute(0, 4, 1, 2, 3)
        torch.testing.assert_close(rgm(x), expected)

    def test_residual_switch(self):
        torch.manual_seed(0)
        rgm = RGM(8)
        x = _rand(1, 8, 2, 2, 2)
        plain = rgm(x)
        rgm.residual = True
        torch.testing.assert_close(rgm(x), plain + x)

    def test_voxel_size_changes_output(self):
        torch.manual_seed(0)
        a = RGM(8, voxel_size=(29, 6, 6))
        b = RGM(8, voxel_size=(6, 6, 6))
        weights = {k: v for k, v in a.state_dict().items() if not k.endswith("resolution")}
        b.load_state_dict(weights, strict=False)
        x = _rand(1, 8, 2, 2, 2)
        with torch.no_grad():
            self.assertGreater(float((a(x) - b(x)).abs().max()), 1e-6)
            # a checkpoint carries its voxel size: loading all of it makes b the same model as a
            b.load_state_dict(a.state_dict())
            self.assertEqual(b.rpge.voxel_size, (29.0, 6.0, 6.0))
            torch.testing.assert_close(a(x), b(x))

    def test_bad_input(self):
        with self.assertRaisesRegex(ValueError, "RGM.*x must have shape"):
            RGM(8)(torch.zeros(1, 4, 2, 2, 2))


# (name, hint widths, hint ratios, condition size (D, H, W))
MSC_CASES = [
    ("unet_levels", (8, 16, 16, 32), ((1, 1, 1), (1, 2, 2), (1, 8, 8), (1, 32, 32)), (2, 32, 64)),
    ("z_down", (8, 16), ((1, 4, 4), (2, 16, 16)), (4, 16, 32)),
]


class TestMSC(unittest.TestCase):
    @parameterized.expand(MSC_CASES)
    def test_shapes_and_zero_hints_at_init(self, _, widths, ratios, size):
        torch.manual_seed(0)
        msc = MSC(widths, ratios, embed_channels=(8, 8, 8, 16))
        cond = _rand(1, 2, *size)
        with torch.no_grad():
            embedding = msc.embed(cond)
        self.assertEqual(tuple(embedding.shape), (1, 16, size[0], size[1] // 8, size[2] // 8))
        self.assertGreater(float(embedding.abs().max()), 0.0)
        with torch.no_grad():
            hints = msc(cond)
        for hint, c, r in zip(hints, widths, ratios):
            self.assertEqual(tuple(hint.shape), (1, c, *(n // k for n, k in zip(size, r))))
            self.assertEqual(float(hint.abs().max()), 0.0)

    def test_hint_is_resampled_embedding(self):
        # with a delta kernel at the conv centre, the finer-level hint is the trilinear up-sampled SiLU(embedding)
        torch.manual_seed(0)
        msc = MSC((16,), ((1, 2, 2),), embed_channels=(8, 8, 8, 16))
        with torch.no_grad():
            msc.hints[0].conv.weight.zero_()
            for i in range(16):
                msc.hints[0].conv.weight[i, i, 1, 1, 1] = 1.0
        cond = _rand(1, 2, 2, 16, 16)
        emb = torch.nn.functional.silu(msc.embed(cond))
        expected = torch.nn.functional.interpolate(emb, scale_factor=(1, 4, 4), mode="trilinear")
        torch.testing.assert_close(msc(cond)[0], expected)

    def test_hints_receive_gradient(self):
        # zero-init must not block learning: the hint convs get a gradient at step 0
        torch.manual_seed(0)
        msc = MSC((8,), ((1, 8, 8),), embed_channels=(8, 8, 8, 8))
        msc(_rand(1, 2, 2, 16, 16))[0].sum().backward()
        self.assertGreater(float(msc.hints[0].conv.weight.grad.abs().sum()), 0.0)

    @parameterized.expand(
        [
            ("lengths", {"hint_channels": (8, 8), "hint_ratios": ((1, 1, 1),)}, "hint_ratios"),
            ("ratio", {"hint_channels": (8,), "hint_ratios": ((1, 3, 3),)}, "not multiples"),
            ("widths", {"hint_channels": (0,), "hint_ratios": ((1, 1, 1),)}, "hint_channels"),
        ]
    )
    def test_bad_arguments(self, _, kwargs, pattern):
        with self.assertRaisesRegex(ValueError, f"MSC.*{pattern}"):
            MSC(**kwargs)

    def test_bad_condition(self):
        msc = MSC((8,), ((1, 1, 1),), embed_channels=(8, 8, 8, 8))
        with self.assertRaisesRegex(ValueError, "MSC.*condition must have shape"):
            msc.embed(torch.zeros(1, 3, 2, 16, 16))
        with self.assertRaisesRegex(ValueError, "MSC.*divisible"):
            msc.embed(torch.zeros(1, 2, 2, 12, 16))


class TestTrilinearUpsample(unittest.TestCase):
    @parameterized.expand([("in_plane", (1, 2, 2)), ("msc_hint", (1, 8, 4)), ("isotropic", (2, 2, 2))])
    def test_values_and_gradients_equal_trilinear(self, _, scale):
        x = torch.randn(2, 3, 4, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        x.requires_grad_()
        expected = torch.nn.functional.interpolate(x, scale_factor=scale, mode="trilinear", align_corners=False)
        out = trilinear_upsample(x, scale)
        self.assertEqual(out.shape, expected.shape)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
        weight = torch.randn(expected.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        (grad,) = torch.autograd.grad((out * weight).sum(), x)
        (want,) = torch.autograd.grad((expected * weight).sum(), x)
        torch.testing.assert_close(grad, want, rtol=0, atol=1e-12)


class TestNeuroDiffBlockExports(unittest.TestCase):
    def test_exports(self):
        from emdiff_components.networks import blocks
        from emdiff_components.networks.blocks import msc, rgm

        for module in (mamba_module, msc, rgm):
            for name in module.__all__:
                self.assertIn(name, blocks.__all__)
                self.assertIs(getattr(blocks, name), getattr(module, name))


if __name__ == "__main__":
    unittest.main()
