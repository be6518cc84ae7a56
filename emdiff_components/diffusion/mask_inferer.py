"""The parts every mask-diffusion segmentation inferer shares: the mask encoding, on top of the tiled base."""

from __future__ import annotations

from typing import Sequence

import torch

from ..transforms.label import LabelToSignedMask, SignedMaskToLabel
from .sampling import DiffusionScheduler
from .tiled_inferer import TiledDiffusionInferer

__all__ = ["MaskDiffusionInferer"]


class MaskDiffusionInferer(TiledDiffusionInferer):
    """Base of the segmentation diffusion inferers: masks in [-1, 1], 2D images, the tiled sampling of the base.

    The label is diffused as ``m`` in [-1, 1] (one channel for binary, one-hot channels for more classes). The network
    is called as ``network(x_t, t, image)`` on overlapping tiles (see :class:`TiledDiffusionInferer`). Subclasses add
    ``training_loss`` and ``sample``.

    Args:
        scheduler: the diffusion scheduler.
        num_classes: number of classes including background (2 = binary, one mask channel).
        roi_size: tile size for sampling (the training patch size); smaller images use one tile.
        sw_batch_size: tiles per network call.
        overlap: tile overlap fraction (0 <= overlap < 1).
        num_inference_steps: sampling steps (``None``: all T).
        progress: show a progress bar over sampling steps.
        seed: seed of the generator :meth:`__call__` samples with.
        size_divisor: deprecated and ignored: the tiles follow the network's own ``stride``.
    """

    def __init__(
        self,
        scheduler: DiffusionScheduler,
        num_classes: int = 2,
        roi_size: Sequence[int] | int = 256,
        sw_batch_size: int = 2,
        overlap: float = 0.25,
        num_inference_steps: int | None = None,
        progress: bool = False,
        seed: int = 0,
        size_divisor: int | None = None,
    ) -> None:
        super().__init__(scheduler, roi_size, 2, sw_batch_size, overlap, num_inference_steps, progress, seed)
        name = type(self).__name__
        if num_classes < 2:
            raise ValueError(f"{name}: num_classes must be >= 2 (background included), got {num_classes}.")
        if len(self.roi_size) != 2:
            raise ValueError(f"{name}: roi_size must be 2 ints (Y, X), got {roi_size!r}.")
        if size_divisor is not None:
            self._deprecated("size_divisor", "the tiles follow the network's stride attribute")
        self.num_classes = num_classes
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
