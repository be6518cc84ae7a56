"""Noise schedulers of the bundles: MONAI's DDPM / DDIM, with DDIM's step alignment fixed, and the med-ddpm cosine.

DDIM step alignment. MONAI 1.6's ``DDIMScheduler`` visits ``round(linspace(T - 1, 0, N))`` but every ``step`` moves
to ``t - T // N``: at T = 1000, N = 10 it visits 999, 888, 777, ... while each step lands on 899, 788, ... (and
T = 250, N = 100 misaligns 51 of 100 steps). The sample handed to the network at the next step is then at another
noise level than the time step it is told. :class:`AlignedDDIMScheduler` steps to the next visited time step (the last
to ``alphas_cumprod = 1``), which is DDIM as published (Song et al., eq. 12 and 16), whatever N.

Schedule finding. NeuroDiff (``diffusion_model/trainer.py``, taken from med-ddpm) builds its cosine schedule in float64
numpy, ``x = linspace(0, T + 1, T + 1)``, ``abar(x) = cos((x / (T + 1) + s) / (1 + s) * pi / 2) ** 2`` normalised by
``abar(0)``, ``beta = clip(1 - abar[1:] / abar[:-1], 0, 0.999)``, s = 0.008, and stores float32 buffers. Its grid
``x / (T + 1) = i / T`` is the same as Nichol & Dhariwal's, so the formula equals MONAI's ``"cosine"`` schedule. MONAI,
however, evaluates it in float32: at T = 250 its betas differ from the reference's by up to 4.6e-6 (4.0e-4 relative,
at beta_0 = 1.94e-4, where ``1 - abar_1 / abar_0`` cancels), and its alpha-bar by up to 2.4e-7 absolute (2.2e-5
relative; 238 float32 ULPs). That is far above float precision, so we register ``"cosine_med_ddpm"``
(:func:`med_ddpm_cosine_schedule`): the same formula in float64, returned as float32, equal to the reference's buffers.

Dorjsembe et al. "Conditional Diffusion Models for Semantic 3D Brain MRI Synthesis" (med-ddpm),
https://arxiv.org/abs/2305.18453; Nichol & Dhariwal "Improved Denoising Diffusion Probabilistic Models",
https://arxiv.org/abs/2102.09672; the NeuroDiff paper (diffusion data augmentation for neuron segmentation).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler, NoiseSchedules, Scheduler

from .parameterization import split_prediction

__all__ = [
    "AlignedDDIMScheduler",
    "gaussian_scheduler",
    "med_ddpm_cosine_schedule",
    "synthesis_scheduler",
]


class AlignedDDIMScheduler(DDIMScheduler):
    """MONAI's ``DDIMScheduler`` whose ``step`` goes to the next time step it visits (see the module docstring).

    Same arguments and time steps as ``DDIMScheduler``, plus ``eta``; only the previous time step of ``step`` differs:
    the entry after ``timestep`` in ``self.timesteps`` (``alphas_cumprod = final_alpha_cumprod`` after the last one)
    instead of ``timestep - T // N``. Where N divides T and the visited steps are multiples of ``T // N`` both agree.

    Args:
        eta: DDIM's stochasticity (Song et al. eq. 16): 0 (default) is deterministic DDIM, 1 the DDPM-like posterior
            noise. Set here, not per step, so that every scheduler steps through the same call
            (:mod:`emdiff_components.diffusion.sampling`).
        kwargs: ``DDIMScheduler``'s arguments (``num_train_timesteps``, ``schedule``, ``clip_sample``,
            ``prediction_type``, ...).
    """

    def __init__(self, *args: Any, eta: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not eta >= 0:
            raise ValueError(f"AlignedDDIMScheduler: eta must be >= 0, got {eta!r}.")
        self.eta = float(eta)

    def previous_timestep(self, timestep: int) -> int:
        """The time step visited after ``timestep`` (-1 after the last)."""
        steps = self.timesteps.tolist()
        if int(timestep) not in steps:
            raise ValueError(f"AlignedDDIMScheduler: time step {int(timestep)} is not one of the set time steps.")
        index = steps.index(int(timestep))
        return steps[index + 1] if index + 1 < len(steps) else -1

    def step(  # type: ignore[override]
        self,
        model_output: torch.Tensor,
        timestep: int,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One DDIM update (Song et al. eq. 12, sigma of eq. 16) to the next visited step; ``(x_prev, x0_hat)``.

        Legend: ``abar_t`` = ``alphas_cumprod[t]``, ``abar_prev`` that of the next visited step; x0 and eps from the
        network output by :func:`~emdiff_components.diffusion.parameterization.split_prediction`.
        """
        prev = self.previous_timestep(timestep)
        abar_t = self.alphas_cumprod[timestep]
        abar_prev = self.alphas_cumprod[prev] if prev >= 0 else self.final_alpha_cumprod
        x0, eps = split_prediction(model_output, sample, abar_t, self.prediction_type)
        if self.clip_sample:
            x0 = torch.clamp(x0, self.clip_sample_values[0], self.clip_sample_values[1])
        sigma = self.eta * ((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)) ** 0.5
        x_prev = abar_prev**0.5 * x0 + (1 - abar_prev - sigma**2) ** 0.5 * eps
        if self.eta > 0:
            shape, dtype, device = model_output.shape, model_output.dtype, model_output.device
            noise = torch.randn(shape, dtype=dtype, generator=generator, device=device)
            x_prev = x_prev + sigma * noise
        return x_prev, x0


