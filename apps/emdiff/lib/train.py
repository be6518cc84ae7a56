"""MONAI Label train task that runs a bundle's own training config on the datastore's labelled images."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask

from .bundles import BundleSpec, bundle_workflow, case_name, parse_config, run_workflow
from .infer import BundleConfigInferTask

__all__ = ["BundleConfigTrainTask"]

logger = logging.getLogger(__name__)


class BundleConfigTrainTask(TrainTask):
    """Train with ``bundles/<name>/configs/<train_config>`` on the images that have a final label in the datastore.

    The datastore's image / label pairs are linked into a temporary ``imagesTr/`` + ``labelsTr/`` folder, the layout
    every bundle reads, which becomes the config's ``dataset_dir`` (so the bundle's own datalist checks the files).
    The run writes its checkpoints to a temporary ``ckpt_dir`` (a new run each request, never resuming an older one)
    and its log and figures to the config's ``output_dir`` under ``bundle_root``; at the end its ``model.pt``
    replaces (atomically) the weights the infer task loads. With ``pretrained`` (default) and existing weights the
    network starts from them (the config's ``network`` loads them with ``load_network_weights``, before an EMA copy
    is made).

    Request keys: ``images`` (the image ids to train on; default every labelled image: one datastore serves all the
    bundles, whose data differ), ``pretrained`` (bool), the bundle's training-length ids (e.g. ``epochs``,
    ``num_steps``) and ``overrides``, a dict of any config ids (e.g. ``{"train#trainer#epoch_length": 2}``).

    Args:
        spec, bundle_dir, bundle_root, overrides: as for :class:`~lib.infer.BundleConfigInferTask`.
    """

    def __init__(self, spec: BundleSpec, bundle_dir: Path, bundle_root: Path, overrides: dict[str, Any]) -> None:
        self.spec = spec
        self.bundle_dir = Path(bundle_dir)
        self.bundle_root = Path(bundle_root)
        self.overrides = {**overrides, "bundle_root": str(self.bundle_root)}
        self.infer = BundleConfigInferTask(spec, bundle_dir, bundle_root, overrides)
        parser = parse_config(self.bundle_dir, spec.train_config, self.overrides)
        self.defaults = {key: parser.get(key) for key in spec.length_ids}
        super().__init__(f"{parser.get('_meta_', {}).get('name', spec.name)}: configs/{spec.train_config}")

    def config(self) -> dict[str, Any]:
        return {"pretrained": True, **self.defaults}

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        pairs = [d for d in datastore.datalist() if d.get("image") and d.get("label")]
        if not pairs:
            raise ValueError(f"{self.spec.name}: no image in the datastore has a final label (labels/final/) to train on.")
        wanted = request.get("images")
        if wanted is not None:
            if not isinstance(wanted, list) or not all(isinstance(w, str) for w in wanted):
                raise TypeError(f"{self.spec.name}: train request 'images' must be a list of image ids, got {wanted!r}.")
            labelled = {case_name(d["image"]): d for d in pairs}
            unknown = sorted(set(wanted) - set(labelled))
            if unknown:
                raise ValueError(f"{self.spec.name}: train request images {unknown} have no final label; labelled: "
                                 f"{sorted(labelled)}.")
            pairs = [labelled[name] for name in wanted]
        extra = request.get("overrides") or {}
        if not isinstance(extra, dict):
            raise TypeError(f"{self.spec.name}: train request 'overrides' must be a dict of config ids, got {extra!r}.")
        overrides = {**self.overrides, **{k: request[k] for k in self.spec.length_ids if k in request}, **extra}
        target = self.infer.ckpt_path()
        pretrained = str(request.get("pretrained", True)).lower() in ("1", "true", "yes") and target.is_file()
        if pretrained:
            overrides["network"] = (
                f"$emdiff_components.engines.load_network_weights(@network_def.to(@device), {str(target)!r})"
            )
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"monailabel_train_{self.spec.name}_") as tmp:
            tmp = Path(tmp)
            names = _link_layout(pairs, tmp / "data")
            overrides.update(dataset_dir=str(tmp / "data"), ckpt_dir=str(tmp / "models"))
            logger.info("%s: training on %d labelled images %s with %s", self.spec.name, len(names), names, overrides)
            run_workflow(bundle_workflow(self.bundle_dir, self.spec.train_config, "train", overrides))
            written = tmp / "models" / "model.pt"
            if not written.is_file():
                raise RuntimeError(f"{self.spec.name}: configs/{self.spec.train_config} finished without {written}.")
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.partial")
            shutil.copyfile(written, partial)
            os.replace(partial, target)
        seconds = time.perf_counter() - start
        logger.info("%s: trained in %.1f s; weights written to %s", self.spec.name, seconds, target)
        return {"model": self.spec.name, "checkpoint": str(target), "images": names,
                "initial_weights": "previous checkpoint" if pretrained else "new", "seconds": round(seconds, 1)}


def _link_layout(pairs: list[dict[str, str]], root: Path) -> list[str]:
    """Link each ``{"image", "label"}`` pair as ``imagesTr/<case><ext>`` and ``labelsTr/<case><label ext>``."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    names = []
    for pair in pairs:
        image, label = pair["image"], pair["label"]
        name = case_name(image)
        label_base = os.path.basename(label)
        (root / "imagesTr" / os.path.basename(image)).symlink_to(os.path.abspath(image))
        (root / "labelsTr" / (name + label_base[len(case_name(label)):])).symlink_to(os.path.abspath(label))
        names.append(name)
    return names
