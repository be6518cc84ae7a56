"""End-to-end runs of the NeuroDiff bundle (train, remodel, synthesize, evaluate) on real volumes, and bad input."""

from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

import h5py
import numpy as np
import tifffile
import torch
from monai.bundle import ConfigParser, ConfigWorkflow

import bundle_testing
from bundle_testing import REPO, find_cause, shared_data_or_skip
from emdiff_components.data import DatasetError, read_image, write_image, write_volume_case, write_volume_dataset_json
from emdiff_components.transforms import MitochondriaLibrary

BUNDLE = REPO / "bundles" / "neurodiff"
CONFIGS = BUNDLE / "configs"

# small but real: a narrow network, 4 x 64 x 64 patches, 2 training iterations, 2 DDIM steps
FAST = {
    "channels": [8, 16, 16, 32, 32, 64, 64],
    "time_channels": 16,
    "norm_num_groups": 8,
    "msc_channels": [8, 8, 16, 16],
    "patch_size": [4, 64, 64],
    "num_steps": 2,
    "accumulation_steps": 1,
    "epoch_length": 2,
    "sampler": "ddim",
    "num_inference_steps": 2,
    "progress": False,
}


def workflow(config, workflow_type: str, **override) -> ConfigWorkflow:
    return bundle_testing.workflow(CONFIGS, config, workflow_type, **override)


def run(config, workflow_type: str, **override) -> ConfigWorkflow:
    return bundle_testing.run(CONFIGS, config, workflow_type, **override)


def crop_dataset(shared: Path, out: Path, which: str) -> Path:
    """A small real volume dataset in the layout: FIB-SEM neurons (10 nm, no mitochondria) or ISBI 2012 (+ mito)."""
    if which == "fibsem":
        folder = shared / "fibsem_medulla_neurons_neuroproof"
        image, label = tifffile.imread(folder / "raw.tif"), tifffile.imread(folder / "neuron_ids.tif")
        mito, voxel = None, (10.0, 10.0, 10.0)
    else:
        folder = shared / "isbi2012_em"
        image, membranes = tifffile.imread(folder / "train-volume.tif"), tifffile.imread(folder / "train-labels.tif")
        from emdiff_components.data import label_slices_2d

        label, mito, voxel = label_slices_2d(membranes > 0), tifffile.imread(folder / "train-mito.tif"), (50.0, 4.0, 4.0)
    # ISBI: a corner with whole mitochondria, so that the library built from this crop is not empty
    y, x = (224, 32) if which == "isbi" else (0, 0)
    box = (slice(0, 8), slice(y, y + 96), slice(x, x + 96))
    write_volume_case(out, "Tr", f"{which}_a", image[box], label[box], None if mito is None else mito[box])
    test_box = (slice(8, 16), slice(y, y + 96), slice(x, x + 96))
    write_volume_case(out, "Ts", f"{which}_b", image[test_box], label[test_box],
                      None if mito is None else mito[test_box])
    write_volume_dataset_json(out, which, voxel)
    return out


