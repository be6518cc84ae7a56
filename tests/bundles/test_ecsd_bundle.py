"""End-to-end runs of the ECSD bundle (train a few iterations, infer, evaluate) on real data and on the demo data."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import tifffile
import torch
from ignite.engine import Events
from monai.bundle import ConfigWorkflow

from emdiff_components.data import DatasetError
from emdiff_components.engines import CheckpointError

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "ecsd"
CONFIGS = BUNDLE / "configs"
SHARED = Path(os.environ.get("EMDIFF_SHARED_DATA", REPO.parent / "shared" / "data"))

# small but real: tiny width, 2 sampler steps, 64 x 64 patches
FAST = {
    "channels": 8,
    "patch_size": [64, 64],
    "use_checkpointing": False,
    "num_inference_steps": 2,
    "progress": False,
}


def shared_data_or_skip(test: unittest.TestCase) -> Path:
    if SHARED.is_dir():
        return SHARED
    if os.environ.get("CI") == "true":
        test.fail(f"shared data folder {SHARED} is missing (set EMDIFF_SHARED_DATA)")
    test.skipTest(f"shared data folder {SHARED} is missing")


def convert(name: str, out_dir: Path) -> Path:
    spec = importlib.util.spec_from_file_location("convert_shared_data", REPO / "scripts" / "convert_shared_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Path(module.convert(name, out_dir, shared_dir=SHARED))


def workflow(config: str | list[str], workflow_type: str, **override) -> ConfigWorkflow:
    files = [str(CONFIGS / c) for c in ([config] if isinstance(config, str) else config)]
    wf = ConfigWorkflow(
        config_file=files, meta_file=str(CONFIGS / "metadata.json"), logging_file=str(CONFIGS / "logging.conf"),
        workflow_type=workflow_type, **override,
    )
    return wf


def run(config, workflow_type: str, **override) -> ConfigWorkflow:
    wf = workflow(config, workflow_type, **override)
    wf.initialize()
    wf.run()
    wf.finalize()
    return wf


class TestECSDBundleConfigs(unittest.TestCase):
    def test_properties(self):
        with tempfile.TemporaryDirectory() as tmp:
            wf = workflow("train.json", "train", bundle_root=tmp, **FAST)
            wf.initialize()
            self.assertEqual(wf.check_properties(), [])
            (Path(tmp) / "models").mkdir(exist_ok=True)
            torch.save(wf.parser.get_parsed_content("network_def").state_dict(), Path(tmp) / "models" / "model.pt")
            for config in ("inference.json", ["inference.json", "evaluate.json"]):
                wf = workflow(config, "infer", bundle_root=tmp, **FAST)
                wf.initialize()
                self.assertEqual(wf.check_properties(), [], config)

    def test_shared_ids_are_identical(self):
        train = json.loads((CONFIGS / "train.json").read_text())
        infer = json.loads((CONFIGS / "inference.json").read_text())
        for key in ("network_def", "diffusion_scheduler", "num_classes", "class_names", "patch_size", "channels",
                    "num_train_timesteps", "num_inference_steps", "sampler", "device", "demo_dir", "dataset_dir",
                    "dataset_root", "imports"):
            self.assertEqual(train[key], infer[key], key)
        self.assertEqual(train["train"]["deterministic_transforms"][1], infer["preprocessing"]["transforms"][1])

    def test_overlays_resolve(self):
        """The overlays only name ids that exist in the configs they extend (multi-GPU itself needs GPUs to run)."""
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

    def test_metadata_verifies_offline(self):
        schema = REPO.parent / "shared" / "schema" / "meta_schema_20240725.json"
        if not schema.is_file():
            self.skipTest("no local copy of the MONAI meta schema")
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(schema, Path(tmp) / "schema.json")
            result = subprocess.run(
                [sys.executable, "-m", "monai.bundle", "verify_metadata", "--meta_file", str(CONFIGS / "metadata.json"),
                 "--filepath", str(Path(tmp) / "schema.json")],
                capture_output=True, text=True,
            )
            self.assertEqual(result.returncode, 0, result.stderr[-2000:])
            self.assertIn("metadata is verified", result.stdout + result.stderr)


class TestECSDBundleEndToEnd(unittest.TestCase):
    def _train_infer_evaluate(self, dataset: Path | None, root: Path, **extra) -> dict:
        common = {**FAST, "bundle_root": str(root), **extra}
        if dataset is not None:
            common["dataset_dir"] = str(dataset)
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
            self.assertEqual(len(metrics["classes"]), k)
            for entry in metrics["per_image"]:
                for value in entry["dice"].values():
                    self.assertTrue(0.0 <= value <= 1.0)

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


class TestECSDBundleBadInput(unittest.TestCase):
    def _layout(self, root: Path, image_shape=(32, 32), label_shape=(32, 32), label_value=1) -> Path:
        for split in ("imagesTr", "labelsTr"):
            (root / split).mkdir(parents=True)
        tifffile.imwrite(root / "imagesTr" / "a.tif", np.zeros(image_shape, np.uint8))
        label = np.zeros(label_shape, np.uint8)
        label[:4, :4] = label_value
        tifffile.imwrite(root / "labelsTr" / "a.tif", label)
        return root

    def _initialize_train(self, dataset: Path, root: Path):
        wf = workflow("train.json", "train", bundle_root=str(root), dataset_dir=str(dataset), epochs=1, **FAST)
        wf.initialize()
        return wf

    def assert_fails_before_training(self, dataset: Path, root: Path, error: type, pattern: str) -> None:
        """MONAI wraps config errors in a RuntimeError; the cause is ours and names the file and the problem."""
        with self.assertRaises(Exception) as ctx:
            self._initialize_train(dataset, root).run()
        cause = _find_cause(ctx.exception, error)
        self.assertIsInstance(cause, error)
        self.assertRegex(str(cause), pattern)
        self.assertFalse((root / "models" / "checkpoint.pt").exists())

    def test_empty_folder(self):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "data" / "imagesTr").mkdir(parents=True)
            self.assert_fails_before_training(Path(tmp) / "data", Path(tmp), DatasetError, "imagesTr.*empty|empty.*imagesTr")

    def test_shape_mismatch(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = self._layout(Path(tmp) / "data", label_shape=(32, 30))
            self.assert_fails_before_training(data, Path(tmp), DatasetError, r"a\.tif.*\(32, 32\).*\(32, 30\)")

    def test_label_outside_classes(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = self._layout(Path(tmp) / "data", label_value=7)
            self.assert_fails_before_training(data, Path(tmp), DatasetError, r"a\.tif.*\[7\]")

    def test_unreadable_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = self._layout(Path(tmp) / "data")
            (data / "imagesTr" / "a.tif").write_bytes(b"not a tiff")
            self.assert_fails_before_training(data, Path(tmp), DatasetError, r"imagesTr/a\.tif")

    def test_wrong_checkpoint(self):
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = Path(tmp) / "other.pt"
            torch.save(torch.nn.Linear(3, 3).state_dict(), ckpt)
            wf = workflow("inference.json", "infer", bundle_root=tmp, ckpt_path=str(ckpt), **FAST)
            with self.assertRaises(Exception) as ctx:
                wf.initialize()
            cause = _find_cause(ctx.exception, CheckpointError)
            self.assertIsInstance(cause, CheckpointError)
            self.assertRegex(str(cause), "other.pt.*does not fit ECSDUNet")


def _find_cause(err: BaseException | None, kind: type) -> BaseException | None:
    """The first exception of ``kind`` in the chain of causes (MONAI wraps config errors in RuntimeError)."""
    while err is not None and not isinstance(err, kind):
        err = err.__cause__ or err.__context__
    return err


if __name__ == "__main__":
    unittest.main()
