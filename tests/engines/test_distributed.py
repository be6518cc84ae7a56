"""distributed_loader / process_rank, and ResumableCheckpoint and DiffusionTrainingStep inside a process group.

A one-process gloo group stands in for torchrun here (the two-rank runs are tests/bundles/test_multi_gpu.py);
ranks other than 0 are simulated by patching ``process_rank`` where the code asks for it.
"""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path
from unittest import mock

import torch
import torch.distributed as dist
from ignite.engine import Engine
from monai.data import DataLoader, Dataset, DistributedSampler
from torch import nn
from torch.utils.data import WeightedRandomSampler

from emdiff_components.engines import DiffusionTrainingStep, ResumableCheckpoint, distributed_loader, process_rank

DATA = [{"x": torch.tensor([float(i)])} for i in range(10)]


class ProcessGroup:
    """A gloo group of one process (rank 0), torn down afterwards."""

    def __enter__(self):
        self._tmp = tempfile.TemporaryDirectory()
        dist.init_process_group("gloo", init_method=f"file://{self._tmp.name}/store", rank=0, world_size=1)
        return self

    def __exit__(self, *exc):
        dist.destroy_process_group()
        self._tmp.cleanup()


class TestDistributedLoader(unittest.TestCase):
    def test_without_a_group_the_loader_is_returned(self):
        loader = DataLoader(Dataset(DATA), batch_size=2, shuffle=True)
        self.assertEqual(process_rank(), 0)
        self.assertIs(distributed_loader(loader), loader)

    def test_shuffled_and_ordered_loaders_get_a_distributed_sampler(self):
        with ProcessGroup():
            for shuffle in (True, False):
                loader = DataLoader(Dataset(DATA), batch_size=3, shuffle=shuffle, num_workers=0)
                shared = distributed_loader(loader)
                self.assertIsInstance(shared, DataLoader)
                self.assertIsInstance(shared.sampler, DistributedSampler)
                self.assertEqual(shared.sampler.shuffle, shuffle)
                self.assertEqual((shared.batch_size, shared.collate_fn), (3, loader.collate_fn))
                # one rank: its share is the whole data set, in order when not shuffled
                indices = list(shared.sampler)
                self.assertEqual(sorted(indices), list(range(10)))
                if not shuffle:
                    self.assertEqual(indices, list(range(10)))
                    self.assertEqual(next(iter(shared))["x"].flatten().tolist(), [0.0, 1.0, 2.0])

    def test_weighted_sampler_draws_from_seed_plus_rank(self):
        weights = torch.tensor([0.0, 1.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0])
        sampler = WeightedRandomSampler(weights, 12, replacement=True, generator=torch.Generator().manual_seed(0))
        loader = DataLoader(Dataset(DATA), batch_size=4, sampler=sampler)
        with ProcessGroup():
            shared = distributed_loader(loader, seed=7)
            expected = WeightedRandomSampler(weights, 12, replacement=True, generator=torch.Generator().manual_seed(7))
            self.assertEqual(list(shared.sampler), list(expected))  # rank 0: seed 7 + 0
            self.assertTrue(set(shared.sampler) <= {1, 3, 9})  # the weights hold: zero-weight samples never come
            self.assertEqual(len(shared), 3)

    def test_errors(self):
        weights = torch.ones(10)
        without = DataLoader(Dataset(DATA), sampler=WeightedRandomSampler(weights, 5, replacement=False))
        custom = DataLoader(Dataset(DATA), sampler=[0, 1, 2])
        with ProcessGroup():
            with self.assertRaisesRegex(ValueError, "distributed_loader: .*without replacement"):
                distributed_loader(without)
            with self.assertRaisesRegex(TypeError, "distributed_loader: cannot share a list"):
                distributed_loader(custom)


class TestResumableCheckpointDistributed(unittest.TestCase):
    def _engine(self, epochs, handler):
        engine = Engine(lambda e, b: None)
        handler.attach(engine)
        engine.run([0, 1], max_epochs=epochs)
        return engine

    def test_ddp_network_is_saved_unwrapped_and_resumes_either_way(self):
        with tempfile.TemporaryDirectory() as tmp, ProcessGroup():
            torch.manual_seed(0)
            bare = nn.Linear(3, 2)
            wrapped = nn.parallel.DistributedDataParallel(bare)
            self._engine(1, ResumableCheckpoint(tmp, {"model": wrapped}))
            state = torch.load(Path(tmp) / "checkpoint.pt", weights_only=False)
            self.assertEqual(sorted(state["model"]), ["bias", "weight"])  # no "module." prefix
            final = torch.load(Path(tmp) / "model.pt", weights_only=True)
            torch.testing.assert_close(final["weight"], bare.weight.detach())
            # a bare network resumes the DDP run's checkpoint (and it continues at epoch 1)
            other = nn.Linear(3, 2)
            engine = self._engine(2, ResumableCheckpoint(tmp, {"model": other}))
            self.assertEqual(engine.state.iteration, 4)
            torch.testing.assert_close(other.weight, bare.weight)
            # and a DDP network resumes a bare network's checkpoint
            torch.manual_seed(1)
            fresh = nn.Linear(3, 2)
            engine = self._engine(3, ResumableCheckpoint(tmp, {"model": nn.parallel.DistributedDataParallel(fresh)}))
            self.assertEqual(engine.state.iteration, 6)
            torch.testing.assert_close(fresh.weight, bare.weight)

    def test_only_rank_zero_writes(self):
        with tempfile.TemporaryDirectory() as tmp:
            net = nn.Linear(3, 2)
            with mock.patch("emdiff_components.engines.checkpoints.process_rank", return_value=1):
                self._engine(1, ResumableCheckpoint(tmp, {"model": net}))
            self.assertEqual(list(Path(tmp).iterdir()), [])
            self._engine(1, ResumableCheckpoint(tmp, {"model": net}))
            self.assertEqual(sorted(p.name for p in Path(tmp).iterdir()), ["checkpoint.pt", "model.pt"])
            # rank 1 of a later run resumes from rank 0's file: epoch 1 done, only epoch 2 runs
            with mock.patch("emdiff_components.engines.checkpoints.process_rank", return_value=1):
                engine = self._engine(2, ResumableCheckpoint(tmp, {"model": net}))
            self.assertEqual(engine.state.iteration, 4)
            saved = torch.load(Path(tmp) / "checkpoint.pt", weights_only=False)
            self.assertEqual(saved["trainer"]["iteration"], 2)  # rank 1 did not overwrite it


class TestTrainingStepSeedPerRank(unittest.TestCase):
    def test_rank_is_added_to_the_seed(self):
        with mock.patch("emdiff_components.engines.training.process_rank", return_value=3):
            step = DiffusionTrainingStep(seed=5)
        expected = torch.Generator().manual_seed(8)
        self.assertTrue(torch.equal(torch.rand(4, generator=step.generator), torch.rand(4, generator=expected)))
        single = DiffusionTrainingStep(seed=5)
        expected = torch.Generator().manual_seed(5)
        self.assertTrue(torch.equal(torch.rand(4, generator=single.generator), torch.rand(4, generator=expected)))


if __name__ == "__main__":
    unittest.main()
