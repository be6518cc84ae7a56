from __future__ import annotations

import os
import tempfile
import unittest
from pathlib import Path

import numpy as np
from parameterized import parameterized

from emdiff_components.data import (
    DatasetError,
    ctc_datalist,
    extract_single_cells,
    read_image,
    write_ctc_sequence,
    write_image,
    write_single_cells,
)

SHARED = Path(os.environ.get("EMDIFF_SHARED_DATA", "/work/shared/data")) / "ctc_2d_nuclei"


def two_cells() -> tuple[np.ndarray, np.ndarray]:
    """A 5 x 5 square cell (id 3) centred at (10, 12) and a cell (id 7) touching the top border."""
    mask = np.zeros((24, 30), dtype=np.uint16)
    mask[8:13, 10:15] = 3  # bbox rows 8..12, cols 10..14: middle (10, 12), also the centroid
    mask[0:3, 20:24] = 7
    image = np.arange(mask.size, dtype=np.float32).reshape(mask.shape) + 100.0
    return image, mask


def ctc_layout(root: Path, gt_frames=(1,), st_frames=(0, 1, 2), frame=None, mask=None) -> None:
    image, cells = two_cells() if frame is None else (frame, mask)
    for t in range(3):
        write_image(root / "01" / f"t{t:03d}.tif", image.astype(np.uint16))
    for t in gt_frames:
        write_image(root / "01_GT" / "SEG" / f"man_seg{t:03d}.tif", cells)
    for t in st_frames:
        write_image(root / "01_ST" / "SEG" / f"man_seg{t:03d}.tif", cells)


@unittest.skipUnless(SHARED.is_dir() or os.environ.get("CI") == "true", "shared CTC data missing")
class TestSharedCTC(unittest.TestCase):
    def test_course_copy_counts_and_pairing(self):
        gowt1 = ctc_datalist(SHARED / "Fluo-N2DH-GOWT1")
        self.assertEqual([e["name"] for e in gowt1], ["t01", "t21", "t31", "t39", "t52", "t72"])
        for entry in gowt1:
            self.assertEqual(Path(entry["label"]).name, "man_seg" + entry["name"][1:] + ".tif")
            self.assertEqual(entry["source"], "gt")
        self.assertTrue(all(22 <= e["num_cells"] <= 30 for e in gowt1))  # SOURCES.md: 22-30 nuclei per frame
        hela = ctc_datalist(SHARED / "Fluo-N2DL-HeLa")
        self.assertEqual([(e["name"], e["num_cells"]) for e in hela], [("t13", 59), ("t52", 109)])

    def test_sequence_rejected_for_course_copy(self):
        with self.assertRaisesRegex(ValueError, "CTC layout only"):
            ctc_datalist(SHARED / "Fluo-N2DH-GOWT1", sequence="01")


