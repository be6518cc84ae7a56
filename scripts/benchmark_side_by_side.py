"""Our networks against the public reference code, same structure and same weights, timed side by side on this machine.

ECSD: ``emdiff_components.networks.ECSDUNet`` against the public Cold SegDiffusion ``Unet`` (TimesXY/Cold-SegDiffusion
@ 8898bade, ``SegDiffusion.py``; Yan et al. "Cold SegDiffusion", KBS 2024). NeuroDiff: ``NeuroDiffUNet`` against
the public ``NeuroDiff`` (HeadLiuYun/NeuroDiff @ 19f775b2, ``diffusion_model/neurodiff.py``). The public code is not
part of this repository: pass the folders of a checkout (``git archive <commit>``) with ``--cold-segdiffusion`` and
``--neurodiff``. Only import shims are applied, at import time and in memory (the checkout is not modified):

- Cold SegDiffusion: ``np`` is added to the module's globals (the file uses it without importing it, only in its
  trainer); ``beartype`` is replaced by a no-op decorator when it is not installed (it decorates only the trainer).
- NeuroDiff: the checkout goes on ``sys.path`` and ``diffusion_model.neurodiff`` is imported as a package (its
  relative imports then work); ``mamba_ssm.Mamba`` is the CPU shim of ``reference_fixtures/SOURCES.md``: mambapy
  1.2.0's ``MambaBlock`` with ``MambaConfig(d_model, n_layers=1, d_state, expand_factor=expand, d_conv,
  dt_rank="auto", bias=False, conv_bias=True, pscan=True)`` (mamba_ssm's parameter names, pure-PyTorch scan).

Before any timing, each configuration is checked: the public network's state_dict (its own seeded initialisation,
with every constant tensor, e.g. norm gains and zero-initialised convolutions, perturbed by ``0.1 * randn``) is loaded
into ours through the key map of ``emdiff_components.networks.reference_weights`` (``strict=True``) and both outputs on
the same input must agree to ``--tolerance`` (max abs diff; default 1e-3). Parts:

- ``ecsd_forward``: forward under ``torch.no_grad`` (eval), ``--ecsd-forward-size`` (512) batch 1;
- ``ecsd_train``: forward + backward (MSE to a random target) + Adam step, each of ``--ecsd-train-sizes`` (256 512)
  at batch 2; ours with and without ``use_checkpointing``;
- ``neurodiff_forward`` / ``neurodiff_train``: the same at ``--neurodiff-shape`` (8 128 128) batch 1.

Widths are the bundles' (ECSD ``dim`` 64: channels 64..512, 4 heads x 32, ``filter_size`` = image size; NeuroDiff
``model_channels`` 64 x (0.5, 1, 1, 2, 2, 4, 4), Mamba at in-plane factors 8, 16, 32, ``anisotropy_ratio`` = width /
depth, voxel size (29, 6, 6)). Every timing runs in a fresh subprocess that does only that (one untimed warm-up call,
then one timed call), alternating ours and public, ``--repeats`` times; the table gives the median seconds, the
ratio public / ours, the peak RSS of the subprocess (``ru_maxrss``, the largest over the repeats), the FLOPs counted
once by ``torch.utils.flop_counter.FlopCounterMode`` in a separate subprocess (convolutions, matmuls, attention;
not element-wise ops, norms, FFTs or the Mamba scan) and the achieved GFLOP/s, beside the machine's own rates: a
3x3 conv2d 64 -> 64 at 256 x 256 batch 4 and a 2048^3 float32 matmul, timed in a subprocess.
A variant whose subprocess fails (e.g. killed out of memory) gets a "failed (exit code N)" row; the rest goes on.
With ``--op-profile`` every variant's step is also run once under ``torch.profiler`` in a further subprocess
(``benchmark_common.operator_profile``): the table then gives the seconds its convolutions take (every ATen operator
named ``*conv*``, forward and backward kernels, with their share of all operators' self time) and "public / our
conv", the public network's operator self time over our convolutions' (both profiled, one after the other): the ratio
ours would reach if everything but its convolutions cost nothing.

Usage::

    python scripts/benchmark_side_by_side.py --cold-segdiffusion /tmp/refcode/Cold-SegDiffusion \\
        --neurodiff /tmp/refcode/NeuroDiff [--parts ecsd_forward ...] [--repeats 3] [--threads 2] \\
        [--out benchmarks/side_by_side.json]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import statistics
import sys
import time
import types
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
import torch.utils.flop_counter

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts folder: benchmark_common
from benchmark_common import operator_profile, peak_rss_gb, run_json_child  # noqa: E402

logger = logging.getLogger("benchmark_side_by_side")

PARTS = ("ecsd_forward", "ecsd_train", "neurodiff_forward", "neurodiff_train")
COLD_SEGDIFF_COMMIT = "8898bade59a9fe9261022cfa793354b0c1fe8157"
NEURODIFF_COMMIT = "19f775b23aa8588f2b49f42e50b3df154bab576d"
ECSD_TIMESTEPS, NEURODIFF_TIMESTEPS = 50, 250
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "benchmarks" / "side_by_side.json"


# ---------------------------------------------------------------------------------------------- the public code
# flag -> (the file a checkout must hold, the repository and commit)
CHECKOUTS = {
    "--cold-segdiffusion": ("SegDiffusion.py", f"TimesXY/Cold-SegDiffusion @ {COLD_SEGDIFF_COMMIT}"),
    "--neurodiff": ("diffusion_model/neurodiff.py", f"HeadLiuYun/NeuroDiff @ {NEURODIFF_COMMIT}"),
}


def checkout_error(flag: str, folder: str | Path) -> str | None:
    """Why ``folder`` is not a usable checkout for ``flag`` (naming the folder), or None when it is."""
    name, repo = CHECKOUTS[flag]
    if (Path(folder) / name).is_file():
        return None
    return f"{flag} {str(folder)!r}: no {name} in this folder (expected a checkout of {repo})."


def load_cold_segdiffusion(folder: str | Path) -> types.ModuleType:
    """``SegDiffusion.py`` of a Cold-SegDiffusion checkout, imported with the shims of the module docstring."""
    error = checkout_error("--cold-segdiffusion", folder)
    if error:
        raise FileNotFoundError(error)
    path = Path(folder) / "SegDiffusion.py"
    if importlib.util.find_spec("beartype") is None:  # decorates only the MedSegDiff trainer, not Unet
        shim = types.ModuleType("beartype")
        shim.beartype = lambda fn: fn
        sys.modules["beartype"] = shim
    spec = importlib.util.spec_from_file_location("cold_segdiffusion_reference", path)
    module = importlib.util.module_from_spec(spec)
    module.np = importlib.import_module("numpy")  # the file uses np without importing it (only in its trainer)
    spec.loader.exec_module(module)
    return module


def _mamba_shim() -> types.ModuleType:
    """A ``mamba_ssm`` module whose ``Mamba`` is mambapy's ``MambaBlock`` (SOURCES.md of the reference fixtures)."""
    from mambapy.mamba import MambaBlock, MambaConfig

    class Mamba(MambaBlock):
        def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2) -> None:
            config = MambaConfig(
                d_model=d_model, n_layers=1, d_state=d_state, expand_factor=expand, d_conv=d_conv,
                dt_rank="auto", bias=False, conv_bias=True, pscan=True,
            )
            super().__init__(config)

    shim = types.ModuleType("mamba_ssm")
    shim.Mamba = Mamba
    return shim


