"""Download BetaSeg and write it in the MSD layout with multi-class labels (one TIFF stack per cell).

BetaSeg: Müller A., Schmidt D., Xu C.S., Pang S., D'Costa J.V., Kretschmar S., Münster C., Kurth T., Jug F.,
Weigert M., et al. "3D FIB-SEM reconstruction of microtubule-organelle interaction in whole primary mouse beta
cells", J Cell Biol 220(2):e202010039, doi:10.1083/jcb.202010039; data page https://betaseg.github.io/.
FIB-SEM of primary mouse beta cells, one folder per cell
(``high_c1``..., ``low_c1``...) holding ``<cell>_source.tif`` and per-organelle masks. Labels written here::

    1 mitochondria  (<cell>_mitochondria_mask.tif)
    2 Golgi         (<cell>_golgi_corrected.tif)
    3 nucleus       (<cell>_nucleus_mask.tif)
    4 insulin granules (<cell>_granules.tif)
    0 everything else

Every mask is read as ``> 0`` (granules may be instance ids). Where masks overlap, small structures win: painted
in the order nucleus, mitochondria, Golgi, granules. Output: ``imagesTr/<cell>.tif`` + ``labelsTr/<cell>.tif`` per
training cell, the same under ``*Ts`` for ``--test-cells`` (default: the last cell in natural order; the ECSD paper
does not state its split), then ``dataset.json`` (written last: marks a complete run).

The archive (tens of GB; the public share ``https://cloud.mpi-cbg.de/index.php/s/UJopHTRuh6f4wR8/download``, as used by
torch_em and MAESTER) is checked against the SHA-256 published by torch_em; ``--sha256 none`` only computes and logs
it. Cells are converted one at a time, extracting only the files needed. Usage::

    python scripts/download_betaseg.py --out data/betaseg [--test-cells low_c3] [--cells high_c1,high_c2,low_c3]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import zipfile
from collections.abc import Sequence

import numpy as np

from emdiff_components.data import add_archive_arguments, fetch_archive, read_image, write_dataset_json, write_layout
from emdiff_components.utils import natural_sort_key

__all__ = ["URL", "SHA256", "CLASSES", "PAINT_ORDER", "convert_archive", "main"]

logger = logging.getLogger("download_betaseg")

URL = "https://cloud.mpi-cbg.de/index.php/s/UJopHTRuh6f4wR8/download"
SHA256 = "4872eec0211721dc224acee319c27c4f51c190adc36004e3d5bb60dfcd67eb7b"
# label value -> (class name, file suffix after "<cell>_")
CLASSES = {
    1: ("mitochondria", "mitochondria_mask.tif"),
    2: ("golgi", "golgi_corrected.tif"),
    3: ("nucleus", "nucleus_mask.tif"),
    4: ("insulin_granules", "granules.tif"),
}
PAINT_ORDER = (3, 1, 2, 4)  # later wins: nucleus first, granules last
_SOURCE_SUFFIX = "_source.tif"


def _find_cells(archive: zipfile.ZipFile) -> dict[str, str]:
    """cell name -> folder prefix inside the archive, for every ``<cell>/<cell>_source.tif``."""
    cells: dict[str, str] = {}
    for member in archive.namelist():
        base, folder = os.path.basename(member), os.path.dirname(member)
        if "__MACOSX" in member or not base.endswith(_SOURCE_SUFFIX):
            continue
        cell = base[: -len(_SOURCE_SUFFIX)]
        if os.path.basename(folder) == cell:
            cells[cell] = folder
    return dict(sorted(cells.items(), key=lambda kv: natural_sort_key(kv[0])))


def _read_member(archive: zipfile.ZipFile, member: str, tmp: str) -> np.ndarray:
    try:
        info = archive.getinfo(member)
    except KeyError as err:
        raise ValueError(f"download_betaseg: the archive has no {member!r}.") from err
    path = archive.extract(info, tmp)
    try:
        return read_image(path)
    finally:
        os.remove(path)


def _cell_label(archive: zipfile.ZipFile, cell: str, folder: str, shape: tuple, tmp: str) -> np.ndarray:
    label = np.zeros(shape, dtype=np.uint8)
    for value in PAINT_ORDER:
        member = f"{folder}/{cell}_{CLASSES[value][1]}" if folder else f"{cell}_{CLASSES[value][1]}"
        mask = _read_member(archive, member, tmp)
        if mask.shape != shape:
            raise ValueError(f"download_betaseg: {member!r} has shape {mask.shape}, the source has {shape}.")
        label[mask > 0] = value
    return label


def convert_archive(
    archive_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    test_cells: Sequence[str] | None = None,
    cells: Sequence[str] | None = None,
) -> str:
    """Convert a BetaSeg zip archive into the MSD layout, one stack per cell.

    Args:
        archive_path: the downloaded zip.
        out_dir: output dataset folder.
        test_cells: cells written to ``*Ts``; default None: the last cell (natural order) of those converted.
        cells: convert only these cells; default None: all cells found.

    Returns:
        ``out_dir`` as an absolute path string.

    Raises:
        ValueError: no cell folders in the archive, unknown cell names, a missing mask or a shape mismatch.
    """
    root = os.path.abspath(os.fspath(out_dir))
    os.makedirs(root, exist_ok=True)
    with zipfile.ZipFile(archive_path) as archive, tempfile.TemporaryDirectory(dir=root, prefix=".extract") as tmp:
        found = _find_cells(archive)
        if not found:
            raise ValueError(
                f"download_betaseg: {os.fspath(archive_path)!r} holds no '<cell>/<cell>{_SOURCE_SUFFIX}'; "
                "is it the BetaSeg archive?"
            )
        selected = list(found) if cells is None else list(cells)
        tests = [selected[-1]] if test_cells is None else list(test_cells)
        unknown = sorted(set(selected + tests) - set(found))
        if unknown:
            raise ValueError(f"download_betaseg: unknown cells {unknown}; the archive has {list(found)}.")
        for cell in selected:
            folder = found[cell]
            source = f"{folder}/{cell}{_SOURCE_SUFFIX}" if folder else f"{cell}{_SOURCE_SUFFIX}"
            image = _read_member(archive, source, tmp)
            label = _cell_label(archive, cell, folder, image.shape, tmp)
            split = "Ts" if cell in tests else "Tr"
            write_layout(root, split, cell, image, label)
            fractions = np.bincount(label.ravel(), minlength=5) / label.size
            logger.info("%s -> %s %s, class fractions %s", cell, split, image.shape, np.round(fractions, 4).tolist())
            del image, label
    write_dataset_json(
        root, "betaseg", {"background": 0, **{name: value for value, (name, _) in CLASSES.items()}},
        description="BetaSeg FIB-SEM primary mouse beta cells, one stack per cell; labels painted nucleus, "
        "mitochondria, Golgi, granules (later wins)",
        reference="Müller et al., J Cell Biol 220(2):e202010039, doi:10.1083/jcb.202010039",
        licence="see https://betaseg.github.io/ (terms of the data release)",
    )
    return root


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def main(argv: Sequence[str] | None = None) -> str:
    """Command-line entry point; returns the output folder."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_archive_arguments(parser, URL, SHA256)
    parser.add_argument("--test-cells", default=None, help="comma-separated cells for imagesTs (default: last cell)")
    parser.add_argument("--cells", default=None, help="comma-separated cells to convert (default: all)")
    args = parser.parse_args(argv)
    archive, remove_after = fetch_archive(args, "betaseg.zip", timeout=300)
    root = convert_archive(archive, args.out, test_cells=_names(args.test_cells), cells=_names(args.cells))
    if remove_after:
        os.remove(archive)
    return root


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
