"""NeuroDiff downstream at CPU scale: neuron segmentation with and without synthetic data (the direction of the
paper's Table 1), blockwise segmentation time and memory, and 3D-FID of the synthesis samplers. Prints tables, writes
JSON.

Parts (``--part``, default all):

- ``table1``: on the FIB-SEM neurons (``../shared/data``; 48 training sections, the last 16 held back), with a label
  budget (``--label-fraction``, paper 0.04) taken as the first training sections:
  1. the generator (the bundle's train.json, narrow widths of ``benchmark_neurodiff.QUALITY_MODEL``) is trained for
     ``--generator-minutes`` on the labelled sections only (padded by reflection to 16 sections, as the segmentation
     trainer does), since those are all the labels there are;
  2. their labels are remodeled (remodel.json, ``--copies`` copies, no mitochondria placement: this stack has no
     mitochondria masks) and synthesized (inference.json, DDIM ``--synthesis-steps``);
  3. segment_train.json trains the Superhuman U-Net for ``--iterations`` on the real labelled sections alone, and on
     them + the synthetic pairs 50 / 50, once per ``--seeds``;
  4. segment.json + segment_evaluate.json segment the held-back volume (waterz and multicut): VI split / merge and
     ARAND, mean and spread over the seeds, beside the paper's AC3/AC4 numbers. Each run's record is also written to
     its folder, ``<work>/seg_<real|mixed>_<seed>/run.json``.
  ``--conditions`` picks the runs (``real`` needs no generator), so the two halves can run on two cores and be
  joined with ``--merge``.
- ``blockwise``: the paper-width Superhuman U-Net (untrained: speed and memory do not depend on the weights) predicts
  the affinities of a 64 x 512 x 512 volume (the FIB-SEM stack mirrored out) block by block from an HDF5 file, then
  waterz agglomerates them; seconds per stage and the process's peak memory (goal: inside 8 GB), in a fresh process.
- ``fid``: the generator of ``table1`` synthesizes the held-back volume from its own condition with DDPM 250, DDIM 50
  and DDIM 10; 3D-FID to the real volume in the feature space of the real-only segmentation network (seed 0), beside
  the time each sampler takes (with ``table1`` in the same call, or alone with ``--part fid`` on an earlier run's
  ``--work``).

Usage::

    python scripts/benchmark_neurodiff_segmentation.py --out benchmarks/neurodiff_segmentation.json --threads 2
    python scripts/benchmark_neurodiff_segmentation.py --part blockwise
    # Table 1 on two cores: the real-only runs need no generator, so they start at once
    python scripts/benchmark_neurodiff_segmentation.py --part table1 --conditions real --no-fid --threads 1 \
        --work W --out real.json &
    python scripts/benchmark_neurodiff_segmentation.py --part table1 --conditions mixed --no-fid --threads 1 \
        --work W --out mixed.json; wait
    python scripts/benchmark_neurodiff_segmentation.py --part fid --reuse-generator --work W --out fid.json
    python scripts/benchmark_neurodiff_segmentation.py --merge real.json mixed.json fid.json --out OUT.json
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

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts folder: benchmark_common
from benchmark_common import bundle_workflow, peak_rss_gb, run_json_child  # noqa: E402

logger = logging.getLogger("benchmark_neurodiff_segmentation")

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundles" / "neurodiff" / "configs"
# NeuroDiff Table 1, AC3/AC4, 4 % labels, waterz: VI / ARAND
PAPER = {"real only": {"vi": 1.623, "arand": 0.209}, "real + NeuroDiff": {"vi": 1.376, "arand": 0.142}}
FID_SETTINGS = [("ddpm", None), ("ddim", 50), ("ddim", 10)]
FID_VOLUME = (8, 128, 128)  # the held-back volume cropped so that 250 DDPM steps take minutes on a CPU
FID_PATCH = (8, 32, 32)  # feature crops: 4 x 4 of them per volume
BLOCKWISE_VOLUME = (64, 512, 512)



def _load(name: str):
    sys.path.insert(0, str(REPO / "scripts"))
    return __import__(name)


def _workflow(config, workflow_type: str, **overrides):
    return bundle_workflow(CONFIGS, config, workflow_type, **overrides)


def labelled_subset(data: Path, out: Path, fraction: float, depth: int = 16) -> Path:
    """``data``'s training volumes cut to their labelled sections (``KeepSections``), in the volume layout at ``out``."""
    from emdiff_components.data import read_image, write_volume_case
    from emdiff_components.transforms import KeepSections

    keep = KeepSections(fraction, min_sections=depth, axis=0)
    for image in sorted((data / "imagesTr").iterdir()):
        label = data / "labelsTr" / image.name
        write_volume_case(out, "Tr", image.name.split(".")[0], keep(read_image(image)), keep(read_image(label)))
    (out / "dataset.json").write_text((data / "dataset.json").read_text())
    return out


