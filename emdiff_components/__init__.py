"""Shared components of the emdiff MONAI bundles (ECSD, BIEDSNet, NeuroDiff, cell cascade).

Importing the package needs only torch, numpy and monai; file formats and OpenCV come in through
``monai.utils.optional_import`` where they are used.
"""

from __future__ import annotations

from . import data, diffusion, engines, losses, metrics, networks, transforms, utils
from .utils import (
    atomic_write,
    check_positive_ints,
    check_voxel_size,
    install_cause_last_hook,
    is_positive_int,
    natural_sort_key,
    root_cause,
)

install_cause_last_hook()

__all__ = [
    "data",
    "diffusion",
    "engines",
    "losses",
    "metrics",
    "networks",
    "transforms",
    "utils",
    "atomic_write",
    "check_voxel_size",
    "natural_sort_key",
    "is_positive_int",
    "check_positive_ints",
    "install_cause_last_hook",
    "root_cause",
    "__version__",
]

__version__ = "0.1.0"
