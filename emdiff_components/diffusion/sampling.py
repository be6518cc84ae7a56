"""The one reverse-diffusion loop every inferer runs, and the scheduler protocol it relies on.

A scheduler of this package (cold degradation, MONAI's DDPM / DDIM, the aligned DDIM, any MONAI noise schedule such
as the med-ddpm cosine) offers

- ``set_timesteps(num_inference_steps, device=None)``, after which ``scheduler.timesteps`` lists the visited steps;
- ``step(model_output, timestep, sample, generator=None) -> (previous_sample, x0_estimate)``.

Whatever else a method needs is set on the scheduler before the loop (the cold degradation's image with
``ColdDiffusionScheduler.set_image``, DDIM's ``eta`` in its constructor), so the loop never asks which scheduler it has.
"""

from __future__ import annotations

import logging
from typing import Callable, Protocol

import torch
from monai.utils import optional_import

tqdm, _has_tqdm = optional_import("tqdm", name="tqdm")

__all__ = ["DiffusionScheduler", "reverse_diffusion"]

logger = logging.getLogger(__name__)


class DiffusionScheduler(Protocol):
    """What :func:`reverse_diffusion` needs of a scheduler (MONAI's ``DDPMScheduler`` / ``DDIMScheduler`` conform)."""

    timesteps: torch.Tensor

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None: ...

    def step(
        self, model_output: torch.Tensor, timestep: int, sample: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


def reverse_diffusion(
    scheduler: DiffusionScheduler,
    predict: Callable[[torch.Tensor, int], torch.Tensor],
    sample: torch.Tensor,
    num_inference_steps: int | None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    desc: str = "sampling",
) -> torch.Tensor:
    """Run ``sample`` from ``x_T`` down to ``x_0``: at each visited step, ``predict`` then ``scheduler.step``.

    Args:
        scheduler: follows :class:`DiffusionScheduler`.
        predict: ``predict(x_t, t)`` returns the network's output for the whole sample (e.g. from tiles).
        sample: ``x_T``, the start of the chain.
        num_inference_steps: passed to ``scheduler.set_timesteps``.
        generator: draws the per-step noise of stochastic samplers. A CPU generator cannot draw CUDA tensors: for a
            sample on another device the step noise comes from that device's global generator (seed it there).
        progress: show a tqdm bar over the steps.
        desc: the bar's label.

    Returns:
        The last sample, ``x_0``.
    """
    scheduler.set_timesteps(num_inference_steps, device=sample.device)
    step_generator = generator if generator is None or generator.device == sample.device else None
    steps = scheduler.timesteps.tolist()
    if progress and _has_tqdm:
        steps = tqdm(steps, desc=desc, leave=False)
    for t in steps:
        sample, _ = scheduler.step(predict(sample, t), t, sample, generator=step_generator)
    return sample