def train_segmentation(
    data: Path, root: Path, fraction: float, synthetic: Path | None, iterations: int, seed: int, patch: list[int]
) -> dict:
    """segment_train.json for ``iterations`` (batch 2) on ``data`` (+ ``synthetic``); seconds and loss."""
    start = time.perf_counter()
    wf = _workflow(
        "segment_train.json",
        "train",
        bundle_root=str(root),
        dataset_dir=str(data),
        label_fraction=fraction,
        synthetic_dir=str(synthetic) if synthetic else None,
        num_steps=iterations,
        epoch_length=min(iterations, 50),
        seed=seed,
        patch_size=patch,
    )
    wf.run()
    return {
        "seconds": time.perf_counter() - start,
        "iterations": wf.trainer.state.iteration,
        "last_loss": float(wf.trainer.state.output[0]["loss"]),
    }


def evaluate_segmentation(data: Path, root: Path, methods: list[str]) -> dict:
    """segment.json + segment_evaluate.json on ``data``'s held-back volumes; the mean scores per method."""
    out = root / "outputs" / "segment_evaluate"
    wf = _workflow(
        ["segment.json", "segment_evaluate.json"],
        "infer",
        bundle_root=str(root),
        dataset_dir=str(data),
        methods=methods,
        progress=False,
    )
    wf.run()
    return {m: json.loads((out / m / "instance_metrics.json").read_text())["mean"] for m in methods}


CONDITIONS = {"real": "real only", "mixed": "real + synthetic"}


def generator_and_synthesis(args, work: Path, labelled: Path) -> dict:
    """Steps 1-2: the generator trained on the labelled sections, their labels remodeled and synthesized.

    With ``--reuse-generator`` an earlier run's record in ``<work>/generator/record.json`` (its model and synthetic
    pairs) is used instead, so runs split across processes (``--conditions``, ``--part fid``) share one generator."""
    narrow = _load("benchmark_neurodiff")
    record_file = work / "generator" / "record.json"
    if args.reuse_generator and record_file.is_file():
        logger.info("reusing the generator of %s", record_file)
        return json.loads(record_file.read_text())
    generator = narrow.train_narrow_model(Path(args.shared), args.generator_minutes, work / "generator", labelled)
    gen_common = {k: v for k, v in generator["common"].items() if k != "dataset_dir"}
    _workflow(
        "remodel.json",
        "infer",
        bundle_root=gen_common["bundle_root"],
        dataset_dir=str(labelled),
        copies=args.copies,
        place=False,
        seed=42,
    ).run()
    start = time.perf_counter()
    _workflow("inference.json", "infer", **gen_common, sampler="ddim", num_inference_steps=args.synthesis_steps).run()
    record = {
        "budget_minutes": generator["budget_minutes"],
        "iterations": generator["iterations"],
        "common": gen_common,
        "synthetic": str(Path(gen_common["bundle_root"]) / "outputs" / "remodel"),
        "synthesis_seconds": time.perf_counter() - start,
        "copies": args.copies,
        "synthesis_steps": args.synthesis_steps,
    }
    record_file.write_text(json.dumps(record, indent=2))
    return record


def summarize(runs: list[dict], methods: list[str]) -> dict:
    """Mean, std and values per (condition, method) of the runs' VI split / merge, VI and ARAND."""
    summary = {}
    for condition in CONDITIONS.values():
        chosen = [r for r in runs if r["condition"] == condition]
        for method in methods if chosen else []:
            values = {m: [r["scores"][method][m] for r in chosen] for m in ("vi_split", "vi_merge", "vi", "arand")}
            summary[f"{condition} / {method}"] = {
                m: {"mean": float(np.mean(v)), "std": float(np.std(v)), "values": v} for m, v in values.items()
            }
    return summary


