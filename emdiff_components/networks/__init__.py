"""Networks of the emdiff bundles (one file per network; shared pieces in ``blocks``)."""

from __future__ import annotations

from .ecsd_unet import ECSDUNet

__all__ = ["ECSDUNet"]
from .biedsnet import BIEDSNet

__all__ += ["BIEDSNet"]
from .neurodiff_unet import NeuroDiffUNet

__all__ += ["NeuroDiffUNet"]
