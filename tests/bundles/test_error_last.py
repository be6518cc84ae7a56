"""A bad input stops a bundle command with the precise cause as the last line the user reads (not MONAI's generic
``RuntimeError: Failed to evaluate ConfigExpression``), for every bundle's training config run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import unittest

from bundle_testing import REPO
from parameterized import parameterized

from emdiff_components.utils import root_cause

CASES = [
    ("ecsd", "train.json"),
    ("biedsnet", "train.json"),
    ("neurodiff", "train.json"),
    ("cellcascade", "train_masks.json"),
]


class TestRootCause(unittest.TestCase):
    def test_chain(self):
        try:
            try:
                try:
                    raise FileNotFoundError("inner")
                except FileNotFoundError as err:
                    raise ValueError("middle") from err
            except ValueError:
                raise RuntimeError("outer")  # implicit chaining: __context__
        except RuntimeError as err:
            cause = root_cause(err)
        self.assertIsInstance(cause, FileNotFoundError)
        self.assertEqual(str(cause), "inner")
        plain = KeyError("k")
        self.assertIs(root_cause(plain), plain)


class TestErrorLast(unittest.TestCase):
    @parameterized.expand(CASES)
    def test_missing_dataset_folder_is_the_last_line(self, bundle, config):
        with tempfile.TemporaryDirectory() as tmp:
            missing = os.path.join(tmp, "no_such_data")
            done = subprocess.run(
                [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file",
                 str(REPO / "bundles" / bundle / "configs" / config), "--bundle_root", tmp, "--dataset_dir", missing],
                check=False, capture_output=True, text=True, cwd=tmp, env={**os.environ, "OMP_NUM_THREADS": "1"},
                timeout=300,
            )
        self.assertNotEqual(done.returncode, 0)
        last = done.stderr.strip().splitlines()[-1]
        self.assertTrue(last.startswith("Error: "), last)
        self.assertIn("no_such_data", last)
        self.assertNotIn("ConfigExpression", last)


if __name__ == "__main__":
    unittest.main()