class TestCTCDatalist(unittest.TestCase):
    def test_gt_preferred_over_st(self):
        with tempfile.TemporaryDirectory() as tmp:
            ctc_layout(Path(tmp))
            entries = ctc_datalist(tmp)
        self.assertEqual([(e["name"], e["source"]) for e in entries],
                         [("01_t000", "ST"), ("01_t001", "GT"), ("01_t002", "ST")])
        self.assertTrue(entries[1]["label"].endswith(os.path.join("01_GT", "SEG", "man_seg001.tif")))
        self.assertEqual(entries[0]["num_cells"], 2)

    def test_msd_layout_and_3d(self):
        stack = np.zeros((3, 8, 8), dtype=np.uint16)
        stack[1:, 2:5, 2:5] = 4
        with tempfile.TemporaryDirectory() as tmp:
            write_image(Path(tmp) / "imagesTr" / "a_0000.tif", stack + 10)
            write_image(Path(tmp) / "labelsTr" / "a.tif", stack)
            entries = ctc_datalist(tmp, spatial_dims=3)
            self.assertEqual([(e["name"], e["num_cells"], e["source"]) for e in entries], [("a", 1, "labelsTr")])
            with self.assertRaisesRegex(DatasetError, "expected a 2D frame"):
                ctc_datalist(tmp, spatial_dims=2)

    @parameterized.expand([("empty",), ("no_masks",), ("no_cells",), ("shape",), ("mask_without_image",)])
    def test_errors(self, case):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            if case == "no_masks":
                ctc_layout(root, gt_frames=(), st_frames=())
            elif case == "no_cells":
                ctc_layout(root, frame=np.ones((8, 8)), mask=np.zeros((8, 8), np.uint16))
            elif case == "shape":
                ctc_layout(root, frame=np.ones((8, 8)), mask=np.ones((8, 9), np.uint16))
            elif case == "mask_without_image":
                ctc_layout(root, st_frames=(5,))
            message = {"empty": "is empty", "no_masks": "no masks", "no_cells": "hold no cells",
                       "shape": "has shape", "mask_without_image": "has no image"}[case]
            with self.assertRaisesRegex(DatasetError, message):
                ctc_datalist(root)
            if case == "shape":  # the message names the mask file
                with self.assertRaisesRegex(DatasetError, "man_seg000.tif"):
                    ctc_datalist(root)

    def test_bad_arguments(self):
        with tempfile.TemporaryDirectory() as tmp:
            ctc_layout(Path(tmp))
            with self.assertRaisesRegex(DatasetError, "sequence folder"):
                ctc_datalist(tmp, sequence="02")
            with self.assertRaisesRegex(ValueError, "spatial_dims"):
                ctc_datalist(tmp, spatial_dims=4)
        with self.assertRaisesRegex(DatasetError, "does not exist"):
            ctc_datalist("/nonexistent/ctc")


class TestExtractSingleCells(unittest.TestCase):
    def test_centred_crops_and_border_rule(self):
        image, mask = two_cells()
        kept = extract_single_cells(image, mask, crop_size=16, skip_border=True)
        self.assertEqual(len(kept), 1)  # the border cell (id 7) is skipped
        crop, cell = kept[0]
        self.assertEqual((crop.dtype, cell.dtype, crop.shape), (np.float32, np.float32, (16, 16)))
        self.assertEqual(float(cell.sum()), 25.0)
        centroid = np.argwhere(cell > 0).mean(axis=0)
        np.testing.assert_array_equal(centroid, [8, 8])  # the cell's centre at crop_size // 2
        # the cell's own pixels moved by (8 - 10, 8 - 12): rows and cols 6..10; everything else is the image minimum (100)
        np.testing.assert_array_equal(crop[6:11, 6:11], image[8:13, 10:15])
        self.assertTrue(np.all(crop[cell == 0] == 100.0))
        # the public default keeps border cells: both come back, in id order
        both = extract_single_cells(image, mask, crop_size=16)
        self.assertEqual([float(m.sum()) for _, m in both], [25.0, 12.0])

    def test_bbox_versus_centroid_rule(self):
        mask = np.zeros((20, 20), dtype=np.int32)
        mask[5, 5:15] = 1  # an L: bbox middle (int(0.5 * 5 + 0.5 * 9), int(0.5 * 5 + 0.5 * 14)) = (7, 9)
        mask[5:10, 5] = 1  # centroid ((5 * 10 + 6 + 7 + 8 + 9) / 14, (sum(5..14) + 4 * 5) / 14) = (5.71, 8.21)
        (_, bbox), = extract_single_cells(np.ones((20, 20)), mask, crop_size=16)
        (_, cent), = extract_single_cells(np.ones((20, 20)), mask, crop_size=16, center="centroid")
        self.assertEqual(tuple(np.argwhere(bbox)[0]), (5 - 7 + 8, 5 - 9 + 8))  # the corner pixel (5, 5)
        self.assertEqual(tuple(np.argwhere(cent)[0]), (5 - 6 + 8, 5 - 8 + 8))

    def test_small_large_resize_and_3d(self):
        image, mask = two_cells()
        self.assertEqual(len(extract_single_cells(image, mask, crop_size=16, min_size=13)), 1)  # 12-px cell dropped
        self.assertEqual(len(extract_single_cells(image, mask, crop_size=4)), 0)  # neither fits a 4 x 4 crop
        (crop, cell), _ = extract_single_cells(image, mask, crop_size=16, out_size=8)
        self.assertEqual(crop.shape, (8, 8))
        self.assertEqual(set(np.unique(cell)), {0.0, 1.0})
        self.assertEqual(float(cell.sum()), 9.0)  # rows / cols 6, 8, 10 of the 16-crop: 3 x 3 of the 5 x 5 cell
        stack = np.zeros((5, 10, 10), dtype=np.int32)
        stack[1:4, 3:6, 3:6] = 2
        (crop3, cell3), = extract_single_cells(stack * 1.0, stack, crop_size=(7, 9, 9))
        self.assertEqual(crop3.shape, (7, 9, 9))
        np.testing.assert_array_equal(np.argwhere(cell3).mean(0), [3, 4, 4])

    def test_errors(self):
        image, mask = two_cells()
        with self.assertRaisesRegex(ValueError, "share"):
            extract_single_cells(image, mask[:, :-1])
        with self.assertRaisesRegex(ValueError, "crop_size"):
            extract_single_cells(image, mask, crop_size=0)
        with self.assertRaisesRegex(ValueError, "center"):
            extract_single_cells(image, mask, center="middle")
        with self.assertRaisesRegex(ValueError, "non-integer"):
            extract_single_cells(image, mask + 0.5)


