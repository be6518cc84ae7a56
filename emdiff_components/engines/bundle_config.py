"""Small functions the bundle configs call where a JSON expression would otherwise carry the logic."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["ablation_tag", "sampling_tile_size"]


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
