"""Cold diffusion between a segmentation mask and its image: schedule, degradation and samplers.

Legend (ECSD section 2.1, Cold SegDiffusion): ``m`` = x0, the mask mapped to [-1, 1]; ``I`` = the image (the degradation
target, with the same normalisation as the model input); ``abar_t`` = cumulative product of ``1 - beta`` of the cosine
schedule; ``x_t = D(m, t)``; ``x0_hat`` = the network's estimate of ``m``.
"""

from __future__ import annotations

from typing import Callable

import torch
from monai.networks.schedulers import NoiseSchedules
from torch import nn

__all__ = ["ColdDiffusionScheduler", "COLD_SAMPLERS"]


def _bansal_update(scheduler: ColdDiffusionScheduler, x0_hat, sample, image, t: int, t_prev: int) -> torch.Tensor:
    """Cold Diffusion Algorithm 2 (Bansal et al. 2022): ``x_{t-1} = x_t - D(x0_hat, t) + D(x0_hat, t-1)``."""
    return sample - scheduler.degrade(x0_hat, image, t) + scheduler.degrade(x0_hat, image, t_prev)


def _reference_update(scheduler: ColdDiffusionScheduler, x0_hat, sample, image, t: int, t_prev: int) -> torch.Tensor:
    """The released Cold SegDiffusion code: ``a = D(x0_hat, t)``, ``b = D(a, t-1)`` (``b = a`` at the end),
    ``x_{t-1} = x0_hat - a + b``."""
    a = scheduler.degrade(x0_hat, image, t)
    b = scheduler.degrade(a, image, t_prev)
    return x0_hat - a + b


def _one_step_update(scheduler: ColdDiffusionScheduler, x0_hat, sample, image, t: int, t_prev: int) -> torch.Tensor:
    """One-step mode: the first estimate ``x0_hat`` (at ``t = T-1``) is the answer."""
    return x0_hat


COLD_SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "bansal": _bansal_update,
    "reference": _reference_update,
    "one_step": _one_step_update,
}


