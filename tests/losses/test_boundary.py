from __future__ import annotations

import unittest

import torch
from parameterized import parameterized

import emdiff_components.losses as losses_pkg
from emdiff_components.losses.boundary import BoundaryAwareMSELoss, boundary_time_exponent

# case name, t, T, gamma, expected (by hand)
EXPONENT_CASES = [
    ("t0", 0, 50, 0.8, 0.8**0.8),  # 0.83651...
    ("tT", 50, 50, 0.8, 0.0),
    ("middle", 25, 50, 0.8, 0.4**0.8),  # (0.8 * 25 / 50) ** 0.8 = 0.48045...
    ("gamma_one", 10, 40, 1.0, 0.75),
    ("gamma_two", 0, 10, 2.0, 4.0),
]

# Two samples, one channel, 1 x 2 pixels: x0_hat - x0 = [[1, 2]] and [[3, -1]].
PRED = torch.tensor([[[[1.0, 2.0]]], [[[3.0, -1.0]]]])
TARGET = torch.zeros(2, 1, 1, 2)
INV_DIST = torch.tensor([[[[0.25, 1.0]]], [[[0.0, 0.5]]]])
TIMESTEPS = torch.tensor([0, 50])  # sample 1 at t = T: exponent 0, W_att = 1 everywhere (0 ** 0 = 1)
P0 = 0.8**0.8
W_ATT = [0.25**P0, 1.0, 1.0, 1.0]
SQUARED = [1.0, 4.0, 9.0, 1.0]
WEIGHTED_MEAN = sum(w * s for w, s in zip(W_ATT, SQUARED)) / 4
PLAIN_MEAN = sum(SQUARED) / 4

# case name, kwargs, boundary weight, expected loss
LOSS_CASES = [
    ("multiply", {}, INV_DIST, WEIGHTED_MEAN),
    ("add", {"combine": "add"}, INV_DIST, PLAIN_MEAN + 0.25 * WEIGHTED_MEAN),
    ("add_weight_1", {"combine": "add", "boundary_loss_weight": 1.0}, INV_DIST, PLAIN_MEAN + WEIGHTED_MEAN),
    ("sum", {"reduction": "sum"}, INV_DIST, 4 * WEIGHTED_MEAN),
    ("plain_mse", {}, None, PLAIN_MEAN),
]

# case name, input shape, target shape, weight shape, timesteps, pattern
FORWARD_ERRORS = [
    ("target_shape", (2, 1, 4, 4), (2, 1, 4, 5), (2, 1, 4, 4), [0, 1], r"input \(2, 1, 4, 4\), target \(2, 1, 4, 5\)"),
    ("weight_spatial", (2, 1, 4, 4), (2, 1, 4, 4), (2, 1, 4, 5), [0, 1], r"boundary_weight \(2, 1, 4, 5\), input"),
    ("weight_batch", (2, 1, 4, 4), (2, 1, 4, 4), (1, 1, 4, 4), [0, 1], "boundary_weight"),
    ("weight_channels", (2, 2, 4, 4), (2, 2, 4, 4), (2, 3, 4, 4), [0, 1], "boundary_weight"),
    ("missing_timesteps", (2, 1, 4, 4), (2, 1, 4, 4), (2, 1, 4, 4), None, "timesteps are required"),
    ("timesteps_shape", (2, 1, 4, 4), (2, 1, 4, 4), (2, 1, 4, 4), [0, 1, 2], "timesteps must be"),
    ("timesteps_range", (2, 1, 4, 4), (2, 1, 4, 4), (2, 1, 4, 4), [0, 51], r"\[0, 50\]"),
]

INIT_ERRORS = [
    ({"combine": "max"}, "combine"),
    ({"reduction": "median"}, "reduction"),
    ({"gamma": 0.0}, "gamma"),
    ({"num_train_timesteps": 0}, "num_train_timesteps"),
    ({"boundary_loss_weight": -1.0}, "boundary_loss_weight"),
]


class TestBoundaryTimeExponent(unittest.TestCase):
    @parameterized.expand(EXPONENT_CASES)
    def test_values(self, _, t, num_steps, gamma, expected):
        out = boundary_time_exponent(torch.tensor([t]), num_steps, gamma)
        self.assertAlmostEqual(out.item(), expected, places=6)

    def test_hand_numbers_and_monotone(self):
        out = boundary_time_exponent(torch.arange(51), 50)
        self.assertAlmostEqual(out[0].item(), 0.836512, places=5)  # exp(0.8 * ln 0.8)
        self.assertAlmostEqual(out[25].item(), 0.480450, places=5)  # exp(0.8 * ln 0.4)
        self.assertTrue(bool((out[1:] < out[:-1]).all()))
        self.assertEqual(out.dtype, torch.get_default_dtype())

    @parameterized.expand([("negative", [-1]), ("beyond_T", [51])])
    def test_range_error(self, _, t):
        with self.assertRaisesRegex(ValueError, "boundary_time_exponent: timesteps"):
            boundary_time_exponent(torch.tensor(t), 50)

    def test_argument_errors(self):
        with self.assertRaisesRegex(ValueError, "boundary_time_exponent: num_train_timesteps"):
            boundary_time_exponent(torch.tensor([0]), 0)
        with self.assertRaisesRegex(ValueError, "boundary_time_exponent: gamma"):
            boundary_time_exponent(torch.tensor([0]), 50, gamma=-0.5)


