"""Command line of the package, like ``python -m monai.bundle``: export and check the bundles' denoisers.

Usage::

    python -m emdiff_components export_network --config_file configs/inference.json --bundle_root . \\
        --filepath models/model.ts --batch_size 2 --spatial_shape "[512, 512]"
    python -m emdiff_components verify_denoiser_in_out --config_file configs/inference.json --bundle_root .

Arguments and overrides (``--channels "[8, 16, 32, 64]"``) as in :mod:`emdiff_components.engines.export`.
"""

from __future__ import annotations

import logging

from monai.utils import optional_import

from .engines.export import export_network, verify_denoiser_in_out

__all__: list[str] = []

if __name__ == "__main__":
    fire, _ = optional_import("fire")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(levelname)s - %(message)s")
    fire.Fire({"export_network": export_network, "verify_denoiser_in_out": verify_denoiser_in_out})
