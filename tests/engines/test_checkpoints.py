from __future__ import annotations

import os
import tempfile
import unittest
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from torch import nn

from emdiff_components.engines import CheckpointError, ResumableCheckpoint, atomic_save, load_network_weights


def tiny_net(seed=0, width=3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, width, 3), nn.ReLU(), nn.Conv2d(width, 1, 1))


class TestLoadNetworkWeights(unittest.TestCase):
    def test_round_trip_and_wrapped_dict(self):
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = tiny_net(0), tiny_net(1)
            atomic_save({"model": src.state_dict()}, Path(tmp) / "c.pt")
            load_network_weights(dst, Path(tmp) / "c.pt")
            for a, b in zip(src.parameters(), dst.parameters()):
                torch.testing.assert_close(a, b)
            self.assertEqual(os.listdir(tmp), ["c.pt"])  # no temporary file left behind

    def test_errors_name_the_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            other = Path(tmp) / "other.pt"
            torch.save(tiny_net(width=5).state_dict(), other)
            with self.assertRaisesRegex(CheckpointError, "other.pt.*another shape"):
                load_network_weights(tiny_net(), other)
            torch.save(nn.Linear(2, 2).state_dict(), other)
            with self.assertRaisesRegex(CheckpointError, "other.pt.*missing keys"):
                load_network_weights(tiny_net(), other)
            broken = Path(tmp) / "broken.pt"
            broken.write_bytes(b"not a checkpoint")
            with self.assertRaisesRegex(CheckpointError, "broken.pt.*cannot be read"):
                load_network_weights(tiny_net(), broken)
            with self.assertRaisesRegex(CheckpointError, "absent.pt.*does not exist"):
                load_network_weights(tiny_net(), Path(tmp) / "absent.pt")


class TestResumableCheckpoint(unittest.TestCase):
    def _run(self, tmp, max_epochs, stop_after=None):
        net = tiny_net(0)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)

        def step(engine, batch):
            opt.zero_grad()
            loss = net(torch.ones(1, 1, 4, 4)).mean()
            loss.backward()
            opt.step()
            if stop_after is not None and engine.state.epoch == stop_after and engine.state.iteration % 2 == 0:
                engine.terminate()  # a run killed after epoch `stop_after` (its checkpoint was written)
            return loss.item()

        trainer = Engine(step)
        ResumableCheckpoint(tmp, {"model": net, "optimizer": opt}).attach(trainer)
        trainer.run(range(2), max_epochs=max_epochs)
        return net, trainer

    def test_resume_continues_from_saved_epoch(self):
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            full, _ = self._run(a, max_epochs=3)
            self._run(b, max_epochs=3, stop_after=1)
            resumed, trainer = self._run(b, max_epochs=3)
            self.assertEqual(trainer.state.epoch, 3)
            for p, q in zip(full.parameters(), resumed.parameters()):
                torch.testing.assert_close(p, q)
            final = torch.load(Path(b) / "model.pt", weights_only=True)  # the network alone, with the resumed weights
            self.assertEqual(set(final), set(resumed.state_dict()))
            for key, value in resumed.state_dict().items():
                torch.testing.assert_close(final[key], value)
            self.assertEqual(sorted(os.listdir(b)), ["checkpoint.pt", "model.pt"])  # no temporary file left

    def test_longer_run_extends_a_finished_one(self):
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            full, _ = self._run(a, max_epochs=3)
            self._run(b, max_epochs=1)  # finished a 1-epoch run; now ask for 3
            resumed, trainer = self._run(b, max_epochs=3)
            self.assertEqual(trainer.state.epoch, 3)
            for p, q in zip(full.parameters(), resumed.parameters()):
                torch.testing.assert_close(p, q)

    def test_min_seconds_skips_saves_and_the_end_writes_the_last_epoch(self):
        net = tiny_net(0)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        saved_epochs = []

        def step(engine, batch):
            opt.zero_grad()
            net(torch.ones(1, 1, 4, 4)).mean().backward()
            opt.step()

        with tempfile.TemporaryDirectory() as tmp:
            trainer = Engine(step)
            handler = ResumableCheckpoint(tmp, {"model": net, "optimizer": opt}, min_seconds=3600)
            handler.attach(trainer)

            @trainer.on(Events.EPOCH_COMPLETED)
            def record(engine):  # runs after the handler's save: which epoch does checkpoint.pt hold now?
                saved_epochs.append(torch.load(handler.checkpoint_path, weights_only=False)["trainer"]["iteration"] // 2)

            trainer.run(range(2), max_epochs=4)
            # epoch 1 writes (the first due save); epochs 2-4 fall inside the hour and are skipped; the end writes 4
            self.assertEqual(saved_epochs, [1, 1, 1, 1])
            self.assertEqual(torch.load(handler.checkpoint_path, weights_only=False)["trainer"]["iteration"], 4 * 2)
        with self.assertRaisesRegex(ValueError, "min_seconds"):
            ResumableCheckpoint("x", {"model": tiny_net()}, min_seconds=-1)

    def test_corrupt_checkpoint_is_reported(self):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "checkpoint.pt").write_bytes(b"garbage")
            with self.assertRaisesRegex(CheckpointError, "checkpoint.pt"):
                self._run(tmp, max_epochs=1)

    def test_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "network_key"):
            ResumableCheckpoint("x", {"net": tiny_net()})


if __name__ == "__main__":
    unittest.main()
