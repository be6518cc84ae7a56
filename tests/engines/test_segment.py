"""segment_volumes end to end on a volume whose right answer is known: two touching boxes of different intensity."""

from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch
from parameterized import parameterized

from emdiff_components.data import open_volume, read_image, read_voxel_size, write_image
from emdiff_components.engines import IntensityScaledPredictor, segment_volumes
from emdiff_components.metrics import instance_scores


class EqualNeighbours(torch.nn.Module):
    """A stand-in affinity network with a known output: 1 where a voxel equals its previous neighbour along z, y, x.

    The first plane of each axis has no previous neighbour and gets 1 (the replicate convention of the targets).
    """

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        affs = []
        for axis in (2, 3, 4):
            same = torch.ones_like(x)
            n = x.shape[axis]
            same.narrow(axis, 1, n - 1).copy_((x.narrow(axis, 1, n - 1) == x.narrow(axis, 0, n - 1)).float())
            affs.append(same)
        return torch.cat(affs + affs[: self.channels - 3], dim=1)


def _boxes(shape=(6, 40, 36)):
    """Two boxes side by side along x, intensities 60 and 180, labels 1 and 2, a band of label 0 between them."""
    image = np.full(shape, 60, np.uint8)
    image[..., shape[2] // 2:] = 180
    label = np.ones(shape, np.uint32)
    label[..., shape[2] // 2:] = 2
    label[..., shape[2] // 2 - 1: shape[2] // 2 + 1] = 0  # truth label 0 is not scored
    return image, label


class TestIntensityScaledPredictor(unittest.TestCase):
    def test_scaling_and_clip(self):
        net = IntensityScaledPredictor(torch.nn.Identity(), (0, 255))
        torch.testing.assert_close(net(torch.tensor([-10.0, 0.0, 51.0, 255.0, 300.0])),
                                   torch.tensor([0.0, 0.0, 0.2, 1.0, 1.0]))
        with self.assertRaisesRegex(ValueError, "high > low"):
            IntensityScaledPredictor(torch.nn.Identity(), (5, 5))


class TestSegmentVolumes(unittest.TestCase):
    @parameterized.expand([("waterz",), ("multicut",), ("mutex",)])
    def test_two_boxes_are_found(self, method):
        image, label = _boxes()
        with tempfile.TemporaryDirectory() as tmp:
            write_image(Path(tmp, "raw.tif"), image)
            write_image(Path(tmp, "truth.tif"), label)
            entry = {"image": str(Path(tmp, "raw.tif")), "label": str(Path(tmp, "truth.tif")), "name": "boxes",
                     "voxel_size": (29.0, 6.0, 6.0)}
            summary = segment_volumes([entry], EqualNeighbours(), Path(tmp, "out"), block_shape=(4, 16, 16),
                                      context=(1, 8, 8), methods=(method,), progress=False)
            labels = read_image(Path(tmp, "out", method, "boxes.tif"))
            self.assertEqual(labels.shape, image.shape)
            self.assertEqual(read_voxel_size(Path(tmp, "out", method, "boxes.tif")), (29.0, 6.0, 6.0))
            # one segment per box: every box's voxels share one id, and the two ids differ
            left, right = labels[..., :10], labels[..., -10:]
            self.assertEqual(len(np.unique(left)), 1)
            self.assertEqual(len(np.unique(right)), 1)
            self.assertNotEqual(left.flat[0], right.flat[0])
            stored = json.loads(Path(tmp, "out", method, "instance_metrics.json").read_text())
            self.assertAlmostEqual(stored["mean"]["vi"], 0.0, places=9)
            self.assertAlmostEqual(stored["mean"]["arand"], 0.0, places=9)
            self.assertEqual(summary[method]["mean"], instance_scores(labels, label))
            with open_volume(Path(tmp, "out", "affinities", "boxes.h5")) as stored:
                affinities = stored[...]
            expected = EqualNeighbours()(torch.as_tensor(image, dtype=torch.float32)[None, None] / 255)[0].numpy()
            np.testing.assert_array_equal(affinities, expected)  # blockwise with context 1 = whole volume
            self.assertTrue(Path(tmp, "out", method, "figure.png").is_file())

    def test_unlabelled_volume_gets_labels_and_no_report(self):
        image, _ = _boxes((4, 32, 32))
        with tempfile.TemporaryDirectory() as tmp:
            write_image(Path(tmp, "raw.tif"), image)
            summary = segment_volumes([{"image": str(Path(tmp, "raw.tif")), "name": "v"}], EqualNeighbours(),
                                      Path(tmp, "out"), block_shape=(4, 16, 16), context=(1, 8, 8), progress=False)
            self.assertNotIn("waterz", summary)
            self.assertEqual(len(np.unique(read_image(Path(tmp, "out", "waterz", "v.tif")))), 2)
            self.assertFalse(Path(tmp, "out", "waterz", "instance_metrics.json").exists())

    def test_errors_before_any_volume_is_read(self):
        missing = [{"image": "/nonexistent/raw.tif", "name": "v"}]
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaisesRegex(ValueError, "predicts 2 channels"):
                segment_volumes(missing, torch.nn.Conv3d(1, 2, 1), tmp, block_shape=(2, 8, 8), context=(0, 0, 0))
            with self.assertRaisesRegex(ValueError, "subset of"):
                segment_volumes(missing, EqualNeighbours(), tmp, methods=("agglomerate",))
            with self.assertRaisesRegex(ValueError, "empty"):
                segment_volumes([], EqualNeighbours(), tmp)
            self.assertEqual(list(Path(tmp).iterdir()), [])


if __name__ == "__main__":
    unittest.main()
