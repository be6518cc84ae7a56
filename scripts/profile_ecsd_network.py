"""Profile the ECSD network: forward time, training-step time and peak memory, one subprocess per measurement.

Usage::

    python scripts/profile_ecsd_network.py --sizes 256 512 --batch 2 --out ecsd_profile.json

Each measurement runs in a fresh subprocess so that its peak resident memory (``ru_maxrss``) belongs to that
measurement alone. Forward: batch 1, ``torch.no_grad()``, eval mode, best of ``--repeats`` after one warm-up. Training
step: batch ``--batch``, train mode, ``use_checkpointing=True``, MSE loss, backward and an AdamW step (the paper's
optimiser), ``--train-steps`` steps (the second includes the AdamW state); the reported time is the last step's.

``--allocator tuned`` runs the subprocess with ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` raised, so glibc
keeps freed feature maps instead of returning them to the OS (each fresh 64 MB map otherwise costs page faults);
``both`` measures the two settings side by side. The table is logged to stdout and written as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts folder: benchmark_common
from benchmark_common import peak_rss_gb, run_json_child  # noqa: E402

__all__ = ["main"]

logger = logging.getLogger("profile_ecsd_network")

TUNED_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(2**31), "MALLOC_TRIM_THRESHOLD_": str(2**31)}


def _worker(spec: dict) -> dict:
    """Run one measurement in this process and return its numbers."""

    import torch

    from emdiff_components.networks import ECSDUNet

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    size, batch = spec["size"], spec["batch"]
    widths = [spec["channels"] * m for m in (1, 2, 4, 8)]
    net = ECSDUNet(channels=widths, filter_size=spec["filter_size"], use_checkpointing=spec["mode"] == "train")
    params = sum(p.numel() for p in net.parameters())
    x = torch.rand(batch, 1, size, size, generator=generator) * 2 - 1
    image = torch.rand(batch, 1, size, size, generator=generator) * 2 - 1
    target = (torch.rand(batch, 1, size, size, generator=generator) > 0.5).float() * 2 - 1
    timesteps = torch.randint(0, 50, (batch,), generator=generator)
    base_gb = peak_rss_gb()
    times = []
    if spec["mode"] == "forward":
        net.eval()
        with torch.no_grad():
            net(x, timesteps, image)  # warm-up (oneDNN primitive creation)
            for _ in range(spec["repeats"]):
                start = time.perf_counter()
                net(x, timesteps, image)
                times.append(time.perf_counter() - start)
        seconds = min(times)
    else:
        net.train()
        optimizer = torch.optim.AdamW(net.parameters(), lr=4e-5, weight_decay=1e-6)
        for _ in range(spec["train_steps"]):
            start = time.perf_counter()
            loss = torch.nn.functional.mse_loss(net(x, timesteps, image), target)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - start)
        seconds = times[-1]
    peak_gb = peak_rss_gb()
    return {**spec, "seconds": seconds, "all_seconds": times, "peak_gb": peak_gb, "base_gb": base_gb, "params": params}


def _run(spec: dict, tuned: bool) -> dict:
    env = dict(os.environ, **(TUNED_MALLOC_ENV if tuned else {}))
    return run_json_child([__file__, "--worker", json.dumps(spec)], env=env, what=f"profile_ecsd_network worker {spec}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--batch", type=int, default=2, help="training-step batch size (forward uses batch 1)")
    parser.add_argument("--channels", type=int, default=64, help="base width w (level widths w, 2w, 4w, 8w)")
    parser.add_argument("--filter-size", type=int, default=512, help="FF-Parser map grid (the bundle's filter_size)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed forward passes (best is reported)")
    parser.add_argument("--train-steps", type=int, default=2)
    parser.add_argument("--allocator", choices=["default", "tuned", "both"], default="both")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--out", default=None, help="path of the JSON result")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker is not None:
        sys.stdout.write(json.dumps(_worker(json.loads(args.worker))) + "\n")
        return

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    allocators = ["default", "tuned"] if args.allocator == "both" else [args.allocator]
    rows = []
    for allocator in allocators:
        for size in args.sizes:
            common = {"size": size, "channels": args.channels, "threads": args.threads, "filter_size": args.filter_size}
            fwd = _run({**common, "mode": "forward", "batch": 1, "repeats": args.repeats}, allocator == "tuned")
            row = {
                "allocator": allocator,
                "size": size,
                "batch": args.batch,
                "channels": args.channels,
                "forward_s": fwd["seconds"],
                "params": fwd["params"],
                "train_step_s": None,
                "peak_gb": None,
            }
            if not args.skip_train:
                train = _run(
                    {**common, "mode": "train", "batch": args.batch, "train_steps": args.train_steps},
                    allocator == "tuned",
                )
                row.update(train_step_s=train["seconds"], peak_gb=train["peak_gb"], train_all_s=train["all_seconds"])
            rows.append(row)
            logger.info("measured %s", row)

    header = (
        f"{'allocator':>9} {'size':>5} {'batch':>5} {'forward s':>9} {'train-step s':>12} {'peak GB':>8} {'params':>11}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        train_s = "-" if r["train_step_s"] is None else f"{r['train_step_s']:.1f}"
        peak = "-" if r["peak_gb"] is None else f"{r['peak_gb']:.2f}"
        lines.append(
            f"{r['allocator']:>9} {r['size']:>5} {r['batch']:>5} {r['forward_s']:>9.2f} {train_s:>12} {peak:>8} "
            f"{r['params']:>11,}"
        )
    logger.info(
        "ECSDUNet(channels=%d), %d threads; forward: batch 1, no grad; train step: checkpointing + AdamW\n%s",
        args.channels,
        args.threads,
        "\n".join(lines),
    )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"threads": args.threads, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
