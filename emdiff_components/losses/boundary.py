"""Time-dependent boundary-aware MSE of ECSD (and DermoSegDiff's additive variant)."""

from __future__ import annotations

import torch
from torch.nn.modules.loss import _Loss

__all__ = ["boundary_time_exponent", "BoundaryAwareMSELoss"]

_COMBINES = ("multiply", "add")
_REDUCTIONS = ("mean", "sum", "none")


def boundary_time_exponent(timesteps: torch.Tensor, num_train_timesteps: int, gamma: float = 0.8) -> torch.Tensor:
    """Exponent ``(gamma * (T - t) / T) ** gamma`` of the time-adaptive boundary attention.

    Qi et al. "A Boundary-aware Cold-Diffusion Model for Electron Microscopy Segmentation" (ECSD), section 2.2:
    ``W_att = inv_dist ** exponent``. Early in denoising (large t) the exponent is small and ``W_att`` is flat; at
    ``t = 0`` it is ``gamma ** gamma`` (0.8 ** 0.8 = 0.8365) and the weights concentrate on the boundaries.

    Args:
        timesteps: time steps ``(B,)`` (or a scalar) in ``[0, num_train_timesteps]``.
        num_train_timesteps: T, the number of training time steps (>= 1).
        gamma: the decay shape (> 0); default 0.8 (ECSD).

    Returns:
        the exponent, same shape as ``timesteps``, floating (``timesteps``' float dtype, else the default dtype).
    """
    if isinstance(num_train_timesteps, bool) or not isinstance(num_train_timesteps, int) or num_train_timesteps < 1:
        raise ValueError(
            f"boundary_time_exponent: num_train_timesteps must be an int >= 1, got {num_train_timesteps!r}."
        )
    if not gamma > 0:
        raise ValueError(f"boundary_time_exponent: gamma must be > 0, got {gamma}.")
    t = torch.as_tensor(timesteps)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    # t outside [0, T] gives a negative base (NaN under a fractional power) or weights sharper than at t = 0.
    if t.numel() and (bool((t < 0).any()) or bool((t > num_train_timesteps).any())):
        raise ValueError(
            f"boundary_time_exponent: timesteps must lie in [0, {num_train_timesteps}], "
            f"got [{t.min().item()}, {t.max().item()}]."
        )
    return (gamma * (num_train_timesteps - t) / num_train_timesteps) ** gamma


