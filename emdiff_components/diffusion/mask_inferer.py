"""The parts every mask-diffusion segmentation inferer shares: mask encoding and tiled, blended network calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from monai.inferers import Inferer

from ..transforms.label import LabelToSignedMask, SignedMaskToLabel
from .tiling import tile_size, tiled_prediction

__all__ = ["MaskDiffusionInferer", "DiffusionLossOutput"]


@dataclass
class DiffusionLossOutput:
    """What one training step produced: the loss, the prediction, its target and the sampled time steps."""

    loss: torch.Tensor
    prediction: torch.Tensor
    target: torch.Tensor
    timesteps: torch.Tensor


class MaskDiffusionInferer(Inferer):
    """Base of the segmentation diffusion inferers: masks in [-1, 1] and whole-image x0 estimates from tiles.

    The label is diffused as ``m`` in [-1, 1] (one channel for binary, one-hot channels for more classes). The network
    is called as ``network(x_t, t, image)`` on overlapping tiles of ``roi_size`` blended with Gaussian weights (MONAI's
    ``SlidingWindowInferer``); samplers apply their update to the whole image, so all tiles advance together each
    step and memory is bounded by the tiles. Subclasses add ``training_loss`` and ``sample``.

    Args:
        num_classes: number of classes including background (2 = binary, one mask channel).
        roi_size: tile size for sampling (the training patch size); smaller images use one tile.
        sw_batch_size: tiles per network call.
        overlap: tile overlap fraction (0 <= overlap < 1).
        size_divisor: the network's total stride; tiles are rounded up to a multiple of it.
        progress: show a progress bar over sampling steps.
    """

    def __init__(
        self,
        num_classes: int = 2,
        roi_size: Sequence[int] | int = 256,
        sw_batch_size: int = 2,
        overlap: float = 0.25,
        size_divisor: int = 8,
        progress: bool = False,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if num_classes < 2:
            raise ValueError(f"{name}: num_classes must be >= 2 (background included), got {num_classes}.")
        if not 0 <= overlap < 1:
            raise ValueError(f"{name}: overlap must be in [0, 1), got {overlap}.")
        self.num_classes = num_classes
        self.roi_size = (roi_size, roi_size) if isinstance(roi_size, int) else tuple(roi_size)
        self.sw_batch_size = sw_batch_size
        self.overlap = overlap
        self.size_divisor = size_divisor
        self.progress = progress
        self._encoder = LabelToSignedMask(num_classes, channel_dim=1)
        self._decoder = SignedMaskToLabel(channel_dim=1)

    @property
    def mask_channels(self) -> int:
        """Channels of ``m``: 1 for binary, ``num_classes`` (one-hot) for multi-class."""
        return 1 if self.num_classes == 2 else self.num_classes

    def encode(self, label: torch.Tensor) -> torch.Tensor:
        """Integer label ``(B, 1, H, W)`` -> mask ``m`` in [-1, 1], ``(B, mask_channels, H, W)``."""
        return self._encoder(label)

    def decode(self, mask: torch.Tensor) -> torch.Tensor:
        """Mask ``(B, C, H, W)`` in [-1, 1] -> integer label ``(B, 1, H, W)`` (threshold 0, or argmax)."""
        return self._decoder(mask)

    def _tile_size(self, spatial: Sequence[int]) -> tuple[int, ...]:
        """Tile size: ``roi_size``, shrunk to the image (rounded up to the network stride)."""
        return tile_size(self.roi_size, spatial, self.size_divisor)

    def predict_x0(self, network: Callable[..., torch.Tensor], sample: torch.Tensor, image: torch.Tensor, t: int):
        """x0_hat of the whole image from overlapping, Gaussian-blended tiles of ``[x_t, I]`` (``tiled_prediction``)."""
        return tiled_prediction(
            network, sample, image, t, self.roi_size, self.sw_batch_size, self.overlap, stride=self.size_divisor,
            min_weight=1e-3,  # MONAI's floored Gaussian, as before the tiling was shared
        )
