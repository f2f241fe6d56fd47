"""Probabilistic PCA (Tipping & Bishop, 1999).

The model, with ``D`` the data dimension and ``q`` the latent dimension (``1 <= q < D``)::

    z ~ N(0, I_q)
    x | z ~ N(W z + mu, sigma2 I_D)            W [D, q], mu [D], sigma2 > 0 scalar
    x ~ N(mu, C),   C = W W^T + sigma2 I_D     (the marginal, by integrating z out)
    z | x ~ N(M^{-1} W^T (x - mu), sigma2 M^{-1}),   M = W^T W + sigma2 I_q

Reference: M. E. Tipping and C. M. Bishop, "Probabilistic Principal Component Analysis",
Journal of the Royal Statistical Society B 61(3), 611-622, 1999 ("T&B" below; equation numbers
are theirs).

The fitted parameters are one type, :class:`PPCAParams` (``W``, ``mu``, ``sigma2``). Three ways
to fit:

* :func:`fit_closed_form` -- the maximum-likelihood solution (T&B eqs. 7-8) from the spectrum of
  the sample covariance, obtained from a thin SVD of the centred data or from the smaller Gram
  matrix, never from a ``D x D`` matrix when ``N < D``.
* :func:`fit_em` -- T&B's EM updates (eqs. 29-30), jit-compiled as one ``lax.scan``.
* gradients -- :class:`PPCAConfig` ``.objective(info)`` (a :class:`PPCAObjective`: the Flax
  module :class:`PPCA`, :func:`init` / :func:`objective` and the engine's task), as every
  family of :mod:`genjax.models.base`.

Inference and generation take the model first, as in every family: ``(model, params, ...)``,
then data, then ``rng`` -- :func:`posterior`, :func:`encode`, :func:`reconstruct`,
:func:`log_likelihood`, :func:`sample`. ``model`` is a :class:`PPCA` module (``D``, ``q`` and
the ``sigma2`` floor); ``params`` is a :class:`PPCAParams` (from a fit) or the module's
variables (what gradient training holds, read with the model's floor), and must match the
model's shapes::

    params = fit_closed_form(x, latent_dim=10)
    model = PPCA(data_dim=x.shape[1], latent_dim=10)
    samples = sample(model, params, jax.random.key(0), 100)

Model selection: :func:`select_latent_dim`.

Public functions validate concrete inputs (shapes, ``latent_dim`` range, number of examples,
NaN/inf) and raise ``ValueError`` naming the problem; under ``jax.jit`` tracing only the shape
checks run.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from flax import struct

from genjax import losses as L
from genjax._checks import check_int
from genjax._checks import is_concrete as _is_concrete
from genjax.models.base import DataInfo, ModelConfig, Objective, single
from genjax.task import Task

__all__ = [
    "PPCA",
    "SIGMA2_FLOOR",
    "PPCAConfig",
    "PPCAObjective",
    "PPCAParams",
    "encode",
    "fit_closed_form",
    "fit_em",
    "init",
    "log_likelihood",
    "objective",
    "params_from_variables",
    "posterior",
    "reconstruct",
    "sample",
    "select_latent_dim",
    "variables_from_params",
]

#: Lower bound added to the softplus of the unconstrained noise parameter in :class:`PPCA`.
SIGMA2_FLOOR = 1e-6

_LOG_2PI = math.log(2.0 * math.pi)


@struct.dataclass
class PPCAParams:
    """PPCA parameters, a pytree (passes through ``jit``, ``vmap``, ``tree_map``).

    Attributes:
      W: ``[D, q]`` float, the factor loadings; the columns span the principal subspace.
      mu: ``[D]`` float, the data mean.
      sigma2: ``[]`` float, the isotropic noise variance (``> 0``).
    """

    W: jax.Array
    mu: jax.Array
    sigma2: jax.Array

    @property
    def data_dim(self) -> int:
        """``D``."""
        return self.W.shape[0]

    @property
    def latent_dim(self) -> int:
        """``q``."""
        return self.W.shape[1]

    def covariance(self) -> jax.Array:
        """The marginal covariance ``C = W W^T + sigma2 I``, ``[D, D]`` (forms a ``D x D``)."""
        return self.W @ self.W.T + self.sigma2 * jnp.eye(self.data_dim, dtype=self.W.dtype)


# --------------------------------------------------------------------------------------------
# Input validation (public boundary)
# --------------------------------------------------------------------------------------------


def _as_data(x: Any, name: str = "x") -> jax.Array:
    """Checks that ``x`` is a finite 2-D array ``[N, D]`` and returns it as a float jax array."""
    if not hasattr(x, "ndim"):
        x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array [num_examples, data_dim]; got shape {tuple(x.shape)}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = jnp.asarray(x, dtype=jnp.result_type(float))
    x = jnp.asarray(x)
    if _is_concrete(x) and not bool(jnp.all(jnp.isfinite(x))):
        n_nan = int(jnp.sum(jnp.isnan(x)))
        n_inf = int(jnp.sum(jnp.isinf(x)))
        raise ValueError(
            f"{name} must be finite; got {n_nan} NaN and {n_inf} infinite values "
            f"in an array of shape {tuple(x.shape)}"
        )
    return x


def _check_latent_dim(latent_dim: Any, data_dim: int, num_examples: int | None) -> int:
    """Checks ``1 <= latent_dim < data_dim`` and, when fitting, ``num_examples >= latent_dim + 2``.

    Returns ``latent_dim`` as a Python int.
    """
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, int | np.integer):
        raise ValueError(f"latent_dim must be an int; got {latent_dim!r}")
    q = int(latent_dim)
    if q < 1:
        raise ValueError(f"latent_dim must be >= 1; got latent_dim={q}")
    if q >= data_dim:
        raise ValueError(
            f"latent_dim must be < data_dim (PPCA needs at least one discarded direction for "
            f"the noise variance); got latent_dim={q}, data_dim={data_dim}"
        )
    if num_examples is not None:
        if num_examples < 2:
            raise ValueError(
                f"fitting PPCA needs at least 2 examples (the covariance of 1 example is 0); "
                f"got {num_examples} example(s)"
            )
        if num_examples < q + 2:
            raise ValueError(
                f"fitting PPCA with latent_dim={q} needs at least latent_dim + 2 = {q + 2} "
                f"examples: centred data have rank <= num_examples - 1, and with "
                f"latent_dim >= num_examples - 1 the ML noise variance is 0; "
                f"got {num_examples} examples"
            )
    return q


def _check_params(params: PPCAParams, data_dim: int | None = None) -> None:
    if not isinstance(params, PPCAParams):
        raise ValueError(
            f"params must be a PPCAParams or PPCA variables; got {type(params).__name__}"
        )
    W, mu, sigma2 = params.W, params.mu, params.sigma2
    if W.ndim != 2:
        raise ValueError(f"params.W must be 2-D [data_dim, latent_dim]; got shape {W.shape}")
    if mu.shape != (W.shape[0],):
        raise ValueError(
            f"params.mu must have shape [data_dim] = ({W.shape[0]},) to match params.W "
            f"{W.shape}; got {mu.shape}"
        )
    if jnp.shape(sigma2) != ():
        raise ValueError(f"params.sigma2 must be a scalar; got shape {jnp.shape(sigma2)}")
    if _is_concrete(sigma2) and not float(sigma2) > 0.0:
        raise ValueError(f"params.sigma2 must be > 0; got {float(sigma2)}")
    if data_dim is not None and W.shape[0] != data_dim:
        raise ValueError(
            f"x has data_dim={data_dim} but params are for data_dim={W.shape[0]} "
            f"(params.W has shape {W.shape})"
        )


def _check_model(model: Any) -> PPCA:
    """Checks that ``model`` is a :class:`PPCA` module with ``1 <= latent_dim < data_dim``."""
    if not isinstance(model, PPCA):
        raise ValueError(
            f"model must be a ppca.PPCA module (e.g. PPCAObjective.model); "
            f"got {type(model).__name__}"
        )
    if isinstance(model.data_dim, bool) or not isinstance(model.data_dim, int | np.integer):
        raise ValueError(f"model.data_dim must be an int; got {model.data_dim!r}")
    _check_latent_dim(model.latent_dim, int(model.data_dim), None)
    return model


def _model_params(model: Any, params: Any) -> PPCAParams:
    """``params`` (a :class:`PPCAParams` or :class:`PPCA` variables) as :class:`PPCAParams`,
    checked against ``model``'s shapes."""
    _check_model(model)
    if isinstance(params, Mapping):
        params = params_from_variables(params, sigma2_floor=model.sigma2_floor)
    _check_params(params)
    want = (int(model.data_dim), int(model.latent_dim))
    if tuple(params.W.shape) != want:
        raise ValueError(
            f"params are for data_dim={params.data_dim}, latent_dim={params.latent_dim} "
            f"(params.W has shape {tuple(params.W.shape)}) but the model is "
            f"PPCA(data_dim={want[0]}, latent_dim={want[1]})"
        )
    return params


