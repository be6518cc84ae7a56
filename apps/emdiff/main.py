"""MONAI Label app serving the emdiff segmentation bundles (ECSD, BIEDSNet, NeuroDiff, CellCascade).

One infer task (``/infer/<bundle>``) and one train task (``/train/<bundle>``) per bundle, each running the bundle's
own config (lib/bundles.py). Options (``--conf KEY VALUE`` of ``monailabel start_server``):

- ``models``: ``all`` (default) or a comma-separated list of ``ecsd``, ``biedsnet``, ``neurodiff``, ``cellcascade``.
- ``bundles``: the folder holding the bundles (their ``configs/``); default the repository's ``bundles/``.
- ``bundle_root``: the served bundles' roots are ``<bundle_root>/<bundle>`` (weights in ``models/``, training logs
  in ``outputs/``); default the bundle folders themselves.
- ``overrides``: a JSON file ``{"<bundle>": {"<config id>": value}}`` (or an overlay name, ``{"ecsd": "demo.json"}``)
  set in both configs of that bundle.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lib import BundleConfigInferTask, BundleConfigTrainTask, load_overrides, select
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.train import TrainTask

logger = logging.getLogger(__name__)


class EMDiffApp(MONAILabelApp):
    """The app ``monailabel start_server --app apps/emdiff`` loads."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.specs = select(conf.get("models", "all"))
        names = [spec.name for spec in self.specs]
        self.bundles_dir = Path(conf.get("bundles") or Path(app_dir).resolve().parents[1] / "bundles")
        missing = [n for n in names if not (self.bundles_dir / n / "configs" / "metadata.json").is_file()]
        if missing:
            raise ValueError(f"--conf bundles {str(self.bundles_dir)!r}: no bundle folder with configs for {missing}.")
        root = conf.get("bundle_root")
        self.roots = {n: (Path(root) / n if root else self.bundles_dir / n).resolve() for n in names}
        self.overrides = load_overrides(conf.get("overrides"), names, self.bundles_dir)
        super().__init__(
            app_dir=app_dir, studies=studies, conf=conf, name="emdiff",
            description="emdiff segmentation bundles, each run from its own configs", version="0.1.0",
        )

    def init_infers(self) -> dict[str, InferTask]:
        return {
            s.name: BundleConfigInferTask(s, self.bundles_dir / s.name, self.roots[s.name], self.overrides[s.name])
            for s in self.specs
        }

    def init_trainers(self) -> dict[str, TrainTask]:
        return {
            s.name: BundleConfigTrainTask(s, self.bundles_dir / s.name, self.roots[s.name], self.overrides[s.name])
            for s in self.specs
        }
