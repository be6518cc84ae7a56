"""House rule 11: the numbers the NeuroDiff README quotes are the configs' numbers."""

from __future__ import annotations

import json
import unittest

from bundle_testing import REPO, assert_readme_sections, table_value

BUNDLE = REPO / "bundles" / "neurodiff"


class TestNeuroDiffReadme(unittest.TestCase):
    def setUp(self):
        self.readme = (BUNDLE / "docs" / "README.md").read_text()
        self.train = json.loads((BUNDLE / "configs" / "train.json").read_text())

    def test_sections_in_order(self):
        assert_readme_sections(self, self.readme)

    def test_quoted_numbers_match_config(self):
        t = self.train
        self.assertEqual(int(table_value(self.readme, "diffusion steps T")), t["num_train_timesteps"])
        self.assertEqual(table_value(self.readme, "patch size"), " x ".join(map(str, t["patch_size"])))
        self.assertEqual(int(table_value(self.readme, "batch size")), t["batch_size"])
        self.assertEqual(int(table_value(self.readme, "gradient accumulation")), t["accumulation_steps"])
        self.assertEqual(int(table_value(self.readme, "training steps")), t["num_steps"])
        self.assertEqual(table_value(self.readme, "optimizer"), f"Adam, lr {t['learning_rate']:.0e}".replace("e-0", "e-"))
        self.assertEqual(table_value(self.readme, "EMA"),
                         f"{t['ema_decay']} every {t['ema_update_every']} steps from step {t['ema_start_step']}")
        widths = ", ".join(map(str, t["channels"]))
        self.assertEqual(table_value(self.readme, "width"), f"channels {widths}; time_channels {t['time_channels']}")

    def test_segmentation_numbers_match_config(self):
        seg = json.loads((BUNDLE / "configs" / "segment_train.json").read_text())
        segment = json.loads((BUNDLE / "configs" / "segment.json").read_text())
        self.assertEqual(table_value(self.readme, "segmentation network"),
                         "SuperhumanUNet, filters " + ", ".join(map(str, seg["filters"])))
        self.assertEqual(table_value(self.readme, "segmentation crop"), " x ".join(map(str, seg["patch_size"])))
        self.assertEqual(int(table_value(self.readme, "segmentation batch size")), seg["batch_size"])
        self.assertEqual(int(table_value(self.readme, "segmentation iterations")), seg["num_steps"])
        self.assertEqual(table_value(self.readme, "segmentation optimizer"),
                         f"Adam, lr {seg['learning_rate']:.0e}, eps {seg['optimizer']['eps']}, AMSGrad, weight decay "
                         f"{seg['optimizer']['weight_decay']:.0e}".replace("e-0", "e-"))
        self.assertTrue(table_value(self.readme, "label fraction").startswith(str(seg["label_fraction"])))
        self.assertTrue(table_value(self.readme, "synthetic ratio").startswith(str(seg["synthetic_ratio"])))
        w, a = segment["watershed"], segment["agglomeration"]
        self.assertEqual(table_value(self.readme, "post-processing"),
                         f"watershed threshold {w['threshold']}, seed sigma {w['sigma_seeds']}; waterz threshold "
                         f"{a['waterz']['threshold']}; multicut beta {a['multicut']['beta']}")
        block, margin = segment["block_shape"], segment["context"]
        self.assertEqual(table_value(self.readme, "blockwise prediction"),
                         f"blocks {' x '.join(map(str, block))} with a margin of {' x '.join(map(str, margin))} "
                         f"(network input {' x '.join(str(b + 2 * c) for b, c in zip(block, margin))})")

    def test_no_placeholder_left(self):
        self.assertNotIn("PERFORMANCE", self.readme)


if __name__ == "__main__":
    unittest.main()
