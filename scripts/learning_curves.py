"""Learning curves on real data: Dice on held-back slices against training CPU time, for the segmentation bundles.

Models (``--models``): ``ecsd`` (the ECSD bundle), ``ecsd_no_boundary`` (the same with the ``cold_segdiff.json``
overlay: plain Cold SegDiffusion, no boundary term), ``biedsnet`` (the BIEDSNet bundle) and ``basicunet`` (MONAI's
``BasicUNet``, Dice + cross-entropy, trained on the data loader of the bundle whose data it shares). Data
(``--datasets``, converted from ``../shared/data`` with ``scripts/convert_shared_data.py``):

- ``isbi``: ISBI 2012 mitochondria, trained on slices 0-23, scored on 24-29 (in domain);
- ``epfl``: the ISBI-trained checkpoints scored on the EPFL hippocampus mitochondria test slices (another microscope,
  out of domain);
- ``covid``: COVID-19 CT infection (BIEDSNet and BasicUNet only), trained on its Tr slices, scored on its Ts slices.

Time is process CPU time (``time.process_time``: all threads of this process, so 2 threads count about twice the wall
time, and other load on the machine does not favour one model). Each model trains once per training set; when its
training CPU time passes a mark (``--marks``, CPU-minutes), the weights the bundle would save as its model are written
(ECSD: the network; BIEDSNet: the EMA network, as its ``model.pt``; BasicUNet: the network). The learning-rate schedule
of a bundle that has one (ECSD's warm-up + cosine) is sized, after a few iterations, to end at the last mark. After
training, every mark is scored through the bundle's own ``inference.json`` + ``evaluate.json`` (BasicUNet through the
same configs with its network, a sliding-window inferer and an argmax), ECSD with both samplers ``bansal`` and
``reference``. Dice is the foreground Dice of the evaluate report, pooled over the test slices (``pooled_dice``; the
per-slice mean is kept as ``mean_dice``), with each bundle's empty-truth convention.

Widths (stated in the output; the rest at the papers' values: learning rates, batch sizes, T, schedules, EMA):
ECSD (16, 32, 64, 128) with the published attention (4 heads x 32 channels) and the FF-Parser maps on the
training patch grid (``filter_size`` 128, as the reference's ``image_size``), BIEDSNet (16, 32, 64, 128, 256) with 3 ResBlocks per level, BasicUNet MONAI's default features;
EM patches 128 (all models), sampled in tiles of 256; BIEDSNet / BasicUNet on COVID at 256 x 256 (the paper's resize).

Sampling at the bundles' defaults (ECSD all T = 50 steps with both samplers, BIEDSNet 5 samples x 50 DDIM steps) costs
more than the training at small marks: on 2 busy cores an ECSD evaluation of the 6 ISBI slices took ~85 s at 2 steps
(one 512 tile per slice), so ``--steps`` (and ``--num-samples``) decide how long the evaluation after training takes;
the JSON keeps each evaluation's wall and CPU seconds.

Output: ``--out`` JSON (rewritten after every evaluation, so a partial run leaves its results), a markdown table on
stdout, ``--plot`` PNG (drawn with OpenCV: one panel per data set, Dice against CPU-minutes on a log axis).

Usage::

    python scripts/learning_curves.py --marks 10 30 60 120 240 --threads 2 \\
        --out benchmarks/learning_curves.json --plot benchmarks/learning_curves.png

    # score the checkpoints of that run again without training, e.g. out of domain at the last mark only:
    python scripts/learning_curves.py --rescore benchmarks/learning_curves.json --models ecsd --datasets epfl \
        --marks 240 --samplers reference --out benchmarks/learning_curves_epfl.json --plot /tmp/epfl.png
    # a run stopped before its last mark wrote no --out: its --work folder records the marks it reached
    python scripts/learning_curves.py --rescore WORK --work WORK --models basicunet --datasets isbi epfl --marks 30 60
    # runs made in parallel (one per model) joined into one table and plot:
    python scripts/learning_curves.py --merge a.json b.json --out benchmarks/learning_curves.json \
        --plot benchmarks/learning_curves.png

    # what the former scripts/ablation_ecsd.py measured (one budget of 20 CPU-minutes, width 32, lr 2e-4 for all three):
    python scripts/learning_curves.py --models ecsd ecsd_no_boundary basicunet --datasets isbi --marks 20 \\
        --ecsd-channels 32 64 128 256 --em-patch 256 --infer-patch 512 --steps 10 --lr 2e-4 --basicunet-lr 2e-4
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from ignite.engine import Events
from monai.bundle import ConfigWorkflow
from monai.engines import SupervisedTrainer
from monai.handlers import from_engine
from monai.inferers import Inferer, SimpleInferer, SlidingWindowInferer
from monai.losses import DiceCELoss
from monai.networks.nets import BasicUNet

from emdiff_components.engines import TrainingProgress, atomic_save
from emdiff_components.utils import atomic_write

__all__ = [
    "MODELS", "DATASETS", "MarkCheckpoints", "ResizingInferer", "parse_args", "train", "evaluate", "plot",
    "markdown_table", "merge", "main",
]

logger = logging.getLogger("learning_curves")
REPO = Path(__file__).resolve().parents[1]
BUNDLES = REPO / "bundles"
MODELS = ("ecsd", "ecsd_no_boundary", "biedsnet", "basicunet")
SAMPLERS = ("bansal", "reference")
DATASETS = ("isbi", "epfl", "covid")
# data set -> (name for convert_shared_data, the training set whose checkpoints it scores)
_SOURCES = {"isbi": ("isbi_mito", "isbi"), "epfl": ("epfl", "isbi"), "covid": ("covid", "covid")}
_ON_COVID = ("biedsnet", "basicunet")
_BUNDLE = {"ecsd": "ecsd", "ecsd_no_boundary": "ecsd", "biedsnet": "biedsnet"}
_OVERLAYS = {"ecsd_no_boundary": ["cold_segdiff.json"]}
LEGEND_ROW = 16
_COLOURS = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140)]  # BGR


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments; unknown models / data sets and unsorted or non-positive marks exit with an error."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--marks", nargs="+", type=float, default=[10, 30, 60, 120, 240], help="CPU-minutes, increasing")
    p.add_argument("--work", default="/tmp/learning_curves", help="data, checkpoints and evaluation outputs")
    p.add_argument("--out", default="benchmarks/learning_curves.json")
    p.add_argument("--plot", default="benchmarks/learning_curves.png")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: each bundle's inference value)")
    p.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS, help="ECSD samplers scored")
    p.add_argument("--rescore", default=None, metavar="JSON",
                   help="no training: score the checkpoints of an earlier run (its --work, its --out JSON for the "
                        "training record, or its --work folder, whose <model>_<set>/training.json records every mark "
                        "reached, also by a run stopped early) at --marks, on --datasets with --samplers / --steps")
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                   help="no training: merge the results of earlier runs (e.g. one per model, run in parallel) into "
                        "--out, the table and --plot")
    p.add_argument("--num-samples", type=int, default=None, help="BIEDSNet ensemble size (default: the bundle's 5)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--shared", default=None, help="shared data folder (default: $EMDIFF_SHARED_DATA or ../shared/data)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ecsd-channels", nargs="+", type=int, default=[16, 32, 64, 128])
    p.add_argument("--biedsnet-channels", nargs="+", type=int, default=[16, 32, 64, 128, 256])
    p.add_argument("--biedsnet-res-blocks", type=int, default=3, help="ResBlocks per level (paper: 3)")
    p.add_argument("--basicunet-features", nargs=6, type=int, default=[32, 32, 64, 128, 256, 32])
    p.add_argument("--lr", type=float, default=None, help="diffusion models' learning rate (default: the bundle's)")
    p.add_argument("--basicunet-lr", type=float, default=1e-4, help="AdamW learning rate of BasicUNet")
    p.add_argument("--biedsnet-weights", choices=("ema", "network"), default="ema",
                   help="BIEDSNet weights saved at the marks (default: the EMA, what the bundle saves as model.pt)")
    p.add_argument("--em-patch", type=int, default=128, help="training patch on EM, every model")
    p.add_argument("--infer-patch", type=int, default=256, help="sampling tile on EM")
    p.add_argument("--ct-size", type=int, default=256, help="COVID slices resized to this (paper: 256)")
    args = p.parse_args(argv)
    if any(m <= 0 for m in args.marks) or any(b <= a for a, b in zip(args.marks, args.marks[1:])):
        p.error(f"--marks must be positive and strictly increasing, got {args.marks}")
    if args.steps is not None and args.steps < 1:
        p.error(f"--steps must be >= 1, got {args.steps}")
    if "covid" in args.datasets and not set(args.models) & set(_ON_COVID):
        p.error(f"--datasets covid needs one of the models {list(_ON_COVID)}")
    return args


def runs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The (model, training set) pairs to train: ISBI for isbi / epfl, COVID for covid (BIEDSNet, BasicUNet)."""
    train_sets = [s for s in ("isbi", "covid") if any(_SOURCES[d][1] == s for d in args.datasets)]
    return [(m, s) for m in args.models for s in train_sets if s == "isbi" or m in _ON_COVID]


