from __future__ import annotations

import unittest

import torch
from monai.networks.nets import DiffusionModelUNet
from torch import nn

from emdiff_components.diffusion import mask_scheduler, sample_masks

THRESHOLD = -1.0 + 1.0 / 255.0


class ZeroNoise(nn.Module):
    def forward(self, x, t):
        return torch.zeros_like(x)


class TestSampleMasks(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    @classmethod
    def tearDownClass(cls):
        torch.set_num_threads(cls.threads)

    def test_scheduler_is_the_public_pipeline(self):
        scheduler = mask_scheduler()
        self.assertEqual(scheduler.eta, 1.0)
        self.assertTrue(scheduler.clip_sample)
        self.assertEqual(str(getattr(scheduler.prediction_type, "value", scheduler.prediction_type)), "epsilon")
        torch.testing.assert_close(scheduler.betas[[0, -1]], torch.tensor([1e-4, 2e-2]))
        scheduler.set_timesteps(50)
        self.assertEqual(len(scheduler.timesteps), 50)

    def test_zero_noise_prediction_hand_values(self):
        """eps = 0, eta = 0: x0 = clip(x_T / sqrt(abar_first)) at the first step and stays; final alpha-bar 1."""
        scheduler = mask_scheduler(eta=0.0)
        raw = sample_masks(ZeroNoise(), scheduler, 5, (1, 4, 4), torch.Generator().manual_seed(0), 4, threshold=None)
        x_T = torch.randn((5, 1, 4, 4), generator=torch.Generator().manual_seed(0))
        first = int(scheduler.timesteps[0])
        expected = (x_T / scheduler.alphas_cumprod[first].sqrt()).clamp(-1, 1)
        torch.testing.assert_close(raw, expected)
        binary = sample_masks(ZeroNoise(), scheduler, 5, (1, 4, 4), torch.Generator().manual_seed(0), 4)
        torch.testing.assert_close(binary, (expected > THRESHOLD).float())
        split = sample_masks(ZeroNoise(), scheduler, 5, (1, 4, 4), torch.Generator().manual_seed(0), 4, batch_size=2)
        torch.testing.assert_close(split, binary)  # eta 0: x_T drawn batch after batch in the same order

    def test_same_generator_same_masks_with_a_unet(self):
        torch.manual_seed(0)
        net = DiffusionModelUNet(2, 1, 1, channels=(16, 32), attention_levels=(False, False), num_res_blocks=1,
                                 norm_num_groups=8)
        scheduler = mask_scheduler()
        a = sample_masks(net, scheduler, 3, (1, 16, 16), torch.Generator().manual_seed(1), num_inference_steps=3)
        b = sample_masks(net, scheduler, 3, (1, 16, 16), torch.Generator().manual_seed(1), num_inference_steps=3)
        c = sample_masks(net, scheduler, 3, (1, 16, 16), torch.Generator().manual_seed(2), num_inference_steps=3)
        self.assertTrue(torch.equal(a, b))
        self.assertFalse(torch.equal(a, c))
        self.assertTrue(set(a.unique().tolist()) <= {0.0, 1.0})
        self.assertEqual(tuple(a.shape), (3, 1, 16, 16))

    def test_errors(self):
        scheduler = mask_scheduler()
        with self.assertRaisesRegex(ValueError, "sample_masks: num_masks"):
            sample_masks(ZeroNoise(), scheduler, 0, (1, 4, 4))
        with self.assertRaisesRegex(ValueError, "sample_masks: shape"):
            sample_masks(ZeroNoise(), scheduler, 1, (4, 4))
        with self.assertRaisesRegex(ValueError, "sample_masks: batch_size"):
            sample_masks(ZeroNoise(), scheduler, 1, (1, 4, 4), batch_size=0)
        with self.assertRaisesRegex(ValueError, "BinarizeMask: threshold"):
            sample_masks(ZeroNoise(), scheduler, 1, (1, 4, 4), threshold=float("nan"))
        with self.assertRaisesRegex(ValueError, "eta"):
            mask_scheduler(eta=-1.0)


if __name__ == "__main__":
    unittest.main()
