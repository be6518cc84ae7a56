"""Stage 3 of the cascaded cell synthesis through diffusers: a local Stable Diffusion 1.5 with a ControlNet, as the
paper fine-tunes it, for a user who has the weights (optional; ``pip install 'emdiff-components[sd]'``).

Yilmaz et al. "Cascaded Diffusion Models for 2D and 3D Microscopy Image Synthesis to Enhance Cell Segmentation",
https://arxiv.org/abs/2411.11515; Zhang et al. "Adding Conditional Control to Text-to-Image Diffusion Models"
(ControlNet), https://arxiv.org/abs/2302.05543; Rombach et al. "High-Resolution Image Synthesis with Latent Diffusion
Models", https://arxiv.org/abs/2112.10752.

What the public code does and what is done here (``inference/generate_cells.py``, ``datasets/dataset_CTC.py``,
``ldm/models/diffusion/ddpm.py``, ``cldm/cldm.py``):

- no autoencoder: training puts the grey cell image, resized to 64 x 64 and repeated on the 4 latent channels, in
  place of the latent ("skip the autoencoder"), and sampling stores the first channel of the sampled latent times
  127.5 plus 127.5. ``output="latent"`` (default) does the same; ``output="vae"`` decodes with the pipeline's VAE
  instead (a ControlNet trained the usual diffusers way) and averages the RGB channels.
- the control image is the mask in [0, 1] repeated on 3 channels at 8 x the latent's size (training: 128 px crops x 4,
  inference: 256 px SyncDreamer masks x 2, both 512 x 512 for a 64 x 64 latent), nearest-neighbour upsampled.
- empty prompt and empty negative prompt, DDIM 50 steps, eta 0, guidance 5 in guess mode (the unconditional branch
  runs the U-Net without the ControlNet; the ControlNet's 13 residuals are scaled by ``strength * 0.825 ** (12 - i)``
  with ``strength = 2``). diffusers' guess mode scales by ``conditioning_scale * 10 ** (-1 + i / 12)``, i.e.
  ``0.8254 ** (12 - i)`` (at most 0.6 % from the public factors).
- DDIM visits ``range(0, 1000, 20) + 1`` (981, ..., 1) and steps last to ``alphas_cumprod[0]``: diffusers'
  ``DDIMScheduler`` with ``timestep_spacing="leading"``, ``steps_offset=1``, ``set_alpha_to_one=False``, no clipping,
  on the betas of the pipeline's scheduler config (SD 1.5: ``scaled_linear`` 0.00085 to 0.012).
- 3D stacks: every slice is a 2D sample whose initial latent follows the slice-consistent noise
  (``cldm/ddim_hacked_3d.py`` mixes ``base_noise`` and fresh noise in latent space, rho = 0.7).

Weights: a diffusers-format SD 1.5 folder (``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``,
``tokenizer/``, ``scheduler/``) plus a diffusers ControlNet folder, or one folder that holds both (a saved
``StableDiffusionControlNetPipeline``). The public training writes one ControlNet-LDM checkpoint (``.ckpt``, keys
``model.diffusion_model.*``, ``control_model.*``, ``first_stage_model.*``, ``cond_stage_model.*``): pass it as
``sd_path`` (and as ``controlnet_path`` or leave that ``None``) with ``config_path`` a diffusers SD 1.5 folder (the
component configs and the tokenizer; diffusers' ``from_single_file`` converts the keys), or convert it once::

    load_controlnet_pipeline("last.ckpt", config_path="stable-diffusion-v1-5").save_pretrained("cells_sd")

Cost: no GPU is needed; on the CPU a 64 x 64 latent at SD 1.5 size (860 M U-Net + 361 M ControlNet parameters, random
weights, float32) took 46 s per DDIM step on one core of a shared 2-core machine (two U-Net passes for the guidance,
one ControlNet pass), i.e. about 40 min per cell for 50 steps, with a 5.8 GB peak.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.inferers import Inferer
from monai.utils import optional_import

from .texture_inferer import _as_slices, _as_stack

__all__ = ["StableDiffusionTextureInferer", "load_controlnet_pipeline"]

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'emdiff-components[sd]' (diffusers==0.42.1 transformers==5.24.0 accelerate==1.15.0)"
SD_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
CHECKPOINT_SUFFIXES = (".ckpt", ".safetensors", ".pt", ".pth", ".bin")
OUTPUTS = ("latent", "vae")
PIPELINE_OPTIONS = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}


def _import_diffusers(owner: str):
    """diffusers, imported when first needed (it takes seconds); an ImportError with the install command if it or
    transformers is missing."""
    diffusers, has_diffusers = optional_import("diffusers")
    _, has_transformers = optional_import("transformers")
    missing = [name for name, ok in (("diffusers", has_diffusers), ("transformers", has_transformers)) if not ok]
    if missing:
        raise ImportError(f"{owner}: the Stable Diffusion path needs {' and '.join(missing)}: {INSTALL_HINT}.")
    return diffusers


def _model_index(folder: str, owner: str) -> dict:
    """The ``model_index.json`` of a diffusers Stable Diffusion folder, checked for the SD components."""
    index = os.path.join(folder, "model_index.json")
    if not os.path.isfile(index):
        raise ValueError(
            f"{owner}: {folder!r} is not a diffusers Stable Diffusion folder: it has no model_index.json (a .ckpt / "
            ".safetensors checkpoint is a file path, with config_path a diffusers SD 1.5 folder)."
        )
    with open(index, encoding="utf-8") as stream:
        components = json.load(stream)
    missing = [c for c in SD_COMPONENTS if not (isinstance(components.get(c), list) and components[c][0])]
    if missing:
        raise ValueError(f"{owner}: {index!r} lists no {', '.join(missing)}; not a Stable Diffusion folder.")
    return components


def _controlnet_folder(folder: str, owner: str) -> None:
    config = os.path.join(folder, "config.json")
    if not os.path.isfile(config):
        raise ValueError(f"{owner}: ControlNet folder {folder!r} has no config.json (not a diffusers ControlNetModel).")
    with open(config, encoding="utf-8") as stream:
        name = json.load(stream).get("_class_name")
    if name != "ControlNetModel":
        raise ValueError(f"{owner}: {config!r} describes a {name!r}, not a ControlNetModel.")


def _existing(path: str | os.PathLike, what: str, owner: str) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{owner}: {what} {path!r} does not exist.")
    if os.path.isfile(path) and not path.lower().endswith(CHECKPOINT_SUFFIXES):
        raise ValueError(
            f"{owner}: {what} {path!r} is neither a diffusers folder nor a checkpoint file ({', '.join(CHECKPOINT_SUFFIXES)})."
        )
    return path


def _single_file_controlnet(diffusers, checkpoint: str, config_path: str, torch_dtype, owner: str):
    """The ControlNet of an LDM-format checkpoint (``control_model.*`` keys), its config derived from the SD U-Net's
    as ``ControlNetModel.from_unet`` does (same blocks, default conditioning embedding, RGB hint)."""
    cls = diffusers.ControlNetModel
    unet_config = diffusers.UNet2DConditionModel.load_config(config_path, subfolder="unet", local_files_only=True)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    config = {"_class_name": "ControlNetModel", **{k: v for k, v in unet_config.items() if k in accepted}}
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as stream:
            json.dump(config, stream)
        try:
            return cls.from_single_file(checkpoint, config=folder, local_files_only=True, torch_dtype=torch_dtype)
        except Exception as err:  # diffusers raises several types for unreadable / foreign checkpoints
            raise ValueError(f"{owner}: cannot read a ControlNet from {checkpoint!r}: {err}") from err


def _check_compatible(pipeline, owner: str) -> None:
    unet, controlnet = pipeline.unet.config, pipeline.controlnet.config
    for key in ("in_channels", "block_out_channels", "cross_attention_dim"):
        if tuple(_as_tuple(unet[key])) != tuple(_as_tuple(controlnet[key])):
            raise ValueError(f"{owner}: the ControlNet does not fit the U-Net: {key} {controlnet[key]} vs {unet[key]}.")
    hint_factor = 2 ** (len(controlnet["conditioning_embedding_out_channels"]) - 1)
    if hint_factor != pipeline.vae_scale_factor:
        raise ValueError(
            f"{owner}: the ControlNet shrinks its control image {hint_factor} x, the VAE scale factor is "
            f"{pipeline.vae_scale_factor}; they must agree."
        )


def _public_ddim(diffusers, config):
    """DDIM as ``cldm/ddim_hacked.py``: steps ``range(0, T, T // N) + 1``, the last to ``alphas_cumprod[0]``, no
    clipping; the betas and the prediction type of ``config`` (SD 1.5: scaled_linear 0.00085 - 0.012, epsilon)."""
    return diffusers.DDIMScheduler.from_config(
        config, timestep_spacing="leading", steps_offset=1, set_alpha_to_one=False, clip_sample=False
    )


def _as_tuple(value) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def load_controlnet_pipeline(
    sd_path: str | os.PathLike,
    controlnet_path: str | os.PathLike | None = None,
    config_path: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    torch_dtype: torch.dtype | str | None = None,
):
    """A diffusers ``StableDiffusionControlNetPipeline`` from local files only, with the public code's DDIM scheduler.

    Yilmaz et al., https://arxiv.org/abs/2411.11515 (SD 1.5 + ControlNet); Zhang et al.,
    https://arxiv.org/abs/2302.05543. Nothing is downloaded (``local_files_only=True``); no safety checker.

    Args:
        sd_path: a diffusers SD 1.5 folder (``model_index.json``), or an LDM-format checkpoint file (``.ckpt`` /
            ``.safetensors``, e.g. the public training's ControlNet-LDM checkpoint) read by ``from_single_file``.
        controlnet_path: a diffusers ControlNet folder or an LDM-format checkpoint with ``control_model.*`` keys;
            ``None`` (default): the ControlNet of ``sd_path`` (its ``controlnet/`` component, or the checkpoint's).
        config_path: for a checkpoint file ``sd_path``, a diffusers SD 1.5 folder giving the component configs and the
            tokenizer (its weights are not read); ignored when ``sd_path`` is a folder (which then serves).
        device: where the pipeline runs; ``None`` (default): CUDA when available, else the CPU.
        torch_dtype: the weights' dtype (``torch.float16`` or ``"float16"`` on a GPU), default float32.

    Returns:
        The pipeline on ``device`` with ``scheduler`` a ``DDIMScheduler`` set as the module docstring says.

    Raises:
        ImportError: diffusers or transformers is not installed (the message gives the install command).
        FileNotFoundError: a path that does not exist.
        ValueError: a folder that is not a diffusers SD / ControlNet folder, a checkpoint without ``config_path``, a
            ControlNet that does not fit the U-Net.
    """
    owner = "load_controlnet_pipeline"
    diffusers = _import_diffusers(owner)
    torch_dtype = getattr(torch, torch_dtype) if isinstance(torch_dtype, str) else torch_dtype
    sd_path = _existing(sd_path, "Stable Diffusion path", owner)
    controlnet = None
    if controlnet_path is not None:
        controlnet_path = _existing(controlnet_path, "ControlNet path", owner)
        if os.path.isdir(controlnet_path):
            _controlnet_folder(controlnet_path, owner)
            controlnet = diffusers.ControlNetModel.from_pretrained(
                controlnet_path, local_files_only=True, torch_dtype=torch_dtype
            )
    if os.path.isdir(sd_path):
        components = _model_index(sd_path, owner)
        if controlnet_path is None and not (isinstance(components.get("controlnet"), list) and components["controlnet"][0]):
            raise ValueError(f"{owner}: {sd_path!r} holds no ControlNet; give controlnet_path.")
        if controlnet_path is not None and controlnet is None:  # a checkpoint file: its config from sd_path's U-Net
            controlnet = _single_file_controlnet(diffusers, controlnet_path, sd_path, torch_dtype, owner)
        extra = {} if controlnet is None else {"controlnet": controlnet}
        pipeline = diffusers.StableDiffusionControlNetPipeline.from_pretrained(
            sd_path, local_files_only=True, torch_dtype=torch_dtype, **PIPELINE_OPTIONS, **extra
        )
    else:
        if config_path is None:
            raise ValueError(
                f"{owner}: the checkpoint file {sd_path!r} needs config_path, a diffusers SD 1.5 folder for the "
                "component configs and the tokenizer."
            )
        config_path = _existing(config_path, "config folder", owner)
        _model_index(config_path, owner)
        if controlnet is None:
            controlnet = _single_file_controlnet(diffusers, controlnet_path or sd_path, config_path, torch_dtype, owner)
        try:
            pipeline = diffusers.StableDiffusionControlNetPipeline.from_single_file(
                sd_path, controlnet=controlnet, config=config_path, local_files_only=True, torch_dtype=torch_dtype,
                **PIPELINE_OPTIONS,
            )
        except Exception as err:  # diffusers raises several types for unreadable / foreign checkpoints
            raise ValueError(f"{owner}: cannot read Stable Diffusion from {sd_path!r}: {err}") from err
    _check_compatible(pipeline, owner)
    pipeline.scheduler = _public_ddim(diffusers, pipeline.scheduler.config)
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu":
        logger.info("%s: no GPU; Stable Diffusion runs on the CPU: it works but is slow (SD 1.5 size: ~45 s per DDIM "
                    "step for one 64 x 64 latent on one core, about 40 min per cell for 50 steps).", owner)
    return pipeline.to(device)


class StableDiffusionTextureInferer(Inferer):
    """Cell texture from a (grey-level) cell mask with a local Stable Diffusion 1.5 + ControlNet (diffusers).

    Yilmaz et al. "Cascaded Diffusion Models for 2D and 3D Microscopy Image Synthesis to Enhance Cell Segmentation",
    https://arxiv.org/abs/2411.11515; Zhang et al. (ControlNet), https://arxiv.org/abs/2302.05543. The settings and
    conversions follow the public ``generate_cells.py`` (module docstring). Same ``sample`` contract as
    :class:`~emdiff_components.diffusion.MaskConditionedTextureInferer`, so
    :func:`~emdiff_components.engines.texture_cells` runs either; ``network`` is accepted and ignored (the pipeline
    holds the U-Net and the ControlNet; pass ``inferer.pipeline.controlnet`` where a caller wants a module, e.g. for
    its device).

    Sizes: the latent is ``latent_size`` (default: the mask's Y, X, which must be divisible by the U-Net's
    down-sampling, 8 for SD 1.5; a 64 x 64 mask gives the public 64 x 64 latent); the control image is the mask at
    ``vae_scale_factor`` (8) x the latent size, nearest-neighbour; ``output="vae"`` decodes to that size. A result of
    another size than the mask is resized to it (bilinear with antialiasing) before clipping to [-1, 1].

    Noise: x_T is drawn in latent space, ``(B, C_latent, [Z,] h, w)`` (``C_latent = 4``): by ``noise`` (e.g.
    ``SliceConsistentNoise(rho=0.7)``: the slices of a stack share part of their initial latent, as the public
    ``ddim_hacked_3d.py``) or standard normal, from ``generator`` on the CPU, then moved to the pipeline's device.
    A stack is sampled as one batch of B * Z slices.

    Args:
        sd_path: the SD 1.5 weights, see :func:`load_controlnet_pipeline`; or ``None`` with ``pipeline``.
        controlnet_path: the ControlNet weights, see :func:`load_controlnet_pipeline`.
        config_path: the diffusers SD 1.5 folder for a checkpoint file, see :func:`load_controlnet_pipeline`.
        pipeline: an already loaded ``StableDiffusionControlNetPipeline`` (e.g. ``other_inferer.pipeline``, so a 2D and
            a 3D inferer share the weights) instead of the paths; its scheduler is set to the public DDIM.
        num_inference_steps: DDIM steps, default 50.
        guidance_scale: classifier-free guidance w, default 5 (no guidance at w <= 1).
        conditioning_scale: the ControlNet strength, default 2 (``generate_cells.py --strength``).
        guess_mode: default True (public): the unconditional branch runs without the ControlNet and the residuals are
            scaled from 0.1 (shallowest) to 1 (middle block).
        eta: DDIM stochasticity, default 0.
        output: ``"latent"`` (default, public: the first channel of the sampled latent is the image) or ``"vae"``
            (VAE-decoded, mean of R, G, B).
        latent_size: ``(h, w)`` or one int; default ``None``: the mask's size.
        noise: ``noise(shape, generator=..., dtype=...)`` giving x_T of the latent shape; ``None``: standard normal.
        device: the pipeline's device, default CUDA when available, else the CPU (works, slowly).
        torch_dtype: the weights' dtype, default float32.
        progress: show diffusers' progress bar, default False.
        seed: seed of the generator :meth:`__call__` samples with, default 0.

    Example::

        inferer = StableDiffusionTextureInferer("stable-diffusion-v1-5", "cells_controlnet")
        image = inferer.sample(mask, generator=torch.Generator().manual_seed(0))  # (B, 1, 64, 64) in [-1, 1]
        stacks = StableDiffusionTextureInferer(pipeline=inferer.pipeline, noise=SliceConsistentNoise(0.7))
    """

    def __init__(
        self,
        sd_path: str | os.PathLike | None = None,
        controlnet_path: str | os.PathLike | None = None,
        config_path: str | os.PathLike | None = None,
        pipeline: Any = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 5.0,
        conditioning_scale: float = 2.0,
        guess_mode: bool = True,
        eta: float = 0.0,
        output: str = "latent",
        latent_size: int | Sequence[int] | None = None,
        noise: Callable[..., torch.Tensor] | None = None,
        device: str | torch.device | None = None,
        torch_dtype: torch.dtype | str | None = None,
        progress: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if (sd_path is None) == (pipeline is None):
            raise ValueError(f"{name}: give either sd_path or pipeline (exactly one).")
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"{name}: num_inference_steps must be an int >= 1, got {num_inference_steps!r}.")
        for key, value in (("guidance_scale", guidance_scale), ("conditioning_scale", conditioning_scale), ("eta", eta)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}: {key} must be a finite number >= 0, got {value!r}.")
        if output not in OUTPUTS:
            raise ValueError(f"{name}: output must be one of {OUTPUTS}, got {output!r}.")
        if latent_size is not None:
            latent_size = (latent_size, latent_size) if isinstance(latent_size, int) else tuple(latent_size)
            if len(latent_size) != 2 or not all(isinstance(s, int) and s >= 1 for s in latent_size):
                raise ValueError(f"{name}: latent_size must be None, an int or (h, w) of ints >= 1, got {latent_size!r}.")
        if noise is not None and not callable(noise):
            raise ValueError(f"{name}: noise must be a callable noise provider or None, got {noise!r}.")
        if pipeline is None:
            pipeline = load_controlnet_pipeline(sd_path, controlnet_path, config_path, device, torch_dtype)
        else:
            _check_compatible(pipeline, name)
            pipeline.scheduler = _public_ddim(_import_diffusers(name), pipeline.scheduler.config)
        self.pipeline = pipeline
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = float(guidance_scale)
        self.conditioning_scale = float(conditioning_scale)
        self.guess_mode = bool(guess_mode)
        self.eta = float(eta)
        self.output = output
        self.latent_size = latent_size
        self.noise = noise
        self.progress = progress
        self.seed = seed

    def _latent_size(self, condition: torch.Tensor) -> tuple[int, int]:
        """The latent (h, w) for ``condition``, checked against the U-Net's down-sampling."""
        size = self.latent_size or tuple(condition.shape[-2:])
        factor = 2 ** (len(self.pipeline.unet.config.block_out_channels) - 1)
        if size[0] % factor or size[1] % factor:
            raise ValueError(
                f"{type(self).__name__}: the latent size {size} is not divisible by the U-Net's down-sampling "
                f"{factor}; give masks of such a size or set latent_size (e.g. 64)."
            )
        return size

    def _check(self, condition: torch.Tensor) -> None:
        name = type(self).__name__
        if condition.ndim not in (4, 5) or condition.shape[1] not in (1, 3):
            raise ValueError(
                f"{name}: the mask must be (B, 1 or 3, Y, X) or (B, 1 or 3, Z, Y, X), got {tuple(condition.shape)}."
            )
        low, high = float(condition.min()), float(condition.max())
        if not (0.0 <= low and high <= 1.0):  # also False for NaN
            raise ValueError(f"{name}: the mask must lie in [0, 1] (binary or grey-level / 255), got [{low}, {high}].")

    @torch.no_grad()
    def sample(
        self,
        condition: torch.Tensor,
        network: Any = None,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Textures of the masks ``condition``: guided DDIM in SD's latent space, then grey in [-1, 1].

        Args:
            condition: the mask ``(B, 1, Y, X)`` or a stack ``(B, 1, Z, Y, X)`` in [0, 1] (3 channels: used as is).
            network: ignored (the pipeline holds the networks); accepted for the callers of the MONAI inferers.
            generator: draws x_T when ``noise`` is not given (on the CPU) and, for eta > 0, the step noise.
            noise: explicit x_T of the latent shape ``(B, C_latent, [Z,] h, w)``.

        Returns:
            The image ``(B, 1, [Z,] Y, X)`` in [-1, 1], float32, on the condition's device.
        """
        self._check(condition)
        pipe = self.pipeline
        height, width = self._latent_size(condition)
        channels = pipe.unet.config.in_channels
        shape = (condition.shape[0], channels, *condition.shape[2:-2], height, width)
        if noise is None:
            draw = self.noise if self.noise is not None else torch.randn
            noise = draw(shape, generator=generator, dtype=torch.float32)
        if tuple(noise.shape) != shape:
            raise ValueError(f"{type(self).__name__}: noise must have the latent shape {shape}, got {tuple(noise.shape)}.")
        masks = _as_slices(condition.float())
        scale = pipe.vae_scale_factor
        control = F.interpolate(masks, size=(height * scale, width * scale), mode="nearest-exact")
        control = control.expand(-1, 3, -1, -1) if control.shape[1] == 1 else control
        pipe.set_progress_bar_config(disable=not self.progress)
        latents = pipe(
            prompt=[""] * control.shape[0],
            image=control.to(pipe.device),
            height=height * scale,
            width=width * scale,
            num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale,
            eta=self.eta,
            generator=generator,
            latents=_as_slices(noise).to(pipe.device, pipe.unet.dtype),
            output_type="latent",
            controlnet_conditioning_scale=self.conditioning_scale,
            guess_mode=self.guess_mode,
            return_dict=False,
        )[0]
        if self.output == "latent":
            grey = latents[:, :1]
        else:
            vae = pipe.vae
            decoded = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
            grey = decoded.mean(dim=1, keepdim=True)
        grey = grey.float()
        if tuple(grey.shape[-2:]) != tuple(condition.shape[-2:]):
            grey = F.interpolate(grey, size=tuple(condition.shape[-2:]), mode="bilinear", antialias=True)
        return _as_stack(grey, condition).clamp(-1.0, 1.0).to(condition.device)

    @torch.no_grad()
    def __call__(self, inputs: torch.Tensor, network: Any = None, *args: Any, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        """What MONAI's evaluators call: :meth:`sample` of the masks ``inputs`` with a generator seeded by ``seed``."""
        return self.sample(inputs, network, torch.Generator().manual_seed(self.seed))
