from __future__ import annotations

import tempfile
import unittest
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import tifffile
import torch

from emdiff_components.engines import SegmentationFigure, SegmentationWriter, label_to_rgb, save_panel_figure


def fake_engine(batch, output):
    return SimpleNamespace(state=SimpleNamespace(batch=batch, output=output, metrics={}))


class TestSegmentationWriter(unittest.TestCase):
    def test_stack_in_stack_out_and_2d(self):
        with tempfile.TemporaryDirectory() as tmp:
            writer = SegmentationWriter(tmp)
            slices = [np.full((1, 4, 5), z, dtype=np.int64) for z in range(3)]
            for z in (2, 0, 1):  # slices may arrive in any order
                item = {"name": "vol", "slice": z, "num_slices": 3, "image_path": "/data/vol.tif"}
                writer.update(fake_engine([item], [{"pred": torch.as_tensor(slices[z])}]))
                self.assertEqual(Path(tmp, "vol.tif").exists(), z == 1)  # written only when complete
            stack = tifffile.imread(Path(tmp, "vol.tif"))
            self.assertEqual(stack.shape, (3, 4, 5))
            np.testing.assert_array_equal(stack[:, 0, 0], [0, 1, 2])
            item = {"name": "img", "slice": 0, "num_slices": 1, "image_path": "/data/img.png"}
            writer.update(fake_engine([item], [{"pred": torch.ones(1, 4, 5, dtype=torch.long)}]))
            png = cv2.imread(str(Path(tmp, "img.png")), cv2.IMREAD_UNCHANGED)
            self.assertEqual(png.shape, (4, 5))
            self.assertEqual(int(png.max()), 1)

    def test_uncertainty_beside_the_mask(self):
        with tempfile.TemporaryDirectory() as tmp:
            writer = SegmentationWriter(tmp, pred_key="uncertainty", dtype=np.float32, name_suffix="_uncertainty")
            item = {"name": "img", "slice": 0, "num_slices": 1, "image_path": "/data/img.png"}
            writer.update(fake_engine([item], [{"uncertainty": torch.full((1, 4, 5), 0.25)}]))
            # PNG cannot hold floats: the map goes to TIFF, named after the case
            stored = tifffile.imread(Path(tmp, "img_uncertainty.tif"))
            self.assertEqual(stored.dtype, np.float32)
            np.testing.assert_allclose(stored, 0.25)

    def test_nifti_mask_keeps_the_volume_geometry(self):
        import nibabel as nib

        with tempfile.TemporaryDirectory() as tmp:
            affine = np.diag([0.7, 0.7, 5.0, 1.0])
            affine[:3, 3] = (-100, -120, 30)
            source = str(Path(tmp, "ct.nii.gz"))
            nib.save(nib.Nifti1Image(np.zeros((4, 3, 2), np.int16), affine), source)  # (X, Y, Z)
            writer = SegmentationWriter(Path(tmp, "masks"))
            for z in range(2):
                item = {"name": "ct", "slice": z, "num_slices": 2, "image_path": source}
                writer.update(fake_engine([item], [{"pred": torch.ones(1, 3, 4, dtype=torch.long)}]))
            mask = nib.load(str(Path(tmp, "masks", "ct.nii.gz")))
            np.testing.assert_allclose(mask.affine, affine)
            self.assertEqual(mask.shape, (4, 3, 2))
            self.assertEqual(mask.get_data_dtype(), np.uint8)

    def test_missing_slices_raise(self):
        with tempfile.TemporaryDirectory() as tmp:
            writer = SegmentationWriter(tmp)
            item = {"name": "vol", "slice": 0, "num_slices": 2, "image_path": "/data/vol.tif"}
            writer.update(fake_engine([item], [{"pred": torch.zeros(1, 2, 2)}]))
            with self.assertRaisesRegex(RuntimeError, "vol"):
                writer.check_complete()
            self.assertFalse(Path(tmp, "vol.tif").exists())


