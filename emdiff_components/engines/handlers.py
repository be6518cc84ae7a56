"""Ignite handlers of the bundles: write predicted masks in the input's format and shape, and a PNG figure."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from ..data import output_extension, write_image
from .figures import save_panel_figure

__all__ = ["SegmentationFigure", "SegmentationWriter"]

logger = logging.getLogger(__name__)

_INTEGER_ONLY = (".png", ".jpg", ".jpeg", ".bmp")


def _array(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _middle_plane(array: np.ndarray) -> np.ndarray:
    """A 2D map as it is; the middle z-slice of a (Z, Y, X) volume."""
    return array[array.shape[0] // 2] if array.ndim == 3 else array


class SegmentationWriter:
    """Write predicted label maps as files of the input's format and shape: a stack in, a stack out.

    Inference runs on 2D slices; each batch item carries ``name``, ``slice``, ``num_slices`` and the input path
    (``image_path``); a file of one slice is written as a 2D image. Slices of one file are gathered and the file is
    written (atomically, by :func:`~emdiff_components.data.write_image`) only once all its slices are there, so no
    partial output looks complete.

    Outputs keep the input's geometry (``write_image(..., like=input)``): NIfTI the input's affine and header, MHA /
    NRRD the input's spacing, origin and direction, MRC its voxel size. The format is the input's, except where
    :func:`~emdiff_components.data.output_extension` says otherwise: ``.mhd`` -> ``.mha``, ``.nhdr`` -> ``.nrrd``,
    a DICOM series (folder or ``.dcm``) -> ``.nii.gz`` with the series' geometry. Float maps (``dtype`` float, e.g.
    an uncertainty map) of PNG / JPEG / BMP inputs, formats that cannot hold them, are written as TIFF.

    Args:
        output_dir: folder of the masks (created).
        pred_key: output key of the label map ``(1, H, W)``.
        path_key: batch key of the input file's path (its extension decides the output format).
        dtype: dtype of the written maps, default uint8 (class indices).
        name_suffix: appended to the case name, e.g. ``"_uncertainty"`` for a map written beside the mask.
        output_ext: write this format instead of the input's, e.g. ``".h5"`` or ``".tif"``; default None.

    Items without ``slice`` are whole outputs: a ``(1, Z, Y, X)`` volume (3D models) is written as a ``(Z, Y, X)``
    file, a ``(1, H, W)`` map as a 2D file.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        pred_key: str = "pred",
        path_key: str = "image_path",
        dtype=np.uint8,
        name_suffix: str = "",
        output_ext: str | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.pred_key = pred_key
        self.path_key = path_key
        self.dtype = np.dtype(dtype)
        self.name_suffix = name_suffix
        self.output_ext = output_ext
        self.pending: dict[str, dict[int, np.ndarray]] = {}
        self.written: list[str] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)
        engine.add_event_handler(Events.COMPLETED, self.check_complete)

    def update(self, engine: Engine) -> None:
        for item, out in zip(engine.state.batch, engine.state.output):
            name, z, depth = str(item["name"]), int(item.get("slice", 0)), int(item.get("num_slices", 1))
            source = str(item[self.path_key])
            slices = self.pending.setdefault(name, {})
            value = _array(out[self.pred_key])
            # drop the channel axis: (1, H, W) -> (H, W), (1, Z, Y, X) -> (Z, Y, X)
            slices[z] = (value[0] if value.ndim >= 3 and value.shape[0] == 1 else value).astype(self.dtype)
            if len(slices) == depth:
                volume = slices[0] if depth == 1 else np.stack([slices[k] for k in sorted(slices)])
                suffix = self.output_ext or output_extension(source)
                if self.dtype.kind == "f" and suffix.lower() in _INTEGER_ONLY:
                    suffix = ".tif"
                path = self.output_dir / f"{name}{self.name_suffix}{suffix}"
                self.output_dir.mkdir(parents=True, exist_ok=True)
                write_image(path, volume, like=source)
                self.written.append(str(path))
                del self.pending[name]
                logger.info("wrote %s %s", path, volume.shape)

    def check_complete(self, engine: Engine | None = None) -> None:
        if self.pending:
            missing = {name: len(s) for name, s in self.pending.items()}
            raise RuntimeError(f"SegmentationWriter: slices missing, files not written: {missing}")


class SegmentationFigure:
    """Write a PNG of image | truth | prediction (and more panels) for the first samples of each run or epoch.

    Args:
        output_path: the PNG file.
        num_samples: rows in the figure.
        image_key: batch key of the image ``(1, H, W)``.
        label_key: output key of the true label map, or ``None`` when there is no truth (plain inference).
        pred_key: output key of the predicted label map.
        extra_keys: more output keys shown as continuous maps (e.g. an uncertainty map).
        every_epoch: rewrite the figure after every epoch (validation during training) instead of once at the end.
        pred_kind: how the prediction is drawn: ``"label"`` (class colours, default) or ``"image"`` (grey, e.g. a
            synthesized EM volume).
        label_kind: how the truth is drawn, as ``pred_kind`` (a real EM volume next to a synthesized one: ``"image"``).
        titles: column titles, default from the keys.

    Volumes ``(1, Z, Y, X)`` are shown by their middle slice.
    """

    def __init__(
        self,
        output_path: str | os.PathLike,
        num_samples: int = 4,
        image_key: str = "image",
        label_key: str | None = "label",
        pred_key: str = "pred",
        extra_keys: Sequence[str] = (),
        every_epoch: bool = False,
        pred_kind: str = "label",
        titles: Sequence[str] | None = None,
        label_kind: str = "label",
    ) -> None:
        for name, kind in (("pred_kind", pred_kind), ("label_kind", label_kind)):
            if kind not in ("label", "image"):
                raise ValueError(f"SegmentationFigure: {name} must be 'label' or 'image', got {kind!r}.")
        self.pred_kind, self.label_kind = pred_kind, label_kind
        self.titles = list(titles) if titles is not None else None
        self.output_path = Path(output_path)
        self.num_samples = num_samples
        self.image_key, self.label_key, self.pred_key = image_key, label_key, pred_key
        self.extra_keys = tuple(extra_keys)
        self.every_epoch = every_epoch
        self.rows: list[list[np.ndarray]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)
        engine.add_event_handler(Events.EPOCH_COMPLETED if self.every_epoch else Events.COMPLETED, self.write)

    def reset(self, engine: Engine | None = None) -> None:
        self.rows = []

    def update(self, engine: Engine) -> None:
        for item, out in zip(engine.state.batch, engine.state.output):
            if len(self.rows) >= self.num_samples:
                return
            keys = [(item, self.image_key)]
            if self.label_key:
                keys.append((out, self.label_key))
            keys += [(out, self.pred_key)] + [(out, k) for k in self.extra_keys]
            self.rows.append([_middle_plane(_array(src[k])[0]) for src, k in keys])

    def write(self, engine: Engine | None = None) -> str | None:
        if not self.rows:
            return None
        titles = ["image"] + (["truth"] if self.label_key else []) + ["prediction"] + list(self.extra_keys)
        kinds = ["image"] + ([self.label_kind] if self.label_key else []) + [self.pred_kind]
        kinds += ["map"] * len(self.extra_keys)
        if self.titles is not None:
            if len(self.titles) != len(titles):
                raise ValueError(f"SegmentationFigure: {len(self.titles)} titles for {len(titles)} panels.")
            titles = self.titles
        path = save_panel_figure(self.output_path, self.rows, titles, kinds)
        logger.info("figure written to %s", path)
        return path
