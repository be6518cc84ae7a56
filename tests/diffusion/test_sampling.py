from __future__ import annotations

import io
import unittest
from contextlib import redirect_stderr

import torch
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler
from parameterized import parameterized

from emdiff_components.diffusion import (
    AlignedDDIMScheduler,
    ColdDiffusionScheduler,
    reverse_diffusion,
    synthesis_scheduler,
)

MASK = torch.tensor([[[[1.0, -1.0], [-1.0, 1.0]]]])
IMAGE = torch.tensor([[[[0.2, -0.3], [0.7, 0.1]]]])


def _cold():
    scheduler = ColdDiffusionScheduler(num_train_timesteps=50)
    scheduler.set_image(IMAGE)
    return scheduler


# every scheduler of the package, driven through the same call; the oracle predicts the clean mask (x0) or, for the
# noise-predicting schedulers, the noise that takes x_t to the mask
SCHEDULERS = [
    ("cold", _cold, "sample", 5),
    ("monai_ddpm", lambda: DDPMScheduler(50, prediction_type="sample"), "sample", 50),
    ("monai_ddim", lambda: DDIMScheduler(50, prediction_type="sample"), "sample", 10),
    ("aligned_ddim", lambda: AlignedDDIMScheduler(50, prediction_type="sample"), "sample", 7),
    ("aligned_ddim_eta", lambda: AlignedDDIMScheduler(50, prediction_type="sample", eta=1.0), "sample", 7),
    ("med_ddpm_cosine_ddpm", lambda: synthesis_scheduler("ddpm", 30), "epsilon", 30),
    ("med_ddpm_cosine_ddim", lambda: synthesis_scheduler("ddim", 30), "epsilon", 6),
]


def oracle(scheduler, kind):
    def predict(sample, t):
        if kind == "sample":
            return MASK.expand_as(sample)
        abar = scheduler.alphas_cumprod[t]
        return (sample - abar.sqrt() * MASK) / (1 - abar).sqrt()

    return predict


class TestReverseDiffusion(unittest.TestCase):
    @parameterized.expand(SCHEDULERS)
    def test_oracle_reaches_the_mask(self, _, make, kind, steps):
        scheduler = make()
        start = IMAGE.clone() if kind == "sample" and isinstance(scheduler, ColdDiffusionScheduler) else torch.randn(
            1, 1, 2, 2, generator=torch.Generator().manual_seed(0))
        out = reverse_diffusion(scheduler, oracle(scheduler, kind), start, steps, torch.Generator().manual_seed(1))
        torch.testing.assert_close(out, MASK, atol=2e-3, rtol=0)

    def test_same_generator_same_output(self):
        runs = []
        for _ in range(2):
            scheduler = DDPMScheduler(20, prediction_type="sample")
            start = torch.zeros(1, 1, 2, 2)
            runs.append(reverse_diffusion(scheduler, lambda x, t: 0.5 * x, start, 20, torch.Generator().manual_seed(4)))
        torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
        other = reverse_diffusion(DDPMScheduler(20, prediction_type="sample"), lambda x, t: 0.5 * x,
                                  torch.zeros(1, 1, 2, 2), 20, torch.Generator().manual_seed(5))
        self.assertGreater(float((other - runs[0]).abs().max()), 1e-3)

    def test_visits_the_scheduler_steps_in_order(self):
        scheduler = AlignedDDIMScheduler(10, prediction_type="sample")
        seen = []
        reverse_diffusion(scheduler, lambda x, t: seen.append(t) or x, torch.zeros(1), 3)
        self.assertEqual(seen, [9, 4, 0])

    def test_progress_bar(self):
        stream = io.StringIO()
        with redirect_stderr(stream):
            reverse_diffusion(DDPMScheduler(5, prediction_type="sample"), lambda x, t: x, torch.zeros(1, 1, 2), 5,
                              progress=True, desc="unit-test-bar")
        self.assertIn("unit-test-bar", stream.getvalue())
        self.assertIn("0/5", stream.getvalue())


if __name__ == "__main__":
    unittest.main()
