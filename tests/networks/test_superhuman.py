"""Tests of SuperhumanUNet (Lee et al. 2017 residual symmetric U-Net, NeuroDiff downstream configuration)."""

from __future__ import annotations

import unittest

import torch
from parameterized import parameterized

from emdiff_components.networks import SuperhumanUNet, convert_superhuman_state_dict

# Parameter count of the public configuration (filters 28, 36, 48, 64, 80; 1 -> 3 channels), by hand from the
# public UNet_PNI structure. With w = (28, 28, 36, 48, 64, 80) (the embedding keeps 28):
#   residual block (cin -> c): 1x3x3 conv 9*cin*c + two 3x3x3 convs 54*c*c + three BatchNorms 6*c (no conv bias)
#     conv0 28->28 49,560; conv1 28->36 79,272; conv2 36->48 140,256; conv3 48->64 249,216; center 64->80 392,160
#     conv4 128->64 295,296; conv5 96->48 166,176; conv6 72->36 93,528; conv7 56->28 56,616
#   up (cin -> c), transposeS: depthwise 2x2 kernel 4*cin + cin, then 1x1x1 cin*c + c:
#     80->64 5,584; 64->48 3,440; 48->36 2,004; 36->28 1,216
#   cat BatchNorm 2 * merged width: 256 + 192 + 144 + 112 = 704
#   embed_in 1*28*25 + 28 = 728; embed_out 28*28*25 + 28 = 19,628; out_put 28*3 + 3 = 87
#   total 1,555,471 (the public model, built in a scratch folder, reports the same count).
PUBLIC_PARAMETERS = 1_555_471
# BatchNorm buffers: 31 BatchNorms (3 per residual block x 9 + 4 cat), 1648 channels in all: 2 * 1648 + 31 = 3,327.
PUBLIC_BUFFERS = 3_327


def _public_keys() -> set[str]:
    """The public UNet_PNI state_dict keys, spelled out from its module layout."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {f"{m}.0.{p}" for m in ("embed_in", "embed_out", "out_put") for p in ("weight", "bias")}
    for block in [f"conv{i}" for i in range(8)] + ["center"]:
        keys |= {f"{block}.block1.0.weight", f"{block}.block2.0.weight", f"{block}.block2.3.weight"}
        keys |= {f"{block}.{sub}.{p}" for sub in ("block1.1", "block2.1", "block3") for p in bn}
    for i in range(4):
        keys |= {f"up{i}.{j}.{p}" for j in (0, 1) for p in ("weight", "bias")}
        keys |= {f"cat{i}.0.{p}" for p in bn}
    return keys


BAD_ARGS = [
    ("in_channels", {"in_channels": 0}, "in_channels"),
    ("filters_short", {"filters": (8,)}, "filters"),
    ("filters_float", {"filters": (8, 8.0)}, "filters"),
    ("pool_z_length", {"pool_z": (True,)}, "pool_z"),
    ("upsample", {"upsample_mode": "transpose"}, "upsample_mode"),
    ("merge", {"merge_mode": "mul"}, "merge_mode"),
    ("pad", {"pad_mode": "reflect"}, "pad_mode"),
    ("bn", {"bn_mode": "group"}, "bn_mode"),
    ("relu", {"relu_mode": "gelu"}, "relu_mode"),
    ("init", {"init_mode": "orthogonal"}, "init_mode"),
]

BAD_SIZES = [
    ("y_not_16", {}, (1, 1, 4, 20, 32), r"divisible by \(1, 16, 16\), got \(4, 20, 32\)"),
    ("z_pooled_odd", {"filters": (4, 8), "pool_z": (True,)}, (1, 1, 3, 8, 8), r"divisible by \(2, 2, 2\)"),
    ("not_5d", {}, (1, 4, 16, 16), "expected a \\(B, C, Z, Y, X\\)"),
]


class TestSuperhumanUNet(unittest.TestCase):
    def test_shape_and_range(self):
        torch.manual_seed(0)
        net = SuperhumanUNet().eval()
        with torch.no_grad():
            out = net(torch.rand(2, 1, 3, 32, 48))
        self.assertEqual(tuple(out.shape), (2, 3, 3, 32, 48))
        self.assertTrue(bool(((out > 0) & (out < 1)).all()))
        logits = SuperhumanUNet(filters=(4, 8), out_channels=2, sigmoid=False, pool_z=(True,)).eval()
        with torch.no_grad():
            self.assertEqual(tuple(logits(torch.rand(1, 1, 4, 8, 8)).shape), (1, 2, 4, 8, 8))

    def test_public_structure(self):
        net = SuperhumanUNet()
        self.assertEqual(set(net.state_dict()), _public_keys())
        self.assertEqual(sum(p.numel() for p in net.parameters()), PUBLIC_PARAMETERS)
        self.assertEqual(sum(b.numel() for b in net.buffers()), PUBLIC_BUFFERS)
        self.assertEqual(net.conv0.block1[0].kernel_size, (1, 3, 3))
        self.assertEqual(net.embed_in[0].kernel_size, (1, 5, 5))
        self.assertEqual(net.cat0[0].momentum, 0.001)  # UNet_PNI default; build_model does not override it

    def test_receptive_field_in_z(self):
        # Z is never pooled and only the two 3x3x3 convs of each residual block reach across sections (block1 and
        # the embeddings are 1xKxK): 9 blocks x 2 convs x 1 section = 18 sections on either side of an output voxel.
        torch.manual_seed(0)
        net = SuperhumanUNet().double().eval()
        x = torch.rand(1, 1, 41, 16, 16, dtype=torch.float64, requires_grad=True)
        net(x)[0, 0, 20, 8, 8].backward()
        per_section = x.grad[0, 0].abs().sum(dim=(1, 2))
        reached = torch.nonzero(per_section > 0).flatten().tolist()
        self.assertEqual(reached, list(range(20 - 18, 20 + 18 + 1)))

    def test_convert_checkpoint(self):
        torch.manual_seed(1)
        source = SuperhumanUNet(filters=(4, 8, 8)).eval()
        for m in source.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.5, 0.5)
        checkpoint = {"current_iter": 5, "model_weights": {f"module.{k}": v for k, v in source.state_dict().items()}}
        target = SuperhumanUNet(filters=(4, 8, 8))
        target.load_state_dict(convert_superhuman_state_dict(checkpoint))
        x = torch.rand(1, 1, 2, 8, 8)
        with torch.no_grad():
            torch.testing.assert_close(target.eval()(x), source(x), rtol=0, atol=0)
        self.assertEqual(convert_superhuman_state_dict({"a.b": 1}), {"a.b": 1})
        with self.assertRaisesRegex(TypeError, "convert_superhuman_state_dict: expected a mapping"):
            convert_superhuman_state_dict([1, 2])

    @parameterized.expand(BAD_ARGS)
    def test_bad_args(self, _, kwargs, match):
        with self.assertRaisesRegex(ValueError, f"SuperhumanUNet: {match}"):
            SuperhumanUNet(**kwargs)

    @parameterized.expand(BAD_SIZES)
    def test_bad_sizes(self, _, kwargs, shape, match):
        with self.assertRaisesRegex(ValueError, f"SuperhumanUNet: .*{match}"):
            SuperhumanUNet(**kwargs)(torch.rand(*shape))


if __name__ == "__main__":
    unittest.main()