SAMPLERS = {"ddpm": DDPMScheduler, "ddim": AlignedDDIMScheduler}


def gaussian_scheduler(
    sampler: str = "ddim",
    num_train_timesteps: int = 1000,
    schedule: str = "linear_beta",
    prediction_type: str = "sample",
    eta: float = 0.0,
    **scheduler_args: Any,
) -> Scheduler:
    """MONAI's ``DDPMScheduler`` (``"ddpm"``, ancestral) or :class:`AlignedDDIMScheduler` (``"ddim"``), x0 prediction
    by default.

    BIEDSNet and MedSegDiff train with T = 1000 linear betas (MONAI's ``linear_beta``: 1e-4 .. 0.02, Ho et al. 2020);
    the network predicts x0, hence ``prediction_type="sample"``. A model trained with either samples with either.

    Args:
        sampler: ``"ddpm"`` or ``"ddim"`` (default).
        num_train_timesteps: T, default 1000.
        schedule: MONAI noise schedule name (a ``NoiseSchedules`` entry), default ``"linear_beta"``.
        prediction_type: what the network predicts: ``"sample"`` (x0, default), ``"epsilon"`` or ``"v_prediction"``.
        eta: DDIM's stochasticity (0 = deterministic, default); DDPM is ancestral and takes none (must be 0).
        scheduler_args: passed on to the scheduler (e.g. ``clip_sample``).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"gaussian_scheduler: sampler must be one of {sorted(SAMPLERS)}, got {sampler!r}.")
    if sampler == "ddim":
        scheduler_args["eta"] = eta
    elif eta:
        raise ValueError(f"gaussian_scheduler: eta applies to the 'ddim' sampler only, got eta={eta!r} with 'ddpm'.")
    return SAMPLERS[sampler](
        num_train_timesteps=num_train_timesteps, schedule=schedule, prediction_type=prediction_type, **scheduler_args
    )


@NoiseSchedules.add_def("cosine_med_ddpm", "Cosine schedule computed in float64 as med-ddpm / NeuroDiff")
def med_ddpm_cosine_schedule(
    num_train_timesteps: int, s: float = 8e-3, max_beta: float = 0.999
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cosine noise schedule evaluated in float64 (as med-ddpm and NeuroDiff), returned in float32.

    Nichol & Dhariwal "Improved Denoising Diffusion Probabilistic Models", eq. 17: ``abar(t) = f(t) / f(0)``,
    ``f(t) = cos((t / T + s) / (1 + s) * pi / 2) ** 2``, ``beta_t = clip(1 - abar(t) / abar(t - 1), 0, max_beta)``; the
    alpha-bars returned are the cumulative products of the clipped ``1 - beta`` (as the reference's buffers).

    Args:
        num_train_timesteps: T (NeuroDiff: 250).
        s: offset keeping beta_0 away from 0, default 0.008.
        max_beta: upper clip of beta, default 0.999.

    Returns:
        ``(betas, alphas, alphas_cumprod)``, float32 tensors of shape ``(T,)``.
    """
    if num_train_timesteps < 1:
        raise ValueError(f"med_ddpm_cosine_schedule: num_train_timesteps must be >= 1, got {num_train_timesteps}.")
    grid = torch.arange(num_train_timesteps + 1, dtype=torch.float64) / num_train_timesteps
    f = torch.cos((grid + s) / (1 + s) * math.pi * 0.5) ** 2
    abar = f / f[0]
    betas = torch.clip(1.0 - abar[1:] / abar[:-1], 0.0, max_beta)
    alphas = 1.0 - betas
    return betas.float(), alphas.float(), torch.cumprod(alphas, dim=0).float()


def synthesis_scheduler(
    sampler: str = "ddpm", num_train_timesteps: int = 250, schedule: str = "cosine_med_ddpm", eta: float = 0.0
) -> Scheduler:
    """NeuroDiff's scheduler: noise prediction, T = 250, ``"cosine_med_ddpm"``, x0 clipped to [-1, 1] each step.

    Args:
        sampler: ``"ddpm"`` (default: ancestral, all T steps, posterior variance ``beta_tilde``, as the reference) or
            ``"ddim"`` (fewer steps, set by the inferer's ``num_inference_steps``).
        num_train_timesteps: T, default 250.
        schedule: a MONAI ``NoiseSchedules`` name, default ``"cosine_med_ddpm"``.
        eta: DDIM's stochasticity, default 0 (``"ddim"`` only).

    Returns:
        A MONAI ``DDPMScheduler`` or :class:`AlignedDDIMScheduler` with ``prediction_type="epsilon"`` and
        ``clip_sample=True``.
    """
    return gaussian_scheduler(
        sampler, num_train_timesteps, schedule, prediction_type="epsilon", eta=eta, clip_sample=True
    )


