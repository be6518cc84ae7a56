"""seam_score and tile_borders: border planes as MONAI places tiles, and a score that tells a seamed image from a
smooth one (the end-to-end check on sampled images is tests/diffusion/test_seams.py)."""

from __future__ import annotations

import unittest

import torch
import torch.nn.functional as F
from monai.data.utils import dense_patch_slices
from parameterized import parameterized

from emdiff_components.metrics import seam_score, tile_borders

# (name, size, roi, overlap, inner tile faces); the border planes are these faces +- 1
BORDERS = [
    ("no_overlap", 48, 16, 0.0, {16, 32}),
    ("quarter_overlap", 48, 16, 0.25, {12, 16, 24, 28, 32, 40}),
    ("cpu_tiles_of_512", 512, 256, 0.25, {192, 256, 448}),
    ("one_tile", 48, 48, 0.25, set()),
    ("tile_larger_than_volume", 32, 64, 0.25, set()),
]

# (name, size, roi, overlap) for parity with MONAI's own tile placement
PLACEMENTS = [("a", 48, 16, 0.25), ("b", 512, 256, 0.25), ("c", 100, 30, 0.5), ("d", 37, 8, 0.1), ("e", 64, 16, 0.0)]

BAD = [
    ("no_border", {"volume": torch.zeros(8, 32), "roi": 32, "overlap": 0.25, "axis": 1}),
    ("no_interior", {"volume": torch.zeros(8, 12), "roi": 4, "overlap": 0.0, "axis": 1, "margin": 7}),
    ("overlap_one", {"volume": torch.zeros(8, 32), "roi": 8, "overlap": 1.0, "axis": 1}),
]


def smooth_texture(shape, seed: int = 0) -> torch.Tensor:
    """Noise blurred by a 5 x 5 box: every row / column jumps about as much as any other."""
    noise = torch.rand(1, 1, shape[0] + 4, shape[1] + 4, generator=torch.Generator().manual_seed(seed))
    return F.avg_pool2d(noise, 5, 1)[0, 0]


class TestTileBorders(unittest.TestCase):
    @parameterized.expand(BORDERS)
    def test_border_planes(self, _, size, roi, overlap, faces):
        self.assertEqual(tile_borders(size, roi, overlap), {f + k for f in faces for k in (-1, 0, 1)})

    @parameterized.expand(PLACEMENTS)
    def test_faces_match_monai_placement(self, _, size, roi, overlap):
        slices = dense_patch_slices((size,), (roi,), (max(1, int(roi * (1 - overlap))),))
        faces = {int(s[0].start) for s in slices} | {int(s[0].stop) for s in slices}
        expected = {f + k for f in faces if 0 < f < size for k in (-1, 0, 1)}
        self.assertEqual(tile_borders(size, roi, overlap), expected)

    def test_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "tile_borders: size and roi"):
            tile_borders(0, 16, 0.25)
        with self.assertRaisesRegex(ValueError, "tile_borders: overlap"):
            tile_borders(48, 16, -0.1)


class TestSeamScore(unittest.TestCase):
    def test_value_by_hand(self):
        # a ramp (every jump 1) with an extra step of 2 across plane 8, the face of 8-wide tiles: jumps 1 .. 3 .. 1
        ramp = torch.arange(16.0) + 2.0 * (torch.arange(16) >= 8)
        self.assertAlmostEqual(seam_score(ramp.expand(4, 16), 8, 0.0, axis=1), 3.0, places=12)
        self.assertAlmostEqual(seam_score(torch.arange(16.0).expand(4, 16), 8, 0.0, axis=1), 1.0, places=12)

    def test_seamed_image_scores_high_and_smooth_image_about_one(self):
        smooth = smooth_texture((128, 128))
        # every 32-wide tile (overlap 0.25: starts 0, 24, 48, 72, 96) offset by its own constant along X
        seamed = smooth.clone()
        for i, start in enumerate((0, 24, 48, 72, 96)):
            seamed[:, start : start + 32] = smooth[:, start : start + 32] + 0.2 * (i % 2)
        smooth_score, seamed_score = (seam_score(v, 32, 0.25, axis=1) for v in (smooth, seamed))
        self.assertLess(smooth_score, 1.3)
        self.assertGreater(seamed_score, 2.0)
        # the seams run along Y only: across Y the seamed image is as smooth as the original
        self.assertLess(seam_score(seamed, 32, 0.25, axis=0), 1.3)

    def test_invariances(self):
        volume = smooth_texture((64, 64)).reshape(1, 1, 64, 64)
        score = seam_score(volume, 16, 0.25, axis=-1)
        # places=5: the scaled image is rounded to float32
        self.assertAlmostEqual(seam_score(127.5 * volume + 127.5, 16, 0.25, axis=-1), score, places=5)
        self.assertAlmostEqual(seam_score(volume.numpy(), 16, 0.25, axis=3), score, places=12)
        self.assertAlmostEqual(seam_score(volume.transpose(2, 3), 16, 0.25, axis=2), score, places=12)

    def test_flat_interior(self):
        flat = torch.zeros(4, 32)
        self.assertEqual(seam_score(flat, 16, 0.0, axis=1), 0.0)
        flat[:, 16:] = 1.0
        self.assertEqual(seam_score(flat, 16, 0.0, axis=1), float("inf"))

    @parameterized.expand(BAD)
    def test_errors(self, _, kwargs):
        with self.assertRaisesRegex(ValueError, "seam_score|tile_borders"):
            seam_score(**kwargs)


if __name__ == "__main__":
    unittest.main()
