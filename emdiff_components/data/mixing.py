"""Training data of NeuroDiff's downstream neuron segmentation: a fraction of the real labels, plus synthetic pairs.

Jiang et al. "Diffusion Model-Based Data Augmentation for Enhanced Neuron Segmentation", ISBI 2026,
https://arxiv.org/abs/2601.15779, Table 1: a segmentation network trained on 4 %, 20 % or 100 % of the real labelled
sections, with and without synthetic volumes drawn by the generator from remodeled masks; training crops are drawn
50 / 50 from real and synthetic pairs (REFERENCE.md section 3).

Real volumes follow :func:`~emdiff_components.data.volume_datalist`'s layout; synthetic pairs are any folder in the
same layout, e.g. the NeuroDiff remodel + synthesis output (``outputs/remodel/imagesTr`` + ``labelsTr``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

from .layout import DatasetError
from .volumes import volume_datalist

__all__ = ["labelled_sections", "mixing_weights", "neuron_training_datalist"]


def labelled_sections(num_sections: int, fraction: float) -> int:
    """How many contiguous sections (from the first) a label ``fraction`` keeps of a volume: ``ceil(fraction * Z)``.

    At least one section is kept; the fraction is of the sections, as the public trainer's ``train_split`` (the first
    N sections of the training volume).

    Example:
        >>> labelled_sections(64, 0.04)  # 2.56 -> 3 sections
        3
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"labelled_sections: fraction must be in (0, 1], got {fraction!r}.")
    if num_sections < 1:
        raise ValueError(f"labelled_sections: num_sections must be >= 1, got {num_sections!r}.")
    return max(1, min(num_sections, math.ceil(fraction * num_sections - 1e-9)))


def neuron_training_datalist(
    real_dir: str | os.PathLike,
    label_fraction: float = 1.0,
    synthetic_dir: str | os.PathLike | None = None,
    split: str = "Tr",
    voxel_size: Sequence[float] | None = None,
    min_shape: Sequence[int] | None = None,
) -> list[dict]:
    """Real volumes (their first ``label_fraction`` of sections labelled) and, optionally, synthetic image / label pairs.

    Args:
        real_dir: a volume dataset folder (``imagesTr/``, ``labelsTr/``; see :mod:`emdiff_components.data.volumes`).
        label_fraction: fraction of each real volume's sections kept for training, taken as the first contiguous
            sections (paper: 0.04, 0.2, 1.0); default 1.0. Applied by
            :class:`~emdiff_components.transforms.KeepSectionsd` through each entry's ``"label_fraction"``.
        synthetic_dir: a folder in the same layout holding synthetic volumes and their instance labels (all sections
            used); default None (real only).
        split: folder suffix of both folders; default ``"Tr"``.
        voxel_size: (z, y, x) nm for the real volumes when their files and ``dataset.json`` carry none.
        min_shape: smallest (Z, Y, X) accepted, e.g. ``(1, 160, 160)`` for 160-pixel crops (sections are padded to the
            crop depth later); default None.

    Returns:
        one entry per volume: :func:`volume_datalist`'s keys plus ``"source"`` (``"real"`` or ``"synthetic"``) and
        ``"label_fraction"`` (the argument for real volumes, 1.0 for synthetic ones).

    Raises:
        ValueError: ``label_fraction`` outside (0, 1].
        DatasetError: a folder that :func:`volume_datalist` rejects (its message names the file), or a synthetic
            volume with the same name as a real one.
    """
    labelled_sections(1, label_fraction)  # validates the fraction before any file is read
    real = [
        dict(e, source="real", label_fraction=float(label_fraction))
        for e in volume_datalist(real_dir, split, voxel_size=voxel_size, min_shape=min_shape)
    ]
    if synthetic_dir is None:
        return real
    synthetic = [
        dict(e, source="synthetic", label_fraction=1.0)
        for e in volume_datalist(synthetic_dir, split, min_shape=min_shape)
    ]
    clash = sorted({e["name"] for e in real} & {e["name"] for e in synthetic})
    if clash:
        raise DatasetError(
            f"neuron_training_datalist: {os.fspath(synthetic_dir)!r} has volumes named like real ones in "
            f"{os.fspath(real_dir)!r} ({clash[:5]}); rename the synthetic files so the two sources stay apart."
        )
    return real + synthetic


def mixing_weights(datalist: Sequence[Mapping], synthetic_ratio: float = 0.5) -> list[float]:
    """Per-entry sampling weights so that a crop comes from a synthetic volume with probability ``synthetic_ratio``.

    Within a source every volume is equally likely (the public trainer draws the volume uniformly, then the crop).
    Use with ``torch.utils.data.WeightedRandomSampler(weights, num_samples, replacement=True)``.

    Args:
        datalist: entries with ``"source"`` ``"real"`` or ``"synthetic"`` (:func:`neuron_training_datalist`).
        synthetic_ratio: probability of a synthetic crop, in [0, 1]; default 0.5 (paper: 50 / 50). Ignored (all
            weight on real volumes) when the datalist has no synthetic entry only if the ratio is 0.

    Returns:
        weights summing to 1, in datalist order.

    Raises:
        ValueError: a ratio outside [0, 1], an entry without a known source, a ratio > 0 without synthetic volumes,
            or a ratio < 1 without real ones.

    Example:
        >>> mixing_weights([{"source": "real"}, {"source": "synthetic"}, {"source": "synthetic"}], 0.5)
        [0.5, 0.25, 0.25]
    """
    if not 0.0 <= synthetic_ratio <= 1.0:
        raise ValueError(f"mixing_weights: synthetic_ratio must be in [0, 1], got {synthetic_ratio!r}.")
    sources = [entry.get("source") for entry in datalist]
    unknown = sorted({str(s) for s in sources} - {"real", "synthetic"})
    if unknown:
        raise ValueError(f"mixing_weights: entries need 'source' 'real' or 'synthetic', found {unknown}.")
    counts = {s: sources.count(s) for s in ("real", "synthetic")}
    share = {"real": 1.0 - synthetic_ratio, "synthetic": synthetic_ratio}
    for source, count in counts.items():
        if share[source] > 0 and count == 0:
            raise ValueError(
                f"mixing_weights: synthetic_ratio {synthetic_ratio} asks for {source} crops but the datalist has no "
                f"{source} volume" + (" (set synthetic_dir)" if source == "synthetic" else "") + "."
            )
    return [share[s] / counts[s] if share[s] > 0 else 0.0 for s in sources]