class ColdDiffusionScheduler(nn.Module):
    """Image-blending cold diffusion schedule and its samplers (maths only, no network).

    Yan et al. "Cold SegDiffusion: A novel diffusion model for medical image segmentation", KBS 301 (2024);
    Qi et al. "A Boundary-aware Cold-Diffusion Model for Electron Microscopy Segmentation" (ECSD), section 2.1;
    Bansal et al. "Cold Diffusion", arXiv:2208.09392, Algorithm 2.

    The degradation is ``D(m, t) = sqrt(abar_t) * m + sqrt(1 - abar_t) * I`` (no Gaussian noise): at ``t = T-1`` abar is
    close to 0, so sampling starts from the image itself. ``abar`` comes from MONAI's registered noise schedules
    (``"cosine"``: s = 0.008, beta clipped to 0.999, the schedule of the reference code) and is kept as a buffer.

    Args:
        num_train_timesteps: T, number of degradation levels (ECSD: 50).
        schedule: name of a MONAI ``NoiseSchedules`` entry (default ``"cosine"``).
        sampler: ``"reference"`` (default: what the released Cold SegDiffusion code does, and ahead of ``"bansal"`` in
            the ECSD learning curves), ``"bansal"`` (Cold Diffusion Algorithm 2) or ``"one_step"`` (x0_hat at
            ``t = T-1``).
        clip_sample: clamp x0_hat to [-1, 1] at every step (reference behaviour).
        schedule_args: passed on to the schedule function.

    Example::

        scheduler = ColdDiffusionScheduler(num_train_timesteps=50)
        x_t = scheduler.degrade(mask, image, torch.tensor([10, 40]))
        scheduler.set_timesteps()  # all 50 steps, T-1 ... 0
        scheduler.set_image(image)  # the target of the reverse steps
        x_prev, x0_hat = scheduler.step(network(x_t, 49, image), 49, x_t)
    """

    alphas_cumprod: torch.Tensor

    def __init__(
        self,
        num_train_timesteps: int = 50,
        schedule: str = "cosine",
        sampler: str = "reference",
        clip_sample: bool = True,
        **schedule_args,
    ) -> None:
        super().__init__()
        if num_train_timesteps < 1:
            raise ValueError(f"ColdDiffusionScheduler: num_train_timesteps must be >= 1, got {num_train_timesteps}.")
        if sampler not in COLD_SAMPLERS:
            raise ValueError(f"ColdDiffusionScheduler: sampler must be one of {sorted(COLD_SAMPLERS)}, got {sampler!r}.")
        if schedule not in NoiseSchedules.names:
            raise ValueError(f"ColdDiffusionScheduler: schedule must be one of {NoiseSchedules.names}, got {schedule!r}.")
        betas = NoiseSchedules[schedule](num_train_timesteps=num_train_timesteps, **schedule_args)
        if isinstance(betas, tuple):
            alphas_cumprod = betas[2]
        else:
            alphas_cumprod = torch.cumprod(1.0 - betas.double(), dim=0)
        self.register_buffer("alphas_cumprod", alphas_cumprod.float(), persistent=False)
        self.num_train_timesteps = num_train_timesteps
        self.sampler = sampler
        self.clip_sample = clip_sample
        self.num_inference_steps: int | None = None
        self.timesteps: torch.Tensor | None = None
        self.image: torch.Tensor | None = None

    def _abar(self, timesteps: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """abar_t broadcast to ``like``; ``t = -1`` means the clean mask (abar = 1)."""
        t = torch.as_tensor(timesteps, device=self.alphas_cumprod.device).long().reshape(-1)
        abar = torch.where(t >= 0, self.alphas_cumprod[t.clamp(min=0)], torch.ones_like(self.alphas_cumprod[:1]))
        return abar.to(like).reshape(-1, *([1] * (like.ndim - 1)))

    def degrade(self, mask: torch.Tensor, image: torch.Tensor, timesteps: torch.Tensor | int) -> torch.Tensor:
        """``D(m, t) = sqrt(abar_t) m + sqrt(1 - abar_t) I``, per sample; ``t = -1`` returns ``m``.

        Args:
            mask: ``(B, C, H, W)`` mask in [-1, 1].
            image: ``(B, 1 or C, H, W)`` image, broadcast over the mask channels.
            timesteps: an int or a ``(B,)`` tensor in ``{-1, ..., T-1}``.
        """
        abar = self._abar(timesteps, mask)
        return abar.sqrt() * mask + (1.0 - abar).sqrt() * image

    def set_image(self, image: torch.Tensor | None) -> None:
        """Set the degradation target ``I`` of the image being segmented; :meth:`step` blends towards it.

        Args:
            image: ``(B, 1 or C, H, W)``, with the normalisation of the network input; ``None`` releases it.
        """
        self.image = image

    def set_timesteps(self, num_inference_steps: int | None = None, device: str | torch.device | None = None) -> None:
        """Choose the sampling steps: ``T-1, ..., 0`` evenly thinned to ``num_inference_steps`` (``None``: all T).

        The one-step sampler always uses the single step ``T-1``. ``device`` is accepted for the scheduler protocol
        (the time steps are plain ints to the sampler).
        """
        steps = self.num_train_timesteps if num_inference_steps is None else num_inference_steps
        if self.sampler == "one_step":
            steps = 1
        if not 1 <= steps <= self.num_train_timesteps:
            raise ValueError(
                f"ColdDiffusionScheduler: num_inference_steps must be in [1, {self.num_train_timesteps}], got {steps}."
            )
        grid = torch.linspace(self.num_train_timesteps - 1, 0, steps).round().long()
        self.num_inference_steps = steps
        self.timesteps = torch.unique_consecutive(grid)

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One reverse step from ``x_t`` to the next (smaller) step of ``self.timesteps``, towards the image of
        :meth:`set_image`.

        Args:
            model_output: x0_hat predicted at ``timestep``, ``(B, C, H, W)``.
            timestep: current t (an element of ``self.timesteps``).
            sample: x_t, ``(B, C, H, W)``.
            generator: unused (the degradation is deterministic); part of the scheduler protocol.

        Returns:
            ``(x_prev, x0_hat)``: the next sample and the (clamped) clean-mask estimate.
        """
        if self.timesteps is None:
            raise RuntimeError("ColdDiffusionScheduler.step: call set_timesteps() before sampling.")
        if self.image is None:
            raise RuntimeError("ColdDiffusionScheduler.step: call set_image() with the image being segmented first.")
        x0_hat = model_output.clamp(-1.0, 1.0) if self.clip_sample else model_output
        later = self.timesteps[self.timesteps < timestep]
        t_prev = int(later[0]) if len(later) else -1
        update = COLD_SAMPLERS[self.sampler]
        return update(self, x0_hat, sample, self.image, int(timestep), t_prev), x0_hat
