"""BIEDSNet on this machine: sampler cost against accuracy, training speed, and the Table 2 ablation on one budget.

Parts (``--part``, default all):

- ``speed``: the paper-width network (32..512, 3 ADRBs a level) at 256 x 256: training step time (batch 8, joint
  loss, deep supervision) and peak memory (fresh process), and the time of one forward pass, from which the cost of
  every sampler setting per image follows (steps x K forwards; the sampler's own arithmetic is negligible).
- ``samplers``: the bundle's ``train.json`` trained for a fixed wall-clock budget on the COVID-19 CT slices of
  ``../shared/data`` (a narrower network and 128 x 128 images, so that the budget buys a usable model on 2 CPU cores),
  then every test slice sampled with DDPM (1000 steps) and DDIM (100 / 50 / 20 / 10 steps), ensembles of 1 and 5
  (mean fusion), Dice at the slices' own resolution and time per image.
- ``ablation``: the same budget for each row of the paper's Table 2, which adds one part at a time (baseline without
  BFFM, ADRB, joint loss and multi-layer supervision; + BFFM; + ADRB; + joint loss; + multi-layer supervision), the
  bundle's overlays stacked; each evaluated with DDIM 20 steps, one sample.

Usage::

    python scripts/benchmark_biedsnet.py --out benchmarks/biedsnet.json [--part samplers] [--budget-minutes 6]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from ignite.engine import Events
from monai.bundle import ConfigWorkflow
from monai.networks.schedulers import DDIMScheduler

from emdiff_components.data import read_image, segmentation_datalist
from emdiff_components.diffusion import GaussianMaskInferer, gaussian_scheduler
from emdiff_components.losses import JointSegmentationLoss
from emdiff_components.metrics import confusion_counts, scores_from_counts
from emdiff_components.networks import BIEDSNet
from emdiff_components.transforms import FuseEnsemble

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts folder: benchmark_common
from benchmark_common import peak_rss_gb, run_json_child  # noqa: E402

logger = logging.getLogger("benchmark_biedsnet")

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundles" / "biedsnet" / "configs"
SAMPLER_SETTINGS = [("ddpm", 1000), ("ddim", 100), ("ddim", 50), ("ddim", 20), ("ddim", 10)]
# MONAI 1.6's own DDIMScheduler, whose steps land off the visited time steps (see diffusion/schedulers.py)
MONAI_DDIM_SETTINGS = [("monai-ddim", 50), ("monai-ddim", 10)]
# the paper's Table 2 rows add one part at a time: (row, overlays that switch the missing parts off)
ABLATIONS = [
    ("baseline (no BFFM, no ADRB, MSE, no multi-layer supervision)",
     ["no_bffm.json", "no_adrb.json", "mse_loss.json", "no_deep_supervision.json"]),
    ("+ BFFM", ["no_adrb.json", "mse_loss.json", "no_deep_supervision.json"]),
    ("+ ADRB", ["mse_loss.json", "no_deep_supervision.json"]),
    ("+ joint loss", ["no_deep_supervision.json"]),
    ("+ multi-layer supervision (BIEDSNet)", []),
]
# Dice of the same rows in the paper's Table 2 (COVID-19, 256 x 256, full training)
PAPER_TABLE2_DICE = [0.7233, 0.7308, 0.7444, 0.7512, 0.7578]
# the budget-trained model: narrower than the paper's 32..512 and at 128 x 128 (see the module docstring)
BUDGET_MODEL = {"channels": [16, 32, 64, 128, 256], "num_res_blocks": 2, "image_size": [128, 128],
                "patch_size": [128, 128]}
# a 0.9999 EMA averages over ~10^4 steps, more than the budget runs; 0.999 keeps the EMA on the trained weights
BUDGET_EMA = {"ema_decay": 0.999, "ema_warmup_iters": 200}
# MedSegDiff's ISIC network measured on this kind of machine (issue 3): seconds per forward at 256 x 256
MEDSEGDIFF_FORWARD_S = 3.3



# ------------------------------------------------------------------------------------------------------------ speed
def speed(repeats: int = 3) -> dict:
    """Training step (batch 8) and forward time of the paper-width network at 256 x 256 (run in a fresh process)."""
    net = BIEDSNet().to(memory_format=torch.channels_last)
    inferer = GaussianMaskInferer(gaussian_scheduler("ddpm", 1000), roi_size=256)
    loss = JointSegmentationLoss()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=1e-8)
    g = torch.Generator().manual_seed(0)
    image = torch.rand(8, 1, 256, 256, generator=g) * 2 - 1
    label = (torch.rand(8, 1, 256, 256, generator=g) > 0.7).long()
    steps = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        opt.zero_grad()
        net.train()
        inferer.training_loss(net, image, label, loss, generator=g).loss.backward()
        opt.step()
        steps.append(time.perf_counter() - start)
    net.eval()
    forwards = []
    with torch.no_grad():
        x, t = torch.zeros(1, 1, 256, 256), torch.tensor([500])
        for _ in range(repeats + 1):
            start = time.perf_counter()
            net(x, t, image[:1])
            forwards.append(time.perf_counter() - start)
    forward = float(np.median(forwards[1:]))
    per_image = {f"{s} {n} x K={k}": forward * n * k for s, n in SAMPLER_SETTINGS for k in (1, 5)}
    return {
        "parameters_m": sum(p.numel() for p in net.parameters()) / 1e6,
        "train_step_s_256_batch8": float(np.median(steps[1:])),
        "peak_rss_gb": peak_rss_gb(),
        "forward_s_256": forward,
        "sampling_s_per_image_256": per_image,
        "medsegdiff_forward_s_256": MEDSEGDIFF_FORWARD_S,
        "medsegdiff_1000x5_hours": MEDSEGDIFF_FORWARD_S * 5000 / 3600,
    }


# ---------------------------------------------------------------------------------------------- budget training
def train_for_budget(dataset: Path, root: Path, minutes: float, overlays=(), seed: int = 0) -> dict:
    """Train the bundle's train.json (plus ``overlays``) until ``minutes`` of wall time pass; return the EMA network."""
    files = [str(CONFIGS / "train.json")] + [str(CONFIGS / o) for o in overlays]
    wf = ConfigWorkflow(
        config_file=files, meta_file=str(CONFIGS / "metadata.json"), logging_file=str(CONFIGS / "logging.conf"),
        workflow_type="train", bundle_root=str(root), dataset_dir=str(dataset), epochs=100000, val_fraction=0.0,
        progress=False, seed=seed, **BUDGET_MODEL, **BUDGET_EMA,
    )
    wf.initialize()
    start = time.perf_counter()

    def stop_when_spent(engine):
        if time.perf_counter() - start > 60 * minutes:
            engine.terminate()

    wf.trainer.add_event_handler(Events.ITERATION_COMPLETED, stop_when_spent)
    wf.run()
    ema = wf.parser.get_parsed_content("ema_model").eval()
    return {"network": ema, "iterations": wf.trainer.state.iteration, "seconds": time.perf_counter() - start,
            "config": wf.parser}


