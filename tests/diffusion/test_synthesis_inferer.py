from __future__ import annotations

import math
import unittest

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.engines import SupervisedTrainer
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler
from parameterized import parameterized
from torch import nn

from emdiff_components.diffusion import (
    ConditionalSynthesisInferer,
    med_ddpm_cosine_schedule,
    synthesis_scheduler,
)
from emdiff_components.engines import DiffusionTrainingStep



def reference_cosine(T: int, s: float = 0.008):
    """Independent numpy version of the med-ddpm / NeuroDiff formula (its own grid: linspace(0, T+1, T+1) / (T+1))."""
    steps = T + 1
    x = np.linspace(0, steps, steps)
    f = np.cos(((x / steps) + s) / (1 + s) * np.pi * 0.5) ** 2
    abar = f / f[0]
    betas = np.clip(1 - abar[1:] / abar[:-1], 0, 0.999)
    return betas.astype(np.float32), (1.0 - betas).astype(np.float32), np.cumprod(1.0 - betas).astype(np.float32)


class ConvNet(nn.Module):
    """Translation invariant (zero padding apart): a 3x3x3 convolution of [x_t, condition]."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 1, 3, padding=1)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.3)
            self.conv.bias.fill_(0.5)

    def forward(self, x, t, condition):
        return self.conv(torch.cat([x, condition], 1))


class OracleNet(nn.Module):
    """Knows x0 (condition channel 0) and returns the exact noise (x_t - sqrt(abar) x0) / sqrt(1 - abar)."""

    def __init__(self, alphas_cumprod):
        super().__init__()
        self.alphas_cumprod = alphas_cumprod

    def forward(self, x, t, condition):
        abar = self.alphas_cumprod[t].view(-1, 1, 1, 1, 1)
        return (x - abar.sqrt() * condition[:, :1]) / (1 - abar).sqrt()


def l1(prediction, target):
    return (prediction - target).abs().mean()


SAMPLERS = [
    ("ddpm", lambda: synthesis_scheduler("ddpm", 50), None),
    ("ddim", lambda: synthesis_scheduler("ddim", 250), 20),
    ("ddim_eta", lambda: synthesis_scheduler("ddim", 250, eta=0.5), 20),
]


class TestMedDdpmCosineSchedule(unittest.TestCase):
    @parameterized.expand([(250,), (1000,), (7,)])
    def test_matches_independent_numpy(self, T):
        betas, alphas, abar = med_ddpm_cosine_schedule(T)
        ref_betas, ref_alphas, ref_abar = reference_cosine(T)
        self.assertEqual(abar.dtype, torch.float32)
        np.testing.assert_allclose(betas.numpy(), ref_betas, rtol=1e-6, atol=0)
        np.testing.assert_allclose(abar.numpy(), ref_abar, rtol=1e-6, atol=0)
        np.testing.assert_allclose(alphas.numpy(), ref_alphas, rtol=1e-6, atol=0)

    def test_reference_numbers_and_scheduler(self):
        scheduler = synthesis_scheduler("ddpm")
        self.assertEqual(scheduler.num_train_timesteps, 250)
        torch.testing.assert_close(scheduler.alphas_cumprod, med_ddpm_cosine_schedule(250)[2])
        # ends of the T = 250 schedule: beta_0 = 1 - cos(0.006 pi / 1.008)^2 / cos(0.004 pi / 1.008)^2 (by hand),
        # the last beta clipped to 0.999
        self.assertAlmostEqual(float(scheduler.betas[0]), 1.942688e-4, delta=1e-10)
        self.assertAlmostEqual(float(scheduler.betas[-1]), 0.999, places=6)
        self.assertAlmostEqual(float(scheduler.alphas_cumprod[-1]), 3.88598e-8, delta=1e-12)

    def test_same_formula_as_monai_cosine_up_to_float32(self):
        monai_abar = DDPMScheduler(num_train_timesteps=250, schedule="cosine").alphas_cumprod
        torch.testing.assert_close(monai_abar, med_ddpm_cosine_schedule(250)[2], rtol=1e-4, atol=1e-6)

    def test_bad_length_raises(self):
        with self.assertRaisesRegex(ValueError, "num_train_timesteps"):
            med_ddpm_cosine_schedule(0)


class TestSynthesisScheduler(unittest.TestCase):
    @parameterized.expand([("ddpm", DDPMScheduler), ("ddim", DDIMScheduler)])
    def test_kind(self, sampler, cls):
        scheduler = synthesis_scheduler(sampler)
        self.assertIsInstance(scheduler, cls)
        self.assertEqual(scheduler.prediction_type, "epsilon")
        self.assertTrue(scheduler.clip_sample)

    def test_bad_sampler_raises(self):
        with self.assertRaisesRegex(ValueError, "sampler"):
            synthesis_scheduler("euler")


class TestConditionalSynthesisInferer(unittest.TestCase):
    def test_training_loss_by_hand(self):
        image = torch.tensor([0.5, -1.0, 0.25, 1.0]).view(2, 1, 1, 1, 2)
        condition = torch.tensor([1.0, -1.0, -1.0, 1.0, 1.0, 1.0, -1.0, -1.0]).view(2, 2, 1, 1, 2)
        noise = torch.tensor([0.1, -0.2, 0.3, 0.4]).view(2, 1, 1, 1, 2)
        timesteps = torch.tensor([0, 249])
        inferer = ConditionalSynthesisInferer(synthesis_scheduler("ddpm"), roi_size=(1, 2, 2))

        def network(x, t, c):
            return 0.5 * x + c[:, :1]

        out = inferer.training_loss(network, condition, image, l1, timesteps=timesteps, noise=noise)
        abar = reference_cosine(250)[2]
        a = torch.tensor(abar[[0, 249]], dtype=torch.float64).view(2, 1, 1, 1, 1)
        x_t = a.sqrt() * image.double() + (1 - a).sqrt() * noise.double()
        expected = 0.5 * x_t + condition[:, :1].double()
        torch.testing.assert_close(out.prediction.double(), expected, atol=1e-6, rtol=0)
        self.assertAlmostEqual(float(out.loss), float((expected - noise.double()).abs().mean()), places=6)
        torch.testing.assert_close(out.target, noise)
        torch.testing.assert_close(out.timesteps, timesteps)

    def test_training_loss_seeded_and_trainer_kwargs(self):
        inferer = ConditionalSynthesisInferer(synthesis_scheduler("ddpm"), roi_size=(2, 4, 4))
        condition, image = torch.ones(3, 2, 2, 4, 4), torch.zeros(3, 1, 2, 4, 4)
        outs = [
            inferer.training_loss(
                ConvNet(), condition, image, l1, generator=torch.Generator().manual_seed(3), boundary_weight=None,
                epoch_fraction=0.5,
            )
            for _ in range(2)
        ]
        torch.testing.assert_close(outs[0].timesteps, outs[1].timesteps)
        torch.testing.assert_close(outs[0].target, outs[1].target)
        # the generator's first draws: the time steps, then the noise (the target of noise prediction)
        generator = torch.Generator().manual_seed(3)
        torch.testing.assert_close(outs[0].timesteps, torch.randint(0, 250, (3,), generator=generator))
        torch.testing.assert_close(outs[0].target, torch.randn(image.shape, generator=generator))

    def test_trains_through_diffusion_training_step(self):
        network = ConvNet()
        before = network.conv.weight.detach().clone()
        data = [{"condition": torch.ones(1, 2, 2, 8, 8), "image": torch.zeros(1, 1, 2, 8, 8)}] * 2
        trainer = SupervisedTrainer(
            device=torch.device("cpu"),
            max_epochs=1,
            train_data_loader=data,
            network=network,
            optimizer=torch.optim.Adam(network.parameters(), 1e-3),
            loss_function=nn.L1Loss(),
            inferer=ConditionalSynthesisInferer(synthesis_scheduler("ddpm"), roi_size=(2, 8, 8)),
            iteration_update=DiffusionTrainingStep(image_key="condition", label_key="image", weight_key=None),
            decollate=False,
        )
        trainer.run()
        self.assertEqual(trainer.state.iteration, 2)
        self.assertTrue(math.isfinite(trainer.state.output["loss"].item()))
        self.assertFalse(torch.equal(before, network.conv.weight))

    @parameterized.expand(SAMPLERS)
    def test_one_tile_equals_untiled(self, _, make, steps):
        condition = torch.linspace(-1, 1, 2 * 4 * 12 * 12).view(1, 2, 4, 12, 12)
        network = ConvNet()
        scheduler = make()
        # roi larger than the volume: shrunk to one tile covering it
        inferer = ConditionalSynthesisInferer(scheduler, roi_size=(8, 64, 64), num_inference_steps=steps)
        tiled = inferer.sample(condition, network, torch.Generator().manual_seed(4))
        generator = torch.Generator().manual_seed(4)
        x = torch.randn((1, 1, 4, 12, 12), generator=generator)
        scheduler.set_timesteps(steps or scheduler.num_train_timesteps)
        with torch.no_grad():
            for t in scheduler.timesteps.tolist():
                x, _ = scheduler.step(network(x, torch.full((1,), t), condition), t, x, generator=generator)
        torch.testing.assert_close(tiled, x.clamp(-1, 1), atol=1e-4, rtol=0)

    @parameterized.expand(SAMPLERS)
    def test_oracle_returns_x0_through_tiles(self, _, make, steps):
        g = torch.Generator().manual_seed(5)
        x0 = torch.rand((2, 1, 4, 20, 24), generator=g) * 1.8 - 0.9
        condition = torch.cat([x0, -torch.ones_like(x0)], 1)
        scheduler = make()
        inferer = ConditionalSynthesisInferer(scheduler, roi_size=(4, 8, 8), sw_batch_size=3, num_inference_steps=steps)
        out = inferer.sample(condition, OracleNet(scheduler.alphas_cumprod), torch.Generator().manual_seed(0))
        torch.testing.assert_close(out, x0, atol=1e-4, rtol=0)

    def test_seeded_and_call(self):
        condition = torch.zeros(1, 2, 4, 12, 12)
        inferer = ConditionalSynthesisInferer(synthesis_scheduler("ddim"), (4, 8, 8), num_inference_steps=5, seed=7)
        first, second = inferer(condition, ConvNet()), inferer(condition, ConvNet())
        torch.testing.assert_close(first, second, atol=0, rtol=0)
        direct = inferer.sample(condition, ConvNet(), torch.Generator().manual_seed(7))
        torch.testing.assert_close(first, direct, atol=0, rtol=0)
        other = inferer.sample(condition, ConvNet(), torch.Generator().manual_seed(8))
        self.assertFalse(torch.equal(first, other))

    def test_network_stride_rounds_tiles(self):
        class StridedNet(ConvNet):
            stride = (1, 4, 4)

            def forward(self, x, t, condition):
                if any(s % k for s, k in zip(x.shape[2:], self.stride)):
                    raise RuntimeError(f"tile {tuple(x.shape[2:])} not a multiple of the stride")
                return super().forward(x, t, condition)

        inferer = ConditionalSynthesisInferer(synthesis_scheduler("ddim"), (2, 16, 16), num_inference_steps=2)
        out = inferer(torch.zeros(1, 2, 3, 10, 14), StridedNet())
        self.assertEqual(out.shape, (1, 1, 3, 10, 14))

    def test_config_round_trip(self):
        config = {
            "inferer": {
                "_target_": "emdiff_components.diffusion.ConditionalSynthesisInferer",
                "scheduler": "$emdiff_components.diffusion.synthesis_scheduler('ddim', 250)",
                "roi_size": [4, 8, 8],
                "num_inference_steps": 5,
                "seed": 7,
            },
            "imports": ["$import emdiff_components"],
        }
        parser = ConfigParser(config)
        parser.parse()
        inferer = parser.get_parsed_content("inferer")
        direct = ConditionalSynthesisInferer(synthesis_scheduler("ddim"), (4, 8, 8), num_inference_steps=5, seed=7)
        condition = torch.zeros(1, 2, 4, 8, 8)
        torch.testing.assert_close(inferer(condition, ConvNet()), direct(condition, ConvNet()), atol=0, rtol=0)

    @parameterized.expand([("sample",), ("v_prediction",)])
    def test_other_prediction_types_train_their_target(self, kind):
        image, noise = torch.full((1, 1, 1, 1, 2), 0.5), torch.tensor([0.1, -0.2]).view(1, 1, 1, 1, 2)
        scheduler = DDPMScheduler(10, prediction_type=kind)
        inferer = ConditionalSynthesisInferer(scheduler, (1, 2, 2))
        out = inferer.training_loss(lambda x, t, c: x, torch.zeros(1, 2, 1, 1, 2), image, l1,
                                    timesteps=torch.tensor([4]), noise=noise)
        abar = float(scheduler.alphas_cumprod[4])
        expected = image if kind == "sample" else abar**0.5 * noise - (1 - abar) ** 0.5 * image
        torch.testing.assert_close(out.target, expected)

    def test_deprecated_arguments_warn(self):
        scheduler = synthesis_scheduler("ddim")
        with self.assertWarnsRegex(DeprecationWarning, "eta is deprecated"):
            ConditionalSynthesisInferer(scheduler, (4, 8, 8), eta=0.7)
        self.assertEqual(scheduler.eta, 0.7)  # still honoured for one release
        with self.assertWarnsRegex(DeprecationWarning, "stride is deprecated"):
            ConditionalSynthesisInferer(scheduler, (4, 8, 8), stride=(1, 2, 2))
        with self.assertRaisesRegex(ValueError, "needs a scheduler with an eta"):
            with self.assertWarns(DeprecationWarning):
                ConditionalSynthesisInferer(synthesis_scheduler("ddpm"), (4, 8, 8), eta=0.7)

    def test_bad_arguments_raise(self):
        with self.assertRaisesRegex(ValueError, "roi_size"):
            ConditionalSynthesisInferer(synthesis_scheduler(), (1, 4, 8, 8))
        with self.assertRaisesRegex(ValueError, "overlap"):
            ConditionalSynthesisInferer(synthesis_scheduler(), (4, 8, 8), overlap=1.0)
        with self.assertRaisesRegex(ValueError, "num_inference_steps"):
            ConditionalSynthesisInferer(synthesis_scheduler(), (4, 8, 8), num_inference_steps=251)
        inferer = ConditionalSynthesisInferer(synthesis_scheduler(), (4, 8, 8))
        with self.assertRaisesRegex(ValueError, "differ in batch or spatial shape"):
            inferer.training_loss(ConvNet(), torch.zeros(1, 2, 4, 8, 8), torch.zeros(1, 1, 4, 8, 6), l1)
        with self.assertRaisesRegex(ValueError, "condition must be"):
            inferer.sample(torch.zeros(1, 2, 8, 8), ConvNet())


if __name__ == "__main__":
    unittest.main()
