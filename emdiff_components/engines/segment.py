"""NeuroDiff's downstream segmentation run: volume files -> blockwise affinities -> neuron instances -> scores, figure.

Jiang et al. "Diffusion Model-Based Data Augmentation for Enhanced Neuron Segmentation", ISBI 2026,
https://arxiv.org/abs/2601.15779: a Superhuman U-Net predicts nearest-neighbour affinities, a 2D distance-transform
watershed cuts them into supervoxels, and waterz or multicut agglomerate those into neurons, scored with VI and ARAND.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..data import read_image
from ..data.arrays import create_volume, open_volume
from ..metrics.fid3d import FID3D
from ..metrics.instance import InstanceSegmentationReport
from ..postprocessing import segment_affinities
from .blockwise import predict_volume_file
from .checkpoints import load_network_weights
from .figures import save_panel_figure

__all__ = ["IntensityScaledPredictor", "fid_metrics", "segment_volumes"]

logger = logging.getLogger(__name__)


class IntensityScaledPredictor(torch.nn.Module):
    """Wrap a network so it sees its training intensities: ``clip((x - low) / (high - low), 0, 1)``.

    The segmentation network is trained on uint8 EM divided by 255 (the public trainer); the blockwise predictor reads
    raw file values (``normalize=None``), so the same scaling is applied here, block by block.
    """

    def __init__(self, network: torch.nn.Module, intensity_range: Sequence[float] = (0.0, 255.0)) -> None:
        super().__init__()
        low, high = (float(v) for v in intensity_range)
        if not high > low:
            raise ValueError(f"IntensityScaledPredictor: intensity_range needs high > low, got {intensity_range!r}.")
        self.network, self.low, self.high = network, low, high

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(((x - self.low) / (self.high - self.low)).clamp(0.0, 1.0))


def _middle_panels(em_section: np.ndarray, truth: np.ndarray | None, segmentation: np.ndarray) -> tuple[list, list, list]:
    z = segmentation.shape[0] // 2
    panels, titles, kinds = [em_section], ["EM"], ["image"]
    if truth is not None:
        panels, titles, kinds = panels + [truth[z]], titles + ["truth"], kinds + ["instances"]
    return panels + [segmentation[z]], titles + ["segmentation"], kinds + ["instances"]


def _check_channels(predictor, block_shape, context, methods, device) -> None:
    """One zero block through the network before any file is read: the affinity channel count must suit the methods."""
    shape = [b + 2 * c for b, c in zip(block_shape, context)]
    params = next(predictor.parameters(), None)
    where = device if device is not None else (params.device if params is not None else "cpu")
    with torch.no_grad():
        channels = predictor(torch.zeros(1, 1, *shape, device=where)).shape[1]
    need_exact = [m for m in methods if m != "mutex"]
    if (need_exact and channels != 3) or channels < 3:
        raise ValueError(
            f"segment_volumes: the network predicts {channels} channels; {'/'.join(methods)} needs the 3 "
            "nearest-neighbour affinities (z, y, x)" + (" (mutex: at least 3)" if "mutex" in methods else "") + "."
        )


def segment_volumes(
    datalist: Sequence[Mapping[str, Any]],
    network: torch.nn.Module,
    output_dir: str | os.PathLike,
    block_shape: Sequence[int] = (10, 80, 80),
    context: Sequence[int] = (3, 40, 40),
    methods: Sequence[str] = ("waterz",),
    method_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    watershed_kwargs: Mapping[str, Any] | None = None,
    intensity_range: Sequence[float] = (0.0, 255.0),
    affinity_ext: str = ".h5",
    label_ext: str = ".tif",
    divisible_by: Sequence[int] | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Segment every volume of ``datalist`` into neurons and, where a ``"label"`` is given, score it.

    Per volume ``<name>``, in ``output_dir``: ``affinities/<name><affinity_ext>`` (3, Z, Y, X) float32, predicted block
    by block (:func:`~emdiff_components.engines.predict_volume_file`: memory bounded, the input's voxel size kept);
    ``<method>/<name><label_ext>`` instance labels (uint16, or uint32 beyond 65535 ids) (the input's shape; the voxel size of the entry's
    ``"voxel_size"`` or, without it, of the image file) for each agglomeration
    method; ``<method>/figure.png`` (middle section: EM, truth, segmentation in random colours) and, with labels,
    ``<method>/instance_metrics.json`` + ``.csv`` (VI split / merge, ARAND per volume and their mean).

    Args:
        datalist: entries with ``"image"`` (a volume path: TIFF, HDF5 ``file.h5:/key``, zarr, NPY), optional
            ``"label"`` (instance truth, 0 ignored) and ``"name"``.
        network: the trained affinity network; put in eval mode here.
        output_dir: where everything is written.
        block_shape: the written block (z, y, x); default (10, 80, 80), the public inference's stride for 16 x 160 x 160
            inputs.
        context: margin read around each block; default (3, 40, 40), so that the network sees 16 x 160 x 160.
        methods: any of ``"waterz"``, ``"multicut"``, ``"mutex"`` (:func:`~emdiff_components.postprocessing.
            segment_affinities`); default ``("waterz",)``.
        method_kwargs: per method, keyword arguments of its agglomeration (e.g. ``{"waterz": {"threshold": 0.3}}``).
        watershed_kwargs: keyword arguments of the supervoxel watershed.
        intensity_range: raw values mapped to [0, 1] before the network (:class:`IntensityScaledPredictor`); default
            (0, 255).
        affinity_ext, label_ext: output formats; default ``".h5"`` and ``".tif"``.
        divisible_by: the network's input divisibility, checked before the first block; default None.
        device: where the network runs; default its parameters' device.
        progress: progress bars over blocks.

    Returns:
        ``{"volumes": [{"name", "affinities", "<method>": labels path, "seconds_<stage>"}...], "<method>": summary of
        the scores (when labels were given)}``.

    Raises:
        ValueError: an unknown method, an empty datalist, or a network that does not predict 3 affinity channels (all
            before any volume is read).
    """
    known = ("waterz", "multicut", "mutex")
    unknown = [m for m in methods if m not in known]
    if unknown or not methods:
        raise ValueError(f"segment_volumes: methods must be a non-empty subset of {known}, got {list(methods)}.")
    if not datalist:
        raise ValueError("segment_volumes: the datalist is empty.")
    method_kwargs = dict(method_kwargs or {})
    root = os.fspath(output_dir)
    predictor = IntensityScaledPredictor(network.eval(), intensity_range)
    _check_channels(predictor, block_shape, context, methods, device)
    reports = {m: InstanceSegmentationReport() for m in methods}
    figures: dict[str, list] = {m: [] for m in methods}
    rows = []
    for index, entry in enumerate(datalist):
        name = entry.get("name") or f"volume_{index}"
        row: dict[str, Any] = {"name": name, "affinities": os.path.join(root, "affinities", name + affinity_ext)}
        start = time.perf_counter()
        predict_volume_file(
            predictor,
            entry["image"],
            row["affinities"],
            block_shape,
            context,
            normalize=None,
            divisible_by=divisible_by,
            device=device,
            progress=progress,
        )
        row["seconds_affinities"] = time.perf_counter() - start
        with open_volume(row["affinities"]) as stored:
            affinities = np.asarray(stored[...], dtype=np.float32)
        with open_volume(entry["image"], ndim=3) as source:  # only the figure's section, not the whole volume
            em_section = np.asarray(source[affinities.shape[1] // 2])
        truth = read_image(entry["label"]) if entry.get("label") else None
        for method in methods:
            start = time.perf_counter()
            labels = segment_affinities(
                affinities, method, watershed_kwargs=watershed_kwargs, **dict(method_kwargs.get(method, {}))
            )
            row[f"seconds_{method}"] = time.perf_counter() - start
            row[method] = os.path.join(root, method, name + label_ext)
            if labels.max() > np.iinfo(np.uint32).max:
                raise ValueError(f"segment_volumes: {name} has more than 2**32 segments; write it as .h5 or .zarr.")
            # uint16 where the ids fit: an ImageJ TIFF keeps the voxel size for uint8 / uint16 / float32 only
            dtype = np.uint16 if labels.max() <= np.iinfo(np.uint16).max else np.uint32
            with create_volume(
                row[method], labels.shape, dtype, like=entry["image"], voxel_size=entry.get("voxel_size")
            ) as out:
                out[...] = labels.astype(dtype)
            if truth is not None:
                reports[method].add(name, labels, truth)
            figures[method].append(_middle_panels(em_section, truth, labels))
            count = len(np.unique(labels[labels > 0]))
            logger.info("%s: %d segments with %s in %.1f s", name, count, method, row[f"seconds_{method}"])
        rows.append(row)
    summary: dict[str, Any] = {"volumes": rows}
    for method in methods:
        panels = figures[method]
        save_panel_figure(
            os.path.join(root, method, "figure.png"), [p for p, _, _ in panels], panels[0][1], panels[0][2]
        )
        if reports[method].rows:
            reports[method].write(os.path.join(root, method))
            summary[method] = reports[method].summary()
    return summary


def fid_metrics(
    network: torch.nn.Module,
    ckpt_path: str | os.PathLike,
    patch_size: Sequence[int] = (16, 160, 160),
    layer: str = "center",
    output_transform: Any = None,
) -> dict[str, FID3D]:
    """``{"fid_3d": FID3D}`` for an evaluator's ``additional_metrics``, or ``{}`` (one log line) without a checkpoint.

    NeuroDiff's 3D-FID needs a segmentation network trained on the data (segment_train.json); the generator's evaluate
    config asks for it here, so that evaluating a generator before any segmentation network exists still gives MAE.

    Args:
        network: the segmentation network (its structure); the weights come from ``ckpt_path``.
        ckpt_path: ``models/segmentation/model.pt`` of segment_train.json.
        patch_size: feature crop (:class:`~emdiff_components.metrics.FID3D`); default the training crop.
        layer: pooled layer; default ``"center"``, the deepest level of :class:`~emdiff_components.networks.
            SuperhumanUNet`.
        output_transform: engine output -> ``(synthesized, real)``; default ``from_engine(["pred", "label"])``.
    """
    if not os.path.isfile(ckpt_path):
        logger.info("3D-FID skipped: no segmentation network at %s (train one with segment_train.json)", ckpt_path)
        return {}
    if output_transform is None:
        from monai.handlers import from_engine

        output_transform = from_engine(["pred", "label"])
    network = load_network_weights(network, ckpt_path)
    device = next(network.parameters()).device
    return {"fid_3d": FID3D(network, layer, patch_size, output_transform=output_transform, device=device)}
