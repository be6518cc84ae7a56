"""Shared pytest fixtures: one torch thread per xdist worker, the locale kept across tests; where the real data sets are
(``../shared/data``)."""

from __future__ import annotations

import locale
import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _one_thread_per_xdist_worker():
    """Under pytest-xdist, one torch thread a worker (restored at the end of the session).

    Each worker is a process of its own: two workers with two OpenMP threads each would oversubscribe the two cores,
    and OpenMP's spin-waiting then slows small convolutions by an order of magnitude. Set here, not at import, so that
    collecting the tests changes nothing.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _keep_locale():
    """Restore the locale after every test: ITK's GDCM (tests that write DICOM with ITK directly) sets it to "C", which
    makes Python's default text encoding ASCII for every later test of the worker (the package's own ITK calls restore
    it themselves, ``data/itk_io.py``)."""
    saved = locale.setlocale(locale.LC_ALL)
    yield
    if locale.setlocale(locale.LC_ALL) != saved:
        locale.setlocale(locale.LC_ALL, saved)


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
