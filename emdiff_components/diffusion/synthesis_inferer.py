"""Mask-to-EM synthesis by conditional Gaussian diffusion (NeuroDiff): the T = 250 cosine schedule, the noise-prediction
training loss and whole-volume sampling with tiled, blended network calls.

The schedule (T = 250, med-ddpm's cosine in float64) is :func:`emdiff_components.diffusion.synthesis_scheduler`.

Dorjsembe et al. "Conditional Diffusion Models for Semantic 3D Brain MRI Synthesis" (med-ddpm),
https://arxiv.org/abs/2305.18453; Nichol & Dhariwal "Improved Denoising Diffusion Probabilistic Models",
https://arxiv.org/abs/2102.09672; the NeuroDiff paper (diffusion data augmentation for neuron segmentation).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import torch
from monai.inferers import Inferer
from monai.networks.schedulers import Scheduler
from monai.utils import optional_import

from .mask_inferer import DiffusionLossOutput
from .tiling import tiled_prediction

tqdm, _has_tqdm = optional_import("tqdm", name="tqdm")

__all__ = ["ConditionalSynthesisInferer"]


class ConditionalSynthesisInferer(Inferer):
    """Synthesis of an EM volume from a condition volume by conditional DDPM / DDIM with noise prediction (NeuroDiff).

    Training (:meth:`training_loss`, eq. of Ho et al. 2020): ``t ~ U{0..T-1}``, ``eps ~ N(0, I)``,
    ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` (MONAI ``scheduler.add_noise``), ``eps_hat = network(x_t, t, c)``,
    ``loss = loss_function(eps_hat, eps)`` (L1 in NeuroDiff). Legend: x_0 the EM image in [-1, 1], c the condition
    (membrane, mitochondria one-hot in [-1, 1]), abar_t the schedule's cumulative alpha.

    Sampling (:meth:`sample`): ``x_T ~ N(0, I)`` is drawn once over the whole volume; at every step the network's
    noise estimate comes from overlapping Gaussian-blended tiles (:func:`tiled_prediction`) and the scheduler's
    ``step`` updates the whole volume, so all tiles share one x_t and advance together (the reference tiles without
    overlap and shows seams). DDPM runs all T steps; DDIM ``num_inference_steps``. x0 is clipped to [-1, 1] inside the
    scheduler (``clip_sample=True``, as the reference's ``clip_denoised``). Caveat of MONAI 1.6's DDIM: it visits
    ``round(linspace(T - 1, 0, n))`` but each step lands on ``t - T // n``, so some steps start one or a few time steps
    away from where the previous one landed (at T = 250: 9 of 10 steps for n = 10, 4 of 50 for n = 50).

    Args:
        scheduler: MONAI ``DDPMScheduler`` / ``DDIMScheduler`` with ``prediction_type="epsilon"`` (see
            :func:`synthesis_scheduler`).
        roi_size: tile size ``(Z, Y, X)`` (the training patch), or ``(Y, X)`` for 2D; an int means the same per axis.
        sw_batch_size: tiles per network call, default 1.
        overlap: tile overlap fraction in [0, 1), default 0.25.
        num_inference_steps: sampling steps; ``None`` (default): all ``num_train_timesteps``.
        eta: DDIM stochasticity (0 = deterministic), default 0; ignored by DDPM.
        progress: show a progress bar over steps (needs tqdm), default False.
        seed: seed of the generator :meth:`__call__` samples with (every call restarts from it), default 0.
        stride: the network's total stride per axis (tiles are rounded up to it); ``None`` (default): the
            network's ``stride`` attribute, or 1 if it has none.
        image_channels: channels of the synthesized image, default 1.

    Example::

        scheduler = synthesis_scheduler("ddim")
        inferer = ConditionalSynthesisInferer(scheduler, roi_size=(8, 128, 128), num_inference_steps=50)
        em = inferer(condition, network)  # condition (1, 2, Z, Y, X) in [-1, 1] -> em (1, 1, Z, Y, X) in [-1, 1]
    """

    def __init__(
        self,
        scheduler: Scheduler,
        roi_size: Sequence[int] | int,
        sw_batch_size: int = 1,
        overlap: float = 0.25,
        num_inference_steps: int | None = None,
        eta: float = 0.0,
        progress: bool = False,
        seed: int = 0,
        stride: Sequence[int] | int | None = None,
        image_channels: int = 1,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if getattr(scheduler, "prediction_type", None) != "epsilon":
            raise ValueError(
                f"{name}: the scheduler must predict the noise: build it with prediction_type='epsilon', got "
                f"{getattr(scheduler, 'prediction_type', None)!r}."
            )
        roi = (int(roi_size),) * 3 if isinstance(roi_size, int) else tuple(int(r) for r in roi_size)
        if len(roi) not in (2, 3) or any(r < 1 for r in roi):
            raise ValueError(f"{name}: roi_size must be 2 or 3 positive ints, got {roi_size!r}.")
        if not 0 <= overlap < 1:
            raise ValueError(f"{name}: overlap must be in [0, 1), got {overlap}.")
        if sw_batch_size < 1:
            raise ValueError(f"{name}: sw_batch_size must be >= 1, got {sw_batch_size}.")
        steps = num_inference_steps or scheduler.num_train_timesteps
        if not 1 <= steps <= scheduler.num_train_timesteps:
            raise ValueError(
                f"{name}: num_inference_steps must be in [1, {scheduler.num_train_timesteps}], "
                f"got {num_inference_steps}."
            )
        if eta < 0:
            raise ValueError(f"{name}: eta must be >= 0, got {eta}.")
        if image_channels < 1:
            raise ValueError(f"{name}: image_channels must be >= 1, got {image_channels}.")
        self.scheduler = scheduler
        self.roi_size = roi
        self.sw_batch_size = sw_batch_size
        self.overlap = overlap
        self.num_inference_steps = steps
        self.eta = eta
        self.progress = progress
        self.seed = seed
        self.stride = stride
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
        """Noise the image at a random ``t``, predict the noise, return ``loss_function(eps_hat, eps)``.

        Args:
            network: the denoiser, ``network(x_t, t, condition)``.
            condition: ``(B, C_cond, [Z,] Y, X)`` in [-1, 1] (the trainer's ``image_key`` batch entry).
            image: the EM image x_0 ``(B, 1, [Z,] Y, X)`` in [-1, 1] (the trainer's ``label_key`` batch entry).
            loss_function: called as ``loss_function(prediction, noise)``.
            generator: draws ``t`` and the noise on the CPU (they are then moved to the image's device).
            timesteps: fixed ``(B,)`` time steps instead of random ones.
            noise: fixed noise, shaped like ``image``.
            kwargs: the trainer step's ``boundary_weight`` / ``epoch_fraction``, accepted and unused.

        Returns:
            ``DiffusionLossOutput`` with the loss, the predicted noise, the target noise and ``t``.
        """
        self._check_pair(condition, image)
        if timesteps is None:
            timesteps = torch.randint(0, self.scheduler.num_train_timesteps, (image.shape[0],), generator=generator)
        if noise is None:
            noise = torch.randn(image.shape, generator=generator, dtype=image.dtype)
        if noise.shape != image.shape:
            raise ValueError(
                f"{type(self).__name__}: noise shape {tuple(noise.shape)} differs from image {tuple(image.shape)}."
            )
        timesteps, noise = timesteps.to(image.device).long(), noise.to(image.device)
        x_t = self.scheduler.add_noise(original_samples=image, noise=noise, timesteps=timesteps)
        prediction = network(x_t, timesteps, condition)
        loss = loss_function(prediction, noise)
        return DiffusionLossOutput(loss=loss, prediction=prediction, target=noise, timesteps=timesteps)

    def _network_stride(self, network: Callable[..., torch.Tensor]) -> Sequence[int] | int:
        if self.stride is not None:
            return self.stride
        # a DistributedDataParallel wrapper keeps the attribute on .module
        stride = getattr(network, "stride", None)
        if stride is None:
            stride = getattr(getattr(network, "module", None), "stride", None)
        return 1 if stride is None else stride

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
        sample = torch.randn(shape, generator=generator, dtype=dtype).to(condition.device)
        condition = condition.to(dtype)
        stride = self._network_stride(network)
        self.scheduler.set_timesteps(self.num_inference_steps, device=condition.device)
        steps = self.scheduler.timesteps.tolist()
        iterator = tqdm(steps, desc="synthesis", leave=False) if (self.progress and _has_tqdm) else steps
        # DDIM's step takes eta, DDPM's does not
        step_kwargs = {"eta": self.eta} if "eta" in inspect.signature(self.scheduler.step).parameters else {}
        # MONAI draws the step noise on the sample's device: a CPU generator cannot serve CUDA, use the global RNG there
        noise_generator = generator if sample.device.type == "cpu" else None
        for t in iterator:
            eps_hat = tiled_prediction(
                network, sample, condition, t, self.roi_size, self.sw_batch_size, self.overlap, stride=stride
            )
            sample, _ = self.scheduler.step(eps_hat, t, sample, generator=noise_generator, **step_kwargs)
        return sample.clamp(-1.0, 1.0)

    @torch.no_grad()
    def __call__(  # type: ignore[override]
        self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """The synthesized image of the condition ``inputs`` ``(B, C_cond, [Z,] Y, X)``, seeded by ``seed``."""
        return self.sample(inputs, network, torch.Generator().manual_seed(self.seed))
