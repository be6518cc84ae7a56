"""End-to-end runs of the CellCascade bundle (masks, texture, cascade) on real CTC nuclei, and bad input."""

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

from emdiff_components.data import DatasetError, ctc_datalist, read_image
from emdiff_components.engines import CheckpointError
from emdiff_components.metrics import cell_scores

BUNDLE = REPO / "bundles" / "cellcascade"
CONFIGS = BUNDLE / "configs"

# tiny but real: narrow networks, 2 iterations of batch 2, 2 DDIM steps, small populations
NETWORK = {
    "mask_channels": [8, 16, 16], "texture_channels": [8, 16, 16], "norm_num_groups": 8, "num_head_channels": 8,
    "conditioning_channels": [8],
}
TRAIN = {**NETWORK, "num_steps": 2, "epoch_length": 2, "batch_size": 2}
INFER = {
    **NETWORK, "num_inference_steps": 2, "num_masks": 4, "num_lifted": 2, "num_slices": 4, "num_images": 2,
    "num_stacks": 1, "population_shape": [192, 224], "num_cells": [2, 3], "ellipse": None, "min_cell_size": 1,
    "progress": False,
}
SEGMENT = {"features": [8, 8, 16, 32, 64, 8], "patch_size": [128, 128]}
SEGMENT_TRAIN = {**SEGMENT, "num_steps": 2, "epoch_length": 2, "batch_size": 2}
SHARED_IDS = ["num_train_timesteps", "num_res_blocks", "norm_num_groups", "num_head_channels", "device", "demo_dir",
              "dataset_dir"]


def run(config, workflow_type: str, **override):
    return bundle_testing.run(CONFIGS, config, workflow_type, **override)


def load(name: str) -> dict:
    return json.loads((CONFIGS / name).read_text())


class TestCellCascadeConfigs(unittest.TestCase):
    def test_paper_defaults(self):
        masks, texture, infer = load("train_masks.json"), load("train_texture.json"), load("inference.json")
        self.assertEqual(masks["num_train_timesteps"], 1000)
        self.assertEqual((masks["crop_size"], masks["image_size"]), (128, 64))
        self.assertEqual((texture["batch_size"], texture["p_uncond"], texture["guidance_scale"]), (4, 0.1, 5.0))
        self.assertEqual((infer["num_inference_steps"], infer["mask_eta"], infer["texture_eta"]), (50, 1.0, 0.0))
        self.assertEqual((infer["guidance_scale"], infer["rho"], infer["num_slices"]), (5.0, 0.7, 10))
        self.assertEqual((infer["num_cells"], infer["ellipse"], infer["population_shape"]),
                         ([40, 49], [100.0, 150.0], [512, 708]))
        parser = ConfigParser()
        parser.read_config(str(CONFIGS / "inference.json"))
        noise = parser.get_parsed_content("inferer_3d").noise
        self.assertEqual(noise.rho, 0.7)
        self.assertIsNone(parser.get_parsed_content("inferer").noise)

    def test_shared_ids_are_identical(self):
        masks, texture, infer = load("train_masks.json"), load("train_texture.json"), load("inference.json")
        for key in SHARED_IDS + ["image_size"]:
            self.assertEqual(masks[key], infer[key], key)
            self.assertEqual(texture[key], infer[key], key)
        for key in ("mask_network_def", "mask_channels", "mask_attention_levels"):
            self.assertEqual(masks[key], infer[key], key)
        for key in ("texture_network_def", "texture_channels", "texture_attention_levels", "conditioning_channels"):
            self.assertEqual(texture[key], infer[key], key)
        # the schedules agree but for the sampler's eta
        self.assertEqual(masks["mask_scheduler"], {k: v for k, v in infer["mask_scheduler"].items() if k != "eta"})
        self.assertEqual(texture["texture_scheduler"],
                         {k: v for k, v in infer["texture_scheduler"].items() if k != "eta"})

    def test_properties(self):
        with tempfile.TemporaryDirectory() as tmp:
            for config in ("train_masks.json", "train_texture.json"):
                wf = bundle_testing.workflow(CONFIGS, config, "train", bundle_root=tmp, **TRAIN)
                wf.initialize()
                self.assertEqual(wf.check_properties(), [], config)
                folder = "masks" if config == "train_masks.json" else "texture"
                (Path(tmp) / "models" / folder).mkdir(parents=True, exist_ok=True)
                torch.save(wf.parser.get_parsed_content("network_def").state_dict(),
                           Path(tmp) / "models" / folder / "model.pt")
            wf = bundle_testing.workflow(CONFIGS, "inference.json", "infer", bundle_root=tmp, **INFER)
            wf.initialize()
            self.assertEqual(wf.check_properties(), [])

    def test_metadata_verifies_offline(self):
        bundle_testing.assert_metadata_verifies(self, CONFIGS)