def _as_data_for(model: Any, params: Any, x: Any, name: str = "x") -> tuple[PPCAParams, jax.Array]:
    """Checks ``model``, ``params`` and data ``x`` ``[B, D]`` against each other."""
    params = _model_params(model, params)
    x = _as_data(x, name)
    _check_params(params, x.shape[1])
    return params, x


# --------------------------------------------------------------------------------------------
# Closed form (T&B section 3.2, eqs. 7-8)
# --------------------------------------------------------------------------------------------

Method = Literal["auto", "svd", "gram"]


def _resolve_method(method: str, n: int, d: int) -> str:
    if method not in ("auto", "svd", "gram"):
        raise ValueError(f"method must be 'auto', 'svd' or 'gram'; got {method!r}")
    if method == "auto":
        # Tall data (N >= 10 D): forming the D x D covariance is one matrix product and its
        # eigendecomposition is small; QR + SVD costs several times more (benchmarks/bench_ppca).
        # Otherwise the SVD, which does not square the condition number, is worth its cost.
        return "gram" if n >= 10 * d else "svd"
    return method


def _sign_fix(vecs: jax.Array) -> jax.Array:
    """Flips each column so that its largest-magnitude entry is positive (a canonical sign)."""
    idx = jnp.argmax(jnp.abs(vecs), axis=0)
    signs = jnp.sign(vecs[idx, jnp.arange(vecs.shape[1])])
    return vecs * jnp.where(signs == 0, 1.0, signs).astype(vecs.dtype)


