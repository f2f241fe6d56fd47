"""Train steps: one pure update, compiled four ways, and fused into ``lax.scan`` loops.

The update ``(state, raw_batch) -> (state, metrics)`` is written once. A *strategy* decides
how it runs:

``jit``        one device, ``jax.jit``.
``mesh``       ``jax.jit`` over a ``Mesh`` with a ``data`` axis: the batch is sharded with
               ``NamedSharding(mesh, P("data"))``, the state replicated; XLA inserts the
               gradient all-reduce. The main data-parallel path; spans hosts.
``shard_map``  per-device code with an explicit ``lax.pmean`` over ``data``, through
               ``jax.shard_map`` under ``jax.jit``.
``pmap``       the same per-device code through ``jax.pmap`` (users ask for it by name; since
               JAX 0.8 it is built on jit + shard_map).

In the per-device strategies each device folds its index into the step's key, so random
draws are independent across devices (as in Flax's examples); for a loss that draws nothing
at random all four give the same numbers up to float reassociation.

Each strategy is one ``Strategy`` subclass (``JitStrategy``, ``MeshStrategy``,
``ShardMapStrategy``, ``PmapStrategy``) that holds all it knows: where the state, batches and
a resident dataset are placed, how a step is compiled, how one copy of the state is read
back. ``Engine`` chooses one from the name once (``strategy_class``) and only calls it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from genjax import xla_defaults
from genjax.data.pipeline import check_batch_size, epoch_permutation
from genjax.task import SINGLE, Task
from genjax.train.state import TrainState

AXIS = "data"
# ``STRATEGIES`` (the names, in order) is built below from the ``Strategy`` classes.

Prepare = Callable[[dict, jax.Array], dict]


def _identity_prepare(raw, rng):
    del rng
    return raw


def _cast_floats(tree, dtype):
    def cast(x):
        if isinstance(x, jax.Array | np.ndarray) and jnp.issubdtype(x.dtype, jnp.floating):
            return x.astype(dtype)
        return x

    return jax.tree.map(cast, tree)


def _all_finite(tree) -> jax.Array:
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _reduce_across(tree, axis_name):
    """pmean floating leaves, pmax integer leaves (counters must agree across devices)."""

    def red(x):
        x = jnp.asarray(x)
        if jnp.issubdtype(x.dtype, jnp.inexact):
            return lax.pmean(x, axis_name)
        return lax.pmax(x, axis_name)

    return jax.tree.map(red, tree)


def make_update(
    task: Task,
    prepare: Prepare | None = None,
    *,
    compute_dtype: Any = jnp.float32,
    axis_name: str | None = None,
) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """The pure, uncompiled update ``(state, raw_batch) -> (state, metrics)``.

    Args:
      task: the players and their losses.
      prepare: ``(raw_batch, rng) -> batch``, jittable preprocessing run inside the step (for
        example scaling and dynamic binarisation), so host-fed and device-resident loops see
        the same batches.
      compute_dtype: dtype the parameters and floating batch entries are cast to before the
        loss; parameters, gradients and optimizer states stay float32.
      axis_name: set for per-device code: gradients, losses, metrics and model state are
        averaged over this axis.
    """
    prepare = prepare or _identity_prepare
    compute_dtype = jnp.dtype(compute_dtype)
    players = task.players

    def player_loss(player, own, params, model_state, batch, rng):
        full = _cast_floats({**params, player.name: own}, compute_dtype)
        if player.stateful:
            loss, (metrics, new_ms) = player.loss(full, model_state, batch, rng)
        else:
            loss, metrics = player.loss(full, batch, rng)
            new_ms = model_state
        if jnp.ndim(loss) != 0:
            raise ValueError(
                f"player {player.name!r}: the loss must be a scalar (mean over the batch), "
                f"got shape {jnp.shape(loss)}"
            )
        metrics = {k: jnp.asarray(v, jnp.float32) for k, v in dict(metrics).items()}
        metrics["loss"] = jnp.asarray(loss, jnp.float32)
        return jnp.asarray(loss, jnp.float32), (metrics, new_ms)

    def update_player(player, params, opt_state, model_state, batch, rng):
        own = params[player.name]
        grad_fn = jax.value_and_grad(functools.partial(player_loss, player), has_aux=True)
        (loss, (metrics, new_ms)), grads = grad_fn(own, params, model_state, batch, rng)
        if axis_name is not None:
            grads = lax.pmean(grads, axis_name)
            loss = lax.pmean(loss, axis_name)
            metrics = lax.pmean(metrics, axis_name)
            new_ms = _reduce_across(new_ms, axis_name)
        updates, new_opt = player.optimizer.update(grads, opt_state[player.name], own)
        new_own = optax.apply_updates(own, updates)
        ok = jnp.isfinite(loss) & _all_finite(grads) & _all_finite(new_ms)
        return new_own, new_opt, new_ms, metrics, ok

    def hold_player(player, params, opt_state, model_state, batch, rng):
        # A player not scheduled this step: forward pass only, for its metrics.
        _, (metrics, _) = player_loss(player, params[player.name], params, model_state, batch, rng)
        if axis_name is not None:
            metrics = lax.pmean(metrics, axis_name)
        return params[player.name], opt_state[player.name], model_state, metrics, jnp.array(True)

    def update(state: TrainState, raw_batch: dict) -> tuple[TrainState, dict]:
        step_rng = jax.random.fold_in(state.rng, state.step)
        if axis_name is not None:
            step_rng = jax.random.fold_in(step_rng, lax.axis_index(axis_name))
        keys = jax.random.split(step_rng, len(players) + 1)
        batch = _cast_floats(prepare(raw_batch, keys[0]), compute_dtype)

        params = dict(state.params)
        opt_state = dict(state.opt_state)
        model_state = state.model_state
        step_ok = jnp.array(True)
        metrics: dict[str, jax.Array] = {}
        for i, player in enumerate(players):
            args = (params, opt_state, model_state, batch, keys[i + 1])
            if player.every == 1:
                out = update_player(player, *args)
            else:
                scheduled = (state.step + 1) % player.every == 0
                out = lax.cond(
                    scheduled,
                    functools.partial(update_player, player),
                    functools.partial(hold_player, player),
                    *args,
                )
            new_own, new_opt, model_state, player_metrics, ok = out
            params[player.name] = new_own
            opt_state[player.name] = new_opt
            step_ok = step_ok & ok
            prefix = "" if player.name == SINGLE else f"{player.name}/"
            metrics.update({prefix + k: v for k, v in player_metrics.items()})

        if task.post_update is not None:
            model_state = task.post_update(params, model_state, state.step)

        candidate = (params, opt_state, model_state)
        previous = (state.params, state.opt_state, state.model_state)
        params, opt_state, model_state = jax.tree.map(
            lambda new, old: jnp.where(step_ok, new, old), candidate, previous
        )
        bad = (~step_ok).astype(jnp.int32)
        streak = (state.bad_streak + 1) * bad
        new_state = state.replace(
            step=state.step + 1,
            params=params,
            opt_state=opt_state,
            model_state=model_state,
            skipped=state.skipped + bad,
            bad_streak=streak,
            max_bad_streak=jnp.maximum(state.max_bad_streak, streak),
        )
        metrics["nonfinite"] = bad.astype(jnp.float32)
        return new_state, metrics

    return update


def _scan(update):
    def run(state, raw_batches):
        return lax.scan(update, state, raw_batches)

    return run


def _device_scan(
    update, num_examples, batch_size, seed, num_steps, axis_name=None, batch_sharding=None
):
    """A scan that gathers each step's batch from a dataset held on the device.

    Per-device code takes its own slice of the global batch's indices; under a mesh the
    gathered (replicated) batch is constrained to the batch sharding.
    """

    steps_per_epoch = num_examples // batch_size

    def permutation(step):
        epoch = jnp.asarray(step, jnp.int32) // steps_per_epoch
        return epoch_permutation(seed, epoch, num_examples), epoch

    def run(state, data):
        # The indices are those of ``batch_indices(seed, step, N, B)``, but the epoch's
        # permutation (an O(N log N) sort) is drawn once per epoch and carried, not once per
        # step: on a 50,000-point set the per-step sort made each step ~4x slower.
        def body(carry, _):
            s, perm, perm_epoch = carry
            step = jnp.asarray(s.step, jnp.int32)
            epoch = step // steps_per_epoch
            perm, perm_epoch = lax.cond(
                epoch == perm_epoch,
                lambda: (perm, perm_epoch),
                lambda: permutation(step),
            )
            start = (step % steps_per_epoch) * batch_size
            idx = lax.dynamic_slice(perm, (start,), (batch_size,))
            if axis_name is not None:
                n = lax.axis_size(axis_name)
                local = batch_size // n
                idx = lax.dynamic_slice_in_dim(idx, lax.axis_index(axis_name) * local, local)
            raw = jax.tree.map(lambda a: jnp.take(a, idx, axis=0), data)
            if batch_sharding is not None:
                raw = lax.with_sharding_constraint(raw, batch_sharding)
            s, metrics = update(s, raw)
            return (s, perm, perm_epoch), metrics

        check_batch_size(num_examples, batch_size)
        perm, perm_epoch = permutation(state.step)
        (state, _, _), metrics = lax.scan(body, (state, perm, perm_epoch), None, length=num_steps)
        return state, metrics

    return run


# ------------------------------------------------------------------------------ strategies
class Strategy:
    """What one data-parallel strategy knows: where the state, the batches and a resident
    dataset live, how a step function is compiled, and how one copy of the state is read.

    One subclass per entry of ``STRATEGIES``. ``Engine`` picks one from the strategy's name
    once (``strategy_class``) and from then on calls only these operations.

    Attributes:
      name: the strategy's name in ``STRATEGIES``.
      axis_name: the mesh axis per-device code averages over (``make_update``'s
        ``axis_name``), ``None`` when XLA partitions one global program.
      mesh: the device mesh, ``None`` for one device.
      compiler_options: XLA options ``compile`` passes to ``jax.jit``
        (``compiler_options=``); ``pmap`` takes none, so its programs get only the
        process's ``XLA_FLAGS``.
    """

    name: str
    axis_name: str | None = None
    mesh: Mesh | None = None
    compiler_options: dict[str, str] | None = None

    @property
    def num_devices(self) -> int:
        """Devices of the run (over all processes)."""
        raise NotImplementedError

    @property
    def num_local_devices(self) -> int:
        """Devices of this process."""
        raise NotImplementedError

    def place_state(self, state: TrainState) -> TrainState:
        """Put an (unaliased) state into this strategy's device layout."""
        raise NotImplementedError

    def place_batch(self, raw: dict, *, stacked: bool) -> dict:
        """Put this process's slice of a global batch (or stack of batches) on the devices."""
        raise NotImplementedError

    def place_resident(self, data: dict) -> dict:
        """Put a whole dataset where ``run_on_device`` reads it."""
        raise NotImplementedError

    def compile(self, body: Callable, *, data_arg: str, donate: tuple[int, ...]) -> Callable:
        """Compile ``body(state, x)``; ``data_arg`` says what x is: ``"batch"``, ``"stack"``
        (stack of batches) or ``"resident"`` (a whole dataset)."""
        raise NotImplementedError

    def resident_batch_sharding(self) -> NamedSharding | None:
        """The sharding a batch gathered from a resident dataset is constrained to (inside
        the compiled scan), ``None`` for none."""
        return None

    def one_replica(self, tree):
        """One copy of ``tree`` (a state, or a part of one, or its metrics) in this layout;
        works on device arrays and on host copies of them alike."""
        return tree


