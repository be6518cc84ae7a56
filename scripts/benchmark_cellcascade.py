"""CellCascade at CPU scale: does training a cell segmentation network on real + synthetic images help (the paper's
claim), how realistic are the masks and textures (FID), and what a synthetic image and stack cost. Prints tables,
writes JSON.

On a Cell Tracking Challenge data set of ``../shared/data`` (default Fluo-N2DL-HeLa, the reference code's data: frame
t13 with 59 annotated nuclei for training, t52 with 109 held back for testing):

1. the generator: ``train_masks.json`` (``--mask-steps``) and ``train_texture.json`` (``--texture-steps``) on the
   single cells of the training frames only;
2. synthesis: ``inference.json`` samples ``--num-masks`` masks (DDIM 50, eta 1), textures them (DDIM 50, CFG 5),
   lifts ``--num-lifted`` of them to 3D and composes ``--num-images`` 2D populations and ``--num-stacks`` 3D stacks of
   40-49 cells; seconds per stage, per 2D image and per 3D stack and the peak memory, in a fresh process;
3. segmentation: ``segment_train.json`` trains MONAI's BasicUNet (``--features``, ``--seg-steps`` iterations of
   batch 4) on the real training frames alone and on them + the synthetic 2D populations drawn 50 / 50, once per
   ``--seeds``; ``segment.json`` segments the held-back frames (seeded watershed of interior / boundary), scored with
   the CTC SEG and the F1 at IoU 0.5 (pooled over the held-back cells); mean and spread over the seeds;
4. FID of the mask and the texture stage (``evaluate.json``) in the features of the real-only segmentation network of
   the first seed (Inception's weights cannot be downloaded here).

Usage::

    python scripts/benchmark_cellcascade.py --out benchmarks/cellcascade.json --threads 2
    python scripts/benchmark_cellcascade.py --quick --out /tmp/cc.json   # a smoke run of every part (minutes)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts folder: benchmark_common
from benchmark_common import bundle_workflow, peak_rss_gb, run_json_child  # noqa: E402

logger = logging.getLogger("benchmark_cellcascade")

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundles" / "cellcascade" / "configs"
# Yilmaz et al. 2024: "up to 9 % better segmentation" with real + synthetic training data
PAPER = "up to 9 % better segmentation (SEG) with real + synthetic data than with real data alone"
STAGES_2D = ("cell_masks", "cell_textures", "populations_2d")
STAGES_3D = ("mask_stacks", "stack_textures", "populations_3d")


def _workflow(config, workflow_type: str, **overrides):
    return bundle_workflow(CONFIGS, config, workflow_type, **overrides)


def split_frames(dataset: Path, out: Path, held_out: int) -> tuple[Path, Path]:
    """The frames of ``dataset`` as two CTC sequences: ``out/train`` (all but the last ``held_out``), ``out/test``."""
    from emdiff_components.data import ctc_datalist, read_image, write_ctc_sequence

    entries = ctc_datalist(dataset, spatial_dims=2)
    if not 0 < held_out < len(entries):
        raise ValueError(f"benchmark_cellcascade: --held-out must be in [1, {len(entries)}) for {dataset}.")
    parts = {"train": entries[: len(entries) - held_out], "test": entries[len(entries) - held_out:]}
    for name, part in parts.items():
        write_ctc_sequence(out / name, [read_image(e["image"]) for e in part], [read_image(e["label"]) for e in part],
                           kind="GT")
    logger.info("frames: train %s, test %s", [e["name"] for e in parts["train"]], [e["name"] for e in parts["test"]])
    return out / "train", out / "test"


def train_generator(train: Path, root: Path, args) -> dict:
    """train_masks.json and train_texture.json on the training frames' cells; seconds of each."""
    out = {}
    for config, steps, batch in (("train_masks.json", args.mask_steps, 16), ("train_texture.json", args.texture_steps, 4)):
        stage = "masks" if config == "train_masks.json" else "texture"
        if args.reuse_generator and (root / "models" / stage / "model.pt").is_file():
            logger.info("%s: reusing %s", config, root / "models" / stage / "model.pt")
            out[config] = {"reused": str(root / "models" / stage / "model.pt")}
            continue
        start, cpu = time.perf_counter(), time.process_time()
        wf = _workflow(config, "train", bundle_root=str(root), dataset_dir=str(train), num_steps=steps,
                       epoch_length=min(steps, 100), batch_size=batch, seed=0)
        wf.run()
        out[config] = {"steps": wf.trainer.state.iteration, "batch_size": batch, "seconds": time.perf_counter() - start,
                       "cpu_seconds": time.process_time() - cpu, "last_loss": float(wf.trainer.state.output[0]["loss"])}
        logger.info("%s: %s", config, out[config])
    return out


