from __future__ import annotations

from .array import ConditionToOneHot, LabelsToMembranes, RandElasticLabelDeform, RandPlaceMitochondria
from .dictionary import (
    ConditionToOneHotd,
    LabelsToMembranesd,
    RandElasticLabelDeformd,
    LabelsToConditiond,
    RandPlaceMitochondriad,
    RemodelMasksd,
)
from .build import mitochondria_library
from .library import MitochondriaLibrary

__all__ = [
    "RandElasticLabelDeform",
    "LabelsToMembranes",
    "RandPlaceMitochondria",
    "ConditionToOneHot",
    "RandElasticLabelDeformd",
    "LabelsToMembranesd",
    "RandPlaceMitochondriad",
    "ConditionToOneHotd",
    "RemodelMasksd",
    "LabelsToConditiond",
    "MitochondriaLibrary",
    "mitochondria_library",
]
