"""Private helpers that trade memory against time: in-place ops without autograd, and activation checkpointing.

On CPU, every fresh multi-megabyte tensor costs page faults (glibc returns large blocks to the OS on free), which
made element-wise ops about 4x slower than the same ops in place in the ECSD profile. With gradients off (sampling)
nothing needs the intermediate values, so the network overwrites its own temporaries instead.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.checkpoint import checkpoint

__all__: list[str] = []


def _reuse() -> bool:
    return not torch.is_grad_enabled()


def add_(fresh: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``fresh + other``, written into ``fresh`` when no graph is recorded (``fresh`` must be a temporary)."""
    if _reuse() and fresh.shape == torch.broadcast_shapes(fresh.shape, other.shape):
        return fresh.add_(other)
    return fresh + other


def silu_(fresh: torch.Tensor) -> torch.Tensor:
    """SiLU, in place on the temporary ``fresh`` when no graph is recorded."""
    return torch.nn.functional.silu(fresh, inplace=_reuse())


def sub_(fresh: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``fresh - other``, in place on the temporary ``fresh`` when no graph is recorded."""
    return fresh.sub_(other) if _reuse() else fresh - other


def exp_(fresh: torch.Tensor) -> torch.Tensor:
    """``exp(fresh)``, in place on the temporary ``fresh`` when no graph is recorded."""
    return fresh.exp_() if _reuse() else fresh.exp()


def scale_(fresh: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``fresh * scale``, in place on the temporary ``fresh`` when no graph is recorded."""
    return fresh.mul_(scale) if _reuse() else fresh * scale


def scale_shift_(fresh: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``fresh * scale + shift``, in place on the temporary ``fresh`` when no graph is recorded."""
    if _reuse():
        return fresh.mul_(scale).add_(shift)
    return torch.addcmul(shift, fresh, scale)


def maybe_checkpoint(enabled: bool, fn: Callable[..., torch.Tensor], *args: torch.Tensor | None) -> torch.Tensor:
    """``fn(*args)``, recomputed in backward instead of stored when ``enabled`` and a graph is being recorded.

    Every sample is checkpointed on its own (all ECSD blocks act per sample: GroupNorm, channel LayerNorm, FFT,
    attention), so the backward pass recomputes one sample's intermediates at a time; at batch 2 this halves the
    transient peak of the full-resolution blocks. ``args[0]`` sets the batch size; arguments whose first dimension
    matches it are split, others are passed whole.
    """
    if not (enabled and torch.is_grad_enabled()):
        return fn(*args)
    batch = args[0].shape[0]
    if batch == 1:
        return checkpoint(fn, *args, use_reentrant=False)
    outs = []
    for i in range(batch):
        sample = [a[i : i + 1] if isinstance(a, torch.Tensor) and a.ndim and a.shape[0] == batch else a for a in args]
        outs.append(checkpoint(fn, *sample, use_reentrant=False))
    return torch.cat(outs, dim=0)
