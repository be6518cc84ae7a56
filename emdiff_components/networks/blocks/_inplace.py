"""Private helpers that reuse buffers when no autograd graph is recorded.

On CPU, every fresh multi-megabyte tensor costs page faults (glibc returns large blocks to the OS on free), which
made element-wise ops about 4x slower than the same ops in place in the ECSD profile. With gradients off (sampling)
nothing needs the intermediate values, so the network overwrites its own temporaries instead.
"""

from __future__ import annotations

import torch

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


def scale_shift_(fresh: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``fresh * scale + shift``, in place on the temporary ``fresh`` when no graph is recorded."""
    if _reuse():
        return fresh.mul_(scale).add_(shift)
    return torch.addcmul(shift, fresh, scale)
