"""A run's checkpoints: where it starts (fresh, or restored from the newest readable
checkpoint) and saving it.

Batches are a pure function of ``(seed, step)``, so a restored state's step is also the
run's data position: the resumed run asks the batcher for batch ``step`` next. Every
checkpoint records the data setup it was trained on (``data_meta``); a checkpoint made with
other data, or by another model (other parameter leaves, shapes or dtypes), is a
``ResumeError`` and is left untouched.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax

from genjax.data.pipeline import Batcher
from genjax.task import Task
from genjax.train.checkpoint import Checkpointer, ResumeError
from genjax.train.state import TrainState, init_state
from genjax.train.step import Engine, Prepare

if TYPE_CHECKING:
    from genjax.train.loop import TrainConfig


def fresh_state(task: Task, prepare: Prepare, batcher: Batcher, seed: int) -> TrainState:
    """The state of a run at step 0, from ``seed`` and the shapes of batch 0.

    Initialised under one jit: eager initialisation would compile every small op on its own.
    """

    @jax.jit
    def initialise(rng, raw):
        return init_state(task, rng, prepare(raw, jax.random.PRNGKey(0)))

    return initialise(jax.random.PRNGKey(seed), batcher.raw_batch(0))


def data_meta(train_data: Any, config: TrainConfig) -> dict:
    """The data setup a checkpoint records (and a resume must match): the dataset, its
    size, the batch size and the seed, which together fix every batch of the run."""
    return {
        "dataset": getattr(train_data, "name", "?"),
        "num_examples": int(train_data.num_examples),
        "batch_size": config.batch_size,
        "seed": config.seed,
    }


class RunCheckpoints:
    """The checkpoints of one run, in ``<workdir>/checkpoints``.

    Opens a ``Checkpointer`` with the run's options (keep the last ``keep_checkpoints``, and
    the best by ``best_metric``), restores the state to start from, and saves host copies
    of the engine's state with the run's data setup.
    """

    def __init__(self, workdir: Path, config: TrainConfig, engine: Engine, data: dict):
        self.workdir = workdir
        self.path = workdir / "checkpoints"
        self.engine = engine
        self.data_meta = data
        self.checkpointer = Checkpointer(
            self.path,
            keep=config.keep_checkpoints,
            best_metric=config.best_metric or None,
            best_mode=config.best_mode,
            asynchronous=config.async_checkpoints,
        )

    def restore_or_start(self, template: TrainState) -> tuple[TrainState, int]:
        """The state to start from and its step (``restore``); on any error the
        checkpointer is closed before the error propagates."""
        try:
            return self.restore(template)
        except BaseException:
            self.close()
            raise

    def restore(self, template: TrainState) -> tuple[TrainState, int]:
        """The state to start from, and its step: the newest readable checkpoint, or
        ``template`` (step 0) when there is none. Raises ``ResumeError`` when the checkpoints
        are another model's (other parameter leaves, shapes or dtypes) or another data
        setup's; those are left untouched."""
        workdir = self.workdir
        try:
            restored = self.checkpointer.restore_latest(template)
        except ResumeError as err:
            raise ResumeError(
                f"cannot resume the run in {workdir}: {err}; use another work directory"
            ) from None
        if restored is None:
            return template, 0
        state, meta = restored
        if meta.get("data") != self.data_meta:
            raise ResumeError(
                f"the checkpoint in {workdir} was made with data {meta.get('data')}, "
                f"this run has {self.data_meta}; use another work directory"
            )
        return state, int(state.step)

    def save(self, state: TrainState, metrics: dict | None = None) -> None:
        """Checkpoint a host copy of the engine's ``state`` at its step; ``metrics`` (an
        evaluation's) rank it for ``best_metric``."""
        host = self.engine.fetch_state(state)
        self.checkpointer.save(host, {"step": int(host.step), "data": self.data_meta}, metrics)

    def latest_step(self) -> int:
        """The newest checkpointed step (0 when there is none)."""
        return max(self.checkpointer.steps(), default=0)

    def close(self) -> None:
        """Wait for the saves in flight, then close the checkpointer."""
        self.checkpointer.close()
