"""ECSDUNet against the public Cold SegDiffusion ``Unet``: its weights load through the key map and give its output."""

from __future__ import annotations

import os
import unittest

import pytest
import torch
import torch.nn.functional as F
from parameterized import parameterized

from emdiff_components.networks import ECSDUNet
from emdiff_components.networks.reference_weights import (
    COLD_SEGDIFF_TRANSFORMS,
    cold_segdiff_key_map,
    convert_cold_segdiff_state_dict,
)

FIXTURE = "cold_segdiff_unet_small.pt"
# Unet(dim=16, image_size=64, mask_channels=1, input_img_channels=1), every other argument at its default
REFERENCE_ARGS = {"channels": (16, 32, 64, 128), "filter_size": 64}
NUM_REFERENCE_KEYS = 499
# reference tensors whose transform is not a plain rename: (key, transform)
TRANSFORM_CASES = [
    ("downs.0.3.1.weight", "unshuffle"),
    ("cond_downs.2.3.1.weight", "unshuffle"),
    ("downs.3.2.fn.pre_norm.g", "flatten"),
    ("conditioners.1.norm_input.b", "flatten"),
    ("mid_transformer.layers.0.0.fn.to_qkv_c.weight", "q_rows"),
    ("mid_transformer.layers.0.3.fn.to_qkv_x.weight", "kv_rows"),
]


def load_reference_fixture(shared_data, name: str) -> dict:
    """The fixture dict of ``reference_fixtures/<name>``; skipped when missing (failed under ``CI=true``)."""
    path = shared_data / "reference_fixtures" / name
    if not path.is_file():
        message = f"reference fixture {str(path)!r} not found"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return torch.load(path)


class TestColdSegDiffReference(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _fixture(self, shared_data):
        self.fixture = load_reference_fixture(shared_data, FIXTURE)
        self.reference = self.fixture["state_dict"]

    def _network(self) -> ECSDUNet:
        torch.manual_seed(0)
        return ECSDUNet(**REFERENCE_ARGS).eval()

    def test_every_key_maps_onto_a_tensor_of_the_same_size(self):
        self.assertEqual(len(self.reference), NUM_REFERENCE_KEYS)
        key_map = cold_segdiff_key_map(self.reference)
        self.assertEqual(len(key_map), NUM_REFERENCE_KEYS)
        ours = self._network().state_dict()
        converted = convert_cold_segdiff_state_dict(self.reference)
        # one-to-one onto our keys, nothing left over on either side
        self.assertEqual(sorted(converted), sorted(ours))
        for key, (target, transform) in key_map.items():
            with self.subTest(key=key):
                self.assertEqual(converted[target].shape, ours[target].shape)
                # every value is kept, except the MID projection rows that the reference computes but never uses
                kept = {"q_rows": 1, "kv_rows": 2}.get(transform, 3)
                self.assertEqual(3 * converted[target].numel(), kept * self.reference[key].numel())

    def test_reproduces_reference_output(self):
        net = self._network()
        net.load_state_dict(convert_cold_segdiff_state_dict(self.reference, FIXTURE), strict=True)
        inputs = self.fixture["inputs"]
        with torch.no_grad():
            out = net(inputs["x"], inputs["time"], inputs["cond"])
        self.assertEqual(out.dtype, torch.float32)
        torch.testing.assert_close(out, self.fixture["output"], atol=1e-4, rtol=0)

    def test_fourier_maps_reduce_exactly_at_the_filter_size(self):
        net = self._network()
        net.load_state_dict(convert_cold_segdiff_state_dict(self.reference), strict=True)
        for i, cem in enumerate(net.cems):
            size = 64 // 2**i
            theta = self.reference[f"conditioners.{i}.ff_theta"]
            real, imag = cem.fourier_filter.resampled_maps(size, size)
            # bit for bit the reference's maps times its one theta
            self.assertTrue(torch.equal(real, self.reference[f"conditioners.{i}.ff_parser_attn_map_r"] * theta))
            self.assertTrue(torch.equal(imag, self.reference[f"conditioners.{i}.ff_parser_attn_map_i"] * theta))
            # and the filter is the reference's full-spectrum formula
            x = torch.randn(2, cem.fourier_filter.channels, size, size, generator=torch.Generator().manual_seed(i))
            z = torch.fft.fft2(x)
            expected = torch.fft.ifft2(torch.complex(z.real * real, z.imag * imag)).real
            with torch.no_grad():
                torch.testing.assert_close(cem.fourier_filter(x), expected, atol=1e-5, rtol=1e-5)

    @parameterized.expand(TRANSFORM_CASES)
    def test_transforms(self, key, transform):
        self.assertEqual(cold_segdiff_key_map([key])[key][1], transform)
        w = self.reference[key]
        out = COLD_SEGDIFF_TRANSFORMS[transform](w)
        if transform == "unshuffle":
            # pixel-unshuffle + 1x1 convolution == 2x2 stride-2 convolution with the reshaped weight
            x = torch.randn(1, w.shape[1] // 4, 8, 8, generator=torch.Generator().manual_seed(3))
            torch.testing.assert_close(F.conv2d(x, out, stride=2), F.conv2d(F.pixel_unshuffle(x, 2), w))
        elif transform == "flatten":
            self.assertTrue(torch.equal(out, w[0, :, 0, 0]))
        elif transform == "q_rows":
            self.assertTrue(torch.equal(out, w[: w.shape[0] // 3]))
        else:
            self.assertTrue(torch.equal(out, w[w.shape[0] // 3 :]))


class TestColdSegDiffKeyMapErrors(unittest.TestCase):
    def test_unknown_key_names_the_source(self):
        with self.assertRaisesRegex(ValueError, r"run\.pt: 1 key\(s\) are not Cold SegDiffusion Unet.*encoder\.stem"):
            cold_segdiff_key_map(["init_conv.weight", "encoder.stem.conv.weight"], source="run.pt")

    def test_wrong_form_names_the_key(self):
        state = {"downs.0.3.1.weight": torch.zeros(16, 6, 1, 1)}
        with self.assertRaisesRegex(ValueError, r"run\.pt: downs\.0\.3\.1\.weight: expected a \(O, 4C, 1, 1\)"):
            convert_cold_segdiff_state_dict(state, source="run.pt")

    def test_plain_keys_by_hand(self):
        table = {
            "init_conv.weight": "encoder.stem.conv.weight",
            "cond_init_conv.bias": "cond_encoder.stem.conv.bias",
            "time_mlp.3.weight": "time_embedding.mlp.2.weight",
            "cond_downs.1.0.mlp.1.weight": "cond_encoder.levels.1.block1.time_proj.weight",
            "downs.3.3.weight": "encoder.levels.3.resample.conv.weight",
            "conditioners.2.attention_f.spatial_attention.conv2d.bias": (
                "cems.2.attention.spatial_attention.conv.conv.bias"
            ),
            "conditioners.0.ff_parser_attn_map_i": "cems.0.fourier_filter.map_imag",
            "mid_transformer.layers.0.2.fn.3.bias": "bottleneck.layers.0.ff2.3.bias",
            "ups.0.0.res_conv.weight": "decoder.0.block1.skip.conv.weight",
            "ups.2.3.1.weight": "decoder.2.resample.conv.conv.weight",
            "ups.3.3.bias": "decoder.3.resample.conv.bias",
            "final_conv.weight": "final_conv.conv.weight",
        }
        mapped = cold_segdiff_key_map(table)
        self.assertEqual({k: v[0] for k, v in mapped.items()}, table)


if __name__ == "__main__":
    unittest.main()
