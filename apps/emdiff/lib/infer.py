"""MONAI Label infer task that runs a bundle's own inference config on the requested image."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from emdiff_components.data import read_image

from .bundles import BundleSpec, bundle_workflow, case_name, files_named, parse_config, run_workflow

__all__ = ["BundleConfigInferTask"]

logger = logging.getLogger(__name__)


class BundleConfigInferTask(InferTask):
    """Segment one image with ``bundles/<name>/configs/<infer_config>``, as ``python -m monai.bundle run`` would.

    Each request runs the config through ``ConfigWorkflow`` with ``input`` set to the image (CellCascade: a folder
    holding a link to it), ``output_dir`` to a fresh temporary folder and ``bundle_root`` to the served root (its
    ``models/`` hold the weights the config loads; they are read on every request, so weights a ``/train`` run
    writes are used from the next request on). The mask the config writes (the bundles write it with the input's
    format, shape and geometry: ``write_image(..., like=input)``) is checked to have the image's shape and returned.

    Args:
        spec: the bundle (:data:`~lib.bundles.BUNDLES`).
        bundle_dir: the bundle folder holding ``configs/``.
        bundle_root: the config's ``bundle_root`` (weights under ``models/``).
        overrides: config ids set on every run (e.g. widths of a smaller trained network).
    """

    def __init__(self, spec: BundleSpec, bundle_dir: Path, bundle_root: Path, overrides: dict[str, Any]) -> None:
        self.spec = spec
        self.bundle_dir = Path(bundle_dir)
        self.bundle_root = Path(bundle_root)
        self.overrides = {**overrides, "bundle_root": str(self.bundle_root)}
        parser = parse_config(self.bundle_dir, spec.infer_config, self.overrides)
        meta = parser.get("_meta_", {})
        if spec.labels is None:
            names = list(parser.get("class_names", []))
            labels = {name: index for index, name in enumerate(names) if index > 0}
        else:
            labels = {name: index + 1 for index, name in enumerate(spec.labels)}
        super().__init__(
            type=InferType.SEGMENTATION,
            labels=labels,
            dimension=spec.dimension,
            description=f"{meta.get('name', spec.name)}: configs/{spec.infer_config}; answers a {spec.output}.",
        )
        self.version = meta.get("version")

    def is_valid(self) -> bool:
        return True

    def info(self) -> dict[str, Any]:
        return {**super().info(), "version": self.version}

    def ckpt_path(self) -> Path:
        """The weights the infer config loads (its ``ckpt_path`` with the overrides)."""
        return Path(parse_config(self.bundle_dir, self.spec.infer_config, self.overrides).get_parsed_content("ckpt_path"))

    def __call__(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        image = request.get("image")
        if not isinstance(image, str) or not os.path.exists(image):
            raise ValueError(f"{self.spec.name}: no image file {image!r} on the server (MONAI Label passes '' for an "
                             "image id its datastore does not hold).")
        if self.spec.input_folder and os.path.isdir(image):
            raise ValueError(f"{self.spec.name}: {image!r} is a folder; this model segments 2D frame files.")
        name = case_name(image)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"monailabel_{self.spec.name}_") as tmp:
            tmp = Path(tmp)
            source = image
            if self.spec.input_folder:
                source = tmp / "input"
                source.mkdir()
                (source / os.path.basename(image)).symlink_to(os.path.abspath(image))
            overrides = {**self.overrides, "input": str(source), "output_dir": str(tmp / "output")}
            workflow = run_workflow(bundle_workflow(self.bundle_dir, self.spec.infer_config, "infer", overrides))
            folder = tmp / "output" / self.spec.mask_folder(workflow.parser)
            found = files_named(folder, name)
            if len(found) != 1:
                raise RuntimeError(
                    f"{self.spec.name}: configs/{self.spec.infer_config} wrote no single mask named {name!r} in "
                    f"{folder} (found {[p.name for p in found]})."
                )
            mask_file = found[0]
            mask, reference = read_image(mask_file), read_image(image)
            if mask.shape != reference.shape:
                raise RuntimeError(
                    f"{self.spec.name}: mask {mask_file.name} has shape {mask.shape}, image {image!r} {reference.shape}."
                )
            fd, result = tempfile.mkstemp(prefix=f"{self.spec.name}_{name}_", suffix=mask_file.name[len(name):])
            os.close(fd)
            shutil.copyfile(mask_file, result)
        seconds = time.perf_counter() - start
        logger.info("%s: %s -> %s %s %s in %.1f s", self.spec.name, image, result, mask.shape, mask.dtype, seconds)
        return result, {
            "model": self.spec.name,
            "config": self.spec.infer_config,
            "shape": list(mask.shape),
            "dtype": str(mask.dtype),
            "latencies": {"total": round(seconds, 3)},
        }
