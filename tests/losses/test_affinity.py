"""Tests of ClassBalancedBCELoss against a numpy computation of the public weight map and BCE."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from parameterized import parameterized

from emdiff_components.losses import ClassBalancedBCELoss


def _numpy_loss(p, t, mask=None, balance=True):
    """The public ``build_weight_map`` per sample, times torch's BCE (logs clamped at -100), in float64."""
    p, t = p.astype(np.float64), t.astype(np.float64)
    m = np.ones_like(t) if mask is None else np.broadcast_to(mask, t.shape).astype(np.float64)
    bce = -(t * np.maximum(np.log(p), -100) + (1 - t) * np.maximum(np.log(1 - p), -100))
    w = np.ones_like(t)
    if balance:
        for b in range(t.shape[0]):
            f = np.clip((t[b] * m[b]).sum() / m[b].sum(), 1e-3, 1)
            w[b] = t[b] * (1 - f) / f + (1 - t[b])
    return w * bce * m, m


def _batch(seed=0, shape=(3, 3, 2, 4, 5)):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.01, 0.99, size=shape).astype(np.float32)
    t = (rng.uniform(size=shape) < np.array([0.7, 0.1, 0.0])[:, None, None, None, None]).astype(np.float32)
    return p, t  # sample 2 has no positive: f clipped to 1e-3


BAD = [
    ("shape", (2, 3, 4), (2, 3, 5), "must have one shape"),
    ("no_channel", (4,), (4,), "must have one shape"),
]


class TestClassBalancedBCELoss(unittest.TestCase):
    def test_matches_numpy(self):
        p, t = _batch()
        expected, _ = _numpy_loss(p, t)
        out = ClassBalancedBCELoss()(torch.from_numpy(p), torch.from_numpy(t))
        self.assertAlmostEqual(out.item(), expected.mean(), places=5)
        none = ClassBalancedBCELoss(reduction="none")(torch.from_numpy(p), torch.from_numpy(t))
        np.testing.assert_allclose(none.numpy(), expected, rtol=1e-5)
        total = ClassBalancedBCELoss(reduction="sum")(torch.from_numpy(p), torch.from_numpy(t))
        self.assertAlmostEqual(total.item() / expected.sum(), 1.0, places=5)

    def test_hand_values(self):
        # one sample, 4 affinities, 1 positive: f = 1/4, positive weight (1 - f) / f = 3; BCE -log(0.5) everywhere;
        # a second sample of all positives has f = 1 and weighs 0.
        p = torch.full((2, 1, 4), 0.5)
        t = torch.tensor([[[1.0, 0.0, 0.0, 0.0]], [[1.0, 1.0, 1.0, 1.0]]])
        out = ClassBalancedBCELoss(reduction="none")(p, t)
        np.testing.assert_allclose(out.numpy(), np.log(2) * np.array([[[3, 1, 1, 1]], [[0, 0, 0, 0]]]), rtol=1e-6)
        # the log clamp: a certain wrong prediction costs 100 (times its weight 3), not infinity
        hard = ClassBalancedBCELoss(reduction="none")(torch.tensor([[0.0, 0.0, 0.0, 0.0]]), t[0])
        np.testing.assert_allclose(hard.numpy(), [[300.0, 0.0, 0.0, 0.0]])

    def test_plain_bce_without_balance(self):
        p, t = _batch(1)
        out = ClassBalancedBCELoss(class_balance=False)(torch.from_numpy(p), torch.from_numpy(t))
        torch.testing.assert_close(out, torch.nn.BCELoss()(torch.from_numpy(p), torch.from_numpy(t)))

    def test_mask(self):
        p, t = _batch(2)
        mask = (np.random.default_rng(3).uniform(size=(3, 1, 2, 4, 5)) < 0.6).astype(np.float32)
        expected, m = _numpy_loss(p, t, mask)
        out = ClassBalancedBCELoss()(torch.from_numpy(p), torch.from_numpy(t), torch.from_numpy(mask))
        self.assertAlmostEqual(out.item(), expected.sum() / m.sum(), places=5)

    def test_gradient_only_through_input(self):
        p = torch.tensor([[0.2, 0.7]], requires_grad=True)
        t = torch.tensor([[1.0, 0.0]])  # f = 1/2: both weights 1
        ClassBalancedBCELoss(reduction="sum")(p, t).backward()
        # d/dp of -log p at 0.2 and of -log(1 - p) at 0.7
        torch.testing.assert_close(p.grad, torch.tensor([[-1 / 0.2, 1 / 0.3]]))

    @parameterized.expand(BAD)
    def test_bad_shapes(self, _, a, b, match):
        with self.assertRaisesRegex(ValueError, f"ClassBalancedBCELoss: .*{match}"):
            ClassBalancedBCELoss()(torch.full(a, 0.5), torch.zeros(b))

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "ClassBalancedBCELoss: input must hold probabilities"):
            ClassBalancedBCELoss()(torch.tensor([[1.5]]), torch.tensor([[1.0]]))
        with self.assertRaisesRegex(ValueError, "ClassBalancedBCELoss: mask of shape"):
            ClassBalancedBCELoss()(torch.full((2, 3), 0.5), torch.zeros(2, 3), torch.ones(3, 2))
        with self.assertRaisesRegex(ValueError, "ClassBalancedBCELoss: reduction"):
            ClassBalancedBCELoss(reduction="max")
        with self.assertRaisesRegex(ValueError, "ClassBalancedBCELoss: min_fraction"):
            ClassBalancedBCELoss(min_fraction=0)


if __name__ == "__main__":
    unittest.main()
