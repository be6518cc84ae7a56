"""Stage 1 of the cascaded cell synthesis: single-cell masks from an unconditional 2D DDPM, sampled by DDIM.

Yilmaz et al. "Cascaded Diffusion Models for 2D and 3D Microscopy Image Synthesis to Enhance Cell Segmentation",
https://arxiv.org/abs/2411.11515. The public code (``inference/generate_masks.py``) samples a diffusers
``DDIMPipeline`` (a DDPM U-Net trained by diffusers' unconditional example: T = 1000, linear betas 1e-4 .. 0.02,
noise prediction) with 50 steps and eta = 1, then keeps every pixel whose 8-bit value is not 0
(:class:`~emdiff_components.transforms.BinarizeMask`). Its training masks (``utils/CTC_masks.py``) are the
grey-level single-cell masks scaled as ``2 * (m - 0) / (0.5 - 0) - 1``: background -1, a cell above it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..transforms.cells import BinarizeMask
from ..transforms.cells.array import REFERENCE_MASK_THRESHOLD
from .sampling import DiffusionScheduler, reverse_diffusion
from .schedulers import gaussian_scheduler

__all__ = ["mask_scheduler", "sample_masks"]


def mask_scheduler(num_train_timesteps: int = 1000, eta: float = 1.0) -> DiffusionScheduler:
    """DDIM for the mask model as the public pipeline: linear betas, noise prediction, x0 clipped to [-1, 1], eta 1.

    diffusers' ``DDIMPipeline`` builds its DDIM from the DDPM's config (``clip_sample=True``, final alpha-bar 1). The
    visited steps are MONAI's (999, 979, ..., 0 for N = 50) where diffusers' "leading" spacing takes 980, 960, ..., 0.

    Args:
        num_train_timesteps: T, default 1000.
        eta: DDIM stochasticity, default 1 (``generate_masks.py``).

    Returns:
        An :class:`~emdiff_components.diffusion.AlignedDDIMScheduler`.
    """
    return gaussian_scheduler(
        "ddim", num_train_timesteps, "linear_beta", prediction_type="epsilon", eta=eta, clip_sample=True
    )


@torch.no_grad()
def sample_masks(
    network: Callable[..., torch.Tensor],
    scheduler: DiffusionScheduler,
    num_masks: int,
    shape: Sequence[int],
    generator: torch.Generator | None = None,
    num_inference_steps: int = 50,
    batch_size: int | None = None,
    threshold: float | None = REFERENCE_MASK_THRESHOLD,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """``num_masks`` masks from an unconditional diffusion model ``network(x_t, t)`` (MONAI ``DiffusionModelUNet``).

    Yilmaz et al. "Cascaded Diffusion Models for 2D and 3D Microscopy Image Synthesis to Enhance Cell Segmentation",
    https://arxiv.org/abs/2411.11515.

    Args:
        network: the unconditional denoiser, called as ``network(x_t, timesteps)`` with ``(n,)`` long time steps.
        scheduler: e.g. :func:`mask_scheduler` (DDIM, eta 1).
        num_masks: how many masks (>= 1).
        shape: one mask's shape ``(C, Y, X)`` (the public model: ``(1, 128, 128)``).
        generator: draws x_T (on the CPU, batch after batch) and the step noise; the same seed gives the same masks.
        num_inference_steps: sampling steps, default 50.
        batch_size: masks per reverse chain; ``None`` (default): all at once.
        threshold: binarise with :class:`~emdiff_components.transforms.BinarizeMask` at this value (default the
            public code's ``-1 + 1/255``); ``None`` returns the raw samples in [-1, 1].
        device: where the network runs; default: the network's parameters' device (CPU for a function).
        progress: show a progress bar over the steps.

    Returns:
        ``(num_masks, C, Y, X)``: masks in {0, 1}, or samples in [-1, 1] with ``threshold=None``.
    """
    shape = tuple(int(s) for s in shape)
    if num_masks < 1:
        raise ValueError(f"sample_masks: num_masks must be >= 1, got {num_masks}.")
    if len(shape) not in (3, 4) or any(s < 1 for s in shape):
        raise ValueError(f"sample_masks: shape must be (C, Y, X) or (C, Z, Y, X) positive ints, got {shape!r}.")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"sample_masks: batch_size must be >= 1 or None, got {batch_size}.")
    binarize = BinarizeMask(threshold) if threshold is not None else None
    if device is None:
        parameter = next(iter(getattr(network, "parameters", lambda: iter(()))()), None)
        device = parameter.device if parameter is not None else torch.device("cpu")

    def predict(sample: torch.Tensor, t: int) -> torch.Tensor:
        return network(sample, torch.full((sample.shape[0],), int(t), dtype=torch.long, device=sample.device))

    masks = []
    step = batch_size or num_masks
    for first in range(0, num_masks, step):
        n = min(step, num_masks - first)
        start = torch.randn((n, *shape), generator=generator).to(device)
        out = reverse_diffusion(scheduler, predict, start, num_inference_steps, generator, progress, "masks")
        masks.append(out.clamp(-1.0, 1.0))
    samples = torch.cat(masks)
    return binarize(samples) if binarize is not None else samples