def prepare_data(args: argparse.Namespace) -> dict[str, Path]:
    """Convert the needed shared data sets into ``<work>/data/<name>``; returns data set -> folder."""
    spec = importlib.util.spec_from_file_location("convert_shared_data", REPO / "scripts" / "convert_shared_data.py")
    converter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(converter)
    needed = set(args.datasets) | {_SOURCES[d][1] for d in args.datasets}
    return {d: Path(converter.convert(_SOURCES[d][0], Path(args.work) / "data" / d, shared_dir=args.shared))
            for d in sorted(needed)}


def pipeline(model: str, train_set: str) -> str:
    """The bundle whose configs (data pipeline, evaluation) a model uses: BasicUNet borrows ECSD's on EM."""
    return _BUNDLE.get(model, "biedsnet" if train_set == "covid" else "ecsd")


def overrides(model: str, train_set: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Config overrides of a run: paths, no validation split, the stated widths and sizes."""
    out: dict[str, Any] = {"bundle_root": str(root), "seed": args.seed, "progress": False}
    if args.lr is not None and model != "basicunet":
        out["learning_rate"] = args.lr
    bundle = pipeline(model, train_set)
    if bundle == "ecsd":
        # the FF-Parser maps on the grid of the training patch, as the reference code's image_size
        out.update(patch_size=[args.em_patch] * 2, channels=list(args.ecsd_channels), use_checkpointing=False,
                   filter_size=[args.em_patch] * 2)
    else:
        size = None if train_set == "isbi" else [args.ct_size] * 2  # EM at native resolution in tiles (README)
        patch = [args.em_patch] * 2 if train_set == "isbi" else [args.ct_size] * 2
        out.update(image_size=size, patch_size=patch, channels=list(args.biedsnet_channels),
                   num_res_blocks=args.biedsnet_res_blocks)
    return out


def workflow(bundle: str, files: list[str], kind: str, override: dict[str, Any]) -> ConfigWorkflow:
    configs = BUNDLES / bundle / "configs"
    return ConfigWorkflow(
        config_file=[str(configs / f) for f in files], meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"), workflow_type=kind, **override,
    )


class MarkCheckpoints:
    """Ignite handler: save weights each time the process's CPU time since the engine started passes a mark.

    Args:
        marks_min: increasing marks in CPU-minutes.
        save: called as ``save(index)`` to write the weights of mark ``index``.
        on_start: called as ``on_start(engine, iterations)`` once, after ``probe`` iterations, with the iterations
            expected by the last mark at the speed measured so far (sizes a learning-rate schedule to the last mark).
        probe: iterations timed for ``on_start``.
        progress: a ``TrainingProgress`` attached to the engine; its total is set to those expected iterations.

    After the last mark the engine is terminated. ``records`` holds per mark the iterations, epochs and CPU seconds.
    """

    def __init__(self, marks_min: Sequence[float], save: Callable[[int], None],
                 on_start: Callable[[Any, int], None] | None = None, probe: int = 4,
                 progress: TrainingProgress | None = None) -> None:
        self.marks_min, self.save, self.on_start, self.probe = list(marks_min), save, on_start, probe
        self.progress = progress
        self.records: list[dict[str, Any]] = []
        self.start: float | None = None
        self.wall_start: float | None = None

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def _started(self, engine) -> None:
        self.start, self.wall_start = time.process_time(), time.perf_counter()

    def __call__(self, engine) -> None:
        used = time.process_time() - self.start
        if engine.state.iteration == self.probe:
            expected = max(1, int(60.0 * self.marks_min[-1] / max(used / self.probe, 1e-9)))
            logger.info("%d iterations expected by the last mark (%.2f CPU s each)", expected, used / self.probe)
            if self.progress is not None:
                self.progress.total = expected
            if self.on_start is not None:
                self.on_start(engine, expected)
        while len(self.records) < len(self.marks_min) and used >= 60.0 * self.marks_min[len(self.records)]:
            index = len(self.records)
            self.records.append({"mark_cpu_min": self.marks_min[index], "cpu_s": used,
                                 "wall_s": time.perf_counter() - self.wall_start,
                                 "iterations": engine.state.iteration, "epochs": engine.state.epoch})
            self.save(index)  # after the record, so that ``save`` can write it beside the checkpoint
            logger.info("mark %g CPU-min: %d iterations", self.marks_min[index], engine.state.iteration)
        if len(self.records) == len(self.marks_min):
            engine.terminate()


def _schedule_to(warmup_fraction: float, scheduler) -> Callable:
    """``on_start`` that re-sizes a warm-up + cosine schedule to the iterations expected by the last mark (None:
    nothing to size)."""

    def on_start(engine, total: int) -> None:
        if scheduler is None or not hasattr(scheduler, "t_total"):
            return
        scheduler.t_total, scheduler.warmup_steps = total, max(1, int(warmup_fraction * total))
        logger.info("lr schedule sized to %d iterations", total)

    return on_start


def frozen_network_def(parser) -> dict[str, Any]:
    """``network_def`` with every argument resolved to its value, so evaluation builds the network that was trained
    even if the configs change meanwhile."""
    raw = parser["network_def"]
    return {k: raw[k] if k == "_target_" else parser.get_parsed_content(f"network_def#{k}") for k in raw}


def train(model: str, train_set: str, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train one model on one set until the last mark; writes ``<work>/<model>_<set>/marks/<i>.pt``.

    Returns ``{"marks": [per mark: iterations, epochs, CPU and wall seconds], "network_def": frozen or None}``."""
    root = Path(args.work) / f"{model}_{train_set}"
    shutil.rmtree(root / "models", ignore_errors=True)  # never resume an older run
    (root / "training.json").unlink(missing_ok=True)  # nor rescore its record
    marks_dir = root / "marks"
    marks_dir.mkdir(parents=True, exist_ok=True)
    bundle = pipeline(model, train_set)
    override = {**overrides(model, train_set, args, root), "dataset_dir": str(data), "val_fraction": 0.0,
                "ckpt_dir": str(root / "models"), "epochs": 100000}
    wf = workflow(bundle, ["train.json", *_OVERLAYS.get(model, [])], "train", override)
    handlers = wf.parser["train#output_handlers"]
    for handler in handlers:  # the marks are the checkpoints: no per-epoch training state saved on the clock;
        # and the progress line counts to the last mark (below), not to the epochs' sentinel
        if str(handler.get("_target_", "")).endswith(("ResumableCheckpoint", "TrainingProgress")):
            handler["_disabled_"] = True
    wf.parser["train#output_handlers"] = handlers
    wf.initialize()
    if model == "basicunet":
        loader = wf.parser.get_parsed_content("train#dataloader")
        torch.manual_seed(args.seed)
        net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=2, features=tuple(args.basicunet_features))
        trainer = SupervisedTrainer(
            device=torch.device("cpu"), max_epochs=100000, train_data_loader=loader, network=net,
            optimizer=torch.optim.AdamW(net.parameters(), lr=args.basicunet_lr, weight_decay=1e-6),
            loss_function=DiceCELoss(to_onehot_y=True, softmax=True), inferer=SimpleInferer(),
        )
        weights, on_start, network_def = net, None, None
    else:
        trainer = wf.trainer
        network_def = frozen_network_def(wf.parser)
        ema = model == "biedsnet" and args.biedsnet_weights == "ema"
        weights = wf.parser.get_parsed_content("ema_model" if ema else "network")
        scheduler = wf.parser.get_parsed_content("lr_scheduler") if "lr_scheduler" in wf.parser else None
        warmup = float(wf.parser.get_parsed_content("warmup_fraction")) if "warmup_fraction" in wf.parser else 0.0
        on_start = _schedule_to(warmup, scheduler)
    progress = TrainingProgress(interval=10, output_transform=from_engine(["loss"], first=True))
    progress.attach(trainer)

    def save(index: int) -> None:  # the checkpoint, and the record of every mark so far (a stopped run keeps both)
        atomic_save(weights.state_dict(), marks_dir / f"{index}.pt")
        _write({"marks": saver.records, "network_def": network_def}, root / "training.json")

    saver = MarkCheckpoints(args.marks, save, on_start, progress=progress)
    saver.attach(trainer)
    trainer.run()
    if len(saver.records) < len(args.marks):
        raise RuntimeError(f"learning_curves: {model} on {train_set} stopped before the last mark ({saver.records}).")
    return {"marks": saver.records, "network_def": network_def}