def synthesize(root: Path, train: Path, args) -> dict:
    """inference.json stage by stage (timed), then the files; run in a fresh process for its peak memory."""
    from emdiff_components.engines import single_cell_datalist, write_populations

    wf = _workflow("inference.json", "infer", bundle_root=str(root), dataset_dir=str(train), train_missing=False,
                   num_masks=args.num_masks, num_images=args.num_images, num_stacks=args.num_stacks,
                   num_lifted=args.num_lifted, num_inference_steps=args.sampling_steps, mask_threshold=args.mask_threshold,
                   progress=False)
    seconds = {}
    for stage in STAGES_2D + STAGES_3D:
        start = time.perf_counter()
        wf.parser.get_parsed_content(stage)
        seconds[stage] = time.perf_counter() - start
    out_dir = root / "outputs" / "cascade"
    images, labels = wf.parser.get_parsed_content("populations_2d")
    write_populations(out_dir / "2d", images, labels)
    stacks, stack_labels = wf.parser.get_parsed_content("populations_3d")
    write_populations(out_dir / "3d", stacks, stack_labels)
    masks = wf.parser.get_parsed_content("cell_masks")
    crop_size = json.loads((CONFIGS / "train_masks.json").read_text())["crop_size"]
    real = single_cell_datalist(train, crop_size, masks.shape[-1], wf.parser.get_parsed_content("min_cell_size"))
    real_area = [float(np.count_nonzero(c["label"])) for c in real]
    cells_2d = [int(np.count_nonzero(np.unique(lab))) for lab in labels]
    return {
        "seconds": seconds,
        "num_masks_kept": len(masks),
        "mask_area_px_p10_p50_p90": np.percentile(masks.sum((1, 2)), [10, 50, 90]).tolist(),
        "real_area_px_p10_p50_p90": np.percentile(real_area, [10, 50, 90]).tolist(),
        "num_images": len(images),
        "num_stacks": len(stacks),
        "cells_per_image": cells_2d,
        "seconds_per_2d_image": sum(seconds[s] for s in STAGES_2D) / max(len(images), 1),
        "seconds_per_3d_stack": sum(seconds[s] for s in STAGES_3D) / max(len(stacks), 1),
        "peak_rss_gb": peak_rss_gb(),
        "synthetic_dir": str(out_dir / "2d"),
    }


def segmentation(train: Path, test: Path, synthetic: Path, work: Path, args) -> dict:
    """Real only vs real + synthetic, per seed: train, segment the held-back frames, pooled SEG and F1."""
    runs = []
    for seed in args.seeds:
        for condition, synthetic_dir in (("real only", None), ("real + synthetic", synthetic)):
            root = work / f"seg_{'mixed' if synthetic_dir else 'real'}_{seed}"
            start = time.perf_counter()
            wf = _workflow("segment_train.json", "train", bundle_root=str(root), dataset_dir=str(train), held_out=0,
                           synthetic_dir=str(synthetic_dir) if synthetic_dir else None, num_steps=args.seg_steps,
                           epoch_length=min(args.seg_steps, 50), seed=seed, features=args.features)
            wf.run()
            train_seconds = time.perf_counter() - start
            wf = _workflow("segment.json", "infer", bundle_root=str(root), input=str(test), features=args.features)
            wf.run()
            report = json.loads((root / "outputs" / "segment" / "cell_metrics.json").read_text())
            row = {"condition": condition, "seed": seed, "train_seconds": train_seconds,
                   "iterations": args.seg_steps, **{k: report["pooled"][k] for k in ("seg", "f1", "precision", "recall",
                                                                                       "num_pred", "num_truth")}}
            logger.info("segmentation: %s", row)
            runs.append(row)
    summary = {}
    for condition in ("real only", "real + synthetic"):
        rows = [r for r in runs if r["condition"] == condition]
        summary[condition] = {m: {"mean": float(np.mean([r[m] for r in rows])), "std": float(np.std([r[m] for r in rows]))}
                              for m in ("seg", "f1")}
    return {"runs": runs, "summary": summary, "real_only_root": str(work / f"seg_real_{args.seeds[0]}")}


def fid(root: Path, train: Path, segmentation_root: Path, args) -> dict:
    """evaluate.json: FID of masks and textures in the real-only segmentation network's features."""
    _workflow(["inference.json", "evaluate.json"], "infer", bundle_root=str(root), dataset_dir=str(train),
              segmentation_ckpt_path=str(segmentation_root / "models" / "segmentation" / "model.pt"),
              segmentation_features=args.features, num_inference_steps=args.sampling_steps,
              mask_threshold=args.mask_threshold, progress=False).run()
    return json.loads((root / "outputs" / "evaluate" / "fid.json").read_text())


