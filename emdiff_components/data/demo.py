"""Embedded synthetic demo data set: EM-like 2D images with mitochondria (and vesicle) labels, clearly marked.

Bundles default ``dataset_dir`` to a demo folder that is generated here when empty, so the README's commands run
anywhere in seconds. The images mimic EM only loosely (dark cell membranes from a Voronoi tessellation, dark-rimmed
mitochondria with striped cristae, vesicle clusters, shot noise and uneven illumination); they are for smoke runs and
demos, never for measuring accuracy, which the README written next to them says in its first line.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np

from .layout import write_layout
from .readers import supported_extensions
from .volumes import write_volume_case, write_volume_dataset_json

__all__ = ["make_demo_dataset", "make_demo_volumes"]

logger = logging.getLogger(__name__)

# grey levels in [0, 1] before illumination and noise; membranes, rims and vesicle walls are the darkest structures
_CYTOPLASM, _MEMBRANE_DROP = 0.66, 0.42
_MITO_MATRIX, _MITO_CRISTAE, _MITO_RIM = 0.40, 0.16, 0.14
_VESICLE_WALL, _VESICLE_LUMEN = 0.22, 0.52


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with reflected borders (numpy only, so the demo needs no OpenCV or SciPy)."""
    radius = max(1, int(3 * sigma + 0.5))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    out = image.astype(np.float64)
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect")
        length = out.shape[axis]
        out = sum(w * np.take(padded, np.arange(i, i + length), axis=axis) for i, w in enumerate(taps))
    return out


