"""Tests of the config helpers ablation_tag and sampling_tile_size."""

from __future__ import annotations

import unittest

import torch
from parameterized import parameterized

from emdiff_components.engines.bundle_config import ablation_tag, sampling_tile_size

# (name, switches, expected tag): BIEDSNet's switches in its order
TAG_CASES = [
    ("none", {"no_bffm": False, "no_adrb": False, "mse_loss": False}, ""),
    ("one", {"no_bffm": False, "no_adrb": True, "mse_loss": False}, "no_adrb"),
    ("order_kept", {"no_bffm": True, "no_adrb": False, "mse_loss": True, "no_deep_supervision": True},
     "no_bffm-mse_loss-no_deep_supervision"),
    ("no_switches", {}, ""),
]

# (name, patch, device, cpu_max_size, expected)
TILE_CASES = [
    ("cpu_caps_in_plane", [8, 512, 512], "cpu", 256, [8, 256, 256]),
    ("cpu_small_patch_kept", [4, 64, 96], "cpu", 256, [4, 64, 96]),
    ("cpu_depth_never_cut", [300, 300, 100], "cpu", 256, [300, 256, 100]),
    ("cuda_whole_patch", [8, 512, 512], torch.device("cuda", 0), 256, [8, 512, 512]),
    ("two_d", [512, 512], "cpu", 128, [512, 128]),
]


class TestAblationTag(unittest.TestCase):
    @parameterized.expand(TAG_CASES)
    def test_tag(self, _, switches, expected):
        self.assertEqual(ablation_tag(**switches), expected)

    def test_non_bool_rejected(self):
        with self.assertRaisesRegex(TypeError, "ablation_tag.*no_bffm"):
            ablation_tag(no_bffm="yes")


class TestSamplingTileSize(unittest.TestCase):
    @parameterized.expand(TILE_CASES)
    def test_size(self, _, patch, device, cpu_max_size, expected):
        self.assertEqual(sampling_tile_size(patch, device, cpu_max_size), expected)

    def test_bad_cap(self):
        with self.assertRaisesRegex(ValueError, "sampling_tile_size.*cpu_max_size"):
            sampling_tile_size([8, 64, 64], "cpu", 0)


if __name__ == "__main__":
    unittest.main()
