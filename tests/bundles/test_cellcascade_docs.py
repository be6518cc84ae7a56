"""House rule 11: the numbers the CellCascade README quotes are the configs' numbers."""

from __future__ import annotations

import json
import unittest

from bundle_testing import REPO, assert_readme_sections, table_value

BUNDLE = REPO / "bundles" / "cellcascade"


def load(name: str) -> dict:
    return json.loads((BUNDLE / "configs" / name).read_text())


class TestCellCascadeReadme(unittest.TestCase):
    def setUp(self):
        self.readme = (BUNDLE / "docs" / "README.md").read_text()
        self.masks, self.texture, self.infer = load("train_masks.json"), load("train_texture.json"), load("inference.json")

    def test_sections_in_order(self):
        assert_readme_sections(self, self.readme)

    def test_quoted_numbers_match_configs(self):
        m, t, i = self.masks, self.texture, self.infer
        self.assertEqual(int(table_value(self.readme, "diffusion steps T")), m["num_train_timesteps"])
        self.assertEqual(int(table_value(self.readme, "diffusion steps T")), t["num_train_timesteps"])
        self.assertEqual(table_value(self.readme, "single-cell crop"),
                         f"{m['crop_size']} px canvas, resized to {m['image_size']} x {m['image_size']}")
        self.assertEqual(table_value(self.readme, "mask network"),
                         "DiffusionModelUNet, channels " + ", ".join(map(str, m["mask_channels"])))
        self.assertEqual(table_value(self.readme, "texture network"),
                         "ControlNet + DiffusionModelUNet, channels " + ", ".join(map(str, t["texture_channels"])))
        self.assertEqual(int(table_value(self.readme, "mask batch size")), m["batch_size"])
        self.assertEqual(int(table_value(self.readme, "texture batch size")), t["batch_size"])
        for row, config in (("mask optimizer", m), ("texture optimizer", t)):
            self.assertEqual(table_value(self.readme, row), f"AdamW, lr {config['learning_rate']:.0e}".replace("e-0", "e-"))
        self.assertEqual(float(table_value(self.readme, "condition dropout")), t["p_uncond"])
        self.assertEqual(int(table_value(self.readme, "training steps")), m["num_steps"])
        self.assertEqual(int(table_value(self.readme, "training steps")), t["num_steps"])
        self.assertEqual(table_value(self.readme, "mask sampler"),
                         f"DDIM {i['num_inference_steps']} steps, eta {i['mask_eta']}")
        self.assertEqual(table_value(self.readme, "texture sampler"),
                         f"DDIM {i['num_inference_steps']} steps, eta {i['texture_eta']}, guidance {i['guidance_scale']}")
        self.assertEqual(t["guidance_scale"], i["guidance_scale"])
        self.assertEqual(float(table_value(self.readme, "slice-consistent noise rho")), i["rho"])
        self.assertEqual(table_value(self.readme, "cells per image"), f"{i['num_cells'][0]} to {i['num_cells'][1]}")

    def test_commands_name_existing_ids(self):
        for name in ("num_steps", "epoch_length", "batch_size"):
            self.assertIn(f"--{name}", self.readme)
            self.assertIn(name, self.masks)
        for name in ("num_masks", "num_lifted", "num_inference_steps", "mesh_dir", "num_stacks", "num_images"):
            self.assertIn(f"--{name}", self.readme)
            self.assertIn(name, self.infer)

    def test_segmentation_numbers_match_configs(self):
        seg = load("segment_train.json")
        self.assertIn(f"AdamW lr {seg['learning_rate']:.0e}".replace("e-0", "e-"), self.readme)
        self.assertIn(f"crops of\n   {seg['patch_size'][0]} x {seg['patch_size'][1]}, batch {seg['batch_size']}", self.readme)
        self.assertIn(f"{seg['percentiles'][0]:g}st and {seg['percentiles'][1]:g}th percentiles", self.readme)
        self.assertIn(f"`synthetic_ratio` = {seg['synthetic_ratio']}", self.readme)
        self.assertIn(f"`held_out` = {seg['held_out']}", self.readme)
        self.assertEqual(seg["held_out"], load("segment.json")["held_out"])
        self.assertIn(f"`demo_train_steps` = {self.infer['demo_train_steps']} steps of batch "
                      f"{self.infer['demo_train_batch_size']}", self.readme)
        self.assertIn(f"its `{load('evaluate.json')['fid_layer']}` layer", self.readme)

    def test_paper_and_builtin_3d_paths_are_named(self):
        self.assertIn("**That is the paper's path and its pretrained weights are not shipped here**", self.readme)
        self.assertIn("**Our built-in default** needs no pretrained model: `LiftMask3D`", self.readme)


if __name__ == "__main__":
    unittest.main()
