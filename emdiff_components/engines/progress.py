"""A training progress line a person can read: where the run is, how fast it goes and how long it has left."""

from __future__ import annotations

import logging
import time

from ignite.engine import Engine, Events

__all__ = ["TrainingProgress"]

logger = logging.getLogger(__name__)


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class TrainingProgress:
    """Ignite handler: every ``interval`` iterations and at the last one (also of a run stopped early) log one line
    ``iteration 120/2000 (6 %), loss 0.0412, 1.9 it/s, elapsed 1:03, left 16:29``.

    MONAI's ``StatsHandler`` logs every iteration without the total or the time left; this line says both. The speed is
    measured over the iterations of this run (a resumed run starts counting where it resumed).

    Args:
        interval: iterations between lines, default 10.
        output_transform: engine output -> loss value (a float or 0-d tensor), default ``output[0]["loss"]`` for
            MONAI's list-of-dicts output, or the output itself.
        name: logger name, default this module's.
        total: iterations of the whole run, default the engine's ``epoch_length * max_epochs``; a run that stops on
            another rule (a time budget) sets it, also while running, so that "left" means something.
    """

    def __init__(
        self, interval: int = 10, output_transform=None, name: str | None = None, total: int | None = None
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"TrainingProgress: interval must be an int >= 1, got {interval!r}.")
        self.interval = interval
        self.output_transform = output_transform
        self.total = total
        self.logger = logging.getLogger(name) if name else logger
        self._start_time = 0.0
        self._start_iteration = 0
        self._logged_iteration = -1

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _started(self, engine: Engine) -> None:
        self._start_time = time.perf_counter()
        self._start_iteration = engine.state.iteration

    def _loss(self, output) -> float | None:
        if self.output_transform is not None:
            value = self.output_transform(output)
        elif isinstance(output, (list, tuple)) and output and isinstance(output[0], dict):
            value = output[0].get("loss")
        elif isinstance(output, dict):
            value = output.get("loss")
        else:
            value = output
        try:
            return float(value)
        except (TypeError, ValueError):
            return None

    def _total(self, engine: Engine) -> int:
        if self.total is not None:
            return self.total
        return (engine.state.epoch_length or 0) * (engine.state.max_epochs or 0)

    def line(self, engine: Engine) -> str:
        """The progress line for the engine's current state."""
        state = engine.state
        total = self._total(engine)
        done = state.iteration - self._start_iteration
        elapsed = time.perf_counter() - self._start_time
        speed = done / elapsed if elapsed > 0 else 0.0
        parts = [f"iteration {state.iteration}/{total}" + (f" ({100 * state.iteration / total:.0f} %)" if total else "")]
        loss = self._loss(state.output)
        if loss is not None:
            parts.append(f"loss {loss:.4g}")
        if speed > 0:
            parts.append(f"{speed:.3g} it/s" if speed >= 1 else f"{1 / speed:.3g} s/it")
        parts.append(f"elapsed {_clock(elapsed)}")
        if total and speed > 0:
            parts.append(f"left {_clock((total - state.iteration) / speed)}")
        return ", ".join(parts)

    def _iteration(self, engine: Engine) -> None:
        if engine.state.iteration % self.interval == 0 or engine.state.iteration == self._total(engine):
            self._log(engine)

    def _completed(self, engine: Engine) -> None:
        if engine.state.iteration != self._logged_iteration:  # stopped between lines (terminate, a time budget)
            self._log(engine)

    def _log(self, engine: Engine) -> None:
        self.logger.info("%s", self.line(engine))
        self._logged_iteration = engine.state.iteration
