"""Tests of BIEDSNet and its blocks (BFFM, CGR, ADRB)."""

from __future__ import annotations

import unittest

import torch
import torch.nn.functional as F
from parameterized import parameterized

from emdiff_components.networks import BIEDSNet
from emdiff_components.networks.blocks import ADRB, BFFM, CGR, boundary_edges

SMALL = {"channels": (8, 16, 16, 32, 32)}

# (name, constructor overrides, batch, height, width)
SHAPE_CASES = [
    ("binary", {}, 2, 32, 48),
    ("multiclass_4_rgb", {"in_channels": 4, "out_channels": 4, "cond_channels": 3}, 1, 32, 32),
    ("no_bffm", {"use_bffm": False}, 2, 16, 32),
    ("no_adrb", {"use_adrb": False}, 2, 16, 32),
]

# (name, constructor overrides, expected message pattern)
BAD_ARGS = [
    ("spatial_dims_3", {"spatial_dims": 3}, "BIEDSNet.*spatial_dims"),
    ("groups", {"channels": (8, 16, 16, 32, 36)}, "BIEDSNet.*norm_num_groups"),
    ("too_few_levels_ds", {"channels": (8, 16, 16)}, "BIEDSNet.*channels"),
    ("in_channels", {"in_channels": 0}, "BIEDSNet.*in_channels"),
    ("res_blocks", {"num_res_blocks": 0}, "BIEDSNet.*num_res_blocks"),
    ("decoder_res_blocks", {"num_decoder_res_blocks": 0}, "BIEDSNet.*num_decoder_res_blocks"),
]

# (name, constructor overrides, ADRBs per encoder level, ADRBs per decoder level)
BLOCK_COUNT_CASES = [
    ("paper_default", {}, 3, 3),
    ("lighter_decoder", {"num_decoder_res_blocks": 2}, 3, 2),
    ("one_count_for_both", {"num_res_blocks": 2}, 2, 2),
]

PAPER_WIDTHS = (32, 64, 128, 256, 512)
EMBEDDING = 4 * PAPER_WIDTHS[0]  # time-embedding width