class TestCellCascadeEndToEnd(unittest.TestCase):
    def test_hela_masks_texture_cascade(self):
        shared = shared_data_or_skip(self)
        data = shared / "ctc_2d_nuclei" / "Fluo-N2DL-HeLa"
        with tempfile.TemporaryDirectory() as tmp:
            common = {"bundle_root": tmp, "dataset_dir": str(data)}
            run("train_masks.json", "train", **common, **TRAIN)
            run("train_texture.json", "train", **common, **TRAIN)
            for stage in ("masks", "texture"):
                self.assertTrue((Path(tmp) / "models" / stage / "model.pt").is_file())
            wf = run("inference.json", "infer", **common, **INFER)
            out = Path(tmp) / "outputs" / "cascade"
            for kind, shape in (("2d", (192, 224)), ("3d", (4, 192, 224))):
                entries = ctc_datalist(out / kind)
                self.assertEqual(len(entries), 2 if kind == "2d" else 1)
                for entry in entries:
                    image, mask = read_image(entry["image"]), read_image(entry["label"])
                    self.assertEqual((image.shape, mask.shape), (shape, shape))
                    self.assertEqual((image.dtype, mask.dtype), (np.uint16, np.uint16))
                    self.assertTrue(2 <= mask.max() <= 3)
                self.assertTrue((out / kind / "populations.png").is_file())
            # a population's cells are the stage-3 textures (clipped to 0..255) under the stage-1 masks
            images, labels = wf.parser.get_parsed_content("populations_2d")
            np.testing.assert_array_equal(tifffile.imread(out / "2d" / "01_ST" / "SEG" / "man_seg000.tif"), labels[0])
            np.testing.assert_array_equal(tifffile.imread(out / "2d" / "01" / "t000.tif"),
                                          np.clip(np.round(images[0]), 0, 65535).astype(np.uint16))
            textures = wf.parser.get_parsed_content("cell_textures")
            self.assertTrue(textures.min() >= 0 and textures.max() <= 255)
            self.assertEqual(textures.shape[1:], (64, 64))


class TestCellCascadeSegmentation(unittest.TestCase):
    def test_train_segment_score_and_fid_on_gowt1(self):
        shared = shared_data_or_skip(self)
        data = shared / "ctc_2d_nuclei" / "Fluo-N2DH-GOWT1"
        with tempfile.TemporaryDirectory() as tmp:
            common = {"bundle_root": tmp, "dataset_dir": str(data), "held_out": 2}
            train = run("segment_train.json", "train", **common, **SEGMENT_TRAIN)
            self.assertEqual([e["name"] for e in train.parser.get_parsed_content("datalist")],
                             ["t01", "t21", "t31", "t39"])
            run("segment.json", "infer", **common, **SEGMENT)
            out = Path(tmp) / "outputs" / "segment"
            report = json.loads((out / "cell_metrics.json").read_text())
            self.assertEqual([r["name"] for r in report["per_image"]], ["t52", "t72"])
            for row in report["per_image"]:  # the written masks give the reported scores
                mask = read_image(out / "masks" / f"{row['name']}.tif")
                truth = read_image(data / "gt" / f"man_seg{row['name'][1:]}.tif")
                self.assertEqual(mask.shape, (1024, 1024))
                self.assertEqual(mask.dtype, np.uint16)
                expected = cell_scores(mask, truth)
                for key in ("seg", "f1", "num_pred", "num_truth"):
                    self.assertAlmostEqual(row[key], expected[key], places=12, msg=key)
            # a folder of frames without masks: masks, no scores
            frames = Path(tmp) / "frames"
            frames.mkdir()
            tifffile.imwrite(frames / "a.tif", read_image(data / "img" / "t52.tif")[:300, :400])
            run("segment.json", "infer", **common, **SEGMENT, input=str(frames), output_dir=str(Path(tmp) / "o2"))
            self.assertEqual(read_image(Path(tmp) / "o2" / "masks" / "a.tif").shape, (300, 400))
            self.assertFalse((Path(tmp) / "o2" / "cell_metrics.json").exists())
            # FID of both stages in the trained segmentation network's features
            run("train_masks.json", "train", **common, **TRAIN)
            run("train_texture.json", "train", **common, **TRAIN)
            run(["inference.json", "evaluate.json"], "infer", **common, **INFER, fid_layer="down_1",
                segmentation_features=SEGMENT["features"])
            fid = json.loads((Path(tmp) / "outputs" / "evaluate" / "fid.json").read_text())
            cells = sum(1 for _ in train.parser.get_parsed_content("datalist"))
            self.assertGreater(fid["num_real_cells"], 4 * 20)  # 22-30 nuclei per GOWT1 frame, all 6 frames
            self.assertGreater(cells, 0)
            for key in ("mask_fid", "texture_fid"):
                self.assertTrue(np.isfinite(fid[key]) and fid[key] > 0, key)

    def test_evaluate_without_segmentation_model(self):
        with tempfile.TemporaryDirectory() as tmp:
            for config in ("train_masks.json", "train_texture.json"):
                run(config, "train", bundle_root=tmp, **TRAIN)
            with self.assertRaises(Exception) as ctx:
                run(["inference.json", "evaluate.json"], "infer", bundle_root=tmp, **INFER)
            cause = find_cause(ctx.exception, CheckpointError)
            self.assertRegex(str(cause), r"segmentation/model\.pt does not exist")

    def test_inference_alone_trains_missing_models_first(self):
        with tempfile.TemporaryDirectory() as tmp:
            run("inference.json", "infer", bundle_root=tmp, configs_dir=str(CONFIGS), **INFER, demo_train_steps=2,
                demo_train_batch_size=2)
            for stage in ("masks", "texture"):
                self.assertTrue((Path(tmp) / "models" / stage / "model.pt").is_file())
            self.assertEqual(len(ctc_datalist(Path(tmp) / "outputs" / "cascade" / "2d")), 2)
            with self.assertRaises(Exception) as ctx:  # switched off, a missing model is an error
                run("inference.json", "infer", bundle_root=tmp, **INFER, train_missing=False,
                    mask_ckpt_path=str(Path(tmp) / "none.pt"))
            self.assertRegex(str(find_cause(ctx.exception, CheckpointError)), "none.pt does not exist")