class ResizingInferer(Inferer):
    """BasicUNet's inferer: optionally resize to ``image_size`` (area), sliding window, logits resized back (bilinear).

    The diffusion inferers of the bundles do the same resizing, so BasicUNet sees the images its bundle's pipeline
    trained it on.
    """

    def __init__(self, roi_size: Sequence[int], image_size: Sequence[int] | None = None) -> None:
        super().__init__()
        self.image_size = None if image_size is None else tuple(image_size)
        self.window = SlidingWindowInferer(roi_size=list(roi_size), sw_batch_size=2, overlap=0.25, mode="gaussian")

    @torch.no_grad()
    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        size = tuple(inputs.shape[2:])
        x = inputs if self.image_size in (None, size) else F.interpolate(inputs, size=self.image_size, mode="area")
        logits = self.window(x, network)
        return logits if tuple(logits.shape[2:]) == size else F.interpolate(logits, size=size, mode="bilinear")


def _basicunet_evaluation(parser, args: argparse.Namespace, override: dict[str, Any]) -> None:
    """Swap the network, inferer and postprocessing of a bundle's evaluate config for BasicUNet's; drop uncertainty."""
    parser["network_def"] = {"_target_": "monai.networks.nets.BasicUNet", "spatial_dims": 2, "in_channels": 1,
                             "out_channels": 2, "features": list(args.basicunet_features)}
    parser["inferer"] = ResizingInferer(override["patch_size"], override.get("image_size"))
    parser["postprocessing"] = {"_target_": "Compose", "transforms": [
        {"_target_": "AsDiscreted", "keys": "pred", "argmax": True}]}
    handlers = parser["handlers"]
    for handler in handlers:
        if isinstance(handler, dict) and handler.get("pred_key") == "uncertainty":
            handler["_disabled_"] = True
        if isinstance(handler, dict) and "extra_keys" in handler:
            handler["extra_keys"] = []
    parser["handlers"] = handlers