class JitStrategy(Strategy):
    """``jit``: one device, ``jax.jit``. A mesh passed in is ignored."""

    name = "jit"

    def __init__(self, mesh: Mesh | None = None):
        del mesh

    @property
    def num_devices(self) -> int:
        return 1

    @property
    def num_local_devices(self) -> int:
        return 1

    def place_state(self, state):
        return jax.device_put(state, jax.devices()[0])

    def place_batch(self, raw, *, stacked):
        del stacked
        return jax.device_put(raw, jax.devices()[0])

    def place_resident(self, data):
        return jax.device_put(data, jax.devices()[0])

    def compile(self, body, *, data_arg, donate):
        del data_arg
        return jax.jit(body, donate_argnums=donate, compiler_options=self.compiler_options)


class _OverMesh(Strategy):
    """A strategy over a ``Mesh`` with a ``data`` axis (default: all devices on it).

    The layout is that of global arrays: the state and a resident dataset replicated over
    the mesh, a batch sharded along ``data`` (``mesh`` and ``shard_map``; ``pmap`` overrides
    the placements).
    """

    def __init__(self, mesh: Mesh | None = None):
        self.mesh = mesh or Mesh(np.asarray(jax.devices()), (AXIS,))
        if AXIS not in self.mesh.axis_names:
            raise ValueError(f"the mesh needs an axis named {AXIS!r}, got {self.mesh.axis_names}")

    @property
    def num_devices(self) -> int:
        return self.mesh.devices.size

    @property
    def num_local_devices(self) -> int:
        return sum(d.process_index == jax.process_index() for d in self.mesh.devices.flat)

    def _replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    def _batch_sharding(self, stacked: bool) -> NamedSharding:
        return NamedSharding(self.mesh, P(None, AXIS) if stacked else P(AXIS))

    def _check_local_batch(self, raw: dict, batch_axis: int) -> int:
        """The number of local devices, once every entry of ``raw`` splits evenly over them
        along ``batch_axis`` (else a ``ValueError`` naming the entry)."""
        n_local = self.num_local_devices
        for k, v in raw.items():
            if v.shape[batch_axis] % n_local:
                raise ValueError(
                    f"batch entry {k!r}: per-process batch size {v.shape[batch_axis]} is not "
                    f"divisible by the {n_local} local devices of the {self.name} strategy"
                )
        return n_local

    def place_state(self, state):
        return jax.device_put(state, self._replicated())

    def place_batch(self, raw, *, stacked):
        self._check_local_batch(raw, 1 if stacked else 0)
        sharding = self._batch_sharding(stacked)
        return {
            k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in raw.items()
        }

    def place_resident(self, data):
        return jax.device_put(data, self._replicated())


