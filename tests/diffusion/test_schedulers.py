from __future__ import annotations

import unittest

import numpy as np
import torch
from monai.networks.schedulers import DDIMScheduler
from parameterized import parameterized

from emdiff_components.diffusion import AlignedDDIMScheduler, gaussian_scheduler


def _linear_abar(T: int) -> np.ndarray:
    """MONAI's linear_beta schedule by hand: betas linspace(1e-4, 2e-2, T), abar = cumprod(1 - beta), float64."""
    return np.cumprod(1 - np.linspace(1e-4, 2e-2, T))


class TestAlignedDDIMScheduler(unittest.TestCase):
    def test_one_step_by_hand(self):
        # T = 10, N = 3: MONAI visits round(linspace(9, 0, 3)) = [9, 4, 0]; from 9 the step must land on 4 (MONAI: 6)
        scheduler = AlignedDDIMScheduler(num_train_timesteps=10, prediction_type="sample", clip_sample=False)
        scheduler.set_timesteps(3)
        self.assertEqual(scheduler.timesteps.tolist(), [9, 4, 0])
        abar = _linear_abar(10)
        x_t, x0 = torch.tensor([0.3, -1.2]), torch.tensor([1.0, -1.0])
        x_prev, x0_out = scheduler.step(x0, 9, x_t)
        eps = (x_t.double() - abar[9] ** 0.5 * x0.double()) / (1 - abar[9]) ** 0.5
        expected = abar[4] ** 0.5 * x0.double() + (1 - abar[4]) ** 0.5 * eps  # DDIM eq. 12, eta = 0
        torch.testing.assert_close(x_prev.double(), expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(x0_out, x0)
        self.assertEqual(scheduler.previous_timestep(0), -1)

    def test_equals_monai_when_aligned(self):
        # N = T: every visited step is t - 1, where MONAI's rule is right
        ours = AlignedDDIMScheduler(num_train_timesteps=20, prediction_type="epsilon", eta=0.5)
        monai = DDIMScheduler(num_train_timesteps=20, prediction_type="epsilon")
        for s in (ours, monai):
            s.set_timesteps(20)
        g = torch.Generator().manual_seed(0)
        x, eps = torch.randn(5, generator=g), torch.randn(5, generator=g)
        for t in ours.timesteps.tolist():
            torch.testing.assert_close(ours.step(eps, t, x, generator=torch.Generator().manual_seed(t))[0],
                                       monai.step(eps, t, x, eta=0.5, generator=torch.Generator().manual_seed(t))[0])

    def test_eta_noise_by_hand(self):
        # eta = 1 at T = 10, N = 2 (visits 9, 0): sigma = sqrt((1 - abar_0) / (1 - abar_9) * (1 - abar_9 / abar_0))
        scheduler = AlignedDDIMScheduler(num_train_timesteps=10, prediction_type="sample", clip_sample=False, eta=1.0)
        scheduler.set_timesteps(2)
        self.assertEqual(scheduler.timesteps.tolist(), [9, 0])
        abar = _linear_abar(10)
        x_t, x0 = torch.tensor([0.3, -1.2]), torch.tensor([1.0, -1.0])
        x_prev, _ = scheduler.step(x0, 9, x_t, generator=torch.Generator().manual_seed(3))
        noise = torch.randn(2, generator=torch.Generator().manual_seed(3)).double()
        sigma = ((1 - abar[0]) / (1 - abar[9]) * (1 - abar[9] / abar[0])) ** 0.5
        eps = (x_t.double() - abar[9] ** 0.5 * x0.double()) / (1 - abar[9]) ** 0.5
        expected = abar[0] ** 0.5 * x0.double() + (1 - abar[0] - sigma**2) ** 0.5 * eps + sigma * noise
        torch.testing.assert_close(x_prev.double(), expected, rtol=1e-5, atol=1e-6)

    @parameterized.expand([(10,), (50,), (100,)])
    def test_oracle_lands_on_the_mask(self, steps):
        scheduler = gaussian_scheduler("ddim", 1000)
        self.assertIsInstance(scheduler, AlignedDDIMScheduler)
        scheduler.set_timesteps(steps)
        mask = torch.tensor([1.0, -1.0, 1.0])
        x = torch.randn(3, generator=torch.Generator().manual_seed(1))
        for t in scheduler.timesteps.tolist():
            x, _ = scheduler.step(mask, t, x)
        torch.testing.assert_close(x, mask)

    def test_factory_sets_eta(self):
        self.assertEqual(gaussian_scheduler("ddim", 100, eta=0.3).eta, 0.3)
        with self.assertRaisesRegex(ValueError, "eta applies to the 'ddim' sampler only"):
            gaussian_scheduler("ddpm", 100, eta=0.3)
        with self.assertRaisesRegex(ValueError, "eta must be >= 0"):
            AlignedDDIMScheduler(num_train_timesteps=10, eta=-1.0)

    def test_unknown_time_step(self):
        scheduler = AlignedDDIMScheduler(num_train_timesteps=10)
        scheduler.set_timesteps(3)
        with self.assertRaisesRegex(ValueError, "AlignedDDIMScheduler: time step 5"):
            scheduler.step(torch.zeros(1), 5, torch.zeros(1))


if __name__ == "__main__":
    unittest.main()
