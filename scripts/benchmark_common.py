"""What every benchmark script shares: the process's peak memory, and one measurement in a fresh process.

A peak resident set size belongs to one process, so each memory figure comes from a process started for that
measurement alone; its last stdout line is the JSON result. Where the time of a step goes, operator by operator, comes
from :func:`operator_profile`.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence

__all__ = ["bundle_workflow", "operator_profile", "peak_rss_gb", "run_json_child"]


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far, in GiB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def operator_profile(step: Callable[[], None], top: int = 25) -> dict:
    """Self CPU seconds per ATen operator of one ``step()`` under ``torch.profiler``, after one warm-up call.

    Returns ``step_s`` (one unprofiled call), ``aten_self_s`` (the operators' self time summed, so nested calls count
    once), ``conv_self_s`` and ``conv_share`` (every operator named ``*conv*``: the forward and backward kernels, oneDNN
    or native, and their dispatch), and the ``top`` operators, largest first.
    """
    import torch

    step()
    start = time.perf_counter()
    step()
    seconds = time.perf_counter() - start
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    ops = {e.key: (e.self_cpu_time_total / 1e6, e.count) for e in prof.key_averages() if e.key.startswith("aten::")}
    total = sum(s for s, _ in ops.values())
    conv = sum(s for name, (s, _) in ops.items() if "conv" in name)
    ranked = sorted(ops.items(), key=lambda kv: -kv[1][0])
    return {
        "step_s": seconds,
        "aten_self_s": total,
        "conv_self_s": conv,
        "conv_share": conv / total,
        "ops": [{"op": name, "self_s": s, "calls": n} for name, (s, n) in ranked[:top]],
    }


def run_json_child(args: Sequence[str], env: Mapping[str, str] | None = None, what: str = "child") -> dict:
    """Run ``python <args>`` in a fresh process and parse its last stdout line as JSON.

    Raises:
        RuntimeError: a non-zero exit, with the end of the child's stderr.
    """
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=False, env=env)
    if done.returncode:
        # "(exit code N)": negative N is the signal that killed it (-9: most likely out of memory)
        raise RuntimeError(f"{what} failed (exit code {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bundle_workflow(configs, config, workflow_type: str, **overrides):
    """A bundle's ``ConfigWorkflow`` from ``configs`` (its folder) for ``config`` (a file name or a list of overlays),
    with its metadata and logging files, initialized."""
    from monai.bundle import ConfigWorkflow

    files = [str(configs / c) for c in ([config] if isinstance(config, str) else config)]
    wf = ConfigWorkflow(config_file=files, meta_file=str(configs / "metadata.json"),
                        logging_file=str(configs / "logging.conf"), workflow_type=workflow_type, **overrides)
    wf.initialize()
    return wf