class TestCellCascadeBadInput(unittest.TestCase):
    def _fails(self, config, workflow_type, error, pattern, **override):
        with self.assertRaises(Exception) as ctx:
            wf = bundle_testing.workflow(CONFIGS, config, workflow_type, **override)
            wf.initialize()
            wf.run()
        cause = find_cause(ctx.exception, error)
        self.assertIsInstance(cause, error)
        self.assertRegex(str(cause), pattern)

    def test_empty_ctc_folder(self):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "data").mkdir()
            self._fails("train_masks.json", "train", DatasetError, "data.*is empty", bundle_root=tmp,
                        dataset_dir=str(Path(tmp) / "data"), **TRAIN)
            self.assertFalse((Path(tmp) / "models" / "masks" / "checkpoint.pt").exists())

    def test_masks_without_cells(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "data"
            for folder in (data / "01", data / "01_ST" / "SEG"):
                folder.mkdir(parents=True)
            tifffile.imwrite(data / "01" / "t000.tif", np.full((64, 64), 100, np.uint16))
            tifffile.imwrite(data / "01_ST" / "SEG" / "man_seg000.tif", np.zeros((64, 64), np.uint16))
            self._fails("train_texture.json", "train", DatasetError, "hold no cells", bundle_root=tmp,
                        dataset_dir=str(data), **TRAIN)
            self.assertFalse((Path(tmp) / "models" / "texture" / "checkpoint.pt").exists())

    def test_open_mesh_fails_before_sampling(self):
        with tempfile.TemporaryDirectory() as tmp:
            meshes = Path(tmp) / "meshes"
            meshes.mkdir()
            # a tetrahedron without its base: an open surface
            (meshes / "cell.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 4\nf 2 3 4\nf 3 1 4\n")
            self._fails("inference.json", "infer", DatasetError, r"cell\.obj.*closed", bundle_root=tmp,
                        mesh_dir=str(meshes), **INFER)
            self.assertFalse((Path(tmp) / "outputs" / "cascade" / "2d").exists())

    def test_wrong_checkpoint(self):
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = Path(tmp) / "other.pt"
            torch.save(torch.nn.Linear(3, 3).state_dict(), ckpt)
            self._fails("inference.json", "infer", CheckpointError, "other.pt.*does not fit DiffusionModelUNet",
                        bundle_root=tmp, mask_ckpt_path=str(ckpt), **INFER)


if __name__ == "__main__":
    unittest.main()
