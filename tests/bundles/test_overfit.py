"""Correctness check of the segmentation bundles: the smallest ECSD and BIEDSNet overfit four real crops.

Four 64 x 64 crops of ISBI 2012 mitochondria (slices z = 0..3 of ``isbi2012_em``; per slice the window, on a 4-pixel
grid, whose foreground fraction is closest to 0.3, so predicting all foreground scores Dice ~0.46 and cannot pass) are
fitted with the bundle's own pieces, parsed from ``bundles/<b>/configs/train.json`` with small widths: the
deterministic transforms (intensity scaling, ECSD's boundary map), ``network_def``, the training inferer (degradation
or noising, time steps), the loss, and the sampler the bundle validates with (ECSD: ``train#inferer``, the cold
sampler of ``diffusion_scheduler``; BIEDSNet: ``validate#inferer``, DDIM). A broken degradation, loss, sampler or time
embedding in a bundle keeps the training Dice below 0.9 and fails the test.

Deliberately not the paper's values, to stay near a minute on one CPU thread: Adam at a learning rate 25x (ECSD,
1e-3) and 20x (BIEDSNet, 2e-3) the bundles' (no warm-up, no weight decay, no EMA), the four crops as one batch, 10
sampling steps, BIEDSNet with one ResBlock per level. Negative control: the same sampler with the untrained network
must score clearly lower (< 0.7), so the threshold is not met by construction.
"""

from __future__ import annotations

import unittest
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from parameterized import parameterized

from emdiff_components.data import read_image

REPO = Path(__file__).resolve().parents[2]
CROP, TARGET_FRACTION, GRID, SLICES = 64, 0.3, 4, (0, 1, 2, 3)
PASS_DICE, UNTRAINED_MAX_DICE = 0.9, 0.7

# (bundle, train.json overrides, sampler id, Adam learning rate, iterations). Measured on a busy 2-core machine with one
# thread: ECSD (4 x 32 attention, filter_size 256) 0.98 Dice after 50 iterations (0.9 CPU s each), BIEDSNet 0.997 after
# 100 (0.18 CPU s each). ECSD runs here with narrower attention and FF-Parser maps on the crop grid.
CASES = [
    (
        "ecsd",
        {"channels": [8, 16, 32, 64], "attention_heads": 2, "attention_head_channels": 8, "filter_size": [CROP, CROP],
         "use_checkpointing": False, "patch_size": [CROP, CROP], "num_inference_steps": 10, "progress": False},
        "train#inferer", 1e-3, 60,
    ),
    (
        "biedsnet",
        {"channels": [8, 16, 32, 64, 128], "num_res_blocks": 1, "patch_size": [CROP, CROP], "image_size": None,
         "val_num_inference_steps": 10, "val_num_samples": 1, "progress": False},
        "validate#inferer", 2e-3, 100,
    ),
]


def select_crops(volume: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per slice of ``SLICES`` the ``CROP``-square window (top-left corner on a ``GRID`` grid, first in raster order on a
    tie) whose foreground fraction is closest to ``TARGET_FRACTION``; ``(N, CROP, CROP)`` images and 0/1 labels."""
    images, labels = [], []
    for z in SLICES:
        m = (mask[z] > 0).astype(np.float64)
        integral = np.pad(m.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        sums = integral[CROP:, CROP:] - integral[:-CROP, CROP:] - integral[CROP:, :-CROP] + integral[:-CROP, :-CROP]
        fraction = sums[::GRID, ::GRID] / CROP**2
        y, x = (GRID * i for i in np.unravel_index(np.argmin(np.abs(fraction - TARGET_FRACTION)), fraction.shape))
        images.append(volume[z, y : y + CROP, x : x + CROP])
        labels.append((mask[z, y : y + CROP, x : x + CROP] > 0).astype(np.int64))
    return np.stack(images), np.stack(labels)


def dice(pred: torch.Tensor, truth: torch.Tensor) -> float:
    """Foreground Dice ``2 |P & G| / (|P| + |G|)`` pooled over all crops."""
    p, g = pred > 0, truth > 0
    return 2.0 * float((p & g).sum()) / float(p.sum() + g.sum())


class TestBundlesOverfit(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _shared(self, shared_data):
        self.shared = shared_data

    def crops(self) -> tuple[np.ndarray, np.ndarray]:
        folder = self.shared / "isbi2012_em"
        return select_crops(read_image(folder / "train-volume.tif"), read_image(folder / "train-mito.tif"))

    def test_crops_cannot_be_passed_by_all_foreground(self):
        _, labels = self.crops()
        fractions = labels.reshape(len(SLICES), -1).mean(1)
        np.testing.assert_allclose(fractions, TARGET_FRACTION, atol=0.01)
        self.assertLess(dice(torch.ones(labels.shape), torch.as_tensor(labels)), 0.5)

    @parameterized.expand(CASES)
    def test_overfits_four_crops(self, bundle, overrides, sampler_id, lr, iterations):
        parser = ConfigParser()
        parser.read_config(str(REPO / "bundles" / bundle / "configs" / "train.json"))
        parser.update(overrides)
        # the bundle's own deterministic transforms after the file loader: intensity scaling, ECSD's boundary map
        transforms = parser.get_parsed_content("train#deterministic_transforms")[1:]
        items = []
        for image, label in zip(*self.crops()):
            item = {"image": image[None].astype(np.float32), "label": label[None]}
            for transform in transforms:
                item = transform(item)
            items.append(item)
        batch = {k: torch.stack([torch.as_tensor(i[k]) for i in items]) for k in items[0]}
        image, label = batch["image"].float(), batch["label"].long()
        weight = batch["boundary_weight"].float() if "boundary_weight" in batch else None
        self.assertEqual(weight is None, bundle != "ecsd")

        torch.manual_seed(0)
        network = parser.get_parsed_content("network_def")
        train_inferer = parser.get_parsed_content("train#inferer")
        loss_function = parser.get_parsed_content("loss")
        sampler = parser.get_parsed_content(sampler_id)

        def training_dice() -> float:
            network.eval()
            with torch.no_grad():
                return dice(sampler.decode(sampler(image, network)), label)

        untrained = training_dice()
        self.assertLess(untrained, UNTRAINED_MAX_DICE, f"{bundle}: the untrained network already scores {untrained}")

        optimizer = torch.optim.Adam(network.parameters(), lr=lr)
        generator = torch.Generator().manual_seed(0)
        network.train()
        for _ in range(iterations):
            optimizer.zero_grad()
            out = train_inferer.training_loss(
                network, image, label, loss_function=loss_function, boundary_weight=weight, generator=generator
            )
            out.loss.backward()
            optimizer.step()
        trained = training_dice()
        self.assertGreater(trained, PASS_DICE, f"{bundle}: training Dice {trained} after {iterations} iterations")
        self.assertGreater(trained - untrained, 0.2)


if __name__ == "__main__":
    unittest.main()