def adrb_parameters(in_c: int, out_c: int, emb: int = EMBEDDING) -> int:
    """Parameters of one ADRB by hand: three bias-free 3x3 CGR convolutions (x -> out twice, out -> out) with their
    GroupNorm affine pairs, the time Linear (weight + bias), CBAM channel attention (two bias-free 1x1 convolutions
    through ``out // 16``), the 7x7 two-to-one spatial-attention convolution, and a 1x1 skip when widths differ."""
    convs = 9 * in_c * out_c * 2 + 9 * out_c * out_c + 3 * 2 * out_c
    time = emb * out_c + out_c
    attention = 2 * out_c * (out_c // 16) + 2 * 7 * 7
    skip = in_c * out_c + out_c if in_c != out_c else 0
    return convs + time + attention + skip


def _inputs(batch: int, in_ch: int, cond_ch: int, h: int, w: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, in_ch, h, w, generator=g) * 2 - 1
    cond = torch.rand(batch, cond_ch, h, w, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g)
    return x, t, cond


def _net(seed: int = 0, **kwargs) -> BIEDSNet:
    torch.manual_seed(seed)
    return BIEDSNet(**{**SMALL, **kwargs})


class TestBFFM(unittest.TestCase):
    def test_edges_match_functional(self):
        g = torch.Generator().manual_seed(1)
        f1 = torch.rand(2, 3, 9, 11, generator=g)
        edges = boundary_edges(f1)
        for k, edge in zip((3, 5, 7), edges):
            # independent computation: sum over the window / number of in-image pixels in the window
            ones = torch.ones(1, 1, 9, 11)
            kernel = torch.ones(1, 1, k, k)
            sums = F.conv2d(f1.reshape(-1, 1, 9, 11), kernel, padding=k // 2).reshape_as(f1)
            counts = F.conv2d(ones, kernel, padding=k // 2)
            torch.testing.assert_close(edge, f1 - sums / counts)
        module = BFFM(3, 3)
        cat = module.edge_features(f1)
        self.assertEqual(cat.shape, (2, 12, 9, 11))
        torch.testing.assert_close(cat[:, :3], f1)
        torch.testing.assert_close(cat[:, 3:], torch.cat(edges, dim=1))

    def test_constant_map_has_zero_edges(self):
        for edge in boundary_edges(torch.full((1, 2, 6, 6), 3.5)):
            torch.testing.assert_close(edge, torch.zeros_like(edge))

    def test_shape_and_errors(self):
        self.assertEqual(BFFM(1, 8)(torch.rand(2, 1, 16, 12)).shape, (2, 8, 16, 12))
        with self.assertRaisesRegex(ValueError, "BFFM.*out_channels"):
            BFFM(1, 0)
        with self.assertRaisesRegex(ValueError, "BFFM.*kernel_sizes"):
            BFFM(1, 8, kernel_sizes=(3, 4))
        with self.assertRaisesRegex(ValueError, "boundary_edges.*features"):
            boundary_edges(torch.zeros(3, 4, 4))


class TestCGR(unittest.TestCase):
    def test_nonnegative_and_errors(self):
        out = CGR(4, 8)(torch.randn(2, 4, 5, 5, generator=torch.Generator().manual_seed(0)))
        self.assertEqual(out.shape, (2, 8, 5, 5))
        self.assertTrue((out >= 0).all())
        with self.assertRaisesRegex(ValueError, "CGR.*divisible"):
            CGR(4, 12, 8)


class TestADRB(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)
        self.block = ADRB(8, 16, 32).eval()
        g = torch.Generator().manual_seed(2)
        self.x = torch.randn(2, 8, 8, 8, generator=g)
        self.emb_a = torch.randn(2, 32, generator=g)
        self.emb_b = torch.randn(2, 32, generator=g)

    def test_time_path(self):
        with torch.no_grad():
            a, b = self.block(self.x, self.emb_a), self.block(self.x, self.emb_b)
        self.assertEqual(a.shape, (2, 16, 8, 8))
        self.assertGreater((a - b).abs().max().item(), 1e-4)
        with torch.no_grad():
            self.block.time_proj[1].weight.zero_()
            a, b = self.block(self.x, self.emb_a), self.block(self.x, self.emb_b)
        torch.testing.assert_close(a, b)

    def test_identity_skip_when_widths_match(self):
        block = ADRB(16, 16, 32)
        self.assertIsInstance(block.skip, torch.nn.Identity)
        self.assertIsInstance(self.block.skip, torch.nn.Conv2d)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "ADRB.*embedding_channels"):
            ADRB(8, 16, 0)


class TestBIEDSNet(unittest.TestCase):
    @parameterized.expand(SHAPE_CASES)
    def test_shapes_and_gradients(self, _, overrides, batch, h, w):
        net = _net(**overrides)
        x, t, cond = _inputs(batch, net.in_channels, net.cond_channels, h, w)
        out = net.train()(x, t, cond)
        self.assertIsInstance(out, list)
        expected = [(batch, net.out_channels, h // s, w // s) for s in (1, 2, 4, 8)]
        self.assertEqual([tuple(o.shape) for o in out], expected)
        sum(o.square().mean() for o in out).backward()
        missing = [name for name, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
        self.assertEqual(missing, [])
        with torch.no_grad():
            main = net.eval()(x, t, cond)
        self.assertEqual(tuple(main.shape), expected[0])
        self.assertTrue(torch.isfinite(main).all())

    def test_no_deep_supervision_returns_tensor_in_training(self):
        net = _net(deep_supervision=False, channels=(8, 16)).train()
        x, t, cond = _inputs(1, 1, 1, 8, 8)
        out = net(x, t, cond)
        self.assertIsInstance(out, torch.Tensor)
        self.assertEqual(out.shape, (1, 1, 8, 8))
        self.assertEqual(len(net.aux_heads), 0)

    def test_without_bffm_has_no_conditional_encoder(self):
        net = _net(use_bffm=False)
        names = [name for name, _ in net.named_parameters()]
        self.assertFalse([n for n in names if n.startswith(("cond_encoder", "fuse"))])
        self.assertTrue(any(n.startswith("cond_encoder") for n, _ in _net().named_parameters()))
        self.assertEqual(net.stem.in_channels, 2)  # the image still enters through the input concatenation

    def test_without_adrb_uses_plain_residual_blocks(self):
        from emdiff_components.networks.blocks.bffm import ADRB
        from emdiff_components.networks.blocks.resnet import TimeResBlock

        plain, full = _net(use_adrb=False), _net()
        self.assertFalse(any(isinstance(m, ADRB) for m in plain.modules()))
        self.assertEqual(sum(isinstance(m, TimeResBlock) for m in plain.modules()), 5 * 3 + 4 * 3)
        self.assertEqual(sum(isinstance(m, ADRB) for m in full.modules()), 5 * 3 + 4 * 3)
        self.assertLess(sum(p.numel() for p in plain.parameters()), sum(p.numel() for p in full.parameters()))

    @parameterized.expand(BLOCK_COUNT_CASES)
    def test_adrbs_per_level(self, _, overrides, encoder, decoder):
        net = _net(**overrides)
        # counted from the module tree: ADRB children of each level's ModuleList, deepest decoder level first
        self.assertEqual([sum(isinstance(b, ADRB) for b in level) for level in net.encoder], [encoder] * 5)
        self.assertEqual([sum(isinstance(b, ADRB) for b in level) for level in net.decoder], [decoder] * 4)
        self.assertEqual(sum(isinstance(m, ADRB) for m in net.modules()), 5 * encoder + 4 * decoder)
        # the first block of a decoder level takes the concatenation with the skip, the others the level width
        for level, width in zip(net.decoder, (32, 16, 16, 8)):
            self.assertEqual(level[0].direct[0].in_channels, 2 * width)
            self.assertTrue(all(b.direct[0].in_channels == width for b in level[1:]))
        self.assertEqual(net.stride, 16)  # the block count changes no resolution

    def test_stride_kept(self):
        for channels, stride in (((8, 16, 16, 32, 32), 16), ((8, 16, 16, 32), 8)):
            net = _net(channels=channels).eval()
            self.assertEqual(net.stride, stride)
            x, t, cond = _inputs(1, 1, 1, stride, 2 * stride)  # the smallest input it accepts
            with torch.no_grad():
                self.assertEqual(net(x, t, cond).shape, (1, 1, stride, 2 * stride))
            with self.assertRaisesRegex(ValueError, f"BIEDSNet.*divisible by {stride}"):
                net(x[..., : stride // 2], t, cond[..., : stride // 2])

    def test_parameter_count_at_paper_widths(self):
        net = BIEDSNet(channels=PAPER_WIDTHS)
        adrbs = [m for m in net.modules() if isinstance(m, ADRB)]
        by_module = sum(p.numel() for m in adrbs for p in m.parameters())
        encoder = sum(
            adrb_parameters(prev if j == 0 else c, c)
            for prev, c in zip((32, *PAPER_WIDTHS[:-1]), PAPER_WIDTHS)
            for j in range(3)
        )
        decoder = sum(adrb_parameters(2 * c if j == 0 else c, c) for c in PAPER_WIDTHS[:-1] for j in range(3))
        self.assertEqual(by_module, encoder + decoder)
        # the paper's third decoder ADRB adds one ADRB(c, c) per decoder level to the old two-block decoder
        light = BIEDSNet(channels=PAPER_WIDTHS, num_decoder_res_blocks=2)
        total, total_light = (sum(p.numel() for p in n.parameters()) for n in (net, light))
        self.assertEqual(total - total_light, sum(adrb_parameters(c, c) for c in PAPER_WIDTHS[:-1]))
        self.assertEqual(total, 37_489_202)  # pinned (README: 37.5 M); 35_063_050 with num_decoder_res_blocks=2
        self.assertEqual(total_light, 35_063_050)

    def test_condition_matters(self):
        net = _net().eval()
        x, t, cond = _inputs(1, 1, 1, 16, 16)
        with torch.no_grad():
            a, b = net(x, t, cond), net(x, t, cond.flip(-1))
        self.assertGreater((a - b).abs().max().item(), 1e-6)

    @parameterized.expand(BAD_ARGS)
    def test_bad_arguments(self, _, overrides, pattern):
        with self.assertRaisesRegex(ValueError, pattern):
            _net(**overrides)

    def test_bad_inputs(self):
        net = _net().eval()
        x, t, cond = _inputs(1, 1, 1, 32, 32)
        with self.assertRaisesRegex(ValueError, "BIEDSNet.*divisible by 16"):
            net(x[..., :24], t, cond[..., :24])
        with self.assertRaisesRegex(ValueError, "BIEDSNet.*condition"):
            net(x, t, torch.zeros(1, 2, 32, 32))
        with self.assertRaisesRegex(ValueError, "BIEDSNet.*x must"):
            net(torch.zeros(1, 2, 32, 32), t, cond)
        with self.assertRaisesRegex(ValueError, "BIEDSNet.*timesteps"):
            net(x, torch.tensor([1, 2]), cond)


if __name__ == "__main__":
    unittest.main()
