"""Condition volumes of NeuroDiff's synthesis: writing remodeled conditions, listing conditions to synthesize from."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence

import numpy as np

from .layout import DatasetError, _list_images, _strip_extension
from .readers import write_image
from .volumes import _check_min_shape, _read_volume

__all__ = ["remodel_volumes", "condition_datalist"]

logger = logging.getLogger(__name__)


def remodel_volumes(
    datalist: Sequence[Mapping],
    transform,
    output_dir: str | os.PathLike,
    copies: int = 1,
    seed: int = 0,
    label_key: str = "label",
    condition_key: str = "condition",
) -> list[dict[str, str]]:
    """Run a seeded remodeling ``transform`` over a datalist and write conditions and labels as a dataset layout.

    NeuroDiff's biology-guided mask remodeling turns real neuron labels into new ones; the synthesis bundle then draws
    an EM volume for each condition, so the output is laid out to become a training set::

        output_dir/conditionsTr/<name>_r<k>.tif   uint8 condition: 0 background, 1 membrane, 2 mitochondria
        output_dir/labelsTr/<name>_r<k>.tif       the matching (deformed) neuron instance labels
        output_dir/dataset.json                   written last (voxel sizes of the sources)

    Copy ``k`` of entry ``i`` is drawn with ``transform.set_random_state(seed + i * copies + k)``: the same seed gives
    the same files, and every copy is different.

    Args:
        datalist: entries of :func:`volume_datalist` (``label`` path, optional ``mito``, ``name``, ``voxel_size``).
        transform: a MONAI randomizable transform (e.g. ``Compose([LoadVolumed, RemodelMasksd])``) returning
            ``label_key`` and ``condition_key`` as ``(1, Z, Y, X)`` arrays.
        output_dir: folder of the new dataset (created).
        copies: remodeled copies per entry, >= 1.
        seed: base seed.
        label_key, condition_key: output keys of ``transform``.

    Returns:
        one ``{"condition", "label", "name"}`` dict of written paths per copy.
    """
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise ValueError(f"remodel_volumes: copies must be an int >= 1, got {copies!r}.")
    if not datalist:
        raise ValueError("remodel_volumes: the datalist is empty.")
    root = os.fspath(output_dir)
    written, voxel_sizes = [], {}
    for i, entry in enumerate(datalist):
        for k in range(copies):
            transform.set_random_state(seed=seed + i * copies + k)
            out = transform(dict(entry))
            name = f"{entry['name']}_r{k}"
            paths = {"name": name}
            for key, folder, dtype in ((condition_key, "conditionsTr", np.uint8), (label_key, "labelsTr", np.uint32)):
                volume = np.asarray(out[key].detach().cpu() if hasattr(out[key], "detach") else out[key])
                paths[key] = os.path.join(root, folder, f"{name}.tif")
                write_image(paths[key], volume.reshape(volume.shape[-3:]).astype(dtype))
            written.append(paths)
            voxel_sizes[name] = [float(v) for v in entry.get("voxel_size", ())]
            logger.info("remodeled %s -> %s", entry.get(label_key), name)
    sizes = {tuple(v) for v in voxel_sizes.values() if v}
    summary = {"name": "remodeled", "description": "NeuroDiff biology-guided mask remodeling of "
               f"{len(datalist)} volumes x {copies} copies, seed {seed}", "labels": {"background": 0, "membrane": 1,
               "mitochondria": 2}, "numTraining": len(written), "voxel_sizes": voxel_sizes}
    if len(sizes) == 1:
        summary["voxel_size"] = list(sizes.pop())
    fd, tmp = tempfile.mkstemp(dir=root, suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(summary, handle, indent=2)
    os.replace(tmp, os.path.join(root, "dataset.json"))
    return written


def condition_datalist(path: str | os.PathLike, min_shape: Sequence[int] | None = None) -> list[dict]:
    """Condition volumes to synthesize from: one file, or every volume in a folder, validated before sampling starts.

    A condition is a (Z, Y, X) integer volume of 0 (background), 1 (membrane), 2 (mitochondria), as written by
    :func:`remodel_volumes` (``conditionsTr/``) or drawn by hand.

    Args:
        path: a volume file or a folder of them.
        min_shape: the smallest (Z, Y, X) accepted (e.g. the network's stride); None: no limit.

    Returns:
        ``[{"condition": path, "name": stem}, ...]`` in natural name order.

    Raises:
        DatasetError: missing or empty folder, unreadable file, not 3D, values other than 0, 1, 2, or smaller than
            ``min_shape``.
    """
    root = os.path.abspath(os.fspath(path))
    if os.path.isdir(root):
        files = {stem: os.path.join(root, f) for stem, f in _list_images(root).items()}
        if not files:
            raise DatasetError(f"condition_datalist: no condition volumes in {root!r}.")
    elif os.path.isfile(root):
        files = {_strip_extension(os.path.basename(root)) or os.path.basename(root): root}
    else:
        raise DatasetError(f"condition_datalist: {root!r} does not exist.")
    minimum = _check_min_shape(min_shape)
    entries = []
    for name, file in files.items():
        volume = _read_volume(file, "condition")
        bad = sorted({int(v) for v in np.unique(volume)} - {0, 1, 2})
        if bad:
            raise DatasetError(
                f"condition_datalist: condition {file!r} has values {bad[:10]}; a condition holds only 0 (background), "
                "1 (membrane) and 2 (mitochondria)."
            )
        if minimum is not None and any(s < m for s, m in zip(volume.shape, minimum)):
            raise DatasetError(
                f"condition_datalist: condition {file!r} has shape {volume.shape}, smaller than {minimum} (Z, Y, X)."
            )
        entries.append({"condition": file, "name": name})
    return entries
