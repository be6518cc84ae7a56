"""House rule 11: the numbers the bundle README quotes are the config's numbers."""

from __future__ import annotations

import json
import unittest

from bundle_testing import REPO, assert_readme_sections, table_value

BUNDLE = REPO / "bundles" / "ecsd"


class TestECSDReadme(unittest.TestCase):
    def setUp(self):
        self.readme = (BUNDLE / "docs" / "README.md").read_text()
        self.train = json.loads((BUNDLE / "configs" / "train.json").read_text())

    def test_sections_in_order(self):
        assert_readme_sections(self, self.readme)

    def test_quoted_numbers_match_config(self):
        self.assertEqual(int(table_value(self.readme, "epochs")), self.train["epochs"])
        self.assertEqual(table_value(self.readme, "patch size"), " x ".join(map(str, self.train["patch_size"])))
        self.assertEqual(int(table_value(self.readme, "batch size")), self.train["batch_size"])
        self.assertEqual(int(table_value(self.readme, "diffusion steps T")), self.train["num_train_timesteps"])
        steps = self.train["num_inference_steps"] or self.train["num_train_timesteps"]
        self.assertEqual(int(table_value(self.readme, "sampler steps")), steps)
        self.assertEqual(table_value(self.readme, "width").split(";")[0], ", ".join(map(str, self.train["channels"])))


if __name__ == "__main__":
    unittest.main()
