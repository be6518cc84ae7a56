"""End-to-end runs of the ECSD bundle (train a few iterations, infer, evaluate) on real data and on the demo data."""

from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from ignite.engine import Events
from monai.bundle import ConfigWorkflow

import bundle_testing
from bundle_testing import REPO, BadInputCases, convert, shared_data_or_skip
from emdiff_components.data import read_image, read_voxel_size

BUNDLE = REPO / "bundles" / "ecsd"
CONFIGS = BUNDLE / "configs"

# small but real: tiny width, 2 sampler steps, 64 x 64 patches
FAST = {
    "channels": [8, 16, 32, 64],
    "attention_heads": 1,
    "attention_head_channels": 8,
    "filter_size": [64, 64],
    "patch_size": [64, 64],
    "use_checkpointing": False,
    "num_inference_steps": 2,
    "progress": False,
}


def _case_file(folder: Path, name: str) -> Path:
    return next(p for p in folder.iterdir() if p.name.split(".")[0] == name)


def dice_from_files(metrics: dict, masks: Path, labels: Path, num_classes: int) -> list[list[float]]:
    """Per slice and class, Dice ``2 |P & G| / (|P| + |G|)`` (1 when both are empty) of the written mask files."""
    rows = []
    for entry in metrics["per_image"]:
        pred, truth = (read_image(_case_file(folder, entry["name"])) for folder in (masks, labels))
        if truth.ndim == 3:
            pred, truth = pred[entry["slice"]], truth[entry["slice"]]
        if num_classes == 2:
            pred, truth = pred > 0, truth > 0
        row = []
        for c in range(num_classes):
            p, g = pred == c, truth == c
            total = int(p.sum() + g.sum())
            row.append(1.0 if total == 0 else 2 * int((p & g).sum()) / total)
        rows.append(row)
    return rows


def workflow(config: str | list[str], workflow_type: str, **override) -> ConfigWorkflow:
    return bundle_testing.workflow(CONFIGS, config, workflow_type, **override)


def run(config, workflow_type: str, **override) -> ConfigWorkflow:
    return bundle_testing.run(CONFIGS, config, workflow_type, **override)


class TestECSDBundleConfigs(unittest.TestCase):
    def test_properties(self):
        bundle_testing.assert_properties(self, CONFIGS, FAST)

    def test_shared_ids_are_identical(self):
        bundle_testing.assert_shared_ids(
            self, CONFIGS,
            ["network_def", "diffusion_scheduler", "intensity", "num_classes", "class_names", "patch_size", "channels",
             "attention_heads", "attention_head_channels", "filter_size",
             "use_checkpointing", "num_train_timesteps", "num_inference_steps", "sampler", "device", "demo_dir",
             "dataset_dir", "dataset_root", "imports"],
        )

    def test_overlays_resolve(self):
        """The overlays only name ids that exist in the configs they extend (multi-GPU runs: test_multi_gpu.py)."""
        from monai.bundle import ConfigParser

        for base, overlay in (("train.json", "multi_gpu_train.json"), ("train.json", "cold_segdiff.json"),
                              ("inference.json", "evaluate.json")):
            parser = ConfigParser()
            parser.read_config([str(CONFIGS / base), str(CONFIGS / overlay)])
            base_parser = ConfigParser()
            base_parser.read_config(str(CONFIGS / base))
            for key in json.loads((CONFIGS / overlay).read_text()):
                if key.startswith("_"):
                    continue
                parent = key.rsplit("#", 1)[0] if "#" in key else ""
                self.assertTrue(parent == "" or parent in base_parser, f"{overlay}: {key} has no parent in {base}")
                self.assertIn(key, parser)
        parser = ConfigParser()
        parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "cold_segdiff.json")])
        self.assertFalse(parser["use_boundary_loss"])

    def test_demo_overlay_is_shared(self):
        """demo.json serves train, inference and inference + evaluate: it names only the configs' own ids (inference
        lacks just the training schedule), and with it the three build the same network and sampler, so the demo's
        model loads in every command given the overlay; the demo script passes it and nothing else."""
        from monai.bundle import ConfigParser

        demo = {k: v for k, v in json.loads((CONFIGS / "demo.json").read_text()).items() if not k.startswith("_")}
        training_only = {"epochs", "learning_rate", "val_interval"}
        built = {}
        for files in (["train.json"], ["inference.json"], ["inference.json", "evaluate.json"]):
            base = ConfigParser()
            base.read_config([str(CONFIGS / f) for f in files])
            expected = set(demo) - (set() if files == ["train.json"] else training_only)
            self.assertEqual({k for k in demo if k in base}, expected, files)
            parser = ConfigParser()
            parser.read_config([str(CONFIGS / f) for f in [*files, "demo.json"]])
            args = {k: parser.get_parsed_content(f"network_def#{k}") for k in parser["network_def"] if k != "_target_"}
            sampler = {k: parser.get_parsed_content(k) for k in ("num_inference_steps", "patch_size", "sampler")}
            network = parser.get_parsed_content("network_def")
            built[tuple(files)] = (args, sampler, {k: tuple(v.shape) for k, v in network.state_dict().items()})
        (train, infer, evaluate) = built.values()
        self.assertEqual(train, infer)
        self.assertEqual(train, evaluate)
        self.assertEqual(train[0]["channels"], [32, 64, 128, 256])
        self.assertEqual((train[0]["filter_size"], train[1]["num_inference_steps"]), ([96, 96], 10))
        commands = [line for line in (REPO / "scripts" / "demo_ecsd.sh").read_text().splitlines()
                    if line.startswith("python -m monai.bundle run")]
        self.assertEqual(len(commands), 3)
        for line in commands:
            self.assertIn("$configs/demo.json']\"", line)
            self.assertNotIn(" --", line.split("--config_file")[1])  # no setting outside the overlay

    def test_metadata_verifies_offline(self):
        bundle_testing.assert_metadata_verifies(self, CONFIGS)