@functools.partial(jax.jit, static_argnames=("method",))
def _spectrum(x: jax.Array, ddof: Any, method: str) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The non-trivial spectrum of ``S = Xc^T Xc / (N - ddof)``.

    Returns ``(mean [D], evals [K], evecs [D, K])`` with ``K = min(N, D)``, eigenvalues in
    descending order (clipped at 0), unit eigenvectors. When ``N < D`` the remaining ``D - K``
    eigenvalues of ``S`` are exactly 0 and their eigenvectors are never formed.
    """
    n, d = x.shape
    mean = jnp.mean(x, axis=0)
    xc = x - mean
    denom = n - ddof
    if method == "svd":
        # Xc = U diag(s) V^T  =>  S = V diag(s^2 / denom) V^T. For tall data, Xc = Q R first:
        # R [D, D] has the singular values and right singular vectors of Xc, and is cheaper to
        # decompose than Xc itself (and never materialises U [N, D]).
        a = jnp.linalg.qr(xc, mode="r") if n >= d else xc
        _, s, vt = jnp.linalg.svd(a, full_matrices=False)
        evals, evecs = s**2 / denom, vt.T
    elif n >= d:
        evals, evecs = jnp.linalg.eigh(xc.T @ xc / denom)
        evals, evecs = evals[::-1], evecs[:, ::-1]
    else:
        # Gram matrix G = Xc Xc^T / denom [N, N] has the same non-zero eigenvalues as S; if
        # G v = lam v then u = Xc^T v / sqrt(denom lam) is a unit eigenvector of S.
        evals, v = jnp.linalg.eigh(xc @ xc.T / denom)
        evals, v = evals[::-1], v[:, ::-1]
        tiny = jnp.finfo(x.dtype).tiny
        safe = jnp.where(evals > tiny, evals, 1.0)
        evecs = (xc.T @ v) * jnp.where(evals > tiny, 1.0 / jnp.sqrt(denom * safe), 0.0)
    evals = jnp.maximum(evals, 0.0)
    return mean, evals, _sign_fix(evecs)


@functools.partial(jax.jit, static_argnames=("data_dim", "latent_dim"))
def _params_from_spectrum(
    mean: jax.Array, evals: jax.Array, evecs: jax.Array, data_dim: int, latent_dim: int
) -> PPCAParams:
    """T&B eqs. 7-8 with R = I: ``W = U_q (L_q - sigma2 I)^{1/2}``, ``sigma2 = mean(L_{q+1..D})``.

    ``evals`` holds the top ``K`` eigenvalues; the ``D - K`` missing ones are 0, so the mean of
    the ``D - q`` discarded eigenvalues is ``sum(evals[q:]) / (D - q)`` (no cancellation, unlike
    ``(trace - sum(evals[:q])) / (D - q)``, which is the same number in exact arithmetic).
    """
    q = latent_dim
    sigma2 = jnp.sum(evals[q:]) / (data_dim - q)
    sigma2 = jnp.maximum(sigma2, jnp.finfo(evals.dtype).tiny)
    scale = jnp.sqrt(jnp.maximum(evals[:q] - sigma2, 0.0))
    return PPCAParams(W=evecs[:, :q] * scale, mu=mean, sigma2=sigma2)


@functools.partial(jax.jit, static_argnames=("latent_dim", "method"))
def _closed_form(x: jax.Array, latent_dim: int, ddof: Any, method: str) -> PPCAParams:
    mean, evals, evecs = _spectrum(x, ddof, method)
    return _params_from_spectrum(mean, evals, evecs, x.shape[1], latent_dim)


def fit_closed_form(
    x: Any, latent_dim: int, *, ddof: int = 0, method: Method = "auto"
) -> PPCAParams:
    """Maximum-likelihood PPCA in closed form (T&B eqs. 7-8, with the rotation R = I).

    With ``S = (1 / (N - ddof)) sum_n (x_n - mean)(x_n - mean)^T`` and its eigenvalues
    ``l_1 >= ... >= l_D`` (eigenvectors ``U``)::

        mu = mean(x),   sigma2 = (1 / (D - q)) sum_{j > q} l_j,
        W = U_q (diag(l_1..l_q) - sigma2 I)^{1/2}

    The mean in ``sigma2`` is over all ``D - q`` discarded eigenvalues, including the zeros that
    appear when ``N <= D`` (so ``sigma2 = (trace(S) - sum_{j<=q} l_j) / (D - q)``). Each column
    of ``W`` has its largest-magnitude entry positive (the eigenvector sign is otherwise free).

    Args:
      x: ``[N, D]`` float data (finite, ``N >= latent_dim + 2``).
      latent_dim: ``q``, an int with ``1 <= q < D``.
      ddof: the covariance divisor is ``N - ddof``. ``0`` (default) is the maximum-likelihood
        estimate. ``1`` reproduces the unbiased covariance that scikit-learn's ``PCA`` uses for
        ``explained_variance_`` and ``noise_variance_``, so ``log_likelihood(fit_closed_form(x,
        q, ddof=1), x).mean()`` equals ``sklearn.decomposition.PCA(q).fit(x).score(x)`` (for
        ``N > D``). The two are related exactly: with ``c = N / (N - 1)`` the ``ddof=1``
        covariance is ``c`` times the ML one, and since ``trace(C^{-1} S) = D`` at the ML
        solution, ``LL_ml - LL_ddof1 = (D / 2) (log c + 1 / c - 1) >= 0``.
      method: how the spectrum is computed. ``"svd"``: thin SVD of the centred data (after a
        QR factorisation when ``N >= D``; ``O(N D min(N, D))``, most accurate). ``"gram"``:
        eigendecomposition of the smaller Gram matrix (the ``D x D`` covariance when ``N >= D``,
        the ``N x N`` ``Xc Xc^T`` when ``N < D``).
        ``"auto"`` (default): ``"gram"`` when ``N >= 10 D``, else ``"svd"``. No path forms a
        ``D x D`` matrix when ``N < D``.

    Returns:
      :class:`PPCAParams` in the dtype of ``x``. Jit-compiled (``latent_dim`` and ``method`` are
      static); also callable under an outer ``jax.jit``.
    """
    x = _as_data(x)
    n, d = x.shape
    q = _check_latent_dim(latent_dim, d, n)
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 (maximum likelihood) or 1 (unbiased); got {ddof!r}")
    return _closed_form(x, q, ddof, _resolve_method(method, n, d))


# --------------------------------------------------------------------------------------------
# EM (T&B section 3.2 and appendix B, eqs. 29-30)
# --------------------------------------------------------------------------------------------


def _em_quantities(sw: jax.Array, wtsw: jax.Array, tr_s: jax.Array, W: jax.Array, sigma2):
    """Shared by the EM update and the log-likelihood. ``sw = S W`` [D, q], ``wtsw = W^T S W``."""
    d, q = W.shape
    m = W.T @ W + sigma2 * jnp.eye(q, dtype=W.dtype)
    m_chol = jsl.cho_factor(m, lower=True)
    m_inv_wtsw = jsl.cho_solve(m_chol, wtsw)  # M^{-1} W^T S W  [q, q]
    # Average log-likelihood at (W, sigma2) and mu = sample mean:
    #   -1/2 [D log 2pi + log|C| + tr(C^{-1} S)],
    #   log|C| = (D - q) log sigma2 + log|M|,  tr(C^{-1} S) = (tr S - tr(M^{-1} W^T S W)) / sigma2.
    logdet_m = 2.0 * jnp.sum(jnp.log(jnp.diag(m_chol[0])))
    ll = -0.5 * (
        d * _LOG_2PI
        + (d - q) * jnp.log(sigma2)
        + logdet_m
        + (tr_s - jnp.trace(m_inv_wtsw)) / sigma2
    )
    return m_chol, m_inv_wtsw, ll


def _em_update(sw, wtsw, tr_s, W, sigma2):
    """One EM step from ``S W``, ``W^T S W`` and ``tr S``; returns ``(W_new, sigma2_new, ll)``.

    T&B eq. 29: ``W_new = S W (sigma2 I + M^{-1} W^T S W)^{-1}``;
    T&B eq. 30: ``sigma2_new = (1 / D) tr(S - S W M^{-1} W_new^T)``;
    ``ll`` is the average log-likelihood at the *input* ``(W, sigma2)``.
    """
    d, q = W.shape
    m_chol, m_inv_wtsw, ll = _em_quantities(sw, wtsw, tr_s, W, sigma2)
    a = sigma2 * jnp.eye(q, dtype=W.dtype) + m_inv_wtsw
    w_new = jnp.linalg.solve(a.T, sw.T).T
    sw_m_inv = jsl.cho_solve(m_chol, sw.T).T  # S W M^{-1}  [D, q]
    sigma2_new = (tr_s - jnp.sum(sw_m_inv * w_new)) / d
    return w_new, sigma2_new, ll


@functools.partial(jax.jit, static_argnames=("steps", "explicit"))
def _em(x, W0, sigma20, steps: int, explicit: bool):
    n, _ = x.shape
    mean = jnp.mean(x, axis=0)
    xc = x - mean
    tr_s = jnp.sum(xc * xc) / n
    if explicit:
        s = xc.T @ xc / n

        def products(W):
            sw = s @ W
            return sw, W.T @ sw

    else:

        def products(W):
            # S W = Xc^T (Xc W) / N and W^T S W = (Xc W)^T (Xc W) / N: O(N D q), no D x D.
            xw = xc @ W
            return xc.T @ xw / n, xw.T @ xw / n

    def step(carry, _):
        W, sigma2 = carry
        sw, wtsw = products(W)
        w_new, sigma2_new, ll = _em_update(sw, wtsw, tr_s, W, sigma2)
        return (w_new, sigma2_new), ll

    (W, sigma2), trace = jax.lax.scan(step, (W0, sigma20), None, length=steps)
    sw, wtsw = products(W)
    _, _, ll_last = _em_quantities(sw, wtsw, tr_s, W, sigma2)
    return PPCAParams(W=W, mu=mean, sigma2=sigma2), jnp.append(trace, ll_last)


@functools.partial(jax.jit, static_argnames=("latent_dim",))
def _em_init(x, rng, latent_dim: int):
    n, d = x.shape
    xc = x - jnp.mean(x, axis=0)
    avg_var = jnp.sum(xc * xc) / (n * d)
    W0 = jax.random.normal(rng, (d, latent_dim), x.dtype) * jnp.sqrt(avg_var / latent_dim)
    return W0, avg_var


def fit_em(
    x: Any,
    latent_dim: int,
    steps: int = 100,
    rng: jax.Array | None = None,
    params: PPCAParams | None = None,
    *,
    covariance: Literal["auto", "implicit", "explicit"] = "auto",
) -> tuple[PPCAParams, jax.Array]:
    """Maximum-likelihood PPCA by EM (T&B eqs. 29-30), ``steps`` iterations in one ``lax.scan``.

    With ``M = W^T W + sigma2 I_q`` and ``S`` the ML sample covariance (divisor ``N``)::

        W_new = S W (sigma2 I + M^{-1} W^T S W)^{-1}                       (eq. 29)
        sigma2_new = (1 / D) tr(S - S W M^{-1} W_new^T)                      (eq. 30)

    ``mu`` is set to the sample mean (its ML value, independent of ``W`` and ``sigma2``) before the
    first iteration. EM never decreases the likelihood, so ``trace`` is non-decreasing up to
    rounding; it converges to the closed-form maximum (:func:`fit_closed_form`), with ``W`` equal
    to the closed-form one up to a rotation ``R`` (T&B eq. 7).

    Args:
      x: ``[N, D]`` float data (finite, ``N >= latent_dim + 2``).
      latent_dim: ``q``, ``1 <= q < D`` (must match ``params`` when given).
      steps: the number of EM iterations (static: one compilation per value).
      rng: a ``jax.random`` key for the initial ``W ~ N(0, v / q)`` per entry, where ``v`` is the
        average per-dimension variance of ``x``; ``sigma2`` starts at ``v``. Unused when
        ``params`` is given.
      params: optional starting :class:`PPCAParams` (its ``mu`` is replaced by the sample mean).
      covariance: how ``S W`` is computed. ``"implicit"``: ``S W = Xc^T (Xc W) / N``, ``O(N D q)``
        per iteration and never a ``D x D`` matrix. ``"explicit"``: form ``S`` once (``O(N D^2)``,
        ``D^2`` memory), then ``O(D^2 q)`` per iteration. ``"auto"`` (default): explicit only when
        ``N >= D``, ``D <= 4096`` and ``2 q steps >= D`` (i.e. when forming ``S`` is cheaper than
        the implicit products), otherwise implicit.

    Returns:
      ``(params, trace)``: the fitted :class:`PPCAParams` and ``trace`` ``[steps + 1]``, the
      average log-likelihood ``(1/N) sum_n log N(x_n; mu, W W^T + sigma2 I)`` before the first
      update (``trace[0]``) and after each update (``trace[t]`` after ``t`` updates).
    """
    x = _as_data(x)
    n, d = x.shape
    q = _check_latent_dim(latent_dim, d, n)
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 0:
        raise ValueError(f"steps must be a non-negative int; got {steps!r}")
    if covariance not in ("auto", "implicit", "explicit"):
        raise ValueError(f"covariance must be 'auto', 'implicit' or 'explicit'; got {covariance!r}")
    if params is not None:
        _check_params(params, d)
        if params.latent_dim != q:
            raise ValueError(
                f"params.W has latent_dim={params.latent_dim} but latent_dim={q} was requested"
            )
        W0 = jnp.asarray(params.W, x.dtype)
        sigma20 = jnp.asarray(params.sigma2, x.dtype)
    elif rng is None:
        raise ValueError("fit_em needs rng (a jax.random key) to initialise W when params=None")
    else:
        W0, sigma20 = _em_init(x, rng, q)
    if covariance == "auto":
        explicit = n >= d and d <= 4096 and 2 * q * steps >= d
    else:
        explicit = covariance == "explicit"
    return _em(x, W0, sigma20, int(steps), explicit)


# --------------------------------------------------------------------------------------------
# Inference and generation
# --------------------------------------------------------------------------------------------


def log_likelihood(model: PPCA, params: PPCAParams | Mapping[str, Any], x: Any) -> jax.Array:
    """Per-example ``log N(x_n; mu, W W^T + sigma2 I)``, ``[B]`` (T&B eq. 4), via Woodbury.

    Args:
      model: the :class:`PPCA` module (``D``, ``q``, the ``sigma2`` floor).
      params: :class:`PPCAParams` with ``W`` ``[D, q]``, or the module's variables.
      x: ``[B, D]`` float.
    """
    params, x = _as_data_for(model, params, x)
    return _log_likelihood(params, x)


@jax.jit
def _log_likelihood(params: PPCAParams, x: jax.Array) -> jax.Array:
    return L.ppca_log_likelihood(x, params.W, params.mu, params.sigma2)


def posterior(
    model: PPCA, params: PPCAParams | Mapping[str, Any], x: Any
) -> tuple[jax.Array, jax.Array]:
    """The posterior ``p(z | x) = N(M^{-1} W^T (x - mu), sigma2 M^{-1})`` (T&B eqs. 15-16).

    Args:
      model: the :class:`PPCA` module.
      params: :class:`PPCAParams` with ``W`` ``[D, q]``, or the module's variables.
      x: ``[B, D]`` float.

    Returns:
      ``(mean [B, q], cov [q, q])``; the covariance is the same for every example.
    """
    params, x = _as_data_for(model, params, x)
    return _posterior(params, x)


@jax.jit
def _posterior(params: PPCAParams, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return L.ppca_posterior(x, params.W, params.mu, params.sigma2)


def encode(model: PPCA, params: PPCAParams | Mapping[str, Any], x: Any) -> jax.Array:
    """The posterior mean ``E[z | x] = M^{-1} W^T (x - mu)``, ``[B, q]`` (see :func:`posterior`)."""
    return posterior(model, params, x)[0]


def reconstruct(
    model: PPCA,
    params: PPCAParams | Mapping[str, Any],
    x: Any,
    *,
    kind: Literal["posterior", "orthogonal"] = "posterior",
) -> jax.Array:
    """Maps ``x`` ``[B, D]`` to the latent space and back, ``[B, D]``.

    ``kind="posterior"`` (default): ``x_hat = W E[z | x] + mu = W M^{-1} W^T (x - mu) + mu``, the
    posterior mean mapped back. For ``sigma2 > 0`` this is *not* an orthogonal projection: it
    shrinks toward ``mu`` (along the i-th principal direction by ``(l_i - sigma2) / l_i`` at the
    ML solution; T&B section 3.3).

    ``kind="orthogonal"``: ``x_hat = W (W^T W)^{-1} M E[z | x] + mu = W (W^T W)^{-1} W^T (x - mu)
    + mu``, the orthogonal projection onto the principal subspace (T&B section 3.3), i.e. the
    standard PCA reconstruction.

    ``model`` and ``params`` as in :func:`posterior`.
    """
    if kind not in ("posterior", "orthogonal"):
        raise ValueError(f"kind must be 'posterior' or 'orthogonal'; got {kind!r}")
    params, x = _as_data_for(model, params, x)
    return _reconstruct(params, x, kind)


@functools.partial(jax.jit, static_argnames=("kind",))
def _reconstruct(params: PPCAParams, x: jax.Array, kind: str) -> jax.Array:
    W, mu = params.W, params.mu
    if kind == "posterior":
        mean, _ = L.ppca_posterior(x, W, mu, params.sigma2)
        return mean @ W.T + mu
    coef = jnp.linalg.lstsq(W, (x - mu).T)[0]  # (W^T W)^{-1} W^T (x - mu)^T, [q, B]
    return coef.T @ W.T + mu


def sample(
    model: PPCA, params: PPCAParams | Mapping[str, Any], rng: jax.Array, n: int
) -> jax.Array:
    """``n`` draws from ``p(x)``, ``[n, D]``: ``z ~ N(0, I)``, ``x = W z + mu + sqrt(sigma2) eps``.

    Args:
      model: the :class:`PPCA` module.
      params: :class:`PPCAParams`, or the module's variables.
      rng: a ``jax.random`` key.
      n: the number of samples (static: the output shape).
    """
    params = _model_params(model, params)
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be a non-negative int; got {n!r}")
    return _sample(params, rng, int(n))


@functools.partial(jax.jit, static_argnames=("n",))
def _sample(params: PPCAParams, rng: jax.Array, n: int) -> jax.Array:
    W = params.W
    d, q = W.shape
    noise = jax.random.normal(rng, (n, q + d), W.dtype)  # one draw: [z | eps]
    z, eps = noise[:, :q], noise[:, q:]
    return z @ W.T + params.mu + jnp.sqrt(params.sigma2) * eps


# --------------------------------------------------------------------------------------------
# Choosing q
# --------------------------------------------------------------------------------------------


def select_latent_dim(
    x_train: Any,
    x_test: Any,
    candidates: Iterable[int],
    *,
    ddof: int = 0,
    method: Method = "auto",
) -> dict[int, float]:
    """Held-out log-likelihood of the closed-form fit for each candidate ``q``.

    The spectrum of ``x_train`` is computed once; for each ``q`` the ML parameters follow from
    it (see :func:`fit_closed_form`) and are scored on ``x_test``. Pick the ``q`` with the largest
    value (the training likelihood always increases with ``q``; the held-out one need not).

    Args:
      x_train: ``[N, D]`` float, ``N >= max(candidates) + 2``.
      x_test: ``[B, D]`` float.
      candidates: ints, each ``1 <= q < D``.
      ddof, method: as in :func:`fit_closed_form`.

    Returns:
      ``{q: mean over x_test of log p(x)}`` (per example, in nats), as Python floats.
    """
    x_train = _as_data(x_train, "x_train")
    x_test = _as_data(x_test, "x_test")
    n, d = x_train.shape
    if x_test.shape[1] != d:
        raise ValueError(
            f"x_test must have the same data_dim as x_train ({d}); got shape {x_test.shape}"
        )
    qs = [_check_latent_dim(q, d, n) for q in candidates]
    if not qs:
        raise ValueError("candidates must contain at least one latent_dim")
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 (maximum likelihood) or 1 (unbiased); got {ddof!r}")
    mean, evals, evecs = _spectrum(x_train, ddof, _resolve_method(method, n, d))
    x_test = x_test.astype(x_train.dtype)
    scores = _held_out_scores(mean, evals, evecs, x_test, jnp.asarray(qs), max(qs))
    return {q: float(v) for q, v in zip(qs, np.asarray(scores), strict=True)}


@functools.partial(jax.jit, static_argnames=("max_dim",))
def _held_out_scores(mean, evals, evecs, x_test, latent_dims, max_dim: int) -> jax.Array:
    """Mean held-out log-likelihood for each ``q`` in ``latent_dims`` ``[C]`` (one compilation).

    Each ``q`` uses ``W`` ``[D, max_dim]`` whose columns past ``q`` are zero: ``W W^T`` (hence
    the model) is that of the ``q``-column ML solution, and ``sigma2`` is computed for ``q``.
    """
    d = x_test.shape[1]
    idx = jnp.arange(evals.shape[0])

    def score(q):
        sigma2 = jnp.sum(jnp.where(idx >= q, evals, 0.0)) / (d - q)
        sigma2 = jnp.maximum(sigma2, jnp.finfo(evals.dtype).tiny)
        scale = jnp.where(idx[:max_dim] < q, jnp.sqrt(jnp.maximum(evals[:max_dim] - sigma2, 0)), 0)
        W = evecs[:, :max_dim] * scale
        return jnp.mean(L.ppca_log_likelihood(x_test, W, mean, sigma2))

    return jax.lax.map(score, latent_dims)


# --------------------------------------------------------------------------------------------
# Gradient training: the Flax module and the engine's objective
# --------------------------------------------------------------------------------------------


def _softplus_inverse(y: Any) -> jax.Array:
    """``log(exp(y) - 1)`` for ``y > 0``, written to stay finite for large ``y``."""
    y = jnp.asarray(y)
    return y + jnp.log(-jnp.expm1(-y))


class PPCA(nn.Module):
    """PPCA as a Flax linen module whose ``__call__`` is the per-example log-likelihood.

    Parameters (in ``variables["params"]``): ``"W"`` ``[D, q]`` (init ``N(0, 1/q)`` entries),
    ``"mu"`` ``[D]`` (init 0) and ``"sigma2_unconstrained"`` ``[]``, mapped to the noise variance
    by ``sigma2 = softplus(sigma2_unconstrained) + sigma2_floor`` (init so that ``sigma2 = 1``).

    The module is also the ``model`` argument of :func:`sample`, :func:`encode`,
    :func:`reconstruct`, :func:`posterior` and :func:`log_likelihood` (for fitted
    :class:`PPCAParams` too: ``PPCA(data_dim=D, latent_dim=q)``).

    Attributes:
      data_dim: ``D``.
      latent_dim: ``q``, ``1 <= q < D``.
      sigma2_floor: the lower bound on ``sigma2`` (keeps ``C`` well conditioned).
    """

    data_dim: int
    latent_dim: int
    sigma2_floor: float = SIGMA2_FLOOR

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``x`` ``[B, D]`` -> ``log N(x; mu, W W^T + sigma2 I)`` ``[B]``."""
        d, q = self.data_dim, self.latent_dim
        _check_latent_dim(q, d, None)
        if x.shape[-1] != d:
            raise ValueError(f"x must have data_dim={d} as its last axis; got shape {x.shape}")
        W = self.param("W", nn.initializers.normal(stddev=1.0 / math.sqrt(q)), (d, q))
        mu = self.param("mu", nn.initializers.zeros, (d,))
        raw = self.param(
            "sigma2_unconstrained",
            nn.initializers.constant(_softplus_inverse(1.0 - self.sigma2_floor)),
            (),
        )
        sigma2 = jax.nn.softplus(raw) + self.sigma2_floor
        return L.ppca_log_likelihood(x, W, mu, sigma2)


