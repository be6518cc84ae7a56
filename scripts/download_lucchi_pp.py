"""Download Lucchi++ and write it in the MSD layout (TIFF stacks, labels 0/1).

Lucchi++ is the re-annotated EPFL hippocampus FIB-SEM mitochondria set of Casser V., Kang K., Pfister H., Haehn D.
"Fast mitochondria detection for connectomics", MIDL 2020 (PMLR 121:111-120), https://arxiv.org/abs/1812.06024,
released on https://sites.google.com/view/connectomics/ as ``lucchi_pp.zip``. The archive holds
``Lucchi++/{Train_In,Train_Out,Test_In,Test_Out}/``: 165 PNG slices each (images ``mask0000.png``..., masks
``0.png``...). Output::

    OUT/imagesTr/lucchi_pp_train.tif  OUT/labelsTr/lucchi_pp_train.tif   (from Train_In / Train_Out)
    OUT/imagesTs/lucchi_pp_test.tif   OUT/labelsTs/lucchi_pp_test.tif    (from Test_In / Test_Out)
    OUT/dataset.json                                                      (written last: marks a complete run)

The archive's folder names decide the split (torch_em, for one, swaps them; use ``--swap-splits`` for that).
The SHA-256 below is the one published by torch_em and micro_sam for this URL; ``--sha256`` overrides it and
``--sha256 none`` only computes and logs it. Usage::

    python scripts/download_lucchi_pp.py --out data/lucchi_pp
    python scripts/download_lucchi_pp.py --out data/lucchi_pp --archive ~/Downloads/lucchi_pp.zip
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import zipfile
from collections.abc import Sequence

import numpy as np

from emdiff_components.data import (
    add_archive_arguments,
    fetch_archive,
    read_image,
    supported_extensions,
    write_dataset_json,
    write_layout,
)
from emdiff_components.utils import natural_sort_key

__all__ = ["URL", "SHA256", "convert_archive", "main"]

logger = logging.getLogger("download_lucchi_pp")

URL = "http://www.casser.io/files/lucchi_pp.zip"
SHA256 = "770ce9e98fc6f29c1b1a250c637e6c5125f2b5f1260e5a7687b55a79e2e8844d"
_FOLDERS = {"Tr": ("Train_In", "Train_Out"), "Ts": ("Test_In", "Test_Out")}


def _members(archive: zipfile.ZipFile, folder: str) -> list[str]:
    """Image members whose parent folder is ``folder`` (at any depth), in natural order; skips macOS metadata."""
    exts = supported_extensions()
    names = [
        n
        for n in archive.namelist()
        if not n.endswith("/")
        and "__MACOSX" not in n
        and not os.path.basename(n).startswith(".")
        and os.path.basename(os.path.dirname(n)) == folder
        and n.lower().endswith(exts)
    ]
    return sorted(names, key=lambda name: natural_sort_key(os.path.basename(name)))


def _read_stack(archive: zipfile.ZipFile, members: list[str], tmp: str) -> np.ndarray:
    slices = []
    for member in members:
        path = archive.extract(member, tmp)
        slices.append(read_image(path))
        os.remove(path)
    shapes = {s.shape for s in slices}
    if len(shapes) != 1:
        raise ValueError(f"download_lucchi_pp: slices of {os.path.dirname(members[0])!r} differ in shape: {shapes}.")
    return np.stack(slices)


def _binarize(mask: np.ndarray) -> np.ndarray:
    """0/255 (or 0/1) masks -> uint8 0/1; values > half of 255 count as foreground."""
    return (mask > (0 if mask.max() <= 1 else 127)).astype(np.uint8)


def convert_archive(archive_path: str | os.PathLike, out_dir: str | os.PathLike, swap_splits: bool = False) -> str:
    """Convert a Lucchi++ zip archive into the MSD layout.

    Args:
        archive_path: ``lucchi_pp.zip``.
        out_dir: output dataset folder.
        swap_splits: write ``Test_*`` as Tr and ``Train_*`` as Ts, default False.

    Returns:
        ``out_dir`` as an absolute path string.

    Raises:
        ValueError: a folder is missing from the archive, or images and masks differ in count or shape.
    """
    root = os.path.abspath(os.fspath(out_dir))
    os.makedirs(root, exist_ok=True)
    with zipfile.ZipFile(archive_path) as archive, tempfile.TemporaryDirectory(dir=root, prefix=".extract") as tmp:
        for split, (in_dir, out_folder) in _FOLDERS.items():
            if swap_splits:
                split = "Ts" if split == "Tr" else "Tr"
            images, masks = _members(archive, in_dir), _members(archive, out_folder)
            if not images or not masks:
                raise ValueError(
                    f"download_lucchi_pp: {os.fspath(archive_path)!r} has no image files in a {in_dir!r} or "
                    f"{out_folder!r} folder; is it the Lucchi++ archive?"
                )
            if len(images) != len(masks):
                raise ValueError(
                    f"download_lucchi_pp: {in_dir} has {len(images)} slices but {out_folder} has {len(masks)}."
                )
            image, label = _read_stack(archive, images, tmp), _binarize(_read_stack(archive, masks, tmp))
            if image.shape != label.shape:
                raise ValueError(f"download_lucchi_pp: {in_dir} shape {image.shape} != {out_folder} {label.shape}.")
            name = "lucchi_pp_train" if split == "Tr" else "lucchi_pp_test"
            write_layout(root, split, name, image, label)
            logger.info("%s: %s %s, mitochondria %.1f %%", split, name, image.shape, 100 * label.mean())
    write_dataset_json(
        root, "lucchi_pp", {"background": 0, "mitochondria": 1},
        description="Lucchi++ (EPFL hippocampus FIB-SEM, re-annotated mitochondria), 5x5x5 nm",
        reference="Casser et al. (2020) Fast mitochondria detection for connectomics, MIDL, PMLR 121:111-120; "
        "Lucchi et al. (2012) IEEE TMI 31(2):474-486",
        licence="research use; see https://sites.google.com/view/connectomics/ and the EPFL CVLab data page",
    )
    return root


def main(argv: Sequence[str] | None = None) -> str:
    """Command-line entry point; returns the output folder."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_archive_arguments(parser, URL, SHA256)
    parser.add_argument("--swap-splits", action="store_true", help="Test_* -> Tr and Train_* -> Ts")
    args = parser.parse_args(argv)
    archive, remove_after = fetch_archive(args, "lucchi_pp.zip", timeout=60)
    root = convert_archive(archive, args.out, swap_splits=args.swap_splits)
    if remove_after:
        os.remove(archive)
    return root


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
