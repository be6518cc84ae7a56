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

    def test_no_placeholder_left(self):
        self.assertNotIn("PERFORMANCE", self.readme)


if __name__ == "__main__":
    unittest.main()
