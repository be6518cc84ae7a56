"""Helpers the bundle tests share: running a bundle's configs, the shared data, the bad-input cases every bundle has."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import tifffile
import torch
from monai.bundle import ConfigWorkflow

from emdiff_components.data import DatasetError
from emdiff_components.engines import CheckpointError

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("EMDIFF_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_data_or_skip(test: unittest.TestCase) -> Path:
    """The shared data folder; a missing folder fails the test under CI and skips it elsewhere."""
    if SHARED.is_dir():
        return SHARED
    if os.environ.get("CI") == "true":
        test.fail(f"shared data folder {SHARED} is missing (set EMDIFF_SHARED_DATA)")
    test.skipTest(f"shared data folder {SHARED} is missing")


def load_script(name: str):
    """``scripts/<name>.py`` imported as a module (the scripts folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def convert(name: str, out_dir: Path) -> Path:
    """Write shared data set ``name`` in the MSD layout with ``scripts/convert_shared_data.py``."""
    return Path(load_script("convert_shared_data").convert(name, out_dir, shared_dir=SHARED))


def workflow(configs: Path, config: str | list[str], workflow_type: str, **override) -> ConfigWorkflow:
    files = [str(configs / c) for c in ([config] if isinstance(config, str) else config)]
    return ConfigWorkflow(
        config_file=files, meta_file=str(configs / "metadata.json"), logging_file=str(configs / "logging.conf"),
        workflow_type=workflow_type, **override,
    )


def run(configs: Path, config, workflow_type: str, **override) -> ConfigWorkflow:
    wf = workflow(configs, config, workflow_type, **override)
    wf.initialize()
    wf.run()
    wf.finalize()
    return wf


def assert_metadata_verifies(test: unittest.TestCase, configs: Path) -> None:
    """``monai.bundle verify_metadata`` against the local copy of MONAI's schema (it would download it otherwise)."""
    schema = REPO.parent / "shared" / "schema" / "meta_schema_20240725.json"
    if not schema.is_file():
        test.skipTest("no local copy of the MONAI meta schema")
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(schema, Path(tmp) / "schema.json")
        result = subprocess.run(
            [sys.executable, "-m", "monai.bundle", "verify_metadata", "--meta_file", str(configs / "metadata.json"),
             "--filepath", str(Path(tmp) / "schema.json")],
            capture_output=True, text=True,
        )
    test.assertEqual(result.returncode, 0, result.stderr[-2000:])
    test.assertIn("metadata is verified", result.stdout + result.stderr)


README_SECTIONS = ["## Overview", "## Data", "## Training configuration", "## Performance", "## Bundle commands",
                   "## References", "## License"]


def assert_readme_sections(test: unittest.TestCase, readme: str) -> None:
    """Every bundle README has the same sections, in the same order."""
    positions = [readme.find(section) for section in README_SECTIONS]
    test.assertNotIn(-1, positions, positions)
    test.assertEqual(positions, sorted(positions))


def assert_properties(test: unittest.TestCase, configs: Path, overrides: dict, prepare=None) -> None:
    """``check_properties()`` is empty for train.json, inference.json and inference.json + evaluate.json.

    Inference needs weights: those of the train config's untrained network are saved as ``models/model.pt`` first;
    ``prepare(bundle_root)`` runs after that (e.g. to make the inputs inference reads).
    """
    with tempfile.TemporaryDirectory() as tmp:
        wf = workflow(configs, "train.json", "train", bundle_root=tmp, **overrides)
        wf.initialize()
        test.assertEqual(wf.check_properties(), [])
        (Path(tmp) / "models").mkdir(exist_ok=True)
        torch.save(wf.parser.get_parsed_content("network_def").state_dict(), Path(tmp) / "models" / "model.pt")
        if prepare is not None:
            prepare(tmp)
        for config in ("inference.json", ["inference.json", "evaluate.json"]):
            wf = workflow(configs, config, "infer", bundle_root=tmp, **overrides)
            wf.initialize()
            test.assertEqual(wf.check_properties(), [], config)


# keys of a scheduler definition that choose how to sample, not the schedule itself (train may sample differently)
SAMPLER_KEYS = ("sampler", "eta")


def assert_shared_ids(
    test: unittest.TestCase, configs: Path, ids: list[str], schedulers: list[tuple[str, str]] = ()
) -> None:
    """House rule 10: the ids train.json and inference.json share are written identically in both.

    ``ids`` are compared as written (e.g. ``network_def``, the intensity transform, class counts); ``schedulers``
    pairs a train.json scheduler id with an inference.json one, which must agree on everything but the sampler
    choice (``SAMPLER_KEYS``).
    """
    train = json.loads((configs / "train.json").read_text())
    infer = json.loads((configs / "inference.json").read_text())
    for key in ids:
        test.assertIn(key, train, f"train.json lacks {key}")
        test.assertIn(key, infer, f"inference.json lacks {key}")
        test.assertEqual(train[key], infer[key], f"{configs.parent.name}: {key} differs between train and inference")
    for train_key, infer_key in schedulers:
        a, b = train[train_key], infer[infer_key]
        test.assertIsInstance(a, dict, f"train.json {train_key} is not a _target_ definition")
        test.assertIsInstance(b, dict, f"inference.json {infer_key} is not a _target_ definition")
        test.assertEqual(_schedule(a), _schedule(b), f"{configs.parent.name}: {train_key} / {infer_key} differ")


def _schedule(definition: dict) -> dict:
    return {k: v for k, v in definition.items() if k not in SAMPLER_KEYS}


def table_value(text: str, row: str) -> str:
    """The value cell of the two-column markdown table row ``| row | value |`` of a bundle README."""
    match = re.search(rf"^\| {re.escape(row)} \| ([^|]+) \|", text, flags=re.MULTILINE)
    if match is None:
        raise AssertionError(f"README has no table row '{row}'")
    return match.group(1).strip()


def write_dicom_series(
    folder: Path, volume: np.ndarray, spacing, origin, direction, reverse_names: bool = False
) -> Path:
    """A (Z, Y, X) volume as a DICOM series written by ITK itself (GDCM), one ``.dcm`` file per slice.

    ``spacing`` and ``origin`` are ITK's (x, y, z) in mm, ``direction`` the 3 x 3 matrix whose columns are the axes.
    Slice z lies at ``origin + direction @ (0, 0, z * spacing[2])`` (ImagePositionPatient); all slices share one series
    UID. ``reverse_names`` names the files against the slice order, so a reader must sort by position.
    """
    import itk  # imported here: only the ITK tests need it

    folder.mkdir(parents=True, exist_ok=True)
    direction = np.asarray(direction, dtype=np.float64)
    for z, plane in enumerate(np.asarray(volume)):
        image = itk.image_from_array(np.ascontiguousarray(plane))
        image.SetSpacing([float(spacing[0]), float(spacing[1])])
        tags = image.GetMetaDataDictionary()
        position = np.asarray(origin, dtype=np.float64) + direction @ np.array([0.0, 0.0, z * spacing[2]])
        tags["0020|0032"] = "\\".join(f"{v:.6f}" for v in position)  # ImagePositionPatient
        tags["0020|0037"] = "\\".join(f"{v:.6f}" for v in (*direction[:, 0], *direction[:, 1]))  # orientation
        tags["0020|0013"] = str(z + 1)  # InstanceNumber
        tags["0020|000d"] = "1.2.826.0.1.3680043.2.1125.7.1"  # StudyInstanceUID
        tags["0020|000e"] = "1.2.826.0.1.3680043.2.1125.7.2"  # SeriesInstanceUID
        tags["0008|0018"] = f"1.2.826.0.1.3680043.2.1125.7.3.{z + 1}"  # SOPInstanceUID
        tags["0008|0060"] = "CT"
        tags["0018|0050"] = f"{spacing[2]}"  # SliceThickness
        io = itk.GDCMImageIO.New()
        io.SetKeepOriginalUID(True)  # else GDCM gives every file a series of its own
        number = len(volume) - 1 - z if reverse_names else z
        writer = itk.ImageFileWriter[type(image)].New(Input=image, FileName=str(folder / f"{number:03d}.dcm"),
                                                      ImageIO=io)
        writer.Update()
    return folder


def find_cause(err: BaseException | None, kind: type) -> BaseException | None:
    """The first exception of ``kind`` in the chain of causes (MONAI wraps config errors in RuntimeError)."""
    while err is not None and not isinstance(err, kind):
        err = err.__cause__ or err.__context__
    return err


class BadInputCases:
    """Bad input every bundle must reject before training starts, with an error naming the file.

    Mix into a ``unittest.TestCase`` that sets ``CONFIGS`` (the bundle's configs folder), ``FAST`` (overrides for a
    tiny run) and ``NETWORK`` (the network class name the checkpoint error names).
    """

    CONFIGS: Path
    FAST: dict
    NETWORK: str

    def _layout(self, root: Path, image_shape=(32, 32), label_shape=(32, 32), label_value=1) -> Path:
        for split in ("imagesTr", "labelsTr"):
            (root / split).mkdir(parents=True)
        tifffile.imwrite(root / "imagesTr" / "a.tif", np.zeros(image_shape, np.uint8))
        label = np.zeros(label_shape, np.uint8)
        label[:4, :4] = label_value
        tifffile.imwrite(root / "labelsTr" / "a.tif", label)
        return root

    def assert_fails_before_training(self, dataset: Path, root: Path, error: type, pattern: str) -> None:
        with self.assertRaises(Exception) as ctx:
            wf = workflow(self.CONFIGS, "train.json", "train", bundle_root=str(root), dataset_dir=str(dataset),
                          epochs=1, **self.FAST)
            wf.initialize()
            wf.run()
        cause = find_cause(ctx.exception, error)
        self.assertIsInstance(cause, error)
        self.assertRegex(str(cause), pattern)
        self.assertFalse((root / "models" / "checkpoint.pt").exists())

    def test_empty_folder(self):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "data" / "imagesTr").mkdir(parents=True)
            self.assert_fails_before_training(Path(tmp) / "data", Path(tmp), DatasetError, "imagesTr.*empty|empty.*imagesTr")

    def test_shape_mismatch(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = self._layout(Path(tmp) / "data", label_shape=(32, 30))
            self.assert_fails_before_training(data, Path(tmp), DatasetError, r"a\.tif.*\(32, 32\).*\(32, 30\)")

    def test_label_outside_classes(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = self._layout(Path(tmp) / "data", label_value=7)
            self.assert_fails_before_training(data, Path(tmp), DatasetError, r"a\.tif.*\[7\]")

    def test_unreadable_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = self._layout(Path(tmp) / "data")
            (data / "imagesTr" / "a.tif").write_bytes(b"not a tiff")
            self.assert_fails_before_training(data, Path(tmp), DatasetError, r"imagesTr/a\.tif")

    def test_wrong_checkpoint(self):
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = Path(tmp) / "other.pt"
            torch.save(torch.nn.Linear(3, 3).state_dict(), ckpt)
            wf = workflow(self.CONFIGS, "inference.json", "infer", bundle_root=tmp, ckpt_path=str(ckpt), **self.FAST)
            with self.assertRaises(Exception) as ctx:
                wf.initialize()
            cause = find_cause(ctx.exception, CheckpointError)
            self.assertIsInstance(cause, CheckpointError)
            self.assertRegex(str(cause), f"other.pt.*does not fit {self.NETWORK}")
