"""End-to-end runs of the BIEDSNet bundle: COVID-19 CT slices, a NIfTI CT volume, MetaImage and DICOM CT, ISBI 2012 membranes, bad input."""

from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F
from ignite.engine import Events
from monai.bundle import ConfigParser, ConfigWorkflow

import bundle_testing
from bundle_testing import REPO, BadInputCases, convert, find_cause, shared_data_or_skip, write_dicom_series
from emdiff_components.data import DatasetError

BUNDLE = REPO / "bundles" / "biedsnet"
CONFIGS = BUNDLE / "configs"
OVERLAYS = ("no_bffm.json", "no_adrb.json", "mse_loss.json", "no_deep_supervision.json")

# small but real: narrow network, 64 x 64 working size, 2 DDIM steps, ensembles of 2
FAST = {
    "channels": [8, 16, 16, 32, 32],
    "num_res_blocks": 1,
    "image_size": [64, 64],
    "patch_size": [64, 64],
    "batch_size": 4,
    "val_num_inference_steps": 2,
    "num_inference_steps": 2,
    "num_samples": 2,
    "progress": False,
}


def workflow(config: str | list[str], workflow_type: str, **override) -> ConfigWorkflow:
    return bundle_testing.workflow(CONFIGS, config, workflow_type, **override)


def run(config, workflow_type: str, **override) -> ConfigWorkflow:
    return bundle_testing.run(CONFIGS, config, workflow_type, **override)


def ct_volume(shared: Path, out: Path, num_slices: int = 6, empty_slices: int = 2) -> Path:
    """A NIfTI CT volume (HU-like int16, 0.7 x 0.7 x 5 mm) stacked from the shared COVID-19 slices, in the layout.

    The last ``empty_slices`` slices get no lesion in their label (a volume's slices above and below the lungs).
    """
    source = shared / "covid19_ct_infection_infnet"
    names = sorted((source / "Imgs").iterdir())[:num_slices]
    images, labels = [], []
    for i, path in enumerate(names):
        image = cv2.resize(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), (96, 96), interpolation=cv2.INTER_AREA)
        label = cv2.imread(str(source / "GT_infection" / f"{path.stem}.png"), cv2.IMREAD_GRAYSCALE)
        label = cv2.resize(label, (96, 96), interpolation=cv2.INTER_NEAREST) > 0
        images.append(image.astype(np.int16) * 6 - 1000)  # 8-bit display values to a -1000..530 HU-like range
        labels.append(label & (i < num_slices - empty_slices))
    affine = np.diag([0.7, 0.7, 5.0, 1.0])
    for split, sl in (("Tr", slice(None)), ("Ts", slice(None))):
        for kind, stack in (("images", images), ("labels", labels)):
            folder = out / f"{kind}{split}"
            folder.mkdir(parents=True, exist_ok=True)
            dtype = np.int16 if kind == "images" else np.uint8
            volume = np.stack(stack[sl]).astype(dtype).T  # (Z, Y, X) -> NIfTI (X, Y, Z)
            nib.save(nib.Nifti1Image(volume, affine), str(folder / "ct_001.nii.gz"))
    return out


