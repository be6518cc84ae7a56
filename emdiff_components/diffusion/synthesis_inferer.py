"""Mask-to-EM synthesis by conditional Gaussian diffusion (NeuroDiff): the T = 250 cosine schedule, the noise-prediction
training loss and whole-volume sampling with tiled, blended network calls.

The schedule (T = 250, med-ddpm's cosine in float64) is :func:`emdiff_components.diffusion.synthesis_scheduler`.

Dorjsembe et al. "Conditional Diffusion Models for Semantic 3D Brain MRI Synthesis" (med-ddpm),
https://arxiv.org/abs/2305.18453; Nichol & Dhariwal "Improved Denoising Diffusion Probabilistic Models",
https://arxiv.org/abs/2102.09672; the NeuroDiff paper (diffusion data augmentation for neuron segmentation).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from .parameterization import training_target
from .sampling import DiffusionScheduler
from .tiled_inferer import DiffusionLossOutput, TiledDiffusionInferer

__all__ = ["ConditionalSynthesisInferer"]


class ConditionalSynthesisInferer(TiledDiffusionInferer):
    """Synthesis of an EM volume from a condition volume by conditional DDPM / DDIM with noise prediction (NeuroDiff).

    Training (:meth:`training_loss`, Ho et al. 2020): ``t ~ U{0..T-1}``, ``eps ~ N(0, I)``,
    ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` (MONAI ``scheduler.add_noise``), ``out = network(x_t, t, c)``,
    ``loss = loss_function(out, target)`` with the target of the scheduler's ``prediction_type``
    (:func:`~emdiff_components.diffusion.parameterization.training_target`: eps for NeuroDiff's ``"epsilon"``, L1).
    Legend: x_0 the EM image in [-1, 1], c the condition (membrane, mitochondria one-hot in [-1, 1]), abar_t the
    schedule's cumulative alpha.

    Sampling (:meth:`sample`): ``x_T ~ N(0, I)`` is drawn once over the whole volume; at every step the network's
    output comes from overlapping tiles blended without seams and the scheduler's ``step`` updates the whole volume,
    so all tiles share one x_t and advance together (the reference tiles without overlap and shows seams). DDPM runs
    all T steps; DDIM (:class:`AlignedDDIMScheduler`, which steps to the time step it visits next) runs
    ``num_inference_steps``. x0 is clipped to [-1, 1] inside the scheduler (``clip_sample=True``, as the reference's
    ``clip_denoised``).

    Args:
        scheduler: a scheduler from :func:`synthesis_scheduler` (noise prediction; any ``prediction_type`` trains and
            samples consistently).
        roi_size: tile size ``(Z, Y, X)`` (the training patch), or ``(Y, X)`` for 2D; an int means the same per axis
            of a 3D volume.
        sw_batch_size: tiles per network call, default 1.
        overlap: tile overlap fraction in [0, 1), default 0.25.
        num_inference_steps: sampling steps; ``None`` (default): all ``num_train_timesteps``.
        eta: deprecated: DDIM's eta is the scheduler's (``synthesis_scheduler(..., eta=...)``).
        progress: show a progress bar over steps (needs tqdm), default False.
        seed: seed of the generator :meth:`__call__` samples with (every call restarts from it), default 0.
        stride: deprecated and ignored: the tiles follow the network's own ``stride``.
        image_channels: channels of the synthesized image, default 1.

    Example::

        scheduler = synthesis_scheduler("ddim")
        inferer = ConditionalSynthesisInferer(scheduler, roi_size=(8, 128, 128), num_inference_steps=50)
        em = inferer(condition, network)  # condition (1, 2, Z, Y, X) in [-1, 1] -> em (1, 1, Z, Y, X) in [-1, 1]
    """

    def __init__(
        self,
        scheduler: DiffusionScheduler,
        roi_size: Sequence[int] | int,
        sw_batch_size: int = 1,
        overlap: float = 0.25,
        num_inference_steps: int | None = None,
        eta: float | None = None,
        progress: bool = False,
        seed: int = 0,
        stride: Sequence[int] | int | None = None,
        image_channels: int = 1,
    ) -> None:
        super().__init__(scheduler, roi_size, 3, sw_batch_size, overlap, num_inference_steps, progress, seed)
        if image_channels < 1:
            raise ValueError(f"{type(self).__name__}: image_channels must be >= 1, got {image_channels}.")
        if stride is not None:
            self._deprecated("stride", "the tiles follow the network's stride attribute")
        self._set_eta(eta)
        self.image_channels = image_channels

    def _check_pair(self, condition: torch.Tensor, image: torch.Tensor | None = None) -> None:
        name = type(self).__name__
        if condition.ndim != len(self.roi_size) + 2:
            raise ValueError(
                f"{name}: condition must be (B, C, {', '.join('ZYX'[-len(self.roi_size):])}) to match roi_size "
                f"{self.roi_size}, got shape {tuple(condition.shape)}."
            )
        if image is not None and (image.shape[0] != condition.shape[0] or image.shape[2:] != condition.shape[2:]):
            raise ValueError(
                f"{name}: image and condition differ in batch or spatial shape: {tuple(image.shape)} vs "
                f"{tuple(condition.shape)}."
            )

    def training_loss(
        self,
        network: Callable[..., torch.Tensor],
        condition: torch.Tensor,
        image: torch.Tensor,
        loss_function: Callable[..., torch.Tensor],
        generator: torch.Generator | None = None,
        timesteps: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> DiffusionLossOutput:
        """Noise the image at a random ``t``, predict, return ``loss_function(prediction, target)`` (target: the noise
        for ``prediction_type="epsilon"``).

        Args:
            network: the denoiser, ``network(x_t, t, condition)``.
            condition: ``(B, C_cond, [Z,] Y, X)`` in [-1, 1] (the trainer's ``image_key`` batch entry).
            image: the EM image x_0 ``(B, 1, [Z,] Y, X)`` in [-1, 1] (the trainer's ``label_key`` batch entry).
            loss_function: called as ``loss_function(prediction, target)``.
            generator: draws ``t`` and the noise on the CPU (they are then moved to the image's device).
            timesteps: fixed ``(B,)`` time steps instead of random ones.
            noise: fixed noise, shaped like ``image``.
            kwargs: the trainer step's ``boundary_weight`` / ``epoch_fraction``, accepted and unused.

        Returns:
            ``DiffusionLossOutput`` with the loss, the prediction, its target and ``t``.
        """
        self._check_pair(condition, image)
        if timesteps is None:
            timesteps = self.sample_timesteps(image.shape[0], generator)
        if noise is None:
            noise = torch.randn(image.shape, generator=generator, dtype=image.dtype)
        if noise.shape != image.shape:
            raise ValueError(
                f"{type(self).__name__}: noise shape {tuple(noise.shape)} differs from image {tuple(image.shape)}."
            )
        timesteps, noise = timesteps.to(image.device).long(), noise.to(image.device)
        x_t = self.scheduler.add_noise(original_samples=image, noise=noise, timesteps=timesteps)
        prediction = network(x_t, timesteps, condition)
        abar = self.scheduler.alphas_cumprod.to(image.device)[timesteps]
        target = training_target(image, noise, abar, self.scheduler.prediction_type)
        loss = loss_function(prediction, target)
        return DiffusionLossOutput(loss=loss, prediction=prediction, target=target, timesteps=timesteps)

    @torch.no_grad()
    def sample(
        self, condition: torch.Tensor, network: Callable[..., torch.Tensor], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """One EM volume per condition: ``x_T ~ N(0, I)`` from ``generator``, then the scheduler's steps.

        Args:
            condition: ``(B, C_cond, [Z,] Y, X)`` in [-1, 1], any spatial size.
            network: the denoiser, ``network(x_t, t, condition)``.
            generator: CPU generator for x_T and (on CPU) the per-step noise.

        Returns:
            The image ``(B, image_channels, [Z,] Y, X)`` in [-1, 1].
        """
        self._check_pair(condition)
        dtype = condition.dtype if condition.is_floating_point() else torch.float32
        shape = (condition.shape[0], self.image_channels, *condition.shape[2:])
        start = torch.randn(shape, generator=generator, dtype=dtype).to(condition.device)
        return self.reverse(network, start, condition.to(dtype), generator, desc="synthesis").clamp(-1.0, 1.0)
