"""House rule 11: the numbers the bundle README quotes are the config's numbers."""

from __future__ import annotations

import json
import re
import unittest

from bundle_testing import REPO, assert_readme_sections, load_script, table_value
from parameterized import parameterized

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


def _figures(cells: str) -> list[str]:
    """The numbers of table cells, in order ("mean 34.9: 43.3 (356) / ..." -> ["34.9", "43.3", "356", ...])."""
    return re.findall(r"\d+(?:\.\d+)?", cells)


def _section_table(readme: str, heading: str) -> list[str]:
    """The data rows of the first table after ``heading``."""
    section = readme[readme.index(heading) :]
    lines = section[section.index("\n|") + 1 :].split("\n")
    return lines[2 : next(i for i, line in enumerate(lines) if not line.startswith("|"))]  # past header and rule


class TestECSDSeedTables(unittest.TestCase):
    """The seed tables of the README carry the figures of the benchmark files they name, row by row."""

    @parameterized.expand(
        [
            ("### Spread between seeds", "learning_curves_seeds.json", "0/1/2"),  # BasicUNet's row names its seeds
            ("### Four seeds to 30 CPU-minutes", "learning_curves_seeds30.json", "0/1/2/3"),
        ]
    )
    def test_figures_match_the_file(self, heading: str, name: str, seeds: str):
        readme = (BUNDLE / "docs" / "README.md").read_text()
        rows = json.loads((REPO / "benchmarks" / name).read_text())["rows"]
        expected = load_script("learning_curves").markdown_table(rows).split("\n")[2:]
        quoted = _section_table(readme, heading)
        self.assertEqual(len(quoted), len(expected))
        for ours, theirs in zip(quoted[:2], expected):  # ECSD and plain cold diffusion
            self.assertIn(f"seeds {seeds}", theirs)
            # the README names the model in words; the figures after the model (and, in the file, the data set) match
            self.assertEqual(_figures(ours.split("|", 2)[2]), _figures(theirs.split("|", 3)[3]))


if __name__ == "__main__":
    unittest.main()
