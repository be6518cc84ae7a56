from __future__ import annotations

import math
import unittest

import numpy as np
import torch
from parameterized import parameterized

from emdiff_components.losses import JointSegmentationLoss


def hand_joint(pred: np.ndarray, target: np.ndarray, dice_w=1.0, bce_w=0.5) -> float:
    """SmoothL1 (beta 1) + Dice + 0.5 BCE written out with numpy, per the BIEDSNet description."""
    d = np.abs(pred - target)
    smooth_l1 = np.where(d < 1, 0.5 * d**2, d - 0.5).mean()
    p = np.clip((pred + 1) / 2, 1e-6, 1 - 1e-6)
    t = (target + 1) / 2
    dices = []
    for b in range(pred.shape[0]):  # MONAI Dice: per sample and channel, then the mean
        for c in range(pred.shape[1]):
            inter = (p[b, c] * t[b, c]).sum()
            dices.append(1 - (2 * inter + 1e-5) / (p[b, c].sum() + t[b, c].sum() + 1e-5))
    bce = -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean()
    return float(smooth_l1 + dice_w * np.mean(dices) + bce_w * bce)


CASES = [
    ("small_errors", [[[[0.9, -0.8], [0.5, -1.0]]]], [[[[1.0, -1.0], [1.0, -1.0]]]]),
    ("large_errors", [[[[-1.0, 1.0], [0.0, 0.2]]]], [[[[1.0, -1.0], [1.0, -1.0]]]]),
    ("two_samples", [[[[0.1, 0.2]]], [[[0.3, -0.9]]]], [[[[1.0, -1.0]]], [[[-1.0, -1.0]]]]),
]


class TestJointSegmentationLoss(unittest.TestCase):
    @parameterized.expand(CASES)
    def test_matches_hand_computation(self, _, pred, target):
        pred, target = np.array(pred, dtype=np.float64), np.array(target, dtype=np.float64)
        value = JointSegmentationLoss()(torch.tensor(pred), torch.tensor(target), timesteps=torch.tensor([3]))
        self.assertAlmostEqual(float(value), hand_joint(pred, target), places=5)

    def test_by_hand_tiny(self):
        # one pixel, pred 0 (p = 0.5), target 1 (t = 1): SmoothL1 0.5; Dice 1 - (1 + e)/(1.5 + e); BCE ln 2
        value = JointSegmentationLoss()(torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1))
        expected = 0.5 + (1 - (1 + 1e-5) / (1.5 + 1e-5)) + 0.5 * math.log(2)
        self.assertAlmostEqual(float(value), expected, places=5)

    def test_deep_supervision_weights(self):
        g = torch.Generator().manual_seed(0)
        target = (torch.rand(2, 1, 16, 16, generator=g) > 0.5).float() * 2 - 1
        main = torch.rand(2, 1, 16, 16, generator=g) * 2 - 1
        aux = [torch.rand(2, 1, s, s, generator=g) * 2 - 1 for s in (8, 4, 2)]
        loss = JointSegmentationLoss()
        single = [loss(main, target)] + [
            loss(a, torch.nn.functional.interpolate(target, size=a.shape[2:], mode="nearest-exact")) for a in aux
        ]
        expected = 0.7 * single[0] + 0.1 * (single[1] + single[2] + single[3])
        torch.testing.assert_close(loss([main, *aux], target), expected)
        self.assertAlmostEqual(sum(loss.weights), 1.0)

    def test_mse_mode_and_gradient(self):
        pred = torch.tensor([[[[0.5, -0.5]]]], requires_grad=True)
        target = torch.tensor([[[[1.0, -1.0]]]])
        value = JointSegmentationLoss(mode="mse")(pred, target)
        self.assertAlmostEqual(value.item(), 0.25)
        value.backward()
        torch.testing.assert_close(pred.grad, torch.tensor([[[[-0.5, 0.5]]]]))

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "mode"):
            JointSegmentationLoss(mode="l2")
        with self.assertRaisesRegex(ValueError, "deep_supervision_weights"):
            JointSegmentationLoss(deep_supervision_weights=(0.7, -0.1))
        with self.assertRaisesRegex(ValueError, "outputs"):
            JointSegmentationLoss(deep_supervision_weights=(1.0,))([torch.zeros(1, 1, 2, 2)] * 2, torch.zeros(1, 1, 2, 2))


if __name__ == "__main__":
    unittest.main()
