from __future__ import annotations

import tempfile
import unittest

import numpy as np
import torch
from parameterized import parameterized

from emdiff_components.data import DatasetError, write_volume_case, write_volume_dataset_json
from emdiff_components.data.mixing import labelled_sections, mixing_weights, neuron_training_datalist

SECTION_CASES = [(64, 0.04, 3), (48, 0.04, 2), (100, 0.04, 4), (50, 0.2, 10), (7, 1.0, 7), (10, 0.01, 1)]


def _write(root, name, shape=(4, 8, 8)):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, shape, dtype=np.uint8)
    label = np.ones(shape, np.uint32)
    label[:, :, shape[2] // 2:] = 2
    write_volume_case(root, "Tr", name, image, label)
    write_volume_dataset_json(root, name, (10, 10, 10))


class TestLabelledSections(unittest.TestCase):
    @parameterized.expand(SECTION_CASES)
    def test_ceil_of_fraction(self, num, fraction, expected):
        self.assertEqual(labelled_sections(num, fraction), expected)

    def test_bad_fraction(self):
        for bad in (0.0, -0.1, 1.5):
            with self.assertRaisesRegex(ValueError, "fraction must be in"):
                labelled_sections(10, bad)


class TestMixingWeights(unittest.TestCase):
    def test_ratio_split_evenly_within_source(self):
        data = [{"source": "real"}] * 3 + [{"source": "synthetic"}] * 2
        np.testing.assert_allclose(mixing_weights(data, 0.5), [1 / 6] * 3 + [0.25] * 2)
        np.testing.assert_allclose(mixing_weights(data, 0.2), [0.8 / 3] * 3 + [0.1] * 2)
        np.testing.assert_allclose(mixing_weights(data, 0.0), [1 / 3] * 3 + [0.0] * 2)

    def test_sampler_draws_the_ratio(self):
        data = [{"source": "real"}] * 3 + [{"source": "synthetic"}]
        sampler = torch.utils.data.WeightedRandomSampler(
            mixing_weights(data, 0.5), 4000, replacement=True, generator=torch.Generator().manual_seed(0)
        )
        synthetic = np.mean([i == 3 for i in sampler])
        self.assertAlmostEqual(synthetic, 0.5, delta=0.03)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "no synthetic volume"):
            mixing_weights([{"source": "real"}], 0.5)
        with self.assertRaisesRegex(ValueError, "no real volume"):
            mixing_weights([{"source": "synthetic"}], 0.5)
        with self.assertRaisesRegex(ValueError, "in \\[0, 1\\]"):
            mixing_weights([{"source": "real"}], 1.5)
        with self.assertRaisesRegex(ValueError, "'other'"):
            mixing_weights([{"source": "other"}], 0.0)


class TestNeuronTrainingDatalist(unittest.TestCase):
    def test_real_and_synthetic(self):
        with tempfile.TemporaryDirectory() as real, tempfile.TemporaryDirectory() as synth:
            _write(real, "vol")
            _write(synth, "vol_r0")
            entries = neuron_training_datalist(real, 0.04, synth)
            self.assertEqual([(e["name"], e["source"], e["label_fraction"]) for e in entries],
                             [("vol", "real", 0.04), ("vol_r0", "synthetic", 1.0)])
            self.assertEqual(len(neuron_training_datalist(real)), 1)

    def test_name_clash_and_small_volume(self):
        with tempfile.TemporaryDirectory() as real, tempfile.TemporaryDirectory() as synth:
            _write(real, "vol")
            _write(synth, "vol")
            with self.assertRaisesRegex(DatasetError, "named like real ones"):
                neuron_training_datalist(real, 1.0, synth)
            with self.assertRaisesRegex(DatasetError, "smaller than"):
                neuron_training_datalist(real, 1.0, min_shape=(1, 16, 16))


if __name__ == "__main__":
    unittest.main()