class TestNeuroDiffBundleConfigs(unittest.TestCase):
    def test_properties(self):
        bundle_testing.assert_properties(self, CONFIGS, FAST, prepare=lambda root: run("remodel.json", "infer", bundle_root=root, place=False))

    def test_paper_defaults(self):
        parser = ConfigParser()
        parser.read_config(str(CONFIGS / "train.json"))
        self.assertEqual(parser["num_train_timesteps"], 250)
        self.assertEqual(parser["patch_size"], [8, 512, 512])
        self.assertEqual((parser["learning_rate"], parser["batch_size"], parser["accumulation_steps"]), (1e-5, 1, 2))
        self.assertEqual((parser["ema_decay"], parser["ema_update_every"], parser["ema_start_step"]), (0.995, 10, 2000))
        self.assertEqual(parser["channels"], [32, 64, 64, 128, 128, 256, 256])
        self.assertEqual(parser["time_channels"], 64)
        # no random flips (neither the paper nor the public trainer): both RandFlipd stay, with probability 0
        self.assertEqual(parser["flip_prob"], 0.0)
        flips = [t for t in parser.get_parsed_content("train#random_transforms") if type(t).__name__ == "RandFlipd"]
        self.assertEqual([t.prob for t in flips], [0.0, 0.0])
        self.assertEqual(parser["num_steps"] * parser["accumulation_steps"],
                         parser.get_parsed_content("train#trainer#max_epochs") * parser["epoch_length"])
        remodel = ConfigParser()
        remodel.read_config(str(CONFIGS / "remodel.json"))
        self.assertEqual(remodel["seed"], 42)
        self.assertEqual(remodel["deformer"]["control_point_spacing"], [4, 20, 20])
        self.assertEqual((remodel["placer"]["num_largest"], remodel["placer"]["num_sampled"]), (20, 15))

    def test_shared_ids_are_identical(self):
        # one network definition (ids it names may differ: the voxel size comes from the data only in training)
        bundle_testing.assert_shared_ids(
            self, CONFIGS,
            ["network_def", "intensity", "patch_size", "num_train_timesteps", "channels", "time_channels",
             "num_res_blocks", "norm_num_groups", "msc_channels", "use_msc", "use_rgm", "use_checkpointing", "voxel_size",
             "device", "demo_dir", "dataset_dir", "dataset_root"],
            schedulers=[("diffusion_scheduler", "diffusion_scheduler")],
        )

    def test_table4_overlays(self):
        for overlay, off in (("msc_only.json", "use_rgm"), ("rgm_only.json", "use_msc")):
            for base in ("train.json", "inference.json"):
                parser = ConfigParser()
                parser.read_config([str(CONFIGS / base), str(CONFIGS / overlay)])
                self.assertFalse(parser[off])

    def test_overlays_resolve(self):
        """The overlays only name ids whose parents exist in the configs they extend (multi-GPU: test_multi_gpu.py)."""
        for base, overlay in (("train.json", "multi_gpu_train.json"), ("inference.json", "evaluate.json")):
            base_parser = ConfigParser()
            base_parser.read_config(str(CONFIGS / base))
            for key in json.loads((CONFIGS / overlay).read_text()):
                parent = key.rsplit("#", 1)[0] if "#" in key else ""
                self.assertTrue(parent == "" or parent in base_parser, f"{overlay}: {key} has no parent in {base}")
            parser = ConfigParser()
            parser.read_config([str(CONFIGS / base), str(CONFIGS / overlay)])
            for key in ("network_def", "intensity", "initialize"):
                self.assertIn(key, parser, f"{base} + {overlay} lacks {key}")

    def test_metadata_verifies_offline(self):
        bundle_testing.assert_metadata_verifies(self, CONFIGS)


