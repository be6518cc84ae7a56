"""Turn a checkpoint trained with public reference code into a bundle's ``models/model.pt`` (ECSD or NeuroDiff).

``--network ecsd`` (default): the public Cold SegDiffusion ``Unet`` (Yan et al. "Cold SegDiffusion", KBS 2024;
``TimesXY/Cold-SegDiffusion``, ``SegDiffusion.py``) -> ``emdiff_components.networks.ECSDUNet``, the ecsd bundle's
network. ``--network neurodiff``: the public ``NeuroDiff`` network (Liu et al. NeuroDiff; ``HeadLiuYun/NeuroDiff``,
``diffusion_model/neurodiff.py``) -> ``emdiff_components.networks.NeuroDiffUNet``, the neurodiff bundle's network.
Each pair computes the same function; only the names (and, for ECSD, a few tensor layouts) differ (the key maps:
``emdiff_components.networks.reference_weights``). Give the reference constructor arguments the checkpoint was
trained with; the output file holds our network's weights under our keys, loads with
``emdiff_components.engines.load_network_weights`` (the bundle's inference / evaluate configs), and the bundle's
``network_def`` must be built with the arguments this script logs (ECSD: ``channels``, ``filter_size``, ...;
NeuroDiff: ``channels``, ``time_channels``, ``num_res_blocks``, ``rgm_factors``, ``anisotropy_ratio``,
``voxel_size``; ``train.py``'s defaults give the neurodiff bundle's defaults).

What the file may hold (every usual form is accepted): the network's state_dict itself; the diffusion wrapper's
state_dict, whose schedule buffers are dropped (ECSD: ``MedSegDiff``, keys ``model.*``; NeuroDiff:
``GaussianDiffusion``, keys ``denoise_fn.*``); either one under a usual key (ECSD: ``"model"``, ``"state_dict"``,
``"model_state_dict"``, ``"ema"``, ``"ema_model"``, ``"net"``, ``"network"``, in that order; NeuroDiff the same
keys with ``"ema"`` first, so the public trainer's ``{"step", "model", "ema"}`` file gives the EMA weights, as its
``train.py`` resumes from); the ``ema_pytorch.EMA`` state_dict (its ``ema_model.*`` weights are used); ``module.``
prefixes of DataParallel / DDP. Not supported (clear error): ECSD ``self_condition=True`` and
``skip_connect_condition_fmap=True``; NeuroDiff ``class_cond``, ``learn_sigma``, ``use_scale_shift_norm``,
``resblock_updown`` (keys or shapes that do not fit). Errors name the file and the missing / unexpected keys.

Usage::

    python scripts/convert_reference_weights.py run/model_best.pth --dim 64 --image-size 256 \\
        --mask-channels 1 --input-img-channels 1 [--dim-mult 1 2 4 8] [--out bundles/ecsd/models/model.pt]
    python scripts/convert_reference_weights.py --network neurodiff results/model-100.pt [--model-channels 64] \\
        [--channel-mult 0.5 1 1 2 2 4 4] [--attention-resolutions 8 16 32] [--ani-ratio 64] [--res-z 29 --res-xy 6] \\
        [--out bundles/neurodiff/models/model.pt]

Importable: ``convert(checkpoint, out, network="ecsd", **reference_args)`` -> the loaded ``ECSDUNet`` /
``NeuroDiffUNet``; ``network_args`` / ``neurodiff_network_args`` give our arguments for the reference ones.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from emdiff_components.engines import atomic_save
from emdiff_components.networks import ECSDUNet, NeuroDiffUNet
from emdiff_components.networks.reference_weights import convert_cold_segdiff_state_dict, convert_neurodiff_state_dict

logger = logging.getLogger("convert_reference_weights")

CONTAINER_KEYS = ("model", "state_dict", "model_state_dict", "ema", "ema_model", "net", "network")
# the MedSegDiff wrapper's registered schedule buffers (not network weights)
SCHEDULE_BUFFERS = {
    "betas",
    "alphas_cum_prod",
    "alphas_cum_prod_prev",
    "sqrt_alphas_cum_prod",
    "sqrt_one_minus_alphas_cum_prod",
    "log_one_minus_alphas_cum_prod",
    "sqrt_recip_alphas_cum_prod",
    "sqrt_recip_m1_alphas_cum_prod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_cof_1",
    "posterior_mean_cof_2",
}
# NeuroDiff's GaussianDiffusion (diffusion_model/trainer.py) registers these schedule buffers next to denoise_fn.*
GAUSSIAN_DIFFUSION_BUFFERS = {
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
    "posterior_mean_coef3",
}
BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
DEFAULT_OUT = BUNDLES / "ecsd" / "models" / "model.pt"


class Reference(NamedTuple):
    """How the public code of one network saves it, and how its weights become ours."""

    name: str  # the reference class, as error messages name it
    containers: tuple[str, ...]  # keys a training checkpoint may hold the weights under, in order of preference
    wrapper: str  # prefix of the network inside the public diffusion wrapper's state_dict
    buffers: frozenset[str]  # the wrapper's schedule buffers (not network weights)
    rename: Callable[[Mapping[str, torch.Tensor], str], dict[str, torch.Tensor]]  # the key map
    default_out: Path


REFERENCES = {
    "ecsd": Reference(
        "Unet", CONTAINER_KEYS, "model.", frozenset(SCHEDULE_BUFFERS), convert_cold_segdiff_state_dict, DEFAULT_OUT
    ),
    "neurodiff": Reference(
        "NeuroDiff",
        ("ema", *(k for k in CONTAINER_KEYS if k != "ema")),  # the public trainer saves {"step", "model", "ema"}
        "denoise_fn.",
        frozenset(GAUSSIAN_DIFFUSION_BUFFERS),
        convert_neurodiff_state_dict,
        BUNDLES / "neurodiff" / "models" / "model.pt",
    ),
}


def _strip(state: Mapping[str, object], prefix: str) -> dict[str, object]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def reference_state_dict(obj: object, source: str, network: str = "ecsd") -> dict[str, torch.Tensor]:
    """The reference network's state_dict inside a loaded checkpoint ``obj`` (the forms: the module docstring).

    Args:
        obj: what ``torch.load`` returned.
        source: the file name, for error messages.
        network: ``"ecsd"`` (Cold SegDiffusion ``Unet``, default) or ``"neurodiff"`` (``NeuroDiff``).
    """
    reference = REFERENCES[network]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{source}: holds a {type(obj).__name__}, not a state_dict or a dict holding one.")
    for key in reference.containers:  # a training checkpoint: the weights under a usual key
        if isinstance(obj.get(key), Mapping) and obj[key]:
            return reference_state_dict(obj[key], source, network)
    state = dict(obj)
    if any(k.startswith("ema_model.") for k in state):  # ema_pytorch.EMA: the averaged copy, not the online one
        state = _strip(state, "ema_model.")
    while state and all(k.startswith("module.") for k in state):  # DataParallel / DDP
        state = _strip(state, "module.")
    if any(k.startswith(reference.wrapper) for k in state):  # the diffusion wrapper: drop its schedule buffers
        state = _strip(state, reference.wrapper)
    state = {k: v for k, v in state.items() if k not in reference.buffers}
    not_tensors = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
    if not state or not_tensors:
        raise ValueError(
            f"{source}: no {reference.name} state_dict found (non-tensor entries: {not_tensors[:5]})."
        )
    return state


def network_args(
    dim: int,
    image_size: int,
    mask_channels: int = 1,
    input_img_channels: int = 3,
    init_dim: int | None = None,
    dim_mult: Sequence[int] = (1, 2, 4, 8),
    full_self_attn: Sequence[bool] = (False, False, False, True),
    attn_dim_head: int = 32,
    attn_heads: int = 4,
    mid_transformer_depth: int = 1,
    resnet_block_groups: int = 8,
) -> dict[str, object]:
    """``ECSDUNet`` arguments of the network ``Unet(**same arguments)`` builds (defaults are the ``Unet``'s)."""
    if init_dim is not None and init_dim != dim:
        raise ValueError(f"init_dim ({init_dim}) must equal dim ({dim}): the reference's final block assumes it.")
    return {
        # the reference's first convolution takes input_img_channels (it overwrites mask_channels with it)
        "in_channels": input_img_channels,
        "cond_channels": input_img_channels,
        "out_channels": mask_channels,
        "channels": [dim * m for m in dim_mult],
        "init_channels": dim,
        "full_attention": [bool(a) for a in full_self_attn],
        "norm_num_groups": resnet_block_groups,
        "attention_heads": attn_heads,
        "attention_head_channels": attn_dim_head,
        "filter_size": image_size,
        "transformer_depth": mid_transformer_depth,
    }


def neurodiff_network_args(
    model_channels: int = 64,
    channel_mult: Sequence[float] = (0.5, 1, 1, 2, 2, 4, 4),
    num_res_blocks: int = 1,
    attention_resolutions: Sequence[int] = (8, 16, 32),
    in_channels: int = 3,
    out_channels: int = 1,
    ani_ratio: float = 64,
    res_z: float = 29,
    res_xy: float = 6,
) -> dict[str, object]:
    """``NeuroDiffUNet`` arguments of the network ``NeuroDiff(**same arguments)`` builds.

    Defaults are those of the public ``train.py`` (``create_neurodiff(512, 64, 1, in_channels=3, out_channels=1,
    ani_ratio=512 / 8, res_z=29, res_xy=6)``, whose ``channel_mult`` for 512 and ``attention_resolutions``
    ``"8,16,32"`` are in-plane down-sampling factors), which are the neurodiff bundle's defaults. The reference's
    ``in_channels`` counts x_t and the condition together (it reads the condition as ``x[:, out_channels:]``).
    """
    if in_channels <= out_channels:
        raise ValueError(
            f"in_channels ({in_channels}) must exceed out_channels ({out_channels}): NeuroDiff's input is x_t plus "
            "the condition."
        )
    return {
        "in_channels": out_channels,
        "cond_channels": in_channels - out_channels,
        "out_channels": out_channels,
        "channels": [int(m * model_channels) for m in channel_mult],
        "time_channels": model_channels,
        "num_res_blocks": num_res_blocks,
        "rgm_factors": [int(f) for f in attention_resolutions],
        "anisotropy_ratio": ani_ratio,
        "voxel_size": [float(res_z), float(res_xy), float(res_xy)],
    }


def _build(network: str, source: str, reference_args: dict) -> tuple[nn.Module, dict[str, object]]:
    """Our network for the reference arguments, and its arguments (what the bundle's network_def needs)."""
    if network == "ecsd":
        if reference_args.pop("self_condition", False) or reference_args.pop("skip_connect_condition_fmap", False):
            raise ValueError(f"{source}: self_condition / skip_connect_condition_fmap networks are not supported.")
        args = network_args(**reference_args)
        return ECSDUNet(**args), args
    args = neurodiff_network_args(**reference_args)
    return NeuroDiffUNet(**args), args


def convert(
    checkpoint: str | os.PathLike, out: str | os.PathLike | None = None, network: str = "ecsd", **reference_args
) -> nn.Module:
    """Convert ``checkpoint`` (public code) into ``out`` (our keys) and return our network with those weights.

    Args:
        checkpoint: the file the public code wrote (forms: the module docstring).
        out: output ``.pt``; default the bundle's ``models/model.pt`` (``bundles/ecsd`` or ``bundles/neurodiff``).
        network: ``"ecsd"`` (default; ``reference_args`` are the ``Unet`` arguments of :func:`network_args`) or
            ``"neurodiff"`` (``reference_args`` are the ``NeuroDiff`` arguments of :func:`neurodiff_network_args`).

    Raises:
        ValueError: naming ``checkpoint``, for a file that cannot be read, keys that are not the reference network's,
            or keys / tensor shapes that do not fit the given arguments (the missing and unexpected keys listed).
    """
    if network not in REFERENCES:
        raise ValueError(f"convert: network must be one of {sorted(REFERENCES)}, got {network!r}.")
    reference, source = REFERENCES[network], str(checkpoint)
    out = reference.default_out if out is None else out
    try:
        obj = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for missing, corrupt or foreign files
        raise ValueError(f"{source}: cannot be read as a PyTorch checkpoint: {err}") from err
    described = ", ".join(f"{k}={v!r}" for k, v in reference_args.items())
    state = reference.rename(reference_state_dict(obj, source, network), source)
    model, args = _build(network, source, reference_args)
    expected = model.state_dict()
    # NeuroDiffUNet's RGM buffers rpge.resolution (the voxel size) have no reference counterpart: ours, as built
    state.update({k: v for k, v in expected.items() if k.endswith("rpge.resolution") and k not in state})
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{source}: does not fit {reference.name}({described}) (check the widths, levels and channel counts): "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, other shape (checkpoint vs expected) {wrong[:5]}"
        )
    model.load_state_dict(state, strict=True)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_save(model.state_dict(), out)
    logger.info("wrote %s; build the bundle's network_def with %s", out, json.dumps(args))
    return model


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="file written by the public reference code")
    parser.add_argument("--network", choices=sorted(REFERENCES), default="ecsd", help="the reference (default ecsd)")
    parser.add_argument("--out", help="output .pt (default: models/model.pt of the ecsd or neurodiff bundle)")
    ecsd = parser.add_argument_group("--network ecsd: the Cold SegDiffusion Unet arguments")
    ecsd.add_argument("--dim", type=int, help="Unet dim (required)")
    ecsd.add_argument("--image-size", type=int, help="Unet image_size, the FF-Parser map size (required)")
    ecsd.add_argument("--mask-channels", type=int, default=1, help="Unet mask_channels (default 1)")
    ecsd.add_argument("--input-img-channels", type=int, default=3, help="Unet input_img_channels (default 3)")
    ecsd.add_argument("--dim-mult", type=int, nargs="+", default=[1, 2, 4, 8], help="Unet dim_mult")
    ecsd.add_argument("--full-self-attn", type=int, nargs="+", default=[0, 0, 0, 1], help="Unet full_self_attn, 0/1")
    ecsd.add_argument("--attn-heads", type=int, default=4)
    ecsd.add_argument("--attn-dim-head", type=int, default=32)
    ecsd.add_argument("--mid-transformer-depth", type=int, default=1)
    ecsd.add_argument("--resnet-block-groups", type=int, default=8)
    nd = parser.add_argument_group("--network neurodiff: the NeuroDiff arguments (defaults: the public train.py's)")
    nd.add_argument("--model-channels", type=int, default=64, help="model_channels (train.py --num_channels)")
    nd.add_argument("--channel-mult", type=float, nargs="+", default=[0.5, 1, 1, 2, 2, 4, 4], help="channel_mult")
    nd.add_argument("--num-res-blocks", type=int, default=1)
    nd.add_argument("--attention-resolutions", type=int, nargs="+", default=[8, 16, 32],
                    help="in-plane down-sampling factors with Mamba (RGM) blocks")
    nd.add_argument("--in-channels", type=int, default=3, help="x_t plus condition channels (default 3)")
    nd.add_argument("--out-channels", type=int, default=1)
    nd.add_argument("--ani-ratio", type=float, default=64, help="input_size / depth_size (default 512 / 8)")
    nd.add_argument("--res-z", type=float, default=29, help="voxel size in z, nm (default 29)")
    nd.add_argument("--res-xy", type=float, default=6, help="voxel size in y and x, nm (default 6)")
    args = parser.parse_args(argv)
    if args.network == "ecsd":
        if args.dim is None or args.image_size is None:
            parser.error("--network ecsd needs --dim and --image-size")
        reference_args = {
            "dim": args.dim,
            "image_size": args.image_size,
            "mask_channels": args.mask_channels,
            "input_img_channels": args.input_img_channels,
            "dim_mult": args.dim_mult,
            "full_self_attn": [bool(a) for a in args.full_self_attn],
            "attn_heads": args.attn_heads,
            "attn_dim_head": args.attn_dim_head,
            "mid_transformer_depth": args.mid_transformer_depth,
            "resnet_block_groups": args.resnet_block_groups,
        }
    else:
        reference_args = {
            "model_channels": args.model_channels,
            "channel_mult": args.channel_mult,
            "num_res_blocks": args.num_res_blocks,
            "attention_resolutions": args.attention_resolutions,
            "in_channels": args.in_channels,
            "out_channels": args.out_channels,
            "ani_ratio": args.ani_ratio,
            "res_z": args.res_z,
            "res_xy": args.res_xy,
        }
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        convert(args.checkpoint, args.out, network=args.network, **reference_args)
    except ValueError as err:
        logger.error("%s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
