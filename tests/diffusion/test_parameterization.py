from __future__ import annotations

import math
import unittest

import torch
from monai.networks.schedulers import DDPMScheduler
from parameterized import parameterized

from emdiff_components.diffusion import PREDICTION_TYPES, check_prediction_type, split_prediction, training_target

# x_t = sqrt(abar) x0 + sqrt(1 - abar) eps at abar = 0.64: sqrt = 0.8 and 0.6 (numbers by hand)
X0 = torch.tensor([0.5, -1.0])
EPS = torch.tensor([1.0, 2.0])
X_T = 0.8 * X0 + 0.6 * EPS  # [1.0, 0.4]
V = 0.8 * EPS - 0.6 * X0  # [0.5, 2.2]
OUTPUTS = {"epsilon": EPS, "sample": X0, "v_prediction": V}


class TestSplitPrediction(unittest.TestCase):
    @parameterized.expand([(kind,) for kind in PREDICTION_TYPES])
    def test_recovers_x0_and_eps(self, kind):
        x0, eps = split_prediction(OUTPUTS[kind], X_T, 0.64, kind)
        torch.testing.assert_close(x0, X0)
        torch.testing.assert_close(eps, EPS)

    def test_by_hand_values(self):
        torch.testing.assert_close(X_T, torch.tensor([1.0, 0.4]))
        torch.testing.assert_close(V, torch.tensor([0.5, 2.2]))

    def test_per_sample_alpha(self):
        # two samples at abar 0.64 and 0.36: each uses its own
        abar = torch.tensor([0.64, 0.36])
        x0 = torch.tensor([[0.5], [0.5]])
        eps = torch.tensor([[1.0], [1.0]])
        x_t = abar.sqrt()[:, None] * x0 + (1 - abar).sqrt()[:, None] * eps
        got_x0, got_eps = split_prediction(eps, x_t, abar, "epsilon")
        torch.testing.assert_close(got_x0, x0)
        torch.testing.assert_close(got_eps, eps)

    def test_matches_monai_velocity(self):
        scheduler = DDPMScheduler(num_train_timesteps=10)
        t = torch.tensor([3])
        v = scheduler.get_velocity(X0[None], EPS[None], t)
        abar = float(scheduler.alphas_cumprod[3])
        torch.testing.assert_close(training_target(X0[None], EPS[None], abar, "v_prediction"), v)

    def test_unknown_type(self):
        with self.assertRaisesRegex(ValueError, "prediction_type must be one of"):
            split_prediction(X0, X_T, 0.64, "noise")


class TestTrainingTarget(unittest.TestCase):
    @parameterized.expand([(kind,) for kind in PREDICTION_TYPES])
    def test_target_is_the_output_that_recovers_the_pair(self, kind):
        torch.testing.assert_close(training_target(X0, EPS, 0.64, kind), OUTPUTS[kind])

    def test_v_by_hand(self):
        self.assertTrue(math.isclose(float(training_target(X0, EPS, 0.64, "v_prediction")[1]), 2.2, rel_tol=1e-6))


class TestCheckPredictionType(unittest.TestCase):
    def test_accepts_and_refuses(self):
        self.assertEqual(check_prediction_type(DDPMScheduler(10, prediction_type="sample"), ("sample",), "X"), "sample")
        with self.assertRaisesRegex(ValueError, "X: the scheduler must be built with prediction_type='sample'"):
            check_prediction_type(DDPMScheduler(10, prediction_type="epsilon"), ("sample",), "X")


if __name__ == "__main__":
    unittest.main()
