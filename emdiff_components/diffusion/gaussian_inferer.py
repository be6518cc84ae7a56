"""Gaussian (DDPM / DDIM) mask diffusion with x0 prediction: training loss and tiled, ensembled sampling."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from .mask_inferer import MaskDiffusionInferer
from .parameterization import check_prediction_type
from .sampling import DiffusionScheduler
from .tiled_inferer import DiffusionLossOutput

__all__ = ["GaussianMaskInferer"]


class GaussianMaskInferer(MaskDiffusionInferer):
    """Segmentation by Gaussian diffusion of the mask, the network predicting the clean mask x0 (MedSegDiff, BIEDSNet).

    Wu et al. "MedSegDiff: Medical Image Segmentation with Diffusion Probabilistic Model", MIDL 2024; the BIEDSNet
    paper (boundary-information-enhanced diffusion segmentation) predicts x0 rather than the noise.

    Training (:meth:`training_loss`): ``m`` = the label in [-1, 1]; ``t`` uniform over ``{0..T-1}``; ``x_t =
    sqrt(abar_t) m + sqrt(1 - abar_t) eps`` (MONAI ``scheduler.add_noise``); ``x0_hat = network(x_t, t, image)``; the loss
    function gets ``(x0_hat, m, timesteps=t)``.

    Sampling (:meth:`sample`): ``x_T ~ N(0, I)`` drawn from ``generator``, then the scheduler's ``step`` over its
    time steps (:func:`~emdiff_components.diffusion.reverse_diffusion`): a ``DDPMScheduler`` (all T steps, ancestral) or
    an ``AlignedDDIMScheduler`` with ``num_inference_steps`` and its own ``eta`` (see :func:`gaussian_scheduler`); both
    built with ``prediction_type="sample"``. The network sees overlapping tiles blended without seams.
    :meth:`sample_ensemble` draws ``num_samples`` masks one after the other from the same generator (MedSegDiff's
    ensemble); fusing them is a post-transform's job (:class:`emdiff_components.transforms.FuseEnsembled`).

    :meth:`__call__` (what MONAI's evaluators call) optionally resizes the image to ``image_size`` first (BIEDSNet
    trains and samples at 256 x 256) and resizes the sampled masks back to the input's size (bilinear), then returns
    the ensemble mean, or every member (``output="members"``) for fusion with an uncertainty map.

    Args:
        scheduler: a scheduler with ``prediction_type="sample"`` (:func:`gaussian_scheduler`: MONAI's
            ``DDPMScheduler`` or our ``AlignedDDIMScheduler``; MONAI's ``DDIMScheduler`` also works, with eta 0).
        num_classes, roi_size, sw_batch_size, overlap, progress: see :class:`MaskDiffusionInferer`.
        num_inference_steps: sampling steps (``None``: all ``num_train_timesteps``).
        num_samples: ensemble size K used by :meth:`__call__` (the mean of the K samples is returned).
        eta: deprecated: DDIM's eta is the scheduler's (``gaussian_scheduler(..., eta=...)``); a value given here is
            set on an ``AlignedDDIMScheduler`` with a warning.
        size_divisor: deprecated and ignored (the tiles follow the network's ``stride``).
        seed: seed of the generator :meth:`__call__` samples with (every call starts from it).
        image_size: ``(H, W)`` the network works at (the image is resized with area averaging, as MONAI's
            ``Resized`` default, the masks back with bilinear interpolation); ``None`` (default): native size, tiled.
        output: what :meth:`__call__` returns: ``"mean"`` (default), the mean of the K masks ``(B, C, H, W)``, or
            ``"members"``, all of them ``(B, K * C, H, W)`` (member k in channels ``k*C .. k*C + C - 1``).

    Example::

        scheduler = gaussian_scheduler("ddim", num_train_timesteps=1000)  # x0 prediction, linear betas
        inferer = GaussianMaskInferer(scheduler, num_inference_steps=50, num_samples=5)
        samples = inferer.sample_ensemble(image, network, generator=torch.Generator().manual_seed(0))  # (K, B, C, H, W)
    """

    def __init__(
        self,
        scheduler: DiffusionScheduler,
        num_classes: int = 2,
        roi_size: Sequence[int] | int = 256,
        sw_batch_size: int = 2,
        overlap: float = 0.25,
        num_inference_steps: int | None = None,
        num_samples: int = 1,
        eta: float | None = None,
        size_divisor: int | None = None,
        progress: bool = False,
        seed: int = 0,
        image_size: Sequence[int] | int | None = None,
        output: str = "mean",
    ) -> None:
        check_prediction_type(scheduler, ("sample",), "GaussianMaskInferer")
        super().__init__(
            scheduler, num_classes, roi_size, sw_batch_size, overlap, num_inference_steps, progress, seed,
            size_divisor=size_divisor,
        )
        self._set_eta(eta)
        if num_samples < 1:
            raise ValueError(f"GaussianMaskInferer: num_samples must be >= 1, got {num_samples}.")
        if output not in ("mean", "members"):
            raise ValueError(f"GaussianMaskInferer: output must be 'mean' or 'members', got {output!r}.")
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        if image_size is not None and (len(image_size) != 2 or any(int(s) < 1 for s in image_size)):
            raise ValueError(f"GaussianMaskInferer: image_size must be None or two positive ints, got {image_size!r}.")
        self.image_size = None if image_size is None else tuple(int(s) for s in image_size)
        self.output = output
        self.num_samples = num_samples

    def training_loss(
        self,
        network: Callable[..., torch.Tensor],
        image: torch.Tensor,
        label: torch.Tensor,
        loss_function: Callable[..., torch.Tensor],
        generator: torch.Generator | None = None,
        timesteps: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> DiffusionLossOutput:
        """Noise the mask at random ``t``, predict x0 and evaluate ``loss_function(x0_hat, m, timesteps=t)``.

        ``generator`` draws ``t`` and the noise (both on the CPU, then moved); ``timesteps`` / ``noise`` fix them (tests).
        Extra keyword arguments of the trainer step (``boundary_weight``, ``epoch_fraction``) are accepted and unused.
        """
        target = self.encode(label)
        if timesteps is None:
            timesteps = self.sample_timesteps(image.shape[0], generator)
        if noise is None:
            noise = torch.randn(target.shape, generator=generator, dtype=target.dtype)
        timesteps, noise = timesteps.to(image.device), noise.to(image.device)
        x_t = self.scheduler.add_noise(original_samples=target, noise=noise, timesteps=timesteps)
        prediction = network(x_t, timesteps, image)
        loss = loss_function(prediction, target, timesteps=timesteps)
        return DiffusionLossOutput(loss=loss, prediction=prediction, target=target, timesteps=timesteps)

    @torch.no_grad()
    def __call__(  # type: ignore[override]
        self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """Masks of ``inputs`` (the image ``(B, C_in, H, W)``) in [-1, 1], seeded by ``seed``: see ``output``."""
        generator = torch.Generator().manual_seed(self.seed)
        size = inputs.shape[2:]
        image = inputs
        if self.image_size is not None and tuple(size) != self.image_size:
            image = F.interpolate(inputs, size=self.image_size, mode="area")
        members = self.sample_ensemble(image, network, generator)  # (K, B, C, h, w)
        if tuple(members.shape[3:]) != tuple(size):
            members = F.interpolate(members.flatten(0, 1), size=size, mode="bilinear", align_corners=False)
            members = members.unflatten(0, (self.num_samples, inputs.shape[0]))
        if self.output == "mean":
            return members.mean(dim=0)
        return members.movedim(0, 1).flatten(1, 2)

    @torch.no_grad()
    def sample_ensemble(
        self, image: torch.Tensor, network: Callable[..., torch.Tensor], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``num_samples`` masks, ``(K, B, C, H, W)`` in [-1, 1]."""
        return torch.stack([self.sample(image, network, generator) for _ in range(self.num_samples)])

    @torch.no_grad()
    def sample(
        self, image: torch.Tensor, network: Callable[..., torch.Tensor], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """One mask: from ``x_T ~ N(0, I)`` through the scheduler's steps; ``(B, C, H, W)`` in [-1, 1]."""
        shape = (image.shape[0], self.mask_channels, *image.shape[2:])
        start = torch.randn(shape, generator=generator, dtype=image.dtype).to(image.device)
        return self.reverse(network, start, image, generator).clamp(-1.0, 1.0)

