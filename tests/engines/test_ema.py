from __future__ import annotations

import unittest

import torch
from ignite.engine import Engine
from parameterized import parameterized
from torch import nn

from emdiff_components.engines import DelayedEMA


class Scalar(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.register_buffer("count", torch.zeros(1))


class Wrapper(nn.Module):
    """Stands in for DistributedDataParallel: the real network on ``.module``."""

    def __init__(self, module):
        super().__init__()
        self.module = module


def expected_ema(iterations: int, decay: float, every: int, start: int) -> float:
    """The reference rule by hand, with the network's weight equal to the step number after step s."""
    ema = 0.0  # the copy made at construction (weight 0)
    for s in range(1, iterations + 1):
        if s % every == 0:
            ema = float(s) if s < start else decay * ema + (1 - decay) * s
    return ema


# (iterations, decay, update_every, start_step)
CASES = [
    ("before_start_copies", 19, 0.9, 10, 20),
    ("first_average_at_start", 20, 0.9, 10, 20),
    ("between_updates_frozen", 29, 0.9, 10, 20),
    ("second_average", 30, 0.9, 10, 20),
    ("reference_defaults", 2035, 0.995, 10, 2000),
]


class TestDelayedEMA(unittest.TestCase):
    @parameterized.expand(CASES)
    def test_rule_by_hand(self, _, iterations, decay, every, start):
        network = Scalar()
        ema = DelayedEMA(network, decay=decay, update_every=every, start_step=start)
        for step in range(1, iterations + 1):
            with torch.no_grad():
                network.w.fill_(step)
            ema.step(step)
        self.assertAlmostEqual(float(ema.ema_model.w), expected_ema(iterations, decay, every, start), places=3)

    def test_hand_numbers(self):
        # 10: copy -> 10; 20: 0.9 * 10 + 0.1 * 20 = 11; 30: 0.9 * 11 + 0.1 * 30 = 12.9
        self.assertAlmostEqual(expected_ema(30, 0.9, 10, 20), 12.9)
        network = Scalar()
        ema = DelayedEMA(network, decay=0.9, update_every=10, start_step=20)
        values = []
        for step in range(1, 31):
            with torch.no_grad():
                network.w.fill_(step)
                network.count.fill_(step)
            ema.step(step)
            values.append(float(ema.ema_model.w))
        self.assertEqual(values[:9], [0.0] * 9)
        self.assertEqual(values[9:19], [10.0] * 10)
        self.assertAlmostEqual(values[19], 11.0, places=5)
        self.assertAlmostEqual(values[29], 12.9, places=5)
        self.assertEqual(float(ema.ema_model.count), 30.0)  # buffers copied at each update

    def test_attach_runs_every_iteration(self):
        network = Scalar()
        ema = DelayedEMA(Wrapper(network), decay=0.5, update_every=2, start_step=4)

        def train_step(engine, batch):
            with torch.no_grad():
                network.w.fill_(engine.state.iteration)

        engine = Engine(train_step)
        ema.attach(engine)
        ema.attach(engine)  # attaching twice registers once
        engine.run([0] * 7, max_epochs=1)
        # 2: copy 2; 4: 0.5 * 2 + 0.5 * 4 = 3; 6: 0.5 * 3 + 0.5 * 6 = 4.5; 7: no update
        self.assertAlmostEqual(float(ema.ema_model.w), 4.5, places=6)

    def test_copy_unwrapped_frozen_eval(self):
        network = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
        ema = DelayedEMA(Wrapper(network))
        self.assertEqual(list(ema.ema_model.state_dict()), list(network.state_dict()))
        self.assertFalse(ema.ema_model.training)
        self.assertFalse(any(p.requires_grad for p in ema.ema_model.parameters()))
        with torch.no_grad():
            network[0].weight.add_(1.0)
        self.assertFalse(torch.equal(ema.ema_model[0].weight, network[0].weight))  # a copy, not the network
        restored = DelayedEMA(network)
        restored.load_state_dict(ema.state_dict())
        torch.testing.assert_close(restored.ema_model[0].weight, ema.ema_model[0].weight)

    def test_bad_arguments_raise(self):
        with self.assertRaisesRegex(TypeError, "network"):
            DelayedEMA(lambda x: x)
        with self.assertRaisesRegex(ValueError, "decay"):
            DelayedEMA(Scalar(), decay=1.5)
        with self.assertRaisesRegex(ValueError, "update_every"):
            DelayedEMA(Scalar(), update_every=0)
        with self.assertRaisesRegex(ValueError, "start_step"):
            DelayedEMA(Scalar(), start_step=-1)


if __name__ == "__main__":
    unittest.main()