def _membranes(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Blurred borders of a Voronoi tessellation, scaled to a peak of 1: cell membranes seen in section."""
    height, width = shape
    num_cells = max(8, int(height * width / 48**2))
    seeds = rng.uniform((0, 0), (height, width), size=(num_cells, 2))
    yy, xx = np.mgrid[0:height, 0:width]
    dist = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
    cells = np.argmin(dist, axis=-1)
    border = np.zeros(shape, dtype=bool)
    border[:-1] |= cells[:-1] != cells[1:]
    border[:, :-1] |= cells[:, :-1] != cells[:, 1:]
    lines = _blur(border.astype(np.float64), 1.1)
    return lines / max(lines.max(), 1e-8)


def _ellipse(shape, centre, axes, angle):
    """Normalised coordinates (u along the major axis, v) and the radius field r = (u/a)^2 + (v/b)^2."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    dy, dx = yy - centre[0], xx - centre[1]
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    return u, (u / axes[0]) ** 2 + (v / axes[1]) ** 2


def _draw_mitochondria(rng, image, label, scale):
    """Dark-rimmed ellipses with striped cristae (label 1); rejection sampling keeps them apart."""
    shape = image.shape
    target = int(rng.integers(6, 10) * shape[0] * shape[1] / 192**2)
    placed, tries = 0, 0
    while placed < target and tries < 40 * max(target, 1):
        tries += 1
        axes = (rng.uniform(12, 22) * scale, rng.uniform(7, 11) * scale)
        centre = rng.uniform((0, 0), shape)
        angle = rng.uniform(0, np.pi)
        u, radius = _ellipse(shape, centre, axes, angle)
        inside = radius <= 1.0
        # a 4-pixel margin around existing organelles keeps shapes separate, as in tissue
        if not inside.any() or (label[radius <= (1 + 4 / axes[1]) ** 2] > 0).any():
            continue
        wavelength = rng.uniform(4.0, 6.0)
        cristae = 0.5 + 0.5 * np.cos(2 * np.pi * u / wavelength + rng.uniform(0, 2 * np.pi))
        matrix = _MITO_MATRIX - _MITO_CRISTAE * cristae
        inner = radius <= (1 - 2.2 / axes[1]) ** 2
        image[inside] = np.where(inner[inside], matrix[inside], _MITO_RIM)
        label[inside] = 1
        placed += 1


def _draw_vesicles(rng, image, label, scale):
    """Clusters of small dark-walled round vesicles (label 2), kept off the mitochondria."""
    shape = image.shape
    for _ in range(int(rng.integers(3, 5))):
        cluster = rng.uniform((10, 10), (shape[0] - 10, shape[1] - 10))
        for _ in range(int(rng.integers(10, 18))):
            centre = cluster + rng.normal(0, 7 * scale, size=2)
            size = rng.uniform(2.6, 3.6) * scale
            _, radius = _ellipse(shape, centre, (size, size), 0.0)
            inside = radius <= 1.0
            if not inside.any() or (label[radius <= 1.3**2] > 0).any():
                continue
            lumen = radius <= (1 - 1.2 / size) ** 2
            image[inside] = np.where(lumen[inside], _VESICLE_LUMEN, _VESICLE_WALL)
            label[inside] = 2


def _illumination(rng, shape):
    """Smooth multiplicative shading: a random tilt plus a very blurred random field (about +-15 %)."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]] / max(shape)
    tilt = rng.uniform(-0.12, 0.12) * (yy - 0.5) + rng.uniform(-0.12, 0.12) * (xx - 0.5)
    field = _blur(rng.normal(size=shape), max(shape) / 8)
    field = 0.08 * field / max(np.abs(field).max(), 1e-8)
    return 1.0 + tilt + field


def _make_case(rng, shape, num_classes):
    """One synthetic EM-like image (uint8) and its label map (uint8, 0..num_classes-1)."""
    scale = min(shape) / 192
    texture = _blur(rng.normal(size=shape), 1.5)
    # faint cytoplasm granularity so the background is not flat
    image = _CYTOPLASM + 0.07 * texture / max(np.abs(texture).max(), 1e-8)
    image = image - _MEMBRANE_DROP * _membranes(rng, shape)
    label = np.zeros(shape, dtype=np.uint8)
    _draw_mitochondria(rng, image, label, scale)
    if num_classes == 3:
        _draw_vesicles(rng, image, label, scale)
    image = _blur(image, 0.7) * _illumination(rng, shape)
    # shot noise (Poisson, ~80 electrons at full grey) plus detector read noise
    image = rng.poisson(np.clip(image, 0, None) * 80) / 80 + rng.normal(0, 0.03, size=shape)
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8), label


def _has_images(folder: str) -> bool:
    if not os.path.isdir(folder):
        return False
    exts = supported_extensions()
    return any(not f.startswith(".") and f.lower().endswith(exts) for f in os.listdir(folder))


def make_demo_dataset(
    dataset_dir: str | os.PathLike,
    num_train: int = 4,
    num_test: int = 2,
    size: Sequence[int] = (192, 192),
    num_classes: int = 2,
    seed: int = 0,
) -> str:
    """Generate the synthetic demo data set in the MSD layout, unless ``dataset_dir/imagesTr`` already has images.

    Writes ``imagesTr``/``labelsTr`` (and ``imagesTs``/``labelsTs`` when ``num_test > 0``) as uint8 TIFFs named
    ``demo_000.tif``..., plus ``README.txt`` whose first line says the data is SYNTHETIC. Labels: 0 background,
    1 mitochondria, and with ``num_classes=3`` also 2 vesicles. Only ``np.random.default_rng(seed)`` draws, so the
    same seed gives byte-identical files. Existing data is left untouched (idempotent).

    Args:
        dataset_dir: target folder, created if needed.
        num_train: training images, default 4 (>= 1).
        num_test: test images, default 2 (>= 0).
        size: (Y, X) image size, default (192, 192), each >= 32.
        num_classes: 2 (background, mitochondria) or 3 (+ vesicles), default 2.
        seed: random seed, default 0.

    Returns:
        ``dataset_dir`` as an absolute path string.

    Raises:
        ValueError: invalid counts, size or num_classes.

    Example:
        >>> root = make_demo_dataset("/tmp/ecsd_demo")
        >>> sorted(os.listdir(root))
        ['README.txt', 'imagesTr', 'imagesTs', 'labelsTr', 'labelsTs']
    """
    for arg, value, low in (("num_train", num_train, 1), ("num_test", num_test, 0), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"make_demo_dataset: {arg} must be an int >= {low}, got {value!r}.")
    if num_classes not in (2, 3) or isinstance(num_classes, bool):
        raise ValueError(f"make_demo_dataset: num_classes must be 2 or 3, got {num_classes!r}.")
    shape = tuple(size) if isinstance(size, Sequence) else ()
    if len(shape) != 2 or not all(isinstance(s, (int, np.integer)) and s >= 32 for s in shape):
        raise ValueError(f"make_demo_dataset: size must be two ints >= 32 (Y, X), got {size!r}.")
    root = os.path.abspath(os.fspath(dataset_dir))
    if _has_images(os.path.join(root, "imagesTr")):
        return root
    rng = np.random.default_rng(seed)
    for split, count in (("Tr", num_train), ("Ts", num_test)):
        for index in range(count):
            image, label = _make_case(rng, (int(shape[0]), int(shape[1])), num_classes)
            write_layout(root, split, f"demo_{index:03d}", image, label)
    classes = "0 background, 1 mitochondria" + (", 2 vesicles" if num_classes == 3 else "")
    with open(os.path.join(root, "README.txt"), "w") as handle:
        handle.write(
            f"SYNTHETIC demo data generated by emdiff_components.data.make_demo_dataset (seed={seed}); "
            "not real EM and not for measuring accuracy.\n"
            f"{num_train} training and {num_test} test images of {shape[0]}x{shape[1]} pixels, uint8 TIFF; "
            f"labels: {classes}.\n"
            "Use real data (scripts/download_lucchi_pp.py, scripts/download_betaseg.py, "
            "scripts/convert_shared_data.py) and pass --dataset_dir to train and evaluate for real.\n"
        )
    logger.info(
        "generated SYNTHETIC demo data (%d train, %d test, seed %d, %d classes) in %s",
        num_train, num_test, seed, num_classes, root,
    )
    return root


def _make_volume(rng: np.random.Generator, shape: tuple[int, int, int], num_cells: int):
    """Neurons running along z (Voronoi cells whose seeds drift slice to slice), mitochondria inside some of them."""
    depth, height, width = shape
    seeds = rng.uniform((0, 0), (height, width), size=(num_cells, 2))
    drift = rng.normal(0, 0.6, size=(num_cells, 2))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    label = np.zeros(shape, np.uint32)
    mito = np.zeros(shape, np.uint8)
    centres = rng.uniform((14, 14), (height - 14, width - 14), size=(max(1, num_cells // 4), 2))
    for z in range(depth):
        points = seeds + drift * z
        distance = (yy[None] - points[:, 0, None, None]) ** 2 + (xx[None] - points[:, 1, None, None]) ** 2
        label[z] = distance.argmin(axis=0).astype(np.uint32) + 1
        for cy, cx in centres:
            mito[z] |= (((yy - cy) / 9.0) ** 2 + ((xx - cx) / 5.0) ** 2 <= 1).astype(np.uint8)
    borders = np.zeros(shape, bool)
    borders[:, 1:] |= label[:, 1:] != label[:, :-1]
    borders[:, :, 1:] |= label[:, :, 1:] != label[:, :, :-1]
    image = np.full(shape, _CYTOPLASM, np.float32)
    image[borders] -= _MEMBRANE_DROP
    image[mito > 0] = _MITO_MATRIX
    image = np.stack([_blur(plane, 1.0) for plane in image])
    image += rng.normal(0, 0.05, size=shape).astype(np.float32)
    return np.clip(image * 255, 0, 255).astype(np.uint8), label, mito


def make_demo_volumes(
    dataset_dir: str | os.PathLike,
    num_train: int = 2,
    num_test: int = 1,
    shape: Sequence[int] = (16, 128, 128),
    voxel_size: Sequence[float] = (29.0, 6.0, 6.0),
    seed: int = 0,
) -> str:
    """Generate a SYNTHETIC 3D demo set for NeuroDiff (EM-like volumes, neuron instances, mitochondria), if empty.

    Layout of :func:`emdiff_components.data.volume_datalist` (``imagesTr``, ``labelsTr``, ``mitoTr``, the ``Ts``
    split, ``dataset.json`` with the voxel size) plus ``README.txt`` whose first line says the data is SYNTHETIC. Only
    ``np.random.default_rng(seed)`` draws; existing data is left untouched.

    Args:
        dataset_dir: target folder, created if needed.
        num_train: training volumes, default 2 (>= 1).
        num_test: test volumes, default 1 (>= 0).
        shape: (Z, Y, X), default (16, 128, 128), Y and X >= 32.
        voxel_size: (z, y, x) nm written to ``dataset.json``, default AC3/AC4's (29, 6, 6).
        seed: random seed, default 0.

    Returns:
        ``dataset_dir`` as an absolute path string.
    """
    for arg, value, low in (("num_train", num_train, 1), ("num_test", num_test, 0), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"make_demo_volumes: {arg} must be an int >= {low}, got {value!r}.")
    dims = tuple(int(v) for v in shape)
    if len(dims) != 3 or dims[0] < 1 or min(dims[1:]) < 32:
        raise ValueError(f"make_demo_volumes: shape must be (Z, Y, X) with Z >= 1 and Y, X >= 32, got {shape!r}.")
    root = os.path.abspath(os.fspath(dataset_dir))
    if _has_images(os.path.join(root, "imagesTr")):
        return root
    rng = np.random.default_rng(seed)
    num_cells = max(4, dims[1] * dims[2] // 900)
    for split, count in (("Tr", num_train), ("Ts", num_test)):
        for index in range(count):
            image, label, mito = _make_volume(rng, dims, num_cells)
            write_volume_case(root, split, f"demo_{index:03d}", image, label, mito)
    with open(os.path.join(root, "README.txt"), "w") as handle:
        handle.write(
            f"SYNTHETIC 3D demo data generated by emdiff_components.data.make_demo_volumes (seed={seed}); "
            "not real EM and not for measuring anything.\n"
            f"{num_train} training and {num_test} test volumes of {dims}, uint8 TIFF, neuron instance labels and "
            "mitochondria masks.\nUse real data (scripts/download_ac3_ac4.py, scripts/convert_shared_data.py "
            "fibsem_neurons | isbi_neurons) and pass --dataset_dir.\n"
        )
    write_volume_dataset_json(root, "neurodiff_demo", voxel_size, description="SYNTHETIC demo volumes")
    logger.info("generated SYNTHETIC 3D demo data (%d train, %d test, seed %d) in %s", num_train, num_test, seed, root)
    return root
