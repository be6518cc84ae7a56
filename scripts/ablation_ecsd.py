"""ECSD ablation on real data under one CPU budget: ECSD vs plain Cold SegDiffusion vs MONAI's BasicUNet.

Trains each model for the same CPU-time budget (process CPU seconds, so a busy machine does not favour one model) on ISBI 2012 mitochondria slices 0-23 (../shared/data, converted to
the imagesTr/labelsTr layout) with the same seed, then segments slices 24-29 and reports Jaccard, Dice (foreground,
pooled over the test slices and mean per slice) and seconds per slice, beside the paper's Table 1. The two diffusion
models run through the bundle's own configs (train.json, train.json + cold_segdiff.json, inference.json +
evaluate.json); BasicUNet uses the same data pipeline with a Dice + cross-entropy loss.

Usage::

    python scripts/ablation_ecsd.py --budget-cpu-minutes 40 --out benchmarks/ecsd_ablation.json [--channels 64]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Events
from monai.bundle import ConfigWorkflow
from monai.engines import SupervisedTrainer
from monai.inferers import SimpleInferer, SlidingWindowInferer
from monai.losses import DiceCELoss
from monai.networks.nets import BasicUNet

from emdiff_components.data import read_image
from emdiff_components.metrics import confusion_counts, scores_from_counts

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundles" / "ecsd" / "configs"
PAPER = {"ECSD (paper, Lucchi++)": (87.11, 93.11), "Cold SegDiffusion (paper, Lucchi++)": (79.73, 88.72)}
logger = logging.getLogger("ablation_ecsd")


def load_converter():
    spec = importlib.util.spec_from_file_location("convert_shared_data", REPO / "scripts" / "convert_shared_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def workflow(files: list[str], kind: str, **override) -> ConfigWorkflow:
    wf = ConfigWorkflow(
        config_file=[str(CONFIGS / f) for f in files], meta_file=str(CONFIGS / "metadata.json"),
        logging_file=str(CONFIGS / "logging.conf"), workflow_type=kind, **override,
    )
    wf.initialize()
    return wf


class CPUTimeLimit:
    """Stop an engine once this process has used ``budget_s`` CPU seconds since the engine started."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s, self.start = budget_s, None

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda e: setattr(self, "start", time.process_time()))
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine) -> None:
        if time.process_time() - self.start > self.budget_s:
            logger.info("CPU budget of %.0f s used after %d iterations", self.budget_s, engine.state.iteration)
            engine.terminate()


def epochs_for_budget(files: list[str], budget_s: float, common: dict) -> int:
    """Time two iterations, then size the epochs (and so the cosine schedule) to the budget."""
    probe = workflow(files, "train", epochs=1000, **{**common, "bundle_root": common["bundle_root"] + "_probe"})
    per_epoch = len(probe.parser.get_parsed_content("train#dataloader"))
    times = []
    probe.trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: times.append(time.process_time()))
    probe.trainer.add_event_handler(Events.ITERATION_COMPLETED(once=3), lambda e: e.terminate())
    probe.run()
    step = float(np.diff(times).mean())
    return max(1, int(budget_s / (step * per_epoch)))


def train_diffusion(files: list[str], budget_s: float, common: dict) -> dict:
    epochs = epochs_for_budget(files, budget_s, common)
    wf = workflow(files, "train", epochs=epochs, **common)
    CPUTimeLimit(budget_s).attach(wf.trainer)
    start = time.perf_counter()
    wf.run()
    return {"epochs_planned": epochs, "epochs_run": wf.trainer.state.epoch,
            "iterations": wf.trainer.state.iteration, "train_s": time.perf_counter() - start}


def evaluate_diffusion(common: dict, num_images: int) -> dict:
    start = time.perf_counter()
    wf = workflow(["inference.json", "evaluate.json"], "infer", **common)
    wf.run()
    seconds = (time.perf_counter() - start) / num_images
    summary = json.loads((Path(common["bundle_root"]) / "outputs" / "evaluate" / "metrics.json").read_text())
    return {"jaccard": summary["pooled_jaccard"], "dice": summary["pooled_dice"],
            "mean_jaccard": summary["mean_jaccard"], "mean_dice": summary["mean_dice"], "s_per_slice": seconds}


