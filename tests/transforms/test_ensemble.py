from __future__ import annotations

import unittest

import numpy as np
import torch
from parameterized import parameterized

from emdiff_components.transforms import fuse_ensemble, staple

# ---------------------------------------------------------------------------------------------------------------------
# Hand case with 3 members (A, B, C), one spatial dim, threshold 0.5. Pixel groups (values of A, B, C):
#   X  (1, 1, 1)        x20  agreed foreground
#   Y  (0, 0, 0)        x20  agreed background
#   Z  (0, 1, 1)        x1   B and C vote foreground, A does not
#   P  (0, 1, 0)        x10  B alone (B has many lone false positives)
#   Q  (0, 0, 1)        x10  C alone
#   m1 (1.0, 0.4, 0.4)  x1   binarised (1, 0, 0)
#   m2 (0.6, 0.6, 0.0)  x1   binarised (1, 1, 0)
# mean:     Z 2/3 > .5 -> 1; m1 (1 + .4 + .4)/3 = 0.6 -> 1; m2 1.2/3 = 0.4 -> 0
# majority: Z 2 of 3 -> 1;   m1 1 of 3 -> 0;                  m2 2 of 3 -> 1
# STAPLE:   prior = mean of the binarised votes = (60 + 2 + 10 + 10 + 1 + 2) / (3 * 63) = 85 / 189.
#   EM converges to the self-consistent solution T = X + m2 (21 pixels), background 42 pixels. Check it on paper:
#   M-step on T: p_A = 21/21 = 1, p_B = 21/21 = 1, p_C = 20/21;
#                q_A = (42 - 1 [m1]) / 42 = 41/42, q_B = (20 [Y] + 10 [Q] + 1 [m1]) / 42 = 31/42, q_C = 31/42 likewise.
#   E-step: p_A = 1 gives a_i = 0 wherever A votes 0 (Z, P, Q, Y) and p_B = 1 wherever B votes 0 (m1) -> W = 0;
#   at m2: a = prior * 1 * 1 * (1/21) = 0.0214, b = (1 - prior) * (1/42) * (11/42) * (31/42) = 0.0025 -> W = 0.89;
#   at X all three agree -> W ~ 1. So STAPLE: Z -> 0, m1 -> 0, m2 -> 1: it overrules the majority at Z because A
#   never misses foreground, and B and C are unreliable (specificity 31/42).
# All three masks differ pairwise.
GROUPS = [
    ("X", (1.0, 1.0, 1.0), 20),
    ("Y", (0.0, 0.0, 0.0), 20),
    ("Z", (0.0, 1.0, 1.0), 1),
    ("P", (0.0, 1.0, 0.0), 10),
    ("Q", (0.0, 0.0, 1.0), 10),
    ("m1", (1.0, 0.4, 0.4), 1),
    ("m2", (0.6, 0.6, 0.0), 1),
]
EXPECTED = {  # group -> (mean, majority, staple)
    "X": (1, 1, 1),
    "Y": (0, 0, 0),
    "Z": (1, 1, 0),
    "P": (0, 0, 0),
    "Q": (0, 0, 0),
    "m1": (1, 0, 0),
    "m2": (0, 1, 1),
}


def hand_members() -> tuple[torch.Tensor, dict[str, list[int]]]:
    columns, where = [], {}
    for name, values, count in GROUPS:
        where[name] = list(range(len(columns), len(columns) + count))
        columns += [values] * count
    return torch.tensor(columns).T.reshape(3, 1, 1, -1), where


HAND_CASES = [("mean", 0), ("majority", 1), ("staple", 2)]

# (name, member values at one pixel, method, expected mask): small K, incl. the majority tie rule
SMALL_CASES = [
    ("k4_tie_majority_background", [1.0, 1.0, 0.2, 0.2], "majority", 0),  # 2 of 4 votes: tie -> background
    ("k4_tie_mean_foreground", [1.0, 1.0, 0.2, 0.2], "mean", 1),  # mean 2.4 / 4 = 0.6 > 0.5
    ("k4_three_votes", [0.9, 0.9, 0.9, 0.0], "majority", 1),  # 3 of 4 > half
    ("k2_tie_majority", [1.0, 0.3], "majority", 0),  # 1 of 2: tie -> background
    ("k2_mean", [1.0, 0.3], "mean", 1),  # mean 0.65
    ("k2_mean_at_threshold", [1.0, 0.0], "mean", 0),  # mean 0.5 is not > 0.5
    ("k1_majority", [0.7], "majority", 1),  # 1 of 1
]

IDENTICAL_CASES = [(m, k) for m in ("mean", "majority", "staple") for k in (1, 3, 4)]