def table1(args, work: Path) -> dict:
    convert = _load("convert_shared_data").convert
    data = Path(convert("fibsem_neurons", work / "data", shared_dir=Path(args.shared)))
    labelled = labelled_subset(data, work / "labelled", args.label_fraction)
    # 1-2. the generator on the labelled sections only, and synthetic pairs from their remodeled labels
    generator = generator_and_synthesis(args, work, labelled) if "mixed" in args.conditions else None
    # 3-4. segmentation, real only and real + synthetic, per seed; each run's record kept in its folder
    runs = []
    for seed in args.seeds:
        for key in args.conditions:
            root = work / f"seg_{key}_{seed}"
            extra = Path(generator["synthetic"]) if key == "mixed" else None
            train = train_segmentation(data, root, args.label_fraction, extra, args.iterations, seed, args.patch)
            scores = evaluate_segmentation(data, root, args.methods)
            runs.append({"condition": CONDITIONS[key], "seed": seed, "train": train, "scores": scores})
            (root / "run.json").write_text(json.dumps(runs[-1], indent=2))
            logger.info("%s seed %d: %s", CONDITIONS[key], seed, scores)
    table = {
        "label_fraction": args.label_fraction,
        "labelled_sections": labelled_sections(read_depth(data), args.label_fraction),
        "iterations": args.iterations,
        "patch": args.patch,
        "seeds": args.seeds,
        "runs": runs,
        "summary": summarize(runs, args.methods),
        "paper": PAPER,
        "work": str(work),
    }
    if generator is not None:
        table["generator"] = {k: generator[k] for k in ("budget_minutes", "iterations")}
        table["generator"]["widths"] = _load("benchmark_neurodiff").QUALITY_MODEL
        table["copies"] = generator["copies"]
        table["synthesis"] = {"sampler": "ddim", "steps": generator["synthesis_steps"],
                              "seconds": generator["synthesis_seconds"]}
    return table


def merge_tables(parts: list[dict]) -> dict:
    """One Table 1 from runs made by separate processes (e.g. ``--conditions real`` and ``--conditions mixed`` on
    the two cores): their runs joined and summarized again. Runs made with other settings, or the same (condition,
    seed) twice, are an error: the table would mix or hide them."""
    same = ("label_fraction", "iterations", "patch")
    merged = {k: v for k, v in parts[0].items() if k not in ("runs", "summary")}
    merged["runs"], seen = [], set()
    for part in parts:
        for key in same:
            if part[key] != merged[key]:
                raise ValueError(f"merge: {key} differs ({part[key]!r} against {merged[key]!r}).")
        if "generator" in part and "generator" in merged and part["generator"] != merged["generator"]:
            raise ValueError(f"merge: the generators differ ({part['generator']} against {merged['generator']}).")
        merged.update({k: part[k] for k in ("generator", "copies", "synthesis") if k in part})
        for run in part["runs"]:
            if (run["condition"], run["seed"]) in seen:
                raise ValueError(f"merge: {run['condition']}, seed {run['seed']} is in two of the inputs.")
            seen.add((run["condition"], run["seed"]))
            merged["runs"].append(run)
    merged["seeds"] = sorted({r["seed"] for r in merged["runs"]})
    methods = sorted({m for r in merged["runs"] for m in r["scores"]})
    merged["summary"] = summarize(merged["runs"], methods)
    return merged


def labelled_sections(depth: int, fraction: float) -> int:
    from emdiff_components.data import labelled_sections as count

    return count(depth, fraction)


def read_depth(folder: Path) -> int:
    from emdiff_components.data import read_image

    return read_image(next(iter(sorted((folder / "imagesTr").iterdir())))).shape[0]