class MeshStrategy(_OverMesh):
    """``mesh``: ``jax.jit`` with the batch sharded over ``data`` and the state replicated;
    XLA inserts the gradient all-reduce."""

    name = "mesh"

    def compile(self, body, *, data_arg, donate):
        if data_arg == "resident":
            data_sharding = self._replicated()
        else:
            data_sharding = self._batch_sharding(data_arg == "stack")
        return jax.jit(
            body,
            in_shardings=(self._replicated(), data_sharding),
            out_shardings=(self._replicated(), self._replicated()),
            donate_argnums=donate,
            compiler_options=self.compiler_options,
        )

    def resident_batch_sharding(self):
        return self._batch_sharding(False)


class ShardMapStrategy(_OverMesh):
    """``shard_map``: per-device code (explicit ``lax.pmean`` over ``data``) through
    ``jax.shard_map`` under ``jax.jit``."""

    name = "shard_map"
    axis_name = AXIS

    def compile(self, body, *, data_arg, donate):
        spec = {"batch": P(AXIS), "stack": P(None, AXIS), "resident": P()}[data_arg]
        mapped = jax.shard_map(
            body, mesh=self.mesh, in_specs=(P(), spec), out_specs=(P(), P()), check_vma=False
        )
        return jax.jit(mapped, donate_argnums=donate, compiler_options=self.compiler_options)


