"""The stages of the cascaded cell synthesis as short functions a bundle config calls in order.

Yilmaz et al. "Cascaded Diffusion Models for 2D and 3D Microscopy Image Synthesis to Enhance Cell Segmentation",
https://arxiv.org/abs/2411.11515: (1) single-cell masks from an unconditional DDPM, (2) 3D mask stacks from them, (3)
mask-conditioned textures, 3D stacks with slice-consistent noise, (4) populations of 40-49 cells written in the
Cell Tracking Challenge layout. Each function is one stage; the models, schedulers and placement rules live in
``diffusion``, ``transforms`` and :func:`~emdiff_components.engines.compose_population`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy import ndimage

from ..data.ctc import ctc_datalist, extract_single_cells, write_ctc_sequence
from ..data.layout import DatasetError
from ..data.readers import read_image
from ..diffusion.mask_sampler import sample_masks
from ..metrics.fid3d import fid_3d, volume_features
from ..transforms.mesh import LiftMask3D, MeshToMaskStack
from ..utils import atomic_write
from .figures import save_panel_figure
from .population import compose_population

__all__ = [
    "cell_fid",
    "cell_masks_from_samples",
    "compose_populations",
    "lift_cell_masks",
    "load_mesh_stacks",
    "population_figure",
    "sample_cell_masks",
    "single_cell_datalist",
    "texture_cells",
    "write_populations",
]

logger = logging.getLogger(__name__)

MESH_EXTENSIONS = (".ply", ".obj", ".stl", ".off")


def single_cell_datalist(
    folder: str | os.PathLike,
    crop_size: int = 128,
    image_size: int = 64,
    min_size: int = 16,
    sequence: str | Sequence[str] | None = None,
) -> list[dict]:
    """The single cells of a Cell Tracking Challenge style folder as an in-memory datalist (stages 1 and 3 train on it).

    Yilmaz et al., https://arxiv.org/abs/2411.11515. Every frame of :func:`~emdiff_components.data.ctc_datalist` is
    cut by :func:`~emdiff_components.data.extract_single_cells` (the public ``extract_single_cells.py`` rule: a
    ``crop_size`` canvas, the bounding-box middle at its centre, the cell's own pixels only) and resized to
    ``image_size`` with nearest-neighbour sampling (the public texture dataset's 64 x 64).

    Args:
        folder: the CTC folder (``<seq>/tNNN.tif`` + ``<seq>_GT|ST/SEG``, ``imagesTr`` / ``labelsTr`` or ``img`` /
            ``gt``), 2D frames.
        crop_size: canvas side before resizing, default 128 (public).
        image_size: side of the returned crops, default 64 (public texture resolution).
        min_size: cells with fewer pixels (before resizing) are skipped, default 16.
        sequence: CTC sequence folder(s), default all.

    Returns:
        ``[{"image": (1, S, S) float32 raw intensities, "label": (1, S, S) float32 0 / 1, "name": str}]``.

    Raises:
        DatasetError: an empty or unreadable folder (from ``ctc_datalist``) or no cell kept in any frame.
    """
    entries = ctc_datalist(folder, sequence=sequence, spatial_dims=2)
    cells: list[dict] = []
    for entry in entries:
        pairs = extract_single_cells(read_image(entry["image"]), read_image(entry["label"]), crop_size=crop_size,
                                     min_size=min_size, out_size=image_size)
        cells += [{"image": i[None], "label": m[None], "name": f"{entry['name']}_{k:04d}"} for k, (i, m) in
                  enumerate(pairs)]
    if not cells:
        raise DatasetError(
            f"single_cell_datalist: no cell of at least {min_size} pixels that fits a {crop_size} px crop in the "
            f"{len(entries)} masks of {os.fspath(folder)!r}."
        )
    logger.info("single_cell_datalist: %d cells from %d frames of %s", len(cells), len(entries), folder)
    return cells


def sample_cell_masks(
    network: Callable[..., torch.Tensor],
    scheduler,
    num_masks: int,
    image_size: int = 64,
    num_inference_steps: int = 50,
    seed: int = 0,
    batch_size: int | None = None,
    min_size: int = 16,
    largest_component: bool = True,
    threshold: float = 0.0,
    drop_border: bool = True,
    progress: bool = False,
) -> np.ndarray:
    """Stage 1: binary single-cell masks from the mask DDPM (DDIM, eta of ``scheduler``), binarised at ``threshold``.

    Yilmaz et al., https://arxiv.org/abs/2411.11515; :func:`~emdiff_components.diffusion.sample_masks` does the
    sampling. The mask model here learns 0 / 1 masks scaled to [-1, 1] (``train_masks.json``), so the default
    ``threshold`` is their midpoint, 0. The public script keeps every pixel above ``-1 + 1/255``
    (:data:`~emdiff_components.transforms.cells.array.REFERENCE_MASK_THRESHOLD`), made for grey-level masks whose
    background a long-trained model returns at exactly -1; a model trained for a CPU budget leaves its background
    above that (README, "Stage 1"), and every pixel becomes cell.

    A mask must be one centred cell to become one instance of a population: with ``largest_component`` only its
    largest 8-connected component is kept (the public script keeps every pixel); with ``drop_border`` a mask that
    touches the crop's edge is dropped (real single-cell crops are centred with a margin, see
    :func:`single_cell_datalist`), unless every mask does (a demo model's filled crops: then they are kept, with a
    warning); masks left with fewer than ``min_size`` pixels are dropped. Drops are logged.

    Returns:
        ``(n, S, S)`` uint8 0 / 1 masks, ``n <= num_masks``.

    Raises:
        RuntimeError: every sampled mask is smaller than ``min_size``.
    """
    generator = torch.Generator().manual_seed(seed)
    samples = sample_masks(network, scheduler, num_masks, (1, image_size, image_size), generator=generator,
                           num_inference_steps=num_inference_steps, batch_size=batch_size, threshold=None,
                           progress=progress)
    return cell_masks_from_samples(samples[:, 0].cpu().numpy(), threshold, min_size, largest_component, drop_border)


def cell_masks_from_samples(
    samples: np.ndarray,
    threshold: float = 0.0,
    min_size: int = 16,
    largest_component: bool = True,
    drop_border: bool = True,
) -> np.ndarray:
    """The single-cell masks among ``(n, S, S)`` raw mask samples in [-1, 1] (the filters of :func:`sample_cell_masks`).

    Returns:
        ``(k, S, S)`` uint8 0 / 1 masks, ``k <= n``, in the order of ``samples``.

    Raises:
        RuntimeError: every sample is smaller than ``min_size``.
    """
    kept, at_edge, small = [], [], 0
    for mask in np.asarray(samples) > threshold:
        if largest_component and mask.any():
            components, _ = ndimage.label(mask, structure=np.ones((3, 3)))
            mask = components == 1 + int(np.argmax(np.bincount(components.ravel())[1:]))
        if mask.sum() < min_size:
            small += 1
        elif drop_border and (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()):
            at_edge.append(mask.astype(np.uint8))
        else:
            kept.append(mask.astype(np.uint8))
    if not kept and at_edge:
        logger.warning(
            "sample_cell_masks: every one of the %d masks kept touches the crop's edge: the mask model samples filled "
            "crops (a demo model, or too little training); they are used as they are, and the populations show "
            "squares.", len(at_edge))
        kept, at_edge = at_edge, []
    if len(kept) < len(samples):
        logger.info("sample_cell_masks: %d of %d masks kept (%d under %d px, %d touching the crop's edge).",
                    len(kept), len(samples), small, min_size, len(at_edge))
    if not kept:
        raise RuntimeError(
            f"sample_cell_masks: all {len(samples)} sampled masks have fewer than {min_size} pixels at threshold "
            f"{threshold}; is the mask model trained (train_masks.json)?"
        )
    return np.stack(kept)


def load_mesh_stacks(mesh_dir: str | os.PathLike | None, image_size: int = 64, num_slices: int = 10):
    """Stage 2, the paper's path: slice every mesh file of ``mesh_dir`` (e.g. NeuS output) into a mask stack.

    Yilmaz et al., https://arxiv.org/abs/2411.11515 (SyncDreamer + NeuS surfaces, sliced as the public
    ``slice_mesh_to_2d.py``: ``num_slices`` levels from ``max_z / 2`` to ``max_z``). Each mesh is fitted into the
    ``image_size`` grid (``MeshToMaskStack(scale=None, placement="center")``). Called before any sampling, so a bad
    mesh fails first.

    Returns:
        ``(n, num_slices, S, S)`` uint8 stacks in file-name order, or ``None`` when ``mesh_dir`` is ``None``.

    Raises:
        DatasetError: the folder is missing or holds no ``.ply`` / ``.obj`` / ``.stl`` / ``.off`` file, or a mesh
            cannot be sliced (open, empty, unreadable; the message names the file).
    """
    if mesh_dir is None:
        return None
    folder = os.fspath(mesh_dir)
    if not os.path.isdir(folder):
        raise DatasetError(f"load_mesh_stacks: mesh folder {folder!r} does not exist.")
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(MESH_EXTENSIONS))
    if not files:
        raise DatasetError(f"load_mesh_stacks: no mesh file ({', '.join(MESH_EXTENSIONS)}) in {folder!r}.")
    slicer = MeshToMaskStack(size=image_size, num_slices=num_slices, scale=None, placement="center")
    stacks = []
    for name in files:
        try:
            stack = slicer(os.path.join(folder, name))
        except (ValueError, FileNotFoundError) as err:
            raise DatasetError(f"load_mesh_stacks: cannot use mesh {os.path.join(folder, name)!r}: {err}") from err
        if not stack.any():
            raise DatasetError(f"load_mesh_stacks: mesh {os.path.join(folder, name)!r} gives an empty mask stack.")
        stacks.append(stack)
    logger.info("load_mesh_stacks: %d meshes from %s sliced into %d levels", len(stacks), folder, num_slices)
    return np.stack(stacks)


def lift_cell_masks(
    masks: np.ndarray, mesh_stacks: np.ndarray | None = None, num_slices: int = 10, max_stacks: int | None = None
) -> np.ndarray:
    """Stage 2: 3D mask stacks, from ``mesh_stacks`` when given (the paper's path) else by ``LiftMask3D`` (built in).

    Yilmaz et al., https://arxiv.org/abs/2411.11515. :class:`~emdiff_components.transforms.LiftMask3D` needs no
    pretrained model: a dome over each 2D mask, sliced at the levels the mesh slicer uses. Stacks whose slices are
    all empty are dropped. ``max_stacks`` caps the number of stacks (3D texturing costs ``num_slices`` 2D samples
    per cell); 0 switches stage 2 off.

    Returns:
        ``(n, num_slices, S, S)`` uint8 0 / 1 (``n`` may be 0).
    """
    if max_stacks is not None and max_stacks < 0:
        raise ValueError(f"lift_cell_masks: max_stacks must be >= 0 or None, got {max_stacks}.")
    if mesh_stacks is not None:
        return np.asarray(mesh_stacks, dtype=np.uint8)[:max_stacks]
    masks = np.asarray(masks)[:max_stacks]
    lift = LiftMask3D(num_slices=num_slices)
    stacks = [s for s in (lift(m) for m in masks) if s.any()]
    return np.stack(stacks) if stacks else np.zeros((0, num_slices, *masks.shape[1:]), np.uint8)


@torch.no_grad()
def texture_cells(
    inferer, network: torch.nn.Module, masks: np.ndarray, batch_size: int = 16, seed: int = 0,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Stage 3: a texture for every mask (2D ``(n, S, S)`` or stacks ``(n, Z, S, S)``), as 8-bit grey values.

    Yilmaz et al., https://arxiv.org/abs/2411.11515. The condition is the mask's grey-level mask scaled to [0, 1]
    (``GreyLevelMask`` + ``ScaleIntensity``), which for one cell is the binary mask. ``inferer`` is a
    :class:`~emdiff_components.diffusion.MaskConditionedTextureInferer` (for stacks with a ``SliceConsistentNoise``
    provider; or the Stable Diffusion path, :class:`~emdiff_components.diffusion.StableDiffusionTextureInferer`, which
    ignores ``network``: then ``network`` may be None and conditions start on ``device``, default the CPU). The samples
    in [-1, 1] become ``(x + 1) / 2 * 255`` as the public ``generate_cells.py`` stores them.

    Returns:
        float32 textures of the masks' shape in [0, 255].
    """
    masks = np.asarray(masks)
    if masks.ndim not in (3, 4):
        raise ValueError(f"texture_cells: masks must be (n, S, S) or (n, Z, S, S), got {masks.shape}.")
    if batch_size < 1:
        raise ValueError(f"texture_cells: batch_size must be >= 1, got {batch_size}.")
    if len(masks) == 0:
        return np.zeros(masks.shape, np.float32)
    if device is None:
        device = next(network.parameters()).device if network is not None else torch.device("cpu")
    generator = torch.Generator().manual_seed(seed)
    out = []
    for first in range(0, len(masks), batch_size):
        condition = torch.as_tensor(masks[first : first + batch_size] > 0, dtype=torch.float32)[:, None].to(device)
        out.append(inferer.sample(condition, network, generator=generator)[:, 0].cpu().numpy())
    return ((np.concatenate(out) + 1.0) * 127.5).astype(np.float32)


def compose_populations(
    textures: np.ndarray, masks: np.ndarray, num_images: int, shape: Sequence[int] = (512, 708),
    num_cells: Sequence[int] = (40, 49), ellipse: Sequence[float] | None = (100.0, 150.0), seed: int = 0,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Stage 4: ``num_images`` populations by :func:`~emdiff_components.engines.compose_population` (one seeded rng).

    Yilmaz et al., https://arxiv.org/abs/2411.11515. 2D cells need a (Y, X) ``shape``, stacks a (Z, Y, X) one.

    Returns:
        ``(images, labels)``: float32 images and int32 instance masks.
    """
    if num_images < 0:
        raise ValueError(f"compose_populations: num_images must be >= 0, got {num_images}.")
    if num_images and not len(textures):
        raise ValueError("compose_populations: no cells to compose.")
    rng = np.random.default_rng(seed)
    pairs = [
        compose_population(list(textures), list(masks), shape=tuple(shape), num_cells=tuple(num_cells),
                           ellipse=None if ellipse is None else tuple(ellipse), rng=rng)
        for _ in range(num_images)
    ]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def population_figure(
    path: str | os.PathLike, images: Sequence[np.ndarray], labels: Sequence[np.ndarray], num_rows: int = 3
) -> str:
    """A PNG of the first ``num_rows`` synthetic images and their instance masks (middle slice of a stack)."""
    rows = []
    for image, label in list(zip(images, labels))[:num_rows]:
        image, label = np.asarray(image), np.asarray(label)
        if image.ndim == 3:
            image, label = image[image.shape[0] // 2], label[label.shape[0] // 2]
        rows.append([image, label])
    if not rows:
        raise ValueError("population_figure: no image to draw.")
    return save_panel_figure(path, rows, ["synthetic image", "instance mask"], ["image", "instances"])


def write_populations(out_dir: str | os.PathLike, images: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> list:
    """Write populations as a CTC sequence (``01/tNNN.tif`` uint16, ``01_ST/SEG/man_segNNN.tif``) plus
    ``populations.png``; nothing for an empty list.

    Yilmaz et al., https://arxiv.org/abs/2411.11515. Intensities are rounded and clipped to [0, 65535] (the public
    ``combine_images.py`` casts to uint8, which wraps the background noise above 255).

    Returns:
        the entries of :func:`~emdiff_components.data.write_ctc_sequence` (``[]`` when there is no image).
    """
    if len(images) == 0:
        logger.info("write_populations: no population for %s.", out_dir)
        return []
    frames = [np.clip(np.round(np.asarray(i, dtype=np.float64)), 0, 65535).astype(np.uint16) for i in images]
    entries = write_ctc_sequence(out_dir, frames, labels)
    population_figure(os.path.join(os.fspath(out_dir), "populations.png"), images, labels)
    return entries


def _crop_features(network: torch.nn.Module, crops: np.ndarray, layer: str) -> torch.Tensor:
    return torch.cat([volume_features(network, c, c.shape, layer) for c in np.asarray(crops, dtype=np.float32)])


def cell_fid(
    feature_network: torch.nn.Module,
    cells: Sequence[dict],
    mask_network: torch.nn.Module,
    mask_scheduler,
    texture_network: torch.nn.Module,
    texture_inferer,
    output_dir: str | os.PathLike,
    layer: str = "down_2",
    num_masks: int | None = None,
    num_inference_steps: int = 50,
    batch_size: int = 16,
    seed: int = 0,
    min_size: int = 16,
    mask_threshold: float = 0.0,
    drop_border: bool = True,
) -> dict:
    """FID of the mask stage and of the texture stage against real single cells, in a network trained here.

    Yilmaz et al., https://arxiv.org/abs/2411.11515 report FID with Inception features; Inception's weights cannot be
    downloaded here, so the features are the spatial means of ``layer`` of the cell segmentation network trained by
    ``segment_train.json`` (``down_2`` of MONAI's ``BasicUNet``: 64 channels), compared by MONAI's ``FIDMetric``
    (:func:`~emdiff_components.metrics.fid_3d`). Numbers are comparable between runs of this code, not with the paper's.

    - masks: ``num_masks`` (default: as many as real cells) sampled masks (:func:`sample_cell_masks` with
      ``mask_threshold`` and ``drop_border``) vs the real masks, both 0 / 1;
    - textures: the texture model run on the *real* masks (so that only the texture differs) vs the real crops; both
      scaled to [0, 1] with the cells' intensity range (the texture model's [-1, 1] range) and zero outside the cell,
      as the real crops hold the cell's own pixels only.

    Writes ``output_dir/fid.json`` and returns its content.
    """
    if len(cells) < 2:
        raise ValueError(f"cell_fid: FID needs at least 2 real cells, got {len(cells)}.")
    feature_network = feature_network.eval()
    real_masks = np.stack([np.asarray(c["label"], dtype=np.float32)[0] > 0 for c in cells]).astype(np.float32)
    real_images = np.stack([np.asarray(c["image"], dtype=np.float32)[0] for c in cells])
    low, high = float(real_images.min()), float(real_images.max())
    real_images = (real_images - low) / max(high - low, 1e-12) * real_masks
    num_masks = len(cells) if num_masks is None else int(num_masks)
    sampled = sample_cell_masks(mask_network, mask_scheduler, num_masks, real_masks.shape[-1], num_inference_steps,
                                seed=seed, batch_size=batch_size, min_size=min_size, threshold=mask_threshold,
                                drop_border=drop_border)
    textures = texture_cells(texture_inferer, texture_network, real_masks, batch_size, seed=seed + 1) / 255.0 * real_masks
    result = {
        "mask_fid": fid_3d(_crop_features(feature_network, real_masks, layer),
                           _crop_features(feature_network, sampled.astype(np.float32), layer)),
        "texture_fid": fid_3d(_crop_features(feature_network, real_images, layer),
                              _crop_features(feature_network, textures.astype(np.float32), layer)),
        "num_real_cells": len(cells),
        "num_sampled_masks": len(sampled),
        "features": f"spatial mean of {layer!r} of the cell segmentation network (segment_train.json); not Inception",
    }
    path = os.path.join(os.fspath(output_dir), "fid.json")
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    logger.info("cell_fid: masks %.3f, textures %.3f (%d real cells, %d sampled masks); written to %s",
                result["mask_fid"], result["texture_fid"], len(cells), len(sampled), path)
    return result
