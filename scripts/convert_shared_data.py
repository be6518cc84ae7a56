"""Write one of the small real EM sets of ``../shared/data`` in the MSD layout used by the bundles.

Sets (stacks stay stacks, one TIFF per split):

- ``isbi_mito``: ISBI 2012 ``train-volume.tif`` + ``train-mito.tif`` (1 = mitochondrion); slices 0-23 -> Tr,
  24-29 -> Ts.
- ``isbi_membranes``: ISBI 2012 ``train-labels.tif`` with 0 (membrane) -> label 1 and 255 (interior) -> 0; same split.
- ``epfl``: EPFL hippocampus slices ``training0000-0003`` -> Tr, ``training0045-0046`` -> Ts; classes picked with
  ``--classes mitochondrion[,membranes,...]`` (one class -> binary, several -> labels 1..N in the order given;
  where masks overlap the later class wins; masks are thresholded at > 127).
- ``sstem``: ssTEM Drosophila VNC 9-value map -> 1 membrane (0, 32, 64, 96, 128: the four orientations and the
  junctions), 2 mitochondria (191), 3 synapse (223), 0 everything else (159 glia / extracellular, 255 neurite
  interior); slices 0-9 -> Tr, 10-13 -> Ts.

Volume sets for NeuroDiff (the layout of ``emdiff_components.data.volumes``: ``imagesTr/``, ``labelsTr/`` instance
labels, ``mitoTr/``; the voxel size goes into ``dataset.json``'s ``"voxel_size"``, z, y, x nm):

- ``fibsem_neurons``: FlyEM NeuroProof FIB-SEM medulla ``raw.tif`` + ``neuron_ids.tif`` (64, 250, 250), 10 nm
  isotropic, no mitochondria; slices 0-47 -> Tr, the last 16 (48-63) -> Ts.
- ``isbi_neurons``: ISBI 2012 ``train-volume.tif``; instance labels = 2D connected components (4-neighbourhood) of
  the cell interiors (``train-labels.tif`` == 255) in each slice, numbered uniquely across slices. They are NOT linked
  in 3D: one neuron crossing 5 sections is 5 instances. ``train-mito.tif`` -> ``mitoTr``. 50 x 4 x 4 nm; slices 0-23
  -> Tr, the last 6 (24-29) -> Ts.

Usage::

    python scripts/convert_shared_data.py isbi_mito --out /tmp/isbi_mito [--shared ../shared/data]
    python scripts/convert_shared_data.py epfl --out /tmp/epfl --classes mitochondrion,membranes

Importable: ``convert(name, out_dir, shared_dir=None, classes=None) -> str``. Licences and citations of the sets
are in each folder's ``SOURCES.md``; ``dataset.json`` in the output repeats the terms.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emdiff_components.data import (
    label_slices_2d,
    read_image,
    write_dataset_json,
    write_layout,
    write_volume_case,
    write_volume_dataset_json,
)

__all__ = ["DATASETS", "EPFL_CLASSES", "convert", "default_shared_dir", "main"]

logger = logging.getLogger("convert_shared_data")

DATASETS = (
    "isbi_mito", "isbi_membranes", "epfl", "sstem", "covid", "covid_multiclass", "fibsem_neurons", "isbi_neurons"
)
COVID_TEST_FRACTION = 0.25
FIBSEM_TEST_SLICES, FIBSEM_VOXEL_SIZE = 16, (10.0, 10.0, 10.0)
ISBI_TEST_SLICES, ISBI_VOXEL_SIZE = 6, (50.0, 4.0, 4.0)
EPFL_CLASSES = ("mitochondrion", "mitochondrial_boundaries", "membranes", "vesicles", "PSD", "axon")
_EPFL_SPLITS = {"Tr": ("0000", "0001", "0002", "0003"), "Ts": ("0045", "0046")}
_SSTEM_CLASSES = {1: (0, 32, 64, 96, 128), 2: (191,), 3: (223,)}

_ISBI_TERMS = "ISBI 2012 / Cardona et al. 2010 terms: non-commercial segmentation research only; cite both papers."
_ISBI_REF = (
    "Arganda-Carreras et al. (2015) Front. Neuroanat. 9:142; Cardona et al. (2010) PLoS Biol 8(10):e1000502"
)


def default_shared_dir() -> Path:
    """``$EMDIFF_SHARED_DATA`` if set, else ``<repo>/../shared/data``."""
    env = os.environ.get("EMDIFF_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _need(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"convert_shared_data: missing {str(path)!r} (set --shared or EMDIFF_SHARED_DATA).")
    return path


def _split_stack(out_dir: str, name: str, image: np.ndarray, label: np.ndarray, tr: slice, ts: slice) -> None:
    write_layout(out_dir, "Tr", f"{name}_train", image[tr], label[tr])
    write_layout(out_dir, "Ts", f"{name}_test", image[ts], label[ts])


def _isbi(shared: Path, out_dir: str, membranes: bool) -> None:
    folder = _need(shared / "isbi2012_em")
    image = read_image(_need(folder / "train-volume.tif"))
    if membranes:
        raw = read_image(_need(folder / "train-labels.tif"))
        label = (raw == 0).astype(np.uint8)  # ISBI: 0 = membrane, 255 = cell interior
        classes, name = {"background": 0, "membrane": 1}, "isbi2012_membranes"
    else:
        label = (read_image(_need(folder / "train-mito.tif")) > 0).astype(np.uint8)
        classes, name = {"background": 0, "mitochondria": 1}, "isbi2012_mito"
    _split_stack(out_dir, name, image, label, slice(0, 24), slice(24, 30))
    write_dataset_json(
        out_dir, name, classes, description=f"{name}: slices 0-23 Tr, 24-29 Ts, 4x4x50 nm; see SOURCES.md",
        reference=_ISBI_REF, licence=_ISBI_TERMS,
    )


def _epfl(shared: Path, out_dir: str, classes: Sequence[str]) -> None:
    unknown = [c for c in classes if c not in EPFL_CLASSES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(
            f"convert_shared_data: epfl classes must be distinct names from {list(EPFL_CLASSES)}, got {list(classes)}."
        )
    folder = _need(shared / "epfl_hippocampus_6class_graphlab")
    for split, numbers in _EPFL_SPLITS.items():
        images, labels = [], []
        for number in numbers:
            image = read_image(_need(folder / "slices" / f"training{number}.png"))
            label = np.zeros(image.shape, dtype=np.uint8)
            for value, cls in enumerate(classes, start=1):  # later classes overwrite earlier ones
                mask = read_image(_need(folder / cls / f"training{number}.png"))
                label[mask > 127] = value
            images.append(image)
            labels.append(label)
        write_layout(out_dir, split, f"epfl_{'train' if split == 'Tr' else 'test'}", np.stack(images), np.stack(labels))
    write_dataset_json(
        out_dir, "epfl_hippocampus", {"background": 0, **{c: i for i, c in enumerate(classes, start=1)}},
        description="EPFL hippocampus FIB-SEM slices training0000-0003 Tr, 0045-0046 Ts; GraphLabEMproj masks",
        reference="Lucchi et al. (2012) IEEE TMI 31(2):474-486; annotations: GraphLabEMproj (zhixuhao/unet PR 242)",
        licence="unclear: research use only until clarified (see SOURCES.md)",
    )


def _sstem(shared: Path, out_dir: str) -> None:
    folder = _need(shared / "sstem_drosophila_vnc_gerhard")
    image = read_image(_need(folder / "raw.tif"))
    raw = read_image(_need(folder / "labels.tif"))
    label = np.zeros(raw.shape, dtype=np.uint8)
    for value, sources in _SSTEM_CLASSES.items():
        label[np.isin(raw, sources)] = value
    _split_stack(out_dir, "sstem_vnc", image, label, slice(0, 10), slice(10, 14))
    write_dataset_json(
        out_dir, "sstem_vnc", {"background": 0, "membrane": 1, "mitochondria": 2, "synapse": 3},
        description="ssTEM Drosophila L3 VNC stack 1 (centre crop), slices 0-9 Tr, 10-13 Ts, 4.6x4.6x45-50 nm",
        reference="Gerhard et al. (2013) figshare, doi:10.6084/m9.figshare.856713",
        licence="CC BY-NC-SA 3.0 Unported",
    )


def _covid(shared: Path, out_dir: str, multiclass: bool) -> None:
    """COVID-19 CT slices (Inf-Net test split of MedSeg): 2D slices of different sizes, one file per slice.

    Binary: ``GT_infection`` (255 = infection -> 1). Multi-class: ``GT_multiclass`` palette indices (1 GGO,
    2 consolidation), read with Pillow because OpenCV expands palettes to colours. The last quarter of the slices in
    natural order is the test split.
    """
    from PIL import Image

    folder = _need(shared / "covid19_ct_infection_infnet")
    names = sorted((p.stem for p in (folder / "Imgs").glob("*.jpg")), key=lambda n: (len(n), n))
    if not names:
        raise FileNotFoundError(f"convert_shared_data: no .jpg slices in {folder / 'Imgs'}")
    num_test = max(1, round(len(names) * COVID_TEST_FRACTION))
    for i, number in enumerate(names):
        image = read_image(folder / "Imgs" / f"{number}.jpg")
        if multiclass:
            label = np.asarray(Image.open(_need(folder / "GT_multiclass" / f"{number}.png"))).astype(np.uint8)
        else:
            label = (read_image(_need(folder / "GT_infection" / f"{number}.png")) > 127).astype(np.uint8)
        write_layout(out_dir, "Tr" if i < len(names) - num_test else "Ts", f"covid_{number}", image, label)
    classes = {"background": 0, "ground_glass": 1, "consolidation": 2} if multiclass else {"background": 0, "infection": 1}
    write_dataset_json(
        out_dir, "covid19_ct_infection", classes,
        description=f"COVID-19 CT axial slices (MedSeg via Inf-Net), last {num_test} of {len(names)} slices as test",
        reference="Fan et al. (2020) IEEE TMI 39(8):2626-2637; MedSeg COVID-19 CT segmentation dataset",
        licence="non-commercial purposes only (Inf-Net COVID-SemiSeg terms)",
        modality="CT",
    )


def _fibsem_neurons(shared: Path, out_dir: str) -> None:
    folder = _need(shared / "fibsem_medulla_neurons_neuroproof")
    image = read_image(_need(folder / "raw.tif"))
    label = read_image(_need(folder / "neuron_ids.tif"))
    split = image.shape[0] - FIBSEM_TEST_SLICES
    write_volume_case(out_dir, "Tr", "fibsem_medulla_train", image[:split], label[:split])
    write_volume_case(out_dir, "Ts", "fibsem_medulla_test", image[split:], label[split:])
    write_volume_dataset_json(
        out_dir, "fibsem_medulla_neurons", FIBSEM_VOXEL_SIZE,
        description=f"FlyEM NeuroProof training_sample2 FIB-SEM medulla, neuron body ids; last {FIBSEM_TEST_SLICES} "
        "slices Ts; 10 nm isotropic; no mitochondria masks",
        reference="Parag et al. (2015) PLoS ONE 10(5):e0125825; janelia-flyem/neuroproof_examples",
        licence="CC BY 3.0 Unported (attribute FlyEM / HHMI Janelia)",
    )


def _isbi_neurons(shared: Path, out_dir: str) -> None:
    folder = _need(shared / "isbi2012_em")
    image = read_image(_need(folder / "train-volume.tif"))
    membranes = read_image(_need(folder / "train-labels.tif"))
    mito = read_image(_need(folder / "train-mito.tif")) > 0
    # ISBI: 255 = cell interior, 0 = membrane; components per slice only (2D annotation, no 3D links)
    label = label_slices_2d(membranes > 127, connectivity=1)
    split = image.shape[0] - ISBI_TEST_SLICES
    write_volume_case(out_dir, "Tr", "isbi2012_train", image[:split], label[:split], mito[:split])
    write_volume_case(out_dir, "Ts", "isbi2012_test", image[split:], label[split:], mito[split:])
    write_volume_dataset_json(
        out_dir, "isbi2012_neurons", ISBI_VOXEL_SIZE,
        description="ISBI 2012 training stack; instance labels = 2D connected components of the cell interiors per "
        f"slice, unique ids across slices but NOT linked in 3D; rMiW mitochondria masks; last {ISBI_TEST_SLICES} "
        "slices Ts; 50 x 4 x 4 nm",
        reference=_ISBI_REF, licence=_ISBI_TERMS,
    )


def convert(
    name: str,
    out_dir: str | os.PathLike,
    shared_dir: str | os.PathLike | None = None,
    classes: Sequence[str] | str | None = None,
) -> str:
    """Convert one shared data set into the MSD layout under ``out_dir``.

    Args:
        name: one of ``DATASETS``: ``"isbi_mito"``, ``"isbi_membranes"``, ``"epfl"``, ``"sstem"``, ``"covid"``,
            ``"covid_multiclass"``, ``"fibsem_neurons"``, ``"isbi_neurons"`` (the last two in the volume layout).
        out_dir: output dataset folder (created; existing files of the same names are replaced atomically).
        shared_dir: the shared data folder; default ``$EMDIFF_SHARED_DATA`` or ``<repo>/../shared/data``.
        classes: ``epfl`` only: class folder names (list or comma-separated string), default ``("mitochondrion",)``.

    Returns:
        ``out_dir`` as an absolute path string.

    Raises:
        ValueError: unknown set name, or bad / misplaced ``classes``.
        FileNotFoundError: the shared folder or one of its files is missing.
    """
    if name not in DATASETS:
        raise ValueError(f"convert_shared_data: unknown data set {name!r}; choose one of {list(DATASETS)}.")
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    if classes is not None and name != "epfl":
        raise ValueError(f"convert_shared_data: classes applies to 'epfl' only, not {name!r}.")
    shared = Path(shared_dir) if shared_dir is not None else default_shared_dir()
    root = os.path.abspath(os.fspath(out_dir))
    os.makedirs(root, exist_ok=True)
    if name in ("isbi_mito", "isbi_membranes"):
        _isbi(shared, root, membranes=name == "isbi_membranes")
    elif name == "epfl":
        _epfl(shared, root, tuple(classes) if classes is not None else ("mitochondrion",))
    elif name == "sstem":
        _sstem(shared, root)
    elif name == "fibsem_neurons":
        _fibsem_neurons(shared, root)
    elif name == "isbi_neurons":
        _isbi_neurons(shared, root)
    else:
        _covid(shared, root, multiclass=name == "covid_multiclass")
    logger.info("wrote %s from %s to %s", name, shared, root)
    return root


def main(argv: Sequence[str] | None = None) -> str:
    """Command-line entry point; returns the output folder."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=DATASETS)
    parser.add_argument("--out", required=True, help="output dataset folder")
    parser.add_argument(
        "--shared", default=None, help="shared data folder (default: $EMDIFF_SHARED_DATA or ../shared/data)"
    )
    parser.add_argument("--classes", default=None, help="epfl only: comma-separated class folders, in paint order")
    args = parser.parse_args(argv)
    return convert(args.name, args.out, args.shared, args.classes)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
