"""The documented commands from the repository root, without ``--bundle_root``, on each bundle's demo data.

``python -m monai.bundle run training --config_file bundles/<name>/configs/train.json`` is how the collection is
called: ``bundle_root`` (``emdiff_components.engines.default_bundle_root``) resolves to ``bundles/<name>``, the demo
data is generated there, models and outputs land there. The runs happen in a temporary copy of the repository layout
(``bundles/<name>/configs`` only) as the working directory, so nothing is written into the real bundle folders.
Training goes through the CLI as a user types it (plus tiny sizes) and must leave TensorBoard scalars: the training
loss at every iteration, equal to the console's, and where the config validates, the validation metric.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
from bundle_testing import REPO
from monai.bundle import ConfigWorkflow
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ECSD = {"channels": [8, 16, 32, 64], "attention_heads": 1, "attention_head_channels": 8, "filter_size": [64, 64],
        "patch_size": [64, 64], "use_checkpointing": False, "num_inference_steps": 2, "progress": False}
BIEDSNET = {"channels": [8, 16, 16, 32, 32], "num_res_blocks": 1, "image_size": [64, 64], "patch_size": [64, 64],
            "batch_size": 4, "val_num_inference_steps": 2, "progress": False}
NEURODIFF = {"channels": [8, 16, 16, 32, 32, 64, 64], "time_channels": 16, "norm_num_groups": 8,
             "msc_channels": [8, 8, 16, 16], "patch_size": [4, 64, 64], "sampler": "ddim", "progress": False}
NEURODIFF_SEGMENT = {"filters": [4, 6, 8, 10, 12], "patch_size": [8, 64, 64]}
CELLCASCADE = {"mask_channels": [8, 16, 16], "texture_channels": [8, 16, 16], "norm_num_groups": 8,
               "num_head_channels": 8, "conditioning_channels": [8]}


def literal(value) -> str:
    """A command-line value as MONAI's fire CLI reads it (booleans as Python literals, lists as JSON)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


@contextlib.contextmanager
def repository_layout(*names: str):
    """A temporary folder holding ``bundles/<name>/configs`` copies, as the working directory; yields its path."""
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            shutil.copytree(REPO / "bundles" / name / "configs", Path(tmp, "bundles", name, "configs"))
        previous = os.getcwd()
        os.chdir(tmp)
        try:
            yield Path(tmp)
        finally:
            os.chdir(previous)


