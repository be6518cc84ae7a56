from __future__ import annotations

import unittest

import torch
from parameterized import parameterized
from torch import nn

from emdiff_components.diffusion import ColdDiffusionInferer, ColdDiffusionScheduler


class OracleNet(nn.Module):
    """Returns a fixed mask whatever the input (an oracle that knows the truth), cropped to the tile it sees."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.mask = mask
        self.calls = 0

    def forward(self, x, t, cond):
        self.calls += 1
        # the oracle reads the mask from the condition channel where we stored it (tiles carry the condition)
        return torch.where(cond > 0.5, 1.0, -1.0).expand_as(x)


class PointwiseNet(nn.Module):
    """A 1x1-convolution network: tiling cannot change its output, so tiled == untiled."""

    def __init__(self, channels: int):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(channels, channels + 1, generator=g) * 0.5)

    def forward(self, x, t, cond):
        z = torch.cat([x, cond], 1)
        return torch.einsum("oc,bchw->bohw", self.weight, z) * (1 + 0.01 * t.float().view(-1, 1, 1, 1))


def squared_error(pred, target, boundary_weight=None, timesteps=None):
    return ((pred - target) ** 2).mean()


class TestColdDiffusionInferer(unittest.TestCase):
    @parameterized.expand([("bansal",), ("reference",)])
    def test_oracle_sampling_recovers_mask_tiled(self, sampler):
        # image 40 x 56 with tiles 16 x 16: the sampler runs on tiles, the oracle answers per tile
        label = torch.zeros(1, 1, 40, 56, dtype=torch.long)
        label[..., 5:20, 10:40] = 1
        image = torch.where(label > 0, 0.9, -0.9).float()
        inferer = ColdDiffusionInferer(ColdDiffusionScheduler(50, sampler=sampler), num_classes=2, roi_size=16)
        out = inferer(image, OracleNet(label))
        self.assertEqual(out.shape, (1, 1, 40, 56))
        torch.testing.assert_close(inferer.decode(out), label)

    def test_one_step_is_first_estimate(self):
        image = torch.linspace(-1, 1, 32 * 32).reshape(1, 1, 32, 32)
        net = PointwiseNet(1)
        out = ColdDiffusionInferer(ColdDiffusionScheduler(50, sampler="one_step"), roi_size=32)(image, net)
        expected = net(image, torch.tensor([49]), image).clamp(-1, 1)  # x_T = I, t = T-1
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)

    def test_tiled_equals_untiled(self):
        image = torch.linspace(-1, 1, 48 * 64).reshape(1, 1, 48, 64)
        net = PointwiseNet(1)
        sched = ColdDiffusionScheduler(10)
        whole = ColdDiffusionInferer(sched, roi_size=(48, 64))(image, net)
        tiled = ColdDiffusionInferer(sched, roi_size=(16, 16), overlap=0.5)(image, net)
        torch.testing.assert_close(tiled, whole, rtol=1e-4, atol=1e-5)

    def test_one_tile_when_image_fits(self):
        image = torch.zeros(1, 1, 24, 24)
        net = OracleNet(None)
        ColdDiffusionInferer(ColdDiffusionScheduler(5), roi_size=64)(image, net)
        self.assertEqual(net.calls, 5)  # one forward per step: 24 x 24 rounds up to a single 24 x 24 tile

    def test_sampling_is_deterministic(self):
        image = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(3))
        net = PointwiseNet(3)
        inferer = ColdDiffusionInferer(ColdDiffusionScheduler(10), num_classes=3, roi_size=16)
        torch.testing.assert_close(inferer(image, net), inferer(image, net))

    def test_training_loss_by_hand(self):
        sched = ColdDiffusionScheduler(10)
        inferer = ColdDiffusionInferer(sched, num_classes=3)
        label = torch.tensor([[[[0, 1], [2, 1]]]])
        image = torch.full((1, 1, 2, 2), 0.25)
        net = PointwiseNet(3)
        t = torch.tensor([4])
        out = inferer.training_loss(net, image, label, squared_error, timesteps=t)
        m = torch.nn.functional.one_hot(label[:, 0], 3).movedim(-1, 1).float() * 2 - 1
        abar = sched.alphas_cumprod[4]
        x_t = abar.sqrt() * m + (1 - abar).sqrt() * image
        expected = ((net(x_t, t, image) - m) ** 2).mean()
        torch.testing.assert_close(out.loss, expected)
        torch.testing.assert_close(out.target, m)
        out.loss.backward()
        expected_grad = torch.autograd.grad(((net(x_t, t, image) - m) ** 2).mean(), net.weight)[0]
        torch.testing.assert_close(net.weight.grad, expected_grad)

    def test_timestep_sampling(self):
        inferer = ColdDiffusionInferer(ColdDiffusionScheduler(50), curriculum=True)
        # sc = int(sqrt(e / E) * T), at most T - 1
        self.assertEqual([inferer.first_timestep(f) for f in (0.0, 0.25, 0.5, 1.0)], [0, 25, 35, 49])
        self.assertEqual(ColdDiffusionInferer(ColdDiffusionScheduler(50)).first_timestep(0.9), 0)
        drawn = inferer.sample_timesteps(8, torch.Generator().manual_seed(1), low=25)
        torch.testing.assert_close(drawn, torch.randint(25, 50, (8,), generator=torch.Generator().manual_seed(1)))

    def test_training_uses_the_curriculum(self):
        inferer = ColdDiffusionInferer(ColdDiffusionScheduler(50), curriculum=True)
        label, image = torch.zeros(4, 1, 2, 2, dtype=torch.long), torch.zeros(4, 1, 2, 2)
        out = inferer.training_loss(PointwiseNet(1), image, label, squared_error, epoch_fraction=0.25,
                                    generator=torch.Generator().manual_seed(2))
        torch.testing.assert_close(out.timesteps, torch.randint(25, 50, (4,), generator=torch.Generator().manual_seed(2)))

    def test_deprecated_size_divisor_warns(self):
        with self.assertWarnsRegex(DeprecationWarning, "size_divisor is deprecated"):
            ColdDiffusionInferer(ColdDiffusionScheduler(5), size_divisor=8)

    def test_encode_decode_round_trip(self):
        label = torch.tensor([[[[0, 3], [2, 1]]]])
        inferer = ColdDiffusionInferer(ColdDiffusionScheduler(5), num_classes=4)
        self.assertEqual(inferer.encode(label).shape, (1, 4, 2, 2))
        torch.testing.assert_close(inferer.decode(inferer.encode(label)), label)

    def test_errors(self):
        sched = ColdDiffusionScheduler(5)
        with self.assertRaisesRegex(ValueError, "num_classes"):
            ColdDiffusionInferer(sched, num_classes=1)
        with self.assertRaisesRegex(ValueError, "overlap"):
            ColdDiffusionInferer(sched, overlap=1.0)
        with self.assertRaisesRegex(ValueError, "label values"):
            ColdDiffusionInferer(sched, num_classes=2).encode(torch.tensor([[[[0, 2]]]]))


if __name__ == "__main__":
    unittest.main()
