"""House rule 11: the numbers the BIEDSNet README quotes are the configs' numbers."""

from __future__ import annotations

import json
import re
import unittest

from bundle_testing import REPO, assert_readme_sections, table_value

BUNDLE = REPO / "bundles" / "biedsnet"


class TestBIEDSNetReadme(unittest.TestCase):
    def setUp(self):
        self.readme = (BUNDLE / "docs" / "README.md").read_text()
        self.train = json.loads((BUNDLE / "configs" / "train.json").read_text())
        self.infer = json.loads((BUNDLE / "configs" / "inference.json").read_text())

    def test_sections_in_order(self):
        assert_readme_sections(self, self.readme)

    def test_quoted_numbers_match_configs(self):
        self.assertEqual(int(table_value(self.readme, "epochs")), self.train["epochs"])
        self.assertEqual(table_value(self.readme, "image size"), " x ".join(map(str, self.train["image_size"])))
        self.assertEqual(int(table_value(self.readme, "batch size")), self.train["batch_size"])
        self.assertEqual(int(table_value(self.readme, "diffusion steps T")), self.train["num_train_timesteps"])
        self.assertEqual(float(table_value(self.readme, "EMA decay")), self.train["ema_decay"])
        optimizer = table_value(self.readme, "optimizer")
        self.assertEqual(float(re.search(r"lr ([0-9.e-]+)", optimizer).group(1)), self.train["learning_rate"])
        self.assertEqual(float(re.search(r"weight decay ([0-9.e-]+)", optimizer).group(1)), self.train["weight_decay"])
        self.assertEqual(table_value(self.readme, "width").split(";")[0], ", ".join(map(str, self.train["channels"])))
        self.assertEqual(table_value(self.readme, "inference sampler"), self.infer["sampler"])
        self.assertEqual(int(table_value(self.readme, "inference steps N")), self.infer["num_inference_steps"])
        self.assertEqual(int(table_value(self.readme, "ensemble size K")), self.infer["num_samples"])

    def test_no_placeholder_left(self):
        self.assertNotIn("PERFORMANCE", self.readme)


if __name__ == "__main__":
    unittest.main()
