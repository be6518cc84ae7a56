"""The diffusion training step for MONAI's ``SupervisedTrainer`` (its ``iteration_update`` hook)."""

from __future__ import annotations

from typing import Any

import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils.enums import CommonKeys as Keys

from .distributed import process_rank

__all__ = ["DiffusionTrainingStep"]


class DiffusionTrainingStep:
    """One optimisation step of a diffusion segmentation model, as ``SupervisedTrainer(iteration_update=...)``.

    MONAI's default iteration computes ``loss(inferer(inputs, net), targets)``; a diffusion loss also needs the sampled
    time steps and the per-sample boundary map, so this step asks the trainer's inferer for the whole loss
    (``engine.inferer.training_loss``). Everything else stays MONAI's: optimizer, AMP scaler, events, handlers.

    Args:
        image_key: batch key of the image ``(B, 1, H, W)``.
        label_key: batch key of the integer label ``(B, 1, H, W)``.
        weight_key: batch key of the boundary map (``None`` or a missing key: no boundary term).
        seed: seeds the generator that draws the training time steps (under ``torch.distributed`` plus the
            process's rank, so that the ranks of a multi-GPU run draw different time steps and noise).
        accumulation_steps: optimizer step every this many iterations, the gradients of the iterations in between
            summed (each loss divided by it, so the step sees their mean); default 1. NeuroDiff: batch 1, 2 steps.

    Example::

        trainer = SupervisedTrainer(..., inferer=cold_inferer, loss_function=BoundaryAwareMSELoss(),
                                    iteration_update=DiffusionTrainingStep(seed=0))
    """

    def __init__(
        self,
        image_key: str = "image",
        label_key: str = "label",
        weight_key: str | None = "boundary_weight",
        seed: int = 0,
        accumulation_steps: int = 1,
    ) -> None:
        if isinstance(accumulation_steps, bool) or not isinstance(accumulation_steps, int) or accumulation_steps < 1:
            raise ValueError(f"DiffusionTrainingStep: accumulation_steps must be an int >= 1, got {accumulation_steps!r}.")
        self.accumulation_steps = accumulation_steps
        self.image_key = image_key
        self.label_key = label_key
        self.weight_key = weight_key
        self.generator = torch.Generator().manual_seed(seed + process_rank())

    def __call__(self, engine: SupervisedTrainer, batchdata: dict[str, Any]) -> dict[str, torch.Tensor]:
        if batchdata is None:
            raise ValueError("DiffusionTrainingStep: the data loader returned no batch.")
        device, non_blocking = engine.state.device, engine.non_blocking
        image = torch.as_tensor(batchdata[self.image_key]).to(device, non_blocking=non_blocking)
        label = torch.as_tensor(batchdata[self.label_key]).to(device, non_blocking=non_blocking)
        weight = batchdata.get(self.weight_key) if self.weight_key else None
        if weight is not None:
            weight = torch.as_tensor(weight).to(device, non_blocking=non_blocking)
        epoch_fraction = (engine.state.epoch - 1) / max(1, engine.state.max_epochs or 1)

        engine.network.train()
        # iterations 1..k of every group of k share one optimizer step, taken at the last of them
        first = (engine.state.iteration - 1) % self.accumulation_steps == 0
        last = engine.state.iteration % self.accumulation_steps == 0
        if first:
            engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        with torch.autocast(device_type=torch.device(device).type, enabled=bool(engine.amp)):
            out = engine.inferer.training_loss(
                engine.network,
                image,
                label,
                loss_function=engine.loss_function,
                boundary_weight=weight,
                epoch_fraction=epoch_fraction,
                generator=self.generator,
            )
        engine.state.output = {Keys.IMAGE: image, Keys.LABEL: label, Keys.PRED: out.prediction, Keys.LOSS: out.loss}
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        scaled = out.loss / self.accumulation_steps
        if engine.amp and engine.scaler is not None:
            engine.scaler.scale(scaled).backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            if last:
                engine.scaler.step(engine.optimizer)
                engine.scaler.update()
        else:
            scaled.backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            if last:
                engine.optimizer.step()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