class TestBoundaryAwareMSELoss(unittest.TestCase):
    @parameterized.expand(LOSS_CASES)
    def test_hand_values(self, _, kwargs, weight, expected):
        loss_fn = BoundaryAwareMSELoss(num_train_timesteps=50, **kwargs)
        loss = loss_fn(PRED, TARGET, boundary_weight=weight, timesteps=TIMESTEPS)
        self.assertAlmostEqual(loss.item(), expected, places=5)

    def test_plain_is_torch_mse(self):
        gen = torch.Generator().manual_seed(0)
        pred, target = torch.rand(3, 2, 5, 5, generator=gen), torch.rand(3, 2, 5, 5, generator=gen)
        expected = torch.nn.functional.mse_loss(pred, target)
        torch.testing.assert_close(BoundaryAwareMSELoss()(pred, target), expected)
        # weights of ones (or t = T) reduce the boundary loss to the plain MSE as well
        ones = torch.ones(3, 1, 5, 5)
        torch.testing.assert_close(BoundaryAwareMSELoss()(pred, target, ones, torch.tensor([0, 7, 49])), expected)

    def test_none_reduction_elementwise(self):
        out = BoundaryAwareMSELoss(reduction="none")(PRED, TARGET, boundary_weight=INV_DIST, timesteps=TIMESTEPS)
        self.assertEqual(out.shape, (2, 1, 1, 2))
        torch.testing.assert_close(out.flatten(), torch.tensor([w * s for w, s in zip(W_ATT, SQUARED)]))

    def test_gradient(self):
        # d/dx mean(W (x - y)^2) = 2 W (x - y) / N, and no gradient into the weights.
        pred = PRED.clone().requires_grad_(True)
        weight = INV_DIST.clone().requires_grad_(True)
        BoundaryAwareMSELoss()(pred, TARGET, boundary_weight=weight, timesteps=TIMESTEPS).backward()
        diff = [1.0, 2.0, 3.0, -1.0]
        expected = torch.tensor([2 * w * d / 4 for w, d in zip(W_ATT, diff)]).reshape(2, 1, 1, 2)
        torch.testing.assert_close(pred.grad, expected)
        self.assertIsNone(weight.grad)

    def test_broadcast_over_channels(self):
        gen = torch.Generator().manual_seed(1)
        pred, target = torch.rand(2, 3, 4, 4, generator=gen), torch.rand(2, 3, 4, 4, generator=gen)
        weight = torch.rand(2, 1, 4, 4, generator=gen)
        t = torch.tensor([3, 30])
        loss_fn = BoundaryAwareMSELoss()
        expanded = weight.expand(2, 3, 4, 4)
        torch.testing.assert_close(loss_fn(pred, target, weight, t), loss_fn(pred, target, expanded, t))
        exponent = torch.tensor([(0.8 * 47 / 50) ** 0.8, (0.8 * 20 / 50) ** 0.8]).reshape(2, 1, 1, 1)
        expected = ((weight**exponent) * (pred - target) ** 2).mean()
        torch.testing.assert_close(loss_fn(pred, target, weight, t), expected)

    @parameterized.expand(FORWARD_ERRORS)
    def test_forward_errors(self, _, in_shape, target_shape, weight_shape, timesteps, pattern):
        t = None if timesteps is None else torch.tensor(timesteps)
        with self.assertRaisesRegex(ValueError, pattern):
            BoundaryAwareMSELoss()(torch.zeros(in_shape), torch.zeros(target_shape), torch.ones(weight_shape), t)

    @parameterized.expand(INIT_ERRORS)
    def test_init_errors(self, kwargs, pattern):
        with self.assertRaisesRegex(ValueError, f"BoundaryAwareMSELoss: {pattern}"):
            BoundaryAwareMSELoss(**kwargs)

    def test_exported(self):
        self.assertLessEqual({"BoundaryAwareMSELoss", "boundary_time_exponent"}, set(losses_pkg.__all__))


if __name__ == "__main__":
    unittest.main()
