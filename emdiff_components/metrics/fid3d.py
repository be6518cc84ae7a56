"""3D-FID: Frechet distance between real and synthetic EM volumes in a trained segmentation network's feature space.

Jiang et al. "Diffusion Model-Based Data Augmentation for Enhanced Neuron Segmentation", ISBI 2026,
https://arxiv.org/abs/2601.15779, Table 2: "we pretrained a segmentation network ... to extract feature representations
and compute the distributional distance between real and generated images in the feature space". The paper does not
say which layer or which crops; here every non-overlapping ``patch_size`` crop of a volume gives one feature vector,
the spatial mean of one named layer's output (default: the network's deepest encoder level), and MONAI's
``FIDMetric`` compares the two sets.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from ignite.metrics import Metric
from monai.metrics import FIDMetric

__all__ = ["FID3D", "fid_3d", "volume_features"]

logger = logging.getLogger(__name__)


def _starts(size: int, patch: int) -> list[int]:
    """Non-overlapping crop starts covering ``size``; the last crop is shifted back to end at the border."""
    if size <= patch:
        return [0]
    starts = list(range(0, size - patch + 1, patch))
    return starts if starts[-1] + patch == size else starts + [size - patch]


@torch.no_grad()
def volume_features(
    network: torch.nn.Module,
    volume: torch.Tensor | np.ndarray,
    patch_size: Sequence[int],
    layer: str,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """One feature vector per ``patch_size`` crop of ``volume``: the spatial mean of ``layer``'s output.

    Works in 2D as well (CellCascade's FID of single-cell crops): the length of ``patch_size`` sets the dimensions.

    Args:
        network: the trained segmentation network (its mode is left unchanged; use ``eval()`` for fixed statistics).
        volume: ``([1,] Z, Y, X)`` (or ``([1,] Y, X)`` with a 2D ``patch_size``) in the network's input scaling.
        patch_size: crop (Z, Y, X) or (Y, X), a size the network accepts; the volume must be at least this large.
        layer: dotted name of the module whose output is pooled (``dict(network.named_modules())``).
        preprocess: applied to each ``(1, 1, *patch_size)`` crop before the network, e.g. a rescaling; default None.

    Returns:
        ``(num_crops, channels)`` float32 on the CPU.

    Raises:
        ValueError: an unknown layer (the available top-level names listed) or a volume smaller than the crop.
    """
    modules = dict(network.named_modules())
    if layer not in modules:
        top = [name for name in modules if name and "." not in name]
        raise ValueError(f"volume_features: the network has no layer {layer!r}; top-level layers: {top}.")
    x = torch.as_tensor(np.asarray(volume) if not isinstance(volume, torch.Tensor) else volume, dtype=torch.float32)
    ndim = len(patch_size)
    if ndim not in (2, 3) or x.ndim < ndim or any(s != 1 for s in x.shape[:-ndim]):
        raise ValueError(f"volume_features: need a {ndim}D image (plus a leading 1) for crop {tuple(patch_size)}, got "
                         f"shape {tuple(x.shape)}.")
    x = x.reshape(x.shape[-ndim:])
    if any(s < p for s, p in zip(x.shape, patch_size)):
        raise ValueError(f"volume_features: volume {tuple(x.shape)} is smaller than the crop {tuple(patch_size)}.")
    captured: list[torch.Tensor] = []
    hook = modules[layer].register_forward_hook(lambda _m, _i, out: captured.append(out.flatten(2).mean(dim=2)))
    device = next(network.parameters()).device
    features = []
    try:
        for start in itertools.product(*(_starts(s, p) for s, p in zip(x.shape, patch_size))):
            crop = x[tuple(slice(b, b + p) for b, p in zip(start, patch_size))][None, None].to(device)
            network(preprocess(crop) if preprocess is not None else crop)
            features.append(captured.pop().float().cpu())
    finally:
        hook.remove()
    return torch.cat(features)


def fid_3d(real_features: torch.Tensor, synthetic_features: torch.Tensor) -> float:
    """Frechet distance of two feature sets ``(N, C)`` with MONAI's ``FIDMetric`` (0 for identical sets).

    Raises:
        ValueError: fewer than 2 vectors in a set, or different feature sizes.
    """
    if real_features.ndim != 2 or synthetic_features.ndim != 2 or real_features.shape[1] != synthetic_features.shape[1]:
        raise ValueError(
            f"fid_3d: feature sets must be (N, C) with the same C, got {tuple(real_features.shape)} and "
            f"{tuple(synthetic_features.shape)}."
        )
    if min(len(real_features), len(synthetic_features)) < 2:
        raise ValueError("fid_3d: each feature set needs at least 2 vectors (one covariance needs two crops).")
    return float(FIDMetric()(synthetic_features, real_features))


class FID3D(Metric):
    """Ignite metric: 3D-FID between an evaluator's synthesized volumes and the real ones, over the whole run.

    Gathers :func:`volume_features` of both sides of every ``(pred, real)`` pair given by ``output_transform`` and
    computes :func:`fid_3d` at the end. For the NeuroDiff evaluate config: synthesized and real EM are in [-1, 1]
    there, while the segmentation network was trained on [0, 1]; ``input_range`` maps one to the other.

    Args:
        network: the trained segmentation network (put in eval mode here).
        patch_size: feature crop (Z, Y, X); default the segmentation training crop (16, 160, 160).
        layer: module name pooled for features.
        input_range: (low, high) of the evaluator's volumes, rescaled to [0, 1]; default (-1, 1).
        output_transform: engine output -> ``(pred, real)``, each ``(B, 1, Z, Y, X)`` or a list of such.
        divisible_by: the network's input divisibility (z, y, x); a volume smaller than ``patch_size`` along an axis
            is cropped whole along it, rounded down to this; default (1, 16, 16) (:class:`SuperhumanUNet`).
        device: where ignite keeps the metric's state; default CPU.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        layer: str,
        patch_size: Sequence[int] = (16, 160, 160),
        input_range: Sequence[float] = (-1.0, 1.0),
        output_transform: Callable = lambda x: x,
        divisible_by: Sequence[int] = (1, 16, 16),
        device: str | torch.device = "cpu",
    ) -> None:
        low, high = (float(v) for v in input_range)
        if not high > low:
            raise ValueError(f"FID3D: input_range must be (low, high) with high > low, got {input_range!r}.")
        self.network = network.eval()
        self.layer, self.patch_size, self.low, self.high = layer, tuple(patch_size), low, high
        self.divisible_by = tuple(divisible_by)
        super().__init__(output_transform=output_transform, device=device)

    def _features(self, volumes) -> list[torch.Tensor]:
        batch = volumes if isinstance(volumes, (list, tuple)) else list(volumes)
        rescale = lambda x: (x - self.low) / (self.high - self.low)
        features = []
        for volume in batch:
            volume = torch.as_tensor(volume).detach().cpu()
            crop = [min(p, s - s % d) for p, s, d in zip(self.patch_size, volume.shape[-3:], self.divisible_by)]
            if min(crop) < 1:
                raise ValueError(f"FID3D: volume {tuple(volume.shape[-3:])} is too small for a network input.")
            features.append(volume_features(self.network, volume, crop, self.layer, rescale))
        return features

    def reset(self) -> None:
        self._real: list[torch.Tensor] = []
        self._synthetic: list[torch.Tensor] = []

    def update(self, output) -> None:
        pred, real = output
        self._synthetic += self._features(pred)
        self._real += self._features(real)

    def compute(self) -> float:
        if not self._real:
            raise RuntimeError("FID3D: no volumes were seen.")
        return fid_3d(torch.cat(self._real), torch.cat(self._synthetic))
