"""Every bundle's ``multi_gpu_train.json`` under torchrun: two CPU ranks (gloo) train in step, and a killed run resumes.

Each run is the documented command, ``torchrun --nproc_per_node=2 --standalone -m monai.bundle run training
--config_file "['<train>','<multi_gpu_train>']"`` with tiny widths, started from a copy of the repository layout (the
bundle's configs under ``bundles/<name>/configs``) so that nothing is written into the real bundle folders. A test-only
overlay, ``record.json``, replaces ``finalize``: each rank saves what it did (its rank, the trainer's iteration and
epoch, the sample indices of its sampler in the last epoch, its network's parameters) before leaving the process group.
Parameters, not buffers: DDP copies rank 0's buffers (BatchNorm running statistics) to the others at the start of
each forward, so after the last step they are rank-local.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

import torch
from bundle_testing import REPO

RECORD = {
    "finalize": [
        (
            "$torch.save({'rank': dist.get_rank(), 'iteration': @train#trainer.state.iteration, "
            "'epoch': @train#trainer.state.epoch, 'indices': [int(i) for i in @train#trainer.data_loader.sampler], "
            "'dataset_size': len(@train#trainer.data_loader.dataset), "
            "'weights': {k: v.detach().clone() for k, v in @network.module.named_parameters()}}, "
            "@output_dir + '/rank' + str(dist.get_rank()) + '.pt')"
        ),
        "$dist.is_initialized() and dist.destroy_process_group()",
    ]
}
TIMEOUT = 300  # seconds; a rank that falls out of step hangs in a collective (gloo's own timeout is 30 minutes)

# the tiny sizes of tests/bundles/test_*_bundle.py
ECSD = {"channels": [8, 16, 32, 64], "attention_heads": 1, "attention_head_channels": 8, "filter_size": [64, 64],
        "patch_size": [64, 64], "use_checkpointing": False, "num_inference_steps": 2, "progress": False}
BIEDSNET = {"channels": [8, 16, 16, 32, 32], "num_res_blocks": 1, "image_size": [64, 64], "patch_size": [64, 64],
            "batch_size": 4, "val_num_inference_steps": 2, "progress": False}
NEURODIFF = {"channels": [8, 16, 16, 32, 32, 64, 64], "time_channels": 16, "norm_num_groups": 8,
             "msc_channels": [8, 8, 16, 16], "patch_size": [4, 64, 64], "progress": False}
CELLCASCADE = {"mask_channels": [8, 16, 16], "texture_channels": [8, 16, 16], "norm_num_groups": 8,
               "num_head_channels": 8, "conditioning_channels": [8]}
SEGMENT = {"features": [8, 8, 16, 32, 64, 8], "patch_size": [128, 128]}
SEGMENT_3D = {"filters": [4, 6, 8, 10, 12], "patch_size": [8, 64, 64]}


def literal(value) -> str:
    """A command-line value as MONAI's fire CLI reads it (booleans as Python literals, lists as JSON)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def layout(tmp: Path, name: str) -> str:
    """``tmp/bundles/<name>/configs``, a copy of the bundle's, plus ``record.json``; returns the configs path."""
    configs = tmp / "bundles" / name / "configs"
    shutil.copytree(REPO / "bundles" / name / "configs", configs)
    (configs / "record.json").write_text(json.dumps(RECORD))
    return f"bundles/{name}/configs"


