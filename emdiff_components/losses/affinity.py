"""Class-balanced binary cross-entropy of predicted affinities (NeuroDiff's downstream segmentation loss)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

__all__ = ["ClassBalancedBCELoss"]

_REDUCTIONS = ("mean", "sum", "none")


class ClassBalancedBCELoss(_Loss):
    """Binary cross-entropy of affinity probabilities, positives re-weighted by the sample's foreground fraction.

    Lee et al. "Superhuman Accuracy on the SNEMI3D Connectomics Challenge" (https://arxiv.org/abs/1706.00120)
    balance the classes of the affinity loss; NeuroDiff's downstream network (Jiang et al., ISBI 2026,
    https://arxiv.org/abs/2601.15779) uses the public provider's weight map
    (``segmentation_scripts/dataloader/provider_train.py`` ``build_weight_map``). Per sample ``b``, over all its
    channels and voxels:

    - ``f_b = clip(mean(target_b), min_fraction, 1)`` (the share of positive affinities);
    - ``w = target * (1 - f_b) / f_b + (1 - target)``: negatives weigh 1, positives ``(1 - f) / f``, so both classes
      carry the same total weight (a sample whose affinities are all 1 has ``f = 1`` and contributes 0);
    - ``loss = reduce(w * BCE(input, target))`` with torch's BCE, whose logs are clamped at -100 (an input of exactly
      0 or 1 on the wrong side costs 100, not infinity).

    The weights are data: no gradient flows through them. REFERENCE.md names this weighted BCE; the public trainer
    builds the weight map but then trains with a plain ``nn.BCELoss`` (``main.py`` ``build_criterion``), which is
    ``class_balance=False`` here.

    Args:
        class_balance: apply the weight map (default True); False gives the public trainer's plain BCE.
        min_fraction: lower clip of ``f`` (> 0, <= 1); default 1e-3 (public).
        reduction: ``"mean"`` (default, over batch, channels and voxels, or over the masked elements), ``"sum"`` or
            ``"none"`` (element-wise, the input's shape).

    Example::

        loss_fn = ClassBalancedBCELoss()
        loss = loss_fn(network(image), affinity)  # both (B, 3, Z, Y, X), the prediction in [0, 1]
    """

    def __init__(self, class_balance: bool = True, min_fraction: float = 1e-3, reduction: str = "mean") -> None:
        if reduction not in _REDUCTIONS:
            raise ValueError(f"ClassBalancedBCELoss: reduction must be one of {_REDUCTIONS}, got {reduction!r}.")
        super().__init__(reduction=reduction)
        if not 0 < min_fraction <= 1:
            raise ValueError(f"ClassBalancedBCELoss: min_fraction must lie in (0, 1], got {min_fraction}.")
        self.class_balance, self.min_fraction = bool(class_balance), float(min_fraction)

    def forward(self, input: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Args: ``input`` probabilities ``(B, C, ...)``; ``target`` in [0, 1], same shape; ``mask`` (optional,
        broadcastable to it, e.g. ``(B, 1, ...)``): voxels where it is 0 are left out of ``f``, of the loss and of
        the mean."""
        name = type(self).__name__
        if input.shape != target.shape or input.ndim < 2:
            raise ValueError(
                f"{name}: input and target must have one shape (B, C, ...), got {tuple(input.shape)} and "
                f"{tuple(target.shape)}."
            )
        if not bool(((input >= 0) & (input <= 1)).all()):
            raise ValueError(f"{name}: input must hold probabilities in [0, 1] (apply a sigmoid first).")
        target = target.to(input.dtype)
        keep = torch.ones_like(target)
        if mask is not None:
            try:
                keep = torch.broadcast_to(mask.to(input.dtype), target.shape).detach()
            except RuntimeError:
                raise ValueError(
                    f"{name}: mask of shape {tuple(mask.shape)} does not broadcast to {tuple(target.shape)}."
                ) from None
        loss = F.binary_cross_entropy(input, target, reduction="none") * keep
        if self.class_balance:
            with torch.no_grad():
                dims = tuple(range(1, target.ndim))
                fraction = (target * keep).sum(dims) / keep.sum(dims).clamp_min(1)
                f = fraction.clamp(self.min_fraction, 1.0).view(-1, *([1] * (target.ndim - 1)))
                weight = target * (1 - f) / f + (1 - target)
            loss = loss * weight
        if self.reduction == "sum":
            return loss.sum()
        if self.reduction == "mean":
            return loss.sum() / keep.sum().clamp_min(1)
        return loss