def load_test_set(dataset: Path, size: tuple[int, int]) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Test images scaled to [-1, 1] and resized to ``size`` (area, as the inferer does) as one batch; true labels."""
    images, labels = [], []
    for entry in segmentation_datalist(dataset, "Ts"):
        image = torch.as_tensor(read_image(entry["image"]), dtype=torch.float32)
        image = (image - image.min()) / (image.max() - image.min()) * 2 - 1
        images.append(F.interpolate(image[None, None], size=size, mode="area")[0])
        labels.append((read_image(entry["label"]) > 0).astype(np.int64))
    return torch.stack(images), labels


def evaluate(network, batch: torch.Tensor, labels: list[np.ndarray], sampler: str, steps: int, k: int) -> dict:
    """Dice (mean over slices, at their own size) of member 0 and of the K-member mean fusion; seconds per image."""
    if sampler == "monai-ddim":
        scheduler = DDIMScheduler(num_train_timesteps=1000, schedule="linear_beta", prediction_type="sample")
    else:
        scheduler = gaussian_scheduler(sampler, 1000)
    inferer = GaussianMaskInferer(scheduler, roi_size=batch.shape[-2:], sw_batch_size=batch.shape[0],
                                  num_inference_steps=steps, num_samples=k)
    start = time.perf_counter()
    members = inferer.sample_ensemble(batch, network, torch.Generator().manual_seed(0))  # (K, B, 1, h, w)
    seconds = (time.perf_counter() - start) / batch.shape[0]
    dice_one, dice_k = [], []
    for b, truth in enumerate(labels):
        full = F.interpolate(members[:, b], size=truth.shape, mode="bilinear", align_corners=False)  # (K, 1, H, W)
        single = (full[0, 0] > 0).long().numpy()
        fused, _ = FuseEnsemble(k, "mean")(full.reshape(k, *truth.shape))
        for out, pred in ((dice_one, single), (dice_k, fused[0].numpy())):
            out.append(float(scores_from_counts(confusion_counts(pred, truth, 2))["dice"][1]))
    return {"k": k, "dice_k1": float(np.mean(dice_one)), f"dice_k{k}": float(np.mean(dice_k)),
            "seconds_per_image": seconds}


def load_trained(path: Path) -> dict:
    """A budget-trained full model saved by ``--save-model`` (EMA weights and the iteration count)."""
    saved = torch.load(path, weights_only=True)
    network = BIEDSNet(channels=BUDGET_MODEL["channels"], num_res_blocks=BUDGET_MODEL["num_res_blocks"])
    network.load_state_dict(saved["model"])
    return {"network": network.eval(), "iterations": saved["iterations"], "seconds": saved["seconds"]}


def samplers(
    dataset: Path, minutes: float, work: Path, settings=SAMPLER_SETTINGS, ddpm_ensemble: int = 1,
    trained: dict | None = None,
) -> tuple[dict, dict]:
    """Train the full model on the budget (unless ``trained``), then sample the test slices with every setting.

    Ensembles of K = 5 (DDPM: ``ddpm_ensemble``).
    """
    trained = trained or train_for_budget(dataset, work / "full", minutes)
    batch, labels = load_test_set(dataset, tuple(BUDGET_MODEL["image_size"]))
    rows = {}
    for sampler, steps in settings:
        k = ddpm_ensemble if sampler == "ddpm" else 5
        result = evaluate(trained["network"], batch, labels, sampler, steps, k)
        rows[f"{sampler} {steps}"] = result
        logger.info("%s %d: %s", sampler, steps, result)
    summary = {"budget_minutes": minutes, "iterations": trained["iterations"], "test_slices": len(labels),
               "model": BUDGET_MODEL, "ema": BUDGET_EMA, "rows": rows}
    return summary, trained


def ablation(dataset: Path, minutes: float, work: Path, full: dict | None = None) -> dict:
    """Table 2's rows trained on the same budget; ``full``: the full model already trained (samplers part)."""
    batch, labels = load_test_set(dataset, tuple(BUDGET_MODEL["image_size"]))
    rows = {}
    for i, ((name, overlays), paper) in enumerate(zip(ABLATIONS, PAPER_TABLE2_DICE)):
        if not overlays and full is not None:
            trained = full
        else:
            trained = train_for_budget(dataset, work / f"ablation_{i}", minutes, overlays)
        result = evaluate(trained["network"], batch, labels, "ddim", 20, 1)
        rows[name] = {"iterations": trained["iterations"], "dice": result["dice_k1"], "paper_dice": paper}
        logger.info("%s: %s", name, rows[name])
    return {"budget_minutes": minutes, "sampler": "ddim 20, K=1", "rows": rows}


