"""Deterministic train / validation hold-out of a datalist."""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["holdout_split"]


def holdout_split(datalist: Sequence[dict], fraction: float = 0.1) -> tuple[list[dict], list[dict]]:
    """Hold out ``fraction`` of the entries, evenly spaced through the list, for validation (no randomness).

    At least one entry is held out when ``fraction > 0`` and there are two or more entries; at least one is kept
    for training.

    Returns:
        ``(train, validation)`` lists.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"holdout_split: fraction must be in [0, 1), got {fraction}.")
    count = len(datalist)
    num_val = 0 if fraction == 0 or count < 2 else min(count - 1, max(1, round(count * fraction)))
    picked = set(np.linspace(0, count - 1, num_val + 2)[1:-1].round().astype(int).tolist()) if num_val else set()
    train = [d for i, d in enumerate(datalist) if i not in picked]
    val = [d for i, d in enumerate(datalist) if i in picked]
    return train, val
