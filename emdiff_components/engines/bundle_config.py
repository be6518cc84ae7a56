"""Small functions the bundle configs call where a JSON expression would otherwise carry the logic."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["ablation_tag", "default_bundle_root", "sampling_tile_size", "train_missing_model"]

logger = logging.getLogger(__name__)


def ablation_tag(**switches: bool) -> str:
    """The names of the switches that are on, joined by ``"-"`` in the order given: a folder name for an ablation.

    The ablation overlays of a bundle turn parts of a method off; each combination keeps its models and outputs
    in a folder of its own, and train, inference and evaluation agree on it because they compute the same tag.

    Args:
        switches: ``name=bool``, e.g. ``no_bffm=not use_bffm``; True puts the name in the tag.

    Returns:
        ``"name1-name2"`` for the switches that are on, ``""`` when none is.

    Example:
        >>> ablation_tag(no_bffm=True, no_adrb=False, mse_loss=True)
        'no_bffm-mse_loss'
    """
    wrong = {name: value for name, value in switches.items() if not isinstance(value, bool)}
    if wrong:
        raise TypeError(f"ablation_tag: switches must be bools, got {wrong!r}.")
    return "-".join(name for name, on in switches.items() if on)


def sampling_tile_size(
    patch_size: Sequence[int], device: torch.device | str, cpu_max_size: int = 256
) -> list[int]:
    """Tile size for tiled sampling: the training patch on a GPU; on CPU, in-plane edges capped at ``cpu_max_size``.

    A sampler's memory grows with the tile; on CPU smaller tiles keep 3D synthesis within a workstation's memory
    at a small cost in speed (the bundle README's measurements). Depth (the first axis) is never cut.

    Args:
        patch_size: the training patch ``(Z, Y, X)`` (or ``(Y, X)``: then only X is capped).
        device: the sampling device; CUDA devices get the whole patch.
        cpu_max_size: largest in-plane tile edge on other devices; default 256.

    Returns:
        The tile size as a list, ``patch_size[0]`` first.

    Example:
        >>> sampling_tile_size([8, 512, 512], "cpu")
        [8, 256, 256]
    """
    if cpu_max_size < 1:
        raise ValueError(f"sampling_tile_size: cpu_max_size must be a positive int, got {cpu_max_size!r}.")
    size = [int(s) for s in patch_size]
    if torch.device(device).type == "cuda":
        return size
    return [size[0], *(min(s, cpu_max_size) for s in size[1:])]


def default_bundle_root(name: str) -> str:
    """The bundle's folder as seen from the working directory: ``"."`` inside the bundle, ``bundles/<name>`` from the
    repository root, else ``"."`` (a downloaded bundle run from its own folder, or ``--bundle_root`` given).

    So the documented commands work from the repository root as written, without ``--bundle_root``.
    """
    if os.path.isfile(os.path.join("configs", "metadata.json")):
        return "."
    inside = os.path.join("bundles", name)
    return inside if os.path.isfile(os.path.join(inside, "configs", "metadata.json")) else "."


def train_missing_model(ckpt_path: str, config_file: str, enabled: bool = True, **overrides: Any) -> str:
    """Train ``config_file`` (with ``overrides``) when ``ckpt_path`` does not exist; return ``ckpt_path``.

    A bundle's inference config calls this so that it runs on a fresh checkout: a short training on the demo data
    (said in the log as a warning: such a model is for trying the pipeline, not for results). ``overrides`` are the
    training config's ids to set (data, widths, steps), e.g. a dict of the inference config passed as ``**@demo_train``.
    With ``enabled`` False a missing checkpoint is left for the loader to report.
    """
    if os.path.isfile(ckpt_path) or not enabled:
        return ckpt_path
    from monai.bundle import ConfigWorkflow

    configs = os.path.dirname(os.fspath(config_file))
    logger.warning(
        "%s does not exist: training it now with %s and %s (a short demo training: try the pipeline with it, train "
        "properly for results; --train_missing False turns this off).", ckpt_path, os.path.basename(config_file),
        ", ".join(f"{k}={v!r}" for k, v in overrides.items()),
    )
    start = time.perf_counter()
    workflow = ConfigWorkflow(config_file=config_file, meta_file=os.path.join(configs, "metadata.json"),
                              logging_file=os.path.join(configs, "logging.conf"), workflow_type="train", **overrides)
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    if not os.path.isfile(ckpt_path):
        raise RuntimeError(f"train_missing_model: {config_file} ran but did not write {ckpt_path}.")
    logger.info("train_missing_model: %s written in %.0f s.", ckpt_path, time.perf_counter() - start)
    return ckpt_path
