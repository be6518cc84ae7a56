"""The base of every diffusion inferer here: tiled network calls, training time steps, the one sampling loop."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from monai.inferers import Inferer

from .sampling import DiffusionScheduler, reverse_diffusion
from .tiling import network_stride, tiled_prediction

__all__ = ["DiffusionLossOutput", "TiledDiffusionInferer"]


@dataclass
class DiffusionLossOutput:
    """What one training step produced: the loss, the prediction, its target and the sampled time steps."""

    loss: torch.Tensor
    prediction: torch.Tensor
    target: torch.Tensor
    timesteps: torch.Tensor


class TiledDiffusionInferer(Inferer):
    """Shared machinery of the segmentation and synthesis inferers (subclasses add ``training_loss`` and sampling).

    Sampling updates the whole image or volume at every step while the network sees it in overlapping tiles of
    ``roi_size``, blended with floor-free Gaussian weights (:func:`~emdiff_components.diffusion.tiled_prediction`), so
    all tiles share one ``x_t``, advance together, and no seam forms; memory is bounded by the tiles. Tiles are rounded
    up to the network's stride (:func:`~emdiff_components.diffusion.network_stride`). The loop is
    :func:`~emdiff_components.diffusion.reverse_diffusion`, the same for every scheduler.

    Args:
        scheduler: any scheduler of the protocol in :mod:`emdiff_components.diffusion.sampling`.
        roi_size: tile size per spatial axis (usually the training patch); an int means the same for every axis of
            ``spatial_dims``.
        spatial_dims: 2 or 3 (used to expand an int ``roi_size``).
        sw_batch_size: tiles per network call (>= 1).
        overlap: tile overlap fraction in [0, 1).
        num_inference_steps: sampling steps (``None``: all ``num_train_timesteps``).
        progress: show a progress bar over the sampling steps.
        seed: seed of the generator :meth:`__call__` samples with (every call restarts from it).
    """

    def __init__(
        self,
        scheduler: DiffusionScheduler,
        roi_size: Sequence[int] | int,
        spatial_dims: int = 2,
        sw_batch_size: int = 1,
        overlap: float = 0.25,
        num_inference_steps: int | None = None,
        progress: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        roi = (int(roi_size),) * spatial_dims if isinstance(roi_size, int) else tuple(int(r) for r in roi_size)
        if len(roi) not in (2, 3) or any(r < 1 for r in roi):
            raise ValueError(f"{name}: roi_size must be 2 or 3 positive ints, got {roi_size!r}.")
        if not 0 <= overlap < 1:
            raise ValueError(f"{name}: overlap must be in [0, 1), got {overlap}.")
        if sw_batch_size < 1:
            raise ValueError(f"{name}: sw_batch_size must be >= 1, got {sw_batch_size}.")
        total = scheduler.num_train_timesteps
        if num_inference_steps is not None and not 1 <= num_inference_steps <= total:
            raise ValueError(f"{name}: num_inference_steps must be in [1, {total}], got {num_inference_steps}.")
        self.scheduler = scheduler
        self.roi_size = roi
        self.sw_batch_size = sw_batch_size
        self.overlap = overlap
        self.num_inference_steps = num_inference_steps or total
        self.progress = progress
        self.seed = seed

    def _deprecated(self, argument: str, instead: str) -> None:
        """Warn that an argument kept for saved configs is deprecated (removed in the next release)."""
        message = f"{type(self).__name__}: {argument} is deprecated and will be removed; {instead}."
        warnings.warn(message, DeprecationWarning, stacklevel=3)

    def _set_eta(self, eta: float | None) -> None:
        """The old ``eta`` argument of the inferers: set on a scheduler that has one (AlignedDDIMScheduler)."""
        if eta is None:
            return
        self._deprecated("eta", "pass eta to the scheduler (gaussian_scheduler / synthesis_scheduler)")
        if hasattr(self.scheduler, "eta"):
            self.scheduler.eta = float(eta)
        elif eta:
            raise ValueError(f"{type(self).__name__}: eta={eta!r} needs a scheduler with an eta (AlignedDDIMScheduler).")

    def sample_timesteps(
        self, batch_size: int, generator: torch.Generator | None = None, low: int = 0
    ) -> torch.Tensor:
        """Training time steps ``(B,)``, uniform over ``{low, ..., T-1}``, drawn on the CPU from ``generator``."""
        return torch.randint(low, self.scheduler.num_train_timesteps, (batch_size,), generator=generator)

    def predict(
        self, network: Callable[..., torch.Tensor], sample: torch.Tensor, condition: torch.Tensor, t: int
    ) -> torch.Tensor:
        """The network's output for the whole ``sample`` from blended tiles of ``[sample, condition]``."""
        return tiled_prediction(
            network, sample, condition, t, self.roi_size, self.sw_batch_size, self.overlap,
            stride=network_stride(network),
        )

    def reverse(
        self,
        network: Callable[..., torch.Tensor],
        start: torch.Tensor,
        condition: torch.Tensor,
        generator: torch.Generator | None = None,
        desc: str = "sampling",
    ) -> torch.Tensor:
        """Run the scheduler from ``start`` (x_T) to x_0, the network conditioned on ``condition`` at every step."""
        return reverse_diffusion(
            self.scheduler,
            lambda sample, t: self.predict(network, sample, condition, t),
            start,
            self.num_inference_steps,
            generator=generator,
            progress=self.progress,
            desc=desc,
        )

    @torch.no_grad()
    def __call__(  # type: ignore[override]
        self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """What MONAI's evaluators call: :meth:`sample` of ``inputs`` with a generator seeded by ``seed``."""
        return self.sample(inputs, network, torch.Generator().manual_seed(self.seed))

    def sample(
        self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not sample.")