def params_from_variables(
    variables: Mapping[str, Any], *, sigma2_floor: float = SIGMA2_FLOOR
) -> PPCAParams:
    """Reads :class:`PPCAParams` from :class:`PPCA` variables (``{"params": {...}}`` or the inner
    dict), applying ``sigma2 = softplus(sigma2_unconstrained) + sigma2_floor``."""
    p = variables.get("params", variables)
    missing = {"W", "mu", "sigma2_unconstrained"} - set(p)
    if missing:
        raise ValueError(f"variables are not PPCA variables: missing {sorted(missing)}")
    sigma2 = jax.nn.softplus(p["sigma2_unconstrained"]) + sigma2_floor
    return PPCAParams(W=p["W"], mu=p["mu"], sigma2=sigma2)


def variables_from_params(
    params: PPCAParams, *, sigma2_floor: float = SIGMA2_FLOOR
) -> dict[str, Any]:
    """The inverse of :func:`params_from_variables` (e.g. to start gradient training from
    :func:`fit_closed_form`); needs ``params.sigma2 > sigma2_floor``."""
    _check_params(params)
    raw = _softplus_inverse(jnp.asarray(params.sigma2) - sigma2_floor)
    return {"params": {"W": params.W, "mu": params.mu, "sigma2_unconstrained": raw}}


