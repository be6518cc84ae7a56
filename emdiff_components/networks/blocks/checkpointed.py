"""What ECSDUNet keeps around its layers: the total stride and switchable activation checkpointing."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from ._memory import maybe_checkpoint

__all__ = ["CheckpointedUNet"]


class CheckpointedUNet(nn.Module):
    """Base of a 2D U-Net whose levels halve the size, with per-block activation checkpointing that can be switched.

    Subclasses set ``self.widths`` (one width per level) and list the sub-modules that checkpoint on their own in
    :meth:`checkpointed_modules`; :meth:`_run` wraps a block call in checkpointing while training.
    """

    widths: list[int]

    @property
    def stride(self) -> int:
        """Total down-sampling ``2 ** (levels - 1)``: every input size must be divisible by it."""
        return 2 ** (len(self.widths) - 1)

    def checkpointed_modules(self) -> Iterable[nn.Module]:
        """Sub-modules with a ``use_checkpointing`` switch of their own; none by default."""
        return ()

    @property
    def use_checkpointing(self) -> bool:
        """Whether training-mode forward passes recompute activations in backward (settable; reaches every block)."""
        return self._use_checkpointing

    @use_checkpointing.setter
    def use_checkpointing(self, value: bool) -> None:
        self._use_checkpointing = bool(value)
        for module in self.checkpointed_modules():
            module.use_checkpointing = self._use_checkpointing

    def _run(self, fn: Callable[..., torch.Tensor], *args: torch.Tensor | None) -> torch.Tensor:
        # recompute in backward instead of storing activations; only when training with a graph being built
        return maybe_checkpoint(self.use_checkpointing and self.training, fn, *args)
