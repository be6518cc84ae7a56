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

``--conv-rates`` instead times every convolution inside one forward (batch 1, no grad) and then runs each distinct
convolution alone (random tensors of the same shapes and memory formats, best of ``--repeats``), so the convolutions'
share of the forward and their rate in the network can be read beside the rate the same shapes reach on their own
(FLOPs as ``torch.utils.flop_counter`` counts them). The share divides by a forward timed without the interception.
Each distinct convolution is also timed alone with its backward (input and weight gradients), in the network's memory
format and in the other one (channels-last or contiguous), and the sums over the forward are reported for both formats
and for the faster of the two per shape: how much a per-layer choice of memory format could save.

``--op-profile forward|train`` instead runs one forward (batch 1, no grad) or one training step (batch ``--batch``,
plain Adam, checkpointing only with ``--checkpointing``) under ``torch.profiler`` after one warm-up and reports the
self CPU time of each ATen operator, largest first, with the convolutions' share (every operator named ``*conv*``:
forward and backward kernels and their dispatch).
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
from benchmark_common import operator_profile, peak_rss_gb, run_json_child  # noqa: E402

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
    checkpointing = spec["mode"] == "train" or spec.get("checkpointing", False)
    net = ECSDUNet(channels=widths, filter_size=spec["filter_size"], use_checkpointing=checkpointing)
    params = sum(p.numel() for p in net.parameters())
    x = torch.rand(batch, 1, size, size, generator=generator) * 2 - 1
    image = torch.rand(batch, 1, size, size, generator=generator) * 2 - 1
    target = (torch.rand(batch, 1, size, size, generator=generator) > 0.5).float() * 2 - 1
    timesteps = torch.randint(0, 50, (batch,), generator=generator)
    base_gb = peak_rss_gb()
    times = []
    if spec["mode"] == "op_profile":
        step = _profile_step(net, (x, timesteps, image), target, spec)
        return {**spec, "params": params, **operator_profile(step, top=spec.get("top", 25))}
    if spec["mode"] == "conv_rates":
        net.eval()
        return {**spec, "params": params, **_conv_rates(net, (x, timesteps, image), spec["repeats"])}
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