class TestNeuroDiffBundleEndToEnd(unittest.TestCase):
    def _train_remodel_synthesize(self, data: Path, root: Path, **remodel_args) -> list[Path]:
        common = {**FAST, "bundle_root": str(root), "dataset_dir": str(data)}
        run("train.json", "train", **common)
        self.assertTrue((root / "models" / "model.pt").is_file())
        run("remodel.json", "infer", bundle_root=str(root), dataset_dir=str(data), **remodel_args)
        remodel = root / "outputs" / "remodel"
        conditions = sorted((remodel / "conditionsTr").iterdir())
        self.assertTrue(conditions)
        run("inference.json", "infer", **common)
        for condition in conditions:
            volume = read_image(condition)
            self.assertTrue(set(np.unique(volume)) <= {0, 1, 2})
            label = read_image(remodel / "labelsTr" / condition.name)
            synthesized = tifffile.imread(remodel / "imagesTr" / condition.name)
            self.assertEqual((synthesized.shape, synthesized.dtype), (volume.shape, np.uint8))
            self.assertEqual(label.shape, volume.shape)
            with h5py.File(remodel / "imagesTr_h5" / f"{condition.stem}.h5", "r") as handle:
                np.testing.assert_array_equal(handle["data"][()], synthesized)
        self.assertTrue((remodel / "synthesis.png").is_file())
        run(["inference.json", "evaluate.json"], "infer", **common)
        metrics = (root / "outputs" / "evaluate" / "metrics.csv").read_text()
        self.assertIn("mean_absolute_error", metrics)
        return conditions

    def test_fibsem_neurons_with_a_foreign_mitochondria_library(self):
        shared = shared_data_or_skip(self)
        with tempfile.TemporaryDirectory() as tmp:
            data = crop_dataset(shared, Path(tmp) / "fibsem", "fibsem")
            # FIB-SEM has no mitochondria masks: the library comes from ISBI 2012's
            library = MitochondriaLibrary.from_volumes([tifffile.imread(shared / "isbi2012_em" / "train-mito.tif")])
            library.save(Path(tmp) / "library.npz")
            conditions = self._train_remodel_synthesize(
                data, Path(tmp) / "bundle", library_path=str(Path(tmp) / "library.npz"), copies=2
            )
            self.assertEqual(len(conditions), 2)

    def test_isbi_stack_with_its_own_mitochondria(self):
        shared = shared_data_or_skip(self)
        with tempfile.TemporaryDirectory() as tmp:
            data = crop_dataset(shared, Path(tmp) / "isbi", "isbi")
            root = Path(tmp) / "bundle"
            self._train_remodel_synthesize(data, root)
            self.assertTrue((root / "outputs" / "remodel" / "mito_library.npz").is_file())
            summary = json.loads((root / "outputs" / "remodel" / "dataset.json").read_text())
            self.assertEqual(summary["voxel_size"], [50.0, 4.0, 4.0])


class TestNeuroDiffBundleBadInput(unittest.TestCase):
    def _fails(self, config, workflow_type, error, pattern, run_too=False, **override):
        with self.assertRaises(Exception) as ctx:
            wf = workflow(config, workflow_type, **{**FAST, **override})
            wf.initialize()
            if run_too:
                wf.run()
        cause = find_cause(ctx.exception, error)
        self.assertIsInstance(cause, error)
        self.assertRegex(str(cause), pattern)

    def test_label_and_image_of_different_shapes(self):
        with tempfile.TemporaryDirectory() as tmp:
            write_volume_case(tmp, "Tr", "v", np.zeros((8, 64, 64), np.uint8), np.ones((8, 64, 64), np.uint32))
            tifffile.imwrite(Path(tmp, "labelsTr", "v.tif"), np.ones((8, 64, 60), np.uint32))
            write_volume_dataset_json(tmp, "bad", (29, 6, 6))
            self._fails("train.json", "train", DatasetError, r"v\.tif.*\(8, 64, 64\).*\(8, 64, 60\)", run_too=True,
                        bundle_root=tmp, dataset_dir=tmp)

    def test_volume_smaller_than_the_patch(self):
        with tempfile.TemporaryDirectory() as tmp:
            write_volume_case(tmp, "Tr", "v", np.zeros((2, 64, 64), np.uint8), np.ones((2, 64, 64), np.uint32))
            write_volume_dataset_json(tmp, "bad", (29, 6, 6))
            self._fails("train.json", "train", DatasetError, r"v\.tif.*\(2, 64, 64\)", run_too=True,
                        bundle_root=tmp, dataset_dir=tmp)

    def test_condition_with_other_values(self):
        with tempfile.TemporaryDirectory() as tmp:
            condition = Path(tmp, "cond.tif")
            write_image(condition, np.full((4, 64, 64), 3, np.uint8))
            network = workflow("inference.json", "infer", bundle_root=tmp, **FAST).parser.get_parsed_content("network_def")
            Path(tmp, "models").mkdir()
            torch.save(network.state_dict(), Path(tmp, "models", "model.pt"))
            self._fails("inference.json", "infer", DatasetError, r"cond\.tif' has values \[3\]", run_too=True,
                        bundle_root=tmp, input=str(condition))
