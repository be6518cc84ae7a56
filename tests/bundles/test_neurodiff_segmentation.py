"""NeuroDiff downstream segmentation configs: train (real + synthetic), segment, evaluate on the FIB-SEM neurons,
the generator's 3D-FID, and bad input."""

from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

import bundle_testing
import numpy as np
import tifffile
import torch
from bundle_testing import REPO, find_cause, shared_data_or_skip
from monai.bundle import ConfigParser

from emdiff_components.data import (
    DatasetError,
    open_volume,
    read_image,
    read_voxel_size,
    write_volume_case,
    write_volume_dataset_json,
)
from emdiff_components.metrics import instance_scores
from emdiff_components.networks import SuperhumanUNet

CONFIGS = REPO / "bundles" / "neurodiff" / "configs"
# small but real: a narrow Superhuman U-Net, 8 x 64 x 64 crops, 2 iterations of batch 2
FAST = {"filters": [4, 6, 8, 10, 12], "patch_size": [8, 64, 64], "num_steps": 2, "epoch_length": 2}
SEGMENT = {"filters": FAST["filters"], "block_shape": [8, 32, 32], "context": [2, 16, 16], "progress": False}


def run(config, workflow_type: str, **override):
    return bundle_testing.run(CONFIGS, config, workflow_type, **override)


def fibsem(out: Path, name: str, box, split: str = "Tr") -> Path:
    shared = shared_data_or_skip(unittest.TestCase())
    folder = shared / "fibsem_medulla_neurons_neuroproof"
    image, label = tifffile.imread(folder / "raw.tif")[box], tifffile.imread(folder / "neuron_ids.tif")[box]
    write_volume_case(out, split, name, image, label)
    write_volume_dataset_json(out, "fibsem", (10.0, 10.0, 10.0))
    return out


class TestSegmentationConfigs(unittest.TestCase):
    def test_properties_and_paper_defaults(self):
        with tempfile.TemporaryDirectory() as tmp:
            wf = bundle_testing.workflow(CONFIGS, "segment_train.json", "train", bundle_root=tmp, **FAST)
            wf.initialize()
            self.assertEqual(wf.check_properties(), [])
        parser = ConfigParser()
        parser.read_config(str(CONFIGS / "segment_train.json"))
        self.assertEqual(parser["patch_size"], [16, 160, 160])
        self.assertEqual((parser["learning_rate"], parser["batch_size"]), (1e-4, 2))
        self.assertEqual(parser["filters"], [28, 36, 48, 64, 80])
        self.assertEqual((parser["synthetic_ratio"], parser["label_fraction"]), (0.5, 1.0))
        self.assertTrue(parser["class_balance"])
        segment = ConfigParser()
        segment.read_config(str(CONFIGS / "segment.json"))
        self.assertEqual(segment["watershed"], {"threshold": 0.25, "sigma_seeds": 2.0})
        self.assertEqual(segment["agglomeration"]["waterz"], {"threshold": 0.3})
        self.assertEqual(segment["agglomeration"]["multicut"], {"beta": 0.25})
        # the network seen in inference is the one trained (house rule 10)
        train = json.loads((CONFIGS / "segment_train.json").read_text())
        infer = json.loads((CONFIGS / "segment.json").read_text())
        for key in ("network_def", "filters", "intensity_range", "patch_size"):
            self.assertEqual(train[key], infer[key], key)
        # block + 2 context is the training crop, the public inference's grid
        self.assertEqual([b + 2 * c for b, c in zip(segment["block_shape"], segment["context"])], segment["patch_size"])


