"""The segmentation bundles the MONAI Label app serves, and how their own configs are run.

Each bundle keeps one copy of its pipeline: the app runs the bundle's inference / training config through MONAI's
``ConfigWorkflow`` with a few overrides (``input``, ``output_dir``, ``dataset_dir``, ``ckpt_dir``, ``bundle_root``),
as ``python -m monai.bundle run`` does, and reads the files the config writes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser, ConfigWorkflow

from emdiff_components.data import strip_extension, supported_extensions

__all__ = [
    "BUNDLES", "BundleSpec", "bundle_workflow", "case_name", "files_named", "load_overrides", "parse_config", "run_workflow",
    "select",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BundleSpec:
    """One served bundle.

    Args:
        name: the bundle folder under ``bundles/`` and the model name on the server (``/infer/<name>``).
        infer_config: the config that segments an ``input`` (``configs/<infer_config>``).
        train_config: the config that trains the network ``infer_config`` loads.
        dimension: spatial dimensions of the network (MONAI Label's ``dimension``); 2D networks segment the slices of
            a stack one by one and answer with the whole stack.
        mask_folder: the folder, relative to the run's ``output_dir``, where ``infer_config`` writes the mask, given
            the parsed config.
        input_folder: True when ``infer_config``'s ``input`` is a folder of frames (the image is linked into one).
        labels: label names of the mask's non-zero values; None reads ``class_names`` of ``infer_config`` (index 0,
            the background, left out).
        length_ids: ``train_config`` ids that set the training length; offered as train options.
        output: what the answer holds, for the model description.
    """

    name: str
    infer_config: str
    train_config: str
    dimension: int
    mask_folder: Callable[[ConfigParser], str]
    input_folder: bool = False
    labels: tuple[str, ...] | None = None
    length_ids: tuple[str, ...] = ()
    output: str = ""


BUNDLES: dict[str, BundleSpec] = {
    spec.name: spec
    for spec in (
        BundleSpec(
            "ecsd", "inference.json", "train.json", 2, lambda parser: "masks", length_ids=("epochs",),
            output="class mask (uint8, 0..num_classes-1) of the image's shape and geometry",
        ),
        BundleSpec(
            "biedsnet", "inference.json", "train.json", 2, lambda parser: "masks", length_ids=("epochs",),
            output="class mask (uint8, 0..num_classes-1, the fused ensemble) of the image's shape and geometry",
        ),
        BundleSpec(
            "neurodiff", "segment.json", "segment_train.json", 3,
            lambda parser: str(parser.get_parsed_content("methods")[0]), labels=("neuron",),
            length_ids=("num_steps",),
            output="neuron instance labels (uint16, uint32 beyond 65535 ids) of the volume's shape, first method",
        ),
        BundleSpec(
            "cellcascade", "segment.json", "segment_train.json", 2, lambda parser: "masks", input_folder=True,
            labels=("cell",), length_ids=("num_steps",),
            output="cell instance labels (uint16) of the frame's shape",
        ),
    )
}


def select(models: str) -> list[BundleSpec]:
    """The bundles named in the app's ``--conf models`` value: ``"all"`` or a comma-separated list.

    Raises:
        ValueError: an unknown name (the message lists the served ones).
    """
    names = list(BUNDLES) if models.strip().lower() == "all" else [m.strip() for m in models.split(",") if m.strip()]
    unknown = [n for n in names if n not in BUNDLES]
    if unknown or not names:
        raise ValueError(f"--conf models {models!r}: unknown {unknown or 'empty list'}; choose from {list(BUNDLES)} "
                         "or 'all'.")
    return [BUNDLES[n] for n in names]


def load_overrides(path: str | None, names: list[str], bundles_dir: Path) -> dict[str, dict[str, Any]]:
    """Read the app's ``--conf overrides`` file: ``{"<bundle>": <overrides>, ...}``.

    ``<overrides>`` is a dict of config ids (``{"num_inference_steps": 10}``), the name of an overlay in the bundle's
    ``configs/`` (``"demo.json"``: its ids, ``_desc_`` and other ``_`` keys left out), or a list of both, applied in
    order. They are set in both configs of that bundle (inference and training), e.g. the settings the served weights
    were trained with; ids a config does not use are added to it and have no effect.

    Raises:
        ValueError: the file or an overlay is missing or not JSON, or a bundle is not served.
        TypeError: the file is not a dict, or an entry is not a dict / overlay name.
    """
    if not path:
        return {name: {} for name in names}
    data = _read_json(Path(path), "--conf overrides")
    if not isinstance(data, dict):
        raise TypeError(f"--conf overrides {path!r}: expected {{bundle: overrides}}, got {data!r:.200}.")
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"--conf overrides {path!r}: bundles {unknown} are not served (served: {names}).")
    result = {}
    for name in names:
        merged: dict[str, Any] = {}
        entries = data.get(name, [])
        for entry in entries if isinstance(entries, list) else [entries]:
            if isinstance(entry, str):
                overlay = _read_json(bundles_dir / name / "configs" / entry, f"--conf overrides {path!r}: {name}")
                entry = {k: v for k, v in overlay.items() if not k.startswith("_")} if isinstance(overlay, dict) else None
            if not isinstance(entry, dict):
                raise TypeError(f"--conf overrides {path!r}: {name}: expected config ids (a dict) or overlay names.")
            merged.update(entry)
        result[name] = merged
    return result


def _read_json(path: Path, owner: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{owner}: cannot read {str(path)!r} as JSON: {err}") from err


def parse_config(bundle_dir: Path, config: str, overrides: Mapping[str, Any]) -> ConfigParser:
    """The parser of ``bundle_dir/configs/<config>`` with ``overrides`` set (nothing instantiated yet)."""
    parser = ConfigParser()
    parser.read_config(str(bundle_dir / "configs" / config))
    parser.read_meta(str(bundle_dir / "configs" / "metadata.json"))
    for key, value in overrides.items():
        parser[key] = value
    return parser


def bundle_workflow(bundle_dir: Path, config: str, workflow_type: str, overrides: Mapping[str, Any]) -> ConfigWorkflow:
    """``ConfigWorkflow`` of one bundle config, as ``python -m monai.bundle run`` builds it.

    ``logging_file=False``: the bundle's ``logging.conf`` would reconfigure the server's own logging.
    """
    configs = bundle_dir / "configs"
    return ConfigWorkflow(
        config_file=str(configs / config), meta_file=str(configs / "metadata.json"), logging_file=False,
        workflow_type=workflow_type, **dict(overrides),
    )


@contextlib.contextmanager
def _run_log_handlers_removed() -> Iterator[None]:
    """Remove (and close) the root log handlers a run adds: configs log to ``<output_dir>/*.log`` through
    ``emdiff_components.engines.log_to_file``, and the server outlives each run and its temporary folder."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)


def run_workflow(workflow: ConfigWorkflow) -> ConfigWorkflow:
    """``initialize``, ``run`` and ``finalize`` the workflow, leaving the process's logging as it was."""
    with _run_log_handlers_removed():
        workflow.initialize()
        workflow.run()
        workflow.finalize()
    return workflow


def files_named(folder: Path, name: str) -> list[Path]:
    """The files of ``folder`` whose name without its supported extension is ``name``."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and strip_extension(p.name) == name)


def case_name(path: str | os.PathLike) -> str:
    """The case name the bundles give an input: the file name without its supported extension (a folder: its name).

    Raises:
        ValueError: a file whose extension no reader supports (the message lists the supported ones).
    """
    base = os.path.basename(os.fspath(path).rstrip(os.sep))
    if os.path.isdir(path):
        return base
    name = strip_extension(base)
    if name is None:
        raise ValueError(f"{os.fspath(path)!r}: unsupported image file; supported: {', '.join(supported_extensions())}.")
    return name
