"""CellCascade's downstream segmentation: datalists of real (+ synthetic) CTC frames, and frames -> cells -> scores.

Yilmaz et al. "Cascaded Diffusion Models for 2D and 3D Microscopy Image Synthesis to Enhance Cell Segmentation",
https://arxiv.org/abs/2411.11515, train segmentation networks on real and on real + synthetic cell images and score
them with the Cell Tracking Challenge SEG measure. Here the network (MONAI ``BasicUNet``) predicts background /
interior / boundary (:class:`~emdiff_components.transforms.CellClasses`) and
:func:`~emdiff_components.postprocessing.cell_instances` turns the probabilities into cells.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from ..data.ctc import ctc_datalist
from ..data.layout import DatasetError, list_images
from ..data.readers import read_image, write_image
from ..metrics.cells import CellSegmentationReport
from ..postprocessing.cells import cell_instances
from .figures import save_panel_figure

__all__ = ["cell_frames_datalist", "cell_segmentation_datalist", "segment_cells"]

logger = logging.getLogger(__name__)


def cell_segmentation_datalist(
    real_dir: str | os.PathLike,
    synthetic_dir: str | os.PathLike | None = None,
    held_out: int = 0,
    part: str = "train",
) -> list[dict]:
    """Frames of a CTC style folder for training (all but the last ``held_out``) or testing (the last ``held_out``).

    Args:
        real_dir: the real data (any layout of :func:`~emdiff_components.data.ctc_datalist`), 2D frames.
        synthetic_dir: training only: a folder of synthetic frames in the same layouts (the cascade's
            ``outputs/cascade/2d``), listed after the real frames with ``"source": "synthetic"``; default None.
        held_out: frames at the end of the real list kept back for testing, ``0 <= held_out < number of frames``
            (the test part needs ``held_out >= 1``).
        part: ``"train"`` or ``"test"``.

    Returns:
        ``ctc_datalist`` entries; the CTC annotation kind moves to ``"annotation"`` and ``"source"`` says ``"real"``
        or ``"synthetic"`` (:func:`~emdiff_components.data.mixing_weights` reads it).

    Raises:
        DatasetError: the folders' errors, or ``held_out`` leaving no frame for the asked part.
        ValueError: an unknown ``part``.
    """
    if part not in ("train", "test"):
        raise ValueError(f"cell_segmentation_datalist: part must be 'train' or 'test', got {part!r}.")
    real = ctc_datalist(real_dir, spatial_dims=2)
    if isinstance(held_out, bool) or not isinstance(held_out, int) or not 0 <= held_out < len(real):
        raise DatasetError(
            f"cell_segmentation_datalist: held_out must be an int in [0, {len(real)}) for the {len(real)} frames of "
            f"{os.fspath(real_dir)!r} (training needs at least one), got {held_out!r}."
        )
    if part == "test" and held_out == 0:
        raise DatasetError("cell_segmentation_datalist: the test part needs held_out >= 1 frame.")
    chosen = real[len(real) - held_out:] if part == "test" else real[: len(real) - held_out]
    entries = [{**e, "annotation": e["source"], "source": "real"} for e in chosen]
    if part == "train" and synthetic_dir:
        entries += [{**e, "annotation": e["source"], "source": "synthetic"}
                    for e in ctc_datalist(synthetic_dir, spatial_dims=2)]
    logger.info("cell_segmentation_datalist: %s part: %d real + %d synthetic frames", part,
                sum(e["source"] == "real" for e in entries), sum(e["source"] == "synthetic" for e in entries))
    return entries


def cell_frames_datalist(folder: str | os.PathLike) -> list[dict]:
    """What ``segment.json --input`` segments: a folder of 2D frames (no masks), or else a CTC style folder with masks.

    A folder that itself holds image files lists them as ``{"image": path, "name": stem}`` (natural order); any other
    folder goes through :func:`~emdiff_components.data.ctc_datalist` (then the masks are scored).

    Raises:
        DatasetError: a missing folder, or the CTC layout's errors (no frames found).
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise DatasetError(f"cell_frames_datalist: input folder {folder!r} does not exist.")
    frames = list_images(folder, "cell_frames_datalist")
    if frames:
        return [{"image": os.path.join(folder, name), "name": stem} for stem, name in frames.items()]
    return ctc_datalist(folder, spatial_dims=2)