class PmapStrategy(_OverMesh):
    """``pmap``: the per-device code through ``jax.pmap``. The state holds one copy per
    device along a leading axis; a batch is split into per-device slices on the host; a
    resident dataset sits on the default device and is broadcast to every device."""

    name = "pmap"
    axis_name = AXIS

    def place_state(self, state):
        # One copy per device along a leading axis, laid out the way pmap maps it.
        n = self.num_devices
        stacked = jax.tree.map(lambda x: np.broadcast_to(x, (n, *np.shape(x))), state)
        return jax.device_put(stacked, NamedSharding(self.mesh, P(AXIS)))

    def place_batch(self, raw, *, stacked):
        batch_axis = 1 if stacked else 0
        n_local = self._check_local_batch(raw, batch_axis)

        def split(v):
            b = v.shape[batch_axis]
            if stacked:
                v = v.reshape(v.shape[0], n_local, b // n_local, *v.shape[2:])
                return np.moveaxis(v, 1, 0)
            return v.reshape(n_local, b // n_local, *v.shape[1:])

        return {k: split(np.asarray(v)) for k, v in raw.items()}

    def place_resident(self, data):
        return jax.device_put(data, jax.devices()[0])

    def compile(self, body, *, data_arg, donate):
        return jax.pmap(
            body,
            axis_name=AXIS,
            in_axes=(0, None if data_arg == "resident" else 0),
            devices=list(self.mesh.devices.flat),
            donate_argnums=donate,
        )

    def one_replica(self, tree):
        return jax.tree.map(lambda x: x[0], tree)


_BY_NAME: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (JitStrategy, MeshStrategy, ShardMapStrategy, PmapStrategy)
}
STRATEGIES = tuple(_BY_NAME)


def strategy_class(name: str) -> type[Strategy]:
    """The ``Strategy`` subclass called ``name``; a ``ValueError`` naming ``STRATEGIES`` for
    an unknown name."""
    if name not in _BY_NAME:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")
    return _BY_NAME[name]


# ---------------------------------------------------------------------------------- engine
class Engine:
    """Compiled train steps for one task under one strategy.

    Args:
      task: the model's players.
      prepare: jittable ``(raw_batch, rng) -> batch`` run inside the step.
      strategy: one of ``STRATEGIES``.
      compute_dtype: ``"float32"`` or ``"bfloat16"`` (parameters stay float32).
      mesh: for ``mesh``/``shard_map``/``pmap``; default all devices on one ``data`` axis.
      donate: donate the state's buffers to each call (the caller must not reuse the input
        state afterwards).
      compiler_options: XLA compiler options for the compiled steps (``jax.jit``'s
        ``compiler_options``). Default: on CPU devices,
        :func:`genjax.xla_defaults.compiler_options` (convolutions on XLA's Eigen kernels
        rather than YNNPACK, about 1.5x faster for convolutional models on jaxlib 0.10, and
        the same program as XLA's default for models without convolutions); elsewhere none.
        ``{}`` for none.

    ``step``, ``run`` (scan over a stack of batches) and ``run_on_device`` (scan gathering
    batches by index from a dataset on the device) all take and return the state in this
    strategy's layout: replicated over the mesh, or stacked along a leading device axis for
    ``pmap``. ``place_state`` / ``fetch_state`` convert to and from that layout; everything
    that depends on the strategy is delegated to its ``Strategy`` object.
    """

    def __init__(
        self,
        task: Task,
        prepare: Prepare | None = None,
        *,
        strategy: str = "jit",
        compute_dtype: Any = "float32",
        mesh: Mesh | None = None,
        donate: bool = True,
        compiler_options: dict[str, str] | None = None,
    ):
        layout = strategy_class(strategy)
        dtype = jnp.dtype(compute_dtype)
        if dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)):
            raise ValueError(f"compute_dtype must be float32, bfloat16 or float16, got {dtype}")
        self.task = task
        self.strategy = strategy
        self.compute_dtype = dtype
        self.donate = donate
        self._prepare = prepare
        self._strategy: Strategy = layout(mesh)
        self.mesh = self._strategy.mesh
        if compiler_options is None:
            devices = jax.devices()[:1] if self.mesh is None else self.mesh.devices.flat
            on_cpu = all(d.platform == "cpu" for d in devices)
            compiler_options = xla_defaults.compiler_options() if on_cpu else {}
        self.compiler_options = dict(compiler_options)
        self._strategy.compiler_options = self.compiler_options or None
        self._update = make_update(
            task, prepare, compute_dtype=dtype, axis_name=self._strategy.axis_name
        )
        self._cache: dict[Any, Callable] = {}

    # ----------------------------------------------------------------- layout
    @property
    def num_devices(self) -> int:
        return self._strategy.num_devices

    @property
    def num_local_devices(self) -> int:
        return self._strategy.num_local_devices

    def place_state(self, state: TrainState) -> TrainState:
        """Put a (host or single-device) state into this strategy's device layout.

        Leaves that share one device buffer (a model state that holds the very arrays of the
        parameters, say) get a buffer each: a donated call cannot take one buffer twice.
        """
        return self._strategy.place_state(_unalias(state))

    def one_replica(self, tree):
        """One copy of a placed state, part of one, or metrics (``tree[0]`` under ``pmap``,
        ``tree`` itself otherwise); on device arrays or their host copies."""
        return self._strategy.one_replica(tree)

    def fetch_state(self, state: TrainState) -> TrainState:
        """One copy of the state, as host numpy arrays (for checkpoints and evaluation)."""
        return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), self.one_replica(state))

    def params(self, state: TrainState):
        """The parameters as one copy on the default device (for evaluation)."""
        return self.one_replica(state.params)

    def model_state(self, state: TrainState):
        """The model state as one copy (for evaluation)."""
        return self.one_replica(state.model_state)

    def place_batch(self, raw: dict, *, stacked: bool = False) -> dict:
        """Put this process's slice of a global batch (host numpy) on the devices.

        ``raw`` holds ``[B_local, ...]`` arrays (``[N, B_local, ...]`` when ``stacked``).
        """
        return self._strategy.place_batch(raw, stacked=stacked)

    # ------------------------------------------------------------- compiled
    def _compile(self, key, body: Callable, *, data_arg: str):
        """Compile ``body(state, x)`` for this strategy, once per ``key``; ``data_arg`` says
        what x is: ``"batch"``, ``"stack"`` (stack of batches) or ``"resident"`` (a whole
        dataset)."""
        if key in self._cache:
            return self._cache[key]
        donate = (0,) if self.donate else ()
        fn = self._strategy.compile(body, data_arg=data_arg, donate=donate)
        self._cache[key] = fn
        return fn

    def step(self, state: TrainState, raw_batch: dict) -> tuple[TrainState, dict]:
        """One update on a placed batch (see ``place_batch``)."""
        return self._compile("step", self._update, data_arg="batch")(state, raw_batch)

    def run(self, state: TrainState, raw_batches: dict) -> tuple[TrainState, dict]:
        """``N`` updates inside one ``lax.scan`` over a placed stack of ``N`` batches.

        Returns the final state and the metrics stacked along a leading ``[N]`` axis.
        """
        return self._compile("run", _scan(self._update), data_arg="stack")(state, raw_batches)

    def run_on_device(
        self,
        state: TrainState,
        data: dict,
        *,
        num_steps: int,
        batch_size: int,
        seed: int,
    ) -> tuple[TrainState, dict]:
        """``num_steps`` updates in one ``lax.scan``, batches gathered on the device.

        ``data`` is a dataset placed whole on the device(s) (``place_resident``); batch ``s``
        is ``data[batch_indices(seed, s, N, batch_size)]``, the same rows the host batcher
        would deliver, so the two loops see the same data.
        """
        num_examples = int(jax.tree.leaves(data)[0].shape[0])
        if batch_size % self.num_devices:
            raise ValueError(
                f"batch_size {batch_size} is not divisible by the {self.num_devices} devices"
            )
        key = ("device", num_examples, batch_size, seed, num_steps)
        body = _device_scan(
            self._update,
            num_examples,
            batch_size,
            seed,
            num_steps,
            axis_name=self._strategy.axis_name,
            batch_sharding=self._strategy.resident_batch_sharding(),
        )
        return self._compile(key, body, data_arg="resident")(state, data)

    def place_resident(self, data: dict) -> dict:
        """Put a whole (small) dataset on every device, for ``run_on_device``."""
        return self._strategy.place_resident(data)


def _unalias(tree):
    """``tree`` with every repeated ``jax.Array`` leaf (the same object twice) copied."""
    seen: set[int] = set()

    def fresh(x):
        if not isinstance(x, jax.Array):
            return x
        if id(x) in seen:
            return jnp.array(x, copy=True)
        seen.add(id(x))
        return x

    return jax.tree.map(fresh, tree)