def load_neurodiff(folder: str | Path) -> types.ModuleType:
    """``diffusion_model.neurodiff`` of a NeuroDiff checkout, imported with the shims of the module docstring."""
    error = checkout_error("--neurodiff", folder)
    if error:
        raise FileNotFoundError(error)
    folder = Path(folder)
    import emdiff_components.networks  # noqa: F401  (decides about the real mamba_ssm before the shim goes in)

    sys.modules["mamba_ssm"] = _mamba_shim()
    sys.path.insert(0, str(folder.resolve()))
    return importlib.import_module("diffusion_model.neurodiff")


# ------------------------------------------------------------------------------------------ networks and inputs
def build(config: dict, impl: str) -> torch.nn.Module:
    """Our network (``impl="ours"``) or the public one (``"public"``) of ``config`` (see :func:`configs`)."""
    if config["model"] == "ecsd":
        dim, size = config["dim"], config["size"]
        if impl == "public":
            module = load_cold_segdiffusion(config["cold_segdiffusion"])
            return module.Unet(dim=dim, image_size=size, mask_channels=1, input_img_channels=1)
        from emdiff_components.networks import ECSDUNet

        return ECSDUNet(
            in_channels=1, cond_channels=1, out_channels=1, channels=[dim * m for m in (1, 2, 4, 8)],
            attention_heads=4, attention_head_channels=32, filter_size=size,
            use_checkpointing=config.get("use_checkpointing", False),
        )
    base, mult, (depth, _, width) = config["model_channels"], config["channel_mult"], config["shape"]
    if impl == "public":
        module = load_neurodiff(config["neurodiff"])
        return module.NeuroDiff(
            image_size=width, in_channels=3, model_channels=base, out_channels=1, num_res_blocks=1,
            attention_resolutions=tuple(config["rgm_factors"]), channel_mult=tuple(mult), ani_ratio=width / depth,
            res_z=29, res_xy=6,
        )
    from emdiff_components.networks import NeuroDiffUNet

    return NeuroDiffUNet(
        channels=[int(m * base) for m in mult], time_channels=base, num_res_blocks=1,
        rgm_factors=tuple(config["rgm_factors"]), anisotropy_ratio=width / depth, voxel_size=(29, 6, 6),
        use_checkpointing=config.get("use_checkpointing", False),
    )


