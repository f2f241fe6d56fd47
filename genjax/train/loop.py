"""The training loop: ``fit`` resumes, runs compiled chunks of steps, logs, evaluates and
checkpoints.

``fit`` drives an ``Engine`` over a dataset. The run is a pure function of the seed and the
step: batches come from ``(seed, step)``, randomness from ``fold_in(key, step)``, and the
chunks the steps are grouped into (fused by ``lax.scan``) end at absolute step numbers
(multiples of ``fuse_steps``, ``log_every``, ``eval_every`` and ``checkpoint_every``). A run
resumed from a checkpoint therefore replays exactly the computations an uninterrupted run
would have made, and ends with bitwise-identical parameters on the same machine.

``fit`` is the orchestration; each concern is one piece:

* ``genjax.train.resume``: the fresh state, the data setup a checkpoint records, and
  ``RunCheckpoints`` (restore the newest readable checkpoint, save, close).
* ``genjax.train.chunks``: ``chunk_ends``, what is due at a chunk's end (``ChunkEnd``), and
  ``ChunkRunner`` (one chunk of steps in one dispatch).
* ``genjax.train.reporting``: ``TrainReporter``, the train metric lines and the progress bar.
* ``genjax.train.evaluation``: ``Evaluation``, the test lines, ``on_eval`` and the check of
  ``best_metric``.
* here: ``NonFiniteGuard`` (stop after ``max_bad_steps`` consecutive non-finite steps) and
  ``_StopRequest`` (SIGTERM/SIGINT: checkpoint, then stop).
"""

from __future__ import annotations

import dataclasses
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from genjax.data.pipeline import Batcher, Preprocess, preprocess
from genjax.task import Task
from genjax.train.checkpoint import ResumeError  # noqa: F401 (importable from here)
from genjax.train.chunks import (
    ChunkEnd,
    ChunkRunner,
    check_resident_data,
    chunk_ends,
    place_resident_data,
)
from genjax.train.evaluation import Evaluation
from genjax.train.metrics_log import MetricsLog
from genjax.train.reporting import TrainReporter
from genjax.train.reporting import loss_postfix as _loss_postfix  # noqa: F401 (former name)
from genjax.train.resume import RunCheckpoints, data_meta, fresh_state
from genjax.train.state import TrainState
from genjax.train.step import STRATEGIES, Engine, Prepare


