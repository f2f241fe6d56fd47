"""Reference density models for binary data, to set a generative model's test NLL against.

Two baselines whose log-likelihood is exact (no bound), for ``x`` in ``{0, 1}^D``:

* **Independent Bernoulli pixels**: ``p(x) = prod_j p_j^{x_j} (1 - p_j)^{1 - x_j}``, fitted
  by its posterior mean under a symmetric Beta(``a``, ``a``) prior (``a = pseudocount``):
  ``p_j = (sum_n x_nj + a) / (N + 2 a)``; ``a = 1`` is Laplace's rule. Smoothing keeps the
  test likelihood finite for a pixel that is constant in the training set.
* **Mixture of Bernoulli products** (a latent-class model): ``p(x) = sum_k pi_k prod_j
  Bernoulli(x_j; p_kj)``, fitted by EM (Dempster, Laird & Rubin, 1977; see Bishop, *Pattern
  Recognition and Machine Learning*, 2006, section 9.3.3). The M-step is the MAP update under
  a Beta(``1 + a``, ``1 + a``) prior on each ``p_kj`` and a symmetric Dirichlet(``1 + a``) prior on
  ``pi``::

      r_nk = pi_k p(x_n | k) / sum_l pi_l p(x_n | l)                      (E-step)
      N_k = sum_n r_nk,   p_kj = (sum_n r_nk x_nj + a) / (N_k + 2 a),
      pi_k = (N_k + a) / (N + K a)                                        (M-step)

  so every EM step increases the log posterior ``sum_n log p(x_n) + log prior`` (never
  decreases it); with ``a = 0`` it is plain maximum-likelihood EM. Several restarts run
  together (``vmap``) and the one with the highest final train objective is kept.

Log-likelihoods are in nats per example; ``-mean`` is the negative log-likelihood that
``genjax.eval.iwae_log_likelihood`` is compared with. Randomness is explicit (a ``jax.random``
key for the initialisation).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.scipy.special import logsumexp

__all__ = [
    "BernoulliMixture",
    "bernoulli_mixture_log_likelihood",
    "fit_bernoulli_mixture",
    "fit_independent_bernoulli",
    "independent_bernoulli_log_likelihood",
]


def _as_binary(x: Any, name: str = "x") -> jax.Array:
    """Checks ``x`` is ``[N, D]`` (``N >= 1``) with every value 0 or 1; returns float32."""
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(
            f"{name} must be a 2-D array [num_examples, num_pixels] with at least one row and "
            f"column (flatten images first), got shape {arr.shape}"
        )
    if not np.all((arr == 0) | (arr == 1)):
        bad = arr[(arr != 0) & (arr != 1)]
        raise ValueError(
            f"{name} must be binary (every value 0 or 1; binarise the data first), got "
            f"{bad.size} other value(s), e.g. {bad.flat[0].item()!r}"
        )
    return jnp.asarray(arr, jnp.float32)


def _check_pseudocount(a: Any) -> float:
    if isinstance(a, bool) or not isinstance(a, int | float) or not (a >= 0 and np.isfinite(a)):
        raise ValueError(f"pseudocount must be a finite number >= 0, got {a!r}")
    return float(a)


# --------------------------------------------------------------------------------------------
# Independent Bernoulli pixels
# --------------------------------------------------------------------------------------------


def fit_independent_bernoulli(x: Any, *, pseudocount: float = 1.0) -> jax.Array:
    """``p_j = (sum_n x_nj + a) / (N + 2 a)``: ``[D]`` pixel probabilities.

    Args:
      x: ``[N, D]`` binary training data.
      pseudocount: ``a >= 0`` (1: Laplace's rule; 0: the maximum-likelihood frequencies, which
        give ``-inf`` test log-likelihood on a pixel never seen on or off in training).

    Example:
      >>> from genjax import eval as ev
      >>> x = [[1, 0], [1, 1], [0, 0]]
      >>> ev.fit_independent_bernoulli(x)  # Laplace: (2 + 1) / (3 + 2), (1 + 1) / (3 + 2)
      Array([0.6, 0.4], dtype=float32)
    """
    x = _as_binary(x)
    a = _check_pseudocount(pseudocount)
    return (jnp.sum(x, axis=0) + a) / (x.shape[0] + 2.0 * a)


def _log_probs(p: jax.Array) -> tuple[jax.Array, jax.Array]:
    return jnp.log(p), jnp.log1p(-p)


def independent_bernoulli_log_likelihood(probs: Any, x: Any) -> jax.Array:
    """``log p(x_n) = sum_j x_nj log p_j + (1 - x_nj) log(1 - p_j)`` per example, ``[N]``.

    Args:
      probs: ``[D]`` pixel probabilities in ``[0, 1]``.
      x: ``[N, D]`` binary data.

    Example:
      >>> from genjax import eval as ev
      >>> ll = ev.independent_bernoulli_log_likelihood([0.5, 0.9], [[1, 1], [0, 0]])
      >>> [round(v, 4) for v in ll.tolist()]  # log 0.5 + log 0.9, log 0.5 + log 0.1
      [-0.7985, -2.9957]
    """
    x = _as_binary(x)
    p = jnp.asarray(probs, jnp.float32)
    if p.shape != (x.shape[1],):
        raise ValueError(f"probs must have shape [D] = ({x.shape[1]},), got {p.shape}")
    log_p, log_1mp = _log_probs(p)
    # Written as a sum of selected terms (not x * log p), so that 0 * log 0 is 0, not NaN.
    return jnp.sum(jnp.where(x > 0.5, log_p, log_1mp), axis=1)


# --------------------------------------------------------------------------------------------
# Mixture of Bernoulli products, by EM
# --------------------------------------------------------------------------------------------


@struct.dataclass
class BernoulliMixture:
    """A mixture of ``K`` products of ``D`` Bernoullis (a pytree).

    Attributes:
      log_weights: ``[K]`` log mixing weights ``log pi_k``.
      probs: ``[K, D]`` pixel probabilities ``p_kj`` of each component.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from genjax import eval as ev
      >>> mixture = ev.BernoulliMixture(log_weights=jnp.log(jnp.array([0.5, 0.5])),
      ...                               probs=jnp.array([[0.9, 0.9], [0.1, 0.1]]))
      >>> jax.tree.map(jnp.shape, mixture)  # a pytree
      BernoulliMixture(log_weights=(2,), probs=(2, 2))
    """

    log_weights: jax.Array
    probs: jax.Array


def _component_log_likelihood(probs: jax.Array, x: jax.Array) -> jax.Array:
    """``log p(x_n | k)`` ``[N, K]`` as two matmuls (``x log p + (1 - x) log(1 - p)``)."""
    log_p, log_1mp = _log_probs(probs)
    hp = jax.lax.Precision.HIGHEST
    return jnp.matmul(x, log_p.T, precision=hp) + jnp.matmul(1.0 - x, log_1mp.T, precision=hp)


def _joint(mix: BernoulliMixture, x: jax.Array) -> jax.Array:
    return mix.log_weights[None, :] + _component_log_likelihood(mix.probs, x)


def bernoulli_mixture_log_likelihood(mixture: BernoulliMixture, x: Any) -> jax.Array:
    """``log p(x_n) = logsumexp_k(log pi_k + log p(x_n | k))`` per example, ``[N]``.

    Args:
      mixture: a :class:`BernoulliMixture` with probabilities strictly inside ``(0, 1)`` (as
        :func:`fit_bernoulli_mixture` returns for ``pseudocount > 0``).
      x: ``[N, D]`` binary data.

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import eval as ev
      >>> mixture = ev.BernoulliMixture(log_weights=jnp.log(jnp.array([0.5, 0.5])),
      ...                               probs=jnp.array([[0.9, 0.9], [0.1, 0.1]]))
      >>> ll = ev.bernoulli_mixture_log_likelihood(mixture, [[1, 1]])
      >>> round(float(ll[0]), 4)  # log(0.5 * 0.9^2 + 0.5 * 0.1^2)
      -0.8916
    """
    x = _as_binary(x)
    if mixture.probs.ndim != 2 or mixture.probs.shape[1] != x.shape[1]:
        raise ValueError(
            f"mixture.probs must have shape [K, D] with D = {x.shape[1]} (x.shape[1]), "
            f"got {mixture.probs.shape}"
        )
    return logsumexp(_joint(mixture, x), axis=1)


def _log_prior(mix: BernoulliMixture, a: float) -> jax.Array:
    """``log`` of the Beta(1+a, 1+a) x Dirichlet(1+a) prior density, up to a constant."""
    log_p, log_1mp = _log_probs(mix.probs)
    return a * (jnp.sum(log_p) + jnp.sum(log_1mp) + jnp.sum(mix.log_weights))


def _em_step(mix: BernoulliMixture, x: jax.Array, a: float):
    joint = _joint(mix, x)  # [N, K]
    log_px = logsumexp(joint, axis=1)
    resp = jnp.exp(joint - log_px[:, None])
    n, k = x.shape[0], mix.probs.shape[0]
    counts = jnp.sum(resp, axis=0)  # N_k
    hits = jnp.matmul(resp.T, x, precision=jax.lax.Precision.HIGHEST)  # [K, D]
    probs = (hits + a) / (counts[:, None] + 2.0 * a)
    # Keep p strictly inside (0, 1) when a = 0, so that logs stay finite.
    eps = 1e-7
    probs = jnp.clip(probs, eps, 1.0 - eps)
    weights = (counts + a) / (n + k * a)
    new = BernoulliMixture(log_weights=jnp.log(jnp.maximum(weights, 1e-30)), probs=probs)
    objective = jnp.sum(log_px) + _log_prior(mix, a)
    return new, objective


@functools.partial(jax.jit, static_argnames=("num_components", "steps", "restarts"))
def _fit_mixture(x, rng, num_components, steps, restarts, a):
    n, _ = x.shape
    mean = jnp.mean(x, axis=0)

    def init(key):
        # Each component starts between a random training example and the data mean.
        idx = jax.random.choice(key, n, (num_components,), replace=False)
        probs = jnp.clip(0.5 * x[idx] + 0.5 * mean, 0.05, 0.95)
        return BernoulliMixture(
            log_weights=jnp.full((num_components,), -jnp.log(num_components)), probs=probs
        )

    def run(key):
        def body(mix, _):
            new, objective = _em_step(mix, x, a)
            return new, objective

        mix, trace = jax.lax.scan(body, init(key), None, length=steps)
        _, final = _em_step(mix, x, a)  # the objective at the returned parameters
        return mix, jnp.concatenate([trace, final[None]])

    mixes, traces = jax.vmap(run)(jax.random.split(rng, restarts))
    best = jnp.argmax(traces[:, -1])
    return jax.tree.map(lambda t: t[best], mixes), traces[best] / n


def fit_bernoulli_mixture(
    x: Any,
    num_components: int = 20,
    *,
    rng: jax.Array,
    steps: int = 200,
    restarts: int = 4,
    pseudocount: float = 1.0,
) -> tuple[BernoulliMixture, jax.Array]:
    """Fit a mixture of ``K`` Bernoulli products to binary data by EM (MAP, see module doc).

    Args:
      x: ``[N, D]`` binary training data.
      num_components: ``K >= 1`` (``K = 1`` is :func:`fit_independent_bernoulli` after one
        step).
      rng: ``jax.random`` key for the initialisation (each restart starts from ``K`` distinct
        training examples, averaged half-and-half with the data mean).
      steps: EM iterations ``>= 1``.
      restarts: independent initialisations; the best final train objective wins.
      pseudocount: ``a >= 0`` of the priors (0 = maximum likelihood).

    Returns:
      ``(mixture, trace)``: the fitted :class:`BernoulliMixture` and, for the kept restart,
      the per-example train objective ``(sum_n log p(x_n) + log prior) / N`` at each of the
      ``steps + 1`` parameter values visited (the initial one first), non-decreasing up to
      rounding.

    Example:
      >>> import jax, numpy as np
      >>> from genjax import eval as ev
      >>> x = np.array([[1, 1, 0, 0]] * 10 + [[0, 0, 1, 1]] * 10)  # two patterns
      >>> mixture, trace = ev.fit_bernoulli_mixture(x, 2, rng=jax.random.key(0), steps=10)
      >>> mixture.probs.shape, trace.shape, bool(np.all(np.diff(trace) > -1e-5))  # EM never loses
      ((2, 4), (11,), True)
      >>> mixture_ll = ev.bernoulli_mixture_log_likelihood(mixture, x).mean()
      >>> independent = ev.fit_independent_bernoulli(x)  # every pixel 1/2
      >>> bool(mixture_ll > ev.independent_bernoulli_log_likelihood(independent, x).mean())
      True
    """
    x = _as_binary(x)
    n = x.shape[0]
    for name, value in (("num_components", num_components), ("steps", steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise ValueError(f"restarts must be an int >= 1, got {restarts!r}")
    if num_components > n:
        raise ValueError(
            f"num_components must be <= the number of examples ({n}), got {num_components}"
        )
    a = _check_pseudocount(pseudocount)
    return _fit_mixture(x, rng, num_components, steps, restarts, a)