class TestECSDBundleEndToEnd(unittest.TestCase):
    def _train_infer_evaluate(self, dataset: Path | None, root: Path, **extra) -> dict:
        common = {**FAST, "bundle_root": str(root), **extra}
        if dataset is not None:
            common["dataset_dir"] = str(dataset)
        data = dataset if dataset is not None else root / "demo_data"
        run("train.json", "train", epochs=1, val_interval=1, **common)
        self.assertTrue((root / "models" / "model.pt").is_file())
        self.assertTrue((root / "models" / "checkpoint.pt").is_file())
        self.assertTrue((root / "outputs" / "train" / "validation.png").is_file())
        self.assertTrue((root / "outputs" / "train" / "train.log").is_file())
        run("inference.json", "infer", **common)
        run(["inference.json", "evaluate.json"], "infer", **common)
        metrics = json.loads((root / "outputs" / "evaluate" / "metrics.json").read_text())
        self.assertTrue((root / "outputs" / "evaluate" / "metrics.csv").is_file())
        self.assertTrue((root / "outputs" / "evaluate" / "figure.png").is_file())
        # the reported Dice is that of the mask files written, recomputed here with numpy against the truth files
        num_classes = extra.get("num_classes", 2)
        expected = dice_from_files(metrics, root / "outputs" / "evaluate" / "masks", data / "labelsTs", num_classes)
        reported = [[entry["dice"][c] for c in metrics["classes"]] for entry in metrics["per_image"]]
        np.testing.assert_allclose(reported, expected, rtol=1e-9, atol=1e-12)
        self.assertAlmostEqual(metrics["mean_dice"], float(np.mean([row[1:] for row in expected])), places=9)
        return metrics

    def test_isbi_mitochondria(self):
        shared_data_or_skip(self)
        with tempfile.TemporaryDirectory() as tmp:
            data = convert("isbi_mito", Path(tmp) / "data")
            metrics = self._train_infer_evaluate(data, Path(tmp) / "bundle", train_slices="0-3")
            self.assertEqual(metrics["num_images"], 6)  # slices 24-29
            self.assertEqual(metrics["classes"], ["background", "foreground"])
            masks = list((Path(tmp) / "bundle" / "outputs" / "inference" / "masks").iterdir())
            self.assertEqual(len(masks), 1)
            stack = tifffile.imread(masks[0])
            source = tifffile.imread(next((data / "imagesTs").iterdir()))
            self.assertEqual(stack.shape, source.shape)  # a stack in, a stack out
            self.assertTrue(set(np.unique(stack)) <= {0, 1})

    def test_sstem_multiclass(self):
        shared_data_or_skip(self)
        with tempfile.TemporaryDirectory() as tmp:
            data = convert("sstem", Path(tmp) / "data")
            labels = tifffile.imread(next((data / "labelsTr").iterdir()))
            k = int(labels.max()) + 1
            metrics = self._train_infer_evaluate(
                data, Path(tmp) / "bundle", num_classes=k, class_names=[f"c{i}" for i in range(k)], train_slices="0-1"
            )
            self.assertEqual(len(metrics["classes"]), k)  # per-class Dice checked against the files above

    def test_demo_data_and_resume(self):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            metrics = self._train_infer_evaluate(None, root)
            # one file given with --input: its mask, in its format and shape
            single = sorted((root / "demo_data" / "imagesTs").iterdir())[0]
            run("inference.json", "infer", bundle_root=str(root), input=str(single), output_dir=str(root / "single"), **FAST)
            mask = tifffile.imread(root / "single" / "masks" / single.name)
            self.assertEqual(mask.shape, tifffile.imread(single).shape)
            readme = (root / "demo_data" / "README.txt").read_text().splitlines()[0]
            self.assertIn("SYNTHETIC", readme.upper())
            self.assertGreater(metrics["num_images"], 0)
            # a second training run with more epochs resumes from the saved epoch instead of starting over
            wf = workflow("train.json", "train", epochs=2, val_interval=5, bundle_root=str(root), **FAST)
            wf.initialize()
            iterations = []
            wf.trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: iterations.append(e.state.epoch))
            wf.run()
            per_epoch = len(wf.parser.get_parsed_content("train#dataloader"))
            self.assertEqual(iterations, [2] * per_epoch)  # only epoch 2 ran
            self.assertEqual(wf.trainer.state.iteration, 2 * per_epoch)


