"""CellCascade's stable_diffusion.json overlay on inference.json, pointed at a tiny random SD 1.5-shaped pipeline."""

from __future__ import annotations

import importlib.util
import tempfile
import unittest
from pathlib import Path

import bundle_testing
import torch
from bundle_testing import REPO, find_cause
from monai.bundle import ConfigParser

from emdiff_components.data import ctc_datalist, read_image
from emdiff_components.diffusion import StableDiffusionTextureInferer
from tests.diffusion.test_stable_diffusion import build_tiny_pipeline

HAS_SD = all(importlib.util.find_spec(name) is not None for name in ("diffusers", "transformers"))
CONFIGS = REPO / "bundles" / "cellcascade" / "configs"
OVERLAY = ["inference.json", "stable_diffusion.json"]
NETWORK = {"mask_channels": [8, 16, 16], "norm_num_groups": 8, "num_head_channels": 8}
INFER = {
    **NETWORK, "num_inference_steps": 2, "num_masks": 3, "num_lifted": 1, "num_slices": 3, "num_images": 2,
    "num_stacks": 1, "population_shape": [192, 224], "num_cells": [2, 3], "ellipse": None, "min_cell_size": 1,
    "progress": False, "device": "$torch.device('cpu')", "train_missing": False,
}


@unittest.skipUnless(HAS_SD, "diffusers / transformers not installed (pip install 'emdiff-components[sd]')")
class TestCellCascadeStableDiffusionOverlay(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.threads = torch.get_num_threads()
        torch.set_num_threads(1)
        cls.tmp = tempfile.TemporaryDirectory()
        cls.sd_path = str(build_tiny_pipeline(Path(cls.tmp.name) / "sd"))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()
        torch.set_num_threads(cls.threads)

    def test_overlay_parses_to_the_sd_inferers(self):
        parser = ConfigParser()
        parser.read_config([str(CONFIGS / name) for name in OVERLAY])
        parser["sd_path"], parser["device"] = self.sd_path, "$torch.device('cpu')"
        inferer, inferer_3d = parser.get_parsed_content("inferer"), parser.get_parsed_content("inferer_3d")
        self.assertIsInstance(inferer, StableDiffusionTextureInferer)
        self.assertIsInstance(inferer_3d, StableDiffusionTextureInferer)
        self.assertIs(inferer_3d.pipeline, inferer.pipeline)  # one copy of the weights
        self.assertIs(parser.get_parsed_content("network"), inferer.pipeline.controlnet)
        self.assertIsNone(inferer.noise)
        self.assertEqual(inferer_3d.noise.rho, 0.7)
        for sampler in (inferer, inferer_3d):  # inference.json's stage-3 settings and the public strength
            self.assertEqual((sampler.num_inference_steps, sampler.guidance_scale, sampler.eta), (50, 5.0, 0.0))
            self.assertEqual((sampler.conditioning_scale, sampler.guess_mode, sampler.output), (2.0, True, "latent"))
        initialize = " ".join(parser["initialize"])
        self.assertNotIn("@ckpt_path", initialize)  # models/texture/model.pt is neither trained nor loaded
        self.assertIn("@mask_ckpt_path", initialize)

    def test_tiny_run_writes_populations(self):
        with tempfile.TemporaryDirectory() as tmp:
            masks_model = Path(tmp) / "models" / "masks" / "model.pt"
            masks_model.parent.mkdir(parents=True)
            parser = ConfigParser()
            parser.read_config(str(CONFIGS / "inference.json"))
            parser.update(NETWORK)
            torch.save(parser.get_parsed_content("mask_network_def").state_dict(), masks_model)
            wf = bundle_testing.workflow(CONFIGS, OVERLAY, "infer", bundle_root=tmp, sd_path=self.sd_path, **INFER)
            wf.initialize()
            self.assertEqual(wf.check_properties(), [])
            wf.run()
            wf.finalize()
            out = Path(tmp) / "outputs" / "cascade"
            for kind, shape, count in (("2d", (192, 224), 2), ("3d", (3, 192, 224), 1)):
                entries = ctc_datalist(out / kind)
                self.assertEqual(len(entries), count)
                for entry in entries:
                    image, mask = read_image(entry["image"]), read_image(entry["label"])
                    self.assertEqual((image.shape, mask.shape), (shape, shape))
                    self.assertTrue(2 <= mask.max() <= 3)
            textures = wf.parser.get_parsed_content("cell_textures")
            self.assertEqual(textures.shape[1:], (64, 64))
            self.assertTrue(0.0 <= textures.min() and textures.max() <= 255.0)
            self.assertFalse((Path(tmp) / "models" / "texture" / "model.pt").exists())

    def test_missing_weights_fail_first(self):
        # no mask model either (train_missing False): the SD weights are checked before the mask stage is loaded
        with tempfile.TemporaryDirectory() as tmp, self.assertRaises(Exception) as ctx:
            wf = bundle_testing.workflow(CONFIGS, OVERLAY, "infer", bundle_root=tmp, **INFER)
            wf.initialize()
        cause = find_cause(ctx.exception, FileNotFoundError)
        self.assertIsInstance(cause, FileNotFoundError)
        self.assertRegex(str(cause), r"Stable Diffusion path .*models/stable_diffusion' does not exist")