def make_inputs(config: dict, seed: int = 42) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    b = config["batch"]
    if config["model"] == "ecsd":
        shape = (b, 1, config["size"], config["size"])
        x, cond = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
        return {"x": x, "cond": cond, "t": torch.randint(0, ECSD_TIMESTEPS, (b,), generator=g),
                "target": torch.randn(shape, generator=g)}
    shape = config["shape"]
    x = torch.randn(b, 1, *shape, generator=g)
    cond = torch.randn(b, 2, *shape, generator=g).clamp(-1, 1)
    return {"x": x, "cond": cond, "t": torch.randint(0, NEURODIFF_TIMESTEPS, (b,), generator=g),
            "target": torch.randn(b, 1, *shape, generator=g)}


def call(net: torch.nn.Module, config: dict, impl: str, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    x, t, cond = inputs["x"], inputs["t"], inputs["cond"]
    if config["model"] == "neurodiff" and impl == "public":
        return net(torch.cat([x, cond], dim=1), t)  # the reference reads its condition as x[:, 1:]
    return net(x, t, cond)


def _step_fn(config: dict, impl: str):
    """Build the network and return the zero-argument callable of one measured unit (a forward or a train step)."""
    torch.manual_seed(0)
    net = build(config, impl)
    inputs = make_inputs(config)
    if config["task"] == "forward":
        net.eval()

        def forward() -> None:
            with torch.no_grad():
                call(net, config, impl, inputs)

        return forward
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        F.mse_loss(call(net, config, impl, inputs), inputs["target"]).backward()
        opt.step()

    return train_step


# ---------------------------------------------------------------------------------------- subprocess jobs
def job_time(config: dict, impl: str) -> dict:
    step = _step_fn(config, impl)
    step()  # warm-up: oneDNN primitives, Adam state, allocator
    start = time.perf_counter()
    step()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss_gb": peak_rss_gb()}


def _mkldnn_conv_flop(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    return torch.utils.flop_counter.conv_flop_count(x_shape, w_shape, out_shape, transposed=False)


def job_flops(config: dict, impl: str) -> dict:
    """FLOPs of one unit; ``aten.mkldnn_convolution`` (NeuroDiffUNet's 3D convs call it) counts as a convolution."""
    step = _step_fn(config, impl)
    with torch.utils.flop_counter.FlopCounterMode(display=False, custom_mapping={torch.ops.aten.mkldnn_convolution: _mkldnn_conv_flop}) as c:
        step()
    return {"flops": int(c.get_total_flops())}


def _perturb_constant_tensors(state: dict[str, torch.Tensor], seed: int = 1234) -> dict[str, torch.Tensor]:
    """Add ``0.1 * randn`` to every floating tensor whose entries are all equal (norms, zero-initialised convs...)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in state.items():
        if value.is_floating_point() and value.numel() > 0 and bool((value == value.flatten()[0]).all()):
            value = value + 0.1 * torch.randn(value.shape, generator=g)
        out[key] = value
    return out


def job_check(config: dict) -> dict:
    """Max abs diff between the public network and ours loaded with its (perturbed) weights through the key map."""
    from emdiff_components.networks.reference_weights import (
        convert_cold_segdiff_state_dict,
        convert_neurodiff_state_dict,
    )

    torch.manual_seed(0)
    public = build(config, "public").eval()
    public.load_state_dict(_perturb_constant_tensors(public.state_dict()))
    ours = build(config, "ours").eval()
    if config["model"] == "ecsd":
        state = convert_cold_segdiff_state_dict(public.state_dict(), "public Unet")
    else:
        state = convert_neurodiff_state_dict(public.state_dict(), "public NeuroDiff")
        state.update({k: v for k, v in ours.state_dict().items() if k.endswith("rpge.resolution")})
    ours.load_state_dict(state, strict=True)
    inputs = make_inputs(config)
    with torch.no_grad():
        expected, got = call(public, config, "public", inputs), call(ours, config, "ours", inputs)
    return {"max_abs_diff": float((expected - got).abs().max()), "max_abs_output": float(expected.abs().max())}


def _median_seconds(fn, repeats: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def job_machine(conv_size: int = 256, matmul_size: int = 2048) -> dict:
    """GFLOP/s of a 3x3 conv2d 64 -> 64 (batch 4, both memory formats) and of a float32 matmul (no_grad)."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).eval()
    x = torch.randn(4, 64, conv_size, conv_size)
    conv_flops = 2 * 4 * 64 * 64 * 9 * conv_size**2
    a, b = torch.randn(matmul_size, matmul_size), torch.randn(matmul_size, matmul_size)
    with torch.no_grad():
        conv_s = _median_seconds(lambda: conv(x))
        conv_cl = conv.to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        conv_cl_s = _median_seconds(lambda: conv_cl(x_cl))
        matmul_s = _median_seconds(lambda: a @ b)
    return {
        "conv3x3_gflops": conv_flops / conv_s / 1e9,
        "conv3x3_channels_last_gflops": conv_flops / conv_cl_s / 1e9,
        "matmul_gflops": 2 * matmul_size**3 / matmul_s / 1e9,
        "conv": f"conv2d 64->64 3x3, input 4 x 64 x {conv_size} x {conv_size}",
        "matmul": f"float32 {matmul_size} x {matmul_size} @ {matmul_size} x {matmul_size}",
    }


def job_ops(config: dict, impl: str) -> dict:
    """Self CPU time per operator of one unit (:func:`benchmark_common.operator_profile`), the top 12 kept."""
    return operator_profile(_step_fn(config, impl), top=12)


JOBS = {"time": job_time, "flops": job_flops, "check": job_check, "machine": job_machine, "ops": job_ops}


def run_job(job: dict, threads: int) -> dict:
    """Run ``JOBS[job["kind"]](**job["args"])`` in a fresh Python process with ``threads`` torch threads."""
    cmd = [str(Path(__file__).resolve()), "--worker", json.dumps(job), "--threads", str(threads)]
    return run_json_child(cmd, what=f"{job['kind']} job {job['args']}")


# ------------------------------------------------------------------------------------------------- the plan
def configs(args: argparse.Namespace) -> list[dict]:
    """One entry per table case: ``{"part", "case", "config", "ours": [variant configs]}``."""
    ecsd = {"model": "ecsd", "dim": args.ecsd_dim, "cold_segdiffusion": args.cold_segdiffusion}
    nd = {
        "model": "neurodiff", "model_channels": args.neurodiff_model_channels,
        "channel_mult": list(args.neurodiff_channel_mult), "rgm_factors": list(args.neurodiff_rgm_factors),
        "shape": list(args.neurodiff_shape), "batch": 1, "neurodiff": args.neurodiff,
    }
    shape = " x ".join(map(str, args.neurodiff_shape))
    cases = []
    for part in args.parts:
        if part == "ecsd_forward":
            s = args.ecsd_forward_size
            cases.append((part, f"{s} x {s} batch 1", {**ecsd, "size": s, "batch": 1, "task": "forward"}, [False]))
        elif part == "ecsd_train":
            for s in args.ecsd_train_sizes:
                config = {**ecsd, "size": s, "batch": 2, "task": "train"}
                cases.append((part, f"{s} x {s} batch 2", config, [False, True]))
        else:
            task = part.split("_")[1]
            cases.append((part, f"{shape} batch 1", {**nd, "task": task}, [False]))
    return [
        {"part": p, "case": c, "config": cfg, "ours": [{**cfg, "use_checkpointing": ck} for ck in ckpt]}
        for p, c, cfg, ckpt in cases
    ]


def _impl_name(config: dict, impl: str) -> str:
    return "ours, use_checkpointing" if impl == "ours" and config.get("use_checkpointing") else impl


def measure(
    cases: list[dict], repeats: int, threads: int, tolerance: float, op_profile: bool = False
) -> tuple[list[dict], list[dict]]:
    """Equal-output checks, then the timings (alternating public / ours), FLOP counts and, with ``op_profile``, the
    operator profiles; returns (checks, rows)."""
    checks, seen = [], set()
    for case in cases:
        cfg = {**case["config"], "batch": 1, "task": "forward"}
        key = json.dumps({k: v for k, v in cfg.items() if k != "batch"}, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        result = run_job({"kind": "check", "args": {"config": cfg}}, threads)
        checks.append({"model": cfg["model"], "config": cfg, **result})
        logger.info("check %s %s batch 1: max |diff| %.2e", cfg["model"], cfg.get("size", cfg.get("shape")), result["max_abs_diff"])
        if not result["max_abs_diff"] < tolerance:
            raise RuntimeError(
                f"{case['part']} {case['case']}: ours and the public network differ by {result['max_abs_diff']:.3g} "
                f"(tolerance {tolerance}) with the same weights; not timing networks that are not the same."
            )
    rows = []
    for case in cases:
        variants = [("public", case["config"])] + [("ours", c) for c in case["ours"]]
        seconds = {i: [] for i in range(len(variants))}
        rss = {i: [] for i in range(len(variants))}
        failed: dict[int, str] = {}  # a variant that fails (e.g. killed out of memory) is reported, not retried
        for r in range(repeats):
            order = range(len(variants)) if r % 2 == 0 else reversed(range(len(variants)))
            for i in order:
                impl, cfg = variants[i]
                if i in failed:
                    continue
                try:
                    result = run_job({"kind": "time", "args": {"config": cfg, "impl": impl}}, threads)
                except RuntimeError as err:
                    lines = str(err).strip().splitlines()  # "(exit code N)" and the error's last line
                    failed[i] = " ".join([lines[0].split(" failed ")[-1].strip(":"), *lines[1:][-1:]]).replace("|", "/")
                    logger.warning("%s %s %s failed: %s", case["part"], case["case"], _impl_name(cfg, impl), err)
                    continue
                seconds[i].append(result["seconds"])
                rss[i].append(result["peak_rss_gb"])
                logger.info("%s %s %s: %.3f s", case["part"], case["case"], _impl_name(cfg, impl), result["seconds"])
        public_s = None if 0 in failed else statistics.median(seconds[0])
        for i, (impl, cfg) in enumerate(variants):
            if i in failed:
                rows.append({"part": case["part"], "case": case["case"], "impl": _impl_name(cfg, impl),
                             "error": f"failed {failed[i]}"})
                continue
            flops = run_job({"kind": "flops", "args": {"config": cfg, "impl": impl}}, threads)["flops"]
            median = statistics.median(seconds[i])
            rows.append({
                "part": case["part"], "case": case["case"], "impl": _impl_name(cfg, impl), "seconds": median,
                "all_seconds": seconds[i], "ratio_public_over_ours": None if impl == "public" or public_s is None else public_s / median,
                "peak_rss_gb": max(rss[i]), "flops": flops, "gflops_per_s": flops / median / 1e9,
            })
            if op_profile:
                ops = run_job({"kind": "ops", "args": {"config": cfg, "impl": impl}}, threads)
                rows[-1]["op_profile"] = ops
                logger.info("%s %s %s: convolutions %.2f of %.2f s operator self time", case["part"], case["case"],
                            _impl_name(cfg, impl), ops["conv_self_s"], ops["aten_self_s"])
    return checks, rows


def format_table(result: dict) -> str:
    """The markdown table of ``result`` (the JSON written by :func:`main`)."""
    machine = result.get("machine") or {}
    conv = machine.get("conv3x3_gflops")
    lines = [
        f"Side by side on {result['threads']} threads, median of {result['repeats']} (torch {result['torch']})",
        "",
    ]
    profiled = any("op_profile" in r for r in result["rows"])
    header = ["part", "case", "network", "s", "public / ours", "peak RSS GB", "GFLOP", "GFLOP/s", "% of conv3x3 rate"]
    if profiled:
        header += ["conv s (share)", "public / our conv"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    public_s: dict[tuple, float] = {}  # the public network's profiled operator self time, per case
    for r in result["rows"]:
        if r.get("error"):
            lines.append(f"| {r['part']} | {r['case']} | {r['impl']} | {r['error']} |" + "  |" * (len(header) - 4))
            continue
        if r["impl"] == "public":
            if "op_profile" in r:
                public_s[r["part"], r["case"]] = r["op_profile"]["aten_self_s"]
        ratio = "" if r["ratio_public_over_ours"] is None else f"{r['ratio_public_over_ours']:.2f}"
        share = f"{100 * r['gflops_per_s'] / conv:.0f} %" if conv else ""
        cells = [r["part"], r["case"], r["impl"], f"{r['seconds']:.3f}", ratio, f"{r['peak_rss_gb']:.2f}",
                 f"{r['flops'] / 1e9:.1f}", f"{r['gflops_per_s']:.1f}", share]  # fmt: skip
        if profiled:
            ops = r.get("op_profile")
            floor = public_s.get((r["part"], r["case"])) if r["impl"] != "public" else None
            cells += [
                f"{ops['conv_self_s']:.2f} ({100 * ops['conv_share']:.0f} %)" if ops else "",
                f"{floor / ops['conv_self_s']:.2f}" if ops and floor else "",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    if machine:
        lines += [
            "",
            (
                f"Machine: {machine['conv']}: {machine['conv3x3_gflops']:.1f} GFLOP/s "
                f"({machine['conv3x3_channels_last_gflops']:.1f} channels-last); {machine['matmul']}: "
                f"{machine['matmul_gflops']:.1f} GFLOP/s."
            ),
        ]
    for c in result.get("checks", []):
        lines.append(f"Same weights, same output: {c['model']} {c['config'].get('size', c['config'].get('shape'))}: "
                     f"max |diff| {c['max_abs_diff']:.2e} (max |output| {c['max_abs_output']:.2f}).")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold-segdiffusion", help="folder of a TimesXY/Cold-SegDiffusion checkout (ecsd parts)")
    parser.add_argument("--neurodiff", help="folder of a HeadLiuYun/NeuroDiff checkout (neurodiff parts)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--repeats", type=int, default=3, help="subprocesses per network and case (median)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in every subprocess")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="max abs output diff allowed by the check")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="JSON output")
    parser.add_argument("--ecsd-dim", type=int, default=64, help="Unet dim (our channels dim x 1, 2, 4, 8)")
    parser.add_argument("--ecsd-forward-size", type=int, default=512)
    parser.add_argument("--ecsd-train-sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--neurodiff-shape", type=int, nargs=3, default=[8, 128, 128], metavar=("D", "H", "W"))
    parser.add_argument("--neurodiff-model-channels", type=int, default=64)
    parser.add_argument("--neurodiff-channel-mult", type=float, nargs="+", default=[0.5, 1, 1, 2, 2, 4, 4])
    parser.add_argument("--neurodiff-rgm-factors", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--skip-machine", action="store_true", help="do not time the machine's conv / matmul rates")
    parser.add_argument("--op-profile", action="store_true", help="also profile each variant's step by operator")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return args
    for name in ("repeats", "threads", "ecsd_dim", "ecsd_forward_size", "neurodiff_model_channels"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive int, got {getattr(args, name)}")
    if any(s < 8 or s % 8 for s in [args.ecsd_forward_size, *args.ecsd_train_sizes]):
        parser.error("ECSD sizes must be positive multiples of 8 (the Unet's total stride)")
    if any(s < 1 for s in args.neurodiff_shape):
        parser.error(f"--neurodiff-shape must be positive, got {args.neurodiff_shape}")
    if not args.tolerance > 0:
        parser.error(f"--tolerance must be positive, got {args.tolerance}")
    for prefix, flag, folder in (("ecsd", "--cold-segdiffusion", args.cold_segdiffusion),
                                 ("neurodiff", "--neurodiff", args.neurodiff)):
        needed = [p for p in args.parts if p.startswith(prefix)]
        if needed and folder is None:
            parser.error(f"{flag} is required for the parts {needed}")
        if needed and checkout_error(flag, folder):
            parser.error(checkout_error(flag, folder))
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.worker:  # inside a measurement subprocess
        torch.set_num_threads(args.threads)
        job = json.loads(args.worker)
        print(json.dumps(JOBS[job["kind"]](**job["args"])))
        return {}
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    checks, rows = measure(configs(args), args.repeats, args.threads, args.tolerance, args.op_profile)
    machine = None if args.skip_machine else run_job({"kind": "machine", "args": {}}, args.threads)
    result = {
        "threads": args.threads, "repeats": args.repeats, "torch": torch.__version__,
        "references": {"cold_segdiffusion": COLD_SEGDIFF_COMMIT, "neurodiff": NEURODIFF_COMMIT},
        "machine": machine, "checks": checks, "rows": rows,
    }
    print(format_table(result))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    logger.info("written to %s", out)
    return result


if __name__ == "__main__":
    main()
