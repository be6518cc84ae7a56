"""Networks of the emdiff bundles (one file per network; shared pieces in ``blocks``)."""

from __future__ import annotations

from .ecsd_unet import ECSDUNet

__all__ = ["ECSDUNet"]
from .biedsnet import BIEDSNet

__all__ += ["BIEDSNet"]
from .neurodiff_unet import NeuroDiffUNet

__all__ += ["NeuroDiffUNet"]
from .reference_weights import (
    COLD_SEGDIFF_TRANSFORMS,
    cold_segdiff_key_map,
    convert_cold_segdiff_state_dict,
    convert_neurodiff_state_dict,
    neurodiff_key_map,
)

__all__ += [
    "COLD_SEGDIFF_TRANSFORMS",
    "cold_segdiff_key_map",
    "convert_cold_segdiff_state_dict",
    "neurodiff_key_map",
    "convert_neurodiff_state_dict",
]
from .superhuman import SuperhumanUNet, convert_superhuman_state_dict

__all__ += ["SuperhumanUNet", "convert_superhuman_state_dict"]
