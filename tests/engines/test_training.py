from __future__ import annotations

import unittest

import torch
from monai.engines import SupervisedTrainer
from parameterized import parameterized

from emdiff_components.diffusion import DiffusionLossOutput
from emdiff_components.engines import DiffusionTrainingStep


class SquaredErrorInferer:
    """training_loss = mean((w * image - label)^2): a loss whose gradient is known by hand."""

    def training_loss(self, network, image, label, loss_function, **kwargs):
        prediction = network(image)
        loss = loss_function(prediction, label.float())
        return DiffusionLossOutput(loss=loss, prediction=prediction, target=label, timesteps=torch.zeros(1))


def _trainer(network, batches, accumulation_steps, lr=0.1):
    return SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=batches,
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=lr),
        loss_function=torch.nn.MSELoss(),
        inferer=SquaredErrorInferer(),
        iteration_update=DiffusionTrainingStep(weight_key=None, accumulation_steps=accumulation_steps),
    )


# (iterations run, accumulation steps, expected weight): w0 = 1, image x, label y, loss (w x - y)^2,
# gradient 2 x (w x - y); batches (x, y) = (1, 3) then (2, 0)
CASES = [
    ("one_step_each", 2, 1, 1.0 - 0.1 * 2 * 1 * (1 - 3) - 0.1 * 2 * 2 * (1.4 * 2 - 0)),  # w1 = 1.4, then w2
    ("accumulated", 2, 2, 1.0 - 0.1 * (2 * 1 * (1 - 3) + 2 * 2 * (1 * 2 - 0)) / 2),  # mean gradient at w0
    ("pending", 1, 2, 1.0),  # the first iteration of a group takes no step
]


class TestDiffusionTrainingStep(unittest.TestCase):
    @parameterized.expand(CASES)
    def test_gradient_accumulation_by_hand(self, _, iterations, accumulation_steps, expected):
        network = torch.nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            network.weight.fill_(1.0)
        batches = [{"image": torch.tensor([[1.0]]), "label": torch.tensor([[3.0]])},
                   {"image": torch.tensor([[2.0]]), "label": torch.tensor([[0.0]])}][:iterations]
        _trainer(network, batches, accumulation_steps).run()
        self.assertAlmostEqual(network.weight.item(), expected, places=5)

    def test_bad_accumulation_steps(self):
        with self.assertRaisesRegex(ValueError, "DiffusionTrainingStep: accumulation_steps"):
            DiffusionTrainingStep(accumulation_steps=0)


if __name__ == "__main__":
    unittest.main()