def fid(args, work: Path, settings=FID_SETTINGS) -> dict:
    """3D-FID of DDPM 250 / DDIM 50 / DDIM 10 syntheses of the held-back volume, in the features of the real-only
    segmentation network of the first seed (``<work>/seg_real_<seed>``, made by ``table1``)."""
    from emdiff_components.engines import load_network_weights
    from emdiff_components.metrics import fid_3d, volume_features
    from emdiff_components.networks import SuperhumanUNet

    narrow = _load("benchmark_neurodiff")
    weights = work / f"seg_real_{args.seeds[0]}" / "models" / "segmentation" / "model.pt"
    if not weights.is_file():
        raise FileNotFoundError(f"fid: {weights} is missing; the real-only segmentation of seed {args.seeds[0]} "
                                f"(--part table1 --conditions real --work {work}) makes it.")
    data = Path(_load("convert_shared_data").convert("fibsem_neurons", work / "data", shared_dir=Path(args.shared)))
    generator = generator_and_synthesis(args, work, labelled_subset(data, work / "labelled", args.label_fraction))
    network = load_network_weights(SuperhumanUNet(), weights)
    network.eval()
    held_back = narrow.held_back_volumes(data, work / "fid_data", FID_VOLUME)
    rows = {}
    real_features = None
    for sampler, steps in settings:
        row, pred, real, _ = narrow.evaluate(
            generator["common"], str(held_back), str(work / f"fid_{sampler}_{steps}"), sampler, steps
        )
        rescale = lambda x: (x + 1) / 2  # noqa: E731  the evaluator's [-1, 1] -> the segmentation network's [0, 1]
        if real_features is None:
            real_features = volume_features(network, real[0, 0], FID_PATCH, "center", rescale)
        fake = volume_features(network, pred[0, 0], FID_PATCH, "center", rescale)
        rows[f"{sampler} {steps or 250}"] = {"fid_3d": fid_3d(real_features, fake), **row}
        logger.info("%s %s: %s", sampler, steps, rows[f"{sampler} {steps or 250}"])
    return {
        "rows": rows,
        "feature_crop": list(FID_PATCH),
        "layer": "center",
        "crops": len(real_features),
        "volume": f"FIB-SEM held-back slices cropped to {' x '.join(map(str, FID_VOLUME))}",
        "segmentation_network": f"real only, seed {args.seeds[0]}",
        "generator": {k: generator[k] for k in ("budget_minutes", "iterations")},
    }


def blockwise(shared: Path, block: list[int], context: list[int]) -> dict:
    """Blockwise affinities of a 64 x 512 x 512 volume with the paper-width network, then waterz (fresh process)."""
    import tifffile

    from emdiff_components.data import create_volume
    from emdiff_components.engines import predict_volume_file
    from emdiff_components.engines.segment import IntensityScaledPredictor
    from emdiff_components.networks import SuperhumanUNet
    from emdiff_components.postprocessing import segment_affinities

    fit = _load("benchmark_neurodiff").fit_volume
    raw = tifffile.imread(shared / "fibsem_medulla_neurons_neuroproof" / "raw.tif")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "raw.h5"
        with create_volume(source, BLOCKWISE_VOLUME, np.uint8, voxel_size=(10, 10, 10)) as out:
            out[...] = fit(raw, BLOCKWISE_VOLUME)
        torch.manual_seed(0)
        predictor = IntensityScaledPredictor(SuperhumanUNet().eval())
        start = time.perf_counter()
        predict_volume_file(
            predictor,
            source,
            Path(tmp) / "affs.h5",
            block,
            context,
            normalize=None,
            progress=False,
            divisible_by=(1, 16, 16),
        )
        predict_seconds = time.perf_counter() - start
        predict_peak = peak_rss_gb()
        from emdiff_components.data import open_volume

        with open_volume(Path(tmp) / "affs.h5") as affs:
            affinities = np.asarray(affs[...], dtype=np.float32)
        start = time.perf_counter()
        labels = segment_affinities(affinities, "waterz")
        waterz_seconds = time.perf_counter() - start
    return {
        "volume": list(BLOCKWISE_VOLUME),
        "block": block,
        "context": context,
        "predict_seconds": predict_seconds,
        "predict_peak_rss_gb": predict_peak,
        "waterz_seconds": waterz_seconds,
        "segments": int(labels.max()),
        "peak_rss_gb": peak_rss_gb(),
        "threads": torch.get_num_threads(),
    }


