"""Checkpoints: atomic saving, resuming a killed run, loading network weights with a clear error."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from torch import nn

from ..utils import atomic_write
from .distributed import process_rank

__all__ = ["CheckpointError", "ResumableCheckpoint", "atomic_save", "load_network_weights"]

logger = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable or made for another network."""


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`~emdiff_components.utils.atomic_write`: a killed run never leaves half a file."""
    with atomic_write(path) as tmp:
        torch.save(obj, tmp)


class ResumableCheckpoint:
    """Ignite handler: save training state atomically every ``save_interval`` epochs and resume from it on start.

    MONAI's ``CheckpointSaver`` writes with ``atomic=False``, so a run killed while saving can leave a truncated file
    that looks complete; this handler writes ``<save_dir>/checkpoint.pt`` (every object in ``save_dict``, the trainer's
    epoch included) and, at the end, the network alone as ``<save_dir>/<final_filename>``, both through
    :func:`atomic_save`. With ``resume=True`` a run that finds ``checkpoint.pt`` continues from its epoch. The engine the
    handler is attached to is saved too (under ``"trainer"``), so configs need not reference the trainer from its own
    handler list (which would be a circular reference).

    Under ``torch.distributed`` (the ``multi_gpu_train.json`` overlays) every rank resumes from the file and only rank
    0 writes; a ``DistributedDataParallel`` / ``DataParallel`` network is saved and loaded through its ``.module``, as
    MONAI's ``CheckpointSaver`` does, so the files load into a bare network and a multi-GPU run resumes a
    single-process one and the other way round.

    Args:
        save_dir: folder of the checkpoints.
        save_dict: objects with ``state_dict`` / ``load_state_dict``, e.g. ``{"model": net, "optimizer": opt,
            "lr_scheduler": sched}``; the attached engine is added as ``"trainer"``.
        network_key: the entry of ``save_dict`` written alone as the final model.
        save_interval: epochs between saves.
        final_filename: file name of the final network weights.
        resume: load ``checkpoint.pt`` when the run starts, if it exists.
        min_seconds: a due save is skipped while fewer than ``min_seconds`` have passed since this run's last write
            (the first due save always writes, and so does the end of the run when a save was skipped), so that short
            epochs do not rewrite a large checkpoint every few seconds; a killed run loses at most that much time.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        save_dict: dict[str, Any],
        network_key: str = "model",
        save_interval: int = 1,
        final_filename: str = "model.pt",
        resume: bool = True,
        min_seconds: float = 0.0,
    ) -> None:
        if network_key not in save_dict:
            raise ValueError(f"ResumableCheckpoint: network_key {network_key!r} is not in save_dict {list(save_dict)}.")
        if save_interval < 1:
            raise ValueError(f"ResumableCheckpoint: save_interval must be >= 1, got {save_interval}.")
        if min_seconds < 0:
            raise ValueError(f"ResumableCheckpoint: min_seconds must be >= 0, got {min_seconds}.")
        self.save_dir = Path(save_dir)
        self.save_dict = dict(save_dict)
        self.network_key = network_key
        self.save_interval = save_interval
        self.final_filename = final_filename
        self.resume = resume
        self.min_seconds = float(min_seconds)
        self._last_write: float | None = None
        self._skipped = False

    @property
    def checkpoint_path(self) -> Path:
        return self.save_dir / "checkpoint.pt"

    def attach(self, engine: Engine) -> None:
        self.save_dict.setdefault("trainer", engine)
        if self.resume:
            engine.add_event_handler(Events.STARTED, self.load)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self.save)
        engine.add_event_handler(Events.COMPLETED, self.save_final)

    def load(self, engine: Engine | None = None) -> bool:
        if not self.checkpoint_path.is_file():
            return False
        requested_epochs = engine.state.max_epochs if engine is not None else None
        try:
            state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
            Checkpoint.load_objects(to_load=self._unwrapped(), checkpoint=state)
        except Exception as err:
            raise CheckpointError(
                f"cannot resume from {self.checkpoint_path}: {err}. Delete it to start afresh, or use another ckpt_dir."
            ) from err
        if engine is not None and requested_epochs is not None:
            # the saved trainer state carries the old run's max_epochs; this run's configuration decides how far to go
            engine.state.max_epochs = max(requested_epochs, engine.state.epoch)
            logger.info("resumed from %s at epoch %d of %d", self.checkpoint_path, engine.state.epoch, requested_epochs)
        return True

    def save(self, engine: Engine | None = None, force: bool = False) -> None:
        """Write ``checkpoint.pt`` (rank 0), unless ``min_seconds`` have not passed since the last write."""
        if process_rank() != 0:
            return
        now = time.monotonic()
        if not force and self._last_write is not None and now - self._last_write < self.min_seconds:
            self._skipped = True
            return
        atomic_save({k: v.state_dict() for k, v in self._unwrapped().items()}, self.checkpoint_path)
        self._last_write, self._skipped = now, False

    def save_final(self, engine: Engine | None = None) -> None:
        if process_rank() != 0:
            return
        if self._skipped:
            self.save(engine, force=True)
        path = self.save_dir / self.final_filename
        atomic_save(self._unwrapped()[self.network_key].state_dict(), path)
        logger.info("final weights written to %s", path)

    def _unwrapped(self) -> dict[str, Any]:
        wrappers = (nn.DataParallel, nn.parallel.DistributedDataParallel)
        return {k: v.module if isinstance(v, wrappers) else v for k, v in self.save_dict.items()}


def load_network_weights(network: nn.Module, path: str | os.PathLike, key: str | None = None) -> nn.Module:
    """Load ``path`` into ``network`` (strict), raising :class:`CheckpointError` that names the file and the mismatch.

    Accepts a bare state dict or a dict holding one under ``key`` (or under ``"model"`` / ``"network"`` /
    ``"state_dict"`` / ``"model_weights"`` when ``key`` is ``None``), as written by MONAI's ``CheckpointSaver`` (and
    ``"model_weights"`` by the public NeuroDiff segmentation trainer).

    Returns:
        the same ``network``, for use in a config expression.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train first or pass --ckpt_path to a .pt file.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"checkpoint {path} cannot be read as a PyTorch file: {err}") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict.")
    for candidate in ([key] if key else ["model", "network", "state_dict", "model_weights"]):
        if isinstance(state.get(candidate), dict):
            state = state[candidate]
            break
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(
        k for k in set(expected) & set(state) if hasattr(state[k], "shape") and state[k].shape != expected[k].shape
    )
    if missing or unexpected or wrong_shape:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

        details = []
        if missing:
            details.append(f"{len(missing)} missing keys: {few(missing)}")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected keys: {few(unexpected)}")
        if wrong_shape:
            shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in wrong_shape]
            details.append(f"{len(wrong_shape)} tensors of another shape: {few(shapes)}")
        raise CheckpointError(
            f"checkpoint {path} does not fit {type(network).__name__} (is it from another network or another "
            f"configuration?): " + "; ".join(details)
        )
    network.load_state_dict(state)
    logger.info("loaded weights from %s", path)
    return network
