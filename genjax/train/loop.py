"""The training loop: resume, compiled chunks of steps, logging, evaluation, checkpoints.

``fit`` drives an ``Engine`` over a dataset. The run is a pure function of the seed and the
step: batches come from ``(seed, step)``, randomness from ``fold_in(key, step)``, and the
chunks the steps are grouped into (fused by ``lax.scan``) end at absolute step numbers
(multiples of ``fuse_steps``, ``log_every``, ``eval_every`` and ``checkpoint_every``). A run
resumed from a checkpoint therefore replays exactly the computations an uninterrupted run
would have made, and ends with bitwise-identical parameters on the same machine.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from genjax.data.pipeline import Batcher, Preprocess, preprocess
from genjax.train.checkpoint import Checkpointer, ResumeError
from genjax.train.metrics_log import MetricsLog
from genjax.train.state import TrainState, init_state
from genjax.train.step import STRATEGIES, Engine
from genjax.train.task import Task


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
        for name in (*positive, "keep_checkpoints", "max_bad_steps", "eval_every"):
            value = getattr(self, name)
            low = 0 if name == "eval_every" else 1
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


class _StopRequest:
    """SIGTERM/SIGINT: finish the current chunk, checkpoint, and exit cleanly."""

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
    import threading

    return threading.current_thread() is threading.main_thread()


def _loss_postfix(metrics: dict) -> dict[str, str]:
    """The progress bar's loss field(s): ``loss`` for one player, ``<player>_loss`` for each
    player of a multi-player task (a GAN's ``disc`` and ``gen``)."""
    if "loss" in metrics:
        return {"loss": f"{metrics['loss']:.4g}"}
    return {
        f"{k.split('/')[0]}_loss": f"{v:.4g}" for k, v in metrics.items() if k.endswith("/loss")
    }


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
    spec = preprocess_spec or Preprocess()
    image_max = getattr(train_data, "image_max", None)

    def prepare(raw, rng):
        return preprocess(raw, rng, spec, image_max)

    pcount, pindex = jax.process_count(), jax.process_index()
    if config.batch_size > train_data.num_examples:
        raise ValueError(
            f"batch_size {config.batch_size} is larger than the training split "
            f"({train_data.num_examples} examples of {train_data.name!r})"
        )
    batcher = Batcher(
        train_data, config.batch_size, config.seed, process_index=pindex, process_count=pcount
    )
    engine = Engine(
        task, prepare, strategy=config.strategy, compute_dtype=config.compute_dtype, mesh=mesh
    )
    if config.batch_size % engine.num_devices:
        raise ValueError(
            f"batch_size {config.batch_size} is not divisible by the {engine.num_devices} "
            f"devices of the {config.strategy!r} strategy"
        )

    # Initialise under one jit: eager initialisation would compile every small op on its own.
    @jax.jit
    def initialise(rng, raw):
        return init_state(task, rng, prepare(raw, jax.random.PRNGKey(0)))

    fresh = initialise(jax.random.PRNGKey(config.seed), batcher.raw_batch(0))
    host_template = jax.tree.map(np.asarray, fresh)
    data_meta = {
        "dataset": getattr(train_data, "name", "?"),
        "num_examples": int(train_data.num_examples),
        "batch_size": config.batch_size,
        "seed": config.seed,
    }

    if config.best_metric:
        # Name a misspelt metric now, before anything is written, not at the first evaluation.
        if evaluate is None:
            raise ValueError(
                f"train.best_metric={config.best_metric!r} ranks checkpoints by an evaluation "
                "metric, but this run has no evaluation (pass evaluate=...)"
            )
        _check_best_metric(config, evaluate(fresh.params, fresh.model_state))
    ckpt = Checkpointer(
        workdir / "checkpoints",
        keep=config.keep_checkpoints,
        best_metric=config.best_metric or None,
        best_mode=config.best_mode,
        asynchronous=config.async_checkpoints,
    )
    try:
        host_state, start = _restore(ckpt, host_template, data_meta, workdir)
    except BaseException:
        ckpt.close()
        raise
    del fresh
    state = engine.place_state(host_state)
    log = MetricsLog(workdir, resume_step=start, tensorboard=config.tensorboard)

    resident = None
    if config.data_on_device:
        if pcount > 1:
            raise ValueError("data_on_device is for single-process runs")
        resident = engine.place_resident({k: np.asarray(v) for k, v in train_data.features.items()})

    last_train: dict = {}
    last_eval: dict = {}
    pending: list[tuple[dict, int]] = []
    t_run = time.perf_counter()
    t_interval, s_interval = t_run, start
    show = config.progress and pindex == 0
    bar = tqdm(total=config.steps, initial=start, disable=not show, unit="step", dynamic_ncols=True)

    def check_guard(st):
        worst = int(
            jax.device_get(st.max_bad_streak if config.strategy != "pmap" else st.max_bad_streak[0])
        )
        if worst >= config.max_bad_steps:
            ckpt.close()
            raise NonFiniteError(
                f"{worst} consecutive steps had a non-finite loss or gradient "
                f"(limit train.max_bad_steps={config.max_bad_steps}); the parameters were "
                f"left at their last finite values and the checkpoints in "
                f"{workdir / 'checkpoints'} are intact "
                f"(latest: step {max(ckpt.steps(), default=0)})"
            )

    def save(st, metrics=None):
        host = engine.fetch_state(st)
        ckpt.save(host, {"step": int(host.step), "data": data_meta}, metrics)

    try:
        with _StopRequest() as stop:
            s = start
            for end in chunk_ends(start, config):
                n = end - s
                if resident is not None:
                    state, metrics = engine.run_on_device(
                        state, resident, num_steps=n, batch_size=config.batch_size, seed=config.seed
                    )
                    pending.append((metrics, n))
                elif n == 1 and config.fuse_steps == 1:
                    raw = engine.place_batch(batcher.raw_batch(s))
                    state, metrics = engine.step(state, raw)
                    pending.append((metrics, 1))
                else:
                    raw = engine.place_batch(batcher.raw_batches(s, n), stacked=True)
                    state, metrics = engine.run(state, raw)
                    pending.append((metrics, n))
                s = end
                bar.update(n)

                at_log = end % config.log_every == 0 or end == config.steps
                at_eval = end == config.steps or (
                    config.eval_every and end % config.eval_every == 0
                )
                at_ckpt = end % config.checkpoint_every == 0 or end == config.steps
                if at_log or at_ckpt or stop.requested:
                    check_guard(state)
                if at_log:
                    now = time.perf_counter()
                    last_train = _mean_metrics(pending, engine.strategy)
                    pending = []
                    rate = (end - s_interval) / max(now - t_interval, 1e-9)
                    host_counts = engine.fetch_state(state)
                    record = {
                        "step": end,
                        "split": "train",
                        **last_train,
                        "skipped_steps": int(host_counts.skipped),
                        "steps_per_s": rate,
                        "examples_per_s": rate * config.batch_size,
                        "wall_s": now - t_run,
                    }
                    log.write(record)
                    if on_log is not None:
                        on_log(end, record)
                    bar.set_postfix(
                        **_loss_postfix(last_train),
                        ex_s=f"{rate * config.batch_size:.0f}",
                        refresh=False,
                    )
                    t_interval, s_interval = now, end
                if at_eval and evaluate is not None:
                    last_eval = {
                        k: float(v)
                        for k, v in evaluate(
                            engine.params(state), _model_state(engine, state)
                        ).items()
                    }
                    log.write({"step": end, "split": "test", **last_eval})
                    _check_best_metric(config, last_eval)
                if at_eval and on_eval is not None:
                    on_eval(end, engine.params(state), _model_state(engine, state))
                if at_ckpt or stop.requested:
                    save(state, last_eval if at_eval else None)
                if stop.requested and end != config.steps:
                    ckpt.close()
                    bar.close()
                    raise KeyboardInterrupt(f"stopped at step {end} by a signal; checkpoint saved")
        if start == config.steps and evaluate is not None:
            last_eval = {
                k: float(v)
                for k, v in evaluate(engine.params(state), _model_state(engine, state)).items()
            }
        ckpt.close()
    finally:
        bar.close()
        log.close()
    host = engine.fetch_state(state)
    return FitResult(
        state=host,
        start_step=start,
        wall_s=time.perf_counter() - t_run,
        last_train=last_train,
        last_eval=last_eval,
    )


def _restore(
    ckpt: Checkpointer, template: TrainState, data_meta: dict, workdir: Path
) -> tuple[TrainState, int]:
    """The state to start from, and its step: the newest readable checkpoint, or
    ``template`` (step 0) when there is none. Raises ``ResumeError`` when the checkpoints are
    another model's (other parameter leaves, shapes or dtypes) or another data setup's; those
    are left untouched."""
    try:
        restored = ckpt.restore_latest(template)
    except ResumeError as err:
        raise ResumeError(
            f"cannot resume the run in {workdir}: {err}; use another work directory"
        ) from None
    if restored is None:
        return template, 0
    state, meta = restored
    if meta.get("data") != data_meta:
        raise ResumeError(
            f"the checkpoint in {workdir} was made with data {meta.get('data')}, "
            f"this run has {data_meta}; use another work directory"
        )
    return state, int(state.step)


def _check_best_metric(config: TrainConfig, metrics: dict) -> None:
    if config.best_metric and config.best_metric not in metrics:
        raise ValueError(
            f"train.best_metric={config.best_metric!r} is not one of the evaluation's metrics "
            f"{sorted(metrics)}"
        )


def _model_state(engine: Engine, state: TrainState):
    if engine.strategy == "pmap":
        return jax.tree.map(lambda x: x[0], state.model_state)
    return state.model_state


def _mean_metrics(pending: list[tuple[dict, int]], strategy: str) -> dict:
    """Average the metrics of an interval (one device→host transfer)."""
    if not pending:
        return {}
    fetched = jax.device_get([m for m, _ in pending])
    sums: dict[str, float] = {}
    count = 0
    for metrics, (_, n) in zip(fetched, pending, strict=True):
        for k, v in metrics.items():
            v = np.asarray(v, np.float64)
            if strategy == "pmap":
                v = v[0]
            sums[k] = sums.get(k, 0.0) + float(v.sum())
        count += n
    return {k: v / count for k, v in sums.items()}
