"""Shared components of the emdiff MONAI bundles (ECSD, BIEDSNet, NeuroDiff, cell cascade).

Importing the package needs only torch, numpy and monai; file formats and OpenCV come in through
``monai.utils.optional_import`` where they are used.
"""

from __future__ import annotations

from . import data, diffusion, engines, losses, metrics, networks, transforms

__all__ = ["data", "diffusion", "engines", "losses", "metrics", "networks", "transforms", "__version__"]

__version__ = "0.1.0"