# ------------------------------------------------------------------------------------------------------------- main
def print_tables(results: dict) -> None:
    if "speed" in results:
        s = results["speed"]
        print(f"\nPaper-width BIEDSNet ({s['parameters_m']:.1f} M parameters), 256 x 256, "
              f"{torch.get_num_threads()} threads")
        print(f"training step, batch 8: {s['train_step_s_256_batch8']:.1f} s, peak RSS {s['peak_rss_gb']:.2f} GB")
        print(f"forward: {s['forward_s_256']:.3f} s (MedSegDiff ISIC network: {MEDSEGDIFF_FORWARD_S} s)")
        print("| sampler | ours per image | MedSegDiff per image |\n|---|---|---|")
        for key, seconds in s["sampling_s_per_image_256"].items():
            forwards = seconds / s["forward_s_256"]
            print(f"| {key} | {seconds / 60:.1f} min | {MEDSEGDIFF_FORWARD_S * forwards / 60:.1f} min |")
    if "samplers" in results:
        r = results["samplers"]
        print(f"\nSamplers after {r['budget_minutes']} min of training ({r['iterations']} iterations), "
              f"{r['test_slices']} COVID-19 test slices")
        print("| sampler | Dice K=1 | Dice K=5 (mean) | s / image, K=1 | s / image, K=5 |\n|---|---|---|---|---|")
        for key, row in r["rows"].items():
            per_sample = row["seconds_per_image"] / row["k"]
            k5 = f"{row['dice_k5']:.4f}" if "dice_k5" in row else "not run"
            print(f"| {key} | {row['dice_k1']:.4f} | {k5} | {per_sample:.1f} | {5 * per_sample:.1f} |")
    if "ablation" in results:
        r = results["ablation"]
        print(f"\nAblation, {r['budget_minutes']} min each, {r['sampler']}")
        print("| Table 2 row | iterations | Dice | paper Dice |\n|---|---|---|---|")
        for key, row in r["rows"].items():
            print(f"| {key} | {row['iterations']} | {row['dice']:.4f} | {row['paper_dice']:.4f} |")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/biedsnet.json")
    parser.add_argument("--part", choices=("all", "speed", "training", "samplers", "ablation"), default="all",
                        help="training = samplers + ablation (the ablation reuses the samplers' full model)")
    parser.add_argument("--ddpm-ensemble", type=int, default=1,
                        help="ensemble size for DDPM 1000 (default 1: K = 5 costs 5000 network calls per slice)")
    parser.add_argument("--budget-minutes", type=float, default=6.0)
    parser.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smoke run: DDIM 10 / 5 steps only")
    parser.add_argument("--settings", default=None,
                        help="comma-separated sampler settings to run, e.g. 'ddim 50,monai-ddim 50' (default: all)")
    parser.add_argument("--save-model", default=None, help="save the budget-trained full model (EMA) here")
    parser.add_argument("--load-model", default=None, help="use a model saved by --save-model instead of training")
    parser.add_argument("--speed-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    if args.speed_child:  # the speed part in a fresh process, so that its peak memory is its own
        print(json.dumps(speed()))
        return {}
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    if args.part in ("all", "speed"):
        results["speed"] = run_json_child([__file__, "--speed-child", "--threads", str(args.threads)], what="speed")
    if args.part in ("all", "training", "samplers", "ablation"):
        sys.path.insert(0, str(REPO / "scripts"))
        from convert_shared_data import convert

        settings = SAMPLER_SETTINGS + MONAI_DDIM_SETTINGS
        if args.settings:
            pairs = (item.strip().rsplit(" ", 1) for item in args.settings.split(","))
            settings = [(name, int(steps)) for name, steps in pairs]
        if args.quick:
            settings = [("ddim", 10), ("ddim", 5)]
        full = load_trained(Path(args.load_model)) if args.load_model else None
        with tempfile.TemporaryDirectory() as tmp:
            dataset = Path(convert("covid", Path(tmp) / "data", shared_dir=args.shared))
            if args.part in ("all", "training", "samplers"):
                summary, full = samplers(dataset, args.budget_minutes, Path(tmp), settings, args.ddpm_ensemble, full)
                if args.save_model:
                    Path(args.save_model).parent.mkdir(parents=True, exist_ok=True)
                    torch.save({"model": full["network"].state_dict(), "iterations": full["iterations"],
                                "seconds": full["seconds"]}, args.save_model)
                previous = results.get("samplers", {}).get("rows", {}) if args.load_model else {}
                summary["rows"] = {**previous, **summary["rows"]}  # rows of an earlier run with the same model stay
                results["samplers"] = summary
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(results, indent=2))
            if args.part in ("all", "training", "ablation"):
                results["ablation"] = ablation(dataset, args.budget_minutes, Path(tmp), full)
    results["threads"] = args.threads
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print_tables(results)
    return results


if __name__ == "__main__":
    main()
