"""Turn a checkpoint trained with the public Cold SegDiffusion code into the ecsd bundle's ``models/model.pt``.

The public ``Unet`` (Yan et al. "Cold SegDiffusion", KBS 2024; ``TimesXY/Cold-SegDiffusion``, ``SegDiffusion.py``)
and ``emdiff_components.networks.ECSDUNet`` compute the same function; only the names and a few tensor layouts
differ (the key map: ``emdiff_components.networks.reference_weights``). Give the ``Unet`` arguments the checkpoint
was trained with; the output file holds ``ECSDUNet`` weights under our keys and loads with
``emdiff_components.engines.load_network_weights`` (the bundle's inference / evaluate configs). The bundle's
``network_def`` must then be built with the arguments this script logs (``channels``, ``filter_size``, ...).

What the file may hold (the repository does not include its trainer, ``driver.py`` / ``model_train.py``, so every
usual form is accepted): the ``Unet`` state_dict itself; the ``MedSegDiff`` wrapper's state_dict (keys ``model.*``
plus the schedule buffers ``betas``, ``alphas_cum_prod``, ..., which are dropped); either one under ``"model"``,
``"state_dict"``, ``"model_state_dict"``, ``"ema"``, ``"ema_model"``, ``"net"`` or ``"network"``; the
``ema_pytorch.EMA`` state_dict (its ``ema_model.*`` weights are used); ``module.`` prefixes of
DataParallel / DDP. Not supported (clear error): ``self_condition=True`` and ``skip_connect_condition_fmap=True``.

Usage::

    python scripts/convert_reference_weights.py run/model_best.pth --dim 64 --image-size 256 \\
        --mask-channels 1 --input-img-channels 1 [--dim-mult 1 2 4 8] [--out bundles/ecsd/models/model.pt]

Importable: ``convert(checkpoint, out, **unet_args) -> ECSDUNet`` (the loaded network).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from emdiff_components.engines import atomic_save
from emdiff_components.networks import ECSDUNet
from emdiff_components.networks.reference_weights import convert_cold_segdiff_state_dict

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
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "bundles" / "ecsd" / "models" / "model.pt"


def _strip(state: Mapping[str, object], prefix: str) -> dict[str, object]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def reference_state_dict(obj: object, source: str) -> dict[str, torch.Tensor]:
    """The ``Unet`` state_dict inside a loaded checkpoint ``obj`` (see the module docstring for the forms)."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"{source}: holds a {type(obj).__name__}, not a state_dict or a dict holding one.")
    for key in CONTAINER_KEYS:  # a training checkpoint: the weights under a usual key
        if isinstance(obj.get(key), Mapping) and obj[key]:
            return reference_state_dict(obj[key], source)
    state = dict(obj)
    if any(k.startswith("ema_model.") for k in state):  # ema_pytorch.EMA: the averaged copy, not the online one
        state = _strip(state, "ema_model.")
    while state and all(k.startswith("module.") for k in state):  # DataParallel / DDP
        state = _strip(state, "module.")
    if any(k.startswith("model.") for k in state):  # MedSegDiff(model=Unet): drop the schedule buffers
        state = _strip(state, "model.")
    state = {k: v for k, v in state.items() if k not in SCHEDULE_BUFFERS}
    not_tensors = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
    if not state or not_tensors:
        raise ValueError(
            f"{source}: no Cold SegDiffusion Unet state_dict found (non-tensor entries: {not_tensors[:5]})."
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


def convert(checkpoint: str | os.PathLike, out: str | os.PathLike = DEFAULT_OUT, **unet_args) -> ECSDUNet:
    """Convert ``checkpoint`` (public code) into ``out`` (our keys); ``unet_args`` are the ``Unet`` arguments.

    Raises:
        ValueError: naming ``checkpoint``, for a file that cannot be read, keys that are not Cold SegDiffusion ``Unet``
            keys, or tensors whose shapes do not fit the given arguments.
    """
    source = str(checkpoint)
    try:
        obj = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for missing, corrupt or foreign files
        raise ValueError(f"{source}: cannot be read as a PyTorch checkpoint: {err}") from err
    if unet_args.pop("self_condition", False) or unet_args.pop("skip_connect_condition_fmap", False):
        raise ValueError(f"{source}: self_condition / skip_connect_condition_fmap networks are not supported.")
    state = convert_cold_segdiff_state_dict(reference_state_dict(obj, source), source)
    args = network_args(**unet_args)
    network = ECSDUNet(**args)
    expected = network.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{source}: does not fit Unet({', '.join(f'{k}={v!r}' for k, v in unet_args.items())}) (check dim, "
            f"dim_mult, image_size and the channel counts): missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"other shape (checkpoint vs expected) {wrong[:5]}"
        )
    network.load_state_dict(state, strict=True)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_save(network.state_dict(), out)
    logger.info("wrote %s; build the bundle's network_def with %s", out, json.dumps(args))
    return network


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="file written by the public Cold SegDiffusion code")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output .pt (default: the ecsd bundle's model.pt)")
    parser.add_argument("--dim", type=int, required=True, help="Unet dim")
    parser.add_argument("--image-size", type=int, required=True, help="Unet image_size (the FF-Parser map size)")
    parser.add_argument("--mask-channels", type=int, default=1, help="Unet mask_channels (default 1)")
    parser.add_argument("--input-img-channels", type=int, default=3, help="Unet input_img_channels (default 3)")
    parser.add_argument("--dim-mult", type=int, nargs="+", default=[1, 2, 4, 8], help="Unet dim_mult")
    parser.add_argument("--full-self-attn", type=int, nargs="+", default=[0, 0, 0, 1], help="Unet full_self_attn, 0/1")
    parser.add_argument("--attn-heads", type=int, default=4)
    parser.add_argument("--attn-dim-head", type=int, default=32)
    parser.add_argument("--mid-transformer-depth", type=int, default=1)
    parser.add_argument("--resnet-block-groups", type=int, default=8)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        convert(
            args.checkpoint,
            args.out,
            dim=args.dim,
            image_size=args.image_size,
            mask_channels=args.mask_channels,
            input_img_channels=args.input_img_channels,
            dim_mult=args.dim_mult,
            full_self_attn=[bool(a) for a in args.full_self_attn],
            attn_heads=args.attn_heads,
            attn_dim_head=args.attn_dim_head,
            mid_transformer_depth=args.mid_transformer_depth,
            resnet_block_groups=args.resnet_block_groups,
        )
    except ValueError as err:
        logger.error("%s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
