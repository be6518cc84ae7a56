"""Shared pytest fixtures: the location of the small real data sets in ``../shared/data``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Under pytest-xdist each worker is a process of its own: two workers with two OpenMP threads each would oversubscribe
# the two cores, and OpenMP's spin-waiting then slows small convolutions by an order of magnitude. One thread a worker.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


def _shared_data_path() -> Path:
    env = os.environ.get("EMDIFF_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the shared data folder: ``$EMDIFF_SHARED_DATA`` or ``<repo>/../shared/data``.

    When the folder is missing the test fails under CI (``CI=true``) and is skipped elsewhere.
    """
    path = _shared_data_path()
    if not path.is_dir():
        message = f"shared data folder {str(path)!r} not found (set EMDIFF_SHARED_DATA)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path.resolve()
