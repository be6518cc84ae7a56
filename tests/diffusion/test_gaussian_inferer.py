from __future__ import annotations

import unittest

import torch
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler
from parameterized import parameterized
from torch import nn

from emdiff_components.diffusion import AlignedDDIMScheduler, GaussianMaskInferer, gaussian_scheduler


class OracleNet(nn.Module):
    """Predicts the true mask, which it reads from the image channel (tiles carry the image)."""

    def forward(self, x, t, image):
        return torch.where(image > 0, 1.0, -1.0).expand_as(x)


class PointwiseNet(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(channels, channels + 1, generator=g) * 0.5)

    def forward(self, x, t, image):
        return torch.tanh(torch.einsum("oc,bchw->bohw", self.weight, torch.cat([x, image], 1)))


def mse(pred, target, timesteps=None):
    return ((pred - target) ** 2).mean()


SCHEDULERS = [
    ("ddpm_full", lambda: DDPMScheduler(num_train_timesteps=100, prediction_type="sample"), None),
    ("ddim_10", lambda: DDIMScheduler(num_train_timesteps=1000, prediction_type="sample"), 10),
]


class TestGaussianMaskInferer(unittest.TestCase):
    @parameterized.expand(SCHEDULERS)
    def test_oracle_returns_true_mask(self, _, make, steps):
        label = torch.zeros(2, 1, 40, 48, dtype=torch.long)
        label[0, :, 5:20, 10:30] = 1
        label[1, :, 20:, :12] = 1
        image = torch.where(label > 0, 0.8, -0.8).float()
        inferer = GaussianMaskInferer(make(), roi_size=16, num_inference_steps=steps)
        out = inferer.sample(image, OracleNet(), torch.Generator().manual_seed(0))
        torch.testing.assert_close(out, inferer.encode(label), atol=1e-3, rtol=0)  # float32 schedule round-off
        torch.testing.assert_close(inferer.decode(out), label)

    def test_resized_members_come_back_at_input_size(self):
        # the oracle works at 32 x 32 from a 48 x 64 image; members are returned per channel block, resized back
        label = torch.zeros(1, 1, 48, 64, dtype=torch.long)
        label[:, :, 12:36, 16:48] = 1
        image = torch.where(label > 0, 0.8, -0.8).float()
        scheduler = DDIMScheduler(num_train_timesteps=1000, prediction_type="sample")
        inferer = GaussianMaskInferer(
            scheduler, roi_size=32, num_inference_steps=5, num_samples=3, image_size=32, output="members"
        )
        members = inferer(image, OracleNet())
        self.assertEqual(tuple(members.shape), (1, 3, 48, 64))
        for k in range(3):  # every member decodes to the truth away from the resampled edge
            torch.testing.assert_close(inferer.decode(members[:, k : k + 1])[..., 14:34, 18:46], label[..., 14:34, 18:46])
        mean = GaussianMaskInferer(scheduler, roi_size=32, num_inference_steps=5, num_samples=3, image_size=32)
        torch.testing.assert_close(mean(image, OracleNet()), members.mean(dim=1, keepdim=True))

    def test_training_loss_by_hand(self):
        scheduler = DDPMScheduler(num_train_timesteps=100, prediction_type="sample")
        inferer = GaussianMaskInferer(scheduler)
        label = torch.tensor([[[[0, 1], [1, 1]]]])
        image = torch.full((1, 1, 2, 2), 0.3)
        noise = torch.tensor([[[[0.5, -1.0], [0.2, 0.0]]]])
        net = PointwiseNet(1)
        out = inferer.training_loss(net, image, label, mse, timesteps=torch.tensor([30]), noise=noise)
        abar = torch.cumprod(1 - torch.linspace(1e-4, 2e-2, 100), 0)[30]  # MONAI's linear_beta default
        m = label.float() * 2 - 1
        x_t = abar.sqrt() * m + (1 - abar).sqrt() * noise
        torch.testing.assert_close(out.loss, mse(net(x_t, None, image), m))

    def test_same_seed_same_ensemble(self):
        scheduler = gaussian_scheduler("ddim", 100, eta=1.0)
        inferer = GaussianMaskInferer(scheduler, roi_size=16, num_inference_steps=5, num_samples=3)
        image = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(1))
        a = inferer.sample_ensemble(image, PointwiseNet(1), torch.Generator().manual_seed(7))
        b = inferer.sample_ensemble(image, PointwiseNet(1), torch.Generator().manual_seed(7))
        self.assertEqual(a.shape, (3, 1, 1, 16, 16))
        torch.testing.assert_close(a, b)
        self.assertGreater(float((a[0] - a[1]).abs().max()), 0)  # members differ (different noise)
        torch.testing.assert_close(inferer(image, PointwiseNet(1)), inferer(image, PointwiseNet(1)))

    def test_deprecated_arguments_warn(self):
        scheduler = AlignedDDIMScheduler(num_train_timesteps=100, prediction_type="sample")
        with self.assertWarnsRegex(DeprecationWarning, "size_divisor is deprecated"):
            GaussianMaskInferer(scheduler, size_divisor=8)
        with self.assertWarnsRegex(DeprecationWarning, "eta is deprecated"):
            GaussianMaskInferer(scheduler, eta=0.4)
        self.assertEqual(scheduler.eta, 0.4)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "prediction_type"):
            GaussianMaskInferer(DDPMScheduler(num_train_timesteps=10))
        with self.assertRaisesRegex(ValueError, "num_samples"):
            GaussianMaskInferer(DDPMScheduler(num_train_timesteps=10, prediction_type="sample"), num_samples=0)


class TestGaussianMaskInfererWithBIEDSNet(unittest.TestCase):
    def test_pieces_fit_together(self):
        """BIEDSNet's deep-supervision list goes through the inferer into JointSegmentationLoss; sampling uses eval mode."""
        from emdiff_components.losses import JointSegmentationLoss
        from emdiff_components.networks import BIEDSNet

        torch.manual_seed(0)
        net = BIEDSNet(channels=(8, 16, 16, 32, 32), num_res_blocks=1)
        inferer = GaussianMaskInferer(
            DDIMScheduler(num_train_timesteps=1000, prediction_type="sample"), roi_size=32, num_inference_steps=2
        )
        label = torch.zeros(2, 1, 32, 32, dtype=torch.long)
        label[:, :, 8:20, 8:20] = 1
        image = inferer.encode(label) * 0.5
        net.train()
        out = inferer.training_loss(net, image, label, JointSegmentationLoss(), generator=torch.Generator().manual_seed(0))
        self.assertEqual(len(out.prediction), 4)
        torch.testing.assert_close(out.loss, JointSegmentationLoss()(out.prediction, out.target))
        out.loss.backward()
        self.assertGreater(float(net.out.weight.grad.abs().sum()), 0.0)  # the loss reaches the output head
        net.eval()
        sample = inferer(image, net)
        self.assertEqual(sample.shape, (2, 1, 32, 32))
        # __call__ samples with a generator seeded by the inferer's seed (0)
        torch.testing.assert_close(sample, inferer.sample(image, net, torch.Generator().manual_seed(0)))


if __name__ == "__main__":
    unittest.main()