class TestSegmentationEndToEnd(unittest.TestCase):
    def test_real_plus_synthetic_train_segment_evaluate(self):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            data = fibsem(tmp / "data", "medulla_a", (slice(0, 12), slice(0, 96), slice(0, 96)))
            fibsem(data, "medulla_b", (slice(40, 48), slice(100, 196), slice(100, 196)), split="Ts")
            # any folder of image / label pairs serves as the synthetic set (here another region of the stack)
            synthetic = fibsem(tmp / "synthetic", "synth_a", (slice(20, 32), slice(120, 216), slice(120, 216)))
            root = tmp / "bundle"
            wf = run("segment_train.json", "train", bundle_root=str(root), dataset_dir=str(data),
                     synthetic_dir=str(synthetic), label_fraction=0.25, **FAST)
            sampler = wf.parser.get_parsed_content("train#sampler")
            self.assertEqual(sampler.weights.tolist(), [0.5, 0.5])
            cached = wf.parser.get_parsed_content("train#dataset")._cache  # deterministic part: 0.25 of 12 sections
            self.assertEqual([c["image"].shape[1] for c in cached], [8, 12])  # 3 kept, reflect-padded to the crop 8
            state = torch.load(root / "models" / "segmentation" / "checkpoint.pt", weights_only=False)
            self.assertEqual(state["trainer"]["iteration"], 2)
            run(["segment.json", "segment_evaluate.json"], "infer", bundle_root=str(root), dataset_dir=str(data),
                **SEGMENT)
            out = root / "outputs" / "segment_evaluate"
            with open_volume(out / "affinities" / "medulla_b.h5") as affs:
                self.assertEqual((affs.shape, affs.dtype), ((3, 8, 96, 96), np.float32))
            truth = read_image(data / "labelsTs" / "medulla_b.tif")
            for method in ("waterz", "multicut"):
                labels = read_image(out / method / "medulla_b.tif")
                self.assertEqual(labels.shape, truth.shape)
                self.assertEqual(read_voxel_size(out / method / "medulla_b.tif"), (10.0, 10.0, 10.0))
                stored = json.loads((out / method / "instance_metrics.json").read_text())
                recomputed = instance_scores(labels, truth)
                for metric in ("vi_split", "vi_merge", "arand"):
                    self.assertAlmostEqual(stored["per_volume"][0][metric], recomputed[metric], places=9)
                self.assertIn("medulla_b", (out / method / "instance_metrics.csv").read_text())
                figure = read_image(out / method / "figure.png")
                self.assertGreater(figure.shape[1], 3 * 96)  # EM | truth | segmentation

    def test_generator_evaluate_reports_3d_fid(self):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            data = fibsem(tmp / "data", "medulla_a", (slice(0, 8), slice(0, 64), slice(0, 64)))
            fibsem(data, "medulla_b", (slice(8, 16), slice(0, 64), slice(0, 64)), split="Ts")
            root = tmp / "bundle"
            generator = {"channels": [8, 16, 16, 32, 32, 64, 64], "time_channels": 16, "norm_num_groups": 8,
                         "msc_channels": [8, 8, 16, 16], "patch_size": [4, 64, 64], "sampler": "ddim",
                         "num_inference_steps": 2, "progress": False, "bundle_root": str(root),
                         "dataset_dir": str(data)}
            run("train.json", "train", num_steps=1, accumulation_steps=1, epoch_length=1, **generator)
            (root / "models" / "segmentation").mkdir(parents=True)
            torch.save(SuperhumanUNet(filters=FAST["filters"]).state_dict(), root / "models" / "segmentation" / "model.pt")
            wf = run(["inference.json", "evaluate.json"], "infer", fid_network_def={
                "_target_": "emdiff_components.networks.SuperhumanUNet", "filters": FAST["filters"]},
                fid_patch_size=[4, 32, 32], **generator)
            fid = wf.evaluator.state.metrics["fid_3d"]
            self.assertGreater(fid, 0.0)  # untrained generator: its EM is far from the real one
            self.assertIn("fid_3d", (root / "outputs" / "evaluate" / "metrics.csv").read_text())


class TestSegmentationBadInput(unittest.TestCase):
    def _fails(self, config, workflow_type, error, pattern, **override):
        with self.assertRaises(Exception) as ctx:
            run(config, workflow_type, **override)
        cause = find_cause(ctx.exception, error)
        self.assertIsInstance(cause, error)
        self.assertRegex(str(cause), pattern)

    def test_negative_label_ids(self):
        with tempfile.TemporaryDirectory() as tmp:
            write_volume_case(tmp, "Tr", "v", np.zeros((8, 64, 64), np.uint8), np.ones((8, 64, 64), np.int32))
            tifffile.imwrite(Path(tmp, "labelsTr", "v.tif"), -np.ones((8, 64, 64), np.int32))
            write_volume_dataset_json(tmp, "bad", (10, 10, 10))
            self._fails("segment_train.json", "train", DatasetError, r"v\.tif", bundle_root=tmp, dataset_dir=tmp,
                        **FAST)
            self.assertFalse(Path(tmp, "models", "segmentation", "checkpoint.pt").exists())

    def test_volume_smaller_than_the_crop(self):
        with tempfile.TemporaryDirectory() as tmp:
            write_volume_case(tmp, "Tr", "v", np.zeros((8, 48, 48), np.uint8), np.ones((8, 48, 48), np.uint32))
            write_volume_dataset_json(tmp, "bad", (10, 10, 10))
            self._fails("segment_train.json", "train", DatasetError, r"v\.tif.*smaller", bundle_root=tmp,
                        dataset_dir=tmp, **FAST)

    def test_network_with_the_wrong_channel_count(self):
        with tempfile.TemporaryDirectory() as tmp:
            write_volume_case(tmp, "Ts", "v", np.zeros((8, 64, 64), np.uint8), np.ones((8, 64, 64), np.uint32))
            write_volume_dataset_json(tmp, "v", (10, 10, 10))
            (Path(tmp) / "models" / "segmentation").mkdir(parents=True)
            net = SuperhumanUNet(out_channels=2, filters=FAST["filters"])
            torch.save(net.state_dict(), Path(tmp) / "models" / "segmentation" / "model.pt")
            self._fails("segment.json", "infer", ValueError, "predicts 2 channels", bundle_root=tmp, dataset_dir=tmp,
                        network_def={"_target_": "emdiff_components.networks.SuperhumanUNet", "out_channels": 2,
                                     "filters": FAST["filters"]}, **{k: v for k, v in SEGMENT.items() if k != "filters"})
            self.assertFalse((Path(tmp) / "outputs" / "segment" / "affinities").exists())


if __name__ == "__main__":
    unittest.main()
