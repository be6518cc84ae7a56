"""NeuroDiff on this machine: network speed and memory, tiled synthesis of a 16 x 512 x 512 volume, remodeling
throughput, and DDIM step counts against quality after a short training run. Prints tables, writes JSON.

Parts (``--part``, default all); every timing part runs in a fresh process so that its peak memory is its own:

- ``network``: the paper-width network (widths 32, 64, 64, 128, 128, 256, 256, 62 M parameters, mambapy on CPU):
  forward, and forward + backward (a training step with Adam) at 8 x 128 x 128 and 8 x 256 x 256, with the share of
  the step spent in the RGM (Mamba) layers (the same step with ``use_rgm=False`` subtracted), beside the public network's figures.
- ``synthesis``: one sampler step over a 16 x 512 x 512 condition in 8 x 512 x 512 tiles and in 8 x 256 x 256 tiles
  (overlap 0.25), its time and the process's peak memory (target: <= 8 GB), and from it the time of 250 DDPM steps and
  of DDIM step counts.
- ``remodel``: remodeling throughput (volumes per minute) of 16 x 512 x 512 label volumes tiled from the FIB-SEM
  neurons, with the ISBI 2012 mitochondria library.
- ``quality``: the bundle's train.json on the FIB-SEM neurons for ``--budget-minutes`` (a narrow network: a CPU cannot
  train the paper's), then the held-back slices synthesized from their own conditions with DDPM 250 and DDIM
  50 / 10 steps: mean absolute error to the real EM (in [-1, 1]) and seconds.
- ``tiles``: what the CPU default of 256-pixel tiles costs against 512-pixel tiles: the same checkpoint (trained as
  for ``quality``, once for both parts) synthesizes the same held-back 8 x 512 x 512 volume (the 250 x 250 FIB-SEM
  slices mirrored out) in 8 x 256 x 256 and in 8 x 512 x 512 tiles, same seed, DDIM 10, each in a fresh process:
  MAE to the real EM, the seam score across Y and X at the 256-tile borders (``emdiff_components.metrics.seam_score``;
  the 512 row, one tile per slice, is the seamless reference), seconds and peak memory.

Usage::

    python scripts/benchmark_neurodiff.py --out benchmarks/neurodiff.json [--part network] [--threads 2]
    python scripts/benchmark_neurodiff.py --part tiles --budget-minutes 10 --threads 1
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts folder: benchmark_common
from benchmark_common import peak_rss_gb, run_json_child  # noqa: E402

logger = logging.getLogger("benchmark_neurodiff")

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundles" / "neurodiff" / "configs"
# the public NeuroDiff network on this kind of machine (issue 4): seconds, GB
ANCHOR = {"forward_8x128x128_s": 2.35, "forward_8x256x256_s": 12.2, "train_step_8x128x128_s": 6.6,
          "train_step_8x128x128_gb": 2.4}
QUALITY_MODEL = {"channels": [16, 32, 32, 64, 64, 128, 128], "time_channels": 32, "norm_num_groups": 16,
                 "msc_channels": [16, 32, 64, 128], "patch_size": [8, 64, 64]}
QUALITY_SETTINGS = [("ddpm", None), ("ddim", 50), ("ddim", 10)]
# tiles: the CPU default tile edge (sampling_tile_size's cpu_max_size) against the paper's training patch
TILES_VOLUME, TILES_SIZES, TILES_SETTING = (8, 512, 512), (256, 512), ("ddim", 10)



def _network(use_rgm: bool = True):
    from emdiff_components.networks import NeuroDiffUNet

    return NeuroDiffUNet(use_rgm=use_rgm)


def _inputs(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 1, *shape, generator=g)
    condition = torch.where(torch.rand(1, 2, *shape, generator=g) > 0.8, 1.0, -1.0)
    return x, torch.tensor([100]), condition


def network_speed(shape: tuple[int, int, int], repeats: int = 2) -> dict:
    """Forward (no grad) and training step (forward + backward + Adam) times; run in a fresh process."""
    result = {}
    for use_rgm in (True, False):
        net = _network(use_rgm)
        opt = torch.optim.Adam(net.parameters(), lr=1e-5)
        x, t, c = _inputs(shape)
        forwards, steps = [], []
        with torch.no_grad():
            for _ in range(repeats + 1):
                start = time.perf_counter()
                net(x, t, c)
                forwards.append(time.perf_counter() - start)
        for _ in range(repeats + 1):
            start = time.perf_counter()
            opt.zero_grad()
            (net(x, t, c) - x).abs().mean().backward()
            opt.step()
            steps.append(time.perf_counter() - start)
        key = "" if use_rgm else "_without_rgm"
        result[f"forward_s{key}"] = float(np.median(forwards[1:]))
        result[f"train_step_s{key}"] = float(np.median(steps[1:]))
        if use_rgm:
            result["parameters_m"] = sum(p.numel() for p in net.parameters()) / 1e6
            result["peak_rss_gb"] = peak_rss_gb()  # the full network's step comes first, so this is its peak
    result["rgm_share_of_step"] = 1 - result["train_step_s_without_rgm"] / result["train_step_s"]
    return result


def synthesis_step(shape=(16, 512, 512), roi=(8, 512, 512)) -> dict:
    """One DDPM step over a ``shape`` condition in overlapping tiles of ``roi``; fresh process for the peak memory."""
    from emdiff_components.diffusion import ConditionalSynthesisInferer, synthesis_scheduler
    from emdiff_components.engines import keep_freed_memory

    keep_freed_memory()
    net = _network().eval()
    inferer = ConditionalSynthesisInferer(synthesis_scheduler("ddpm", 250), roi_size=roi, overlap=0.25)
    _, _, condition = _inputs(shape)
    scheduler = inferer.scheduler
    scheduler.set_timesteps(250)
    sample = torch.randn(1, 1, *shape, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    with torch.no_grad():
        from emdiff_components.diffusion import tiled_prediction

        eps = tiled_prediction(net, sample, condition, 249, roi, sw_batch_size=1, overlap=0.25, stride=net.stride)
        scheduler.step(eps, 249, sample)
    seconds = time.perf_counter() - start
    return {"volume": list(shape), "tile": list(roi), "step_s": seconds, "peak_rss_gb": peak_rss_gb(),
            "ddpm_250_hours": seconds * 250 / 3600,
            "ddim_hours": {str(n): seconds * n / 3600 for n in (100, 50, 25, 10)}}


def remodel_throughput(shared: Path, repeats: int = 3) -> dict:
    import tifffile
    from emdiff_components.transforms import MitochondriaLibrary, RemodelMasksd

    neurons = tifffile.imread(shared / "fibsem_medulla_neurons_neuroproof" / "neuron_ids.tif")[:16].astype(np.int64)
    label = np.tile(neurons, (1, 3, 3))[:, :512, :512]  # 16 x 512 x 512 from the 250 x 250 cube
    library = MitochondriaLibrary.from_volumes([tifffile.imread(shared / "isbi2012_em" / "train-mito.tif")])
    remodel = RemodelMasksd(library=library).set_random_state(42)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        remodel({"label": label[None]})
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    return {"volume": [16, 512, 512], "seconds_per_volume": seconds, "volumes_per_minute": 60 / seconds,
            "library_templates": len(library)}


def fit_volume(volume: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The first ``shape`` voxels per axis; where the volume is smaller, mirrored about its faces (the face voxel
    repeated, numpy's ``"symmetric"``), centred: 250 -> 512 adds 131 voxels before and after. Mirroring adds no step
    edge, so a tile border of the synthesis stays the only new structure there."""
    crop = volume[tuple(slice(0, s) for s in shape)]
    pad = [((s - c) // 2, s - c - (s - c) // 2) for s, c in zip(shape, crop.shape)]
    return np.pad(crop, pad, mode="symmetric")


def held_back_volumes(data: Path, out: Path, shape: tuple[int, int, int]) -> Path:
    """A dataset folder at ``out`` with the held-back (Ts) cases of ``data`` fitted to ``shape`` (:func:`fit_volume`:
    cropped, or mirrored out where the data are smaller) and ``data``'s dataset.json."""
    from emdiff_components.data import read_image, write_volume_case

    for image in sorted((data / "imagesTs").iterdir()):
        parts = {kind: data / f"{kind}Ts" / image.name for kind in ("labels", "mito")}
        arrays = {kind: fit_volume(read_image(path), shape) for kind, path in parts.items() if path.is_file()}
        write_volume_case(out, "Ts", image.name.split(".")[0], fit_volume(read_image(image), shape),
                          arrays.get("labels"), arrays.get("mito"))
    shutil.copy(data / "dataset.json", out / "dataset.json")
    return out


def train_narrow_model(shared: Path, minutes: float, work: Path, data: Path | None = None) -> dict:
    """The bundle's train.json on the FIB-SEM neurons (training slices) for ``minutes`` with :data:`QUALITY_MODEL`.

    ``data``: train on this dataset folder instead (e.g. only the labelled sections of a label budget).

    Returns:
        ``{"common": overrides that evaluate the checkpoint, "data": the converted dataset folder,
        "budget_minutes", "iterations"}``.
    """
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow

    from emdiff_components.engines import TrainingProgress

    sys.path.insert(0, str(REPO / "scripts"))
    from convert_shared_data import convert

    if data is None:
        data = Path(convert("fibsem_neurons", work / "data", shared_dir=shared))
    common = {"bundle_root": str(work / "bundle"), "dataset_dir": str(data), "progress": False, **QUALITY_MODEL}
    wf = ConfigWorkflow(config_file=str(CONFIGS / "train.json"), meta_file=str(CONFIGS / "metadata.json"),
                        logging_file=str(CONFIGS / "logging.conf"), workflow_type="train", num_steps=100000,
                        ema_start_step=100, ema_update_every=1, **common)
    wf.initialize()
    progress = [h for h in wf.parser.get_parsed_content("train#output_handlers") if isinstance(h, TrainingProgress)]
    start = time.perf_counter()

    def budget(engine) -> None:
        elapsed = time.perf_counter() - start
        for handler in progress:  # count to the iterations the budget will reach, not to num_steps
            handler.total = max(engine.state.iteration, round(engine.state.iteration * 60 * minutes / elapsed))
        if elapsed > 60 * minutes:
            engine.terminate()

    wf.trainer.add_event_handler(Events.ITERATION_COMPLETED, budget)
    wf.run()
    return {"common": common, "data": str(data), "budget_minutes": minutes, "iterations": wf.trainer.state.iteration}


def evaluate(common: dict, data: str, out: str, sampler: str, steps: int | None, tile: list[int] | None = None):
    """The bundle's inference.json + evaluate.json on ``data``'s held-back cases (the last one's tensors returned).

    Args:
        common: the config overrides of :func:`train_narrow_model` (its checkpoint, the network widths).
        data: dataset folder with ``imagesTs`` / ``labelsTs``.
        out: output folder (metrics.csv, synthesized volumes, figure).
        sampler, steps: ``"ddpm"`` / ``"ddim"`` and the step count (None: all 250).
        tile: sampling tile ``[Z, Y, X]``; default None keeps the config's (``sampling_tile_size``).

    Returns:
        ``(row, pred, real, overlap)``: row ``{"mae", "seconds"}`` (MAE from the bundle's metrics.csv), the
        synthesized and the real EM ``(1, 1, Z, Y, X)`` in [-1, 1], and the config's tile overlap.
    """
    from monai.bundle import ConfigWorkflow

    overrides = {**common, "dataset_dir": data, "sampler": sampler, "num_inference_steps": steps, "output_dir": out}
    if tile is not None:
        overrides["tile_size"] = [int(t) for t in tile]
    ev = ConfigWorkflow(config_file=[str(CONFIGS / "inference.json"), str(CONFIGS / "evaluate.json")],
                        meta_file=str(CONFIGS / "metadata.json"), logging_file=str(CONFIGS / "logging.conf"),
                        workflow_type="infer", **overrides)
    ev.initialize()
    begin = time.perf_counter()
    ev.run()
    seconds = time.perf_counter() - begin
    mae = float((Path(out) / "metrics.csv").read_text().split(",")[1])
    output = ev.evaluator.state.output[-1]
    overlap = float(ev.parser.get_parsed_content("overlap"))
    return {"mae": mae, "seconds": seconds}, output["pred"][None], output["label"][None], overlap


def quality(model: dict, work: Path, settings=QUALITY_SETTINGS) -> dict:
    """MAE to the real EM and seconds per sampler setting, on the held-back volume cropped to 8 x 128 x 128."""
    # cropped so that 250 DDPM steps take minutes, not hours, on a CPU
    data = held_back_volumes(Path(model["data"]), work / "data_quality", (8, 128, 128))
    rows = {}
    for sampler, steps in settings:
        row, *_ = evaluate(model["common"], str(data), str(work / f"eval_{sampler}_{steps}"), sampler, steps)
        rows[f"{sampler} {steps or 250}"] = row
        logger.info("%s %s: MAE %.4f in %.0f s", sampler, steps, row["mae"], row["seconds"])
    return {"budget_minutes": model["budget_minutes"], "iterations": model["iterations"], "model": QUALITY_MODEL,
            "rows": rows, "test_volume": "FIB-SEM neurons, held-back slices, 8 x 128 x 128"}


def tile_row(common: dict, data: str, out: str, tile: list[int], seam_tile: int, sampler: str, steps: int) -> dict:
    """One synthesis of ``data``'s held-back volume in ``tile`` tiles: MAE to the real EM, the seam score across Y
    and X at the borders of ``seam_tile`` tiles (:func:`~emdiff_components.metrics.seam_score`), seconds, and the
    process's peak memory (meaningful in a fresh process)."""
    from emdiff_components.metrics import seam_score

    row, pred, _, overlap = evaluate(common, data, out, sampler, steps, tile)
    seams = {f"seam_{name}": seam_score(pred, seam_tile, overlap, axis) for name, axis in (("y", -2), ("x", -1))}
    return {"tile": list(tile), **row, **seams, "peak_rss_gb": peak_rss_gb()}


def tiles(model: dict, work: Path, threads: int, volume=TILES_VOLUME, sizes=TILES_SIZES, setting=TILES_SETTING,
          fresh_process: bool = True) -> dict:
    """The trained checkpoint synthesizes one held-back volume once per in-plane tile size, same seed and steps.

    The FIB-SEM slices are 250 x 250, so the held-back volume is mirrored out to ``volume`` (:func:`fit_volume`); the
    tile depth is the training patch's. Every row is scored for seams at the borders of the smallest tiles, so the
    row of one whole-slice tile gives the score of a seamless synthesis at the same planes.

    Args:
        model: :func:`train_narrow_model`'s result.
        work: scratch folder.
        threads: torch threads of the child processes.
        volume: ``(Z, Y, X)`` of the synthesized volume.
        sizes: in-plane tile edges, e.g. ``(256, 512)``: the CPU default and the training patch of the paper.
        setting: ``(sampler, steps)``.
        fresh_process: run each synthesis in its own process (default), so that its peak memory is its own.

    Returns:
        ``{"volume", "sampler", "steps", "seam_tile", "budget_minutes", "iterations", "rows": {str(size): row}}``
        with the rows of :func:`tile_row`.
    """
    data = held_back_volumes(Path(model["data"]), work / "data_tiles", tuple(volume))
    sampler, steps = setting
    rows = {}
    for size in sizes:
        spec = {"common": model["common"], "data": str(data), "out": str(work / f"tiles_{size}"),
                "tile": [model["common"]["patch_size"][0], size, size],
                "seam_tile": min(sizes), "sampler": sampler, "steps": steps}
        if fresh_process:
            path = work / f"tiles_{size}.json"
            path.write_text(json.dumps(spec))
            rows[str(size)] = run_child(f"tiles:{path}", threads)
        else:
            rows[str(size)] = tile_row(**spec)
        logger.info("tiles %s: %s", size, rows[str(size)])
    return {"volume": list(volume), "sampler": sampler, "steps": steps, "seam_tile": min(sizes),
            "budget_minutes": model["budget_minutes"], "iterations": model["iterations"], "rows": rows,
            "test_volume": f"FIB-SEM neurons, held-back slices, 250 x 250 mirrored to {volume[1]} x {volume[2]}"}


def run_child(name: str, threads: int) -> dict:
    """This script with ``--child name`` in a fresh process; its last stdout line parsed as JSON."""
    return run_json_child([__file__, "--child", name, "--threads", str(threads)], what=f"child {name}")


def print_tables(results: dict) -> None:
    for key in ("network_8x128x128", "network_8x256x256"):
        if key in results:
            r, size = results[key], key.split("_")[1]
            anchor_f = ANCHOR.get(f"forward_{size}_s")
            print(f"\n{size}: {r['parameters_m']:.1f} M parameters; forward {r['forward_s']:.2f} s "
                  f"(public: {anchor_f} s); training step {r['train_step_s']:.2f} s, peak {r['peak_rss_gb']:.2f} GB; "
                  f"RGM share of the step {100 * r['rgm_share_of_step']:.0f} %")
    for key in ("synthesis", "synthesis_tiles_256"):
        if key not in results:
            continue
        r = results[key]
        print(f"\nsynthesis {r['volume']} in {r['tile']} tiles: {r['step_s']:.0f} s per step, "
              f"peak {r['peak_rss_gb']:.2f} GB; DDPM 250: {r['ddpm_250_hours']:.1f} h; DDIM "
              + ", ".join(f"{n}: {h:.2f} h" for n, h in r["ddim_hours"].items()))
    if "remodel" in results:
        r = results["remodel"]
        print(f"\nremodeling 16 x 512 x 512: {r['seconds_per_volume']:.2f} s per volume, "
              f"{r['volumes_per_minute']:.0f} / min")
    if "quality" in results:
        r = results["quality"]
        print(f"\nquality after {r['budget_minutes']} min ({r['iterations']} iterations), {r['test_volume']}")
        print("| sampler | MAE to real EM | seconds |\n|---|---|---|")
        for key, row in r["rows"].items():
            print(f"| {key} | {row['mae']:.4f} | {row['seconds']:.0f} |")
    if "tiles" in results:
        r = results["tiles"]
        print(f"\ntile size after {r['budget_minutes']} min ({r['iterations']} iterations), {r['test_volume']}, "
              f"{r['volume']}, {r['sampler']} {r['steps']}, one seed; seam score at the {r['seam_tile']}-tile borders "
              "(about 1 or less: no seam)")
        print("| tiles | MAE to real EM | seam score Y | seam score X | seconds | peak GB |\n|---|---|---|---|---|---|")
        for row in r["rows"].values():
            print(f"| {' x '.join(map(str, row['tile']))} | {row['mae']:.4f} | {row['seam_y']:.3f} | "
                  f"{row['seam_x']:.3f} | {row['seconds']:.0f} | {row['peak_rss_gb']:.2f} |")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/neurodiff.json")
    parser.add_argument("--part", choices=("all", "network", "synthesis", "remodel", "quality", "tiles"), default="all")
    parser.add_argument("--budget-minutes", type=float, default=10.0)
    parser.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smoke run of quality / tiles: DDIM 2 steps only")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    if args.child:  # one measurement in a fresh process
        if args.child.startswith("tiles:"):
            print(json.dumps(tile_row(**json.loads(Path(args.child.partition(":")[2]).read_text()))))
        elif args.child.startswith("synthesis"):
            tile = args.child.partition(":")[2] or "8x512x512"
            print(json.dumps(synthesis_step(roi=tuple(int(v) for v in tile.split("x")))))
        else:
            print(json.dumps(network_speed(tuple(int(v) for v in args.child.split("x")))))
        return {}
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}

    def child(name: str) -> dict:
        return run_child(name, args.threads)

    if args.part in ("all", "network"):
        for shape in ("8x128x128", "8x256x256"):
            results[f"network_{shape}"] = child(shape)
    if args.part in ("all", "synthesis"):
        results["synthesis"] = child("synthesis:8x512x512")
        results["synthesis_tiles_256"] = child("synthesis:8x256x256")
    if args.part in ("all", "remodel"):
        results["remodel"] = remodel_throughput(Path(args.shared))
    if args.part in ("all", "quality", "tiles"):  # one training for both
        with tempfile.TemporaryDirectory() as tmp:
            model = train_narrow_model(Path(args.shared), args.budget_minutes, Path(tmp))
            if args.part in ("all", "quality"):
                settings = [("ddim", 2)] if args.quick else QUALITY_SETTINGS
                results["quality"] = quality(model, Path(tmp), settings)
            if args.part in ("all", "tiles"):
                setting = ("ddim", 2) if args.quick else TILES_SETTING
                results["tiles"] = tiles(model, Path(tmp), args.threads, setting=setting)
    results["threads"] = args.threads
    results["anchor"] = ANCHOR
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print_tables(results)
    return results


if __name__ == "__main__":
    main()
