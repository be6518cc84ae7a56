"""make_demo_cells: a CTC-style sequence that ctc_datalist reopens, seeded, with the asked counts and shapes."""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import numpy as np
from parameterized import parameterized
from scipy import ndimage

from emdiff_components.data import ctc_datalist, make_demo_cells, read_image

BAD_ARGS = [
    ({"num_frames": 0}, "num_frames"),
    ({"shape": (16, 128)}, "shape"),
    ({"num_cells": 0}, "num_cells"),
    ({"radii": (8.0, 4.0)}, "radii"),
    ({"radii": (6.0, 80.0)}, "radii"),
]


class TestMakeDemoCells(unittest.TestCase):
    def test_reopens_in_the_ctc_layout(self):
        with tempfile.TemporaryDirectory() as tmp:
            folder = make_demo_cells(Path(tmp) / "demo", num_frames=3, shape=(96, 128), num_cells=6, seed=1)
            entries = ctc_datalist(folder)
            self.assertEqual([e["name"] for e in entries], ["01_t000", "01_t001", "01_t002"])
            self.assertEqual({e["source"] for e in entries}, {"ST"})
            self.assertTrue((Path(folder) / "README.md").read_text().startswith("# Synthetic demo cells (NOT real"))
            for entry in entries:
                image, mask = read_image(entry["image"]), read_image(entry["label"])
                self.assertEqual((image.shape, image.dtype), ((96, 128), np.uint16))
                self.assertEqual(mask.shape, (96, 128))
                # ids 1..n, each one connected ellipse, no two touching (a labelling of the foreground gives n too)
                ids = np.unique(mask)[1:]
                self.assertEqual(ids.tolist(), list(range(1, len(ids) + 1)))
                self.assertEqual(entry["num_cells"], 6)
                self.assertEqual(ndimage.label(mask > 0)[1], 6)
                # nuclei are brighter than the background (camera offset 33000 + 200 dark counts)
                self.assertGreater(image[mask > 0].mean(), image[mask == 0].mean() + 1000)
                self.assertAlmostEqual(float(np.median(image[mask == 0])), 33200.0, delta=60.0)

    def test_same_seed_same_files_other_seed_other_files(self):
        with tempfile.TemporaryDirectory() as tmp:
            a = ctc_datalist(make_demo_cells(Path(tmp) / "a", num_frames=2, seed=3))
            b = ctc_datalist(make_demo_cells(Path(tmp) / "b", num_frames=2, seed=3))
            c = ctc_datalist(make_demo_cells(Path(tmp) / "c", num_frames=2, seed=4))
            for x, y, z in zip(a, b, c):
                for key in ("image", "label"):
                    self.assertEqual(Path(x[key]).read_bytes(), Path(y[key]).read_bytes())
                self.assertFalse(np.array_equal(read_image(x["image"]), read_image(z["image"])))

    def test_existing_folder_is_kept(self):
        with tempfile.TemporaryDirectory() as tmp:
            folder = make_demo_cells(Path(tmp) / "d", num_frames=1, seed=0)
            before = (Path(folder) / "01" / "t000.tif").read_bytes()
            make_demo_cells(folder, num_frames=2, seed=5)
            self.assertEqual((Path(folder) / "01" / "t000.tif").read_bytes(), before)
            self.assertFalse((Path(folder) / "01" / "t001.tif").exists())

    def test_sizes_follow_radii(self):
        with tempfile.TemporaryDirectory() as tmp:
            entry = ctc_datalist(make_demo_cells(Path(tmp) / "r", num_frames=1, radii=(5.0, 6.0), seed=2))[0]
            mask = read_image(entry["label"])
            areas = np.bincount(mask.ravel())[1:]
            # ellipse area pi a b with a in [5, 6], b in [0.7 * 5, 6]: between about 55 and 113 pixels
            self.assertTrue(np.all(areas >= 45) and np.all(areas <= 125), areas)

    @parameterized.expand(BAD_ARGS)
    def test_bad_arguments(self, kwargs, name):
        with tempfile.TemporaryDirectory() as tmp, self.assertRaisesRegex(ValueError, f"make_demo_cells: {name}"):
            make_demo_cells(Path(tmp) / "x", **kwargs)


if __name__ == "__main__":
    unittest.main()
