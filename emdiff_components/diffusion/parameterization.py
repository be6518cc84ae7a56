"""What a diffusion network predicts, and the conversions between the three choices, written once.

Legend (Ho et al. 2020; Song et al. "Denoising Diffusion Implicit Models" eq. 4 and 12; Salimans & Ho 2022 for v):
``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``; the network predicts one of

- ``"epsilon"``: the noise ``eps``;
- ``"sample"``: the clean sample ``x_0``;
- ``"v_prediction"``: ``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0``.

Given ``x_t``, ``abar_t`` and any one of them, the other two follow. Every scheduler and inferer of the package goes
through these functions (MONAI's names: ``prediction_type``, ``alphas_cumprod``).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

__all__ = ["PREDICTION_TYPES", "split_prediction", "training_target", "check_prediction_type"]

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def _name(prediction_type: Any) -> str:
    """The string of a prediction type (MONAI passes a ``StrEnum``)."""
    value = str(getattr(prediction_type, "value", prediction_type))
    if value not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}.")
    return value


def _per_sample(abar: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """``abar`` as a tensor broadcastable to ``like``: a scalar, or one value per sample ``(B,)``."""
    abar = torch.as_tensor(abar, device=like.device, dtype=like.dtype)
    return abar.reshape(-1, *([1] * (like.ndim - 1))) if abar.ndim else abar


def split_prediction(
    model_output: torch.Tensor, sample: torch.Tensor, alpha_prod_t: torch.Tensor | float, prediction_type: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_0, eps)`` from the network's output at ``x_t = sample`` (DDIM eq. 12's "predicted x_0" and its noise).

    Args:
        model_output: the network's prediction (``prediction_type``), shaped like ``sample``.
        sample: ``x_t``.
        alpha_prod_t: ``abar_t``, a scalar or one per sample ``(B,)``.
        prediction_type: ``"epsilon"``, ``"sample"`` or ``"v_prediction"``.

    Returns:
        ``(x_0, eps)``, both shaped like ``sample``.
    """
    kind = _name(prediction_type)
    abar = _per_sample(alpha_prod_t, sample)
    a, s = abar.sqrt(), (1 - abar).sqrt()
    if kind == "epsilon":
        return (sample - s * model_output) / a, model_output
    if kind == "sample":
        return model_output, (sample - a * model_output) / s
    return a * sample - s * model_output, a * model_output + s * sample


def training_target(
    original: torch.Tensor, noise: torch.Tensor, alpha_prod_t: torch.Tensor | float, prediction_type: str
) -> torch.Tensor:
    """What the network is trained to output for ``x_t`` made from ``original`` (x_0) and ``noise`` (eps).

    Args:
        original: ``x_0``.
        noise: ``eps``, shaped like ``original``.
        alpha_prod_t: ``abar_t``, a scalar or one per sample ``(B,)``.
        prediction_type: ``"epsilon"`` (eps), ``"sample"`` (x_0) or ``"v_prediction"`` (``sqrt(abar) eps -
            sqrt(1 - abar) x_0``).
    """
    kind = _name(prediction_type)
    if kind == "epsilon":
        return noise
    if kind == "sample":
        return original
    abar = _per_sample(alpha_prod_t, original)
    return abar.sqrt() * noise - (1 - abar).sqrt() * original


def check_prediction_type(scheduler: Any, allowed: Sequence[str], owner: str) -> str:
    """The scheduler's ``prediction_type`` if it is one of ``allowed``; else a ``ValueError`` naming ``owner``."""
    found = getattr(scheduler, "prediction_type", None)
    value = str(getattr(found, "value", found))
    if value not in allowed:
        wanted = " or ".join(repr(a) for a in allowed)
        raise ValueError(
            f"{owner}: the scheduler must be built with prediction_type={wanted} (what the network is trained to "
            f"predict), got {found!r}."
        )
    return value