ERROR_CASES = [
    ("no_members", torch.zeros(0, 1, 1, 4), {}),
    ("too_few_dims", torch.zeros(3, 1, 4), {}),
    ("unknown_method", torch.zeros(3, 1, 1, 4), {"method": "vote"}),
    ("threshold_zero", torch.zeros(3, 1, 1, 4), {"threshold": 0.0}),
    ("threshold_one", torch.zeros(3, 1, 1, 4), {"threshold": 1.0}),
    ("value_above_one", torch.full((3, 1, 1, 4), 1.5), {}),
    ("value_negative", torch.full((3, 1, 1, 4), -0.1), {}),
    ("value_nan", torch.full((3, 1, 1, 4), float("nan")), {}),
]

STAPLE_ERROR_CASES = [
    ("no_members", torch.zeros(0, 4), {}),
    ("no_spatial", torch.zeros(3), {}),
    ("not_binary", torch.full((3, 4), 0.5), {}),
    ("max_iterations", torch.zeros(3, 4), {"max_iterations": 0}),
    ("tolerance", torch.zeros(3, 4), {"tolerance": 0.0}),
    ("prior", torch.zeros(3, 4), {"prior": 1.5}),
]


def numpy_staple(d: np.ndarray, max_iterations: int = 100, tolerance: float = 1e-6):
    """Independent reference: a direct loop over Warfield 2004's E-step and M-step; d is (K, N) in {0, 1}."""
    k, n = d.shape
    prior = d.mean()
    p, q = np.full(k, 0.99), np.full(k, 0.99)

    def e_step(p, q):
        w = np.empty(n)
        for i in range(n):
            a, b = prior, 1 - prior
            for j in range(k):
                a *= p[j] if d[j, i] == 1 else 1 - p[j]
                b *= q[j] if d[j, i] == 0 else 1 - q[j]
            w[i] = a / (a + b)
        return w

    for _ in range(max_iterations):
        w = e_step(p, q)
        p_new, q_new = np.empty(k), np.empty(k)
        for j in range(k):
            p_new[j] = sum(w[i] for i in range(n) if d[j, i] == 1) / w.sum()
            q_new[j] = sum(1 - w[i] for i in range(n) if d[j, i] == 0) / (1 - w).sum()
        change = max(np.abs(p_new - p).max(), np.abs(q_new - q).max())
        p, q = p_new, q_new
        if change < tolerance:
            break
    return e_step(p, q), p, q


class TestFuseEnsembleFunction(unittest.TestCase):
    @parameterized.expand(HAND_CASES)
    def test_hand_case(self, method, column):
        members, where = hand_members()
        mask, _ = fuse_ensemble(members, method=method)
        self.assertEqual(mask.dtype, torch.int64)
        for name, indices in where.items():
            self.assertTrue(bool((mask[0, 0, indices] == EXPECTED[name][column]).all()), f"{method} at group {name}")

    def test_hand_staple_performance(self):
        members, where = hand_members()
        weights, p, q = staple((members > 0.5).float()[:, 0, 0])
        # the fixed point derived in the comment above, with the soft posteriors x at X (b > 0 there since
        # q_j < 1, so x is just below 1) and w at m2 (hand estimate 0.89); W ~ 0 elsewhere. M-step (eqs. 18, 19):
        # p_A = p_B = 1, p_C = 20x / (20x + w); background mass M = 42 + 20 (1 - x) + (1 - w),
        # q_A = 41 / M, q_B = 31 / M (Y, Q, m1), q_C = (31 + 1 - w) / M (Y, P, m1, m2)
        x, w = float(weights[where["X"]].mean()), float(weights[where["m2"][0]])
        self.assertTrue(0.99 < x < 1.0 and 0.8 < w < 0.95, (x, w))
        mass = 42 + 20 * (1 - x) + (1 - w)
        np.testing.assert_allclose(p.numpy(), [1.0, 1.0, 20 * x / (20 * x + w)], atol=1e-4)
        np.testing.assert_allclose(q.numpy(), [41 / mass, 31 / mass, (32 - w) / mass], atol=1e-4)

    def test_hand_uncertainty_equals_numpy_std(self):
        members, where = hand_members()
        _, uncertainty = fuse_ensemble(members)
        expected = (members.numpy() > 0.5).astype(np.float64).std(axis=0)
        np.testing.assert_allclose(uncertainty.numpy(), expected, atol=1e-7)
        # hand values: all agree -> 0, 2 of 3 votes -> sqrt(2/3 * 1/3) = sqrt(2)/3
        self.assertEqual(float(uncertainty[0, 0, where["X"][0]]), 0.0)
        self.assertAlmostEqual(float(uncertainty[0, 0, where["Z"][0]]), 2**0.5 / 3, places=6)

    def test_even_split_uncertainty(self):
        members = torch.tensor([1.0, 0.0, 1.0, 0.0]).reshape(4, 1, 1, 1, 1)
        _, uncertainty = fuse_ensemble(members)
        self.assertEqual(float(uncertainty), 0.5)

    @parameterized.expand(SMALL_CASES)
    def test_small_k(self, _, values, method, expected):
        members = torch.tensor(values).reshape(-1, 1, 1, 1)
        mask, _ = fuse_ensemble(members, method=method)
        self.assertEqual(int(mask), expected)

    @parameterized.expand(IDENTICAL_CASES)
    def test_identical_members(self, method, k):
        g = torch.Generator().manual_seed(k)
        member = (torch.rand(2, 1, 8, 8, 3, generator=g) < 0.4).float()  # B = 2, 3 spatial dims
        mask, uncertainty = fuse_ensemble(member.expand(k, -1, -1, -1, -1, -1), method=method)
        torch.testing.assert_close(mask, member.long())
        self.assertEqual(float(uncertainty.abs().max()), 0.0)

    def test_staple_per_batch_item(self):
        members, _ = hand_members()
        flipped = 1 - (members > 0.5).float()
        mask, _ = fuse_ensemble(torch.cat([members, flipped], dim=1), method="staple")
        torch.testing.assert_close(mask[1, 0], staple(flipped[:, 0, 0])[0].ge(0.5).long())
        torch.testing.assert_close(mask[0:1], fuse_ensemble(members, method="staple")[0])

    @parameterized.expand(ERROR_CASES)
    def test_errors(self, _, members, kwargs):
        with self.assertRaisesRegex(ValueError, "fuse_ensemble"):
            fuse_ensemble(members, **kwargs)

    @unittest.skipUnless(torch.cuda.is_available(), "needs CUDA")
    def test_cuda_matches_cpu(self):
        members, _ = hand_members()
        for method in ("mean", "majority", "staple"):
            cpu = fuse_ensemble(members, method=method)
            gpu = fuse_ensemble(members.cuda(), method=method)
            torch.testing.assert_close(gpu[0].cpu(), cpu[0])
            torch.testing.assert_close(gpu[1].cpu(), cpu[1])


