"""Fusion of an ensemble of sampled segmentation masks, with a per-pixel uncertainty map.

A diffusion segmenter draws a different mask for every noise seed. MedSegDiff (Wu et al., "MedSegDiff: Medical Image
Segmentation with Diffusion Probabilistic Model", MIDL 2024, https://arxiv.org/abs/2211.00611) samples the model
several times and fuses the samples; the spread of the samples is a per-pixel uncertainty estimate.
"""

from __future__ import annotations

import torch

__all__ = ["staple", "fuse_ensemble"]

FUSION_METHODS = ("mean", "majority", "staple")
# Keeps log(p), log(1 - p), ... finite once an estimate reaches exactly 0 or 1 (a perfect rater), so that
# contradictory votes give a ratio of two tiny numbers instead of 0 / 0.
_LOG_EPS = 1e-15


def _check_unit_interval(name: str, argument: str, values: torch.Tensor) -> None:
    # written as a negation so that NaN counts as out of range
    if not bool(((values >= 0) & (values <= 1)).all()):
        raise ValueError(f"{name}: {argument} must hold values in [0, 1], got min {values.min()} max {values.max()}.")


def _e_step(decisions: torch.Tensor, p: torch.Tensor, q: torch.Tensor, prior: float) -> torch.Tensor:
    """Posterior foreground probability W of every pixel (Warfield 2004, eqs. 14-16), in the log domain.

    Args:
        decisions: (K, N) float64 {0, 1}, D_ij with rater j along dim 0.
        p: (K,) sensitivities. q: (K,) specificities. prior: f(T_i = 1).

    Returns:
        (N,) float64 W_i.
    """
    log_p, log_1mp = p.clamp(_LOG_EPS, 1).log(), (1 - p).clamp(_LOG_EPS, 1).log()
    log_q, log_1mq = q.clamp(_LOG_EPS, 1).log(), (1 - q).clamp(_LOG_EPS, 1).log()
    d = decisions
    # eq. 14: a_i = f(T_i=1) prod_{j: D_ij=1} p_j prod_{j: D_ij=0} (1 - p_j)
    # the prior is not clamped: prior 0 (1) must give W = 0 (1) exactly, via log 0 = -inf
    log_a = torch.log(torch.tensor(prior, dtype=d.dtype, device=d.device)) + (
        d * log_p[:, None] + (1 - d) * log_1mp[:, None]
    ).sum(0)
    # eq. 15: b_i = f(T_i=0) prod_{j: D_ij=0} q_j prod_{j: D_ij=1} (1 - q_j)
    log_b = torch.log(torch.tensor(1 - prior, dtype=d.dtype, device=d.device)) + (
        (1 - d) * log_q[:, None] + d * log_1mq[:, None]
    ).sum(0)
    # eq. 16: W_i = a_i / (a_i + b_i) = sigmoid(log a_i - log b_i)
    return torch.sigmoid(log_a - log_b)