class TestWriters(unittest.TestCase):
    def test_write_single_cells(self):
        with tempfile.TemporaryDirectory() as tmp:
            ctc_layout(Path(tmp) / "data", gt_frames=(), st_frames=(0,))
            written = write_single_cells(ctc_datalist(Path(tmp) / "data"), Path(tmp) / "cells", crop_size=16)
            self.assertEqual([w["name"] for w in written], ["01_t000_0003", "01_t000_0007"])
            mask = read_image(written[0]["label"])
            self.assertTrue(written[0]["label"].endswith(os.path.join("masks", "01_t000_0003.png")))
            self.assertEqual((mask.dtype, int(mask.sum()) // 255), (np.uint8, 25))
            self.assertEqual(read_image(written[0]["image"]).dtype, np.float32)
            with self.assertRaisesRegex(DatasetError, "no cell"):
                write_single_cells(ctc_datalist(Path(tmp) / "data"), Path(tmp) / "none", crop_size=2)
        with self.assertRaisesRegex(DatasetError, "lacks"):
            write_single_cells([{"image": "a.tif"}], "unused")

    def test_write_ctc_sequence_round_trip_2d_and_3d(self):
        rng = np.random.default_rng(1)
        for shape in ((6, 7), (3, 6, 7)):
            images = [rng.random(shape).astype(np.float32) for _ in range(2)]
            masks = [rng.integers(0, 300, size=shape) for _ in range(2)]  # ids above 255 survive (uint16)
            with tempfile.TemporaryDirectory() as tmp:
                entries = write_ctc_sequence(tmp, images, masks)
                self.assertTrue(os.path.isfile(Path(tmp) / "01" / "t001.tif"))
                self.assertTrue(os.path.isfile(Path(tmp) / "01_ST" / "SEG" / "man_seg001.tif"))
                listed = ctc_datalist(tmp)
                self.assertEqual([e["name"] for e in listed], [e["name"] for e in entries])
                for entry, image, mask in zip(listed, images, masks):
                    np.testing.assert_array_equal(read_image(entry["image"]), image)
                    self.assertEqual(read_image(entry["label"]).dtype, np.uint16)
                    np.testing.assert_array_equal(read_image(entry["label"]), mask)

    def test_write_ctc_sequence_errors(self):
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaisesRegex(ValueError, "kind"):
                write_ctc_sequence(tmp, [np.ones((4, 4))], [np.ones((4, 4), int)], kind="XX")
            with self.assertRaisesRegex(ValueError, "2 images and 1 masks"):
                write_ctc_sequence(tmp, [np.ones((4, 4))] * 2, [np.ones((4, 4), int)])
            with self.assertRaisesRegex(ValueError, "frame 0"):
                write_ctc_sequence(tmp, [np.ones((4, 4))], [np.ones((4, 5), int)])
            with self.assertRaisesRegex(ValueError, "0..65535"):
                write_ctc_sequence(tmp, [np.ones((4, 4))], [np.full((4, 4), 70000)])
            self.assertEqual(os.listdir(tmp), [])  # nothing written before the checks pass


if __name__ == "__main__":
    unittest.main()
