"""Keep the labelled part of a volume: its first sections, as a label budget of NeuroDiff's Table 1."""

from __future__ import annotations

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.transforms import Transform
from monai.utils import TransformBackends

from ...data.mixing import labelled_sections

__all__ = ["KeepSections"]


class KeepSections(Transform):
    """Keep the first ``ceil(fraction * Z)`` sections of a ``(C, Z, Y, X)`` volume; reflect-pad to ``min_sections``.

    Jiang et al. "Diffusion Model-Based Data Augmentation for Enhanced Neuron Segmentation", ISBI 2026,
    https://arxiv.org/abs/2601.15779: the segmentation network sees 4 %, 20 % or 100 % of the labelled sections,
    taken contiguously from the start of the volume (the public trainer's ``train_split``). A kept stack shorter than
    the training crop is padded in z by reflection, half before and half after, as the public trainer's
    ``pad_short_z`` does, so a 4 % budget still yields full-depth crops.

    Args:
        fraction: share of the sections kept, in (0, 1]; default 1.0 (everything).
        min_sections: pad the kept stack to at least this many sections (the crop depth, e.g. 16); default 1.
        axis: the section axis; default 1 (``(C, Z, Y, X)``).

    Example:
        >>> KeepSections(0.25, min_sections=4)(np.arange(8).reshape(1, 8, 1, 1))[0, :, 0, 0]
        array([1, 0, 1, 0])
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(self, fraction: float = 1.0, min_sections: int = 1, axis: int = 1) -> None:
        labelled_sections(1, fraction)
        if isinstance(min_sections, bool) or not isinstance(min_sections, int) or min_sections < 1:
            raise ValueError(f"KeepSections: min_sections must be an int >= 1, got {min_sections!r}.")
        self.fraction, self.min_sections, self.axis = float(fraction), min_sections, axis

    def __call__(self, volume: NdarrayOrTensor, fraction: float | None = None) -> NdarrayOrTensor:
        """Apply to ``volume``; ``fraction`` overrides the constructor's (per-volume budgets)."""
        fraction = self.fraction if fraction is None else float(fraction)
        if volume.ndim < 2:
            raise ValueError(f"KeepSections: a volume with a section axis is needed, got shape {tuple(volume.shape)}.")
        axis = self.axis % volume.ndim
        n = labelled_sections(volume.shape[axis], fraction)
        total = max(n, self.min_sections)
        before = (total - n) // 2
        # indices of numpy's "reflect" padding, so torch and numpy inputs give the same sections
        index = np.pad(np.arange(n), (before, total - n - before), mode="reflect")
        if isinstance(volume, torch.Tensor):
            return volume.index_select(axis, torch.as_tensor(index, device=volume.device))
        return np.take(volume, index, axis=axis)