def print_tables(results: dict) -> None:
    if "generator" in results:
        print("\n| generator stage | steps x batch | seconds | last loss |\n|---|---|---|---|")
        for name, row in results["generator"].items():
            if "reused" in row:
                print(f"| {name} | reused {row['reused']} | | |")
                continue
            print(f"| {name} | {row['steps']} x {row['batch_size']} | {row['seconds']:.0f} | {row['last_loss']:.4f} |")
    if "synthesis" in results:
        s = results["synthesis"]
        print(f"\nSynthesis: {s['num_images']} 2D images ({s['seconds_per_2d_image']:.1f} s each), {s['num_stacks']} 3D "
              f"stacks ({s['seconds_per_3d_stack']:.1f} s each), cells per image {s['cells_per_image']}, "
              f"{s['num_masks_kept']} masks kept, area p10 / p50 / p90 {s['mask_area_px_p10_p50_p90']} px (real "
              f"cells {s['real_area_px_p10_p50_p90']}), peak "
              f"{s['peak_rss_gb']:.2f} GB; stage seconds {', '.join(f'{k} {v:.0f}' for k, v in s['seconds'].items())}")
    if "segmentation" in results:
        seg = results["segmentation"]
        print(f"\nHeld-back frames, pooled over cells; mean +- std over seeds {sorted({r['seed'] for r in seg['runs']})}")
        print("| training data | SEG | F1 @ IoU 0.5 |\n|---|---|---|")
        for name, row in seg["summary"].items():
            print(f"| {name} | {row['seg']['mean']:.3f} +- {row['seg']['std']:.3f} | "
                  f"{row['f1']['mean']:.3f} +- {row['f1']['std']:.3f} |")
        print(f"| paper | {PAPER} | |")
    if "fid" in results:
        f = results["fid"]
        print(f"\nFID (segmentation-network features, not Inception): masks {f['mask_fid']:.3f}, textures "
              f"{f['texture_fid']:.3f} ({f['num_real_cells']} real cells, {f['num_sampled_masks']} sampled masks)")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/cellcascade.json")
    parser.add_argument("--shared", default=os.environ.get("EMDIFF_SHARED_DATA", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--dataset", default="ctc_2d_nuclei/Fluo-N2DL-HeLa", help="under --shared")
    parser.add_argument("--held-out", type=int, default=1, help="last frames kept back for testing")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mask-steps", type=int, default=800, help="mask DDPM iterations (batch 16)")
    parser.add_argument("--texture-steps", type=int, default=1200, help="texture model iterations (batch 4)")
    parser.add_argument("--sampling-steps", type=int, default=50, help="DDIM steps (paper: 50)")
    parser.add_argument("--mask-threshold", type=float, default=0.0, help="binarisation of the sampled masks")
    parser.add_argument("--num-masks", type=int, default=64, help="sampled cells the populations draw from")
    parser.add_argument("--num-lifted", type=int, default=4, help="masks lifted to 3D stacks")
    parser.add_argument("--num-images", type=int, default=8, help="synthetic 2D populations")
    parser.add_argument("--num-stacks", type=int, default=1, help="synthetic 3D stacks")
    parser.add_argument("--seg-steps", type=int, default=300, help="segmentation iterations (batch 4)")
    parser.add_argument("--features", type=int, nargs=6, default=[16, 16, 32, 64, 128, 16], help="BasicUNet widths")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="smoke run: a few steps of everything")
    parser.add_argument("--work", default=None, help="keep intermediate files here (default: a temporary folder)")
    parser.add_argument("--reuse-generator", action="store_true",
                        help="keep a stage's model already in <work>/generator/models (an earlier run's) instead of training")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.mask_steps, args.texture_steps, args.sampling_steps, args.seg_steps = 4, 4, 2, 4
        args.num_masks, args.num_lifted, args.num_images, args.seeds = 8, 1, 2, [0]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    if args.child:  # synthesis in a process of its own: its peak memory is the synthesis's
        root, train = args.child.split("::")
        print(json.dumps(synthesize(Path(root), Path(train), args)))
        return {}
    results: dict = {"settings": {k: v for k, v in vars(args).items() if k not in ("child", "work", "out")}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        train, test = split_frames(Path(args.shared) / args.dataset, work / "data", args.held_out)
        generator = work / "generator"
        results["generator"] = train_generator(train, generator, args)
        child = [__file__, "--child", f"{generator}::{train}", "--threads", str(args.threads),
                 "--num-masks", str(args.num_masks), "--num-lifted", str(args.num_lifted),
                 "--num-images", str(args.num_images), "--num-stacks", str(args.num_stacks),
                 "--sampling-steps", str(args.sampling_steps), "--mask-threshold", str(args.mask_threshold)]
        results["synthesis"] = run_json_child(child, what="synthesis")
        results["segmentation"] = segmentation(train, test, Path(results["synthesis"]["synthetic_dir"]), work, args)
        results["fid"] = fid(generator, train, Path(results["segmentation"]["real_only_root"]), args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print_tables(results)
    return results


if __name__ == "__main__":
    main()
