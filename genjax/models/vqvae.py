"""VQ-VAE: a discrete code map per image, codebook health, and what the engine trains.

The model (van den Oord, Vinyals & Kavukcuoglu, 2017, "Neural Discrete Representation
Learning", NeurIPS; "vdO" below)::

    z_e = E(x)                         [B, h, w, D] (conv) or [B, M, D] (MLP): one code map
    k   = argmin_j ||z_e - e_j||^2     per vector, over the K codes e_j (the codebook [K, D])
    z_q = e_k                          gradient copied straight through: d z_q / d z_e := I
    x^  = G(z_q)
    loss = ||x - x^||^2 / (P * s2) + ||sg[z_e] - z_q||^2 / (L D) + beta ||z_e - sg[z_q]||^2 / (L D)

with ``P`` the number of input values, ``L`` the number of vectors in a code map, ``s2`` the
per-value variance of the data estimated once from the first batch (as the authors' Sonnet
example normalises by the data variance), and the squared norms summed over the example
(:func:`genjax.losses.vq_codebook_loss`, :func:`~genjax.losses.vq_commitment_loss`), so every
term is a per-value mean. The reported ``recon_mse`` is the plain per-value mean squared error.

Two codebook-update rules (``rule``):

* ``"loss"`` -- the codebook is a parameter trained by the codebook term (vdO eq. 3).
* ``"ema"`` -- exponential moving averages (vdO appendix A.1; Razavi, van den Oord & Vinyals,
  2019, "Generating Diverse High-Fidelity Images with VQ-VAE-2"): with ``n_k`` the fraction of
  the batch's vectors assigned to code ``k`` and ``m_k`` their sum divided by the batch's
  number of vectors,

      N_k <- gamma N_k + (1 - gamma) n_k,      S_k <- gamma S_k + (1 - gamma) m_k,
      e_k  = S_k / N~_k,   N~_k = (N_k + eps) / (sum_j N_j + K eps) * sum_j N_j  (Laplace),

  and the codebook term is dropped from the loss. ``N`` and ``S`` are non-gradient model state
  (:class:`CodebookState`); the codebook is *derived* from them (:func:`ema_codebook`), never
  stored. Dividing by the batch's number of vectors leaves ``e_k`` unchanged (a common factor
  of ``N`` and ``S``) and makes the statistics means, not sums: see "Data parallelism".

Codebook health, each switchable and each reported:

* initialisation (``codebook_init``): ``"random"`` (uniform in ``[-1/K, 1/K]``, the usual
  choice of the reference implementations), ``"sample"`` (``K`` encoder outputs of the first
  batch drawn without replacement) or ``"kmeans++"`` (Arthur & Vassilvitskii, 2007, seeding on
  the encoder outputs of the first batch). It happens once, when the engine initialises
  (:meth:`VQVAELoss.init` for the ``loss`` rule's parameter,
  :meth:`VQVAELoss.init_model_state` for the EMA statistics; both receive the first batch).
* dead-code restart (``restart_after = N > 0``, EMA rule): a code unused for ``N`` consecutive
  updates is re-initialised to a recent encoder output (Dhariwal et al., 2020, "Jukebox", and
  Williams et al., 2020, "Hierarchical Quantized Autoencoders", restart codes this way). The
  state keeps ``last_used`` (the last update at which each code was chosen) and a reservoir of
  encoder outputs of the previous update; a restarted code gets the average mass ``sum N / K``.
* metrics: per-batch perplexity ``exp H(p)`` and the fraction of codes used (train), and the
  same over a whole split (:func:`code_usage`, :func:`genjax.losses.codebook_perplexity`).

Data parallelism: in the ``shard_map`` / ``pmap`` strategies every device runs the loss on
its slice of the batch, and the engine then averages floating leaves of the returned model
state (``pmean``) and takes the maximum of integer leaves (``pmax``). The state is designed so
that this reduction gives exactly the single-device result on the global batch:

* ``cluster_size`` and ``embed_sum`` are linear in the per-batch *means* ``n_k``, ``m_k``; the
  mean over equal-sized shards of the shard means is the global-batch mean.
* ``last_used`` is a step number: the maximum over devices is the last step at which *any*
  device used the code (a "steps since used" counter would be wrong under ``pmax``).
* which codes are restarted, and from which reservoir slot, depends only on the incoming
  (already reduced, hence identical) state and on a key carried in the state (``key``,
  ``uint32``, split identically on every device); the loss's own ``rng`` differs between
  devices and is used only where that is wanted (the reservoir's fresh random draws).
* the reservoir is stored as ``int32``: each entry packs a random 15-bit priority (high bits)
  with the ``bfloat16`` bit pattern of one coordinate (low 16 bits), all coordinates of a slot
  sharing their priority. ``pmax`` therefore keeps, for every slot, the whole vector of the
  device that drew the highest priority (a random one): a real encoder output, never an
  average of several. Ties between devices (probability about ``n^2 / 2^16`` per slot for
  ``n`` devices) mix coordinates of the tied vectors, which only perturbs a restart point.
  Restart points are stored to ``bfloat16`` precision.
* ``step`` and ``restarts`` are identical on every device, so ``pmax`` keeps them.

Under ``jit`` and ``mesh`` (the main path) the loss sees the global batch and nothing is
reduced.

The family's contract (:mod:`genjax.models.base`): :class:`VQVAEConfig` holds every
hyper-parameter of the model, its loss and its prior; ``VQVAEConfig.objective(info)`` is a
:class:`VQVAEObjective`, whose :meth:`~VQVAEObjective.task` trains the VQ-VAE alone
(``prior_steps=0``) and whose :meth:`~VQVAEObjective.two_phase_task` /
:meth:`~VQVAEObjective.run_task` train the VQ-VAE and then the
:class:`~genjax.models.prior.CausalTransformer` prior on its frozen codes; ``sample``,
``encode``, ``decode`` and ``reconstruct`` take the engine's parameters. The module-level
functions take ``(model, params, state, ...)``, the codebook state third
(:func:`encode_indices`, :func:`decode_indices`, :func:`reconstruct`, :func:`codebook`), and
:class:`VQVAELoss` is the loss and initialisation of one :class:`VQVAE`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax import lax

from genjax import losses as L
from genjax._checks import check_choice, check_float, check_int, check_shape, is_int
from genjax.models import prior as P
from genjax.models.base import DataInfo, ModelConfig, Objective, OptimizerFactory
from genjax.nn import MLP, Conv, ConvDecoder, ConvEncoder, check_image_shape
from genjax.nn import fsq as F
from genjax.nn import rvq as R
from genjax.nn.residual import ResidualStack
from genjax.task import SINGLE, Player, Task

__all__ = [
    "ARCHS",
    "INITS",
    "QUANTIZERS",
    "RULES",
    "VQVAE",
    "CodebookState",
    "Quantized",
    "VQVAEConfig",
    "VQVAELoss",
    "VQVAEObjective",
    "batch_statistics",
    "code_statistics",
    "code_usage",
    "codebook",
    "decode_indices",
    "ema_codebook",
    "ema_update",
    "encode_indices",
    "fill_reservoir",
    "init_codebook",
    "kmeans_plus_plus",
    "pack_vectors",
    "reconstruct",
    "restart_dead_codes",
    "unpack_vectors",
    "update_codebook_state",
    "update_residual_state",
]

#: Codebook-update rules: the codebook loss, or exponential moving averages.
RULES = ("loss", "ema")
#: Codebook initialisations.
INITS = ("random", "sample", "kmeans++")
#: Encoder/decoder pairs.
ARCHS = ("conv", "mlp")
#: Quantizers: nearest code (optionally cosine, projected), finite scalar, residual.
QUANTIZERS = ("vq", "fsq", "rvq")

_PRIORITY_BITS = 15  # packed priorities stay below 2^15, so the packed int32 is >= 0


# --------------------------------------------------------------------------------------------
# Validation.
# --------------------------------------------------------------------------------------------


def _check_int(owner: str, name: str, value: Any, minimum: int) -> int:
    return check_int(f"{owner}: {name}", value, minimum)


def _check_choice(owner: str, name: str, value: Any, choices: Sequence[str]) -> str:
    return check_choice(f"{owner}: {name}", value, choices)


def _check_float(owner: str, name: str, value: Any, low: float, high: float, *, high_open: bool):
    return check_float(f"{owner}: {name}", value, low, high, high_open=high_open)


def _check_num_codes(owner: str, num_codes: Any) -> int:
    if isinstance(num_codes, bool) or not isinstance(num_codes, int | np.integer):
        raise ValueError(f"{owner}: num_codes must be an int >= 2, got {num_codes!r}")
    if num_codes < 2:
        raise ValueError(
            f"{owner}: num_codes (K) must be >= 2 (one code carries no information), "
            f"got {num_codes}"
        )
    return int(num_codes)


def _check_points(owner: str, points: Any) -> jax.Array:
    points = jnp.asarray(points)
    if points.ndim != 2 or points.shape[0] < 1:
        raise ValueError(f"{owner}: points must be [N, D] with N >= 1, got shape {points.shape}")
    return points


# --------------------------------------------------------------------------------------------
# Codebook initialisation.
# --------------------------------------------------------------------------------------------


def kmeans_plus_plus(rng: jax.Array, points: Any, num_codes: int) -> jax.Array:
    """k-means++ seeding (Arthur & Vassilvitskii, 2007): ``K`` of the ``N`` points.

    The first centre is a uniform draw; each next one is drawn with probability proportional
    to the squared distance to the nearest centre chosen so far (``D^2`` weighting). If every
    point coincides with a centre (e.g. fewer distinct points than ``K``) the draw is uniform.
    ``O(K N D)``, one ``lax.fori_loop``; jittable.

    Args:
      rng: a ``jax.random`` key.
      points: ``[N, D]`` float, ``N >= 1`` (``N < K`` repeats points).
      num_codes: ``K >= 2``.

    Returns:
      ``[K, D]`` float32 centres, rows of ``points``.
    """
    owner = "kmeans_plus_plus"
    K = _check_num_codes(owner, num_codes)
    points = _check_points(owner, points).astype(jnp.float32)
    n = points.shape[0]
    first_key, loop_key = jax.random.split(rng)
    first = jax.random.randint(first_key, (), 0, n)
    centres = jnp.zeros((K, points.shape[1]), jnp.float32).at[0].set(points[first])
    nearest = jnp.sum(jnp.square(points - points[first]), axis=-1)

    def body(k, carry):
        centres, nearest = carry
        total = jnp.sum(nearest)
        weights = jnp.where(total > 0, nearest, jnp.ones_like(nearest))
        logits = jnp.log(jnp.maximum(weights, 0.0))
        pick = jax.random.categorical(jax.random.fold_in(loop_key, k), logits)
        centre = points[pick]
        nearest = jnp.minimum(nearest, jnp.sum(jnp.square(points - centre), axis=-1))
        return centres.at[k].set(centre), nearest

    centres, _ = lax.fori_loop(1, K, body, (centres, nearest))
    return centres


def init_codebook(rng: jax.Array, points: Any, num_codes: int, method: str) -> jax.Array:
    """An initial codebook ``[K, D]`` (float32) by ``method`` in :data:`INITS`.

    ``"random"``: uniform in ``[-1/K, 1/K]`` (``points`` only gives ``D``); ``"sample"``: ``K``
    rows of ``points`` without replacement (with replacement if ``N < K``); ``"kmeans++"``:
    :func:`kmeans_plus_plus`.
    """
    owner = "init_codebook"
    K = _check_num_codes(owner, num_codes)
    _check_choice(owner, "method", method, INITS)
    points = _check_points(owner, points).astype(jnp.float32)
    n, d = points.shape
    if method == "random":
        return _uniform_codes(rng, (K, d))
    if method == "sample":
        rows = jax.random.choice(rng, n, (K,), replace=n < K)
        return points[rows]
    return kmeans_plus_plus(rng, points, K)


# --------------------------------------------------------------------------------------------
# The EMA rule (vdO appendix A.1).
# --------------------------------------------------------------------------------------------


def batch_statistics(z_e: Any, indices: Any, num_codes: int) -> tuple[jax.Array, jax.Array]:
    """Per-batch assignment statistics, as means over the batch's vectors.

    Args:
      z_e: ``[..., D]`` float encoder outputs.
      indices: int ``z_e.shape[:-1]``, the chosen codes.
      num_codes: ``K``.

    Returns:
      ``(n [K], m [K, D])`` float32: ``n_k = #{i: k_i = k} / N`` and
      ``m_k = sum_{i: k_i = k} z_i / N`` with ``N`` the number of vectors.
    """
    z_e = jnp.asarray(z_e)
    flat = z_e.reshape(-1, z_e.shape[-1]).astype(jnp.float32)
    idx = jnp.asarray(indices).reshape(-1)
    if idx.shape[0] != flat.shape[0]:
        raise ValueError(
            f"batch_statistics: indices must have shape z_e.shape[:-1] = {z_e.shape[:-1]}, "
            f"got {jnp.shape(indices)}"
        )
    n = flat.shape[0]
    counts = jax.ops.segment_sum(jnp.ones((n,), jnp.float32), idx, num_segments=num_codes)
    sums = jax.ops.segment_sum(flat, idx, num_segments=num_codes)
    return counts / n, sums / n


def ema_update(
    cluster_size: Any, embed_sum: Any, fractions: Any, sums: Any, decay: float
) -> tuple[jax.Array, jax.Array]:
    """``N <- decay N + (1 - decay) n``, ``S <- decay S + (1 - decay) m`` (vdO eqs. 6-8)."""
    d = jnp.float32(decay)
    return d * cluster_size + (1 - d) * fractions, d * embed_sum + (1 - d) * sums


def ema_codebook(cluster_size: Any, embed_sum: Any, epsilon: float) -> jax.Array:
    """The codebook ``e_k = S_k / N~_k`` with Laplace-smoothed sizes (see the module docstring).

    Args:
      cluster_size: ``[K]`` float, the EMA of assignment fractions ``N``.
      embed_sum: ``[K, D]`` float, the EMA of assignment sums ``S``.
      epsilon: ``>= 0``, the Laplace pseudo-count (in units of ``N``, whose entries sum to
        about 1).
    """
    cluster_size = jnp.asarray(cluster_size, jnp.float32)
    total = jnp.sum(cluster_size)
    K = cluster_size.shape[0]
    smoothed = (cluster_size + epsilon) / (total + K * epsilon) * total
    return jnp.asarray(embed_sum, jnp.float32) / smoothed[:, None]


# --------------------------------------------------------------------------------------------
# The reservoir of recent encoder outputs (packed so that pmax selects whole vectors).
# --------------------------------------------------------------------------------------------


def pack_vectors(vectors: Any, priority: Any) -> jax.Array:
    """Pack ``[R, D]`` float vectors with ``[R]`` priorities in ``[0, 2^15)`` into int32.

    Entry ``(r, d)`` is ``priority[r] << 16 | bf16_bits(vectors[r, d])`` (``bfloat16`` by
    truncation of the float32 bit pattern). Integer order is priority-major, so an
    element-wise maximum over several packed arrays returns, slot by slot, the whole vector
    with the highest priority.
    """
    bits = lax.bitcast_convert_type(jnp.asarray(vectors, jnp.float32), jnp.uint32) >> 16
    prio = jnp.asarray(priority).astype(jnp.uint32)[:, None] << 16
    return lax.bitcast_convert_type(prio | bits, jnp.int32)


def unpack_vectors(packed: Any) -> jax.Array:
    """The float32 vectors of :func:`pack_vectors` (bfloat16 precision)."""
    bits = lax.bitcast_convert_type(jnp.asarray(packed, jnp.int32), jnp.uint32) & 0xFFFF
    return lax.bitcast_convert_type(bits << 16, jnp.float32)


def fill_reservoir(rng: jax.Array, z_e: Any, size: int) -> jax.Array:
    """``size`` encoder outputs of this batch (distinct if the batch has enough), packed
    with fresh random priorities: ``int32 [size, D]``."""
    z_e = jnp.asarray(z_e)
    flat = z_e.reshape(-1, z_e.shape[-1])
    n = flat.shape[0]
    pick_key, prio_key = jax.random.split(rng)
    rows = jax.random.choice(pick_key, n, (size,), replace=n < size)
    priority = jax.random.randint(prio_key, (size,), 0, 2**_PRIORITY_BITS)
    return pack_vectors(flat[rows], priority)


# --------------------------------------------------------------------------------------------
# The codebook state and its update.
# --------------------------------------------------------------------------------------------


@struct.dataclass
class CodebookState:
    """Non-gradient state of the quantiser (the engine's ``model_state``).

    Attributes:
      cluster_size: ``[K]`` float32 EMA of assignment fractions (``None`` for the loss rule).
      embed_sum: ``[K, D]`` float32 EMA of assignment sums (``None`` for the loss rule).
      last_used: ``[K]`` int32, the last update at which each code was chosen.
      reservoir: ``[R, D]`` int32 packed recent encoder outputs (:func:`pack_vectors`), or
        ``None`` without dead-code restart.
      step: int32 scalar, number of updates so far.
      restarts: int32 scalar, number of codes restarted so far.
      key: ``uint32[2]`` key shared by all devices, for the restart choices.
      data_variance: float32 scalar, the per-value variance of the first batch (normalises
        the reconstruction term).
    """

    cluster_size: jax.Array | None
    embed_sum: jax.Array | None
    last_used: jax.Array
    reservoir: jax.Array | None
    step: jax.Array
    restarts: jax.Array
    key: jax.Array
    data_variance: jax.Array


def restart_dead_codes(state: CodebookState, restart_after: int) -> tuple[CodebookState, jax.Array]:
    """Re-initialise the codes unused for ``restart_after`` updates from the reservoir.

    Code ``k`` is dead when ``state.step - state.last_used[k] >= restart_after``. The dead
    codes, in index order, take the reservoir slots of a random permutation (drawn from
    ``state.key``), so up to ``R`` of them get distinct vectors; each gets ``N_k = sum N / K``,
    ``S_k = v N_k`` (so ``e_k = v``) and ``last_used = step``. A function of the state only.

    Returns:
      ``(state, dead)`` with ``dead`` the ``[K]`` bool mask of restarted codes.
    """
    if state.cluster_size is None or state.reservoir is None:
        raise ValueError(
            "restart_dead_codes needs the EMA statistics and a reservoir (rule='ema', "
            "reservoir_size > 0)"
        )
    K = state.last_used.shape[0]
    R = state.reservoir.shape[0]
    dead = (state.step - state.last_used) >= restart_after
    perm_key, next_key = jax.random.split(state.key)
    perm = jax.random.permutation(perm_key, R)
    rank = jnp.cumsum(dead.astype(jnp.int32)) - 1
    candidates = unpack_vectors(state.reservoir)[perm[jnp.mod(rank, R)]]
    mass = jnp.sum(state.cluster_size) / K
    cluster_size = jnp.where(dead, mass, state.cluster_size)
    embed_sum = jnp.where(dead[:, None], candidates * mass, state.embed_sum)
    return (
        state.replace(
            cluster_size=cluster_size,
            embed_sum=embed_sum,
            last_used=jnp.where(dead, state.step, state.last_used),
            restarts=state.restarts + jnp.sum(dead.astype(jnp.int32)),
            key=next_key,
        ),
        dead,
    )


def update_codebook_state(
    state: CodebookState,
    z_e: Any,
    indices: Any,
    rng: jax.Array,
    *,
    decay: float,
    restart_after: int = 0,
) -> tuple[CodebookState, dict[str, jax.Array]]:
    """One update of the state from a batch's encoder outputs and chosen codes.

    In order: the EMA statistics (EMA rule), ``last_used`` for the codes of this batch, the
    dead-code restart decided on the *incoming* state (``restart_after > 0``), the reservoir
    refilled from this batch (with ``rng``), and ``step + 1``.

    Returns:
      ``(new_state, stats)`` with ``stats["restarted"]`` the number of codes restarted and
      ``stats["dead"]`` the fraction of codes unused for ``restart_after`` updates (for the
      loss rule, or without restart, ``dead`` uses ``max(restart_after, 100)`` updates).
    """
    z_e = lax.stop_gradient(jnp.asarray(z_e))
    K = state.last_used.shape[0]
    window = restart_after if restart_after > 0 else 100
    dead_in = (state.step - state.last_used) >= window
    new = state
    if state.cluster_size is not None:
        fractions, sums = batch_statistics(z_e, indices, K)
        cluster_size, embed_sum = ema_update(
            state.cluster_size, state.embed_sum, fractions, sums, decay
        )
        new = new.replace(cluster_size=cluster_size, embed_sum=embed_sum)
    used = jnp.zeros((K,), bool).at[jnp.asarray(indices).reshape(-1)].set(True)
    new = new.replace(last_used=jnp.where(used, state.step, state.last_used))
    restarted = jnp.zeros((), jnp.int32)
    if restart_after > 0:
        # Decided on the incoming (device-identical) state, applied over this batch's update.
        restarted_state, dead = restart_dead_codes(state, restart_after)
        new = new.replace(
            cluster_size=jnp.where(dead, restarted_state.cluster_size, new.cluster_size),
            embed_sum=jnp.where(dead[:, None], restarted_state.embed_sum, new.embed_sum),
            last_used=jnp.where(dead, state.step, new.last_used),
            restarts=restarted_state.restarts,
            key=restarted_state.key,
        )
        restarted = jnp.sum(dead.astype(jnp.int32))
    if state.reservoir is not None:
        new = new.replace(reservoir=fill_reservoir(rng, z_e, state.reservoir.shape[0]))
    new = new.replace(step=state.step + 1)
    stats = {
        "restarted": restarted.astype(jnp.float32),
        "dead": jnp.mean(dead_in.astype(jnp.float32)),
    }
    return new, stats


def update_residual_state(
    state: CodebookState,
    residuals: Any,
    indices: Any,
    rng: jax.Array,
    num_active: Any = None,
    *,
    decay: float,
    restart_after: int = 0,
) -> tuple[CodebookState, dict[str, jax.Array]]:
    """:func:`update_codebook_state` for each level of a residual quantizer.

    The per-code fields carry a leading level axis (``cluster_size [N, K]``, ``embed_sum
    [N, K, d]``, ``last_used [N, K]``, ``reservoir [N, R, d]``); ``step``, ``restarts``,
    ``key`` and ``data_variance`` are shared. Level ``l`` is updated from the residuals it saw,
    with its own key ``split(key)[l]`` for the restart choices (drawn from the shared key, so
    identical on every device). A dropped level (``l >= num_active``) keeps its statistics and
    its codes do not age (``last_used + 1``), so dropout alone never restarts a code.

    Args:
      state: the residual quantizer's state.
      residuals: ``[N, ..., d]`` float, what each level quantized.
      indices: int ``[..., N]``, the codes each level chose.
      rng: key for the reservoirs' fresh draws.
      num_active: int scalar, the levels used by this batch (``None``: all).
      decay, restart_after: as in :func:`update_codebook_state`.

    Returns:
      ``(new_state, stats)`` with ``restarted`` summed and ``dead`` averaged over the levels.
    """
    levels = state.last_used.shape[0]
    active = jnp.arange(levels) < (levels if num_active is None else num_active)
    level_key, next_key = jax.random.split(state.key)
    per_level = state.replace(
        step=jnp.broadcast_to(state.step, (levels,)),
        restarts=jnp.zeros((levels,), jnp.int32),
        key=jax.random.split(level_key, levels),
        data_variance=jnp.broadcast_to(state.data_variance, (levels,)),
    )
    update = functools.partial(update_codebook_state, decay=decay, restart_after=restart_after)
    new, stats = jax.vmap(update)(
        per_level,
        residuals,
        jnp.moveaxis(jnp.asarray(indices), -1, 0),
        jax.random.split(rng, levels),
    )

    def pick(new_field, old_field, dropped):
        if old_field is None:
            return None
        mask = active.reshape((levels,) + (1,) * (old_field.ndim - 1))
        return jnp.where(mask, new_field, dropped)

    return state.replace(
        cluster_size=pick(new.cluster_size, state.cluster_size, state.cluster_size),
        embed_sum=pick(new.embed_sum, state.embed_sum, state.embed_sum),
        last_used=pick(new.last_used, state.last_used, state.last_used + 1),
        reservoir=pick(new.reservoir, state.reservoir, state.reservoir),
        step=state.step + 1,
        restarts=state.restarts + jnp.sum(jnp.where(active, new.restarts, 0)),
        key=next_key,
    ), {
        "restarted": jnp.sum(jnp.where(active, stats["restarted"], 0.0)),
        "dead": jnp.mean(stats["dead"]),
    }


def code_usage(indices: Any, num_codes: int) -> jax.Array:
    """Fraction of the ``K`` codes that occur at least once in ``indices`` (float32 scalar)."""
    K = _check_num_codes("code_usage", num_codes)
    idx = jnp.asarray(indices).reshape(-1)
    used = jnp.zeros((K,), bool).at[idx].set(True, mode="drop")
    return jnp.mean(used.astype(jnp.float32))


# --------------------------------------------------------------------------------------------
# Modules.
# --------------------------------------------------------------------------------------------


def _uniform_codes(rng: jax.Array, shape: tuple[int, int], dtype: Any = jnp.float32) -> jax.Array:
    """Uniform in ``[-1/K, 1/K]`` for a ``[K, D]`` codebook."""
    bound = 1.0 / shape[0]
    return jax.random.uniform(rng, shape, dtype, -bound, bound)


@struct.dataclass
class Quantized:
    """What a quantizer returns (:class:`VectorQuantizer`, :meth:`VQVAE.quantize`).

    Attributes:
      z_q_st: the straight-through value (equals ``z_q``, projected back to ``code_dim`` when
        the lookup space is projected; gradient identity to ``z``, none to the codebook): feed
        this to the decoder.
      z_q: ``z.shape``, the code(s) in the lookup space, ``codebook[indices]`` with the
        codebook's gradient (for the losses); for RVQ the sum of the levels' codes.
      indices: int32 ``z.shape[:-1]`` (RVQ: ``z.shape[:-1] + (N,)``).
      z: the vectors looked up (the encoder output, projected and normalised where configured).
      residuals: RVQ only, ``[N, *z.shape]`` float32: what each level quantized.
    """

    z_q_st: jax.Array
    z_q: jax.Array
    indices: jax.Array
    z: jax.Array | None = None
    residuals: jax.Array | None = None


class VectorQuantizer(nn.Module):
    """Nearest-code quantisation over the last axis of any encoder output.

    ``[..., D] -> Quantized`` with :func:`genjax.losses.vector_quantize` (one matmul for the
    distances, straight-through value). With ``rule="loss"`` the codebook is this module's
    parameter ``"codebook"`` (``[K, D]``, uniform in ``[-1/K, 1/K]`` at initialisation); with
    ``rule="ema"`` it is not a parameter and must be passed (``ema_codebook`` of the state).
    With ``cosine`` the lookup is :func:`genjax.losses.cosine_vector_quantize`: inputs and codes
    are l2-normalised and ``z_q`` is the normalised code.

    Attributes:
      num_codes: ``K >= 2``.
      code_dim: ``D``, which must equal the encoder output's last axis.
      rule: ``"loss"`` or ``"ema"``.
      cosine: look codes up by cosine similarity.
    """

    num_codes: int
    code_dim: int
    rule: str = "loss"
    cosine: bool = False

    @nn.compact
    def __call__(self, z_e: jax.Array, codebook: jax.Array | None = None) -> Quantized:
        owner = "VectorQuantizer"
        K = _check_num_codes(owner, self.num_codes)
        D = _check_int(owner, "code_dim", self.code_dim, 1)
        _check_choice(owner, "rule", self.rule, RULES)
        if jnp.ndim(z_e) < 1 or jnp.shape(z_e)[-1] != D:
            raise ValueError(
                f"{owner}: code_dim={D} must equal the encoder output's last axis, got an "
                f"encoder output of shape {jnp.shape(z_e)}"
            )
        if self.rule == "loss":
            if codebook is not None:
                raise ValueError(
                    f"{owner}: with rule='loss' the codebook is the module's parameter; "
                    "do not pass one"
                )
            codebook = self.param("codebook", _uniform_codes, (K, D))
        elif codebook is None or jnp.shape(codebook) != (K, D):
            got = None if codebook is None else jnp.shape(codebook)
            raise ValueError(
                f"{owner}: with rule='ema' pass the codebook [K, D] = [{K}, {D}] "
                f"(ema_codebook of the state), got {got}"
            )
        if self.cosine:
            z_q_st, indices = L.cosine_vector_quantize(z_e, codebook)
            z_e, codebook = L.l2_normalize(z_e), L.l2_normalize(codebook)
        else:
            z_q_st, indices = L.vector_quantize(z_e, codebook)
        z_q = jnp.take(codebook, indices, axis=0)
        return Quantized(z_q_st=z_q_st, z_q=z_q, indices=indices, z=z_e)


class VQVAE(nn.Module):
    """Encoder, quantizer and decoder of one :class:`VQVAEConfig`; one code map per input.

    ``arch="conv"`` (images ``[B, H, W, C]``)::

        encoder: ConvEncoder((hidden,) * num_stages, kernel 4, stride 2) -> Conv3x3(hidden)
                 -> ResidualStack(num_res_blocks, res_hidden) -> Conv1x1(code_dim)
                 [B, H / 2^s, W / 2^s, code_dim]
        decoder: Conv3x3(hidden) -> ResidualStack -> ConvDecoder(data_shape,
                 (hidden,) * (s - 1) + (hidden // 2,))            [B, H, W, C]

    (vdO section 4.1 with ``s = 2``: 2 strided convolutions, 2 residual blocks each way).
    ``arch="mlp"`` (any input, flattened)::

        encoder: MLP(mlp_hidden + (num_latents * code_dim,)) -> [B, num_latents, code_dim]
        decoder: MLP(reversed(mlp_hidden) + (prod(data_shape),)) -> [B, *data_shape]

    The quantizer is ``config.quantizer``: ``"vq"`` (:class:`VectorQuantizer`), ``"fsq"``
    (:mod:`genjax.nn.fsq`, no codebook) or ``"rvq"`` (:mod:`genjax.nn.rvq`, ``num_quantizers``
    EMA codebooks). The lookup space has ``codebook_dim`` channels (vq, rvq; 0: ``code_dim``)
    or ``len(fsq_levels)`` (fsq); when it differs from ``code_dim``, Dense layers
    ``project_in`` / ``project_out`` map the encoder's vectors there and the codes back. FSQ
    with ``fsq_layer_norm`` normalises each encoder vector (``LayerNorm``, learned scale and
    offset) before ``project_in``, so the scale of the quantizer's inputs is that of
    ``project_in`` alone and does not grow with the encoder's weights.

    ``VQVAEConfig(...).objective(info).model`` is one; ``VQVAE(config, data_shape)`` builds it
    directly. Its hyper-parameters are those of the config (the architecture and quantizer
    fields; ``beta``, ``decay``, ``epsilon``, the initialisation, restarts and the prior's fields
    belong to :class:`VQVAELoss` and :class:`VQVAEObjective`).

    Attributes:
      config: the :class:`VQVAEConfig`.
      data_shape: shape of one input ``x`` (no batch axis).
    """

    config: VQVAEConfig
    data_shape: tuple[int, ...]

    def num_levels(self) -> int:
        """RVQ's ``num_quantizers``; 1 for vq and fsq."""
        return self.config.num_quantizers if self.config.quantizer == "rvq" else 1

    def lookup_dim(self) -> int:
        """Width of the vectors the quantizer sees."""
        c = self.config
        if c.quantizer == "fsq":
            return len(c.fsq_levels)
        return c.codebook_dim or c.code_dim

    def vocabulary(self) -> int:
        """Codes per position of a code map: ``prod(fsq_levels)`` (FSQ) or ``num_codes``."""
        if self.config.quantizer == "fsq":
            return F.codebook_size(self.config.fsq_levels)
        return self.config.num_codes

    def _projects(self) -> bool:
        return self.lookup_dim() != self.config.code_dim

    def _fsq_norm(self) -> bool:
        return self.config.quantizer == "fsq" and self.config.fsq_layer_norm

    def setup(self):
        c = self.config
        if not isinstance(c, VQVAEConfig):
            raise ValueError(f"VQVAE.config must be a VQVAEConfig, got {type(c).__name__}")
        shape = check_shape("VQVAE.data_shape", self.data_shape, hashable=True)
        if c.arch == "conv":
            if len(shape) != 3:
                raise ValueError(
                    f"VQVAE(arch='conv') needs images, data_shape = (H, W, C), got {shape} "
                    "(use arch='mlp' for vectors)"
                )
            check_image_shape(shape, c.num_stages, owner="VQVAE.config.num_stages")
            self.enc_conv = ConvEncoder(features=(c.hidden,) * c.num_stages, kernel_size=4)
            self.enc_mid = Conv(c.hidden, (3, 3), padding="SAME")
            self.enc_res = ResidualStack(c.num_res_blocks, c.res_hidden)
            self.enc_out = Conv(c.code_dim, (1, 1))
            self.dec_in = Conv(c.hidden, (3, 3), padding="SAME")
            self.dec_res = ResidualStack(c.num_res_blocks, c.res_hidden)
            self.dec_conv = ConvDecoder(
                image_shape=shape,
                features=(c.hidden,) * (c.num_stages - 1) + (c.hidden // 2,),
                kernel_size=4,
            )
        else:
            hidden = tuple(c.mlp_hidden)
            self.enc_mlp = MLP(features=(*hidden, c.num_latents * c.code_dim))
            self.dec_mlp = MLP(features=(*reversed(hidden), math.prod(shape)))
        if self._fsq_norm():
            self.fsq_norm = nn.LayerNorm()
        if self._projects():
            self.project_in = nn.Dense(self.lookup_dim())
            self.project_out = nn.Dense(c.code_dim)
        if c.quantizer == "vq":
            self.quantizer = VectorQuantizer(
                c.num_codes, self.lookup_dim(), c.rule, cosine=c.cosine
            )

    def _check_input(self, x: jax.Array) -> None:
        if tuple(jnp.shape(x)[1:]) != tuple(self.data_shape):
            dims = ", ".join(map(str, self.data_shape))
            raise ValueError(
                f"VQVAE: inputs must be [B, *data_shape] = [B, {dims}], got shape {jnp.shape(x)}"
            )

    def encode(self, x: jax.Array) -> jax.Array:
        """``x [B, *data_shape] -> z_e`` (``[B, h, w, D]`` conv, ``[B, M, D]`` MLP)."""
        self._check_input(x)
        c = self.config
        if c.arch == "conv":
            h = self.enc_conv(x)
            h = self.enc_res(self.enc_mid(h))
            return self.enc_out(h)
        h = self.enc_mlp(x.reshape(x.shape[0], -1))
        return h.reshape(x.shape[0], c.num_latents, c.code_dim)

    def to_lookup(self, z_e: jax.Array) -> jax.Array:
        """Encoder outputs to the lookup space: ``fsq_norm`` (FSQ with ``fsq_layer_norm``),
        then ``project_in`` if projected, normalised if ``cosine``; otherwise ``z_e`` itself."""
        z = self.fsq_norm(z_e) if self._fsq_norm() else z_e
        z = self.project_in(z) if self._projects() else z
        return L.l2_normalize(z) if self.config.cosine else z

    def lookup_inputs(self, x: jax.Array) -> jax.Array:
        """``to_lookup(encode(x))``: the vectors the quantizer sees."""
        return self.to_lookup(self.encode(x))

    def quantize(
        self,
        z_e: jax.Array,
        codebook: jax.Array | None = None,
        num_active: Any = None,
        noise_rng: jax.Array | None = None,
    ) -> Quantized:
        """Encoder outputs ``[..., code_dim]`` -> :class:`Quantized` (``z_q_st`` in
        ``code_dim``, in the dtype of ``z_e``: an activation). ``codebook``: vq with
        ``rule="ema"`` ``[K, d]``, rvq ``[N, K, d]``; ``num_active``: rvq's levels used
        (``None``: all); ``noise_rng``: FSQ with ``fsq_noise > 0``, training: the key of the
        noise substitution (:func:`genjax.nn.fsq.noisy_quantize`; the decoder sees the noisy
        values, ``z_q`` and the indices stay the rounded codes; ``None``: no noise)."""
        kind = self.config.quantizer
        z = self.to_lookup(z_e)
        if kind == "vq":
            q = self.quantizer(z, codebook)
        elif kind == "rvq":
            z_q_st, z_q, indices, residuals = R.residual_quantize(z, codebook, num_active)
            q = Quantized(z_q_st, z_q, indices, z=z, residuals=residuals)
        else:
            levels = self.config.fsq_levels
            codes = F.quantize(z, levels)
            seen = codes
            if noise_rng is not None and self.config.fsq_noise > 0:
                seen = F.noisy_quantize(noise_rng, z, levels, self.config.fsq_noise)
            q = Quantized(seen, codes, F.codes_to_indices(codes, levels), z=z)
        if self._projects():
            q = q.replace(z_q_st=self.project_out(q.z_q_st))
        return q.replace(z_q_st=q.z_q_st.astype(z_e.dtype))

    def decode_codes(self, z_q: jax.Array) -> jax.Array:
        """Codes in the lookup space ``[B, ..., d]`` -> ``[B, *data_shape]``."""
        return self.decode(self.project_out(z_q) if self._projects() else z_q)

    def decode(self, z_q: jax.Array) -> jax.Array:
        """A code map's vectors ``[B, ..., D] -> [B, *data_shape]``."""
        if self.config.arch == "conv":
            h = self.dec_res(self.dec_in(z_q))
            return self.dec_conv(h)
        out = self.dec_mlp(z_q.reshape(z_q.shape[0], -1))
        return out.reshape(z_q.shape[0], *self.data_shape)

    def __call__(
        self,
        x: jax.Array,
        codebook: jax.Array | None = None,
        num_active: Any = None,
        noise_rng: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array, Quantized]:
        """``x -> (x_hat, z_e, Quantized)``; the decoder sees the straight-through value
        (with ``noise_rng``, FSQ's noise substitution: :meth:`quantize`)."""
        z_e = self.encode(x)
        q = self.quantize(z_e, codebook, num_active, noise_rng)
        return self.decode(q.z_q_st), z_e, q

    def code_map_shape(self) -> tuple[int, ...]:
        """Shape of one code map of indices: ``(h, w)`` (conv) or ``(num_latents,)`` (MLP),
        then ``(N,)`` for RVQ (its levels' indices as extra positions)."""
        c = self.config
        if c.arch == "conv":
            f = 2**c.num_stages
            shape = (self.data_shape[0] // f, self.data_shape[1] // f)
        else:
            shape = (c.num_latents,)
        return (*shape, c.num_quantizers) if c.quantizer == "rvq" else shape


def _stored_codebook(model: VQVAE, params: Any, state: CodebookState, epsilon: float):
    if model.config.quantizer == "fsq":
        return None
    if model.config.rule == "loss":
        return params["params"]["quantizer"]["codebook"]
    if model.config.quantizer == "rvq":
        return jax.vmap(ema_codebook, (0, 0, None))(state.cluster_size, state.embed_sum, epsilon)
    return ema_codebook(state.cluster_size, state.embed_sum, epsilon)


def codebook(model: VQVAE, params: Any, state: CodebookState, epsilon: float = 1e-5) -> jax.Array:
    """The current codes in the lookup space: ``[K, d]``, the parameter (loss rule) or the
    EMA-derived one (l2-normalised with ``cosine``); RVQ ``[N, K, d]``; FSQ the grid
    ``[prod(levels), len(levels)]``."""
    if model.config.quantizer == "fsq":
        return F.indices_to_codes(jnp.arange(model.vocabulary()), model.config.fsq_levels)
    cb = _stored_codebook(model, params, state, epsilon)
    return L.l2_normalize(cb) if model.config.cosine else cb


def _ema_arg(model: VQVAE, params: Any, state: CodebookState, epsilon: float):
    return None if model.config.rule == "loss" else _stored_codebook(model, params, state, epsilon)


def code_statistics(model: VQVAE, indices: Any) -> dict[str, jax.Array]:
    """``code_usage`` (fraction of the codes used) and ``perplexity`` of code maps ``indices``
    ``[B, *code_map_shape]``, over ``model.vocabulary()`` codes (FSQ: the whole grid); RVQ:
    the mean over levels of each level's figures."""
    indices = jnp.asarray(indices)
    K = model.vocabulary()
    if model.config.quantizer != "rvq":
        return {
            "code_usage": code_usage(indices, K),
            "perplexity": L.codebook_perplexity(indices, K),
        }
    levels = [indices[..., level] for level in range(indices.shape[-1])]
    return {
        "code_usage": jnp.mean(jnp.stack([code_usage(i, K) for i in levels])),
        "perplexity": jnp.mean(jnp.stack([L.codebook_perplexity(i, K) for i in levels])),
    }


# --------------------------------------------------------------------------------------------
# What the engine trains.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VQVAELoss:
    """The VQ-VAE's loss and its initialisation, as the engine's stateful task expects.

    ``init(rng, batch) -> params``, ``init_model_state(rng, batch, params) -> CodebookState``
    and ``loss(params, state, batch, rng) -> (loss, (metrics, state))``; use them as
    ``Task.from_loss(obj.init, obj.loss, optimizer, stateful=True,
    init_model_state=obj.init_model_state)``.

    Attributes:
      model: the :class:`VQVAE`.
      beta: commitment weight (``>= 0``; vdO use 0.25).
      decay: EMA decay ``gamma`` in ``[0, 1)`` (EMA rule).
      epsilon: Laplace pseudo-count ``>= 0`` of :func:`ema_codebook` (EMA rule).
      codebook_init: one of :data:`INITS`.
      restart_after: restart codes unused for this many updates (0: never; EMA rule only).
      reservoir_size: encoder outputs kept for restarts (``None``: ``K``).
      quantizer_dropout: RVQ only: each update uses ``n ~ U{1..N}`` levels, drawn from the
        state's shared key (the same on every device).

    The quantizer is the model's (``model.config.quantizer``): FSQ has no codebook, so no
    commitment or codebook term and no restarts; RVQ's levels are initialised one after the
    other on the residuals of the first batch and updated by :func:`update_residual_state`.
    """

    model: VQVAE
    beta: float = 0.25
    decay: float = 0.99
    epsilon: float = 1e-5
    codebook_init: str = "kmeans++"
    restart_after: int = 0
    reservoir_size: int | None = None
    quantizer_dropout: bool = False

    def __post_init__(self):
        owner = "VQVAELoss"
        if not isinstance(self.model, VQVAE):
            raise ValueError(f"{owner}: model must be a VQVAE, got {type(self.model).__name__}")
        _check_num_codes(owner, self.model.config.num_codes)
        _check_choice(owner, "rule", self.model.config.rule, RULES)
        _check_float(owner, "beta", self.beta, 0.0, math.inf, high_open=True)
        _check_float(owner, "decay", self.decay, 0.0, 1.0, high_open=True)
        _check_float(owner, "epsilon", self.epsilon, 0.0, math.inf, high_open=True)
        _check_choice(owner, "codebook_init", self.codebook_init, INITS)
        _check_int(owner, "restart_after", self.restart_after, 0)
        if self.restart_after and self.model.config.rule != "ema":
            raise ValueError(
                f"{owner}: dead-code restart (restart_after={self.restart_after}) needs "
                f"rule='ema' (the loss rule's codebook is a parameter the state cannot reset), "
                f"got rule={self.model.config.rule!r}"
            )
        if self.reservoir_size is not None:
            _check_int(owner, "reservoir_size", self.reservoir_size, 1)
        kind = self.model.config.quantizer
        if self.restart_after and kind == "fsq":
            raise ValueError(f"{owner}: FSQ has no codebook to restart; set restart_after=0")
        if self.quantizer_dropout and kind != "rvq":
            raise ValueError(f"{owner}: quantizer_dropout needs quantizer='rvq', got {kind!r}")

    @property
    def num_codes(self) -> int:
        return self.model.config.num_codes

    def _reservoir(self) -> int:
        if not self.restart_after:
            return 0
        return self.reservoir_size or self.model.config.num_codes

    def encoder_outputs(self, params: Any, x: jax.Array) -> jax.Array:
        """``[N, d]``: the vectors the quantizer sees for inputs ``x`` (the encoder's, in the
        lookup space), flattened over the code maps."""
        z = self.model.apply(params, x, method=VQVAE.lookup_inputs)
        return z.reshape(-1, z.shape[-1])

    def num_active(self, state: CodebookState) -> jax.Array | None:
        """RVQ with dropout: the levels this update uses, ``1 + randint(N)`` from
        ``state.key``; otherwise ``None`` (all)."""
        if not self.quantizer_dropout:
            return None
        key = jax.random.fold_in(state.key, 1)
        return 1 + jax.random.randint(key, (), 0, self.model.num_levels())

    def init(self, rng: jax.Array, batch: dict) -> Any:
        """Parameters; with the loss rule, the codebook parameter is initialised by
        ``codebook_init`` from the encoder outputs of ``batch``; FSQ's are rescaled and its
        decoder recentred on ``batch`` (:meth:`_fsq_data_init`)."""
        model = self.model
        param_key, code_key = jax.random.split(rng)
        K, D = model.config.num_codes, model.lookup_dim()
        dummy = None if model.config.rule == "loss" else jnp.zeros((K, D), jnp.float32)
        if model.config.quantizer != "vq":
            dummy = (
                None if model.config.quantizer == "fsq" else jnp.zeros((model.num_levels(), K, D))
            )
        variables = model.init(param_key, batch["x"], dummy)
        if model.config.quantizer == "fsq":
            return self._fsq_data_init(variables, batch["x"])
        if model.config.rule == "loss":
            points = self.encoder_outputs(variables, batch["x"])
            cb = init_codebook(code_key, points, K, self.codebook_init)
            inner = dict(variables["params"])
            inner["quantizer"] = {**inner["quantizer"], "codebook": cb}
            variables = {**variables, "params": inner}
        return variables

    def _fsq_data_init(self, variables: Any, x: jax.Array) -> Any:
        """FSQ's data-dependent initialisation, from the first batch ``x``:

        1. the layer that produces the quantizer's inputs (``project_in``, else ``fsq_norm``,
           else the encoder's last) is rescaled so that they have unit standard deviation. At
           the initialisation's small scale every vector rounds to the same grid point, the
           decoder's input is constant, and no gradient flows.
        2. the decoder's output bias is shifted by the batch's mean residual ``mean(x - x^)``
           (per channel for conv, per value for MLP), so the first reconstructions have the
           data's mean. Otherwise that mean is the whole early gradient: it is the same for
           every vector, Adam moves the projection along it by about the learning rate per
           step, and within a few hundred steps every vector sits in the same saturated corner
           of the ``tanh`` bound, where the straight-through gradient vanishes."""
        model, c = self.model, self.model.config
        scale = 1.0 / jnp.maximum(jnp.std(self.encoder_outputs(variables, x)), 1e-6)
        if model._projects():
            path = ("project_in",)
        elif model._fsq_norm():
            path = ("fsq_norm",)
        elif c.arch == "conv":
            path = ("enc_out",)
        else:
            path = ("enc_mlp", f"dense_{len(c.mlp_hidden)}")

        def update(tree, keys, fn):
            tree = dict(tree)
            if keys:
                tree[keys[0]] = update(tree[keys[0]], keys[1:], fn)
                return tree
            return fn(tree)

        rescale = lambda leaf: {name: value * scale for name, value in leaf.items()}
        variables = {**variables, "params": update(variables["params"], path, rescale)}
        x_hat, _, _ = model.apply(variables, x, None)
        residual = jnp.asarray(x, jnp.float32) - x_hat.astype(jnp.float32)
        if c.arch == "conv":
            out_path, shift = ("dec_conv", "output"), jnp.mean(residual, axis=(0, 1, 2))
        else:
            out_path = ("dec_mlp", f"dense_{len(c.mlp_hidden)}")
            shift = jnp.mean(residual.reshape(residual.shape[0], -1), axis=0)
        recentre = lambda leaf: {**leaf, "bias": leaf["bias"] + shift}
        return {**variables, "params": update(variables["params"], out_path, recentre)}

    def init_model_state(self, rng: jax.Array, batch: dict, params: Any) -> CodebookState:
        """The state: EMA statistics of the initial codebook (EMA rule: ``N_k = 1/K``,
        ``S_k = e_k / K``), the reservoir filled from ``batch``, the shared key."""
        model = self.model
        K = model.config.num_codes
        code_key, res_key, shared_key = jax.random.split(rng, 3)
        x = batch["x"]
        points = self.encoder_outputs(params, x)
        cluster_size = embed_sum = None
        size = self._reservoir()
        last_used = jnp.zeros((K,), jnp.int32)
        if model.config.quantizer == "fsq":
            last_used, size = jnp.zeros((model.vocabulary(),), jnp.int32), 0
            reservoir = None
        elif model.config.quantizer == "rvq":
            cluster_size, embed_sum, reservoir = self._init_levels(code_key, res_key, points)
            last_used = jnp.zeros((model.num_levels(), K), jnp.int32)
        else:
            if model.config.rule == "ema":
                cb = init_codebook(code_key, points, K, self.codebook_init)
                cluster_size = jnp.full((K,), 1.0 / K, jnp.float32)
                embed_sum = cb / K
            reservoir = fill_reservoir(res_key, points, size) if size else None
        variance = jnp.maximum(jnp.var(jnp.asarray(x, jnp.float32)), 1e-8)
        zero = jnp.zeros((), jnp.int32)
        return CodebookState(
            cluster_size=cluster_size,
            embed_sum=embed_sum,
            last_used=last_used,
            reservoir=reservoir,
            step=zero,
            restarts=zero,
            key=jnp.asarray(shared_key),
            data_variance=variance.astype(jnp.float32),
        )

    def _init_levels(self, code_key: jax.Array, res_key: jax.Array, points: jax.Array):
        """RVQ's EMA statistics and reservoirs: level ``l`` is initialised on the residuals of
        ``points`` under the levels before it."""
        K, levels = self.model.config.num_codes, self.model.num_levels()
        size = self._reservoir()
        residual, books, reservoirs = points.astype(jnp.float32), [], []
        for level, (ck, rk) in enumerate(
            zip(jax.random.split(code_key, levels), jax.random.split(res_key, levels), strict=True)
        ):
            books.append(init_codebook(ck, residual, K, self.codebook_init))
            if size:
                reservoirs.append(fill_reservoir(rk, residual, size))
            _, idx = L.vector_quantize(residual, books[level])
            residual = residual - books[level][idx]
        cluster_size = jnp.full((levels, K), 1.0 / K, jnp.float32)
        return cluster_size, jnp.stack(books) / K, jnp.stack(reservoirs) if size else None

    def loss(
        self, params: Any, state: CodebookState, batch: dict, rng: jax.Array
    ) -> tuple[jax.Array, tuple[dict, CodebookState]]:
        """The mean VQ-VAE loss over the batch, its metrics and the updated state."""
        model = self.model
        x = batch["x"]
        num_active = self.num_active(state)
        cb = _ema_arg(model, params, state, self.epsilon)
        noise_rng = None
        if model.config.quantizer == "fsq" and model.config.fsq_noise > 0:
            rng, noise_rng = jax.random.split(rng)
        x_hat, _, q = model.apply(params, x, cb, num_active, noise_rng)
        sq_err = jnp.square(x_hat.astype(jnp.float32) - x.astype(jnp.float32))
        mse = jnp.mean(sq_err.reshape(x.shape[0], -1), axis=-1)
        z = q.z
        latent_size = float(np.prod(z.shape[1:]))
        if model.config.quantizer == "fsq":
            commitment = jnp.zeros_like(mse)
        else:
            commitment = L.vq_commitment_loss(z, q.z_q) / latent_size
        total = mse / state.data_variance + self.beta * commitment
        codebook_term = jnp.zeros_like(commitment)
        if model.config.rule == "loss" and model.config.quantizer == "vq":
            codebook_term = L.vq_codebook_loss(z, q.z_q) / latent_size
            total = total + codebook_term
        kw = dict(decay=self.decay, restart_after=self.restart_after)
        if model.config.quantizer == "rvq":
            new_state, stats = update_residual_state(
                state, q.residuals, q.indices, rng, num_active, **kw
            )
        else:
            new_state, stats = update_codebook_state(state, z, q.indices, rng, **kw)
        codes = code_statistics(model, q.indices)
        metrics = {
            "recon_mse": jnp.mean(mse),
            "commitment_loss": jnp.mean(commitment),
            "codebook_loss": jnp.mean(codebook_term),
            "batch_perplexity": codes["perplexity"],
            "batch_code_usage": codes["code_usage"],
            "dead_codes": stats["dead"],
            "restarted_codes": stats["restarted"],
        }
        return jnp.mean(total), (metrics, new_state)


# --------------------------------------------------------------------------------------------
# Inference helpers.
# --------------------------------------------------------------------------------------------


def encode_indices(
    model: VQVAE, params: Any, state: CodebookState, x: Any, *, epsilon: float = 1e-5
) -> jax.Array:
    """Code maps of ``x``: int32 ``[B, *model.code_map_shape()]``."""
    z = model.apply(params, jnp.asarray(x, jnp.float32), method=VQVAE.lookup_inputs)
    if model.config.quantizer == "fsq":
        return F.codes_to_indices(F.quantize(z, model.config.fsq_levels), model.config.fsq_levels)
    cb = codebook(model, params, state, epsilon)
    if model.config.quantizer == "rvq":
        return R.residual_quantize(z, cb)[2]
    _, indices = (L.cosine_vector_quantize if model.config.cosine else L.vector_quantize)(z, cb)
    return indices


def decode_indices(
    model: VQVAE, params: Any, state: CodebookState, indices: Any, *, epsilon: float = 1e-5
) -> jax.Array:
    """Decode code maps ``[B, *code_map_shape]`` (int) to inputs ``[B, *data_shape]``."""
    indices = jnp.asarray(indices)
    expected = model.code_map_shape()
    if tuple(indices.shape[1:]) != tuple(expected):
        raise ValueError(
            f"decode_indices: indices must be [B, {', '.join(map(str, expected))}], "
            f"got shape {indices.shape}"
        )
    codes = codebook(model, params, state, epsilon)
    if model.config.quantizer == "rvq":
        z_q = R.codes_from_indices(codes, indices)
    else:
        z_q = jnp.take(codes, indices, axis=0)
    return model.apply(params, z_q, method=VQVAE.decode_codes)


def reconstruct(
    model: VQVAE, params: Any, state: CodebookState, x: Any, *, epsilon: float = 1e-5
) -> jax.Array:
    """``decode(quantize(encode(x)))``: ``[B, *data_shape]``."""
    cb = _ema_arg(model, params, state, epsilon)
    x_hat, _, _ = model.apply(params, jnp.asarray(x, jnp.float32), cb)
    return x_hat


# --------------------------------------------------------------------------------------------
# The family's contract: hyper-parameters, the objective, the two-phase task.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VQVAEConfig(ModelConfig):
    """VQ-VAE and code-prior hyper-parameters (model, training objective, the prior's phase).

    ``config.objective(info)`` builds the :class:`VQVAE` for data of ``info.shape``, its
    :class:`VQVAELoss` and the :class:`~genjax.models.prior.CausalTransformer` prior over its
    code maps (a :class:`VQVAEObjective`). A run of ``steps`` updates trains the VQ-VAE for
    ``steps - prior_steps`` of them, then the prior on the frozen VQ-VAE's codes
    (:meth:`VQVAEObjective.run_task`); with ``prior_steps=0`` there is no prior and
    :meth:`VQVAEObjective.task` trains the VQ-VAE alone.

    Two phases on 64-d inputs (one VQ-VAE update, then one of the prior), then samples and
    code maps from the engine's parameters::

        >>> import jax, optax
        >>> from genjax.models.base import DataInfo
        >>> from genjax.models.vqvae import VQVAEConfig
        >>> from genjax.train import Engine, init_state
        >>> config = VQVAEConfig(arch="mlp", num_codes=8, code_dim=4, mlp_hidden=(32,),
        ...                      num_latents=2, restart_after=0, prior_steps=1, prior_width=16,
        ...                      prior_depth=1, prior_heads=2)
        >>> objective = config.objective(DataInfo(shape=(64,)))
        >>> task = objective.run_task(lambda steps, lr: optax.adam(1e-3), steps=2)
        >>> batch = {"x": jax.random.uniform(jax.random.PRNGKey(0), (16, 64))}
        >>> engine = Engine(task)
        >>> state = jax.jit(lambda key: init_state(task, key, batch))(jax.random.PRNGKey(1))
        >>> state = engine.place_state(state)
        >>> for _ in range(2):
        ...     state, metrics = engine.step(state, batch)
        >>> sorted(state.params), metrics["vqvae/recon_mse"].shape
        (['prior', 'vqvae'], ())
        >>> objective.sample(state.params, state.model_state, jax.random.PRNGKey(2), 5).shape
        (5, 64)
        >>> objective.encode(state.params, state.model_state, batch["x"]).shape
        (16, 2)

    Attributes:
      arch: conv | mlp (conv needs images [H, W, C], not flattened inputs).
      num_codes: K, the codebook size (>= 2).
      code_dim: D, the width of a code (the encoder's output channels).
      hidden: conv channels of the encoder and decoder.
      num_stages: stride-2 stages of the conv pair (the code map is H/2^s x W/2^s).
      num_res_blocks: residual blocks in the conv encoder and in the conv decoder.
      res_hidden: channels inside a residual block.
      mlp_hidden: hidden widths of the MLP pair.
      num_latents: vectors per code map for the MLP pair.
      rule: codebook update, loss (codebook loss) | ema (moving averages).
      beta: commitment weight (>= 0).
      decay: EMA decay in [0, 1).
      epsilon: Laplace pseudo-count of the EMA codebook (>= 0).
      codebook_init: random | sample | kmeans++ (from the first batch's encoder outputs).
      restart_after: restart codes unused for this many steps (0 = never; rule=ema only).
      reservoir_size: recent encoder outputs kept for restarts (0 = K).
      quantizer: vq (nearest code) | fsq (finite scalar grid, no codebook, no auxiliary loss;
        num_codes, rule, restarts unused) | rvq (num_quantizers EMA codebooks on residuals).
      fsq_levels: FSQ levels per channel (the grid has their product of codes).
      fsq_layer_norm: FSQ: LayerNorm each encoder vector before the projection to
        len(fsq_levels) channels (without it the encoder's growing outputs saturate the
        bound and the code map collapses).
      fsq_noise: FSQ: in training, the probability with which each quantized value is
        replaced by its bounded value plus uniform noise one level wide (noise substitution,
        :func:`genjax.nn.fsq.noisy_quantize`; 0 = always rounded).
      num_quantizers: RVQ levels N (a code map holds N indices per position).
      quantizer_dropout: RVQ: train each step with a random number of levels in 1..N.
      codebook_dim: vq/rvq lookup width, the encoder's vectors projected to it and back (0 =
        code_dim, no projection).
      cosine: vq: look codes up by cosine similarity (l2-normalised codes and inputs).
      prior_steps: the last prior_steps of train.steps train the prior, the VQ-VAE frozen (0 =
        no prior: the VQ-VAE alone).
      prior_width: width of the prior transformer.
      prior_depth: transformer blocks of the prior.
      prior_heads: attention heads of the prior.
      prior_learning_rate: Adam learning rate of the prior (cosine-decayed over prior_steps).
    """

    family: ClassVar[str] = "vqvae"

    arch: str = "conv"
    num_codes: int = 64
    code_dim: int = 16
    hidden: int = 32
    num_stages: int = 2
    num_res_blocks: int = 2
    res_hidden: int = 16
    mlp_hidden: tuple[int, ...] = (256,)
    num_latents: int = 4
    rule: str = "ema"
    beta: float = 0.25
    decay: float = 0.99
    epsilon: float = 1e-5
    codebook_init: str = "kmeans++"
    restart_after: int = 100
    reservoir_size: int = 0
    quantizer: str = "vq"
    fsq_levels: tuple[int, ...] = F.LEVELS[2**8]
    fsq_layer_norm: bool = True
    fsq_noise: float = 0.0
    num_quantizers: int = 4
    quantizer_dropout: bool = False
    codebook_dim: int = 0
    cosine: bool = False
    prior_steps: int = 2000
    prior_width: int = 64
    prior_depth: int = 2
    prior_heads: int = 4
    prior_learning_rate: float = 1e-3

    def __post_init__(self):
        label = self._label
        check_choice(label("arch"), self.arch, ARCHS)
        check_choice(label("rule"), self.rule, RULES)
        check_choice(label("codebook_init"), self.codebook_init, INITS)
        check_choice(label("quantizer"), self.quantizer, QUANTIZERS)
        if not is_int(self.num_codes):
            raise ValueError(f"{label('num_codes')} must be an int >= 2, got {self.num_codes!r}")
        if self.num_codes < 2:
            raise ValueError(f"{label('num_codes')} (K) must be >= 2, got {self.num_codes}")
        check_int(label("hidden"), self.hidden, 2 if self.arch == "conv" else 1)
        for name in ("code_dim", "num_stages", "res_hidden", "num_latents"):
            check_int(label(name), getattr(self, name), 1)
        for name in ("prior_width", "prior_heads"):
            check_int(label(name), getattr(self, name), 1)
        for name in ("num_res_blocks", "restart_after", "reservoir_size", "prior_depth"):
            check_int(label(name), getattr(self, name), 0)
        self._check_quantizer()
        check_int(label("prior_steps"), self.prior_steps, 0)
        hidden = self.mlp_hidden
        if isinstance(hidden, Sequence) and not isinstance(hidden, str):
            object.__setattr__(self, "mlp_hidden", hidden := tuple(hidden))
        if not isinstance(hidden, tuple) or not all(is_int(h) and h >= 1 for h in hidden):
            raise ValueError(
                f"{label('mlp_hidden')} must be a tuple of ints >= 1, got {self.mlp_hidden!r}"
            )
        beta = self.beta
        if not (isinstance(beta, int | float) and math.isfinite(beta) and beta >= 0):
            raise ValueError(f"{label('beta')} must be a finite number >= 0, got {beta!r}")
        check_float(label("decay"), self.decay, 0.0, 1.0, high_open=True)
        check_float(label("epsilon"), self.epsilon, 0.0, math.inf, high_open=True)
        lr = self.prior_learning_rate
        if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
            raise ValueError(
                f"{label('prior_learning_rate')} must be a finite number > 0, got {lr!r}"
            )
        if self.restart_after and self.rule != "ema" and self.quantizer != "fsq":
            raise ValueError(
                f"{label('restart_after')}={self.restart_after} needs {label('rule')}=ema (the "
                f"loss rule's codebook is a parameter); set {label('restart_after')}=0"
            )
        if self.prior_width % self.prior_heads:
            raise ValueError(
                f"{label('prior_width')} ({self.prior_width}) must be divisible by "
                f"{label('prior_heads')} ({self.prior_heads})"
            )

    def _check_quantizer(self) -> None:
        label, kind = self._label, self.quantizer
        levels = self.fsq_levels
        if isinstance(levels, Sequence) and not isinstance(levels, str):
            object.__setattr__(self, "fsq_levels", levels := tuple(levels))
        if (
            not isinstance(levels, tuple)
            or not levels
            or not all(is_int(v) and v >= 2 for v in levels)
        ):
            raise ValueError(
                f"{label('fsq_levels')} must be a non-empty tuple of ints >= 2, got {levels!r}"
            )
        check_int(label("num_quantizers"), self.num_quantizers, 1)
        check_int(label("codebook_dim"), self.codebook_dim, 0)
        for name in ("quantizer_dropout", "cosine", "fsq_layer_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"{label(name)} must be true or false, got {getattr(self, name)!r}"
                )
        if kind == "rvq" and self.rule != "ema":
            raise ValueError(f"{label('quantizer')}=rvq needs {label('rule')}=ema, got {self.rule}")
        if self.quantizer_dropout and kind != "rvq":
            raise ValueError(f"{label('quantizer_dropout')}=true needs {label('quantizer')}=rvq")
        if self.cosine and kind != "vq":
            raise ValueError(f"{label('cosine')}=true needs {label('quantizer')}=vq, got {kind}")
        if self.codebook_dim and kind == "fsq":
            raise ValueError(
                f"{label('codebook_dim')} is for vq and rvq; FSQ looks up in "
                f"len({label('fsq_levels')}) channels (set {label('codebook_dim')}=0)"
            )
        check_float(label("fsq_noise"), self.fsq_noise, 0.0, 1.0, high_open=False)
        if self.fsq_noise and kind != "fsq":
            raise ValueError(
                f"{label('fsq_noise')}={self.fsq_noise} needs {label('quantizer')}=fsq"
            )

    def objective(self, info: DataInfo) -> VQVAEObjective:
        """The VQ-VAE, its loss and its prior for data of ``info.shape`` (``ValueError`` for a
        shape this configuration cannot take)."""
        return VQVAEObjective(self, info)

    @classmethod
    def upgrade_saved(cls, values: dict) -> dict:
        """Configs saved before ``fsq_layer_norm`` existed trained FSQ without it (the key does
        nothing for the other quantizers, which keep the default)."""
        values = dict(values)
        if values.get("quantizer") == "fsq":
            values.setdefault("fsq_layer_norm", False)
        return values


#: The players of the two-phase task: the VQ-VAE, then its prior.
VQ_PLAYER, PRIOR_PLAYER = "vqvae", "prior"


@dataclasses.dataclass(frozen=True)
class VQVAEObjective(Objective):
    """The VQ-VAE family's objective for one data shape (``VQVAEConfig.objective(info)``).

    Two tasks train it:

    * :meth:`task` (``prior_steps=0``): the VQ-VAE alone, one stateful player ``"model"``
      whose model state is the :class:`CodebookState`;
    * :meth:`two_phase_task` (what :meth:`run_task` builds for ``prior_steps > 0``): two
      stateful players in two phases, ``"vqvae"`` for the first ``vq_steps`` applied updates,
      then ``"prior"`` (the causal transformer over the raster-ordered code map) on the code
      maps of the training batches under the frozen VQ-VAE. Each player's optimizer is masked
      outside its phase (``optax.conditionally_mask``, so its moments do not move either) and
      its loss is switched by a counter of applied updates kept in the model state
      (``{"vq": CodebookState, "updates": int32}``) by the ``post_update`` hook; both stay in
      step when the engine's non-finite guard rejects an update. Outside its phase the VQ-VAE
      player reports the frozen model's metrics (``restarted_codes`` 0) and the prior's reads
      0.

    The inference methods take the engine's parameters of either task (``{"model": p}`` or
    ``{"vqvae": p, "prior": q}``) and model state.

    Attributes:
      config: the :class:`VQVAEConfig`.
      info: the :class:`~genjax.models.base.DataInfo` it was built for.
      model: the :class:`VQVAE` (what this module's functions take first).
      loss_fn: the VQ-VAE's :class:`VQVAELoss` (``init``, ``init_model_state``, ``loss``).
      prior_model: the :class:`~genjax.models.prior.CausalTransformer` over flattened code
        maps (``seq_len`` = the code map's size).
    """

    config: VQVAEConfig
    info: DataInfo
    model: VQVAE = dataclasses.field(init=False)
    loss_fn: VQVAELoss = dataclasses.field(init=False)
    prior_model: P.CausalTransformer = dataclasses.field(init=False)

    def __post_init__(self):
        c = self.config
        if not isinstance(c, VQVAEConfig):
            raise ValueError(f"VQVAEObjective: config must be a VQVAEConfig, got {c!r}")
        shape = tuple(self.info.shape)
        if c.arch == "conv":
            if len(shape) != 3:
                raise ValueError(
                    f"{c._label('arch')}=conv needs images [H, W, C], got inputs of shape "
                    f"{shape} from {self.info.label}; use arch=mlp for vectors, or do not "
                    "flatten the images (data.flatten=false)"
                )
            check_image_shape(shape, c.num_stages, owner=c._label("num_stages"))
        model = VQVAE(c, shape)
        loss_fn = VQVAELoss(
            model,
            beta=c.beta,
            decay=c.decay,
            epsilon=c.epsilon,
            codebook_init=c.codebook_init,
            restart_after=0 if c.quantizer == "fsq" else c.restart_after,
            reservoir_size=c.reservoir_size or None,
            quantizer_dropout=c.quantizer_dropout,
        )
        prior_model = P.CausalTransformer(
            num_codes=model.vocabulary(),
            seq_len=math.prod(model.code_map_shape()),
            width=c.prior_width,
            depth=c.prior_depth,
            heads=c.prior_heads,
        )
        prior_model.validate()
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "loss_fn", loss_fn)
        object.__setattr__(self, "prior_model", prior_model)

    # The VQ-VAE alone, in the engine's stateful form. -------------------------------------

    def init(self, rng: jax.Array, batch: dict) -> Any:
        """The VQ-VAE's parameters (:meth:`VQVAELoss.init`)."""
        return self.loss_fn.init(rng, batch)

    def init_model_state(self, rng: jax.Array, batch: dict, params: Any) -> CodebookState:
        """The codebook state (:meth:`VQVAELoss.init_model_state`)."""
        return self.loss_fn.init_model_state(rng, batch, params)

    def loss(
        self, params: Any, state: CodebookState, batch: dict, rng: jax.Array
    ) -> tuple[jax.Array, tuple[dict, CodebookState]]:
        """``(loss, (metrics, new_state))`` of the VQ-VAE (:meth:`VQVAELoss.loss`)."""
        return self.loss_fn.loss(params, state, batch, rng)

    # Tasks. ---------------------------------------------------------------------------------

    def task(self, optimizer: optax.GradientTransformation) -> Task:
        """The VQ-VAE alone with ``optimizer``: one stateful player ``"model"``.

        Only for ``prior_steps=0``; a configuration with a prior phase trains with
        :meth:`run_task` or :meth:`two_phase_task`, which know where the phases split.
        """
        if self.config.prior_steps:
            raise ValueError(
                f"{self.config._label('prior_steps')}={self.config.prior_steps}: the VQ-VAE "
                "and its prior train in two phases; build the task with run_task(make_optimizer, "
                "steps) or two_phase_task(optimizer, prior_optimizer, vq_steps), or set "
                "prior_steps=0 to train the VQ-VAE alone"
            )
        return Task.from_loss(
            self.loss_fn.init,
            self.loss_fn.loss,
            optimizer,
            stateful=True,
            init_model_state=self.loss_fn.init_model_state,
        )

    def run_task(self, make_optimizer: OptimizerFactory, steps: int) -> Task:
        """The task of a ``steps``-update run.

        ``prior_steps=0``: :meth:`task` with ``make_optimizer(steps, None)``. Otherwise
        :meth:`two_phase_task` with ``vq_steps = steps - prior_steps``, the VQ-VAE's
        optimizer ``make_optimizer(vq_steps, None)`` and the prior's Adam at
        ``prior_learning_rate`` cosine-decayed to 0 over ``prior_steps``; ``ValueError``
        unless ``steps > prior_steps``.
        """
        steps = check_int("VQVAEObjective.run_task: steps", steps, 1)
        prior_steps = self.config.prior_steps
        if not prior_steps:
            return self.task(make_optimizer(steps, None))
        if steps <= prior_steps:
            raise ValueError(
                f"{self.config._label('prior_steps')} ({prior_steps}) must be less than the "
                f"run's steps ({steps}): the VQ-VAE trains for the difference"
            )
        vq_steps = steps - prior_steps
        schedule = optax.cosine_decay_schedule(self.config.prior_learning_rate, prior_steps)
        return self.two_phase_task(make_optimizer(vq_steps, None), optax.adam(schedule), vq_steps)

    def two_phase_task(
        self,
        optimizer: optax.GradientTransformation,
        prior_optimizer: optax.GradientTransformation,
        vq_steps: int,
    ) -> Task:
        """The VQ-VAE for ``vq_steps`` applied updates, then its prior (see the class docstring).

        Args:
          optimizer: the VQ-VAE's optimizer (its schedule should span ``vq_steps``); applied
            on updates ``[0, vq_steps)`` only.
          prior_optimizer: the prior's optimizer (its schedule counts from the first update
            of the prior phase); applied from update ``vq_steps`` on.
          vq_steps: ``>= 1``, the length of the VQ-VAE's phase.

        Returns:
          A :class:`~genjax.task.Task` with players ``"vqvae"`` and ``"prior"``; its
          parameters are ``{"vqvae": ..., "prior": ...}`` and its model state
          ``{"vq": CodebookState, "updates": int32}``.
        """
        phase1 = check_int("VQVAEObjective.two_phase_task: vq_steps", vq_steps, 1)
        model, objective, eps = self.model, self.loss_fn, self.config.epsilon
        prior_model = self.prior_model
        prior_objective = P.PriorLoss(prior_model)

        def init(rng, batch):
            vq_key, prior_key = jax.random.split(rng)
            codes = jnp.zeros((1, prior_model.seq_len), jnp.int32)
            return {
                VQ_PLAYER: objective.init(vq_key, batch),
                PRIOR_PLAYER: prior_objective.init(prior_key, {"codes": codes}),
            }

        def init_model_state(rng, batch, params):
            return {
                "vq": objective.init_model_state(rng, batch, params[VQ_PLAYER]),
                "updates": jnp.zeros((), jnp.int32),
            }

        def vq_loss(params, ms, batch, rng):
            def train(_):
                loss, (metrics, state) = objective.loss(params[VQ_PLAYER], ms["vq"], batch, rng)
                return loss, metrics, state

            def frozen(_):  # phase 2: metrics of the frozen model, no gradient, state unchanged
                p = lax.stop_gradient(params[VQ_PLAYER])
                loss, (metrics, _) = objective.loss(p, ms["vq"], batch, rng)
                frozen_metrics = {**metrics, "restarted_codes": jnp.float32(0)}
                return jnp.zeros_like(loss), frozen_metrics, ms["vq"]

            loss, metrics, state = lax.cond(ms["updates"] < phase1, train, frozen, None)
            return loss, (metrics, {**ms, "vq": state})

        def prior_loss(params, ms, batch, rng):
            def train(_):
                vq = lax.stop_gradient(params[VQ_PLAYER])
                codes = encode_indices(model, vq, ms["vq"], batch["x"], epsilon=eps)
                return prior_objective.loss(params[PRIOR_PLAYER], {"codes": codes}, rng)

            def idle(_):  # phase 1: nothing to compute (metrics read 0)
                return jnp.zeros(()), {"bits_per_code": jnp.zeros(())}

            loss, metrics = lax.cond(ms["updates"] >= phase1, train, idle, None)
            return loss, (metrics, ms)

        def post_update(params, ms, step):
            del params, step
            return {**ms, "updates": ms["updates"] + 1}

        vq_optimizer = optax.conditionally_mask(optimizer, lambda count: count < phase1)
        masked_prior = optax.conditionally_mask(prior_optimizer, lambda count: count >= phase1)
        return Task(
            init=init,
            players=(
                Player(VQ_PLAYER, vq_loss, vq_optimizer, stateful=True),
                Player(PRIOR_PLAYER, prior_loss, masked_prior, stateful=True),
            ),
            init_model_state=init_model_state,
            post_update=post_update,
        )

    # The model's functions on the engine's parameters. -------------------------------------

    def functions(self) -> tuple[str, ...]:
        """The contract's ``sample``, ``encode``, ``decode``, ``reconstruct``, and
        ``sample_codes``, ``codebook``, ``prior_bits_per_code``."""
        return (*super().functions(), "sample_codes", "codebook", "prior_bits_per_code")

    def vq_parts(self, params: Mapping[str, Any], model_state: Any) -> tuple[Any, CodebookState]:
        """The VQ-VAE's own parameters and :class:`CodebookState` in the engine's ``params``
        and ``model_state`` of either task."""
        if not isinstance(params, Mapping):
            raise ValueError(
                f"VQVAEObjective: params must be the engine's dict of players, got "
                f"{type(params).__name__}"
            )
        if VQ_PLAYER in params:
            return params[VQ_PLAYER], model_state["vq"]
        if SINGLE in params:
            return params[SINGLE], model_state
        raise ValueError(
            f"VQVAEObjective: params must hold player {VQ_PLAYER!r} or {SINGLE!r}, got keys "
            f"{sorted(params)}"
        )

    def codebook(self, params: Mapping[str, Any], model_state: Any) -> jax.Array:
        """The current codes (:func:`codebook`): ``[K, d]``, RVQ ``[N, K, d]``, FSQ the grid."""
        p, state = self.vq_parts(params, model_state)
        return codebook(self.model, p, state, self.config.epsilon)

    def encode(self, params: Mapping[str, Any], model_state: Any, x: Any) -> jax.Array:
        """Code maps of ``x``: int32 ``[B, *model.code_map_shape()]``."""
        p, state = self.vq_parts(params, model_state)
        return encode_indices(self.model, p, state, x, epsilon=self.config.epsilon)

    def decode(self, params: Mapping[str, Any], model_state: Any, codes: Any) -> jax.Array:
        """Code maps ``[B, *code_map_shape]`` (int) decoded to inputs ``[B, *info.shape]``."""
        p, state = self.vq_parts(params, model_state)
        return decode_indices(self.model, p, state, codes, epsilon=self.config.epsilon)

    def reconstruct(self, params: Mapping[str, Any], model_state: Any, x: Any) -> jax.Array:
        """``decode(quantize(encode(x)))``: ``[B, *info.shape]``."""
        p, state = self.vq_parts(params, model_state)
        return reconstruct(self.model, p, state, x, epsilon=self.config.epsilon)

    def _prior_params(self, params: Mapping[str, Any]) -> Any:
        if not isinstance(params, Mapping) or PRIOR_PLAYER not in params:
            keys = sorted(params) if isinstance(params, Mapping) else type(params).__name__
            raise ValueError(
                f"VQVAEObjective: these parameters hold no prior (players {keys}; a VQ-VAE "
                "trained with prior_steps=0 does not generate); train with run_task or "
                "two_phase_task"
            )
        return params[PRIOR_PLAYER]

    def sample_codes(
        self,
        params: Mapping[str, Any],
        model_state: Any,
        rng: jax.Array,
        n: int,
        *,
        temperature: float = 1.0,
    ) -> jax.Array:
        """``n`` code maps drawn from the prior: int32 ``[n, *model.code_map_shape()]``."""
        del model_state
        codes = P.sample(
            self.prior_model, self._prior_params(params), rng, n, temperature=temperature
        )
        return codes.reshape(n, *self.model.code_map_shape())

    def sample(
        self,
        params: Mapping[str, Any],
        model_state: Any,
        rng: jax.Array,
        n: int,
        *,
        temperature: float = 1.0,
    ) -> jax.Array:
        """``n`` prior samples decoded: ``[n, *info.shape]`` (prior at ``temperature``)."""
        codes = self.sample_codes(params, model_state, rng, n, temperature=temperature)
        return self.decode(params, model_state, codes)

    def code_statistics(self, indices: Any) -> dict[str, jax.Array]:
        """``code_usage`` and ``perplexity`` of code maps (:func:`code_statistics`)."""
        return code_statistics(self.model, indices)

    def prior_bits_per_code(
        self, params: Mapping[str, Any], model_state: Any, codes: Any
    ) -> jax.Array:
        """The prior's negative log-likelihood of code maps ``[B, ...]``, bits per code."""
        del model_state
        codes = jnp.asarray(codes)
        flat = codes.reshape(codes.shape[0], -1)
        return P.bits_per_code(self.prior_model, self._prior_params(params), flat)