def basic_unet(data: Path, budget_s: float, common: dict, seed: int, lr: float) -> dict:
    wf = workflow(["train.json"], "train", epochs=1000, **common)
    loader = wf.parser.get_parsed_content("train#dataloader")
    torch.manual_seed(seed)
    net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=2)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-6)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1000, train_data_loader=loader, network=net, optimizer=opt,
        loss_function=DiceCELoss(to_onehot_y=True, softmax=True), inferer=SimpleInferer(),
    )
    CPUTimeLimit(budget_s).attach(trainer)
    start = time.perf_counter()
    trainer.run()
    train_s = time.perf_counter() - start
    net.eval()
    window = SlidingWindowInferer(roi_size=common["patch_size"], sw_batch_size=2, overlap=0.25, mode="gaussian")
    counts, per_image, seconds = [], [], 0.0
    for image_path in sorted((data / "imagesTs").iterdir()):
        volume = read_image(image_path).astype(np.float32)
        truth = read_image(data / "labelsTs" / image_path.name)
        for z in range(volume.shape[0]):
            x = volume[z]
            x = (x - x.min()) / max(float(x.max() - x.min()), 1e-8) * 2 - 1
            start = time.perf_counter()
            with torch.no_grad():
                pred = window(torch.from_numpy(x)[None, None], net).argmax(1)[0].numpy()
            seconds += time.perf_counter() - start
            c = confusion_counts(pred, truth[z] > 0, 2)
            counts.append(c)
            per_image.append(scores_from_counts(c))
    pooled = scores_from_counts(np.sum(counts, axis=0))
    return {"epochs_run": trainer.state.epoch, "iterations": trainer.state.iteration, "train_s": train_s,
            "jaccard": float(pooled["jaccard"][1]), "dice": float(pooled["dice"][1]),
            "mean_jaccard": float(np.mean([s["jaccard"][1] for s in per_image])),
            "mean_dice": float(np.mean([s["dice"][1] for s in per_image])), "s_per_slice": seconds / len(counts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-cpu-minutes", type=float, default=40.0, help="CPU minutes (2 threads: ~half wall)")
    parser.add_argument("--channels", type=int, default=64, help="base width w (level widths w, 2w, 4w, 8w)")
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--infer-patch", type=int, default=512, help="sampling tile size (512: one tile per slice)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: all T = 50)")
    parser.add_argument("--work", default="/tmp/ecsd_ablation")
    parser.add_argument("--shared", default=None, help="../shared/data (default: next to the repository)")
    parser.add_argument("--out", default="benchmarks/ecsd_ablation.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=2e-4, help="learning rate of all three models (paper: 4e-5 for 70 epochs)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(2)
    work = Path(args.work)
    data = Path(load_converter().convert("isbi_mito", work / "data", shared_dir=args.shared))
    num_test = sum(read_image(p).shape[0] for p in (data / "imagesTs").iterdir())
    budget = args.budget_cpu_minutes * 60
    results = {}
    for name, files in (("ECSD", ["train.json"]), ("Cold SegDiffusion", ["train.json", "cold_segdiff.json"])):
        common = {"bundle_root": str(work / name.replace(" ", "_")), "dataset_dir": str(data), "seed": args.seed,
                  "channels": [args.channels * m for m in (1, 2, 4, 8)], "patch_size": [args.patch, args.patch],
                  "val_fraction": 0.0, "num_inference_steps": args.steps, "progress": False, "learning_rate": args.lr, "ckpt_dir": str(work / name.replace(" ", "_") / "models")}
        results[name] = train_diffusion(files, budget, common)
        results[name].update(evaluate_diffusion({**common, "patch_size": [args.infer_patch] * 2}, num_test))
        logger.info("%s: %s", name, results[name])
    common = {"bundle_root": str(work / "BasicUNet"), "dataset_dir": str(data), "seed": args.seed,
              "patch_size": [args.patch, args.patch], "val_fraction": 0.0, "channels": [8, 16, 32, 64]}
    results["BasicUNet (MONAI)"] = basic_unet(data, budget, common, args.seed, args.lr)

    print(f"\nISBI 2012 mitochondria, train slices 0-23, test 24-29; {args.budget_cpu_minutes:g} CPU-minutes of training each, "
          f"seed {args.seed}, patch {args.patch}, width {args.channels}\n")
    print("| model | Jaccard % | Dice % | mean Jaccard % | mean Dice % | s / slice | iterations |\n|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {100 * r['jaccard']:.2f} | {100 * r['dice']:.2f} | {100 * r['mean_jaccard']:.2f} | "
              f"{100 * r['mean_dice']:.2f} | {r['s_per_slice']:.2f} | {r['iterations']} |")
    for name, (j, d) in PAPER.items():
        print(f"| {name} | {j:.2f} | {d:.2f} | | | | |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "results": results, "paper": PAPER}, indent=2))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