def print_tables(results: dict) -> None:
    if "table1" in results:
        t = results["table1"]
        print(
            f"\nTable 1 direction, FIB-SEM neurons, {t['label_fraction']:.0%} labels ({t['labelled_sections']} "
            f"sections), {t['iterations']} iterations x {len(t['seeds'])} seeds; mean +- std"
        )
        print("| training data / agglomeration | VI split | VI merge | VI | ARAND |")
        print("|---|---|---|---|---|")
        for name, row in t["summary"].items():
            print(
                f"| {name} | "
                + " | ".join(
                    f"{row[m]['mean']:.3f} +- {row[m]['std']:.3f}" for m in ("vi_split", "vi_merge", "vi", "arand")
                )
                + " |"
            )
        for name, row in t["paper"].items():
            print(f"| paper, AC3/AC4, {name}, waterz | | | {row['vi']} | {row['arand']} |")
    if "fid" in results:
        print("\n| sampler | 3D-FID | MAE | seconds |\n|---|---|---|---|")
        for name, row in results["fid"]["rows"].items():
            print(f"| {name} | {row['fid_3d']:.3f} | {row['mae']:.4f} | {row['seconds']:.0f} |")
    if "blockwise" in results:
        b = results["blockwise"]
        print(
            f"\nBlockwise {b['volume']}: predict {b['predict_seconds']:.0f} s (peak {b['predict_peak_rss_gb']:.2f} GB), "
            f"waterz {b['waterz_seconds']:.0f} s, peak {b['peak_rss_gb']:.2f} GB, {b['threads']} threads"
        )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/neurodiff_segmentation.json")
    parser.add_argument(
        "--part",
        choices=("all", "table1", "fid", "blockwise"),
        default="all",
        help="table1 includes fid unless --no-fid; fid alone needs an earlier table1's --work (its real-only network)",
    )
    parser.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--label-fraction", type=float, default=0.04)
    parser.add_argument("--generator-minutes", type=float, default=20.0)
    parser.add_argument("--copies", type=int, default=4, help="remodeled label volumes, each synthesized once")
    parser.add_argument("--synthesis-steps", type=int, default=10, help="DDIM steps of the synthetic training data")
    parser.add_argument("--iterations", type=int, default=200, help="segmentation training iterations (batch 2)")
    parser.add_argument("--patch", type=int, nargs=3, default=[16, 160, 160], help="segmentation training crop")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--conditions", nargs="+", choices=tuple(CONDITIONS), default=list(CONDITIONS),
                        help="real: real sections only; mixed: real + synthetic (needs the generator)")
    parser.add_argument("--reuse-generator", action="store_true",
                        help="use the generator and synthetic pairs recorded in <work>/generator/record.json")
    parser.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                        help="no computing: join the Table 1 runs of earlier outputs (e.g. one per core) into --out")
    parser.add_argument("--methods", nargs="+", default=["waterz", "multicut"])
    parser.add_argument("--no-fid", action="store_true")
    parser.add_argument("--quick", action="store_true", help="smoke run: the FID part with DDIM 2 steps only")
    parser.add_argument("--block", type=int, nargs=3, default=[10, 80, 80])
    parser.add_argument("--context", type=int, nargs=3, default=[3, 40, 40])
    parser.add_argument("--work", default=None, help="keep intermediate files here (default: a temporary folder)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(blockwise(Path(args.shared), args.block, args.context)))
        return {}
    out = Path(args.out)
    if args.merge:
        parts = [json.loads(Path(f).read_text()) for f in args.merge]
        results = {k: v for part in parts for k, v in part.items() if k != "table1"}  # fid, blockwise: the last one's
        results["table1"] = merge_tables([part["table1"] for part in parts if "table1" in part])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
        print_tables(results)
        return results
    results = json.loads(out.read_text()) if out.is_file() else {}
    if args.part in ("all", "blockwise"):
        cmd = [
            __file__,
            "--child",
            "--threads",
            str(args.threads),
            "--shared",
            args.shared,
            "--block",
            *map(str, args.block),
            "--context",
            *map(str, args.context),
        ]
        results["blockwise"] = run_json_child(cmd, what="blockwise")
    if args.part in ("all", "table1", "fid"):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(args.work or tmp)
            if args.part != "fid":
                results["table1"] = table1(args, work)
            if args.part == "fid" or not args.no_fid:
                args.reuse_generator = args.reuse_generator or "mixed" in args.conditions  # the one just trained
                results["fid"] = fid(args, work, [("ddim", 2)] if args.quick else FID_SETTINGS)
    results["threads"] = args.threads
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print_tables(results)
    return results


if __name__ == "__main__":
    main()
