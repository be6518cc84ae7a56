from __future__ import annotations

import math
import os
import unittest
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.inferers import ControlNetDiffusionInferer
from monai.networks.nets import ControlNet, DiffusionModelUNet
from parameterized import parameterized
from torch import nn

from emdiff_components.diffusion import (
    ControlNetDenoiser,
    MaskConditionedTextureInferer,
    SliceConsistentNoise,
    slice_consistent_noise,
    texture_scheduler,
)
from emdiff_components.transforms import GreyLevelMask

HELA_MIN, HELA_MAX = 32995, 36863  # the public code's HeLa intensity range (datasets/dataset_CTC.py)


def tiny_denoiser(seed: int = 0) -> ControlNetDenoiser:
    torch.manual_seed(seed)
    kw = {"spatial_dims": 2, "in_channels": 1, "channels": (16, 32), "attention_levels": (False, False),
          "num_res_blocks": 1, "norm_num_groups": 8}
    return ControlNetDenoiser(DiffusionModelUNet(out_channels=1, **kw),
                              ControlNet(conditioning_embedding_num_channels=(16,), **kw))


class Stub(nn.Module):
    """Known outputs: base = x + t / 1000; conditional base + c^2 + 0.5; condition None: base - 3."""

    def forward(self, x, t, c):
        base = x + t.view(-1, *([1] * (x.ndim - 1))).float() / 1000
        return base - 3.0 if c is None else base + c**2 + 0.5


class Zero(nn.Module):
    def forward(self, x, t, c):
        return torch.zeros_like(x)


