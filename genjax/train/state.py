"""The train state: one pytree that holds everything a resumed run needs."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from genjax.task import Task


@struct.dataclass
class TrainState:
    """Parameters, optimizer states and counters of a run, as one pytree.

    Attributes:
      step: int32 scalar, the number of steps taken (also the data position: batches are a
        pure function of (seed, step)).
      params: ``dict[player_name, params]``, float32.
      opt_state: ``dict[player_name, optax state]``.
      model_state: non-gradient state (EMA statistics, ...); ``{}`` when the task has none.
      rng: raw ``uint32[2]`` key; step ``s`` uses ``fold_in(rng, s)``, so randomness does not
        depend on how steps were grouped or where a run was resumed.
      skipped: int32, total steps skipped by the non-finite guard.
      bad_streak: int32, current run of consecutive skipped steps.
      max_bad_streak: int32, longest such run so far (the host checks it at sync points).
    """

    step: jax.Array
    params: Any
    opt_state: Any
    model_state: Any
    rng: jax.Array
    skipped: jax.Array
    bad_streak: jax.Array
    max_bad_streak: jax.Array


def init_state(task: Task, rng: jax.Array, example_batch: Any) -> TrainState:
    """Initialise parameters, optimizer states and model state from ``rng``.

    ``rng`` is a raw ``uint32[2]`` key (``jax.random.PRNGKey(seed)``). The parameters are
    cast to float32 (the engine's parameter dtype; compute may run in bfloat16).
    """
    rng = jnp.asarray(rng)
    if rng.dtype != jnp.uint32 or rng.shape != (2,):
        raise ValueError(
            f"init_state: rng must be a raw uint32[2] PRNGKey, got {rng.dtype}{rng.shape}"
        )
    init_rng, state_rng, run_rng = jax.random.split(rng, 3)
    params = task.init(init_rng, example_batch)
    names = {p.name for p in task.players}
    if not isinstance(params, dict) or set(params) != names:
        keys = sorted(params) if isinstance(params, dict) else "-"
        raise ValueError(
            f"Task.init must return a dict keyed by the player names {sorted(names)}, "
            f"got {type(params).__name__} with keys {keys}"
        )
    params = jax.tree.map(_to_f32, params)
    opt_state = {p.name: p.optimizer.init(params[p.name]) for p in task.players}
    model_state = {}
    if task.init_model_state is not None:
        model_state = task.init_model_state(state_rng, example_batch, params)

    # One buffer per counter: the engine donates the state, and XLA refuses to donate a buffer
    # that appears twice among the arguments.
    def zero():
        return jnp.zeros((), jnp.int32)

    return TrainState(
        step=zero(),
        params=params,
        opt_state=opt_state,
        model_state=model_state,
        rng=run_rng,
        skipped=zero(),
        bad_streak=zero(),
        max_bad_streak=zero(),
    )


def _to_f32(x):
    x = jnp.asarray(x)
    return x.astype(jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x
