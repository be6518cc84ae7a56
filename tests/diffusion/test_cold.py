from __future__ import annotations

import math
import unittest

import numpy as np
import torch
from parameterized import parameterized

from emdiff_components.diffusion import ColdDiffusionScheduler


def numpy_cosine_abar(num_steps: int, s: float = 0.008) -> np.ndarray:
    """Nichol & Dhariwal's cosine schedule, written independently: abar from clipped betas."""
    x = np.linspace(0, num_steps, num_steps + 1)
    f = np.cos(((x / num_steps) + s) / (1 + s) * math.pi / 2) ** 2
    f = f / f[0]
    betas = np.clip(1 - f[1:] / f[:-1], 0, 0.999)
    return np.cumprod(1 - betas)


def make_pair(seed: int = 0, shape=(2, 1, 16, 24)):
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(shape, generator=g) > 0.5).float() * 2 - 1
    image = torch.rand(shape, generator=g) * 2 - 1
    return mask, image


SAMPLERS = [("bansal",), ("reference",)]


class TestColdDiffusionScheduler(unittest.TestCase):
    def test_schedule_matches_independent_cosine(self):
        sched = ColdDiffusionScheduler(num_train_timesteps=50)
        np.testing.assert_allclose(sched.alphas_cumprod.numpy(), numpy_cosine_abar(50), rtol=1e-4, atol=1e-7)

    def test_degradation_endpoints(self):
        sched = ColdDiffusionScheduler(num_train_timesteps=50)
        mask, image = make_pair()
        # t = -1 is the clean mask; t = 0 blends by hand; t = T-1 is about the image
        torch.testing.assert_close(sched.degrade(mask, image, -1), mask)
        abar0 = numpy_cosine_abar(50)[0]
        expected = math.sqrt(abar0) * mask + math.sqrt(1 - abar0) * image
        torch.testing.assert_close(sched.degrade(mask, image, 0), expected, rtol=1e-5, atol=1e-5)
        last = sched.degrade(mask, image, torch.tensor([49, 49]))
        self.assertLess(float((last - image).abs().max()), 2e-3)

    def test_per_sample_timesteps(self):
        sched = ColdDiffusionScheduler(num_train_timesteps=10)
        mask, image = make_pair()
        out = sched.degrade(mask, image, torch.tensor([0, 9]))
        torch.testing.assert_close(out[0:1], sched.degrade(mask[0:1], image[0:1], 0))
        torch.testing.assert_close(out[1:2], sched.degrade(mask[1:2], image[1:2], 9))

    @parameterized.expand(SAMPLERS)
    def test_oracle_returns_true_mask(self, sampler):
        sched = ColdDiffusionScheduler(num_train_timesteps=50, sampler=sampler)
        mask, image = make_pair(1)
        sched.set_timesteps()
        sched.set_image(image)
        x = image.clone()
        for t in sched.timesteps.tolist():
            x, x0 = sched.step(mask, t, x)  # the oracle predicts the true mask every step
        self.assertLess(float((x - mask).abs().max()), 2e-3)
        torch.testing.assert_close((x > 0).float() * 2 - 1, mask)

    @parameterized.expand(SAMPLERS)
    def test_oracle_with_fewer_steps(self, sampler):
        sched = ColdDiffusionScheduler(num_train_timesteps=50, sampler=sampler)
        mask, image = make_pair(2)
        sched.set_timesteps(7)
        self.assertEqual(sched.timesteps[0].item(), 49)
        self.assertEqual(sched.timesteps[-1].item(), 0)
        self.assertEqual(len(sched.timesteps), 7)
        sched.set_image(image)
        x = image.clone()
        for t in sched.timesteps.tolist():
            x, _ = sched.step(mask, t, x)
        torch.testing.assert_close((x > 0).float() * 2 - 1, mask)

    def test_bansal_step_by_hand(self):
        sched = ColdDiffusionScheduler(num_train_timesteps=10, sampler="bansal")
        sched.set_timesteps()
        abar = numpy_cosine_abar(10)
        x0 = torch.full((1, 1, 2, 2), 0.5)
        x_t = torch.full((1, 1, 2, 2), 0.2)
        sched.set_image(torch.full((1, 1, 2, 2), -0.4))
        out, _ = sched.step(x0, 5, x_t)
        d5 = math.sqrt(abar[5]) * 0.5 + math.sqrt(1 - abar[5]) * -0.4
        d4 = math.sqrt(abar[4]) * 0.5 + math.sqrt(1 - abar[4]) * -0.4
        torch.testing.assert_close(out, torch.full_like(x_t, 0.2 - d5 + d4), rtol=1e-5, atol=1e-6)

    def test_reference_step_by_hand(self):
        sched = ColdDiffusionScheduler(num_train_timesteps=10, sampler="reference")
        sched.set_timesteps()
        abar = numpy_cosine_abar(10)
        x0, image = 0.5, -0.4
        a = math.sqrt(abar[5]) * x0 + math.sqrt(1 - abar[5]) * image
        b = math.sqrt(abar[4]) * a + math.sqrt(1 - abar[4]) * image
        sched.set_image(torch.full((1, 1, 2, 2), image))
        out, _ = sched.step(torch.full((1, 1, 2, 2), x0), 5, torch.zeros(1, 1, 2, 2))
        torch.testing.assert_close(out, torch.full((1, 1, 2, 2), x0 - a + b), rtol=1e-5, atol=1e-6)

    def test_x0_is_clamped(self):
        sched = ColdDiffusionScheduler(num_train_timesteps=10, sampler="one_step")
        sched.set_timesteps()
        self.assertEqual(sched.timesteps.tolist(), [9])
        sched.set_image(torch.zeros(1, 1, 2, 2))
        out, x0 = sched.step(torch.full((1, 1, 2, 2), 3.0), 9, torch.zeros(1, 1, 2, 2))
        torch.testing.assert_close(out, torch.ones(1, 1, 2, 2))
        torch.testing.assert_close(x0, torch.ones(1, 1, 2, 2))

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "sampler"):
            ColdDiffusionScheduler(sampler="ddim")
        with self.assertRaisesRegex(ValueError, "schedule"):
            ColdDiffusionScheduler(schedule="nonexistent")
        with self.assertRaisesRegex(ValueError, "num_train_timesteps"):
            ColdDiffusionScheduler(num_train_timesteps=0)
        sched = ColdDiffusionScheduler(num_train_timesteps=10)
        with self.assertRaisesRegex(RuntimeError, "set_timesteps"):
            sched.step(torch.zeros(1, 1, 2, 2), 9, torch.zeros(1, 1, 2, 2))
        sched.set_timesteps()
        with self.assertRaisesRegex(RuntimeError, "set_image"):
            sched.step(torch.zeros(1, 1, 2, 2), 9, torch.zeros(1, 1, 2, 2))
        with self.assertRaisesRegex(ValueError, "num_inference_steps"):
            sched.set_timesteps(11)

    def test_buffer_moves_with_module(self):
        sched = ColdDiffusionScheduler(num_train_timesteps=10).double()
        self.assertEqual(sched.alphas_cumprod.dtype, torch.float64)
        self.assertNotIn("alphas_cumprod", sched.state_dict())  # derived from the config, not saved


if __name__ == "__main__":
    unittest.main()