def torchrun(cwd: Path, configs: list[str], overrides: dict, wait: bool = True):
    """The documented torchrun command in ``cwd`` (a repository layout) with ``overrides``; one thread per rank."""
    files = "[" + ",".join(f"'{c}'" for c in configs) + "]"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "-m", "monai.bundle",
               "run", "training", "--config_file", files]
    for key, value in overrides.items():
        command += [f"--{key}", literal(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(cwd / "torchrun.log", "a") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if not wait:
        return process
    try:
        process.wait(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            kill_hard(process)
    if process.returncode != 0:
        raise AssertionError(f"torchrun exited with {process.returncode}:\n{(cwd / 'torchrun.log').read_text()[-4000:]}")
    return process


def descendants(pid: int) -> list[int]:
    """Child processes of ``pid``, recursively (Linux ``/proc``)."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return children + [d for c in children for d in descendants(c)]


def kill_hard(process: subprocess.Popen) -> None:
    """SIGKILL torchrun and its workers (they run in sessions of their own, so a process-group kill misses them)."""
    victims = [process.pid, *descendants(process.pid)]
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in victims[1:]):
        if time.monotonic() > deadline:
            raise AssertionError(f"workers {victims[1:]} survived SIGKILL")
        time.sleep(0.2)


def _state(pid: int) -> str:
    try:
        return next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State"))
    except (OSError, StopIteration):
        return "zombie"


def records(output_dir: Path) -> list[dict]:
    return [torch.load(output_dir / f"rank{rank}.pt", weights_only=False) for rank in (0, 1)]


class MultiGPUCases:
    """Assertions shared by the bundles; mixed into a ``unittest.TestCase``."""

    def assert_in_step(self, ranks: list[dict], checkpoint: Path, key: str, iterations: int) -> None:
        """Both ranks ran ``iterations`` iterations and hold the same weights (DDP averaged their gradients although
        they saw different samples and drew different noise), which rank 0 wrote to ``checkpoint[key]`` unwrapped."""
        self.assertEqual([r["rank"] for r in ranks], [0, 1])
        self.assertEqual([r["iteration"] for r in ranks], [iterations, iterations])
        a, b = (r["weights"] for r in ranks)
        self.assertEqual(a.keys(), b.keys())
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        self.assertEqual(state["trainer"]["iteration"], iterations)
        for entry, weights in state.items():
            if entry not in ("trainer", "optimizer", "lr_scheduler"):
                self.assertFalse(any(k.startswith("module.") for k in weights), f"{entry} carries DDP's prefix")
        for name in a:
            torch.testing.assert_close(state[key][name], a[name], rtol=0, atol=0, msg=name)

    def assert_shards(self, ranks: list[dict]) -> None:
        """DistributedSampler: each rank gets ceil(n / 2) indices, different ones, together every sample."""
        n = ranks[0]["dataset_size"]
        first, second = (r["indices"] for r in ranks)
        self.assertEqual((len(first), len(second)), (math.ceil(n / 2), math.ceil(n / 2)))
        self.assertEqual(sorted(set(first) | set(second)), list(range(n)))
        self.assertNotEqual(set(first), set(second))

    def assert_resumed(self, output_dir: Path, log_offsets: dict[str, int], epoch: int, of: int) -> None:
        """Each rank's log (train.log for rank 0, train_rank1.log) says, in the new run's part, that it resumed."""
        for name, offset in log_offsets.items():
            text = (output_dir / name).read_text()[offset:]
            self.assertRegex(text, rf"resumed from \S*checkpoint\.pt at epoch {epoch} of {of}\b", name)

    def run_and_resume(self, name: str, config: str, common: dict, first: dict, second: dict, ckpt_dir: str,
                       output_dir: str, key: str, per_epoch: int, writers: int | None = None,
                       overlay: str = "multi_gpu_train.json", logs=("train.log", "train_rank1.log"),
                       shards: bool = True) -> list[dict]:
        """``config`` + ``overlay`` for one epoch (``first``), then the same command for two (``second``): both ranks
        in step after each run, each rank's sampler share, and the second run resumed on both ranks. ``writers``: the
        TensorBoard event files the two runs leave (rank 0's only); ``logs``: rank 0's and rank 1's log files; ``shards``:
        the sampler is a ``DistributedSampler`` (else each rank draws on its own)."""
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            configs = layout(tmp, name)
            root = tmp / "bundles" / name
            files = [f"{configs}/{config}", f"{configs}/{overlay}", f"{configs}/record.json"]
            torchrun(tmp, files, {**common, **first})
            outputs = root / output_dir
            self.assert_in_step(records(outputs), root / ckpt_dir / "checkpoint.pt", key, per_epoch)
            offsets = log_sizes(outputs, logs)
            torchrun(tmp, files, {**common, **second})
            self.assert_resumed(outputs, offsets, 1, 2)
            ranks = records(outputs)
            self.assert_in_step(ranks, root / ckpt_dir / "checkpoint.pt", key, 2 * per_epoch)
            if shards:
                self.assert_shards(ranks)
            if writers is not None:
                self.assertEqual(len(list((outputs / "runs").iterdir())), writers)
            return ranks


def log_sizes(output_dir: Path, names=("train.log", "train_rank1.log")) -> dict[str, int]:
    return {name: (output_dir / name).stat().st_size if (output_dir / name).exists() else 0 for name in names}


class TestECSDMultiGPU(MultiGPUCases, unittest.TestCase):
    def test_two_ranks_then_kill_and_resume(self):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            configs = layout(tmp, "ecsd")
            root = tmp / "bundles" / "ecsd"
            files = [f"{configs}/train.json", f"{configs}/multi_gpu_train.json", f"{configs}/record.json"]
            # a run that would go on for 1000 epochs, killed (SIGKILL: torchrun and both ranks) after its first checkpoint
            process = torchrun(tmp, files, {**ECSD, "epochs": 1000, "val_interval": 1000}, wait=False)
            checkpoint = root / "models" / "checkpoint.pt"
            deadline = time.monotonic() + TIMEOUT
            while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.5)
            kill_hard(process)
            self.assertTrue(checkpoint.exists(), (tmp / "torchrun.log").read_text()[-4000:])
            state = torch.load(checkpoint, map_location="cpu", weights_only=False)
            # ignite keeps iteration and epoch_length; 3 training images of the demo set (1 held out): 2 per rank (one
            # repeated), batch 2 -> 1 iteration per epoch (2 in a single process)
            per_epoch, iteration = state["trainer"]["epoch_length"], state["trainer"]["iteration"]
            self.assertEqual(per_epoch, 1)
            epoch = iteration // per_epoch
            self.assertGreaterEqual(epoch, 1)
            # the same command with one more epoch resumes on both ranks and runs only that epoch, with validation
            outputs = root / "outputs" / "train"
            offsets = log_sizes(outputs)
            torchrun(tmp, files, {**ECSD, "epochs": epoch + 1, "val_interval": 1})
            self.assert_resumed(outputs, offsets, epoch, epoch + 1)
            ranks = records(outputs)
            self.assert_in_step(ranks, checkpoint, "model", (epoch + 1) * per_epoch)
            final = torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True)
            for name, value in ranks[0]["weights"].items():
                torch.testing.assert_close(final[name], value, rtol=0, atol=0, msg=name)
            self.assert_shards(ranks)
            self.assertTrue((root / "models" / "best_model.pt").is_file())  # rank 0's validation handlers ran
            runs = list((outputs / "runs").iterdir())
            self.assertEqual(len(runs), 4, runs)  # train + validation writers of the two runs, none from rank 1


class TestBIEDSNetMultiGPU(MultiGPUCases, unittest.TestCase):
    def test_two_ranks_and_resume(self):
        # 3 training images, 2 per rank, batch 4: 1 iteration per epoch; validation every epoch (1 image, padded)
        self.run_and_resume("biedsnet", "train.json", {**BIEDSNET, "val_interval": 1}, {"epochs": 1}, {"epochs": 2},
                            "models", "outputs/train", "network", per_epoch=1, writers=4)


class TestNeuroDiffMultiGPU(MultiGPUCases, unittest.TestCase):
    def test_two_ranks_and_resume(self):
        # 2 demo volumes, 1 per rank; 1 iteration per epoch and a checkpoint every epoch
        common = {**NEURODIFF, "accumulation_steps": 1, "epoch_length": 1, "save_interval": 1}
        self.run_and_resume("neurodiff", "train.json", common, {"num_steps": 1}, {"num_steps": 2}, "models",
                            "outputs/train", "network", per_epoch=1, writers=2)

    def test_segment_train_two_ranks_and_resume(self):
        # multi_gpu_segment_train.json: the weighted sampler draws epoch_length x batch_size indices per rank from its
        # own generator (seed + rank), so the ranks' draws differ; one iteration per epoch, a checkpoint every epoch
        common = {**SEGMENT_3D, "batch_size": 1, "epoch_length": 1, "save_interval": 1}
        ranks = self.run_and_resume("neurodiff", "segment_train.json", common, {"num_steps": 1}, {"num_steps": 2},
                                    "models/segmentation", "outputs/segment_train", "network", per_epoch=1,
                                    overlay="multi_gpu_segment_train.json",
                                    logs=("segment_train.log", "segment_train_rank1.log"), shards=False)
        first, second = (r["indices"] for r in ranks)
        self.assertEqual((len(first), len(second)), (1, 1))
        self.assertTrue(set(first + second) <= set(range(ranks[0]["dataset_size"])))


class TestCellCascadeMultiGPU(MultiGPUCases, unittest.TestCase):
    """One overlay for the three training configs (the loader rebuilt per rank by ``distributed_loader``)."""

    def test_train_masks_two_ranks_and_resume(self):
        common = {**CELLCASCADE, "batch_size": 2, "epoch_length": 1, "save_interval": 1}
        self.run_and_resume("cellcascade", "train_masks.json", common, {"num_steps": 1}, {"num_steps": 2},
                            "models/masks", "outputs/train_masks", "model", per_epoch=1)

    def test_train_texture_and_segment_train(self):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            configs = layout(tmp, "cellcascade")
            root = tmp / "bundles" / "cellcascade"
            files = [f"{configs}/train_texture.json", f"{configs}/multi_gpu_train.json", f"{configs}/record.json"]
            torchrun(tmp, files, {**CELLCASCADE, "batch_size": 2, "num_steps": 2, "epoch_length": 2, "save_interval": 1})
            ranks = records(root / "outputs" / "train_texture")
            self.assert_in_step(ranks, root / "models" / "texture" / "checkpoint.pt", "model", 2)
            self.assert_shards(ranks)
            # segment_train samples real / synthetic by weight: each rank draws epoch_length x batch_size indices from
            # its own generator (seed + rank), so the ranks' draws differ
            files[0] = f"{configs}/segment_train.json"
            torchrun(tmp, files, {**SEGMENT, "batch_size": 2, "num_steps": 2, "epoch_length": 2, "save_interval": 1})
            ranks = records(root / "outputs" / "segment_train")
            self.assert_in_step(ranks, root / "models" / "segmentation" / "checkpoint.pt", "model", 2)
            first, second = (r["indices"] for r in ranks)
            self.assertEqual((len(first), len(second)), (4, 4))
            self.assertNotEqual(first, second)
            self.assertTrue(set(first + second) <= set(range(ranks[0]["dataset_size"])))


if __name__ == "__main__":
    unittest.main()
