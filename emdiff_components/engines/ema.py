"""Exponential moving average of the network's weights, delayed and updated every few steps (NeuroDiff's trainer)."""

from __future__ import annotations

import copy
import logging
from typing import Any, Mapping

import torch
from ignite.engine import Engine, Events
from torch import nn

__all__ = ["DelayedEMA"]

logger = logging.getLogger(__name__)


def _unwrap(network: nn.Module) -> nn.Module:
    # DistributedDataParallel / DataParallel keep the real network on .module (their state_dict keys carry "module.")
    return network.module if isinstance(getattr(network, "module", None), nn.Module) else network


class DelayedEMA:
    """Ignite handler keeping an EMA copy of the network, as the denoising-diffusion trainer NeuroDiff uses.

    Rule of the reference trainer (lucidrains' ``denoising-diffusion-pytorch``, kept by med-ddpm and NeuroDiff): after
    optimiser step ``s`` (1-based; here ``engine.state.iteration``), only when ``s % update_every == 0``:
    if ``s < start_step`` the EMA model is reset to a copy of the network, otherwise each parameter becomes
    ``ema <- decay * ema + (1 - decay) * theta``. Between updates it does not change. Buffers (none in GroupNorm
    U-Nets) are copied from the network at every update; the reference leaves them as of its last reset.

    Args:
        network: the trained network (a DDP / DataParallel wrapper is unwrapped through ``.module``).
        decay: EMA decay in [0, 1], default 0.995.
        update_every: update period in steps, default 10.
        start_step: first step that averages; earlier updates copy the network, default 2000.

    Attributes:
        ema_model: the averaged network, a deep copy in eval mode without gradients; its ``state_dict`` keys are the
            network's (no ``module.`` prefix), so a checkpoint of it loads into a bare network.

    Example::

        ema = DelayedEMA(network, decay=0.995, update_every=10, start_step=2000)
        ema.attach(trainer)  # then checkpoint ema.ema_model and sample with it
    """

    def __init__(
        self, network: nn.Module, decay: float = 0.995, update_every: int = 10, start_step: int = 2000
    ) -> None:
        if not isinstance(network, nn.Module):
            raise TypeError(f"DelayedEMA: network must be a torch.nn.Module, got {type(network).__name__}.")
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"DelayedEMA: decay must be in [0, 1], got {decay}.")
        if int(update_every) < 1:
            raise ValueError(f"DelayedEMA: update_every must be >= 1, got {update_every}.")
        if int(start_step) < 0:
            raise ValueError(f"DelayedEMA: start_step must be >= 0, got {start_step}.")
        self.network = network
        self.decay = float(decay)
        self.update_every = int(update_every)
        self.start_step = int(start_step)
        self.ema_model = copy.deepcopy(_unwrap(network)).eval().requires_grad_(False)

    def attach(self, engine: Engine) -> None:
        """Run :meth:`step` after every iteration of ``engine``."""
        if not engine.has_event_handler(self, Events.ITERATION_COMPLETED):
            engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        self.step(engine.state.iteration)

    def step(self, iteration: int) -> None:
        """Apply the reference rule for optimiser step ``iteration`` (1-based)."""
        if iteration % self.update_every != 0:
            return
        if iteration < self.start_step:
            self.reset()
        else:
            self.update()

    def _pairs(self) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[tuple[torch.Tensor, torch.Tensor]]]:
        source = _unwrap(self.network)
        params = list(zip(self.ema_model.parameters(), source.parameters()))
        buffers = list(zip(self.ema_model.buffers(), source.buffers()))
        if params and params[0][0].device != params[0][1].device:
            # the network was moved after this handler was built: follow it
            self.ema_model.to(params[0][1].device)
            params = list(zip(self.ema_model.parameters(), source.parameters()))
            buffers = list(zip(self.ema_model.buffers(), source.buffers()))
        return params, buffers

    @torch.no_grad()
    def reset(self) -> None:
        """Make the EMA model an exact copy of the network (parameters and buffers)."""
        params, buffers = self._pairs()
        for ema, current in params + buffers:
            ema.copy_(current)

    @torch.no_grad()
    def update(self) -> None:
        """``ema <- decay * ema + (1 - decay) * theta`` for every parameter; buffers copied."""
        params, buffers = self._pairs()
        for ema, current in params:
            if ema.is_floating_point():
                ema.lerp_(current, 1.0 - self.decay)
            else:
                ema.copy_(current)
        for ema, current in buffers:
            ema.copy_(current)

    def state_dict(self) -> dict[str, Any]:
        """The EMA model's weights (so ignite's ``Checkpoint`` can save the handler itself)."""
        return self.ema_model.state_dict()

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the EMA model's weights (resuming a run)."""
        self.ema_model.load_state_dict(state_dict)
