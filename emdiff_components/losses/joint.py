"""The joint diffusion segmentation loss of BIEDSNet: SmoothL1 + Dice + 0.5 BCE on the predicted mask, deep supervision."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from monai.losses import DeepSupervisionLoss, DiceLoss
from torch import nn
from torch.nn.modules.loss import _Loss

__all__ = ["JointSegmentationLoss"]


class _JointTerms(_Loss):
    """SmoothL1 on the mask in [-1, 1] plus Dice and weighted BCE on its probability ``(x + 1) / 2``."""

    def __init__(self, smooth_l1_beta: float, dice_weight: float, bce_weight: float, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.smooth_l1 = nn.SmoothL1Loss(beta=smooth_l1_beta)
        self.dice = DiceLoss(sigmoid=False, softmax=False, include_background=True, smooth_nr=1e-5, smooth_dr=1e-5)
        self.dice_weight, self.bce_weight = dice_weight, bce_weight

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.mode == "mse":
            return torch.mean((input - target) ** 2)
        prob = ((input + 1) / 2).clamp(1e-6, 1 - 1e-6)
        truth = ((target + 1) / 2).clamp(0, 1)
        bce = nn.functional.binary_cross_entropy(prob, truth)
        return self.smooth_l1(input, target) + self.dice_weight * self.dice(prob, truth) + self.bce_weight * bce


class JointSegmentationLoss(_Loss):
    """BIEDSNet's joint loss on x0_hat, with multi-layer (deep) supervision.

    Boundary-information-enhanced diffusion segmentation (BIEDSNet), REFERENCE.md section 2: loss = SmoothL1 (beta 1)
    + Dice + 0.5 BCE between the predicted mask x0_hat and the true mask, both in [-1, 1] (Dice and BCE on
    ``(x + 1) / 2``); with deep supervision the main output and the auxiliary heads are weighted 0.7 / 0.1 / 0.1 / 0.1
    and the target is resized to each head by MONAI's ``DeepSupervisionLoss`` (nearest neighbour).

    Args:
        smooth_l1_beta: SmoothL1's beta; default 1.0.
        dice_weight: weight of the Dice term; default 1.0.
        bce_weight: weight of the BCE term; default 0.5.
        deep_supervision_weights: weight of the main output and of each auxiliary head, in that order; default
            ``(0.7, 0.1, 0.1, 0.1)``.
        mode: ``"joint"`` (default) or ``"mse"`` (the paper's ablation: plain MSE).

    Example::

        loss = JointSegmentationLoss()
        value = loss([x0_main, aux1, aux2, aux3], target)  # or loss(x0_main, target) without deep supervision
    """

    def __init__(
        self,
        smooth_l1_beta: float = 1.0,
        dice_weight: float = 1.0,
        bce_weight: float = 0.5,
        deep_supervision_weights: Sequence[float] = (0.7, 0.1, 0.1, 0.1),
        mode: str = "joint",
    ) -> None:
        super().__init__()
        if mode not in ("joint", "mse"):
            raise ValueError(f"JointSegmentationLoss: mode must be 'joint' or 'mse', got {mode!r}.")
        weights = [float(w) for w in deep_supervision_weights]
        if not weights or any(w < 0 for w in weights):
            raise ValueError(f"JointSegmentationLoss: deep_supervision_weights must be non-negative, got {weights}.")
        self.terms = _JointTerms(smooth_l1_beta, dice_weight, bce_weight, mode)
        self.deep = DeepSupervisionLoss(self.terms, weights=weights)
        self.weights = weights

    def forward(
        self, input: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        """``input``: x0_hat ``(B, C, H, W)`` or [main, aux_1, ...] (auxiliary heads may be smaller); ``target``: the mask.

        Extra keyword arguments of the diffusion inferer (``timesteps``, ``boundary_weight``) are accepted and unused.
        """
        if isinstance(input, torch.Tensor):
            return self.terms(input, target)
        if len(input) > len(self.weights):
            raise ValueError(
                f"JointSegmentationLoss: {len(input)} outputs but {len(self.weights)} deep_supervision_weights."
            )
        return self.deep(list(input), target)
