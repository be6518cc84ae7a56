"""Download AC3/AC4 (SNEMI3D) and write them in the NeuroDiff volume layout (TIFF stacks, instance labels).

AC3 and AC4 are serial-section SEM volumes of mouse somatosensory cortex with dense neuron annotations from
Kasthuri N. et al. "Saturated reconstruction of a volume of neocortex", Cell 162(3):648-661, 2015,
doi:10.1016/j.cell.2015.06.054; the SNEMI3D challenge (http://brainiac2.mit.edu/SNEMI3D/) releases 100 slices of each
(1024 x 1024): the training volume is AC4, the test volume comes from AC3. NeuroDiff (Jiang et al., ISBI 2026,
https://arxiv.org/abs/2601.15779) trains on AC4 and tests on the first 100 slices of AC3 at 6 x 6 x 29 nm. Output::

    OUT/imagesTr/ac4.tif  OUT/labelsTr/ac4.tif      (SNEMI3D training volume = AC4)
    OUT/imagesTs/ac3.tif  OUT/labelsTs/ac3.tif      (SNEMI3D test volume = AC3, first --test-slices slices)
    OUT/dataset.json                                 (voxel_size [29, 6, 6]; written last: marks a complete run)

Sources (``--source``):

- ``torch_em`` (default): the two HDF5 files that torch_em's ``snemi.py`` downloads from oc.embl.de
  (datasets ``volumes/raw`` and ``volumes/labels/neuron_ids``), with the SHA-256 digests torch_em publishes.
  A test file without labels gives an unlabelled ``imagesTs`` volume (logged).
- ``pytc``: ``snemi.zip`` from the Harvard RC mirror named in the PyTorch Connectomics SNEMI3D tutorial
  (``train-input.tif``, ``train-labels.tif``, ``test-input.tif``, ``test-labels.h5``, found at any depth). No
  checksum is published for it: the digest is computed and logged; pin it with ``--sha256``.

``--sha256* none`` skips a check. No mitochondria masks come with these volumes (``mitoTr/`` is not written).
Usage::

    python scripts/download_ac3_ac4.py --out data/ac3_ac4
    python scripts/download_ac3_ac4.py --out data/ac3_ac4 --train snemi_train.h5 --test snemi_test.h5
    python scripts/download_ac3_ac4.py --out data/ac3_ac4 --source pytc --archive ~/Downloads/snemi.zip
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence

import numpy as np
from monai.utils import optional_import

from emdiff_components.data import download_file, read_image, sha256sum, write_volume_case, write_volume_dataset_json

h5py, _has_h5py = optional_import("h5py")

__all__ = ["SOURCES", "VOXEL_SIZE", "TEST_SLICES", "convert_h5", "convert_snemi_zip", "main"]

logger = logging.getLogger("download_ac3_ac4")

# URLs and SHA-256 digests as published in torch_em/data/datasets/electron_microscopy/snemi.py (constantinpape/torch-em)
# and in the PyTorch Connectomics SNEMI3D tutorial (docs/source/tutorials/neuron/snemi3d.rst; no digest published)
SOURCES = {
    "torch_em": {
        "train": (
            "https://oc.embl.de/index.php/s/43iMotlXPyAB39z/download",
            "5b130a24d9eb23d972fede0f1a403bc05f6808b361cfa22eff23b930b12f0615",
        ),
        "test": (
            "https://oc.embl.de/index.php/s/aRhphk35H23De2s/download",
            "3df3920a0ddec6897105845f842b2665d37a47c2d1b96d4f4565682e315a59fa",
        ),
    },
    "pytc": {"archive": ("http://rhoana.rc.fas.harvard.edu/dataset/snemi.zip", None)},
}
RAW_KEY, LABEL_KEY = "volumes/raw", "volumes/labels/neuron_ids"
VOXEL_SIZE = (29.0, 6.0, 6.0)  # z, y, x nm as in the NeuroDiff paper (PyTorch Connectomics rounds z to 30)
TEST_SLICES = 100
_ZIP_FILES = {
    "train_image": ("train-input.tif", "train-input.tiff"),
    "train_label": ("train-labels.tif", "train-labels.tiff", "train-labels.h5"),
    "test_image": ("test-input.tif", "test-input.tiff"),
    "test_label": ("test-labels.h5", "test-labels.tif", "test-labels.tiff"),
}


def _instance_dtype(label: np.ndarray, what: str) -> np.ndarray:
    """Instance ids as uint32 (compact, and torch / MONAI read it); refuse what does not fit."""
    if label.size and (label.min() < 0 or label.max() > np.iinfo(np.uint32).max):
        raise ValueError(f"download_ac3_ac4: {what} ids span [{label.min()}, {label.max()}], outside uint32.")
    return label.astype(np.uint32, copy=False)


def _check_test_slices(test_slices: int) -> int:
    if isinstance(test_slices, bool) or not isinstance(test_slices, (int, np.integer)) or test_slices < 1:
        raise ValueError(f"download_ac3_ac4: test_slices must be a positive int, got {test_slices!r}.")
    return int(test_slices)


def _write(
    out_dir: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray | None],
    test_slices: int,
    origin: str,
) -> str:
    image, label = train
    if image.shape != label.shape:
        raise ValueError(f"download_ac3_ac4: AC4 image shape {image.shape} != label shape {label.shape} ({origin}).")
    write_volume_case(out_dir, "Tr", "ac4", image, _instance_dtype(label, "AC4 label"))
    logger.info("Tr: ac4 %s, %d neurons", image.shape, len(np.unique(label)) - int((label == 0).any()))
    image, label = test
    if image.shape[0] < test_slices:
        logger.warning("AC3 has only %d slices; keeping all of them (asked for %d)", image.shape[0], test_slices)
    image = image[:test_slices]
    if label is not None:
        label = label[:test_slices]
        if image.shape != label.shape:
            raise ValueError(f"download_ac3_ac4: AC3 image shape {image.shape} != label shape {label.shape}.")
        label = _instance_dtype(label, "AC3 label")
    else:
        logger.warning("the AC3 source has no labels: imagesTs/ac3.tif is written without labelsTs")
    write_volume_case(out_dir, "Ts", "ac3", image, label)
    logger.info("Ts: ac3 %s%s", image.shape, "" if label is not None else " (unlabelled)")
    write_volume_dataset_json(
        out_dir, "ac3_ac4", VOXEL_SIZE,
        description=f"AC4 (SNEMI3D training volume) Tr, first {image.shape[0]} slices of the AC3 (SNEMI3D test) "
        f"volume Ts; dense neuron instance labels; 6 x 6 x 29 nm; from {origin}",
        reference="Kasthuri et al. (2015) Saturated reconstruction of a volume of neocortex, Cell 162(3):648-661; "
        "SNEMI3D challenge http://brainiac2.mit.edu/SNEMI3D/",
        licence="research use; cite Kasthuri et al. 2015 and the SNEMI3D challenge (no explicit licence published)",
    )
    return out_dir


def _has_dataset(path: str, key: str) -> bool:
    with h5py.File(path, "r") as handle:
        return key in handle


def convert_h5(
    train_h5: str | os.PathLike, test_h5: str | os.PathLike, out_dir: str | os.PathLike, test_slices: int = TEST_SLICES
) -> str:
    """Convert torch_em's SNEMI3D HDF5 files (``volumes/raw``, ``volumes/labels/neuron_ids``) into the layout.

    Args:
        train_h5: SNEMI3D training file (AC4, raw + labels).
        test_h5: SNEMI3D test file (AC3, raw; labels if present).
        out_dir: output dataset folder.
        test_slices: keep the first this many AC3 slices, default 100 (the NeuroDiff test set).

    Returns:
        ``out_dir`` as an absolute path string.

    Raises:
        ValueError: bad ``test_slices``, a missing raw / training-label dataset, or shapes that differ.
    """
    test_slices = _check_test_slices(test_slices)
    train_h5, test_h5 = os.fspath(train_h5), os.fspath(test_h5)
    for path, keys in ((train_h5, (RAW_KEY, LABEL_KEY)), (test_h5, (RAW_KEY,))):
        missing = [k for k in keys if not _has_dataset(path, k)]
        if missing:
            raise ValueError(f"download_ac3_ac4: {path!r} has no dataset {missing[0]!r}; is it a SNEMI3D file?")
    root = os.path.abspath(os.fspath(out_dir))
    train = (read_image(f"{train_h5}:{RAW_KEY}"), read_image(f"{train_h5}:{LABEL_KEY}"))
    test_label = read_image(f"{test_h5}:{LABEL_KEY}") if _has_dataset(test_h5, LABEL_KEY) else None
    return _write(root, train, (read_image(f"{test_h5}:{RAW_KEY}"), test_label), test_slices, "torch_em SNEMI3D HDF5")


def _zip_member(archive: zipfile.ZipFile, names: tuple[str, ...]) -> str | None:
    found = [
        n for n in archive.namelist()
        if "__MACOSX" not in n and os.path.basename(n).lower() in names and not n.endswith("/")
    ]
    if len(found) > 1:
        raise ValueError(f"download_ac3_ac4: the archive holds several candidates {found}; keep one.")
    return found[0] if found else None


def convert_snemi_zip(
    archive_path: str | os.PathLike, out_dir: str | os.PathLike, test_slices: int = TEST_SLICES
) -> str:
    """Convert the PyTorch Connectomics ``snemi.zip`` (train-input / train-labels / test-input / test-labels).

    Args:
        archive_path: ``snemi.zip``.
        out_dir: output dataset folder.
        test_slices: keep the first this many AC3 slices, default 100.

    Returns:
        ``out_dir`` as an absolute path string.

    Raises:
        ValueError: bad ``test_slices``, a missing training or test-input file, or shapes that differ.
    """
    test_slices = _check_test_slices(test_slices)
    root = os.path.abspath(os.fspath(out_dir))
    os.makedirs(root, exist_ok=True)
    with zipfile.ZipFile(archive_path) as archive, tempfile.TemporaryDirectory(dir=root, prefix=".extract") as tmp:
        members = {key: _zip_member(archive, names) for key, names in _ZIP_FILES.items()}
        missing = [_ZIP_FILES[k][0] for k in ("train_image", "train_label", "test_image") if members[k] is None]
        if missing:
            raise ValueError(
                f"download_ac3_ac4: {os.fspath(archive_path)!r} has no {missing}; is it the SNEMI3D snemi.zip?"
            )
        arrays = {}
        for key, member in members.items():
            if member is not None:
                path = archive.extract(member, tmp)
                arrays[key] = read_image(path)
                os.remove(path)  # one extracted volume at a time
        train = (arrays["train_image"], arrays["train_label"])
        test = (arrays["test_image"], arrays.get("test_label"))
        return _write(root, train, test, test_slices, "PyTorch Connectomics snemi.zip")


def _expected(value: str | None) -> str | None:
    return None if value is None or str(value).lower() == "none" else value


def _fetch(url: str, local: str | None, dest: str, sha256: str | None) -> tuple[str, bool]:
    """A verified file and whether it was downloaded (and may be removed after conversion)."""
    if local is None:
        return download_file(url, dest, sha256=sha256, timeout=120), True
    if sha256 is not None and sha256sum(local) != sha256.lower():
        raise ValueError(f"download_ac3_ac4: SHA-256 of {local!r} is not {sha256}; pass --sha256-* none to skip.")
    return local, False


def main(argv: Sequence[str] | None = None) -> str:
    """Command-line entry point; returns the output folder."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output dataset folder")
    parser.add_argument("--source", choices=sorted(SOURCES), default="torch_em")
    parser.add_argument("--train", default=None, help="torch_em: local SNEMI3D training HDF5 instead of downloading")
    parser.add_argument("--test", default=None, help="torch_em: local SNEMI3D test HDF5 instead of downloading")
    parser.add_argument("--archive", default=None, help="pytc: local snemi.zip instead of downloading")
    parser.add_argument("--sha256-train", default=SOURCES["torch_em"]["train"][1], help="'none' skips the check")
    parser.add_argument("--sha256-test", default=SOURCES["torch_em"]["test"][1], help="'none' skips the check")
    parser.add_argument("--sha256", default=None, help="pytc: expected SHA-256 of snemi.zip (none published)")
    parser.add_argument("--test-slices", type=int, default=TEST_SLICES, help="first AC3 slices to keep (100)")
    parser.add_argument("--keep-downloads", action="store_true", help="keep downloaded files in OUT/.downloads")
    args = parser.parse_args(argv)
    root = os.path.abspath(args.out)
    downloads = os.path.join(root, ".downloads")
    fetched: list[str] = []
    if args.source == "torch_em":
        urls = SOURCES["torch_em"]
        train, new_train = _fetch(
            urls["train"][0], args.train, os.path.join(downloads, "snemi_train.h5"), _expected(args.sha256_train)
        )
        test, new_test = _fetch(
            urls["test"][0], args.test, os.path.join(downloads, "snemi_test.h5"), _expected(args.sha256_test)
        )
        fetched += [p for p, new in ((train, new_train), (test, new_test)) if new]
        convert_h5(train, test, root, args.test_slices)
    else:
        archive, new = _fetch(
            SOURCES["pytc"]["archive"][0], args.archive, os.path.join(downloads, "snemi.zip"), _expected(args.sha256)
        )
        fetched += [archive] if new else []
        if args.sha256 is None:
            logger.info("SHA-256 of %s: %s (pin it with --sha256)", archive, sha256sum(archive))
        convert_snemi_zip(archive, root, args.test_slices)
    if fetched and not args.keep_downloads:
        shutil.rmtree(downloads, ignore_errors=True)
    return root


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