def evaluate(model: str, train_set: str, dataset: str, data: Path, mark: int, sampler: str | None,
             args: argparse.Namespace, network_def: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score the weights of one mark on one data set's Ts slices through inference.json + evaluate.json."""
    root = Path(args.work) / f"{model}_{train_set}"
    out_dir = root / "eval" / (f"{dataset}_mark{mark}" + (f"_{sampler}" if sampler else ""))
    shutil.rmtree(out_dir, ignore_errors=True)
    bundle = pipeline(model, train_set)
    override = {**overrides(model, train_set, args, root), "dataset_dir": str(data), "output_dir": str(out_dir),
                "ckpt_path": str(root / "marks" / f"{mark}.pt")}
    if network_def is not None:
        override["network_def"] = network_def
    if train_set == "isbi":
        override["patch_size"] = [args.infer_patch] * 2
    if sampler:
        override["sampler"] = sampler
    if args.steps is not None and model != "basicunet":
        override["num_inference_steps"] = args.steps
    if args.num_samples is not None and bundle == "biedsnet" and model != "basicunet":
        override["num_samples"] = args.num_samples
    wf = workflow(bundle, ["inference.json", "evaluate.json"], "infer", override)
    if model == "basicunet":
        _basicunet_evaluation(wf.parser, args, override)
    start, cpu_start = time.perf_counter(), time.process_time()
    wf.initialize()
    wf.run()
    wf.finalize()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    report = json.loads((out_dir / "metrics.json").read_text())
    return {"dice": report["pooled_dice"], "mean_dice": report["mean_dice"], "jaccard": report["pooled_jaccard"],
            "num_images": report["num_images"], "ignore_empty": report["ignore_empty"], "eval_wall_s": seconds,
            "eval_cpu_s": cpu_seconds,
            "output_dir": str(out_dir)}


def _label(row: dict[str, Any]) -> str:
    return row["model"] + (f" ({row['sampler']})" if row.get("sampler") else "")


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """One line per model (and sampler) and data set, in the order of ``MODELS``, ``SAMPLERS`` and ``DATASETS``; a
    column per mark: pooled Dice % (iterations); with several seeds their mean, then each seed's figure in seed order
    (named in the first column)."""
    marks = sorted({r["mark_cpu_min"] for r in rows})
    lines = ["| model | data set | " + " | ".join(f"{m:g} CPU-min" for m in marks) + " |",
             "|---|---|" + "---|" * len(marks)]
    def order(row: dict[str, Any]) -> tuple:  # models, samplers and data sets in their declared order
        rank = lambda value, known: known.index(value) if value in known else len(known)  # noqa: E731
        return rank(row["model"], MODELS), rank(row.get("sampler"), SAMPLERS), rank(row["dataset"], DATASETS)

    keys = list(dict.fromkeys((_label(r), r["dataset"]) for r in sorted(rows, key=order)))
    for label, dataset in keys:
        mine = sorted((r for r in rows if _label(r) == label and r["dataset"] == dataset), key=lambda r: r.get("seed", 0))
        seeds = list(dict.fromkeys(r.get("seed", 0) for r in mine))
        cells = {}
        for m in marks:
            at = [r for r in mine if r["mark_cpu_min"] == m]
            figures = " / ".join(f"{100 * r['dice']:.1f} ({r['iterations']})" for r in at)
            cells[m] = f"mean {100 * _mean_dice(at):.1f}: {figures}" if len(at) > 1 else figures
        name = f"{label}, seeds {'/'.join(map(str, seeds))}" if len(seeds) > 1 else label
        lines.append(f"| {name} | {dataset} | " + " | ".join(cells[m] for m in marks) + " |")
    return "\n".join(lines)


def _mean_dice(rows: Sequence[dict[str, Any]]) -> float:
    """The mean Dice of the rows (the seeds of one cell)."""
    return sum(r["dice"] for r in rows) / len(rows)


def plot(rows: Sequence[dict[str, Any]], path: str | Path, panel: tuple[int, int] = (480, 360)) -> np.ndarray:
    """Draw Dice against CPU-minutes (log axis), one panel per data set, with OpenCV; write ``path``; return image.

    Each model / sampler is a line through the mean over its seeds at each mark (also a short bar there, where there
    are several seeds) and a dot for every seed's figure.

    The image is ``panel[0]`` times the number of data sets wide and ``panel[1] + LEGEND_ROW * series + 10`` high
    (the legend, one row per model / sampler, under the panels; the colours are the same in every panel).
    """
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    labels = list(dict.fromkeys(_label(r) for r in rows))
    marks = sorted({r["mark_cpu_min"] for r in rows})
    width, height = panel
    image = np.full((height, width * max(1, len(datasets)), 3), 255, np.uint8)
    left, right, top, bottom = 50, 15, 30, 40
    lo, hi = (math.log10(marks[0]), math.log10(marks[-1])) if marks else (0.0, 1.0)
    span = hi - lo if hi > lo else 1.0
    font, grey = cv2.FONT_HERSHEY_SIMPLEX, (160, 160, 160)

    def xy(ox: int, mark: float, dice: float) -> tuple[int, int]:
        fx = (math.log10(mark) - lo) / span if hi > lo else 0.5
        return (int(ox + left + fx * (width - left - right)), int(top + (1 - dice) * (height - top - bottom)))

    for k, dataset in enumerate(datasets):
        ox = k * width
        cv2.rectangle(image, (ox + left, top), (ox + width - right, height - bottom), (0, 0, 0), 1)
        cv2.putText(image, f"{dataset}: Dice vs CPU-minutes", (ox + left, top - 10), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        for tick in np.linspace(0, 1, 6):
            _, y = xy(ox, 1.0, tick)
            cv2.line(image, (ox + left, y), (ox + width - right, y), (230, 230, 230), 1)
            cv2.putText(image, f"{tick:.1f}", (ox + 12, y + 4), font, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        for mark in marks:
            x, y = xy(ox, mark, 0.0)
            cv2.line(image, (x, y), (x, y + 5), (0, 0, 0), 1)
            cv2.putText(image, f"{mark:g}", (x - 8, y + 18), font, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        for j, label in enumerate(labels):
            colour = _COLOURS[j % len(_COLOURS)]
            mine = [r for r in rows if r["dataset"] == dataset and _label(r) == label and math.isfinite(r["dice"])]
            means = [(m, _mean_dice([r for r in mine if r["mark_cpu_min"] == m])) for m in marks
                     if any(r["mark_cpu_min"] == m for r in mine)]
            pixels = [xy(ox, m, d) for m, d in means]  # the line through the mean of the seeds, a dot for each seed
            for a, b in zip(pixels, pixels[1:]):
                cv2.line(image, a, b, colour, 2, cv2.LINE_AA)
            for r in mine:
                cv2.circle(image, xy(ox, r["mark_cpu_min"], r["dice"]), 3, colour, -1, cv2.LINE_AA)
            for m, d in means:  # the mean of several seeds also as a short bar, visible where no line passes
                if sum(r["mark_cpu_min"] == m for r in mine) > 1:
                    x, y = xy(ox, m, d)
                    cv2.line(image, (x - 9, y), (x + 9, y), colour, 2)
        cv2.putText(image, "process CPU-minutes of training (log)", (ox + left + 60, height - 6), font, 0.4, grey, 1)
        cv2.putText(image, "Dice", (ox + 4, top - 10), font, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    legend = np.full((LEGEND_ROW * len(labels) + 10, image.shape[1], 3), 255, np.uint8)  # one legend, under the panels
    for j, label in enumerate(labels):
        y = LEGEND_ROW * (j + 1)
        cv2.line(legend, (left, y - 4), (left + 24, y - 4), _COLOURS[j % len(_COLOURS)], 2)
        cv2.putText(legend, label, (left + 30, y), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    image = np.concatenate([image, legend])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"learning_curves: cannot write {path}")
    return image


def _widths(s: dict[str, Any]) -> str:
    """The widths and sizes of one run's settings, as the table's caption states them."""
    return (f"ECSD channels {s['ecsd_channels']}, BIEDSNet channels {s['biedsnet_channels']} x "
            f"{s['biedsnet_res_blocks']} ResBlocks, BasicUNet features {s['basicunet_features']}; EM patch "
            f"{s['em_patch']}, tiles {s['infer_patch']}; CT {s['ct_size']}; threads {s['threads']}; "
            f"sampling steps {s['steps'] or 'bundle default'}, BIEDSNet samples {s['num_samples'] or 5}")


def _write(result: dict[str, Any], path: Path) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(result, indent=2))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train every (model, training set), then score each mark on its data sets; returns the written result.

    With ``--rescore``: no training, the earlier run's checkpoints of ``--marks`` are scored."""
    torch.set_num_threads(args.threads)
    data = prepare_data(args)
    out = Path(args.out)
    result: dict[str, Any] = {
        "settings": {**vars(args), "time": "process CPU time (time.process_time), all threads", "dice": "pooled_dice"},
        "training": {}, "rows": [],
    }
    from_work = args.rescore is not None and Path(args.rescore).is_dir()
    earlier = json.loads(Path(args.rescore).read_text())["training"] if args.rescore and not from_work else {}
    for model, train_set in runs(args):
        name = f"{model}_{train_set}"
        if from_work:
            record = Path(args.rescore) / name / "training.json"
            if not record.is_file():
                raise ValueError(f"learning_curves: {record} does not exist: {args.rescore} has no training of {name}.")
            trained = json.loads(record.read_text())
        elif args.rescore:
            if name not in earlier:
                raise ValueError(f"learning_curves: {args.rescore} has no training of {name} to rescore.")
            trained = earlier[name]
        else:
            logger.info("training %s on %s", model, train_set)
            trained = train(model, train_set, data[train_set], args)
        result["training"][name] = trained
        marks = [(i, r) for i, r in enumerate(trained["marks"]) if not args.rescore or r["mark_cpu_min"] in args.marks]
        if args.rescore and len(marks) != len(args.marks):
            done = [r["mark_cpu_min"] for r in trained["marks"]]
            raise ValueError(f"learning_curves: --marks {args.marks} are not all among the marks {done} of {name}.")
        samplers = list(args.samplers) if _BUNDLE.get(model) == "ecsd" else [None]
        for dataset in (d for d in args.datasets if _SOURCES[d][1] == train_set):
            for i, record in marks:
                for sampler in samplers:
                    row = {"model": model, "train_set": train_set, "dataset": dataset, "sampler": sampler,
                           "seed": args.seed, "mark_cpu_min": record["mark_cpu_min"], "iterations": record["iterations"],
                           "epochs": record["epochs"], "train_cpu_s": record["cpu_s"]}
                    row.update(evaluate(model, train_set, dataset, data[dataset], i, sampler, args, trained["network_def"]))
                    result["rows"].append(row)
                    logger.info("%s", row)
                    _write(result, out)
    if not result["rows"]:
        _write(result, out)
    return result


def merge(paths: Sequence[str | Path], out: str | Path) -> dict[str, Any]:
    """Join the results of several runs into one (their rows and trainings; settings listed per run); writes ``out``.

    An input may itself be a merged result (its runs' settings are carried over), so a longer run can be added to an
    earlier table. A training of the same model and data set in two runs is kept twice, the later one under
    ``"<name> (<file stem>)"``. Runs of other seeds (``--seed``) join as further figures of the same cells. A (model,
    sampler, data set, mark, seed) scored by two runs is an error: the merged table would hide one of them."""
    result: dict[str, Any] = {"settings": [], "training": {}, "rows": []}
    seen: dict[tuple, str] = {}
    for path in paths:
        part = json.loads(Path(path).read_text())
        merged_before = isinstance(part["settings"], list)
        result["settings"] += part["settings"] if merged_before else [{"file": str(path), **part["settings"]}]
        for name, trained in part["training"].items():
            result["training"][name if name not in result["training"] else f"{name} ({Path(path).stem})"] = trained
        for row in part["rows"]:
            if "seed" not in row:  # a row written before rows carried their seed: its run's
                seeds = {s.get("seed", 0) for s in (part["settings"] if merged_before else [part["settings"]])}
                if len(seeds) != 1:
                    raise ValueError(f"learning_curves: {path} has a row without its seed among runs of seeds {seeds}.")
                row["seed"] = seeds.pop()
            key = (row["model"], row.get("sampler"), row["dataset"], row["mark_cpu_min"], row["seed"])
            if key in seen:
                raise ValueError(f"learning_curves: {key} is in both {seen[key]} and {path}.")
            seen[key] = str(path)
            result["rows"].append(row)
    _write(result, Path(out))
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    result = merge(args.merge, args.out) if args.merge else run(args)
    table = markdown_table(result["rows"])
    plot(result["rows"], args.plot)
    settings = result["settings"] if args.merge else [result["settings"]]
    widths = "; ".join(dict.fromkeys(_widths(s) for s in settings))
    print(f"\nPooled foreground Dice % (training iterations) at process-CPU-minute marks; {widths}\n\n{table}\n")
    print(f"written to {args.out} and {args.plot}")
    return result


if __name__ == "__main__":
    main()