class TestSegmentationFigure(unittest.TestCase):
    def test_figure_panels(self):
        with tempfile.TemporaryDirectory() as tmp:
            fig = SegmentationFigure(Path(tmp) / "fig.png", num_samples=2)
            image = torch.linspace(-1, 1, 64).reshape(1, 8, 8)
            label = torch.zeros(1, 8, 8, dtype=torch.long)
            label[0, :4] = 1
            for _ in range(3):
                fig.update(fake_engine([{"image": image}], [{"label": label, "pred": label}]))
            self.assertEqual(len(fig.rows), 2)
            path = fig.write()
            picture = cv2.imread(path)
            self.assertEqual(picture.shape[0], 28 + 2 * (8 + 4))  # title bar + two rows with gaps
            self.assertEqual(picture.shape[1], 3 * (8 + 4))
            # truth panel, first row, top-left pixel is class 1 in the palette colour (BGR on disk)
            np.testing.assert_array_equal(picture[28, 12], label_to_rgb(np.array(1))[::-1])

    def test_bad_rows(self):
        with self.assertRaisesRegex(ValueError, "panel"):
            save_panel_figure("x.png", [[np.zeros((2, 2))]], ["a", "b"], ["image", "label"])


class TestSegmentationWriterVolumes(unittest.TestCase):
    def test_whole_volume_as_hdf5(self):
        import h5py

        with tempfile.TemporaryDirectory() as tmp:
            writer = SegmentationWriter(tmp, dtype=np.float32, output_ext=".h5")
            volume = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)
            writer.update(fake_engine([{"name": "syn", "image_path": "/data/cond.tif"}], [{"pred": volume}]))
            with h5py.File(Path(tmp, "syn.h5"), "r") as f:
                stored = f["data"][()]
            np.testing.assert_array_equal(stored, volume[0].numpy())


class TestSegmentationFigureVolumes(unittest.TestCase):
    def test_middle_slice_and_grey_prediction(self):
        with tempfile.TemporaryDirectory() as tmp:
            figure = SegmentationFigure(Path(tmp, "f.png"), image_key="condition", label_key=None, pred_kind="image",
                                        titles=["condition", "synthesized"])
            condition = torch.zeros(1, 3, 8, 8)
            condition[0, 1] = 2  # only the middle slice is non-zero
            pred = torch.zeros(1, 3, 8, 8)
            pred[0, 1, :, 4:] = 1.0  # middle slice: right half bright
            pred[0, 0] = 5.0  # other slices must not reach the figure
            figure.update(fake_engine([{"condition": condition}], [{"pred": pred}]))
            self.assertEqual(float(figure.rows[0][0].max()), 2.0)
            self.assertEqual(figure.rows[0][0].shape, (8, 8))
            png = cv2.imread(figure.write())
            self.assertEqual(png.shape, (28 + 8 + 4, 2 * (8 + 4), 3))  # title bar, one row, two panels with gaps
            panel = png[28:36, 12:20, 0]  # the prediction, drawn grey: percentile-scaled 0 -> 0, 1 -> 255
            np.testing.assert_array_equal(panel, np.where(pred[0, 1].numpy() > 0, 255, 0))
            self.assertEqual(sorted(p.name for p in Path(tmp).iterdir()), ["f.png"])  # no temporary file left
        with self.assertRaisesRegex(ValueError, "SegmentationFigure: pred_kind"):
            SegmentationFigure("x.png", pred_kind="map")


class TestSegmentationFigureKinds(unittest.TestCase):
    def test_grey_truth_for_a_real_volume(self):
        with tempfile.TemporaryDirectory() as tmp:
            figure = SegmentationFigure(Path(tmp, "f.png"), label_kind="image", pred_kind="image")
            real = torch.linspace(-1, 1, 64).reshape(1, 8, 8)
            figure.update(fake_engine([{"image": real}], [{"label": real, "pred": real}]))
            png = cv2.imread(figure.write())
            # the truth column is the same grey ramp as the image, not the (black) class-0 colour of a label drawing
            image_panel, truth_panel = png[28:36, 0:8], png[28:36, 12:20]
            np.testing.assert_array_equal(truth_panel, image_panel)
            self.assertEqual(int(truth_panel[0, 0].max()), 0)  # ramp from black ...
            self.assertEqual(int(truth_panel[-1, -1].min()), 255)  # ... to white
            self.assertTrue(np.all(np.diff(truth_panel[..., 0].astype(int).ravel()) >= 0))  # rising in raster order


if __name__ == "__main__":
    unittest.main()