class BoundaryAwareMSELoss(_Loss):
    """MSE between predicted and true clean masks, weighted by the time-adaptive boundary attention ``W_att``.

    Qi et al. "A Boundary-aware Cold-Diffusion Model for Electron Microscopy Segmentation" (ECSD), section 2.2;
    Bozorgpour et al. "DermoSegDiff: A Boundary-aware Segmentation Diffusion Model for Skin Lesion Delineation"
    (PRIME 2023), https://arxiv.org/abs/2308.02959.

    ``W_att = inv_dist ** boundary_time_exponent(t)`` per sample, with ``inv_dist`` from
    :class:`~emdiff_components.transforms.BoundaryDistanceWeight` (at ``t = T`` the exponent is 0 and ``0 ** 0 = 1``,
    so ``W_att = 1`` everywhere). Then

    - ``combine="multiply"`` (ECSD, default): ``loss = mean(W_att * (x0 - x0_hat) ** 2)``;
    - ``combine="add"`` (DermoSegDiff): ``loss = mean((x0 - x0_hat) ** 2)
      + boundary_loss_weight * mean(W_att * (x0 - x0_hat) ** 2)``.

    Without ``boundary_weight`` the loss is the plain MSE of Cold SegDiffusion (the ECSD ablation baseline). The
    weights are data, not parameters: no gradient flows into ``boundary_weight``.

    Args:
        num_train_timesteps: T of the diffusion schedule (>= 1); default 50 (ECSD).
        gamma: decay shape of the time exponent (> 0); default 0.8 (ECSD).
        combine: ``"multiply"`` (default, ECSD) or ``"add"`` (DermoSegDiff).
        boundary_loss_weight: weight of the boundary term for ``combine="add"`` (>= 0); default 0.25 (DermoSegDiff).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (element-wise ``(B, C, H, W)``).

    Example::

        loss_fn = BoundaryAwareMSELoss(num_train_timesteps=50)
        loss = loss_fn(x0_hat, x0, boundary_weight=inv_dist, timesteps=t)  # x0: (B, C, H, W), inv_dist: (B, 1, H, W)
    """

    def __init__(
        self,
        num_train_timesteps: int = 50,
        gamma: float = 0.8,
        combine: str = "multiply",
        boundary_loss_weight: float = 0.25,
        reduction: str = "mean",
    ) -> None:
        name = type(self).__name__
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{name}: reduction must be one of {_REDUCTIONS}, got {reduction!r}.")
        super().__init__(reduction=reduction)
        if isinstance(num_train_timesteps, bool) or not isinstance(num_train_timesteps, int) or num_train_timesteps < 1:
            raise ValueError(f"{name}: num_train_timesteps must be an int >= 1, got {num_train_timesteps!r}.")
        if not gamma > 0:
            raise ValueError(f"{name}: gamma must be > 0, got {gamma}.")
        if combine not in _COMBINES:
            raise ValueError(f"{name}: combine must be one of {_COMBINES}, got {combine!r}.")
        if not boundary_loss_weight >= 0:
            raise ValueError(f"{name}: boundary_loss_weight must be >= 0, got {boundary_loss_weight}.")
        self.num_train_timesteps = num_train_timesteps
        self.gamma = float(gamma)
        self.combine = combine
        self.boundary_loss_weight = float(boundary_loss_weight)

    def forward(
        self,
        input: torch.Tensor,
        target: torch.Tensor,
        boundary_weight: torch.Tensor | None = None,
        timesteps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Loss of ``input`` (x0_hat) against ``target`` (x0).

        Args:
            input: predicted clean mask ``(B, C, H, W)`` (any spatial rank).
            target: true clean mask, same shape.
            boundary_weight: ``inv_dist`` ``(B, 1, H, W)`` (broadcast over C) or ``(B, C, H, W)``; ``None``: plain MSE.
            timesteps: ``(B,)`` (or a scalar) time steps in ``[0, T]``; required with ``boundary_weight``.

        Returns:
            a scalar (``"mean"``, ``"sum"``) or the element-wise loss ``(B, C, H, W)`` (``"none"``).
        """
        name = type(self).__name__
        if input.shape != target.shape:
            raise ValueError(
                f"{name}: input and target shapes differ: input {tuple(input.shape)}, target {tuple(target.shape)}."
            )
        squared = (input - target) ** 2
        if boundary_weight is None:
            return self._reduce(squared)
        if timesteps is None:
            raise ValueError(f"{name}: timesteps are required when boundary_weight is given.")
        if input.ndim < 3:
            raise ValueError(f"{name}: input must be (B, C, *spatial), got shape {tuple(input.shape)}.")
        batch, channels = input.shape[:2]
        w = boundary_weight.shape
        if len(w) != input.ndim or w[0] != batch or w[1] not in (1, channels) or w[2:] != input.shape[2:]:
            raise ValueError(
                f"{name}: boundary_weight must be (B, 1 or C, *spatial) matching input: "
                f"boundary_weight {tuple(w)}, input {tuple(input.shape)}."
            )
        t = torch.as_tensor(timesteps, device=input.device)
        if t.ndim > 1 or (t.ndim == 1 and t.shape[0] != batch):
            raise ValueError(f"{name}: timesteps must be (B,) = ({batch},) or a scalar, got shape {tuple(t.shape)}.")
        exponent = boundary_time_exponent(t, self.num_train_timesteps, self.gamma)
        exponent = exponent.to(squared.dtype).reshape(-1, *([1] * (input.ndim - 1)))
        # 0 ** 0 = 1 in torch: at t = T the boundary attention is flat, as intended.
        w_att = boundary_weight.detach().to(device=squared.device, dtype=squared.dtype) ** exponent
        weighted = w_att * squared
        if self.combine == "multiply":
            return self._reduce(weighted)
        # mean(a) + w * mean(b) = mean(a + w * b): a and b have the same number of elements.
        return self._reduce(squared + self.boundary_loss_weight * weighted)

    def _reduce(self, loss: torch.Tensor) -> torch.Tensor:
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss
