"""The MONAI Label app's bundle table and options (apps/emdiff/lib/bundles.py), and its environment's requirements.

These run in the main environment: lib/bundles.py needs only monai and emdiff_components (it is loaded from its file,
since the app's ``lib`` package imports MONAI Label).
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import re
import sys
import tempfile
import unittest
from pathlib import Path

from monai.bundle import ConfigParser

REPO = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location("emdiff_label_bundles", REPO / "apps" / "emdiff" / "lib" / "bundles.py")
bundles = importlib.util.module_from_spec(SPEC)
sys.modules[SPEC.name] = bundles  # dataclasses look their module up there
SPEC.loader.exec_module(bundles)


def _names(lines: list[str]) -> set[str]:
    """Package names of requirement lines (comments and blank lines skipped), lower case, ``_`` as ``-``."""
    names = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[<>=!\[; ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


class TestBundleTable(unittest.TestCase):
    def test_every_served_config_exists_and_has_the_ids_the_tasks_set(self):
        for spec in bundles.BUNDLES.values():
            with self.subTest(bundle=spec.name):
                configs = REPO / "bundles" / spec.name / "configs"
                infer, train = ConfigParser(), ConfigParser()
                infer.read_config(str(configs / spec.infer_config))
                train.read_config(str(configs / spec.train_config))
                for key in ("input", "output_dir", "ckpt_path", "bundle_root", "run"):
                    self.assertIn(key, infer, f"{spec.infer_config} lacks {key}")
                for key in ("dataset_dir", "ckpt_dir", "network", "network_def", "device", "bundle_root", "run",
                            *spec.length_ids):
                    self.assertIn(key, train, f"{spec.train_config} lacks {key}")
                self.assertIn("emdiff_components", " ".join(train["imports"]))  # the pretrained-weights expression

    def test_select(self):
        self.assertEqual([s.name for s in bundles.select("all")], ["ecsd", "biedsnet", "neurodiff", "cellcascade"])
        self.assertEqual([s.name for s in bundles.select(" cellcascade,ecsd ")], ["cellcascade", "ecsd"])
        with self.assertRaisesRegex(ValueError, r"unknown \['unet'\]; choose from"):
            bundles.select("ecsd,unet")
        with self.assertRaisesRegex(ValueError, "empty list"):
            bundles.select(",")

    def test_case_name(self):
        self.assertEqual(bundles.case_name("/data/isbi_a.nii.gz"), "isbi_a")
        self.assertEqual(bundles.case_name("/data/a.b.tif"), "a.b")
        with tempfile.TemporaryDirectory() as tmp:
            self.assertEqual(bundles.case_name(tmp + "/"), Path(tmp).name)  # a DICOM series folder
        with self.assertRaisesRegex(ValueError, r"'x\.svs': unsupported image file; supported: .*\.tif"):
            bundles.case_name("x.svs")


class TestOverrides(unittest.TestCase):
    def _load(self, content, names=("ecsd", "biedsnet")):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "overrides.json"
            path.write_text(content if isinstance(content, str) else json.dumps(content))
            return bundles.load_overrides(str(path), list(names), REPO / "bundles")

    def test_ids_overlays_and_lists(self):
        demo = json.loads((REPO / "bundles" / "ecsd" / "configs" / "demo.json").read_text())
        loaded = self._load({"ecsd": ["demo.json", {"num_inference_steps": 2}], "biedsnet": {"num_samples": 3}})
        expected = {k: v for k, v in demo.items() if not k.startswith("_")}
        self.assertNotIn("_desc_", loaded["ecsd"])
        self.assertEqual(loaded["ecsd"], {**expected, "num_inference_steps": 2})
        self.assertEqual(loaded["biedsnet"], {"num_samples": 3})
        self.assertEqual(self._load({"ecsd": "demo.json"})["biedsnet"], {})
        self.assertEqual(bundles.load_overrides(None, ["ecsd"], REPO / "bundles"), {"ecsd": {}})

    def test_errors_name_the_file_and_the_problem(self):
        with self.assertRaisesRegex(ValueError, r"bundles \['neurodiff'\] are not served"):
            self._load({"neurodiff": {}})
        with self.assertRaisesRegex(ValueError, "cannot read .*overrides.json.* as JSON"):
            self._load("{not json")
        with self.assertRaisesRegex(ValueError, r"ecsd: cannot read .*configs/nothere.json"):
            self._load({"ecsd": "nothere.json"})
        with self.assertRaisesRegex(TypeError, "ecsd: expected config ids"):
            self._load({"ecsd": 3})
        with self.assertRaisesRegex(TypeError, r"expected \{bundle: overrides\}"):
            self._load([1, 2])


class TestLabelRequirements(unittest.TestCase):
    def test_requirements_label_lists_every_install_requirement(self):
        """emdiff_components goes into the label environment with --no-deps: its requirements come from the file."""
        setup = configparser.ConfigParser()
        setup.read(REPO / "setup.cfg")
        install = _names(setup["options"]["install_requires"].splitlines())
        label_lines = (REPO / "requirements-label.txt").read_text().splitlines()
        # python-elf is installed by the second (--no-deps) pip call of the documented command
        self.assertEqual(sorted(install - _names(label_lines) - {"python-elf"}), [])
        pins = {line.split("==")[0]: line.split("==")[1] for line in label_lines if "==" in line}
        self.assertEqual((pins["monailabel"], pins["numpy"], pins["torch"], pins["torchvision"]),
                         ("0.8.5", "1.26.4", "2.14.1", "0.29.1"))
        readme = (REPO / "README.md").read_text()
        self.assertIn("pip install -r requirements-label.txt && .venv-label/bin/pip install --no-deps -e . "
                      "python-elf==0.9.2", readme)


if __name__ == "__main__":
    unittest.main()