def single_cell_crops(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """4 HeLa nuclei, each alone on the background level (as utils/extract_single_cells.py), 32 px crops taken
    around the cell's centre and halved to 16 x 16 (image: 2 x 2 mean, label: every second pixel)."""
    tifffile = pytest.importorskip("tifffile")
    image = tifffile.imread(root / "img" / "t13.tif").astype(np.float64)
    label = tifffile.imread(root / "gt" / "man_seg13.tif").astype(np.int64)
    images, masks = [], []
    for cell in (55, 10, 9, 58):
        ys, xs = np.nonzero(label == cell)
        cy, cx = int(0.5 * (ys.min() + ys.max())), int(0.5 * (xs.min() + xs.max()))
        window = (slice(cy - 16, cy + 16), slice(cx - 16, cx + 16))
        inside = label[window] == cell
        crop = np.where(inside, image[window], HELA_MIN).reshape(16, 2, 16, 2).mean(axis=(1, 3))
        small = inside[::2, ::2].astype(np.int64)[None]
        masks.append(GreyLevelMask(a_min=HELA_MIN, a_max=HELA_MAX)(crop[None], small))
        images.append(((crop - HELA_MIN) / (HELA_MAX - HELA_MIN) - 0.5) * 2.0)  # dataset_CTC.py: to [-1, 1]
    return torch.tensor(np.stack(images)[:, None], dtype=torch.float32), torch.tensor(np.stack(masks))


class TestMaskConditionedTextureInferer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    @classmethod
    def tearDownClass(cls):
        torch.set_num_threads(cls.threads)

    @parameterized.expand([("zeros", 5.0, 0.5, 0.0), ("none", 5.0, -3.0, 3.5), ("zeros", 2.5, 0.5, 0.0)])
    def test_guidance_against_hand_computation(self, mode, w, uncond_offset, extra):
        inferer = MaskConditionedTextureInferer(texture_scheduler(), guidance_scale=w, unconditional=mode)
        g = torch.Generator().manual_seed(0)
        x, c = torch.randn((3, 1, 4, 4), generator=g), torch.randn((3, 1, 4, 4), generator=g)
        out = inferer.guided_prediction(Stub(), x, 400, c)
        # eps(x, 0) + w (eps(x, c) - eps(x, 0)) with base = x + 0.4
        expected = x + 0.4 + uncond_offset + w * (c**2 + extra)
        torch.testing.assert_close(out, expected)

    @parameterized.expand([("zeros",), ("none",)])
    def test_w_one_is_conditional_w_zero_unconditional(self, mode):
        g = torch.Generator().manual_seed(1)
        x, c = torch.randn((2, 1, 8, 8), generator=g), torch.rand((2, 1, 8, 8), generator=g)
        net = tiny_denoiser()
        t = torch.full((2,), 500, dtype=torch.long)
        null = torch.zeros_like(c) if mode == "zeros" else None
        with torch.no_grad():
            cond = MaskConditionedTextureInferer(texture_scheduler(), guidance_scale=1.0, unconditional=mode)
            uncond = MaskConditionedTextureInferer(texture_scheduler(), guidance_scale=0.0, unconditional=mode)
            torch.testing.assert_close(cond.guided_prediction(net, x, 500, c), net(x, t, c))
            torch.testing.assert_close(uncond.guided_prediction(net, x, 500, c), net(x, t, null))
            # the batched two-branch call equals the two separate calls
            w5 = MaskConditionedTextureInferer(texture_scheduler(), guidance_scale=5.0, unconditional=mode)
            expected = net(x, t, null) + 5.0 * (net(x, t, c) - net(x, t, null))
            torch.testing.assert_close(w5.guided_prediction(net, x, 500, c), expected, rtol=1e-4, atol=1e-5)

    def test_condition_dropout_rate(self):
        p, n = 0.25, 20_000
        inferer = MaskConditionedTextureInferer(texture_scheduler(), p_uncond=p)
        condition = torch.ones((n, 1, 2, 2))
        dropped_condition, keep = inferer.drop_condition(condition, torch.Generator().manual_seed(2))
        rate = 1.0 - keep.float().mean().item()
        self.assertAlmostEqual(rate, p, delta=5 * math.sqrt(p * (1 - p) / n))
        torch.testing.assert_close(dropped_condition.sum(dim=(1, 2, 3)), 4.0 * keep.float())
        again = inferer.drop_condition(condition, torch.Generator().manual_seed(2))[1]
        self.assertTrue(torch.equal(keep, again))
        none = MaskConditionedTextureInferer(texture_scheduler(), p_uncond=0.5, unconditional="none")
        same, keep = none.drop_condition(condition[:100], torch.Generator().manual_seed(3))
        self.assertTrue(torch.equal(same, condition[:100]))  # unchanged: the keep mask says who sees it
        self.assertTrue(0 < int(keep.sum()) < 100)
        self.assertTrue(MaskConditionedTextureInferer(texture_scheduler(), p_uncond=0.0).drop_condition(
            condition[:50], torch.Generator().manual_seed(4))[1].all())

    @parameterized.expand([("zeros", 0.5), ("none", -3.0)])
    def test_training_loss_hand_values(self, mode, dropped_offset):
        scheduler = texture_scheduler()
        inferer = MaskConditionedTextureInferer(scheduler, unconditional=mode)
        g = torch.Generator().manual_seed(5)
        image, condition = torch.rand((4, 1, 4, 4), generator=g) * 2 - 1, torch.rand((4, 1, 4, 4), generator=g)
        noise, t = torch.randn((4, 1, 4, 4), generator=g), torch.tensor([0, 10, 500, 999])
        keep = torch.tensor([True, False, True, False])
        out = inferer.training_loss(Stub(), condition, image, timesteps=t, noise=noise, keep=keep)
        abar = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
        x_t = abar.sqrt() * image + (1 - abar).sqrt() * noise
        base = x_t + t.view(-1, 1, 1, 1) / 1000
        expected = torch.where(keep.view(-1, 1, 1, 1), base + condition**2 + 0.5, base + dropped_offset)
        torch.testing.assert_close(out.prediction, expected)
        torch.testing.assert_close(out.target, noise)
        torch.testing.assert_close(out.loss, ((expected - noise) ** 2).mean())

    def test_prediction_matches_monai_controlnet_inferer(self):
        net = tiny_denoiser(1)
        scheduler = texture_scheduler()
        g = torch.Generator().manual_seed(6)
        image, mask = torch.rand((2, 1, 16, 16), generator=g), torch.rand((2, 1, 16, 16), generator=g)
        noise, t = torch.randn((2, 1, 16, 16), generator=g), torch.tensor([3, 700])
        ours = MaskConditionedTextureInferer(scheduler, p_uncond=0.0).training_loss(
            net, mask, image, timesteps=t, noise=noise
        )
        monai = ControlNetDiffusionInferer(scheduler)(image, net.diffusion_model, net.controlnet, noise, t, mask)
        torch.testing.assert_close(ours.prediction, monai)

    def test_same_generator_same_sample(self):
        net = tiny_denoiser(2)
        mask = torch.zeros((2, 1, 16, 16))
        mask[:, :, 4:12, 4:12] = 0.3
        for eta in (0.0, 1.0):
            inferer = MaskConditionedTextureInferer(texture_scheduler(eta=eta), num_inference_steps=3)
            a = inferer.sample(mask, net, torch.Generator().manual_seed(7))
            b = inferer.sample(mask, net, torch.Generator().manual_seed(7))
            c = inferer.sample(mask, net, torch.Generator().manual_seed(8))
            self.assertTrue(torch.equal(a, b))
            self.assertGreater(float((a - c).abs().max()), 1e-3)
            self.assertTrue(torch.equal(inferer(mask, net), inferer.sample(mask, net, torch.Generator().manual_seed(0))))

    def test_stack_sampled_slice_by_slice_from_the_given_noise(self):
        """A zero-noise predictor makes DDIM (eta 0) scale x_T by sqrt(abar_final / abar_first): slice order kept."""
        scheduler = texture_scheduler()
        inferer = MaskConditionedTextureInferer(scheduler, num_inference_steps=5)
        mask = torch.rand((2, 1, 3, 4, 4), generator=torch.Generator().manual_seed(9))
        noise = 0.01 * slice_consistent_noise((2, 1, 3, 4, 4), generator=torch.Generator().manual_seed(10))
        out = inferer.sample(mask, Zero(), noise=noise)
        scheduler.set_timesteps(5)
        factor = math.sqrt(float(scheduler.alphas_cumprod[0]) / float(scheduler.alphas_cumprod[scheduler.timesteps[0]]))
        torch.testing.assert_close(out, noise * factor)
        provider = MaskConditionedTextureInferer(scheduler, num_inference_steps=5, noise=SliceConsistentNoise(0.7))
        drawn = slice_consistent_noise((2, 1, 3, 4, 4), generator=torch.Generator().manual_seed(11))
        torch.testing.assert_close(
            provider.sample(mask, Zero(), torch.Generator().manual_seed(11)), (drawn * factor).clamp(-1, 1)
        )

    def test_training_on_real_single_cells_lowers_the_loss(self):
        root = Path(os.environ.get("EMDIFF_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))
        root = root / "ctc_2d_nuclei" / "Fluo-N2DL-HeLa"
        if not root.is_dir():
            if os.environ.get("CI") == "true":
                self.fail(f"{root} not found")
            self.skipTest(f"{root} not found")
        image, mask = single_cell_crops(root)
        self.assertTrue(0.0 < float(mask.max()) < 1.0)  # grey level: the cell's mean scaled intensity
        image, mask = image.repeat(4, 1, 1, 1), mask.repeat(4, 1, 1, 1)
        net = tiny_denoiser(3)
        inferer = MaskConditionedTextureInferer(texture_scheduler())
        optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
        generator = torch.Generator().manual_seed(12)
        losses = []
        for _ in range(40):
            optimizer.zero_grad()
            out = inferer.training_loss(net, mask, image, generator=generator)
            out.loss.backward()
            optimizer.step()
            losses.append(out.loss.item())
        self.assertLess(np.mean(losses[-8:]), 0.7 * np.mean(losses[:8]))

    def test_config_round_trip(self):
        config = {
            "scheduler": {"_target_": "emdiff_components.diffusion.texture_scheduler"},
            "noise": {"_target_": "emdiff_components.diffusion.SliceConsistentNoise", "rho": 0.7},
            "inferer": {
                "_target_": "emdiff_components.diffusion.MaskConditionedTextureInferer",
                "scheduler": "@scheduler", "noise": "@noise", "num_inference_steps": 50, "guidance_scale": 5.0,
            },
        }
        inferer = ConfigParser(config).get_parsed_content("inferer")
        self.assertEqual((inferer.num_inference_steps, inferer.guidance_scale, inferer.p_uncond), (50, 5.0, 0.1))
        self.assertEqual((inferer.scheduler.eta, inferer.noise.rho), (0.0, 0.7))
        self.assertFalse(inferer.scheduler.clip_sample)
        torch.testing.assert_close(inferer.scheduler.betas[[0, -1]], torch.tensor([0.00085, 0.012]))

    def test_errors(self):
        scheduler = texture_scheduler()
        with self.assertRaisesRegex(ValueError, "MaskConditionedTextureInferer: guidance_scale"):
            MaskConditionedTextureInferer(scheduler, guidance_scale=-1.0)
        with self.assertRaisesRegex(ValueError, "p_uncond"):
            MaskConditionedTextureInferer(scheduler, p_uncond=1.5)
        with self.assertRaisesRegex(ValueError, "unconditional"):
            MaskConditionedTextureInferer(scheduler, unconditional="empty")
        with self.assertRaisesRegex(ValueError, "num_inference_steps"):
            MaskConditionedTextureInferer(scheduler, num_inference_steps=0)
        with self.assertRaisesRegex(ValueError, "noise"):
            MaskConditionedTextureInferer(scheduler, noise=0.7)
        inferer = MaskConditionedTextureInferer(scheduler, num_inference_steps=2)
        with self.assertRaisesRegex(ValueError, "mask and image differ"):
            inferer.training_loss(Stub(), torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 6))
        with self.assertRaisesRegex(ValueError, "mask and image differ"):
            inferer.training_loss(Stub(), torch.zeros(2, 1, 8, 8), torch.zeros(1, 1, 8, 8))
        with self.assertRaisesRegex(ValueError, "keep"):
            inferer.training_loss(Stub(), torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8), keep=torch.ones(3).bool())
        with self.assertRaisesRegex(ValueError, r"\(B, C, Y, X\)"):
            inferer.sample(torch.zeros(1, 8, 8), Stub())
        with self.assertRaisesRegex(ValueError, "noise must have shape"):
            inferer.sample(torch.zeros(1, 1, 8, 8), Stub(), noise=torch.zeros(1, 1, 8, 4))
        with self.assertRaisesRegex(ValueError, "ControlNetDenoiser: conditioning_scale"):
            ControlNetDenoiser(nn.Identity(), nn.Identity(), conditioning_scale=float("nan"))


if __name__ == "__main__":
    unittest.main()
