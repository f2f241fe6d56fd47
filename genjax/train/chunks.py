"""The chunked step loop: where compiled chunks of steps end, what is due there, running one.

Steps are grouped into chunks that run in one dispatch (fused by ``lax.scan``). A chunk ends
at the next absolute step that is a multiple of ``fuse_steps``, ``log_every``,
``checkpoint_every`` or ``eval_every`` (or at ``steps``), so the grouping, and with it every
computation, does not depend on where a run was resumed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from genjax.data.pipeline import Batcher
from genjax.train.state import TrainState
from genjax.train.step import Engine

if TYPE_CHECKING:
    from genjax.train.loop import TrainConfig


def chunk_ends(start: int, config: TrainConfig) -> Iterator[int]:
    """The absolute steps at which compiled chunks end, from ``start`` to ``config.steps``
    (generated as the run goes, so a long run costs no memory up front)."""
    marks = [config.fuse_steps, config.log_every, config.checkpoint_every]
    if config.eval_every:
        marks.append(config.eval_every)
    s = start
    while s < config.steps:
        s = min(min((s // m + 1) * m for m in marks), config.steps)
        yield s


@dataclasses.dataclass(frozen=True)
class ChunkEnd:
    """What is due when a chunk ends at absolute step ``step``: a train metric line
    (``log``), an evaluation (``evaluation``) and a checkpoint (``checkpoint``). The last
    step of the run is all three."""

    step: int
    log: bool
    evaluation: bool
    checkpoint: bool

    @classmethod
    def at(cls, step: int, config: TrainConfig) -> ChunkEnd:
        last = step == config.steps
        return cls(
            step=step,
            log=step % config.log_every == 0 or last,
            evaluation=last or bool(config.eval_every and step % config.eval_every == 0),
            checkpoint=step % config.checkpoint_every == 0 or last,
        )


def place_resident_data(engine: Engine, train_data: Any, config: TrainConfig) -> dict | None:
    """The training set placed whole on the device(s) when ``config.data_on_device`` (a
    single-process option: ``ValueError`` otherwise), else ``None``."""
    if not config.data_on_device:
        return None
    if jax.process_count() > 1:
        raise ValueError("data_on_device is for single-process runs")
    return engine.place_resident({k: np.asarray(v) for k, v in train_data.features.items()})


class ChunkRunner:
    """Runs the steps ``[start, end)`` of one chunk on the engine, in one dispatch.

    With a resident dataset the batches are gathered on the device inside the scan
    (``Engine.run_on_device``); otherwise the host batcher delivers them: one placed batch
    for a one-step chunk when ``fuse_steps == 1`` (``Engine.step``), else a placed stack of
    the chunk's batches (``Engine.run``). Returns the new state and the chunk's metrics.
    """

    def __init__(
        self, engine: Engine, batcher: Batcher, config: TrainConfig, resident: dict | None
    ):
        self.engine = engine
        self.batcher = batcher
        self.config = config
        self.resident = resident

    def __call__(self, state: TrainState, start: int, end: int) -> tuple[TrainState, dict]:
        n = end - start
        engine, config = self.engine, self.config
        if self.resident is not None:
            return engine.run_on_device(
                state, self.resident, num_steps=n, batch_size=config.batch_size, seed=config.seed
            )
        if n == 1 and config.fuse_steps == 1:
            return engine.step(state, engine.place_batch(self.batcher.raw_batch(start)))
        raw = engine.place_batch(self.batcher.raw_batches(start, n), stacked=True)
        return engine.run(state, raw)