class TestBIEDSNetBundleConfigs(unittest.TestCase):
    def test_properties(self):
        bundle_testing.assert_properties(self, CONFIGS, FAST)

    def test_shared_ids_are_identical(self):
        # the same network, schedule and intensity handling at training and inference (LoadSliced differs in keys)
        bundle_testing.assert_shared_ids(
            self, CONFIGS,
            ["network_def", "intensity", "num_classes", "class_names", "intensity_range", "image_size", "patch_size",
             "channels", "num_res_blocks", "use_bffm", "use_adrb", "deep_supervision", "loss_mode", "ablation_tag",
             "num_train_timesteps", "device", "demo_dir", "dataset_dir", "dataset_root"],
            schedulers=[("diffusion_scheduler", "diffusion_scheduler"), ("val_scheduler", "diffusion_scheduler")],
        )

    def test_paper_defaults(self):
        parser = ConfigParser()
        parser.read_config(str(CONFIGS / "train.json"))
        self.assertEqual(parser["num_train_timesteps"], 1000)
        self.assertEqual((parser["learning_rate"], parser["weight_decay"], parser["batch_size"]), (1e-4, 1e-8, 8))
        self.assertEqual(parser["ema_decay"], 0.9999)
        self.assertEqual(parser["image_size"], [256, 256])
        self.assertEqual(parser["channels"], [32, 64, 128, 256, 512])
        self.assertAlmostEqual(sum(parser["deep_supervision_weights"]), 1.0)
        scheduler = parser.get_parsed_content("diffusion_scheduler")
        self.assertEqual(type(scheduler).__name__, "DDPMScheduler")
        betas = scheduler.betas.double().numpy()
        np.testing.assert_allclose(betas[[0, -1]], [1e-4, 0.02], rtol=1e-6)  # linear 1e-4 .. 0.02 (Ho et al.)
        np.testing.assert_allclose(np.diff(betas), (0.02 - 1e-4) / 999, rtol=1e-4)

    def test_overlays_resolve(self):
        """Each ablation overlay flips its switch; stacked overlays give the paper's cumulative Table 2 rows."""
        switches = {"no_bffm.json": ("use_bffm", False), "no_adrb.json": ("use_adrb", False),
                    "mse_loss.json": ("loss_mode", "mse"), "no_deep_supervision.json": ("deep_supervision", False)}
        for overlay in OVERLAYS:
            key, value = switches[overlay]
            for base, path_key in (("train.json", "ckpt_dir"), ("inference.json", "ckpt_path")):
                parser = ConfigParser()
                parser.read_config([str(CONFIGS / base), str(CONFIGS / overlay)])
                parser["bundle_root"] = "B"
                self.assertEqual(parser[key], value, overlay)
                self.assertIn(f"B/models/{overlay.removesuffix('.json')}", parser.get_parsed_content(path_key))
        # row 1 of Table 2: no BFFM, no ADRB, MSE, no multi-layer supervision; train and inference agree on the folder
        stacked = [str(CONFIGS / o) for o in OVERLAYS]
        folders = []
        for base, path_key in (("train.json", "ckpt_dir"), ("inference.json", "ckpt_path")):
            parser = ConfigParser()
            parser.read_config([str(CONFIGS / base), *stacked])
            net = parser.get_parsed_content("network_def")
            self.assertFalse(net.use_bffm or net.use_adrb or net.deep_supervision)
            folders.append(str(Path(parser.get_parsed_content(path_key))).removesuffix("/model.pt"))
        self.assertEqual(folders[0], folders[1])
        self.assertTrue(folders[0].endswith("models/no_bffm-no_adrb-mse_loss-no_deep_supervision"))
        for base, overlay in (
            ("train.json", "multi_gpu_train.json"), ("inference.json", "evaluate.json"),
            ("inference.json", "evaluate_paper.json"),
        ):
            base_parser = ConfigParser()
            base_parser.read_config(str(CONFIGS / base))
            for key in json.loads((CONFIGS / overlay).read_text()):
                parent = key.rsplit("#", 1)[0] if "#" in key else ""
                self.assertTrue(parent == "" or parent in base_parser, f"{overlay}: {key} has no parent in {base}")

    def test_metadata_verifies_offline(self):
        bundle_testing.assert_metadata_verifies(self, CONFIGS)


