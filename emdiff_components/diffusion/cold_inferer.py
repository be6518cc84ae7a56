"""One inferer for cold-diffusion segmentation: the training loss for the trainer, tiled sampling for the evaluator."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from .cold import ColdDiffusionScheduler
from .mask_inferer import MaskDiffusionInferer
from .tiled_inferer import DiffusionLossOutput

__all__ = ["ColdDiffusionInferer"]


class ColdDiffusionInferer(MaskDiffusionInferer):
    """Cold-diffusion segmentation inferer (ECSD / Cold SegDiffusion): one object serves training and sampling.

    Qi et al. "A Boundary-aware Cold-Diffusion Model for Electron Microscopy Segmentation" (ECSD);
    Yan et al. "Cold SegDiffusion", KBS 301 (2024).

    Training (:meth:`training_loss`): the label is mapped to ``m`` in [-1, 1] (one channel for binary, one-hot channels
    for multi-class), ``t`` is drawn uniformly from ``{0..T-1}`` (or from ``{sc..T-1}``, ``sc = int(sqrt(e/E) T)``, with
    the reference code's curriculum), ``x_t = D(m, t)`` and the network predicts ``x0_hat``; the loss function gets
    ``(x0_hat, m, boundary_weight, t)``.

    Sampling (:meth:`__call__`): set ``I`` as the scheduler's degradation target, start from ``x = I`` and run the
    scheduler's sampler over its time steps. The network sees the image in overlapping tiles of ``roi_size`` blended
    with floor-free Gaussian weights, while the sampler update is applied to the whole image, so all tiles advance
    together every step and no seam forms (measured in ``tests/diffusion/test_tiling.py``); memory is bounded by the
    tiles, not the image.

    Args:
        scheduler: the :class:`ColdDiffusionScheduler`.
        num_classes: number of classes including background (2 = binary, one output channel).
        roi_size: tile size for sampling (the training patch size); smaller images are padded.
        sw_batch_size: tiles per network call.
        overlap: tile overlap fraction (0 <= overlap < 1).
        num_inference_steps: sampling steps (``None``: all T).
        size_divisor: deprecated and ignored (the tiles follow the network's ``stride``).
        curriculum: use the reference code's time-step curriculum in training.
        progress: show a progress bar over sampling steps.

    Example::

        inferer = ColdDiffusionInferer(ColdDiffusionScheduler(50), num_classes=2, roi_size=(256, 256))
        out = inferer.training_loss(net, image, label, loss_function=loss, boundary_weight=w)
        out.loss.backward()
        mask = inferer.decode(inferer(image, net))
    """

    def __init__(
        self,
        scheduler: ColdDiffusionScheduler,
        num_classes: int = 2,
        roi_size: Sequence[int] | int = 256,
        sw_batch_size: int = 2,
        overlap: float = 0.25,
        num_inference_steps: int | None = None,
        size_divisor: int | None = None,
        curriculum: bool = False,
        progress: bool = False,
    ) -> None:
        super().__init__(
            scheduler, num_classes, roi_size, sw_batch_size, overlap, num_inference_steps, progress,
            size_divisor=size_divisor,
        )
        self.curriculum = curriculum

    def first_timestep(self, epoch_fraction: float) -> int:
        """The smallest training time step: 0, or ``sc = int(sqrt(e / E) T)`` (at most T-1) under the curriculum."""
        num_steps = self.scheduler.num_train_timesteps
        if not self.curriculum:
            return 0
        return min(int(math.sqrt(max(0.0, min(1.0, epoch_fraction))) * num_steps), num_steps - 1)

    def training_loss(
        self,
        network: Callable[..., torch.Tensor],
        image: torch.Tensor,
        label: torch.Tensor,
        loss_function: Callable[..., torch.Tensor],
        boundary_weight: torch.Tensor | None = None,
        epoch_fraction: float = 0.0,
        generator: torch.Generator | None = None,
        timesteps: torch.Tensor | None = None,
    ) -> DiffusionLossOutput:
        """Degrade the mask at random ``t``, predict x0 and evaluate ``loss_function(x0_hat, m, weight, t)``.

        Args:
            network: called as ``network(x_t, t, image)``.
            image: ``(B, 1, H, W)`` in [-1, 1].
            label: ``(B, 1, H, W)`` integer classes.
            loss_function: e.g. ``BoundaryAwareMSELoss``; called with ``boundary_weight`` and ``timesteps``.
            boundary_weight: ``(B, 1, H, W)`` inverse-distance map or ``None`` (plain loss).
            epoch_fraction: progress through training in [0, 1] (curriculum only).
            generator: draws the time steps (ignored when ``timesteps`` is given).
            timesteps: fixed ``(B,)`` time steps (tests).
        """
        target = self.encode(label)
        if timesteps is None:
            timesteps = self.sample_timesteps(image.shape[0], generator, low=self.first_timestep(epoch_fraction))
        timesteps = timesteps.to(image.device)
        x_t = self.scheduler.degrade(target, image, timesteps)
        prediction = network(x_t, timesteps, image)
        loss = loss_function(prediction, target, boundary_weight=boundary_weight, timesteps=timesteps)
        return DiffusionLossOutput(loss=loss, prediction=prediction, target=target, timesteps=timesteps)

    @torch.no_grad()
    def sample(
        self, image: torch.Tensor, network: Callable[..., torch.Tensor], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The mask of ``image`` (``(B, 1, H, W)`` in [-1, 1]): the sampler from ``x = I`` (broadcast to the mask
        channels) down to ``t = 0``; ``(B, C, H, W)`` in [-1, 1]. ``generator`` is unused (the sampler is
        deterministic)."""
        self.scheduler.set_image(image)
        start = image.expand(-1, self.mask_channels, *image.shape[2:]).clone()
        try:
            return self.reverse(network, start, image, generator)
        finally:
            self.scheduler.set_image(None)