def staple(
    members: torch.Tensor, max_iterations: int = 100, tolerance: float = 1e-6, prior: float | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Binary STAPLE: expectation-maximisation of the true mask and of every rater's sensitivity and specificity.

    Warfield, Zou, Wells, "Simultaneous Truth and Performance Level Estimation (STAPLE): An Algorithm for the
    Validation of Image Segmentation", IEEE TMI 23(7):903-921, 2004, https://doi.org/10.1109/TMI.2004.828354.

    The foreground prior f(T_i = 1) is one global number (default: the mean of all member votes, as in the paper's
    global prior). Every rater starts at p_j = q_j = 0.99 (raters assumed good but not perfect, so that no vote is
    ruled out at the first E-step). Each iteration runs an E-step (posterior W from p, q) and an M-step (p, q from W);
    the loop stops when the largest change of any p_j or q_j is below ``tolerance`` or after ``max_iterations``.
    A final E-step with the last p, q gives the returned W. Runs in float64 on the members' device.

    Args:
        members: (K, *spatial) binary {0, 1} masks (bool, integer or float), one per rater; K >= 1.
        max_iterations: at most this many EM iterations, >= 1. Default 100.
        tolerance: convergence threshold on the change of p and q, > 0. Default 1e-6.
        prior: global foreground prior in [0, 1]; None (default) uses the mean of ``members``.

    Returns:
        (W, p, q): W (*spatial) float32 posterior foreground probability in [0, 1] (threshold at 0.5 for a mask);
        p (K,) and q (K,) float32 estimated sensitivity and specificity of every member.

    Raises:
        ValueError: fewer than 1 member or no spatial dim, non-binary values, max_iterations < 1, tolerance <= 0,
            prior outside [0, 1].
    """
    if not isinstance(members, torch.Tensor):
        raise TypeError(f"staple: members must be a torch.Tensor, got {type(members).__name__}.")
    if members.ndim < 2 or members.shape[0] < 1:
        raise ValueError(f"staple: members must have shape (K, *spatial) with K >= 1, got {tuple(members.shape)}.")
    if members.numel() == 0:
        raise ValueError(f"staple: members must not be empty, got shape {tuple(members.shape)}.")
    decisions = members.detach().to(torch.float64).reshape(members.shape[0], -1)
    if not bool(((decisions == 0) | (decisions == 1)).all()):
        raise ValueError("staple: members must be binary (values 0 and 1 only).")
    if int(max_iterations) < 1:
        raise ValueError(f"staple: max_iterations must be >= 1, got {max_iterations}.")
    if not tolerance > 0:
        raise ValueError(f"staple: tolerance must be > 0, got {tolerance}.")
    if prior is None:
        prior = float(decisions.mean())
    elif not 0 <= prior <= 1:
        raise ValueError(f"staple: prior must be in [0, 1] or None, got {prior}.")

    num = members.shape[0]
    p = torch.full((num,), 0.99, dtype=torch.float64, device=decisions.device)
    q = torch.full_like(p, 0.99)
    for _ in range(int(max_iterations)):
        weights = _e_step(decisions, p, q, prior)
        # eq. 18: p_j = sum_{i: D_ij=1} W_i / sum_i W_i
        # eq. 19: q_j = sum_{i: D_ij=0} (1 - W_i) / sum_i (1 - W_i)
        fg, bg = weights.sum(), (1 - weights).sum()
        # with no (or only) foreground posterior mass, sensitivity (specificity) is undefined: keep the old value
        tiny = torch.finfo(torch.float64).tiny
        p_new = torch.where(fg > 0, (decisions @ weights) / fg.clamp_min(tiny), p)
        q_new = torch.where(bg > 0, ((1 - decisions) @ (1 - weights)) / bg.clamp_min(tiny), q)
        change = torch.maximum((p_new - p).abs().max(), (q_new - q).abs().max())
        p, q = p_new, q_new
        if float(change) < tolerance:
            break
    weights = _e_step(decisions, p, q, prior)
    return weights.reshape(members.shape[1:]).float(), p.float(), q.float()


def fuse_ensemble(
    members: torch.Tensor, method: str = "mean", threshold: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fuse K sampled masks into one mask and a per-pixel uncertainty map.

    MedSegDiff (Wu et al., "MedSegDiff: Medical Image Segmentation with Diffusion Probabilistic Model", MIDL 2024,
    https://arxiv.org/abs/2211.00611) fuses an ensemble of diffusion samples; STAPLE follows Warfield et al.,
    IEEE TMI 23(7), 2004 (see :func:`staple`).

    Methods:
        - ``"mean"``: average the raw member values over K, foreground where the mean is > ``threshold``.
        - ``"majority"``: binarise each member (value > ``threshold``), foreground where strictly more than half of
          the K members vote foreground; a tie (K even, exactly K / 2 votes) goes to background.
        - ``"staple"``: binarise each member (value > ``threshold``), run :func:`staple` separately for every batch
          item and channel (default prior and settings), foreground where W >= 0.5.

    The uncertainty is the population standard deviation over K of the binarised members, sqrt(f (1 - f)) with f the
    fraction of foreground votes: 0 where all members agree, 0.5 at an even split.

    Args:
        members: (K, B, C, *spatial) values in [0, 1] (probabilities or binary masks), one sample per ensemble member
            along dim 0; usually C = 1; at least one spatial dim.
        method: ``"mean"`` (default), ``"majority"`` or ``"staple"``.
        threshold: binarisation threshold, in the open interval (0, 1). Default 0.5.

    Returns:
        (mask, uncertainty): mask (B, C, *spatial) int64 in {0, 1}; uncertainty (B, C, *spatial) float32 in [0, 0.5].

    Raises:
        ValueError: K < 1 or fewer than 4 dims, unknown method, threshold outside (0, 1), values outside [0, 1].

    Example:
        >>> samples = torch.tensor([1.0, 1.0, 0.0]).reshape(3, 1, 1, 1, 1)
        >>> mask, uncertainty = fuse_ensemble(samples, method="majority")
        >>> int(mask), round(float(uncertainty), 4)
        (1, 0.4714)
    """
    if not isinstance(members, torch.Tensor):
        raise TypeError(f"fuse_ensemble: members must be a torch.Tensor, got {type(members).__name__}.")
    if members.ndim < 4 or members.shape[0] < 1:
        raise ValueError(
            f"fuse_ensemble: members must have shape (K, B, C, *spatial) with K >= 1, got {tuple(members.shape)}."
        )
    if method not in FUSION_METHODS:
        raise ValueError(f"fuse_ensemble: method must be one of {FUSION_METHODS}, got {method!r}.")
    if not 0 < threshold < 1:
        raise ValueError(f"fuse_ensemble: threshold must be in the open interval (0, 1), got {threshold}.")
    values = members.detach().float()
    if values.numel() > 0:
        _check_unit_interval("fuse_ensemble", "members", values)

    binary = (values > threshold).float()
    uncertainty = binary.std(dim=0, correction=0)
    if method == "mean":
        mask = values.mean(dim=0) > threshold
    elif method == "majority":
        # integer vote count: 2 * votes > K is "strictly more than half" without float rounding
        mask = 2 * binary.sum(dim=0).long() > members.shape[0]
    else:
        mask = torch.empty(values.shape[1:], dtype=torch.bool, device=values.device)
        for b in range(values.shape[1]):
            for c in range(values.shape[2]):
                mask[b, c] = staple(binary[:, b, c])[0] >= 0.5
    return mask.long(), uncertainty