def cli(run_id: str, config: str, **overrides) -> str:
    """``python -m monai.bundle run <run_id> --config_file <config>`` in the working directory; returns its output."""
    command = [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", config]
    for key, value in overrides.items():
        command += [f"--{key}", literal(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, check=False, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return result.stdout + result.stderr


def workflow(config: str | list[str], workflow_type: str, **overrides) -> ConfigWorkflow:
    """A config run in-process from the working directory (metadata and logging found beside the config)."""
    wf = ConfigWorkflow(config_file=config, workflow_type=workflow_type, **overrides)
    wf.initialize()
    return wf


def run(config: str | list[str], workflow_type: str, **overrides) -> ConfigWorkflow:
    wf = workflow(config, workflow_type, **overrides)
    wf.run()
    wf.finalize()
    return wf


def scalars(runs: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard shows for the event files in ``runs``: ``{tag: [(step, value), ...]}``."""
    accumulator = EventAccumulator(str(runs))
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


class RepoRootCases:
    """Assertions shared by the bundles; mixed into a ``unittest.TestCase``."""

    def assert_bundle_root(self, config: str, name: str) -> None:
        wf = ConfigWorkflow(config_file=config, workflow_type="infer")
        self.assertEqual(wf.parser.get_parsed_content("bundle_root"), f"bundles/{name}")

    def assert_loss_logged(self, runs: Path, console: str, iterations: int, tag: str = "train_loss") -> dict:
        """TensorBoard has ``tag`` at steps 1..iterations, finite, equal to the console's 4-decimal values."""
        logged = scalars(runs)
        self.assertIn(tag, logged)
        steps, values = zip(*logged[tag])
        self.assertEqual(list(steps), list(range(1, iterations + 1)))
        self.assertTrue(all(math.isfinite(v) and v > 0 for v in values), values)
        printed = [float(v) for v in re.findall(rf"{tag}: ([0-9.]+)", console)]
        if printed:  # the console handler prints the same loss (StatsHandler; CellCascade logs every log_interval)
            np.testing.assert_allclose(printed, [round(v, 4) for v in values[: len(printed)]], atol=1.5e-4)
        return logged


class TestECSDFromRepoRoot(RepoRootCases, unittest.TestCase):
    def test_train_inference_evaluate(self):
        with repository_layout("ecsd") as tmp:
            configs, root = "bundles/ecsd/configs", tmp / "bundles" / "ecsd"
            self.assert_bundle_root(f"{configs}/train.json", "ecsd")
            console = cli("training", f"{configs}/train.json", epochs=1, val_interval=1, **ECSD)
            self.assertEqual(len(list((root / "demo_data" / "imagesTr").iterdir())), 4)  # the demo set, made there
            self.assertTrue((root / "models" / "model.pt").is_file())
            # 3 training images (1 held out for validation), batch 2: 2 iterations; one validation
            logged = self.assert_loss_logged(root / "outputs" / "train" / "runs", console, iterations=2)
            self.assertEqual([step for step, _ in logged["val_mean_dice"]], [1])
            best = re.search(r"best metric of val_mean_dice: ([0-9.e-]+)", (root / "outputs/train/train.log").read_text())
            self.assertAlmostEqual(logged["val_mean_dice"][0][1], float(best.group(1)), places=6)
            self.assert_bundle_root(f"{configs}/inference.json", "ecsd")
            run(f"{configs}/inference.json", "infer", **ECSD)
            masks = sorted(p.name for p in (root / "outputs" / "inference" / "masks").iterdir())
            self.assertEqual(masks, ["demo_000.tif", "demo_001.tif"])  # the 2 demo test images
            run([f"{configs}/inference.json", f"{configs}/evaluate.json"], "infer", **ECSD)
            metrics = json.loads((root / "outputs" / "evaluate" / "metrics.json").read_text())
            self.assertEqual(metrics["num_images"], 2)


class TestBIEDSNetFromRepoRoot(RepoRootCases, unittest.TestCase):
    def test_train_inference_evaluate(self):
        with repository_layout("biedsnet") as tmp:
            configs, root = "bundles/biedsnet/configs", tmp / "bundles" / "biedsnet"
            self.assert_bundle_root(f"{configs}/train.json", "biedsnet")
            console = cli("training", f"{configs}/train.json", epochs=2, val_interval=2, **BIEDSNET)
            self.assertTrue((root / "models" / "model.pt").is_file())
            # 3 training images, batch 4: 1 iteration per epoch; validation after epoch 2
            logged = self.assert_loss_logged(root / "outputs" / "train" / "runs", console, iterations=2)
            self.assertEqual([step for step, _ in logged["val_mean_dice"]], [2])
            self.assert_bundle_root(f"{configs}/inference.json", "biedsnet")
            infer = {**BIEDSNET, "num_inference_steps": 2, "num_samples": 2}
            run(f"{configs}/inference.json", "infer", **infer)
            masks = sorted(p.name for p in (root / "outputs" / "inference" / "masks").iterdir())
            self.assertEqual(masks, ["demo_000.tif", "demo_000_uncertainty.tif", "demo_001.tif",
                                     "demo_001_uncertainty.tif"])
            run([f"{configs}/inference.json", f"{configs}/evaluate.json"], "infer", **infer)
            metrics = json.loads((root / "outputs" / "evaluate" / "metrics.json").read_text())
            self.assertEqual(metrics["num_images"], 2)


class TestNeuroDiffFromRepoRoot(RepoRootCases, unittest.TestCase):
    def test_remodel_train_synthesize(self):
        with repository_layout("neurodiff") as tmp:
            configs, root = "bundles/neurodiff/configs", tmp / "bundles" / "neurodiff"
            for config in ("train.json", "inference.json", "remodel.json"):
                self.assert_bundle_root(f"{configs}/{config}", "neurodiff")
            run(f"{configs}/remodel.json", "infer", place=False)
            conditions = sorted((root / "outputs" / "remodel" / "conditionsTr").iterdir())
            self.assertEqual(len(conditions), 2)  # one remodelled copy of each of the 2 demo training volumes
            console = cli("training", f"{configs}/train.json", num_steps=2, accumulation_steps=1, epoch_length=2,
                          **NEURODIFF)
            self.assertTrue((root / "models" / "model.pt").is_file())
            self.assert_loss_logged(root / "outputs" / "train" / "runs", console, iterations=2)
            run(f"{configs}/inference.json", "infer", num_inference_steps=2, **NEURODIFF)
            self.assertEqual(sorted(p.name for p in (root / "outputs" / "remodel" / "imagesTr").iterdir()),
                             [p.name for p in conditions])

    def test_segment_train_and_segment(self):
        with repository_layout("neurodiff") as tmp:
            configs, root = "bundles/neurodiff/configs", tmp / "bundles" / "neurodiff"
            for config in ("segment_train.json", "segment.json"):
                self.assert_bundle_root(f"{configs}/{config}", "neurodiff")
            console = cli("training", f"{configs}/segment_train.json", num_steps=2, epoch_length=2,
                          **NEURODIFF_SEGMENT)
            self.assertTrue((root / "models" / "segmentation" / "model.pt").is_file())
            self.assert_loss_logged(root / "outputs" / "segment_train" / "runs", console, iterations=2)
            run(f"{configs}/segment.json", "infer", filters=NEURODIFF_SEGMENT["filters"], block_shape=[8, 32, 32],
                context=[2, 16, 16], progress=False)
            labels = list((root / "outputs" / "segment").rglob("*.tif"))
            self.assertTrue(labels, list((root / "outputs" / "segment").rglob("*")))


class TestCellCascadeFromRepoRoot(RepoRootCases, unittest.TestCase):
    def test_train_masks(self):
        with repository_layout("cellcascade") as tmp:
            configs, root = "bundles/cellcascade/configs", tmp / "bundles" / "cellcascade"
            for config in ("train_masks.json", "train_texture.json", "segment_train.json", "inference.json"):
                self.assert_bundle_root(f"{configs}/{config}", "cellcascade")
            console = cli("training", f"{configs}/train_masks.json", num_steps=2, epoch_length=2, batch_size=2,
                          **CELLCASCADE)
            self.assertTrue((root / "models" / "masks" / "model.pt").is_file())
            self.assert_loss_logged(root / "outputs" / "train_masks" / "runs", console, iterations=2)


if __name__ == "__main__":
    unittest.main()
