"""NeuroDiffUNet against the public NeuroDiff network: its weights load through the key map and give its output."""

from __future__ import annotations

import importlib.util
import unittest
from pathlib import Path

import pytest
import torch

from emdiff_components.networks import NeuroDiffUNet
from emdiff_components.networks.reference_weights import convert_neurodiff_state_dict, neurodiff_key_map

_helpers = importlib.util.spec_from_file_location("ecsd_reference", Path(__file__).with_name("test_ecsd_reference.py"))
ecsd_reference = importlib.util.module_from_spec(_helpers)
_helpers.loader.exec_module(ecsd_reference)

FIXTURE = "neurodiff_unet_small.pt"
# NeuroDiff(model_channels=64, channel_mult=(0.5, 0.5, 0.5), num_res_blocks=1, attention_resolutions=(4,),
# ani_ratio=2, res_z=29, res_xy=6, ...) in our arguments
REFERENCE_ARGS = {
    "channels": (32, 32, 32),
    "time_channels": 64,
    "num_res_blocks": 1,
    "rgm_factors": (4,),
    "anisotropy_ratio": 2,
    "voxel_size": (29, 6, 6),
}


class TestNeuroDiffReference(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _fixture(self, shared_data):
        self.fixture = ecsd_reference.load_reference_fixture(shared_data, FIXTURE)
        self.reference = self.fixture["state_dict"]

    def _network(self) -> NeuroDiffUNet:
        torch.manual_seed(0)
        return NeuroDiffUNet(**REFERENCE_ARGS).eval()

    def test_every_key_maps_onto_a_tensor_of_the_same_shape(self):
        self.assertEqual(len(self.reference), 214)
        ours = self._network().state_dict()
        converted = convert_neurodiff_state_dict(self.reference)
        self.assertEqual(len(converted), 214)
        # only the RGM voxel-size buffers have no reference counterpart
        left = sorted(set(ours) - set(converted))
        self.assertEqual(left, sorted(k for k in ours if k.endswith("rpge.resolution")))
        self.assertEqual(len(left), 4)
        self.assertFalse(set(converted) - set(ours))
        for key, target in neurodiff_key_map(self.reference).items():
            self.assertEqual(ours[target].shape, self.reference[key].shape, key)

    def test_reproduces_reference_output(self):
        net = self._network()
        state = convert_neurodiff_state_dict(self.reference, FIXTURE)
        state.update({k: v for k, v in net.state_dict().items() if k.endswith("rpge.resolution")})
        net.load_state_dict(state, strict=True)
        inputs = self.fixture["inputs"]
        with torch.no_grad():
            out = net(inputs["x_t"], inputs["timesteps"], inputs["condition"])
        torch.testing.assert_close(out, self.fixture["output"], atol=1e-4, rtol=0)

    def test_group_norms_use_the_reference_eps(self):
        eps = {m.eps for m in self._network().modules() if isinstance(m, torch.nn.GroupNorm)}
        self.assertEqual(eps, {1e-5})


class TestNeuroDiffKeyMap(unittest.TestCase):
    def test_keys_by_hand(self):
        # input blocks interleave ResBlock levels and Downsamples: 1 res, 2 down, 3 res (+ CrossMamba) ...
        table = {
            "input_blocks.0.0.weight": "input_conv.weight",
            "input_blocks.1.0.in_layers.0.weight": "encoder.0.0.norm1.weight",
            "input_blocks.2.0.op.weight": "downsample.0.weight",
            "input_blocks.3.0.emb_layers.1.bias": "encoder.1.0.time_emb_proj.bias",
            "input_blocks.3.1.block1.mamba.A_log": "encoder.1.1.mamba.A_log",
            "middle_block.1.pos_mlp.mlp.2.weight": "middle.1.rpge.mlp.2.weight",
            "output_blocks.1.0.skip_connection.weight": "decoder.1.0.skip_connection.conv.weight",
            "output_blocks.1.1.block1.norm.bias": "decoder.1.1.norm.bias",
            "output_blocks.1.2.conv.weight": "decoder.1.2.conv.weight",
            "output_blocks.3.1.conv.bias": "decoder.3.2.conv.bias",
            "cond_pre.6.weight": "msc.encoder.6.weight",
            "dense_hint_blocks.2.2.bias": "msc.hints.2.conv.bias",
            "out.2.weight": "out.2.weight",
        }
        self.assertEqual(neurodiff_key_map(table), table)

    def test_unknown_key_names_the_source(self):
        with self.assertRaisesRegex(ValueError, r"nd\.pt: 1 key\(s\) are not NeuroDiff.*label_emb"):
            neurodiff_key_map(["time_embed.0.weight", "label_emb.weight"], source="nd.pt")


if __name__ == "__main__":
    unittest.main()
