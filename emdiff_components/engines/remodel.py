"""NeuroDiff's remodeling run: read label volumes, remodel them with a seeded transform, write a condition dataset."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..data import write_image
from ..utils import atomic_write

__all__ = ["remodel_volumes"]

logger = logging.getLogger(__name__)


def remodel_volumes(
    datalist: Sequence[Mapping],
    transform,
    output_dir: str | os.PathLike,
    copies: int = 1,
    seed: int = 0,
    label_key: str = "label",
    condition_key: str = "condition",
    library: Any = None,
) -> list[dict[str, str]]:
    """Run a seeded remodeling ``transform`` over a datalist and write conditions and labels as a dataset layout.

    NeuroDiff's biology-guided mask remodeling turns real neuron labels into new ones; the synthesis bundle then draws
    an EM volume for each condition, so the output is laid out to become a training set::

        output_dir/conditionsTr/<name>_r<k>.tif   uint8 condition: 0 background, 1 membrane, 2 mitochondria
        output_dir/labelsTr/<name>_r<k>.tif       the matching (deformed) neuron instance labels
        output_dir/mito_library.npz               the mitochondria library placed from (``library``, if not empty)
        output_dir/dataset.json                   written last (voxel sizes of the sources)

    Copy ``k`` of entry ``i`` is drawn with ``transform.set_random_state(seed + i * copies + k)``: the same seed gives
    the same files, and every copy is different. Every file is written atomically, ``dataset.json`` last, so its
    presence marks a complete run.

    Args:
        datalist: entries of :func:`~emdiff_components.data.volume_datalist` (``label`` path, optional ``mito``,
            ``name``, ``voxel_size``).
        transform: a MONAI randomizable transform (e.g. ``Compose([LoadVolumed, RemodelMasksd])``) returning
            ``label_key`` and ``condition_key`` as ``(1, Z, Y, X)`` arrays.
        output_dir: folder of the new dataset (created).
        copies: remodeled copies per entry, >= 1; default 1.
        seed: base seed; default 0.
        label_key, condition_key: output keys of ``transform``; default ``"label"``, ``"condition"``.
        library: the ``MitochondriaLibrary`` the transform places from, saved beside the dataset so that a later run
            can reuse it (``library_path``); ``None`` or an empty library: nothing saved. Default None.

    Returns:
        one ``{"condition", "label", "name"}`` dict of written paths per copy.

    Raises:
        ValueError: ``copies`` not an int >= 1, or an empty datalist.

    Example::

        remodel_volumes(volume_datalist("data/ac3_ac4"), Compose([LoadVolumed("label"), RemodelMasksd()]), "out", 4)
    """
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise ValueError(f"remodel_volumes: copies must be an int >= 1, got {copies!r}.")
    if not datalist:
        raise ValueError("remodel_volumes: the datalist is empty.")
    root = os.fspath(output_dir)
    if library is not None and len(library) > 0:
        library.save(os.path.join(root, "mito_library.npz"))
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
    with atomic_write(os.path.join(root, "dataset.json")) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return written
