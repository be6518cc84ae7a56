"""Stage 3 of the cascaded cell synthesis: mask-conditioned cell texture by a ControlNet-guided diffusion model with
classifier-free guidance, 2D images and 3D stacks sampled slice by slice.

Yilmaz et al. "Cascaded Diffusion Models for 2D and 3D Microscopy Image Synthesis to Enhance Cell Segmentation",
https://arxiv.org/abs/2411.11515; Zhang et al. "Adding Conditional Control to Text-to-Image Diffusion Models"
(ControlNet), https://arxiv.org/abs/2302.05543; Ho & Salimans "Classifier-Free Diffusion Guidance",
https://arxiv.org/abs/2207.12598.

What carries over from the public code (``cldm/``, ``models/cldm_v15.yaml``, ``inference/generate_cells.py``):
noise prediction with the MSE loss; T = 1000 with Stable Diffusion's betas (``linear_start = 0.00085``,
``linear_end = 0.012`` on the square-root scale: MONAI's ``"scaled_linear_beta"``); DDIM with 50 steps, eta = 0,
no x0 clipping, the last step to ``alphas_cumprod[0]`` (``make_ddim_sampling_parameters``); guidance scale 5; the
64 x 64 images used directly as the "latent" (no autoencoder). The paper fine-tunes SD 1.5 with an empty prompt, so
its guidance is between the U-Net with the ControlNet and without it (guess mode: ``c_concat=None``). Trained from
scratch here, the model learns both branches through condition dropout (see :class:`MaskConditionedTextureInferer`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from monai.inferers import Inferer
from torch import nn

from .parameterization import training_target
from .sampling import DiffusionScheduler, reverse_diffusion
from .schedulers import AlignedDDIMScheduler
from .tiled_inferer import DiffusionLossOutput

__all__ = ["ControlNetDenoiser", "MaskConditionedTextureInferer", "texture_scheduler"]

UNCONDITIONAL = ("zeros", "none")


def texture_scheduler(num_train_timesteps: int = 1000, eta: float = 0.0) -> AlignedDDIMScheduler:
    """The texture model's DDIM scheduler, with the public code's (Stable Diffusion 1.5) schedule.

    ``betas = linspace(sqrt(0.00085), sqrt(0.012), T) ** 2`` (``models/cldm_v15.yaml``), noise prediction, no x0
    clipping (latent diffusion never clips), the last step to ``alphas_cumprod[0]`` (``set_alpha_to_one=False``, as
    ``make_ddim_sampling_parameters``) and time steps offset by one (``steps_offset=1``, as ``make_ddim_timesteps``).
    The visited steps follow MONAI (``round(linspace(T - 2, 0, N)) + 1``: 999, 979, ..., 1 for N = 50) where the
    public code takes ``range(0, T, T // N) + 1`` (981, 961, ..., 1); the schedule and the update are the same.

    Args:
        num_train_timesteps: T, default 1000.
        eta: DDIM stochasticity, default 0 (``generate_cells.py``).
    """
    return AlignedDDIMScheduler(
        num_train_timesteps=num_train_timesteps,
        schedule="scaled_linear_beta",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
        eta=eta,
    )


class ControlNetDenoiser(nn.Module):
    """MONAI's ``DiffusionModelUNet`` driven by a ``ControlNet`` as one network ``(x_t, t, condition) -> output``.

    Zhang et al. "Adding Conditional Control to Text-to-Image Diffusion Models", https://arxiv.org/abs/2302.05543.
    One module so that one optimizer, one checkpoint and the trainer's ``engine.network`` hold both parts; the
    call is MONAI's ``ControlNetDiffusionInferer``'s (ControlNet residuals into the U-Net's skip connections and
    middle block). ``condition=None`` runs the U-Net alone (the public code's unconditional branch in guess mode).

    Args:
        diffusion_model: a MONAI ``DiffusionModelUNet``.
        controlnet: a MONAI ``ControlNet`` of the same ``channels`` / ``num_res_blocks``; for a condition at the
            image's resolution use ``conditioning_embedding_num_channels`` of length 1 (no down-sampling).
        conditioning_scale: factor on the ControlNet's residuals, default 1 (training and the public code's
            non-guess mode).

    Example::

        kw = dict(spatial_dims=2, in_channels=1, channels=(32, 64), attention_levels=(False, True), num_res_blocks=1)
        net = ControlNetDenoiser(DiffusionModelUNet(out_channels=1, **kw),
                                 ControlNet(conditioning_embedding_num_channels=(16,), **kw))
        eps = net(x_t, timesteps, grey_mask)  # (B, 1, 64, 64)
    """

    def __init__(self, diffusion_model: nn.Module, controlnet: nn.Module, conditioning_scale: float = 1.0) -> None:
        super().__init__()
        if not math.isfinite(conditioning_scale):
            raise ValueError(f"ControlNetDenoiser: conditioning_scale must be finite, got {conditioning_scale!r}.")
        self.diffusion_model = diffusion_model
        self.controlnet = controlnet
        self.conditioning_scale = float(conditioning_scale)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        if condition is None:
            return self.diffusion_model(x, timesteps)
        down, mid = self.controlnet(x, timesteps, condition, conditioning_scale=self.conditioning_scale)
        return self.diffusion_model(x, timesteps, down_block_additional_residuals=down, mid_block_additional_residual=mid)


def _as_slices(tensor: torch.Tensor) -> torch.Tensor:
    """``(B, C, Z, Y, X)`` -> ``(B * Z, C, Y, X)`` (slice z of sample b at row ``b * Z + z``); 4D unchanged."""
    return tensor.movedim(2, 1).flatten(0, 1) if tensor.ndim == 5 else tensor


def _as_stack(tensor: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_as_slices` for the batch and depth of ``like``."""
    if like.ndim != 5:
        return tensor
    return tensor.unflatten(0, (like.shape[0], like.shape[2])).movedim(1, 2)


class MaskConditionedTextureInferer(Inferer):
    """Cell texture from a (grey-level) cell mask: training loss with condition dropout, guided DDIM sampling.

    Yilmaz et al. "Cascaded Diffusion Models for 2D and 3D Microscopy Image Synthesis to Enhance Cell Segmentation",
    https://arxiv.org/abs/2411.11515; Ho & Salimans "Classifier-Free Diffusion Guidance", eq. 6.

    Legend: x_0 the cell image in [-1, 1]; c the mask condition; abar_t the scheduler's ``alphas_cumprod``; w the
    guidance scale; the null condition 0 is an all-zero mask (``unconditional="zeros"``) or no ControlNet at all
    (``"none"``, the public code's guess mode, for a network that accepts ``condition=None`` such as
    :class:`ControlNetDenoiser`).

    Training (:meth:`training_loss`): ``t ~ U{0..T-1}``, ``eps ~ N(0, I)``, ``x_t = sqrt(abar_t) x_0 +
    sqrt(1 - abar_t) eps``; with probability ``p_uncond`` per sample the condition is replaced by the null condition;
    the loss is ``loss_function(network(x_t, t, c), eps)`` (MSE by default, Ho et al. 2020's simple loss as the
    public ``LatentDiffusion``). The public code drops no condition (its unconditional branch is the pretrained SD
    U-Net); a model trained from scratch needs the dropout to learn ``eps(x, 0)``. Default 0.1 (Ho & Salimans; SD's
    10 % empty prompts).

    Sampling (:meth:`sample`): ``x_T`` (standard normal, the ``noise`` provider's, or an explicit tensor), then the
    scheduler's steps (:func:`~emdiff_components.diffusion.reverse_diffusion`, DDIM 50, eta 0) on the guided
    prediction (Ho & Salimans eq. 6 written with w as in the public ``p_sample_ddim``)

        eps_hat = eps(x_t, 0) + w * (eps(x_t, c) - eps(x_t, 0)),      w = 5  (``generate_cells.py``)

    w = 1 is the conditional model, w = 0 the unconditional one. A 3D condition ``(B, C, Z, Y, X)`` is sampled as a
    batch of B * Z 2D slices; with eta = 0 the slices are linked only through x_T, which a
    :class:`~emdiff_components.diffusion.SliceConsistentNoise` provider correlates along Z. The output is clipped to
    [-1, 1] (the public code clips when converting to 8 bits).

    Args:
        scheduler: a scheduler of the :mod:`~emdiff_components.diffusion.sampling` protocol;
            :func:`texture_scheduler` (default settings of the paper). Any ``prediction_type`` trains consistently
            (the guidance combines whatever the network predicts).
        num_inference_steps: sampling steps, default 50 (``generate_cells.py``).
        guidance_scale: w >= 0, default 5.
        p_uncond: condition-dropout probability in [0, 1] during training, default 0.1.
        unconditional: the null condition: ``"zeros"`` (default, an all-zero mask through the ControlNet) or
            ``"none"`` (``network(x_t, t, None)``).
        image_channels: channels of the synthesized image, default 1.
        noise: ``noise(shape, generator=..., dtype=..., device=...)`` giving x_T of shape ``(B, image_channels, [Z,]
            Y, X)``, e.g. ``SliceConsistentNoise(rho=0.7)`` for stacks; ``None`` (default): standard normal.
        progress: show a progress bar over the steps, default False.
        seed: seed of the generator :meth:`__call__` samples with (every call restarts from it), default 0.

    Example::

        inferer = MaskConditionedTextureInferer(texture_scheduler(), noise=SliceConsistentNoise(rho=0.7))
        stack = inferer.sample(mask_stack, net, generator=torch.Generator().manual_seed(0))  # (1, 1, Z, 64, 64)
    """

    def __init__(
        self,
        scheduler: DiffusionScheduler,
        num_inference_steps: int | None = 50,
        guidance_scale: float = 5.0,
        p_uncond: float = 0.1,
        unconditional: str = "zeros",
        image_channels: int = 1,
        noise: Callable[..., torch.Tensor] | None = None,
        progress: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        total = scheduler.num_train_timesteps
        if num_inference_steps is not None and not 1 <= num_inference_steps <= total:
            raise ValueError(f"{name}: num_inference_steps must be in [1, {total}], got {num_inference_steps}.")
        if isinstance(guidance_scale, bool) or not math.isfinite(guidance_scale) or guidance_scale < 0:
            raise ValueError(f"{name}: guidance_scale must be a finite number >= 0, got {guidance_scale!r}.")
        if not 0.0 <= p_uncond <= 1.0:
            raise ValueError(f"{name}: p_uncond must be in [0, 1], got {p_uncond!r}.")
        if unconditional not in UNCONDITIONAL:
            raise ValueError(f"{name}: unconditional must be one of {UNCONDITIONAL}, got {unconditional!r}.")
        if image_channels < 1:
            raise ValueError(f"{name}: image_channels must be >= 1, got {image_channels}.")
        if noise is not None and not callable(noise):
            raise ValueError(f"{name}: noise must be a callable noise provider or None, got {noise!r}.")
        self.scheduler = scheduler
        self.num_inference_steps = num_inference_steps or total
        self.guidance_scale = float(guidance_scale)
        self.p_uncond = float(p_uncond)
        self.unconditional = unconditional
        self.image_channels = image_channels
        self.noise = noise
        self.progress = progress
        self.seed = seed

    def _check(self, condition: torch.Tensor, image: torch.Tensor | None = None) -> None:
        name = type(self).__name__
        if condition.ndim not in (4, 5):
            raise ValueError(f"{name}: the mask must be (B, C, Y, X) or (B, C, Z, Y, X), got {tuple(condition.shape)}.")
        if image is not None and (
            image.ndim != condition.ndim or image.shape[0] != condition.shape[0] or image.shape[2:] != condition.shape[2:]
        ):
            raise ValueError(
                f"{name}: mask and image differ in batch or spatial shape: {tuple(condition.shape)} vs "
                f"{tuple(image.shape)}."
            )

    def drop_condition(
        self, condition: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Condition dropout: ``keep ~ Bernoulli(1 - p_uncond)`` per sample, drawn on the CPU from ``generator``.

        Returns:
            ``(condition, keep)``: for ``"zeros"`` the dropped samples' conditions are zeros (the others unchanged);
            for ``"none"`` the condition is returned as is and ``keep`` (bool ``(B,)``) says which samples see it.
        """
        keep = (torch.rand(condition.shape[0], generator=generator) >= self.p_uncond).to(condition.device)
        if self.unconditional == "zeros":
            condition = condition * keep.view(-1, *([1] * (condition.ndim - 1))).to(condition.dtype)
        return condition, keep

    def _call(
        self, network: Callable[..., torch.Tensor], x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor,
        keep: torch.Tensor,
    ) -> torch.Tensor:
        """The network's output where ``keep`` rows see ``condition`` and the others the null condition."""
        if self.unconditional == "zeros" or bool(keep.all()):
            return network(x, t, condition)
        if not bool(keep.any()):
            return network(x, t, None)
        out_kept = network(x[keep], t[keep], condition[keep])
        out_dropped = network(x[~keep], t[~keep], None)
        out = out_kept.new_empty((x.shape[0], *out_kept.shape[1:]))
        out[keep], out[~keep] = out_kept, out_dropped
        return out

    def training_loss(
        self,
        network: Callable[..., torch.Tensor],
        condition: torch.Tensor,
        image: torch.Tensor,
        loss_function: Callable[..., torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
        timesteps: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> DiffusionLossOutput:
        """Noise the image at random ``t``, drop the condition with probability ``p_uncond``, predict, compute the loss.

        Args:
            network: ``network(x_t, t, condition)`` (e.g. :class:`ControlNetDenoiser`).
            condition: the mask ``(B, C_mask, [Z,] Y, X)`` (the trainer's ``image_key`` entry); a stack is trained as
                its B * Z slices.
            image: the cell image x_0 ``(B, image_channels, [Z,] Y, X)`` in [-1, 1] (the trainer's ``label_key``).
            loss_function: ``loss_function(prediction, target)``; ``None`` (default): mean squared error.
            generator: draws, on the CPU and in this order, ``t``, the noise and the dropout.
            timesteps: fixed ``(N,)`` time steps (N = number of 2D slices), instead of random ones.
            noise: fixed noise shaped like ``image``.
            keep: fixed bool ``(N,)`` dropout decisions (True = condition kept), instead of random ones.
            kwargs: the trainer step's ``boundary_weight`` / ``epoch_fraction``, accepted and unused.

        Returns:
            ``DiffusionLossOutput`` (loss, prediction, target and ``t``, per 2D slice).
        """
        self._check(condition, image)
        x0, cond = _as_slices(image), _as_slices(condition)
        n = x0.shape[0]
        if timesteps is None:
            timesteps = torch.randint(0, self.scheduler.num_train_timesteps, (n,), generator=generator)
        if noise is None:
            noise = torch.randn(image.shape, generator=generator, dtype=image.dtype)
        if noise.shape != image.shape:
            raise ValueError(f"{type(self).__name__}: noise {tuple(noise.shape)} differs from image {tuple(image.shape)}.")
        if keep is None:
            cond, keep = self.drop_condition(cond, generator)
        elif keep.shape != (n,):
            raise ValueError(f"{type(self).__name__}: keep must be a bool tensor of shape ({n},), got {tuple(keep.shape)}.")
        elif self.unconditional == "zeros":
            cond = cond * keep.to(cond.device, cond.dtype).view(-1, *([1] * (cond.ndim - 1)))
        timesteps = timesteps.to(image.device).long()
        eps = _as_slices(noise.to(image.device))
        x_t = self.scheduler.add_noise(original_samples=x0, noise=eps, timesteps=timesteps)
        prediction = self._call(network, x_t, timesteps, cond, keep.to(image.device).bool())
        abar = self.scheduler.alphas_cumprod.to(image.device)[timesteps]
        target = training_target(x0, eps, abar, self.scheduler.prediction_type)
        loss = F.mse_loss(prediction, target) if loss_function is None else loss_function(prediction, target)
        return DiffusionLossOutput(loss=loss, prediction=prediction, target=target, timesteps=timesteps)

    def guided_prediction(
        self, network: Callable[..., torch.Tensor], sample: torch.Tensor, t: int, condition: torch.Tensor
    ) -> torch.Tensor:
        """``eps(x, 0) + w (eps(x, c) - eps(x, 0))`` for a 2D batch ``sample`` at time step ``t`` (one call if w is 0
        or 1; for ``"zeros"`` both branches in one batched call)."""
        timesteps = torch.full((sample.shape[0],), int(t), dtype=torch.long, device=sample.device)
        w = self.guidance_scale
        if w == 1.0:
            return network(sample, timesteps, condition)
        null = torch.zeros_like(condition) if self.unconditional == "zeros" else None
        if w == 0.0:
            return network(sample, timesteps, null)
        if null is not None:
            both = network(torch.cat([sample, sample]), torch.cat([timesteps, timesteps]), torch.cat([condition, null]))
            cond_out, uncond_out = both.chunk(2)
        else:
            cond_out, uncond_out = network(sample, timesteps, condition), network(sample, timesteps, None)
        return uncond_out + w * (cond_out - uncond_out)

    @torch.no_grad()
    def sample(
        self,
        condition: torch.Tensor,
        network: Callable[..., torch.Tensor],
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Textures of the masks ``condition``: guided DDIM from x_T.

        Args:
            condition: the mask ``(B, C_mask, Y, X)`` or a stack ``(B, C_mask, Z, Y, X)``.
            network: ``network(x_t, t, condition)``.
            generator: draws x_T (when ``noise`` is not given) and, for eta > 0 on the CPU, the step noise.
            noise: explicit x_T ``(B, image_channels, [Z,] Y, X)`` (e.g. from :func:`slice_consistent_noise`).

        Returns:
            The image ``(B, image_channels, [Z,] Y, X)`` in [-1, 1].
        """
        self._check(condition)
        dtype = condition.dtype if condition.is_floating_point() else torch.float32
        shape = (condition.shape[0], self.image_channels, *condition.shape[2:])
        if noise is None:
            if self.noise is not None:
                noise = self.noise(shape, generator=generator, dtype=dtype)
            else:
                noise = torch.randn(shape, generator=generator, dtype=dtype)
        if tuple(noise.shape) != shape:
            raise ValueError(f"{type(self).__name__}: noise must have shape {shape}, got {tuple(noise.shape)}.")
        cond = _as_slices(condition.to(dtype))
        start = _as_slices(noise.to(device=condition.device, dtype=dtype))
        out = reverse_diffusion(
            self.scheduler,
            lambda x, t: self.guided_prediction(network, x, t, cond),
            start,
            self.num_inference_steps,
            generator=generator,
            progress=self.progress,
            desc="texture",
        )
        return _as_stack(out, condition).clamp(-1.0, 1.0)

    @torch.no_grad()
    def __call__(  # type: ignore[override]
        self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """What MONAI's evaluators call: :meth:`sample` of the masks ``inputs`` with a generator seeded by ``seed``."""
        return self.sample(inputs, network, torch.Generator().manual_seed(self.seed))
