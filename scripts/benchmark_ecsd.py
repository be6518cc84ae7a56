"""Speed and memory of ECSD on this machine: prints a table and writes it as JSON.

Measures (issue: "Measured, in scripts/benchmark_ecsd.py"):
- training step time and peak memory at patch 256 and 512 (batch 2, the paper's width);
- sampling time of a 512 x 512 slice at T = 50 for both samplers, and the sampler's overhead beyond the network;
- the share of a training step spent on boundary weights (map computed once per sample + per-step exponent);
- peak memory when segmenting a 2048 x 2048 slice (tiles of 512) against a 512 x 512 slice.
Each memory figure comes from a fresh subprocess (peak resident set size, ``ru_maxrss``).

Usage::

    python scripts/benchmark_ecsd.py --out benchmarks/ecsd.json [--channels 64] [--threads 2] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from emdiff_components.engines import keep_freed_memory
from emdiff_components.diffusion import ColdDiffusionInferer, ColdDiffusionScheduler
from emdiff_components.losses import BoundaryAwareMSELoss
from emdiff_components.networks import ECSDUNet
from emdiff_components.transforms import BoundaryDistanceWeight

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts folder: benchmark_common
from benchmark_common import peak_rss_gb, run_json_child  # noqa: E402

logger = logging.getLogger("benchmark_ecsd")



def make_batch(size: int, batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 1, size, size, generator=g) * 2 - 1
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disk = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2).long()
    label = disk.expand(batch, 1, size, size).clone()
    return image, label


def train_step(size: int, batch: int, channels: int, repeats: int) -> dict:
    """Seconds per step (median) and the share spent on boundary weights; run in a fresh process for its peak memory."""
    widths = [channels * m for m in (1, 2, 4, 8)]
    net = ECSDUNet(channels=widths, use_checkpointing=True).to(memory_format=torch.channels_last)
    inferer = ColdDiffusionInferer(ColdDiffusionScheduler(50), roi_size=size)
    loss_fn = BoundaryAwareMSELoss(num_train_timesteps=50)
    opt = torch.optim.AdamW(net.parameters(), lr=4e-5, weight_decay=1e-6)
    weight_tf = BoundaryDistanceWeight(source="label", num_classes=2)
    image, label = make_batch(size, batch)
    g = torch.Generator().manual_seed(0)
    times, weight_times = [], []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        weights = torch.stack([torch.as_tensor(weight_tf(lab.numpy())) for lab in label])
        weight_times.append(time.perf_counter() - start)
        opt.zero_grad(set_to_none=True)
        out = inferer.training_loss(net, image, label, loss_fn, boundary_weight=weights, generator=g)
        out.loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    step = float(np.median(times[1:]))
    return {
        "size": size, "batch": batch, "channels": channels, "step_s": step,
        "boundary_weight_s": float(np.median(weight_times[1:])),
        "boundary_share": float(np.median(weight_times[1:])) / step, "peak_gb": peak_rss_gb(),
    }


class TimedNetwork(torch.nn.Module):
    """Wraps the network and adds up the time spent inside it."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net, self.seconds, self.calls = net, 0.0, 0

    def forward(self, *args):
        start = time.perf_counter()
        out = self.net(*args)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def sampling(size: int, channels: int, sampler: str, steps: int | None, roi: int) -> dict:
    keep_freed_memory()  # as inference.json does
    net = ECSDUNet(channels=[channels * m for m in (1, 2, 4, 8)]).eval().to(memory_format=torch.channels_last)
    timed = TimedNetwork(net)
    inferer = ColdDiffusionInferer(ColdDiffusionScheduler(50, sampler=sampler), roi_size=roi, num_inference_steps=steps)
    image, _ = make_batch(size, 1)
    start = time.perf_counter()
    inferer(image, timed)
    total = time.perf_counter() - start
    return {
        "size": size, "channels": channels, "sampler": sampler, "steps": inferer.scheduler.num_inference_steps,
        "roi": roi, "seconds": total, "network_s": timed.seconds, "network_calls": timed.calls,
        "overhead_share": (total - timed.seconds) / total, "peak_gb": peak_rss_gb(),
    }


def in_subprocess(kind: str, threads: int, **kwargs) -> dict:
    code = (
        "import json, sys, torch; sys.path.insert(0, %r); torch.set_num_threads(%d); import benchmark_ecsd as b; "
        "print(json.dumps(b.%s(**%r)))" % (str(Path(__file__).parent), threads, kind, kwargs)
    )
    return run_json_child(["-c", code], what=f"{kind}({kwargs})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/ecsd.json")
    parser.add_argument("--channels", type=int, default=64, help="base width w (level widths w, 2w, 4w, 8w)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and sampling steps (a smoke run)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    repeats = 1 if args.quick else 2
    steps = 2 if args.quick else None
    rows: dict[str, list] = {"train": [], "sampling": [], "large": []}
    for size in (256, 512):
        rows["train"].append(in_subprocess("train_step", args.threads, size=size, batch=2, channels=args.channels,
                                           repeats=repeats))
        logger.info("train %s", rows["train"][-1])
    for sampler in ("bansal", "reference"):
        rows["sampling"].append(in_subprocess("sampling", args.threads, size=512, channels=args.channels,
                                              sampler=sampler, steps=steps, roi=512))
        logger.info("sampling %s", rows["sampling"][-1])
    for size in (512, 2048):  # memory only: two sampler steps are enough, memory does not grow with steps
        rows["large"].append(in_subprocess("sampling", args.threads, size=size, channels=args.channels,
                                           sampler="bansal", steps=2, roi=512))
        logger.info("large %s", rows["large"][-1])

    print(f"\nECSD on {args.threads} threads, channels={args.channels} (torch {torch.__version__})\n")
    print("| training step | batch | s / step | boundary weights | peak GB |\n|---|---|---|---|---|")
    for r in rows["train"]:
        print(f"| {r['size']} x {r['size']} | {r['batch']} | {r['step_s']:.2f} | {100 * r['boundary_share']:.2f} % "
              f"| {r['peak_gb']:.2f} |")
    print("\n| sampling 512 x 512 | steps | s | network s | sampler overhead | peak GB |\n|---|---|---|---|---|---|")
    for r in rows["sampling"]:
        print(f"| {r['sampler']} | {r['steps']} | {r['seconds']:.1f} | {r['network_s']:.1f} | "
              f"{100 * r['overhead_share']:.2f} % | {r['peak_gb']:.2f} |")
    print("\n| segment slice (tiles 512) | network calls | peak GB |\n|---|---|---|")
    for r in rows["large"]:
        print(f"| {r['size']} x {r['size']} | {r['network_calls']} | {r['peak_gb']:.2f} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": args.threads, "channels": args.channels, **rows}, indent=2))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
