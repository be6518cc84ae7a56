"""Run by test_monailabel_app.py with the MONAI Label environment's python: small models and reference masks.

``python label_models.py PLAN.json``; the plan is ``{"bundles": DIR, "root": DIR, "reference": DIR, "models":
{bundle: {"overrides": {...}, "train": {...}, "input": PATH}}}``. Per bundle: its training config runs with
``overrides`` + ``train`` and ``bundle_root=<root>/<bundle>`` (the weights the server then serves), then its inference
config runs with ``overrides``, ``input`` and ``output_dir=<reference>/<bundle>``, through ``monai.bundle.run``, the
function behind ``python -m monai.bundle run``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from monai.bundle import run

__all__ = ["main"]

CONFIGS = {"ecsd": ("train.json", "inference.json"), "biedsnet": ("train.json", "inference.json"),
           "neurodiff": ("segment_train.json", "segment.json"), "cellcascade": ("segment_train.json", "segment.json")}


def main(plan_file: str) -> None:
    plan = json.loads(Path(plan_file).read_text())
    for name, model in plan["models"].items():
        configs = Path(plan["bundles"]) / name / "configs"
        train, infer = CONFIGS[name]
        common = {"meta_file": str(configs / "metadata.json"), "logging_file": str(configs / "logging.conf"),
                  "bundle_root": str(Path(plan["root"]) / name), **model["overrides"]}
        run("run", config_file=str(configs / train), **common, **model["train"])
        run("run", config_file=str(configs / infer), **common, input=model["input"],
            output_dir=str(Path(plan["reference"]) / name))


if __name__ == "__main__":
    main(sys.argv[1])