def init(
    rng: jax.Array,
    example_batch: Mapping[str, Any],
    latent_dim: int,
    *,
    sigma2_floor: float = SIGMA2_FLOOR,
) -> dict[str, Any]:
    """Initial :class:`PPCA` variables for the engine (bind ``latent_dim`` with
    ``functools.partial(init, latent_dim=q)`` to get its ``init(rng, example_batch)``).

    Args:
      rng: a ``jax.random`` key.
      example_batch: a dict with ``"x"`` ``[B, D]`` float (only its shape is used).
      latent_dim: ``q``.
    """
    x = example_batch["x"]
    if jnp.ndim(x) != 2:
        raise ValueError(f'batch["x"] must be 2-D [B, data_dim]; got shape {jnp.shape(x)}')
    d = int(jnp.shape(x)[1])
    module = PPCA(data_dim=d, latent_dim=latent_dim, sigma2_floor=sigma2_floor)
    return jax.jit(module.init)(rng, jnp.zeros((1, d), jnp.float32))


def objective(
    params: Mapping[str, Any],
    batch: Mapping[str, Any],
    rng: jax.Array | None = None,
    *,
    sigma2_floor: float = SIGMA2_FLOOR,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The engine's loss: the mean negative log-likelihood of the batch.

    ``loss = -(1/B) sum_b log N(x_b; mu, W W^T + sigma2 I)``.

    Args:
      params: :class:`PPCA` variables (from :func:`init`).
      batch: a dict with ``"x"`` ``[B, D]`` float.
      rng: unused (the marginal likelihood is exact); accepted for the engine's signature.

    Returns:
      ``(loss [], metrics)`` with metrics ``"log_likelihood"`` (the batch mean, nats per
      example) and ``"sigma2"``.
    """
    del rng
    variables = params if "params" in params else {"params": params}
    p = params_from_variables(variables, sigma2_floor=sigma2_floor)
    module = PPCA(data_dim=p.data_dim, latent_dim=p.latent_dim, sigma2_floor=sigma2_floor)
    mean_ll = jnp.mean(module.apply(variables, batch["x"]))
    return -mean_ll, {"log_likelihood": mean_ll, "sigma2": p.sigma2}


# --------------------------------------------------------------------------------------------
# The family's contract (genjax.models.base): hyper-parameters and the engine's objective
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PPCAConfig(ModelConfig):
    """PPCA trained by gradients: the hyper-parameters.

    ``objective(info)`` builds :class:`PPCA` for vector data ``[D]`` (``latent_dim < D``) and
    the engine's task: full-covariance maximum likelihood, ``loss = -mean_b log p(x_b)``
    (:func:`objective`). Training for two steps and sampling::

        >>> import jax, optax
        >>> from genjax.models import ppca
        >>> from genjax.models.base import DataInfo
        >>> from genjax.train import Engine, init_state
        >>> objective = ppca.PPCAConfig(latent_dim=2).objective(DataInfo(shape=(8,)))
        >>> task = objective.task(optax.adam(1e-2))
        >>> batch = {"x": jax.random.normal(jax.random.key(0), (32, 8))}
        >>> state = init_state(task, jax.random.PRNGKey(0), batch)
        >>> engine = Engine(task)
        >>> for _ in range(2):
        ...     state, metrics = engine.step(state, batch)
        >>> sorted(metrics)
        ['log_likelihood', 'loss', 'nonfinite', 'sigma2']
        >>> objective.sample(state.params, state.model_state, jax.random.key(1), 5).shape
        (5, 8)
        >>> objective.encode(state.params, state.model_state, batch["x"]).shape
        (32, 2)

    Attributes:
      latent_dim: q, the number of latent dimensions (1 <= q < D).
    """

    family: ClassVar[str] = "ppca"

    latent_dim: int = 10

    def __post_init__(self):
        check_int(self._label("latent_dim"), self.latent_dim, 1)

    @classmethod
    def upgrade_saved(cls, values: dict) -> dict:
        """Configs saved before the split kept the evaluation settings ``em_steps`` and
        ``select_q`` in the model section (they are the experiment's ``eval`` section now)."""
        return {k: v for k, v in values.items() if k not in ("em_steps", "select_q")}

    def objective(self, info: DataInfo) -> PPCAObjective:
        """The :class:`PPCA` module and loss for vector data of ``info.shape == (D,)``."""
        if len(info.shape) != 1:
            raise ValueError(
                f"PPCA needs vector inputs [D]; got inputs of shape {info.shape} for "
                f"{info.label} (flatten them: data.flatten=true in the command)"
            )
        (d,) = info.shape
        if self.latent_dim >= d:
            raise ValueError(
                f"{self._label('latent_dim')}={self.latent_dim} must be smaller than the data "
                f"dimension {d} of {info.label} (PPCA needs at least one discarded direction "
                f"for the noise variance)"
            )
        return PPCAObjective(self, info, PPCA(data_dim=d, latent_dim=self.latent_dim))


@dataclasses.dataclass(frozen=True)
class PPCAObjective(Objective):
    """:class:`PPCA` trained by gradients on data of ``info.shape == (D,)`` (one player).

    Attributes:
      config: the :class:`PPCAConfig`.
      info: the data's :class:`~genjax.models.base.DataInfo`.
      model: the :class:`PPCA` module, the first argument of this module's functions.
    """

    config: PPCAConfig
    info: DataInfo
    model: PPCA

    def init(self, rng: jax.Array, batch: Mapping[str, Any]) -> dict[str, Any]:
        """The module's initial variables (:func:`init`) for a batch ``{"x": [B, D]}``."""
        x = batch["x"]
        if tuple(jnp.shape(x)[1:]) != self.info.shape:
            raise ValueError(
                f'PPCAObjective.init: batch["x"] must have shape [B, {self.model.data_dim}] '
                f"(the objective was built for {self.info.shape}); got {jnp.shape(x)}"
            )
        return init(rng, batch, self.model.latent_dim, sigma2_floor=self.model.sigma2_floor)

    def loss(self, params: Mapping[str, Any], batch: Mapping[str, Any], rng: jax.Array):
        """The engine's loss on the module's variables: :func:`objective`."""
        return objective(params, batch, rng, sigma2_floor=self.model.sigma2_floor)

    def task(self, optimizer) -> Task:
        """One player, ``"model"``, trained with ``optimizer``."""
        return Task.from_loss(self.init, self.loss, optimizer)

    # On the engine's parameters, {"model": variables}. --------------------------------------

    def functions(self) -> tuple[str, ...]:
        """The contract's methods, and ``log_likelihood`` and ``ppca_params``."""
        return (*super().functions(), "log_likelihood", "ppca_params")

    def ppca_params(self, params: Mapping[str, Any], model_state: Any = None) -> PPCAParams:
        """The trained :class:`PPCAParams` (``W``, ``mu``, ``sigma2``)."""
        del model_state
        return _model_params(self.model, single(params))

    def sample(self, params, model_state, rng, n):
        """``n`` draws from ``p(x)``, ``[n, D]`` (:func:`sample`)."""
        del model_state
        return sample(self.model, single(params), rng, n)

    def encode(self, params, model_state, x):
        """``E[z | x]``, ``[B, q]`` (:func:`encode`)."""
        del model_state
        return encode(self.model, single(params), x)

    def reconstruct(self, params, model_state, x, kind="posterior"):
        """``x`` through the latent space and back, ``[B, D]`` (:func:`reconstruct`)."""
        del model_state
        return reconstruct(self.model, single(params), x, kind=kind)

    def log_likelihood(self, params, model_state, x):
        """Per-example ``log p(x)``, ``[B]`` (:func:`log_likelihood`)."""
        del model_state
        return log_likelihood(self.model, single(params), x)
