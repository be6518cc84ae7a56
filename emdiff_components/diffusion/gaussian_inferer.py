"""Gaussian (DDPM / DDIM) mask diffusion with x0 prediction: training loss and tiled, ensembled sampling."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from monai.networks.schedulers import Scheduler
from monai.utils import optional_import

from .mask_inferer import DiffusionLossOutput, MaskDiffusionInferer

tqdm, _has_tqdm = optional_import("tqdm", name="tqdm")

__all__ = ["GaussianMaskInferer"]

class GaussianMaskInferer(MaskDiffusionInferer):
    """Segmentation by Gaussian diffusion of the mask, the network predicting the clean mask x0 (MedSegDiff, BIEDSNet).

    Wu et al. "MedSegDiff: Medical Image Segmentation with Diffusion Probabilistic Model", MIDL 2024; the BIEDSNet
    paper (boundary-information-enhanced diffusion segmentation) predicts x0 rather than the noise.

    Training (:meth:`training_loss`): ``m`` = the label in [-1, 1]; ``t`` uniform over ``{0..T-1}``; ``x_t =
    sqrt(abar_t) m + sqrt(1 - abar_t) eps`` (MONAI ``scheduler.add_noise``); ``x0_hat = network(x_t, t, image)``; the loss
    function gets ``(x0_hat, m, timesteps=t)``.

    Sampling (:meth:`sample`): ``x_T ~ N(0, I)`` drawn from ``generator``, then the MONAI scheduler's ``step`` over its
    time steps: a ``DDPMScheduler`` (all T steps, ancestral) or a ``DDIMScheduler`` with ``num_inference_steps``; both
    must be built with ``prediction_type="sample"``. :meth:`sample_ensemble` draws ``num_samples`` masks one after the
    other from the same generator (MedSegDiff's ensemble); fusing them is post-processing's job
    (:class:`emdiff_components.transforms.FuseEnsembled`).

    :meth:`__call__` (what MONAI's evaluators call) optionally resizes the image to ``image_size`` first (BIEDSNet
    trains and samples at 256 x 256) and resizes the sampled masks back to the input's size (bilinear), then returns
    the ensemble mean, or every member (``output="members"``) for fusion with an uncertainty map.

    Args:
        scheduler: a MONAI ``DDPMScheduler`` or ``DDIMScheduler`` with ``prediction_type="sample"``.
        num_classes, roi_size, sw_batch_size, overlap, size_divisor, progress: see :class:`MaskDiffusionInferer`.
        num_inference_steps: sampling steps (``None``: all ``num_train_timesteps``).
        num_samples: ensemble size K used by :meth:`__call__` (the mean of the K samples is returned).
        eta: DDIM's stochasticity (0 = deterministic DDIM); ignored by DDPM.
        seed: seed of the generator :meth:`__call__` samples with (every call starts from it).
        image_size: ``(H, W)`` the network works at (the image is resized with area averaging, as MONAI's
            ``Resized`` default, the masks back with bilinear interpolation); ``None`` (default): native size, tiled.
        output: what :meth:`__call__` returns: ``"mean"`` (default), the mean of the K masks ``(B, C, H, W)``, or
            ``"members"``, all of them ``(B, K * C, H, W)`` (member k in channels ``k*C .. k*C + C - 1``).

    Example::

        scheduler = DDIMScheduler(num_train_timesteps=1000, schedule="linear_beta", prediction_type="sample")
        inferer = GaussianMaskInferer(scheduler, num_inference_steps=50, num_samples=5)
        samples = inferer.sample_ensemble(image, network, generator=torch.Generator().manual_seed(0))  # (K, B, C, H, W)
    """

    def __init__(
        self,
        scheduler: Scheduler,
        num_classes: int = 2,
        roi_size: Sequence[int] | int = 256,
        sw_batch_size: int = 2,
        overlap: float = 0.25,
        num_inference_steps: int | None = None,
        num_samples: int = 1,
        eta: float = 0.0,
        size_divisor: int = 8,
        progress: bool = False,
        seed: int = 0,
        image_size: Sequence[int] | int | None = None,
        output: str = "mean",
    ) -> None:
        super().__init__(num_classes, roi_size, sw_batch_size, overlap, size_divisor, progress)
        if getattr(scheduler, "prediction_type", None) != "sample":
            raise ValueError(
                "GaussianMaskInferer: the scheduler must predict x0: build it with prediction_type='sample', got "
                f"{getattr(scheduler, 'prediction_type', None)!r}."
            )
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
        self.scheduler = scheduler
        self.num_inference_steps = num_inference_steps or scheduler.num_train_timesteps
        self.num_samples = num_samples
        self.eta = eta
        self.seed = seed

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
            timesteps = torch.randint(0, self.scheduler.num_train_timesteps, (image.shape[0],), generator=generator)
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
        sample = torch.randn(shape, generator=generator, dtype=image.dtype).to(image.device)
        self.scheduler.set_timesteps(self.num_inference_steps, device=image.device)
        steps = self.scheduler.timesteps.tolist()
        iterator = tqdm(steps, desc="sampling", leave=False) if (self.progress and _has_tqdm) else steps
        # DDIM's step takes eta, DDPM's does not
        step_kwargs = {"eta": self.eta} if "eta" in inspect.signature(self.scheduler.step).parameters else {}
        for t in iterator:
            x0_hat = self.predict_x0(network, sample, image, t)
            # a CPU generator cannot draw CUDA noise: on a GPU the per-step noise comes from the global CUDA RNG
            noise_generator = generator if sample.device.type == "cpu" else None
            sample, _ = self.scheduler.step(x0_hat, t, sample, generator=noise_generator, **step_kwargs)
        return sample.clamp(-1.0, 1.0)