class TestBIEDSNetBundleEndToEnd(unittest.TestCase):
    def _train_infer_evaluate(self, dataset: Path, root: Path, **extra) -> dict:
        common = {**FAST, "bundle_root": str(root), "dataset_dir": str(dataset), **extra}
        run("train.json", "train", epochs=1, val_interval=1, **common)
        for name in ("model.pt", "checkpoint.pt", "best_model.pt"):
            self.assertTrue((root / "models" / name).is_file(), name)
        self.assertTrue((root / "outputs" / "train" / "validation.png").is_file())
        run(["inference.json", "evaluate.json"], "infer", **common)
        metrics = json.loads((root / "outputs" / "evaluate" / "metrics.json").read_text())
        self.assertTrue((root / "outputs" / "evaluate" / "metrics.csv").is_file())
        self.assertTrue((root / "outputs" / "evaluate" / "figure.png").is_file())
        return metrics

    def test_covid_slices(self):
        shared_data_or_skip(self)
        with tempfile.TemporaryDirectory() as tmp:
            data = convert("covid", Path(tmp) / "data")
            root = Path(tmp) / "bundle"
            metrics = self._train_infer_evaluate(data, root, fusion="majority")
            self.assertEqual(metrics["num_images"], len(list((data / "imagesTs").iterdir())))
            for key in ("dice", "jaccard", "hd95_px", "hd_max_px", "accuracy", "recall", "precision"):
                self.assertIn(key, metrics["mean"])
            # the final model is the EMA of the weights, saved apart from the raw weights
            checkpoint = torch.load(root / "models" / "checkpoint.pt", weights_only=True)
            final = torch.load(root / "models" / "model.pt", weights_only=True)
            key = next(k for k in final if k.endswith("weight"))
            torch.testing.assert_close(final[key], checkpoint["model"][key])
            self.assertFalse(torch.equal(final[key], checkpoint["network"][key]))
            masks = root / "outputs" / "evaluate" / "masks"
            for image in (data / "imagesTs").iterdir():
                mask = tifffile.imread(masks / image.name)
                uncertainty = tifffile.imread(masks / f"{image.stem}_uncertainty.tif")
                self.assertEqual(mask.shape, tifffile.imread(image).shape)
                self.assertEqual(uncertainty.shape, mask.shape)
                self.assertTrue(set(np.unique(mask)) <= {0, 1})
                self.assertTrue(0.0 <= uncertainty.min() and uncertainty.max() <= 0.5)

    def test_nifti_ct_volume(self):
        shared = shared_data_or_skip(self)
        with tempfile.TemporaryDirectory() as tmp:
            data = ct_volume(shared, Path(tmp) / "data")
            root = Path(tmp) / "bundle"
            common = {**FAST, "bundle_root": str(root), "dataset_dir": str(data), "intensity_range": [-1000, 400]}
            wf = workflow("train.json", "train", **common)
            wf.initialize()
            # training takes the axial slices with a lesion only (4 of 6), windowed to [-1, 1]
            self.assertEqual(sorted(e["slice"] for e in wf.parser.get_parsed_content("datalist")), [0, 1, 2, 3])
            sample = wf.parser.get_parsed_content("validate#dataset")[0]
            self.assertGreaterEqual(float(sample["image"].min()), -1.0)
            self.assertLessEqual(float(sample["image"].max()), 1.0)
            np.testing.assert_allclose(sample["spacing"], [0.7, 0.7])
            run("train.json", "train", epochs=1, val_interval=1, val_fraction=0.25, **{k: v for k, v in common.items()})
            run(["inference.json", "evaluate.json"], "infer", **common)
            metrics = json.loads((root / "outputs" / "evaluate" / "metrics.json").read_text())
            self.assertEqual(metrics["num_images"], 6)  # every slice of the test volume is segmented
            # distances in mm are the pixel distances times the 0.7 mm in-plane spacing
            for entry in metrics["per_image"]:
                px, mm = entry["hd_max_px"]["foreground"], entry["hd_max_mm"]["foreground"]
                if px is not None:
                    self.assertAlmostEqual(mm, 0.7 * px, places=3)
            mask = nib.load(str(root / "outputs" / "evaluate" / "masks" / "ct_001.nii.gz"))
            self.assertEqual(mask.shape, (96, 96, 6))  # a volume in, a volume out, with its geometry
            np.testing.assert_allclose(mask.affine, np.diag([0.7, 0.7, 5.0, 1.0]))
            self.assertTrue((root / "outputs" / "evaluate" / "masks" / "ct_001_uncertainty.nii.gz").is_file())

    def test_isbi_membranes_tiled(self):
        shared_data_or_skip(self)
        with tempfile.TemporaryDirectory() as tmp:
            data = convert("isbi_membranes", Path(tmp) / "data")
            # EM keeps its resolution: no resizing, 64 x 64 patches, tiled sampling of the 512 x 512 test slices
            metrics = self._train_infer_evaluate(
                data, Path(tmp) / "bundle", image_size=None, train_slices="0-3", num_samples=1, fusion="mean"
            )
            self.assertEqual(metrics["num_images"], 6)  # slices 24-29
            for entry in metrics["per_image"]:
                self.assertTrue(0.0 <= entry["dice"]["foreground"] <= 1.0)


