"""Tasks of the emdiff MONAI Label app: each bundle's own configs run as MONAI Label infer and train tasks."""

from __future__ import annotations

from .bundles import BUNDLES, BundleSpec, load_overrides, select
from .infer import BundleConfigInferTask
from .train import BundleConfigTrainTask

__all__ = ["BUNDLES", "BundleConfigInferTask", "BundleConfigTrainTask", "BundleSpec", "load_overrides", "select"]