@torch.no_grad()
def segment_cells(
    datalist: Sequence[Mapping[str, Any]],
    network: torch.nn.Module,
    output_dir: str | os.PathLike,
    preprocess: Callable[[np.ndarray], Any],
    roi_size: Sequence[int] = (256, 256),
    sw_batch_size: int = 4,
    overlap: float = 0.25,
    min_seed_size: int = 4,
    min_size: int = 16,
    evaluate: bool = True,
    figure_frames: int = 4,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Segment every frame of ``datalist``: sliding-window class probabilities -> :func:`cell_instances` -> files.

    Writes ``masks/<name>.tif`` (uint16 instance labels of the frame's size), ``figure.png`` (image, truth when
    known, segmentation for the first ``figure_frames`` frames) and, with ``evaluate`` and labels, the
    :class:`~emdiff_components.metrics.CellSegmentationReport` files ``cell_metrics.json`` / ``.csv``.

    Args:
        datalist: entries with ``"image"`` (path), ``"name"`` and optionally ``"label"`` (instance mask path).
        network: 3-class network (background, interior, boundary); put in eval mode here.
        output_dir: folder of the outputs.
        preprocess: the training intensity transform applied to the ``(1, Y, X)`` float32 frame (e.g. MONAI
            ``ScaleIntensityRangePercentiles`` with the training percentiles).
        roi_size, sw_batch_size, overlap: MONAI ``sliding_window_inference`` settings (Gaussian blending).
        min_seed_size, min_size: as in :func:`cell_instances`.
        evaluate: score the frames that have a label.
        figure_frames: frames drawn in the figure (0: none).
        device: where the network runs; default its parameters' device.

    Returns:
        ``{"masks": [paths], "figure": path or None, "metrics": report summary or None}``.

    Raises:
        ValueError: an empty datalist, or a network that does not give 3 channels (checked on the first frame).
    """
    if not datalist:
        raise ValueError("segment_cells: the datalist is empty.")
    out = Path(output_dir)
    device = torch.device(device) if device is not None else next(network.parameters()).device
    network = network.eval()
    report = CellSegmentationReport(output_dir=out) if evaluate else None
    masks, rows = [], []
    for entry in datalist:
        image = read_image(entry["image"]).astype(np.float32)
        if image.ndim != 2:
            raise ValueError(f"segment_cells: {entry['image']!r} is not a 2D frame (shape {image.shape}).")
        x = torch.as_tensor(np.asarray(preprocess(image[None])), dtype=torch.float32)[None].to(device)
        logits = sliding_window_inference(x, roi_size, sw_batch_size, network, overlap=overlap, mode="gaussian",
                                          padding_mode="reflect")
        if logits.shape[1] != 3:
            raise ValueError(f"segment_cells: the network gives {logits.shape[1]} channels; background / interior / "
                             "boundary needs 3.")
        cells = cell_instances(torch.softmax(logits[0], 0), min_seed_size=min_seed_size, min_size=min_size)
        path = out / "masks" / f"{entry['name']}.tif"
        write_image(path, cells.astype(np.uint16))
        masks.append(str(path))
        truth = read_image(entry["label"]) if entry.get("label") else None
        if report is not None and truth is not None:
            scores = report.add(entry["name"], cells, truth)
            logger.info("segment_cells: %s: %d cells, SEG %.4f, F1 %.4f", entry["name"], int(cells.max()),
                        scores["seg"], scores["f1"])
        if len(rows) < figure_frames:
            rows.append([image] + ([truth] if truth is not None else []) + [cells])
    figure = None
    if rows and len({len(r) for r in rows}) == 1:
        titles = ["image", "truth", "segmentation"] if len(rows[0]) == 3 else ["image", "segmentation"]
        kinds = ["image", "instances", "instances"] if len(rows[0]) == 3 else ["image", "instances"]
        figure = save_panel_figure(out / "figure.png", rows, titles, kinds)
    metrics = report.write() if report is not None and report.rows else None
    return {"masks": masks, "figure": figure, "metrics": metrics}
