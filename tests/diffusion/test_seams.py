"""Every inferer samples large images in blended tiles without seams: measured on translation-invariant networks."""

from __future__ import annotations

import unittest

import torch
import torch.nn.functional as F
from parameterized import parameterized
from torch import nn

from emdiff_components.diffusion import (
    ColdDiffusionInferer,
    ColdDiffusionScheduler,
    ConditionalSynthesisInferer,
    GaussianMaskInferer,
    gaussian_scheduler,
    network_stride,
    synthesis_scheduler,
    tiled_prediction,
)
from emdiff_components.metrics import seam_score


class BoxNoisePredictor(nn.Module):
    """Noise prediction of the x0 estimate ``a * box(x_t) + b * box(mean condition)`` (3^3 box), for synthesis.

    At a tile's faces zero padding lowers both boxes (the constant condition's by a third), the effect blending must
    hide; ``x_t`` gives the result a texture (the interior variation).
    """

    def __init__(self, alphas_cumprod: torch.Tensor, a: float = 0.8, b: float = 0.3):
        super().__init__()
        self.alphas_cumprod, self.a, self.b = alphas_cumprod, a, b

    def forward(self, x, t, condition):
        abar = self.alphas_cumprod[t].view(-1, 1, 1, 1, 1)
        x0 = self.a * F.avg_pool3d(x, 3, 1, 1) + self.b * F.avg_pool3d(condition.mean(1, keepdim=True), 3, 1, 1)
        return (x - abar.sqrt() * x0) / (1 - abar).sqrt()


class BoxMaskPredictor(nn.Module):
    """x0 prediction ``a * box(x_t) + b * box(mean image)`` (3^2 box), for the segmentation inferers."""

    def __init__(self, a: float = 0.8, b: float = 0.3):
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x, t, image):
        return self.a * F.avg_pool2d(x, 3, 1, 1) + self.b * F.avg_pool2d(image.mean(1, keepdim=True), 3, 1, 1)


def synthesis_case(sampler: str, num_train_timesteps: int, steps: int | None):
    def make(roi: int, overlap: float):
        scheduler = synthesis_scheduler(sampler, num_train_timesteps)
        inferer = ConditionalSynthesisInferer(scheduler, (4, roi, roi), overlap=overlap, num_inference_steps=steps)
        return inferer, BoxNoisePredictor(scheduler.alphas_cumprod)

    return make, -torch.ones(4, 2, 4, 48, 48), (3, 4)


def cold_case():
    def make(roi: int, overlap: float):
        scheduler = ColdDiffusionScheduler(50)
        return ColdDiffusionInferer(scheduler, roi_size=roi, overlap=overlap, num_inference_steps=10), BoxMaskPredictor()

    # the image is the start of cold sampling: it carries the texture
    image = 0.3 * torch.randn(8, 1, 48, 48, generator=torch.Generator().manual_seed(0)) - 0.5
    return make, image, (2, 3)


def gaussian_case():
    def make(roi: int, overlap: float):
        scheduler = gaussian_scheduler("ddim", 1000)
        return GaussianMaskInferer(scheduler, roi_size=roi, overlap=overlap, num_inference_steps=10), BoxMaskPredictor()

    return make, -torch.ones(8, 1, 48, 48), (2, 3)


CASES = [
    ("synthesis_ddpm", *synthesis_case("ddpm", 50, None)),
    ("synthesis_ddim", *synthesis_case("ddim", 250, 20)),
    ("cold", *cold_case()),
    ("gaussian_ddim", *gaussian_case()),
]


def with_tiling(inferer, **tiling):
    """The inferer with another blending of its tiles (MONAI's floor, or plain tiling), for comparison."""

    def predict(network, sample, condition, t):
        return tiled_prediction(
            network, sample, condition, t, inferer.roi_size, inferer.sw_batch_size, inferer.overlap,
            stride=network_stride(network), **tiling,
        )

    inferer.predict = predict
    return inferer


class TestSeams(unittest.TestCase):
    @parameterized.expand(CASES)
    def test_blended_tiles_leave_no_seam(self, _, make, condition, axes):
        # tiles 16 wide along Y and X, the image 48
        roi, overlap = 16, 0.25

        def sample(roi_size, overlap, **tiling):
            inferer, network = make(roi_size, overlap)
            return with_tiling(inferer, **tiling).sample(condition, network, torch.Generator().manual_seed(0))

        blended = sample(roi, overlap)
        untiled = sample(48, overlap)
        plain = sample(roi, 0.0, mode="constant")  # the NeuroDiff reference's tiling: no overlap, no blending
        floored = sample(roi, overlap, min_weight=1e-3)  # MONAI's Gaussian, floored at 1e-3
        for axis in axes:
            score = seam_score(blended, roi, overlap, axis)
            self.assertLess(score, 1.2)
            self.assertLess(score, seam_score(untiled, roi, overlap, axis) + 0.15)
            # the statistic does see seams where they are
            self.assertGreater(seam_score(plain, roi, 0.0, axis), 2.0)
            self.assertGreater(seam_score(floored, roi, overlap, axis), score + 0.1)
        self.assertLess(float((blended - untiled).abs().max()), 0.05)

    def test_default_predict_is_the_blended_one(self):
        make, condition, _ = CASES[3][1:]
        inferer, network = make(16, 0.25)
        direct = inferer.sample(condition, network, torch.Generator().manual_seed(0))
        inferer, network = make(16, 0.25)
        explicit = with_tiling(inferer).sample(condition, network, torch.Generator().manual_seed(0))
        torch.testing.assert_close(direct, explicit, rtol=0, atol=0)


if __name__ == "__main__":
    unittest.main()