def tiny_volume(out: Path, labelled=(0, 1), num_slices: int = 4, shape=(40, 48), name: str = "ct_001") -> Path:
    """A synthetic NIfTI test volume (Z, Y, X) = (4, 40, 48): a bright square lesion on the ``labelled`` slices only."""
    g = np.random.default_rng(0)
    images = g.normal(0, 20, (num_slices, *shape)).astype(np.int16) - 600
    labels = np.zeros((num_slices, *shape), np.uint8)
    for z in labelled:
        labels[z, 10 + 2 * z : 25, 12:30] = 1
        images[z][labels[z] > 0] += 500
    for kind, volume in (("imagesTs", images), ("labelsTs", labels)):
        (out / kind).mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(volume.T, np.diag([0.7, 0.7, 5.0, 1.0])), str(out / kind / f"{name}.nii.gz"))
    return out


class TestBIEDSNetPaperEvaluation(unittest.TestCase):
    """evaluate.json scores every slice under MONAI's empty-truth convention; evaluate_paper.json the labelled
    slices only, resized to 256 x 256 (labels nearest), as the paper."""

    def _report(self, configs: list[str], root: Path, data: Path, outputs: list | None = None):
        """Run inference + ``configs``; ``outputs`` (if given) collects each scored (name, slice, pred, label)."""
        wf = workflow(["inference.json", *configs], "infer", bundle_root=str(root), dataset_dir=str(data), **FAST)
        (root / "models").mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        torch.save(wf.parser.get_parsed_content("network_def").state_dict(), root / "models" / "model.pt")
        wf.initialize()
        if outputs is not None:
            def collect(engine):
                for item, out in zip(engine.state.batch, engine.state.output):
                    outputs.append((item["name"], int(item["slice"]), np.asarray(out["pred"]), np.asarray(out["label"])))

            wf.parser.get_parsed_content("evaluator").add_event_handler(Events.ITERATION_COMPLETED, collect)
        wf.run()
        wf.finalize()
        report = next(h for h in wf.parser.get_parsed_content("handlers") if type(h).__name__ == "SegmentationReport")
        return report, json.loads((Path(report.output_dir) / "metrics.json").read_text())

    def test_every_slice_and_paper_slices(self):
        with tempfile.TemporaryDirectory() as tmp:
            data, root = tiny_volume(Path(tmp) / "data"), Path(tmp) / "bundle"
            labels = nib.load(str(data / "labelsTs" / "ct_001.nii.gz")).get_fdata().T  # (Z, Y, X)

            report, metrics = self._report(["evaluate.json"], root, data)
            self.assertEqual(metrics["num_images"], 4)  # every slice, at its own 40 x 48
            self.assertTrue(metrics["ignore_empty"])
            self.assertEqual(metrics["dice_images"]["foreground"], 2)  # the two empty-truth slices are left out
            empty = metrics["empty_counts"]
            self.assertEqual(empty["both"]["foreground"] + empty["truth"]["foreground"], 2)
            undefined = [e["dice"]["foreground"] is None for e in metrics["per_image"]]
            self.assertEqual(undefined, [False, False, True, True])
            self.assertTrue(all(row[2][1].sum() == 40 * 48 for row in report.rows))

            report, metrics = self._report(["evaluate.json", "evaluate_paper.json"], root, data)
            self.assertEqual(Path(report.output_dir).name, "evaluate_paper")
            self.assertEqual([e["slice"] for e in metrics["per_image"]], [0, 1])  # unlabelled slices are skipped
            self.assertEqual(metrics["empty_counts"]["both"]["foreground"], 0)
            self.assertTrue(report.labelled_only and report.ignore_empty)
            for (name, z, counts, *_), label in zip(report.rows, labels[:2]):
                # scored at 256 x 256: every class row holds 256 * 256 pixels; the truth is the nearest resize
                self.assertEqual(counts.sum(1).tolist(), [256 * 256] * 2)
                nearest = F.interpolate(torch.as_tensor(label)[None, None], size=(256, 256), mode="nearest")
                self.assertEqual(int(counts[1, 0] + counts[1, 2]), int((nearest > 0).sum()))
            self.assertIsNone(metrics["per_image"][0]["hd95_mm"]["foreground"])  # resized: no pixel size in mm
            self.assertTrue((Path(report.output_dir) / "figure.png").is_file())

    def test_paper_volume_without_lesion(self):
        """A test volume with no labelled slice is counted and named, not scored; the other volume still is."""
        with tempfile.TemporaryDirectory() as tmp:
            data, root = Path(tmp) / "data", Path(tmp) / "bundle"
            tiny_volume(data, labelled=(0, 1), name="ct_001")
            tiny_volume(data, labelled=(), name="ct_002")  # label all zero: no lesion in any slice
            outputs: list = []
            with self.assertLogs("emdiff_components", level="WARNING") as logs:
                _, metrics = self._report(["evaluate.json", "evaluate_paper.json"], root, data, outputs)
            self.assertTrue(any("labelsTs/ct_002.nii.gz" in line for line in logs.output), logs.output)
            self.assertEqual(metrics["skipped_cases"], ["ct_002"])
            self.assertEqual(metrics["num_skipped_cases"], 1)
            self.assertEqual([(e["name"], e["slice"]) for e in metrics["per_image"]], [("ct_001", 0), ("ct_001", 1)])
            # Dice by hand from the evaluator's own outputs (256 x 256 label maps), mean over ct_001's two slices
            self.assertEqual([(name, z) for name, z, *_ in outputs], [("ct_001", 0), ("ct_001", 1)])
            dice = [2 * (p & g).sum() / (p.sum() + g.sum()) for p, g in ((o[2] > 0, o[3] > 0) for o in outputs)]
            self.assertAlmostEqual(metrics["mean_dice"], float(np.mean(dice)), places=6)
            self.assertEqual(metrics["dice_images"]["foreground"], 2)