class TestECSDMrcInput(unittest.TestCase):
    def test_isbi_as_mrc(self):
        """An MRC stack (ISBI 2012 as IMOD's tif2mrc writes it: bottom row first, 4 x 4 x 50 nm) given with --input:
        the mask is an MRC of the same shape and voxel size, and lines up with the TIFF (read top row first)."""
        mrcfile = pytest.importorskip("mrcfile")
        shared = shared_data_or_skip(self)
        volume = tifffile.imread(shared / "isbi2012_em" / "train-volume.tif")[:2, :64, :64]
        with tempfile.TemporaryDirectory() as tmp:
            root, path = Path(tmp), Path(tmp) / "isbi.mrc"
            with mrcfile.new(str(path)) as handle:
                handle.set_data(np.ascontiguousarray(volume[:, ::-1, :]).astype(np.int16))
                handle.voxel_size = (40.0, 40.0, 500.0)  # angstrom
            wf = workflow("inference.json", "infer", bundle_root=str(root), input=str(path), **FAST)
            (root / "models").mkdir()
            torch.save(wf.parser.get_parsed_content("network_def").state_dict(), root / "models" / "model.pt")
            wf.initialize()
            entry = wf.parser.get_parsed_content("datalist")[1]
            loaded = wf.parser.get_parsed_content("load_image")(entry)
            np.testing.assert_array_equal(loaded["image"][0], volume[1])  # the slice as the TIFF shows it
            wf.run()
            wf.finalize()
            with mrcfile.open(str(root / "outputs" / "inference" / "masks" / "isbi.mrc")) as mask:
                self.assertEqual(mask.data.shape, (2, 64, 64))
                np.testing.assert_allclose([mask.voxel_size[a] for a in "xyz"], (40.0, 40.0, 500.0), rtol=1e-6)
                self.assertTrue(set(np.unique(mask.data)) <= {0, 1})
            np.testing.assert_allclose(read_voxel_size(root / "outputs" / "inference" / "masks" / "isbi.mrc"),
                                       (50.0, 4.0, 4.0), rtol=1e-6)


class TestECSDBundleBadInput(BadInputCases, unittest.TestCase):
    CONFIGS, FAST, NETWORK = CONFIGS, FAST, "ECSDUNet"


if __name__ == "__main__":
    unittest.main()