def _conv_rates(net, inputs: tuple, repeats: int) -> dict:
    """Time each convolution in one forward of ``net`` and the same convolutions run alone.

    Every ``aten.convolution`` call is caught below autograd (a ``TorchDispatchMode``), so functional convolutions
    (the attention's split q/k/v projection, the polyphase upsampling) count as well as ``nn.Conv2d`` modules.
    """

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import conv_flop_count

    calls: dict[tuple, dict] = {}

    def fmt(t) -> str:
        return "channels_last" if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) else "contiguous"

    class TimeConvolutions(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is not torch.ops.aten.convolution.default:
                return func(*args, **(kwargs or {}))
            start = time.perf_counter()
            out = func(*args, **(kwargs or {}))
            seconds = time.perf_counter() - start
            x, w, bias, stride, padding, dilation, transposed, output_padding, groups = args
            key = (
                tuple(x.shape), tuple(w.shape), bias is not None, tuple(stride), tuple(padding), tuple(dilation),
                bool(transposed), tuple(output_padding), int(groups), fmt(x), fmt(w),
            )  # fmt: skip
            entry = calls.setdefault(key, {"calls": 0, "seconds": 0.0})
            entry["calls"] += 1
            entry["seconds"] += seconds
            entry["flops"] = conv_flop_count(list(x.shape), list(w.shape), list(out.shape), bool(transposed))
            return out

    with torch.no_grad():
        net(*inputs)  # warm-up (oneDNN primitive creation)
        start = time.perf_counter()
        net(*inputs)
        forward_s = time.perf_counter() - start
        with TimeConvolutions():
            net(*inputs)
        shapes = []
        for key, entry in calls.items():
            x_shape, w_shape, has_bias, stride, padding, dilation, transposed, output_padding, groups, x_fmt, w_fmt = (
                key
            )
            bias = torch.randn(w_shape[1] * groups if transposed else w_shape[0]) if has_bias else None
            conv = (bias, stride, padding, dilation, transposed, output_padding, groups)
            other = "contiguous" if x_fmt == "channels_last" else "channels_last"
            alone, alone_backward = _time_alone(x_shape, w_shape, x_fmt, w_fmt, conv, repeats)
            other_alone, other_backward = _time_alone(x_shape, w_shape, other, other, conv, repeats)
            gflop = entry["flops"] * entry["calls"] / 1e9
            shapes.append(
                {
                    "input": list(x_shape),
                    "weight": list(w_shape),
                    "stride": list(stride),
                    "groups": groups,
                    "transposed": transposed,
                    "memory_format": x_fmt,
                    "calls": entry["calls"],
                    "gflop": gflop,
                    "network_s": entry["seconds"],
                    "alone_s": alone * entry["calls"],
                    "alone_backward_s": alone_backward * entry["calls"],
                    "other_format": other,
                    "other_s": other_alone * entry["calls"],
                    "other_backward_s": other_backward * entry["calls"],
                    "network_gflops": gflop / entry["seconds"],
                    "alone_gflops": entry["flops"] / alone / 1e9,
                }
            )
    conv_s = sum(r["network_s"] for r in shapes)
    sums = _format_sums(shapes)
    gflop = sum(r["gflop"] for r in shapes)
    return {
        "forward_s": forward_s,
        "conv_s": conv_s,
        "conv_share": conv_s / forward_s,
        "conv_gflop": gflop,
        "network_gflops": gflop / conv_s,
        "alone_gflops": gflop / sums["alone_forward_s"],
        **sums,
        "shapes": sorted(shapes, key=lambda r: -r["network_s"]),
    }


def _time_alone(x_shape, w_shape, x_fmt: str, w_fmt: str, conv: tuple, repeats: int) -> tuple[float, float]:
    """Best-of-``repeats`` seconds of one convolution on random tensors in the given memory formats: its forward, and
    its backward (gradients of input and weight, as every convolution of a training step but the first needs)."""

    import torch

    def tensor(shape, fmt: str):
        t = torch.randn(shape)
        return t.contiguous(memory_format=torch.channels_last) if fmt == "channels_last" else t

    x, w = tensor(x_shape, x_fmt).requires_grad_(), tensor(w_shape, w_fmt).requires_grad_()
    forward, backward = [], []
    with torch.enable_grad():
        for _ in range(repeats + 1):  # the first is a warm-up (oneDNN primitive creation)
            t0 = time.perf_counter()
            y = torch.ops.aten.convolution(x, w, *conv)
            t1 = time.perf_counter()
            grad = torch.randn_like(y)
            t2 = time.perf_counter()
            y.backward(grad)
            forward.append(t1 - t0)
            backward.append(time.perf_counter() - t2)
            x.grad = w.grad = None
    return min(forward[1:]), min(backward[1:])


def _format_sums(shapes: list[dict]) -> dict:
    """Each convolution of the forward timed alone, summed over the forward: in the network's memory formats, in the
    other format, and in the faster of the two for each shape; forward, and backward (of a training step)."""

    sums = {}
    for part, here, there in (("forward", "alone_s", "other_s"), ("backward", "alone_backward_s", "other_backward_s")):
        sums[f"alone_{part}_s"] = sum(r[here] for r in shapes)
        sums[f"other_format_{part}_s"] = sum(r[there] for r in shapes)
        sums[f"best_format_{part}_s"] = sum(min(r[here], r[there]) for r in shapes)
    return sums


def _profile_step(net, inputs: tuple, target, spec: dict):
    """The step that ``--op-profile`` times: a no-grad forward, or forward + MSE backward + Adam step."""

    import torch

    if spec["op_profile"] == "forward":
        net.eval()

        def forward() -> None:
            with torch.no_grad():
                net(*inputs)

        return forward
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-5)

    def train_step() -> None:
        torch.nn.functional.mse_loss(net(*inputs), target).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return train_step