class TestBIEDSNetItkInputs(unittest.TestCase):
    """Inference on CT as ITK writes it: a MetaImage volume and a DICOM series folder (rotated, offset, 0.7 x 0.8 x 5 mm);
    each mask keeps the input's spacing, origin and direction, read back with ITK itself."""

    def test_mha_and_dicom_series(self):
        itk = pytest.importorskip("itk")
        shared = shared_data_or_skip(self)
        source = shared / "covid19_ct_infection_infnet" / "Imgs"
        slices = [cv2.resize(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), (48, 40), interpolation=cv2.INTER_AREA)
                  for p in sorted(source.iterdir())[:3]]
        volume = np.stack(slices).astype(np.int16) * 6 - 1000  # (3, 40, 48), HU-like
        spacing, origin = (0.7, 0.8, 5.0), (-120.0, 40.0, 300.0)
        angle = np.deg2rad(15.0)
        direction = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0, 0, 1.0]])
        with tempfile.TemporaryDirectory() as tmp:
            data, root = Path(tmp) / "data", Path(tmp) / "bundle"
            (data / "imagesTs").mkdir(parents=True)
            image = itk.image_from_array(volume)
            image.SetSpacing(spacing)
            image.SetOrigin(origin)
            image.SetDirection(itk.matrix_from_array(direction))
            itk.imwrite(image, str(data / "imagesTs" / "ct_mha.mha"))
            write_dicom_series(data / "imagesTs" / "ct_dicom", volume, spacing, origin, direction)
            common = {**FAST, "bundle_root": str(root), "dataset_dir": str(data), "intensity_range": [-1000, 400]}
            wf = workflow("inference.json", "infer", **common)
            (root / "models").mkdir(parents=True)
            torch.save(wf.parser.get_parsed_content("network_def").state_dict(), root / "models" / "model.pt")
            wf.initialize()
            entries = wf.parser.get_parsed_content("datalist")
            self.assertEqual([(e["name"], e["slice"]) for e in entries], [("ct_dicom", z) for z in range(3)]
                             + [("ct_mha", z) for z in range(3)])
            sample = wf.parser.get_parsed_content("dataset")[0]
            np.testing.assert_allclose(sample["spacing"], [0.8, 0.7], rtol=1e-6)  # (y, x) in mm, from the series
            wf.run()
            wf.finalize()
            masks = root / "outputs" / "inference" / "masks"
            written = {"ct_mha.mha": data / "imagesTs" / "ct_mha.mha", "ct_mha_uncertainty.mha": None,
                       "ct_dicom.nii.gz": data / "imagesTs" / "ct_dicom", "ct_dicom_uncertainty.nii.gz": None}
            self.assertEqual(sorted(f.name for f in masks.iterdir()), sorted(written))
            for name in written:
                out = itk.imread(str(masks / name))
                self.assertEqual(itk.array_from_image(out).shape, (3, 40, 48), name)
                atol = 1e-4 if name.endswith(".nii.gz") else 1e-9  # NIfTI holds float32 geometry
                np.testing.assert_allclose(out.GetSpacing(), spacing, atol=atol, err_msg=name)
                np.testing.assert_allclose(out.GetOrigin(), origin, atol=atol, err_msg=name)
                np.testing.assert_allclose(itk.array_from_matrix(out.GetDirection()), direction, atol=atol, err_msg=name)
            mask = itk.array_from_image(itk.imread(str(masks / "ct_mha.mha")))
            self.assertTrue(set(np.unique(mask)) <= {0, 1})


class TestBIEDSNetBundleBadInput(BadInputCases, unittest.TestCase):
    CONFIGS, FAST, NETWORK = CONFIGS, FAST, "BIEDSNet"

    def test_ct_volume_without_lesion(self):
        shared = shared_data_or_skip(self)
        with tempfile.TemporaryDirectory() as tmp:
            data = ct_volume(shared, Path(tmp) / "data", num_slices=3, empty_slices=3)
            self.assert_fails_before_training(
                data, Path(tmp), DatasetError, r"ct_001\.nii\.gz' has no foreground in any of its 3 slices"
            )

    def test_unknown_sampler(self):
        with tempfile.TemporaryDirectory() as tmp:
            wf = workflow("inference.json", "infer", bundle_root=tmp, sampler="ddpm2", **FAST)
            (Path(tmp) / "models").mkdir()
            torch.save(wf.parser.get_parsed_content("network_def").state_dict(), Path(tmp) / "models" / "model.pt")
            wf.initialize()
            with self.assertRaises(Exception) as ctx:
                wf.run()
            self.assertRegex(str(find_cause(ctx.exception, ValueError)), "sampler must be one of")


if __name__ == "__main__":
    unittest.main()
