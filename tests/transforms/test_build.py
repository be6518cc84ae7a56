"""Tests of mitochondria_library: the library of a remodeling run, from a file or from a data list's masks."""

from __future__ import annotations

import math
import tempfile
import unittest
from pathlib import Path

import numpy as np

from emdiff_components.data import write_image
from emdiff_components.transforms import MitochondriaLibrary, mitochondria_library


def _datalist(root: Path) -> list[dict]:
    """Two volumes with mitochondria masks (three rectangles in all) and one without a mask."""
    a = np.zeros((2, 64, 64), np.uint8)
    a[0, 10:30, 20:30] = 1  # 20 rows x 10 columns: major axis along the rows
    b = np.zeros((1, 64, 64), np.uint8)
    b[0, 30:40, 10:34] = 1  # 10 rows x 24 columns: major axis along the columns
    b[0, 50:55, 50:55] = 1  # area 25 < min_area 100: filtered out
    a[1, 40:60, 40:50] = 1  # the same 20 x 10 shape on the second slice
    write_image(root / "a_mito.tif", a)
    write_image(root / "b_mito.tif", b)
    return [{"label": "a.tif", "mito": str(root / "a_mito.tif")}, {"label": "c.tif"},
            {"label": "b.tif", "mito": str(root / "b_mito.tif")}]


class TestMitochondriaLibraryFromDatalist(unittest.TestCase):
    def test_built_from_the_masks_of_the_entries_that_have_one(self):
        with tempfile.TemporaryDirectory() as tmp:
            library = mitochondria_library(_datalist(Path(tmp)))
        self.assertEqual(len(library), 3)
        # major axis of an n x m rectangle (n > m): 4 * sqrt((n^2 - 1) / 12); orientation from the row axis
        np.testing.assert_allclose(library.major_axis_lengths,
                                   [4 * math.sqrt(399 / 12), 4 * math.sqrt(399 / 12), 4 * math.sqrt(575 / 12)],
                                   rtol=1e-6)
        np.testing.assert_allclose(np.abs(library.orientations), [0.0, 0.0, 90.0], atol=1e-6)

    def test_path_wins_over_the_masks(self):
        with tempfile.TemporaryDirectory() as tmp:
            saved = MitochondriaLibrary([np.array([[0, 0], [0, 4], [4, 4], [4, 0.0]])], [10.0], [5.0])
            saved.save(Path(tmp) / "lib.npz")
            library = mitochondria_library(_datalist(Path(tmp)), path=Path(tmp) / "lib.npz")
        self.assertEqual(len(library), 1)
        np.testing.assert_array_equal(library.orientations, [10.0])

    def test_no_masks_gives_an_empty_library(self):
        self.assertEqual(len(mitochondria_library([{"label": "a.tif"}], path=None)), 0)
        self.assertEqual(len(mitochondria_library([], path="")), 0)

    def test_missing_library_file(self):
        with self.assertRaisesRegex(ValueError, "MitochondriaLibrary.load.*nowhere.npz"):
            mitochondria_library([], path="nowhere.npz")


if __name__ == "__main__":
    unittest.main()