def _report_op_profile(args) -> None:
    """Measure ``--op-profile`` at each size (default allocator), log a table and write ``--out``."""

    rows = []
    for size in args.sizes:
        batch = 1 if args.op_profile == "forward" else args.batch
        spec = {
            "size": size, "channels": args.channels, "threads": args.threads, "filter_size": args.filter_size,
            "mode": "op_profile", "op_profile": args.op_profile, "batch": batch, "checkpointing": args.checkpointing,
        }  # fmt: skip
        r = _run(spec, tuned=False)
        rows.append(r)
        lines = [f"{'operator':>44} {'self s':>7} {'share':>6} {'calls':>6}"]
        for op in r["ops"]:
            share = 100 * op["self_s"] / r["aten_self_s"]
            lines.append(f"{op['op']:>44} {op['self_s']:>7.3f} {share:>5.1f}% {op['calls']:>6}")
        logger.info(
            "ECSDUNet(channels=%d), %s, %d x %d, batch %d, %d threads%s: %.2f s unprofiled; ATen self time %.2f s, "
            "convolutions (forward and backward) %.2f s (%.0f %%)\n%s",
            args.channels, args.op_profile, size, size, batch, args.threads,
            ", checkpointing" if args.checkpointing else "", r["step_s"], r["aten_self_s"], r["conv_self_s"],
            100 * r["conv_share"], "\n".join(lines),
        )  # fmt: skip
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"threads": args.threads, "op_profile": rows}, f, indent=2)


def _run(spec: dict, tuned: bool) -> dict:
    env = dict(os.environ, **(TUNED_MALLOC_ENV if tuned else {}))
    return run_json_child([__file__, "--worker", json.dumps(spec)], env=env, what=f"profile_ecsd_network worker {spec}")


def _report_conv_rates(args) -> None:
    """Measure ``--conv-rates`` at each size (default allocator), log a table and write ``--out``."""

    rows = []
    for size in args.sizes:
        spec = {"size": size, "channels": args.channels, "threads": args.threads, "filter_size": args.filter_size}
        rows.append(_run({**spec, "mode": "conv_rates", "batch": 1, "repeats": args.repeats}, tuned=False))
    for r in rows:
        lines = [
            f"{'input':>18} {'weight':>16} {'calls':>5} {'GFLOP':>7} {'in net s':>8} {'GFLOP/s':>7} {'alone':>7}"
            f" | {'format':>13} {'fwd s':>6} {'bwd s':>6} | {'other':>13} {'fwd s':>6} {'bwd s':>6}"
        ]
        for c in r["shapes"]:
            lines.append(
                f"{'x'.join(map(str, c['input'])):>18} {'x'.join(map(str, c['weight'])):>16} {c['calls']:>5} "
                f"{c['gflop']:>7.1f} {c['network_s']:>8.3f} {c['network_gflops']:>7.1f} {c['alone_gflops']:>7.1f}"
                f" | {c['memory_format']:>13} {c['alone_s']:>6.3f} {c['alone_backward_s']:>6.3f}"
                f" | {c['other_format']:>13} {c['other_s']:>6.3f} {c['other_backward_s']:>6.3f}"
            )
        lines.append(
            "alone, summed over the forward (s, forward + backward): network's formats "
            f"{r['alone_forward_s']:.2f} + {r['alone_backward_s']:.2f}, other format {r['other_format_forward_s']:.2f} + "
            f"{r['other_format_backward_s']:.2f}, faster of the two per shape {r['best_format_forward_s']:.2f} + "
            f"{r['best_format_backward_s']:.2f}"
        )
        logger.info(
            "ECSDUNet(channels=%d), %d x %d, %d threads: forward %.2f s, convolutions %.2f s (%.0f %%), %.1f GFLOP; "
            "%.1f GFLOP/s in the network, %.1f GFLOP/s alone\n%s",
            args.channels,
            r["size"],
            r["size"],
            args.threads,
            r["forward_s"],
            r["conv_s"],
            100 * r["conv_share"],
            r["conv_gflop"],
            r["network_gflops"],
            r["alone_gflops"],
            "\n".join(lines),
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"threads": args.threads, "conv_rates": rows}, f, indent=2)


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
    parser.add_argument("--conv-rates", action="store_true", help="time the convolutions in and out of the network")
    parser.add_argument(
        "--op-profile", choices=["forward", "train"], default=None, help="self CPU time per operator of one step"
    )
    parser.add_argument("--checkpointing", action="store_true", help="--op-profile train with use_checkpointing")
    parser.add_argument("--out", default=None, help="path of the JSON result")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker is not None:
        sys.stdout.write(json.dumps(_worker(json.loads(args.worker))) + "\n")
        return

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    if args.conv_rates:
        _report_conv_rates(args)
        return
    if args.op_profile:
        _report_op_profile(args)
        return
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