class NonFiniteError(RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient."""


_INT32_MAX = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Options of the engine (every model's config embeds one).

    Attributes:
      steps: total number of steps of the run.
      batch_size: global batch size (over all devices and processes).
      seed: seeds parameters, randomness and the batch order.
      strategy: ``jit`` | ``mesh`` | ``shard_map`` | ``pmap``.
      fuse_steps: steps per compiled ``lax.scan`` chunk (1 = one dispatch per step).
      data_on_device: hold the training set on the device and gather batches inside the
        scan (small datasets); otherwise batches are gathered on the host.
      prefetch: host-fed runs: how many chunks of host batches are read ahead in background
        threads while the device runs (grain); 0 reads each chunk when it is due. The
        batches are the same either way.
      compute_dtype: ``float32`` or ``bfloat16`` compute; parameters stay float32.
      log_every: steps between metric lines (train metrics averaged over the interval).
      eval_every: steps between evaluations on the test split (0: only at the end).
      checkpoint_every: steps between checkpoints (one is always written at the end).
      keep_checkpoints: how many recent checkpoints to keep.
      best_metric: evaluation metric whose best checkpoint is kept as well ('' for none);
        ``fit`` evaluates once before training to check that the evaluation reports it.
      best_mode: ``max`` or ``min`` for ``best_metric``.
      max_bad_steps: consecutive non-finite steps after which the run stops with an error.
      async_checkpoints: write checkpoints in the background (Orbax async).
      tensorboard: also write every metric line as TensorBoard scalars into
        ``<workdir>/tensorboard`` (``tensorboard --logdir`` shows the curves).
      progress: show a progress bar.
    """

    steps: int = 1000
    batch_size: int = 128
    seed: int = 0
    strategy: str = "jit"
    fuse_steps: int = 1
    data_on_device: bool = False
    prefetch: int = 2
    compute_dtype: str = "float32"
    log_every: int = 100
    eval_every: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    best_metric: str = ""
    best_mode: str = "max"
    max_bad_steps: int = 20
    async_checkpoints: bool = True
    tensorboard: bool = True
    progress: bool = True

    def __post_init__(self):
        positive = ("steps", "batch_size", "fuse_steps", "log_every", "checkpoint_every")
        for name in (*positive, "keep_checkpoints", "max_bad_steps", "eval_every", "prefetch"):
            value = getattr(self, name)
            low = 0 if name in ("eval_every", "prefetch") else 1
            # The step counter (and with it every step number) is int32 on the device.
            integer = isinstance(value, int) and not isinstance(value, bool)
            if not integer or not low <= value <= _INT32_MAX:
                raise ValueError(
                    f"train.{name} must be an integer in [{low}, {_INT32_MAX}], got {value!r}"
                )
        if self.strategy not in STRATEGIES:
            raise ValueError(f"train.strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.compute_dtype not in ("float32", "bfloat16"):
            raise ValueError(
                f"train.compute_dtype must be 'float32' or 'bfloat16', got {self.compute_dtype!r}"
            )
        if self.best_mode not in ("max", "min"):
            raise ValueError(f"train.best_mode must be 'max' or 'min', got {self.best_mode!r}")


@dataclasses.dataclass
class FitResult:
    """What ``fit`` returns: the final state (host copy) and what was measured."""

    state: TrainState
    start_step: int
    wall_s: float
    last_train: dict
    last_eval: dict


class _StopRequest:
    """SIGTERM/SIGINT: finish the current chunk, checkpoint, and exit cleanly.

    While the context is active (in the main thread only: Python delivers signals there),
    the first SIGTERM or SIGINT sets ``requested``; ``fit`` then checks the guard, saves a
    checkpoint at the end of the current chunk and raises ``KeyboardInterrupt``. A second
    signal raises ``KeyboardInterrupt`` at once. The previous handlers are restored on exit.
    """

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        if threading_main():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        del frame
        if self.requested:  # second signal: give up at once
            raise KeyboardInterrupt
        self.requested = True
        print(
            f"\ngenjax: signal {signum} received, checkpointing and stopping",
            file=sys.stderr,
        )

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def threading_main() -> bool:
    """Whether this is the main thread (the only one that may install signal handlers)."""
    import threading

    return threading.current_thread() is threading.main_thread()


class NonFiniteGuard:
    """The non-finite guard's check at the host's sync points.

    The compiled steps skip a step whose loss or gradient is not finite and count the
    longest streak of such steps in the state; ``check`` raises ``NonFiniteError`` once that
    streak reaches ``max_bad_steps``, after closing the checkpoints (the saves in flight
    land, so those on disk are the last good ones).
    """

    def __init__(self, engine: Engine, config: TrainConfig, checkpoints: RunCheckpoints):
        self.engine = engine
        self.max_bad_steps = config.max_bad_steps
        self.checkpoints = checkpoints

    def check(self, state: TrainState) -> None:
        """Read the longest streak off the engine's ``state`` (a device sync); raise if it
        reached the limit."""
        worst = int(jax.device_get(self.engine.one_replica(state.max_bad_streak)))
        if worst >= self.max_bad_steps:
            self.checkpoints.close()
            raise NonFiniteError(
                f"{worst} consecutive steps had a non-finite loss or gradient "
                f"(limit train.max_bad_steps={self.max_bad_steps}); the parameters were "
                f"left at their last finite values and the checkpoints in "
                f"{self.checkpoints.path} are intact "
                f"(latest: step {self.checkpoints.latest_step()})"
            )


def _in_step_preprocessing(train_data: Any, preprocess_spec: Preprocess | None) -> Prepare:
    """The preprocessing the compiled step runs on each raw batch: ``preprocess`` with the
    run's spec (default ``Preprocess()``) and the dataset's ``image_max``."""
    spec = preprocess_spec or Preprocess()
    image_max = getattr(train_data, "image_max", None)

    def prepare(raw, rng):
        return preprocess(raw, rng, spec, image_max)

    return prepare


def _check_batch_fits_split(config: TrainConfig, train_data: Any) -> None:
    """``ValueError`` when one batch would need more examples than the training split has."""
    if config.batch_size > train_data.num_examples:
        raise ValueError(
            f"batch_size {config.batch_size} is larger than the training split "
            f"({train_data.num_examples} examples of {train_data.name!r})"
        )


def _check_batch_splits_over_devices(config: TrainConfig, engine: Engine) -> None:
    """``ValueError`` when the global batch does not split evenly over the engine's devices."""
    if config.batch_size % engine.num_devices:
        raise ValueError(
            f"batch_size {config.batch_size} is not divisible by the {engine.num_devices} "
            f"devices of the {config.strategy!r} strategy"
        )


def fit(
    task: Task,
    train_data: Any,
    config: TrainConfig,
    workdir: str | Path,
    *,
    preprocess_spec: Preprocess | None = None,
    evaluate: Callable[[Any, Any], dict] | None = None,
    mesh: Any = None,
    on_log: Callable[[int, dict], None] | None = None,
    on_eval: Callable[[int, Any, Any], None] | None = None,
) -> FitResult:
    """Train ``task`` on ``train_data`` (a ``genjax.data.Dataset``) into ``workdir``.

    Resumes from the newest readable checkpoint in ``workdir/checkpoints``. ``evaluate(params,
    model_state) -> metrics`` runs every ``eval_every`` steps and at the end; its metrics go
    to ``metrics.jsonl`` with ``"split": "test"`` and can rank the kept checkpoints.
    ``on_eval(step, params, model_state)`` runs at the same steps (for snapshots: figures
    of the model at regular intervals of training).
    Raises ``NonFiniteError`` after ``max_bad_steps`` consecutive non-finite steps (the
    checkpoints on disk are the last good ones).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    prepare = _in_step_preprocessing(train_data, preprocess_spec)
    _check_batch_fits_split(config, train_data)
    check_resident_data(train_data, config)
    batcher = Batcher(
        train_data,
        config.batch_size,
        config.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    engine = Engine(
        task, prepare, strategy=config.strategy, compute_dtype=config.compute_dtype, mesh=mesh
    )
    _check_batch_splits_over_devices(config, engine)

    # Where the run starts: step 0, or the newest readable checkpoint of this model and data.
    fresh = fresh_state(task, prepare, batcher, config.seed)
    template = jax.tree.map(np.asarray, fresh)
    meta = data_meta(train_data, config)
    evaluation = Evaluation(config, evaluate, on_eval)
    evaluation.check_best_metric_before_training(fresh)
    checkpoints = RunCheckpoints(workdir, config, engine, meta)
    host_state, start = checkpoints.restore_or_start(template)
    del fresh
    state = engine.place_state(host_state)

    log = MetricsLog(workdir, resume_step=start, tensorboard=config.tensorboard)
    resident = place_resident_data(engine, train_data, config)
    reporter = TrainReporter(log, engine, config, start, on_log)
    guard = NonFiniteGuard(engine, config, checkpoints)
    # Host-fed runs read the next chunks' batches in background threads from here on.
    run_chunk = ChunkRunner(engine, batcher, config, resident, start=start)
    try:
        with _StopRequest() as stop:
            s = start
            for end in chunk_ends(start, config):
                state, metrics = run_chunk(state, s, end)
                reporter.add(metrics, end - s)
                s = end
                due = ChunkEnd.at(end, config)
                # Every host sync point checks the guard first: nothing non-finite is logged
                # or saved, and a signal stops the run only after a checkpoint.
                if due.log or due.checkpoint or stop.requested:
                    guard.check(state)
                if due.log:
                    reporter.write_train_line(end, state)
                if due.evaluation:
                    evaluation.at_step(end, engine, state, log)
                if due.checkpoint or stop.requested:
                    checkpoints.save(state, evaluation.last if due.evaluation else None)
                if stop.requested and end != config.steps:
                    checkpoints.close()
                    reporter.close_bar()
                    raise KeyboardInterrupt(f"stopped at step {end} by a signal; checkpoint saved")
        if start == config.steps:  # nothing left to train: report the final evaluation
            evaluation.measure(engine, state)
        checkpoints.close()
    finally:
        run_chunk.close()
        reporter.close()
    host = engine.fetch_state(state)
    return FitResult(
        state=host,
        start_step=start,
        wall_s=reporter.elapsed(),
        last_train=reporter.last_train,
        last_eval=evaluation.last,
    )