class TestStaple(unittest.TestCase):
    def test_perfect_rater_recovered(self):
        g = torch.Generator().manual_seed(0)
        truth = (torch.rand(64, 64, generator=g) < 0.3).float()
        raters = [truth]
        flips = (0.02, 0.05, 0.10, 0.15)  # noisy raters: each pixel flipped with this probability
        for flip in flips:
            noise = (torch.rand(64, 64, generator=g) < flip).float()
            raters.append((truth + noise) % 2)
        members = torch.stack(raters)
        # the majority of the 5 raters is wrong at a few pixels, where noisy raters outvote the perfect one
        self.assertGreater(int(((2 * members.sum(0) > 5).float() != truth).sum()), 0)
        weights, p, q = staple(members)
        self.assertGreater(float(p[0]), 0.99)
        self.assertGreater(float(q[0]), 0.99)
        torch.testing.assert_close((weights >= 0.5).float(), truth)
        # the noisy raters' estimates are close to 1 - flip rate
        np.testing.assert_allclose(p[1:].numpy(), 1 - np.array(flips), atol=0.03)
        np.testing.assert_allclose(q[1:].numpy(), 1 - np.array(flips), atol=0.03)

    def test_matches_numpy_reference(self):
        rng = np.random.default_rng(3)
        truth = rng.random(36) < 0.4
        d = np.stack([truth ^ (rng.random(36) < f) for f in (0.1, 0.2, 0.3)]).astype(np.float64)
        expected_w, expected_p, expected_q = numpy_staple(d)
        weights, p, q = staple(torch.from_numpy(d).reshape(3, 6, 6))
        np.testing.assert_allclose(weights.numpy().ravel(), expected_w, atol=1e-6)
        np.testing.assert_allclose(p.numpy(), expected_p, atol=1e-6)
        np.testing.assert_allclose(q.numpy(), expected_q, atol=1e-6)

    def test_explicit_prior_and_bool_input(self):
        d = np.array([[1, 1, 0, 0, 1], [1, 0, 0, 1, 1], [1, 1, 0, 0, 0]], dtype=bool)
        w_default = staple(torch.from_numpy(d))[0]
        w_prior = staple(torch.from_numpy(d), prior=float(d.mean()))[0]
        torch.testing.assert_close(w_default, w_prior)
        expected_w, expected_p, expected_q = numpy_staple(d.astype(np.float64))
        np.testing.assert_allclose(w_default.numpy(), expected_w, atol=1e-6)
        # a prior far from the votes' mean moves every posterior towards it
        w_low = staple(torch.from_numpy(d), prior=0.05)[0]
        self.assertTrue(bool((w_low <= w_default + 1e-6).all()) and float((w_default - w_low).max()) > 0.01)

    def test_all_background(self):
        weights, p, q = staple(torch.zeros(3, 4, 4))
        self.assertEqual(float(weights.max()), 0.0)
        self.assertFalse(bool(torch.isnan(p).any() or torch.isnan(q).any()))

    @parameterized.expand(STAPLE_ERROR_CASES)
    def test_errors(self, _, members, kwargs):
        with self.assertRaisesRegex(ValueError, "staple"):
            staple(members, **kwargs)


if __name__ == "__main__":
    unittest.main()
