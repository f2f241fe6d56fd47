"""A run's train metric lines and progress bar.

The metrics of the chunks between two log steps stay on the device until the log step;
then they are fetched in one transfer, averaged over the interval's steps, and written as
one ``"split": "train"`` line (``metrics.jsonl`` and TensorBoard, through ``MetricsLog``)
with the skipped-step count and the interval's throughput. The progress bar shows the loss
and the example rate of the last line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import numpy as np
from tqdm.auto import tqdm

from genjax.train.metrics_log import MetricsLog
from genjax.train.state import TrainState
from genjax.train.step import Engine

if TYPE_CHECKING:
    from genjax.train.loop import TrainConfig


def mean_metrics(pending: list[tuple[dict, int]], one_replica: Callable = lambda x: x) -> dict:
    """Average the metrics of an interval (one device→host transfer).

    ``pending`` holds ``(metrics, steps)`` per chunk, each metric a scalar or ``[steps]``
    array; ``one_replica`` picks one device's copy of a host array (``Engine.one_replica``:
    ``pmap`` metrics carry a leading device axis).
    """
    if not pending:
        return {}
    fetched = jax.device_get([m for m, _ in pending])
    sums: dict[str, float] = {}
    count = 0
    for metrics, (_, n) in zip(fetched, pending, strict=True):
        for k, v in metrics.items():
            v = one_replica(np.asarray(v, np.float64))
            sums[k] = sums.get(k, 0.0) + float(v.sum())
        count += n
    return {k: v / count for k, v in sums.items()}


def loss_postfix(metrics: dict) -> dict[str, str]:
    """The progress bar's loss field(s): ``loss`` for one player, ``<player>_loss`` for each
    player of a multi-player task (a GAN's ``disc`` and ``gen``)."""
    if "loss" in metrics:
        return {"loss": f"{metrics['loss']:.4g}"}
    return {
        f"{k.split('/')[0]}_loss": f"{v:.4g}" for k, v in metrics.items() if k.endswith("/loss")
    }


class TrainReporter:
    """The train metric lines of a run, and its progress bar (process 0 shows it).

    Args:
      log: the run's open ``MetricsLog`` (the reporter closes it).
      engine: reads the metrics and the skipped-step count back from its layout.
      config: ``batch_size``, ``steps`` and ``progress``.
      start: the step the run starts from.
      on_log: called as ``on_log(step, record)`` after each line is written.

    The run's clock starts when the reporter is made.
    """

    def __init__(
        self,
        log: MetricsLog,
        engine: Engine,
        config: TrainConfig,
        start: int,
        on_log: Callable[[int, dict], None] | None = None,
    ):
        self.log = log
        self.engine = engine
        self.batch_size = config.batch_size
        self.on_log = on_log
        self.last_train: dict = {}
        self._pending: list[tuple[dict, int]] = []
        self.t_run = time.perf_counter()
        self._t_interval, self._s_interval = self.t_run, start
        show = config.progress and jax.process_index() == 0
        self.bar = tqdm(
            total=config.steps, initial=start, disable=not show, unit="step", dynamic_ncols=True
        )

    def add(self, metrics: dict, steps: int) -> None:
        """Keep a chunk's (device) metrics for the next line, and advance the bar."""
        self._pending.append((metrics, steps))
        self.bar.update(steps)

    def write_train_line(self, step: int, state: TrainState) -> dict:
        """Write the line of the interval that ends at ``step``; returns its record."""
        now = time.perf_counter()
        self.last_train = mean_metrics(self._pending, self.engine.one_replica)
        self._pending = []
        rate = (step - self._s_interval) / max(now - self._t_interval, 1e-9)
        host_counts = self.engine.fetch_state(state)
        record = {
            "step": step,
            "split": "train",
            **self.last_train,
            "skipped_steps": int(host_counts.skipped),
            "steps_per_s": rate,
            "examples_per_s": rate * self.batch_size,
            "wall_s": now - self.t_run,
        }
        self.log.write(record)
        if self.on_log is not None:
            self.on_log(step, record)
        self.bar.set_postfix(
            **loss_postfix(self.last_train),
            ex_s=f"{rate * self.batch_size:.0f}",
            refresh=False,
        )
        self._t_interval, self._s_interval = now, step
        return record

    def elapsed(self) -> float:
        """Seconds since the run's clock started."""
        return time.perf_counter() - self.t_run

    def close_bar(self) -> None:
        """Close the progress bar (it may be closed again)."""
        self.bar.close()

    def close(self) -> None:
        """Close the progress bar and the metrics log."""
        self.bar.close()
        self.log.close()
