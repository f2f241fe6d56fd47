"""Log-likelihood estimates of latent-variable models by importance sampling, in bounded memory.

:func:`iwae_log_likelihood` estimates ``log p(x)`` of each example with the importance-weighted
bound of Burda, Grosse & Salakhutdinov (2016, eq. 8),

    L_K(x) = log (1/K) sum_{k=1..K} p(x | z_k) p(z_k) / q(z_k | x),    z_k ~ q(z | x),

which satisfies ``E[L_1] = ELBO <= E[L_K] <= E[L_{K+1}] <= log p(x)`` and tends to ``log p(x)``
as ``K -> infinity``. The usual reporting protocol (Burda et al., 2016, section 5) uses
``K = 5000`` and states the result as a negative log-likelihood in nats per example,
``NLL = -(1/N) sum_n L_K(x_n)``.

Memory: the ``K`` samples are drawn in chunks of ``chunk_size`` and the examples in batches of
``batch_size``, so the model only ever evaluates ``chunk_size * batch_size`` latent samples at
once, whatever ``K`` and ``N``. Chunks are combined exactly: with ``L^{(c)}`` the bound of
chunk ``c`` of size ``k_c`` (from ``losses.iwae_bound``),
``L_K = logsumexp_c(L^{(c)} + log k_c) - log K``, which is the same number the ``K`` weights
would give at once (up to float rounding).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from genjax import losses as L
from genjax._checks import check_int as _check_int

__all__ = ["iwae_log_likelihood", "mean_and_stderr"]

#: ``log_weights_fn(x_batch, rng, k) -> (log p(x|z_k), log p(z_k), log q(z_k|x))``, each
#: ``[k, b]`` for a batch ``x_batch`` of ``b`` examples and ``k`` draws ``z_k ~ q(z | x)``.
LogWeightsFn = Callable[[jax.Array, jax.Array, int], tuple[jax.Array, jax.Array, jax.Array]]


def iwae_log_likelihood(
    log_weights_fn: LogWeightsFn,
    x: Any,
    rng: jax.Array,
    *,
    num_samples: int = 5000,
    chunk_size: int = 500,
    batch_size: int = 32,
) -> jax.Array:
    """``L_K(x_n)`` for every example: the importance-weighted estimate of ``log p(x_n)``.

    Args:
      log_weights_fn: ``(x_batch [b, ...], rng, k) -> (log_px_given_z, log_pz, log_qz_given_x)``
        each ``[k, b]`` (e.g. ``functools.partial(genjax.models.vae.log_weights, model,
        params)``). Must be traceable: it is called inside ``jax.jit`` and ``lax.scan``.
      x: ``[N, ...]`` examples.
      rng: a ``jax.random`` key. Batch ``i`` uses ``fold_in(rng, i)`` and its chunk ``c``
        ``fold_in(fold_in(rng, i), c)``.
      num_samples: ``K >= 1`` importance samples per example (5000 for reporting).
      chunk_size: samples evaluated together (``<= K``; the last chunk takes the remainder).
      batch_size: examples evaluated together (the last batch is padded, padding discarded).

    Returns:
      float32 ``[N]`` values of ``L_K`` (nats; ``-mean`` is the NLL per example).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from genjax import eval as ev
      >>> def log_weights(x_batch, rng, k):  # every weight is N(x; 0, 1): L_K = log N(x; 0, 1)
      ...     log_px = -0.5 * (x_batch**2 + jnp.log(2 * jnp.pi))
      ...     log_px = jnp.broadcast_to(log_px, (k, x_batch.shape[0]))
      ...     return log_px, jnp.zeros_like(log_px), jnp.zeros_like(log_px)
      >>> ll = ev.iwae_log_likelihood(log_weights, jnp.array([0.0, 1.0, 2.0]), jax.random.key(0),
      ...                             num_samples=100, chunk_size=30, batch_size=2)
      >>> [round(v, 4) for v in ll.tolist()]
      [-0.9189, -1.4189, -2.9189]
    """
    num_samples = _check_int("num_samples", num_samples)
    chunk_size = min(_check_int("chunk_size", chunk_size), num_samples)
    batch_size = _check_int("batch_size", batch_size)
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"x must hold at least one example [N, ...], got shape {x.shape}")
    n = x.shape[0]
    batch_size = min(batch_size, n)
    full_chunks, remainder = divmod(num_samples, chunk_size)

    def chunk_term(xb, key, k):
        log_px, log_pz, log_qz = log_weights_fn(xb, key, k)
        expected = (k, xb.shape[0])
        for name, term in (("log_px_given_z", log_px), ("log_pz", log_pz), ("log_qz", log_qz)):
            if tuple(jnp.shape(term)) != expected:
                raise ValueError(
                    f"log_weights_fn must return [k, b] = {list(expected)} arrays, "
                    f"got {name} of shape {tuple(jnp.shape(term))}"
                )
        # L^{(c)} + log k_c = logsumexp of the chunk's log-weights.
        return L.iwae_bound(log_px, log_pz, log_qz) + math.log(k)

    @jax.jit
    def batch_estimate(xb, key):
        def body(acc, c):
            term = chunk_term(xb, jax.random.fold_in(key, c), chunk_size)
            return jnp.logaddexp(acc, term), None

        acc = jnp.full((xb.shape[0],), -jnp.inf, jnp.float32)
        acc, _ = jax.lax.scan(body, acc, jnp.arange(full_chunks))
        if remainder:
            term = chunk_term(xb, jax.random.fold_in(key, full_chunks), remainder)
            acc = jnp.logaddexp(acc, term)
        return acc - math.log(num_samples)

    out = []
    for i, start in enumerate(range(0, n, batch_size)):
        xb = x[start : start + batch_size]
        real = xb.shape[0]
        if real < batch_size:  # pad to keep one compiled shape
            xb = jnp.concatenate([xb, jnp.repeat(xb[-1:], batch_size - real, axis=0)])
        out.append(batch_estimate(xb, jax.random.fold_in(rng, i))[:real])
    return jnp.concatenate(out)


def mean_and_stderr(values: Any) -> tuple[float, float]:
    """The mean of per-example values and its standard error ``std / sqrt(N)`` (``ddof=1``).

    Example:
      >>> from genjax import eval as ev
      >>> mean, stderr = ev.mean_and_stderr([1.0, 2.0, 3.0])  # std 1 (ddof=1), N = 3
      >>> mean, round(stderr, 4)
      (2.0, 0.5774)
    """
    v = np.asarray(values, np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError("values must hold at least one number, got an empty array")
    err = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")
    return float(v.mean()), err
