"""Every loss and bound of genjax, as pure functions of arrays.

Conventions (see ``docs/design.md``):

* **Pure.** No Flax, no state, no hidden randomness. One function, :func:`gradient_penalty`,
  takes a function (the critic) beside its arrays and draws its interpolation weights from an
  explicit ``jax.random`` key; no other function samples.
* **Batch-first, per-example.** Inputs carry the batch on axis 0 (except the IWAE inputs, which are
  ``[K, B]``) and every loss returns one value per example, shape ``[B]``, summed over all the
  non-batch axes. Reduce over the batch outside, as optax does.
* **Validation at trace time.** Ranks and shapes are static, so mismatches raise a ``ValueError``
  naming the function, the argument, the expected and the received shape, also under ``jax.jit``.
  Scalar hyper-parameters (``sigma2``, ``variance``, ``beta``, ``free_bits``, ``num_codes``,
  the gradient penalty's ``weight``) are checked when they are concrete (a Python number, a
  NumPy value or an un-traced JAX array).
  A *traced* value (e.g. ``sigma2`` passed as a jitted argument or differentiated) cannot be
  inspected, so its positivity is the caller's responsibility.
* **Precision policy.** Arithmetic runs in at least float32: half-precision inputs (bfloat16,
  float16) are upcast, and the losses return float32 for them; float32 stays float32 and float64
  (under ``jax_enable_x64``) stays float64. The one function that returns activations rather than
  a loss, :func:`vector_quantize`, hands back the quantised values in the inputs' own dtype (so a
  bf16 decoder stays in bf16) while its distance computation runs in float32 or wider.
* **Stability.** Log-probabilities come from logits through ``log_sigmoid`` / ``softplus`` (no
  ``log(0)``), and Gaussian terms use ``expm1`` and differences of log-variances so that logits of
  magnitude 1e4 and log-variances of magnitude 50 give finite values and finite gradients.

References:
  Tipping & Bishop (1999), *Probabilistic Principal Component Analysis*, JRSS B 61(3).
  Bjorck (1996), *Numerical Methods for Least Squares Problems*, SIAM.
  Yamamoto, Nakatsukasa, Yanagisawa & Fukaya (2015), *Roundoff error analysis of the
  CholeskyQR2 algorithm*, Electron. Trans. Numer. Anal. 44.
  Fukaya, Kannan, Nakatsukasa, Zhang & Yamamoto (2020), *Shifted Cholesky QR for computing the
  QR factorization of ill-conditioned matrices*, SIAM J. Sci. Comput. 42(1).
  Kingma & Welling (2014), *Auto-Encoding Variational Bayes*, ICLR.
  Higgins et al. (2017), *beta-VAE*, ICLR.
  Kingma et al. (2016), *Improved Variational Inference with Inverse Autoregressive Flow*, NeurIPS.
  Burda, Grosse & Salakhutdinov (2016), *Importance Weighted Autoencoders*, ICLR.
  Goodfellow et al. (2014), *Generative Adversarial Nets*, NeurIPS.
  Lim & Ye (2017), *Geometric GAN*, arXiv:1705.02894.
  Miyato, Kataoka, Koyama & Yoshida (2018), *Spectral Normalization for Generative Adversarial
  Networks*, ICLR.
  Arjovsky, Chintala & Bottou (2017), *Wasserstein Generative Adversarial Networks*, ICML.
  Gulrajani, Ahmed, Arjovsky, Dumoulin & Courville (2017), *Improved Training of Wasserstein
  GANs*, NeurIPS.
  Mao, Li, Xie, Lau, Wang & Smolley (2017), *Least Squares Generative Adversarial Networks*,
  ICCV.
  van den Oord, Vinyals & Kavukcuoglu (2017), *Neural Discrete Representation Learning*, NeurIPS.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.linalg import solve_triangular

__all__ = [
    "bernoulli_log_likelihood",
    "codebook_perplexity",
    "cosine_vector_quantize",
    "discriminator_loss",
    "elbo",
    "gan_value",
    "gaussian_kl",
    "gaussian_kl_diag",
    "gaussian_log_likelihood",
    "gaussian_log_likelihood_fixed",
    "generator_loss",
    "gradient_penalty",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "iwae_bound",
    "l2_normalize",
    "least_squares_discriminator_loss",
    "least_squares_generator_loss",
    "ppca_log_likelihood",
    "ppca_posterior",
    "vector_quantize",
    "vq_codebook_loss",
    "vq_commitment_loss",
    "wasserstein_critic_loss",
    "wasserstein_generator_loss",
]

_LOG_2PI = math.log(2.0 * math.pi)
_HIGHEST = lax.Precision.HIGHEST


# --------------------------------------------------------------------------------------------
# Validation and dtype helpers.
# --------------------------------------------------------------------------------------------


def _fail(fn: str, message: str) -> None:
    raise ValueError(f"{fn}: {message}")


def _shape(a: Any) -> tuple[int, ...]:
    return tuple(np.shape(a))


def _check_min_rank(fn: str, name: str, a: Any, rank: int, layout: str) -> None:
    if len(_shape(a)) < rank:
        _fail(fn, f"{name} must have at least {rank} axis(es) {layout}, got shape {_shape(a)}")


def _check_rank(fn: str, name: str, a: Any, rank: int, layout: str) -> None:
    if len(_shape(a)) != rank:
        _fail(fn, f"{name} must have rank {rank} {layout}, got shape {_shape(a)}")


def _check_same_shape(fn: str, name: str, a: Any, ref_name: str, ref: Any) -> None:
    if _shape(a) != _shape(ref):
        _fail(
            fn,
            f"{name} must have the same shape as {ref_name} {_shape(ref)}, got {_shape(a)}",
        )


def _check_broadcastable_to(fn: str, name: str, a: Any, ref_name: str, ref: Any) -> None:
    target = _shape(ref)
    try:
        ok = np.broadcast_shapes(_shape(a), target) == target
    except ValueError:
        ok = False
    if not ok:
        _fail(fn, f"{name} must broadcast to the shape of {ref_name} {target}, got {_shape(a)}")


def _concrete_value(a: Any) -> np.ndarray | None:
    """The value of ``a`` as a NumPy array if it is concrete, ``None`` if it is traced."""
    if isinstance(a, jax.core.Tracer):
        return None
    return np.asarray(a, dtype=np.float64)


def _check_scalar(fn: str, name: str, a: Any) -> None:
    if _shape(a) != ():
        _fail(fn, f"{name} must be a scalar, got shape {_shape(a)}")


def _check_positive(fn: str, name: str, a: Any) -> None:
    value = _concrete_value(a)
    if value is not None and not (np.all(np.isfinite(value)) and np.all(value > 0)):
        _fail(fn, f"{name} must be finite and > 0, got {value.tolist()}")


def _check_nonnegative(fn: str, name: str, a: Any) -> None:
    value = _concrete_value(a)
    if value is not None and not (np.all(np.isfinite(value)) and np.all(value >= 0)):
        _fail(fn, f"{name} must be finite and >= 0, got {value.tolist()}")


def _compute_dtype(*arrays: Any) -> Any:
    """float32 for half-precision / integer inputs, else the inputs' common float dtype."""
    return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


def _cast(dtype: Any, *arrays: Any) -> tuple[jax.Array, ...]:
    return tuple(jnp.asarray(a).astype(dtype) for a in arrays)


def _sum_nonbatch(a: jax.Array) -> jax.Array:
    """Sum over every axis but the first: [B, ...] -> [B]."""
    return jnp.sum(a, axis=tuple(range(1, a.ndim)))


# --------------------------------------------------------------------------------------------
# PPCA (Tipping & Bishop, 1999).
# --------------------------------------------------------------------------------------------


def _ppca_inputs(fn: str, x: Any, W: Any, mu: Any, sigma2: Any) -> tuple[jax.Array, ...]:
    """Validates the PPCA arguments (static shapes, concrete ``sigma2``) and casts them to the
    compute dtype: ``(x [B, D], W [D, q], mu [D], sigma2 [])``."""
    _check_rank(fn, "x", x, 2, "[B, D]")
    D = _shape(x)[1]
    w_shape = _shape(W)
    if len(w_shape) != 2 or w_shape[0] != D:
        _fail(fn, f"W must have shape [D, q] with D={D} (x.shape[-1]), got {w_shape}")
    if w_shape[1] < 1:
        _fail(fn, f"W must have at least one latent column (q >= 1), got {w_shape}")
    if _shape(mu) != (D,):
        _fail(fn, f"mu must have shape [D] = ({D},) (x.shape[-1]), got {_shape(mu)}")
    _check_scalar(fn, "sigma2", sigma2)
    _check_positive(fn, "sigma2", sigma2)
    dtype = _compute_dtype(x, W, mu)
    return _cast(dtype, x, W, mu, sigma2)


_PPCA_QR_PASSES = 3


def _ppca_qr(W: jax.Array, sigma2: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Thin QR of the stacked ``[D + q, q]`` matrix ``A = [W; sqrt(sigma2) I_q]``.

    ``A = [Q1; Q2] R`` with ``A^T A = M = sigma2 I_q + W^T W``, so ``R`` (upper triangular,
    positive diagonal) is the Cholesky factor of ``M``, and ``Q2 = sqrt(sigma2) R^{-1}``.
    Computed by shifted Cholesky QR, three passes (Fukaya, Kannan, Nakatsukasa, Zhang &
    Yamamoto, 2020): each pass forms the Gram matrix ``A_k^T A_k = R_k^T R_k``, factors it
    (``q x q`` Cholesky factorisation and triangular inverse) and sets ``A_{k+1} = A_k
    R_k^{-1}``, two ``[D, q] x [q, q]``-sized products a pass. The first pass adds
    ``eps (D + q) tr(A^T A)`` to the diagonal of its Gram matrix, so that its Cholesky
    factorisation cannot break down however ill-conditioned ``M`` is. That pass only
    preconditions (``A_1 = A R_1^{-1}`` has a condition number of about
    ``sqrt(eps (D + q) tr(M) / lambda_min(M))``, or about 1 when that is smaller); the next two
    orthonormalise ``A_1`` as CholeskyQR2 does (Yamamoto, Nakatsukasa, Yanagisawa & Fukaya,
    2015): ``Q1`` orthonormal and ``Q R - A`` of the order of the round-off, like Householder
    QR, for ``cond(M)`` far beyond ``1 / eps`` (checked in float32 up to ``cond(M) = 8e10``,
    where the log-density is within 1.5x of Householder QR's error).

    Why not ``M = sigma2 I + W^T W`` and its Cholesky factor alone (one pass): every product
    with ``W`` then carries an error of ``eps s_max`` (``s`` the singular values of ``W``) that
    ``M^{-1}`` amplifies by ``1 / (s_min^2 + sigma2)``; the posterior mean loses
    ``log10 cond(M)`` digits and the log-density, which grows with ``e^T M e / sigma2`` for an
    error ``e`` in that mean, thousands of nats in float32 at ``cond(M) ~ 1e6``. With the
    orthonormal ``Q1`` the products are with a matrix of norm 1.

    Why not Householder QR (``jnp.linalg.qr``): as accurate, but on XLA:CPU its LAPACK calls
    (``geqrf``, ``orgqr`` on the ``[D + q, q]`` matrix) are slower, and much slower when
    OpenBLAS's threads compete with XLA's (``D = 784``, ``q = 32``, two cores: 97 against 86 us
    with ``OPENBLAS_NUM_THREADS=1``, 380 against 95 us with OpenBLAS's default threads). Here
    every ``D``-sized operation is an XLA matrix product; LAPACK sees only ``q x q`` matrices.

    Args:
      W: ``[D, q]`` float.
      sigma2: float scalar ``> 0``.

    Returns:
      ``(Q1 [D, q], R^{-1} [q, q], log|M| [])``; ``Q2 = sqrt(sigma2) R^{-1}``.
    """
    D, q = W.shape
    eye = jnp.eye(q, dtype=W.dtype)
    upper = W  # the top block of A_k, [D, q]
    lower = jnp.sqrt(sigma2) * eye  # the bottom block of A_k, [q, q] upper triangular
    r_inv = eye
    log_det_m = jnp.zeros((), W.dtype)
    for k in range(_PPCA_QR_PASSES):
        gram = jnp.matmul(upper.T, upper, precision=_HIGHEST)
        gram = gram + jnp.matmul(lower.T, lower, precision=_HIGHEST)
        if k == 0:
            shift = jnp.finfo(W.dtype).eps * (D + q) * jnp.trace(gram)
            gram = gram + lax.stop_gradient(shift) * eye
        chol = jnp.linalg.cholesky(gram)  # gram = L L^T, R_k = L^T
        r_k_inv = solve_triangular(chol, eye, lower=True).T  # R_k^{-1} = L^{-T}, upper
        upper = jnp.matmul(upper, r_k_inv, precision=_HIGHEST)
        lower = jnp.matmul(lower, r_k_inv, precision=_HIGHEST)
        r_inv = jnp.matmul(r_inv, r_k_inv, precision=_HIGHEST)
        log_det_m = log_det_m + 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    # R = R_3 R_2 R_1, so log|M| = 2 log|R| is the sum over the passes. The first pass's shift
    # changes R_1 but not R: A_1 = A R_1^{-1} is formed from the unshifted A.
    return upper, r_inv, log_det_m


def _ppca_solve(
    x: jax.Array, W: jax.Array, mu: jax.Array, sigma2: jax.Array
) -> tuple[jax.Array, ...]:
    """``(log p(x) [B], C^{-1} r [B, D], b [B, q], Q1 [D, q], R^{-1} [q, q])`` with ``r = x -
    mu`` and the posterior mean ``b = M^{-1} W^T r = R^{-1} Q1^T r``; see
    :func:`ppca_log_likelihood`. Inputs already validated and cast."""
    D, q = W.shape
    basis, r_inv, log_det_m = _ppca_qr(W, sigma2)
    residual = x - mu
    coef = jnp.matmul(residual, basis, precision=_HIGHEST)  # rows of R b = Q1^T r: [B, q]
    misfit = residual - jnp.matmul(coef, basis.T, precision=_HIGHEST)  # r - W b: [B, D]
    b = jnp.matmul(coef, r_inv.T, precision=_HIGHEST)  # [B, q]
    quad = jnp.sum(jnp.square(misfit), axis=-1) / sigma2 + jnp.sum(jnp.square(b), axis=-1)
    log_det_c = (D - q) * jnp.log(sigma2) + log_det_m
    log_p = -0.5 * (D * _LOG_2PI + log_det_c + quad)
    return log_p, misfit / sigma2, b, basis, r_inv


@jax.custom_jvp
def _ppca_log_density(x: jax.Array, W: jax.Array, mu: jax.Array, sigma2: jax.Array) -> jax.Array:
    return _ppca_solve(x, W, mu, sigma2)[0]


@_ppca_log_density.defjvp
def _ppca_log_density_jvp(primals, tangents):
    """The exact differential of ``log N(x; mu, C)`` (no differentiation through the QR).

    With ``a = C^{-1} r = (r - W b) / sigma2`` (so ``W^T a = b``) and ``C^{-1} W = W M^{-1} =
    Q1 R^{-T}``, per example:
    ``d log p = a^T (dW b) - <W M^{-1}, dW> + a^T (dmu - dx) + dsigma2 (||a||^2 - tr C^{-1}) / 2``
    with ``tr C^{-1} = (D - q) / sigma2 + ||R^{-1}||_F^2``: the gradient
    ``N (C^{-1} S C^{-1} W - C^{-1} W)`` of Tipping & Bishop (1999) for ``W``. Being linear in
    the tangents, it transposes into the reverse-mode gradient; its only ``B``-sized product is
    ``b dW^T`` (``a^T (g b)``, one ``[D, B] x [B, q]`` product, under ``jax.grad``).
    """
    x, W, mu, sigma2 = primals
    dx, dW, dmu, dsigma2 = tangents
    D, q = W.shape
    log_p, a, b, basis, r_inv = _ppca_solve(x, W, mu, sigma2)
    c_inv_w = jnp.matmul(basis, r_inv.T, precision=_HIGHEST)  # C^{-1} W = W M^{-1}: [D, q]
    tr_c_inv = (D - q) / sigma2 + jnp.sum(jnp.square(r_inv))
    per_example = jnp.matmul(b, dW.T, precision=_HIGHEST) + dmu - dx  # [B, D]
    d_log_p = jnp.sum(a * per_example, axis=-1) + 0.5 * dsigma2 * jnp.sum(jnp.square(a), axis=-1)
    d_log_p = d_log_p - jnp.sum(c_inv_w * dW) - 0.5 * dsigma2 * tr_c_inv
    return log_p, d_log_p


def ppca_log_likelihood(x: Any, W: Any, mu: Any, sigma2: Any) -> jax.Array:
    """Exact marginal log-likelihood of probabilistic PCA, per example.

    ``log N(x; mu, C)`` with ``C = W W^T + sigma2 I_D`` (Tipping & Bishop, 1999, eq. 4-6),
    computed without forming or factorising the ``D x D`` matrix ``C``, in
    ``O(B D q + D q^2)``. With ``M = sigma2 I_q + W^T W`` (``q x q``) and ``r = x - mu``:

    * matrix determinant lemma: ``log|C| = (D - q) log sigma2 + log|M|``;
    * Woodbury: ``C^{-1} = (I - W M^{-1} W^T) / sigma2``, so with the posterior mean
      ``b = M^{-1} W^T r`` the quadratic form is
      ``r^T C^{-1} r = ||r - W b||^2 / sigma2 + ||b||^2``, a sum of two non-negative terms
      (no cancellation, unlike ``(||r||^2 - r^T W b) / sigma2``).

    ``log p(x) = -(D log 2 pi + log|C| + r^T C^{-1} r) / 2``.

    Accuracy: ``r^T C^{-1} r = min_b (||r - W b||^2 + sigma2 ||b||^2) / sigma2`` is a damped
    least-squares problem, solved through the thin QR ``[W; sqrt(sigma2) I_q] = [Q1; Q2] R``
    (``R^T R = M``, ``log|M| = 2 sum log R_ii``, ``W b = Q1 Q1^T r``, ``b = R^{-1} Q1^T r``),
    the normal equations ``M b = W^T r`` never being formed (Bjorck, 1996, *Numerical Methods
    for Least Squares Problems*, sections 2.2 and 2.7). This keeps the result accurate when
    ``M`` is ill-conditioned, i.e. loadings with singular values far above ``sqrt(sigma2)``:
    in float32 at ``cond(C) = 1e7`` a few 1e-3 nats for data drawn from the model, where
    ``M^{-1}`` loses thousands. The QR is computed by shifted Cholesky QR (matrix products and
    ``q x q`` factorisations; see ``_ppca_qr``).

    Gradients: a custom JVP gives the closed-form differential (Tipping & Bishop's
    ``C^{-1} S C^{-1} W - C^{-1} W`` for ``W``) in terms of the same QR, instead of
    differentiating through the factorisation; forward, reverse and higher-order
    differentiation all work.

    Args:
      x: ``[B, D]`` float observations.
      W: ``[D, q]`` float loading matrix (any ``q >= 1``).
      mu: ``[D]`` float mean.
      sigma2: scalar float isotropic noise variance, ``> 0``. Checked when concrete; a traced
        value cannot be checked and a non-positive one gives NaN.

    Returns:
      ``[B]`` log-densities, float32 for half-precision inputs, else the inputs' float dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import losses as L
      >>> # W = [1, 0]^T, sigma2 = 1: C = diag(2, 1), so log N(0; 0, C) = -log(2 pi) - log(2) / 2.
      >>> x, W, mu = jnp.zeros((1, 2)), jnp.array([[1.0], [0.0]]), jnp.zeros(2)
      >>> log_p = L.ppca_log_likelihood(x, W, mu, 1.0)
      >>> log_p.shape, round(float(log_p[0]), 4)
      ((1,), -2.1845)
    """
    x, W, mu, sigma2 = _ppca_inputs("ppca_log_likelihood", x, W, mu, sigma2)
    return _ppca_log_density(x, W, mu, sigma2)


def ppca_posterior(x: Any, W: Any, mu: Any, sigma2: Any) -> tuple[jax.Array, jax.Array]:
    """Posterior ``p(z | x) = N(z; M^{-1} W^T (x - mu), sigma2 M^{-1})`` of probabilistic PCA.

    ``M = sigma2 I_q + W^T W`` (Tipping & Bishop, 1999, eq. 7). The covariance does not depend on
    ``x``, so it is returned once. Both come from the QR ``[W; sqrt(sigma2) I_q] = [Q1; Q2] R``
    of :func:`ppca_log_likelihood`: ``mean = (x - mu) Q1 R^{-T}`` and ``cov = sigma2 R^{-1}
    R^{-T}``, which stay accurate when ``M`` is ill-conditioned (the mean to about
    ``eps s_max / sqrt(sigma2)`` relative, ``s_max`` the largest singular value of ``W``,
    rather than ``eps cond(M)``).

    Args:
      x: ``[B, D]`` float observations.
      W: ``[D, q]`` float loading matrix.
      mu: ``[D]`` float mean.
      sigma2: scalar float noise variance ``> 0`` (checked when concrete, see
        :func:`ppca_log_likelihood`).

    Returns:
      ``(mean [B, q], cov [q, q])``, float32 for half-precision inputs, else the inputs' dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import losses as L
      >>> # M = sigma2 + W^T W = 3: mean = W^T x / 3 = 2, cov = sigma2 / 3.
      >>> mean, cov = L.ppca_posterior(jnp.array([[3.0, 3.0]]), jnp.ones((2, 1)), jnp.zeros(2), 1.0)
      >>> mean.shape, cov.shape, round(float(mean[0, 0]), 4), round(float(cov[0, 0]), 4)
      ((1, 1), (1, 1), 2.0, 0.3333)
    """
    x, W, mu, sigma2 = _ppca_inputs("ppca_posterior", x, W, mu, sigma2)
    _, _, mean, _, r_inv = _ppca_solve(x, W, mu, sigma2)
    cov = sigma2 * jnp.matmul(r_inv, r_inv.T, precision=_HIGHEST)
    return mean, 0.5 * (cov + cov.T)


# --------------------------------------------------------------------------------------------
# Gaussian and Bernoulli terms (VAE: Kingma & Welling, 2014).
# --------------------------------------------------------------------------------------------


def _kl_standard_terms(mean: jax.Array, log_var: jax.Array) -> jax.Array:
    # 0.5 * (exp(lv) - 1 - lv + m^2); expm1 keeps the small-|lv| regime accurate and >= 0.
    return 0.5 * ((jnp.expm1(log_var) - log_var) + jnp.square(mean))


def gaussian_kl(mean: Any, log_var: Any) -> jax.Array:
    """``KL(N(mean, diag(exp(log_var))) || N(0, I))`` per example, in closed form.

    ``KL = 1/2 * sum_j (exp(lv_j) + m_j^2 - 1 - lv_j)`` summed over every non-batch axis
    (Kingma & Welling, 2014, appendix B), evaluated as ``expm1(lv) - lv + m^2``.

    Args:
      mean: ``[B, ...]`` float posterior means.
      log_var: same shape as ``mean``, float log-variances.

    Returns:
      ``[B]`` non-negative KL values in nats (float32 for half-precision inputs).

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import losses as L
      >>> L.gaussian_kl(jnp.zeros((2, 3)), jnp.zeros((2, 3)))  # q is the prior itself
      Array([0., 0.], dtype=float32)
      >>> L.gaussian_kl(jnp.ones((1, 3)), jnp.zeros((1, 3)))  # 3 dimensions of m^2 / 2
      Array([1.5], dtype=float32)
    """
    fn = "gaussian_kl"
    _check_min_rank(fn, "mean", mean, 1, "[B, ...]")
    _check_same_shape(fn, "log_var", log_var, "mean", mean)
    mean, log_var = _cast(_compute_dtype(mean, log_var), mean, log_var)
    return _sum_nonbatch(_kl_standard_terms(mean, log_var))


def gaussian_kl_diag(mean_q: Any, log_var_q: Any, mean_p: Any, log_var_p: Any) -> jax.Array:
    """``KL(N(mean_q, diag exp(log_var_q)) || N(mean_p, diag exp(log_var_p)))`` per example.

    ``KL = 1/2 * sum_j (exp(lq - lp) - 1 - (lq - lp) + (mq - mp)^2 exp(-lp))`` summed over every
    non-batch axis, the general two-diagonal-Gaussian closed form, evaluated with
    ``expm1(lq - lp)`` so that equal variances cancel exactly. Each input may reach
    ``|log_var| = 50``; the result is finite whenever the true KL is representable, i.e. it
    overflows float32 only when ``log_var_q - log_var_p > ~88`` (KL > 3e38).

    Args:
      mean_q: ``[B, ...]`` float means of q.
      log_var_q: same shape as ``mean_q``, float log-variances of q.
      mean_p: float means of p, broadcastable to ``mean_q.shape`` (e.g. ``[B, ...]``, ``[...]``
        for a shared prior, or a scalar).
      log_var_p: float log-variances of p, broadcastable to ``mean_q.shape``.

    Returns:
      ``[B]`` non-negative KL values in nats (float32 for half-precision inputs).

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import losses as L
      >>> mean_q, log_var_q = jnp.full((1, 2), 2.0), jnp.zeros((1, 2))
      >>> L.gaussian_kl_diag(mean_q, log_var_q, 0.0, 0.0)  # p = N(0, I): 2 * (2^2 / 2)
      Array([4.], dtype=float32)
      >>> L.gaussian_kl_diag(mean_q, log_var_q, mean_q, log_var_q)
      Array([0.], dtype=float32)
    """
    fn = "gaussian_kl_diag"
    _check_min_rank(fn, "mean_q", mean_q, 1, "[B, ...]")
    _check_same_shape(fn, "log_var_q", log_var_q, "mean_q", mean_q)
    _check_broadcastable_to(fn, "mean_p", mean_p, "mean_q", mean_q)
    _check_broadcastable_to(fn, "log_var_p", log_var_p, "mean_q", mean_q)
    dtype = _compute_dtype(mean_q, log_var_q, mean_p, log_var_p)
    mean_q, log_var_q, mean_p, log_var_p = _cast(dtype, mean_q, log_var_q, mean_p, log_var_p)
    diff = log_var_q - log_var_p
    terms = (jnp.expm1(diff) - diff) + jnp.square(mean_q - mean_p) * jnp.exp(-log_var_p)
    return _sum_nonbatch(jnp.broadcast_to(0.5 * terms, mean_q.shape))


def bernoulli_log_likelihood(logits: Any, x: Any) -> jax.Array:
    """``log Bernoulli(x; sigmoid(logits))`` per example, from logits.

    ``sum_j x_j * l_j - softplus(l_j)``, which equals
    ``x log sigmoid(l) + (1 - x) log sigmoid(-l)`` (the negative binary cross-entropy) without
    ever evaluating ``log(0)``. ``x`` may also be a probability in ``[0, 1]`` (e.g. grey levels),
    in which case this is the negative cross-entropy used for continuous-valued MNIST.

    Args:
      logits: ``[B, ...]`` float decoder logits.
      x: same shape as ``logits``; binary (bool, int or float) or values in ``[0, 1]``.

    Returns:
      ``[B]`` log-likelihoods (float32 for half-precision / integer inputs).

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import losses as L
      >>> # Logits 0 give p = 1/2: log(1/2) per pixel, whatever x is.
      >>> ll = L.bernoulli_log_likelihood(jnp.zeros((2, 4)), jnp.ones((2, 4)))
      >>> ll.shape, [round(v, 4) for v in ll.tolist()]
      ((2,), [-2.7726, -2.7726])
    """
    fn = "bernoulli_log_likelihood"
    _check_min_rank(fn, "logits", logits, 1, "[B, ...]")
    _check_same_shape(fn, "x", x, "logits", logits)
    dtype = _compute_dtype(logits)
    logits, x = _cast(dtype, logits, x)
    return _sum_nonbatch(x * logits - jax.nn.softplus(logits))


def gaussian_log_likelihood(x: Any, mean: Any, log_var: Any) -> jax.Array:
    """``log N(x; mean, diag(exp(log_var)))`` per example.

    ``-1/2 * sum_j (log 2 pi + lv_j + (x_j - m_j)^2 exp(-lv_j))`` over every non-batch axis.

    Args:
      x: ``[B, ...]`` float observations.
      mean: float means, broadcastable to ``x.shape``.
      log_var: float log-variances, broadcastable to ``x.shape`` (e.g. a learned scalar or a
        per-feature vector).

    Returns:
      ``[B]`` log-densities (float32 for half-precision inputs).

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import losses as L
      >>> # log N(0; 0, 1) = -log(2 pi) / 2 = -0.9189 per dimension.
      >>> round(float(L.gaussian_log_likelihood(jnp.zeros((1, 2)), 0.0, 0.0)[0]), 4)
      -1.8379
    """
    fn = "gaussian_log_likelihood"
    _check_min_rank(fn, "x", x, 1, "[B, ...]")
    _check_broadcastable_to(fn, "mean", mean, "x", x)
    _check_broadcastable_to(fn, "log_var", log_var, "x", x)
    x, mean, log_var = _cast(_compute_dtype(x, mean, log_var), x, mean, log_var)
    terms = _LOG_2PI + log_var + jnp.square(x - mean) * jnp.exp(-log_var)
    return -0.5 * _sum_nonbatch(jnp.broadcast_to(terms, x.shape))


def gaussian_log_likelihood_fixed(x: Any, mean: Any, variance: Any) -> jax.Array:
    """``log N(x; mean, variance * I)`` per example, for a fixed (non-learned) variance.

    ``-1/2 * sum_j (log(2 pi variance) + (x_j - m_j)^2 / variance)`` over every non-batch axis;
    with ``variance = 1`` this is ``-||x - mean||^2 / 2`` plus a constant, the usual "MSE"
    reconstruction term.

    Args:
      x: ``[B, ...]`` float observations.
      mean: float means, broadcastable to ``x.shape``.
      variance: float variance ``> 0``, a scalar or broadcastable to ``x.shape``. Checked when
        concrete; a traced value cannot be checked.

    Returns:
      ``[B]`` log-densities (float32 for half-precision inputs).

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import losses as L
      >>> x, mean = jnp.array([[1.0, 2.0]]), jnp.zeros((1, 2))
      >>> log_p = L.gaussian_log_likelihood_fixed(x, mean, 1.0)
      >>> # Variance 1: -||x - mean||^2 / 2 = -2.5, plus -log(2 pi) / 2 per dimension.
      >>> round(float(log_p[0] + jnp.log(2 * jnp.pi)), 4)
      -2.5
    """
    fn = "gaussian_log_likelihood_fixed"
    _check_min_rank(fn, "x", x, 1, "[B, ...]")
    _check_broadcastable_to(fn, "mean", mean, "x", x)
    _check_broadcastable_to(fn, "variance", variance, "x", x)
    _check_positive(fn, "variance", variance)
    x, mean, variance = _cast(_compute_dtype(x, mean), x, mean, variance)
    terms = _LOG_2PI + jnp.log(variance) + jnp.square(x - mean) / variance
    return -0.5 * _sum_nonbatch(jnp.broadcast_to(terms, x.shape))


def elbo(
    log_px_given_z: Any,
    mean: Any,
    log_var: Any,
    beta: Any = 1.0,
    *,
    free_bits: Any = 0.0,
) -> jax.Array:
    """Evidence lower bound with a Gaussian posterior and a standard-normal prior, per example.

    ``ELBO = log p(x | z) - beta * KL(q(z | x) || N(0, I))`` (Kingma & Welling, 2014; ``beta``
    from Higgins et al., 2017; ``beta = 1`` is the true bound). ``log_px_given_z`` is the
    reconstruction term for one reparameterised sample ``z ~ q(z | x)``.

    Free bits (Kingma et al., 2016): with ``free_bits > 0`` each latent dimension's KL is
    clamped from below, ``sum_j max(KL_j, free_bits)``, so a dimension is not pushed under
    ``free_bits`` nats (its KL gradient vanishes there). The paper clamps the minibatch-average
    KL of groups of dimensions; to keep a per-example result this clamps each example's
    per-dimension KL. With ``free_bits > 0`` the value is no longer a lower bound on
    ``log p(x)``: use it as a training objective, report the plain ELBO.

    Args:
      log_px_given_z: ``[B]`` float reconstruction log-likelihoods.
      mean: ``[B, ...]`` float posterior means (``mean.shape[0] == B``).
      log_var: same shape as ``mean``, float posterior log-variances.
      beta: scalar weight of the KL, ``>= 0`` (checked when concrete).
      free_bits: keyword-only scalar, nats per latent dimension, ``>= 0`` (checked when
        concrete).

    Returns:
      ``[B]`` ELBO values (float32 for half-precision inputs).

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import losses as L
      >>> log_px = jnp.array([-10.0])
      >>> mean, log_var = jnp.ones((1, 2)), jnp.zeros((1, 2))  # KL = 0.5 per dimension
      >>> L.elbo(log_px, mean, log_var), L.elbo(log_px, mean, log_var, beta=0.5)
      (Array([-11.], dtype=float32), Array([-10.5], dtype=float32))
      >>> L.elbo(log_px, mean, log_var, free_bits=1.0)  # each dimension's KL raised to 1 nat
      Array([-12.], dtype=float32)
    """
    fn = "elbo"
    _check_min_rank(fn, "mean", mean, 1, "[B, ...]")
    _check_same_shape(fn, "log_var", log_var, "mean", mean)
    batch = _shape(mean)[0]
    if _shape(log_px_given_z) != (batch,):
        _fail(
            fn,
            f"log_px_given_z must have shape [B] = ({batch},) (mean.shape[0]), "
            f"got {_shape(log_px_given_z)}",
        )
    _check_scalar(fn, "beta", beta)
    _check_nonnegative(fn, "beta", beta)
    _check_scalar(fn, "free_bits", free_bits)
    _check_nonnegative(fn, "free_bits", free_bits)
    dtype = _compute_dtype(log_px_given_z, mean, log_var)
    log_px_given_z, mean, log_var = _cast(dtype, log_px_given_z, mean, log_var)
    kl_terms = _kl_standard_terms(mean, log_var)
    fb_value = _concrete_value(free_bits)
    if fb_value is None or fb_value != 0:  # a traced free_bits always takes the clamp
        kl_terms = jnp.maximum(kl_terms, jnp.asarray(free_bits, dtype))
    return log_px_given_z - jnp.asarray(beta, dtype) * _sum_nonbatch(kl_terms)


def iwae_bound(log_px_given_z: Any, log_pz: Any, log_qz_given_x: Any) -> jax.Array:
    """Importance-weighted bound ``L_K`` per example (Burda et al., 2016, eq. 8).

    ``L_K = logsumexp_k(log w_k) - log K`` with ``log w_k = log p(x | z_k) + log p(z_k) -
    log q(z_k | x)`` and ``z_1..z_K ~ q(z | x)``. ``L_1`` is the ELBO estimate;
    ``E[L_K] <= E[L_{K+1}] <= log p(x)``. Stable for any magnitude of ``log w``.

    Args:
      log_px_given_z: ``[K, B]`` float ``log p(x | z_k)`` (importance samples on axis 0).
      log_pz: ``[K, B]`` float ``log p(z_k)``.
      log_qz_given_x: ``[K, B]`` float ``log q(z_k | x)``.

    Returns:
      ``[B]`` bounds (float32 for half-precision inputs).

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import losses as L
      >>> # K = 2 weights 1 and 3 for one example: log((1 + 3) / 2) = log 2.
      >>> log_px = jnp.log(jnp.array([[1.0], [3.0]]))
      >>> round(float(L.iwae_bound(log_px, jnp.zeros((2, 1)), jnp.zeros((2, 1)))[0]), 4)
      0.6931
    """
    fn = "iwae_bound"
    _check_rank(fn, "log_px_given_z", log_px_given_z, 2, "[K, B]")
    _check_same_shape(fn, "log_pz", log_pz, "log_px_given_z", log_px_given_z)
    _check_same_shape(fn, "log_qz_given_x", log_qz_given_x, "log_px_given_z", log_px_given_z)
    num_samples = _shape(log_px_given_z)[0]
    if num_samples < 1:
        _fail(fn, "log_px_given_z needs K >= 1 importance samples on axis 0, got K=0")
    dtype = _compute_dtype(log_px_given_z, log_pz, log_qz_given_x)
    a, b, c = _cast(dtype, log_px_given_z, log_pz, log_qz_given_x)
    log_w = a + b - c
    return jax.nn.logsumexp(log_w, axis=0) - math.log(num_samples)


# --------------------------------------------------------------------------------------------
# GAN: minimax and non-saturating (Goodfellow et al., 2014), hinge (Lim & Ye, 2017; Miyato et
# al., 2018), Wasserstein with gradient penalty (Arjovsky et al., 2017; Gulrajani et al., 2017),
# least squares (Mao et al., 2017). Every GAN loss takes the discriminator's raw outputs (one
# number per example, called logits here): the minimax and non-saturating losses read them as
# the logits of D = sigmoid(logits), the others use them as they are.
# --------------------------------------------------------------------------------------------


def _check_logits(fn: str, name: str, logits: Any) -> None:
    _check_min_rank(fn, name, logits, 1, "[B] or [B, ...] (e.g. [B, 1])")


def gan_value(real_logits: Any, fake_logits: Any) -> jax.Array:
    """The GAN value ``log D(x) + log(1 - D(G(z)))`` per example, from discriminator logits.

    ``D = sigmoid(logits)``, so ``log D(x) = log_sigmoid(real)`` and
    ``log(1 - D(G(z))) = log_sigmoid(-fake)``; both finite for any finite logit. Summed over the
    non-batch axes (so a ``[B, 1]`` discriminator output gives ``[B]``). The discriminator
    maximises this, the generator minimises it (Goodfellow et al., 2014, eq. 1).

    Args:
      real_logits: ``[B, ...]`` float logits of real examples.
      fake_logits: same shape as ``real_logits``, float logits of generated examples.

    Returns:
      ``[B]`` values ``<= 0`` (float32 for half-precision inputs).

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import losses as L
      >>> # Logits 0: D = 1/2 on both, so 2 log(1/2) per example.
      >>> [round(v, 4) for v in L.gan_value(jnp.zeros((2, 1)), jnp.zeros((2, 1))).tolist()]
      [-1.3863, -1.3863]
    """
    fn = "gan_value"
    _check_logits(fn, "real_logits", real_logits)
    _check_same_shape(fn, "fake_logits", fake_logits, "real_logits", real_logits)
    real, fake = _cast(_compute_dtype(real_logits, fake_logits), real_logits, fake_logits)
    return _sum_nonbatch(jax.nn.log_sigmoid(real) + jax.nn.log_sigmoid(-fake))


def discriminator_loss(real_logits: Any, fake_logits: Any) -> jax.Array:
    """Discriminator loss ``-(log D(x) + log(1 - D(G(z))))`` per example: ``-gan_value``.

    This is the binary cross-entropy with label 1 for real and 0 for fake examples.

    Args:
      real_logits: ``[B, ...]`` float logits of real examples.
      fake_logits: same shape as ``real_logits``, float logits of generated examples.

    Returns:
      ``[B]`` losses ``>= 0`` (float32 for half-precision inputs).

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import losses as L
      >>> loss = L.discriminator_loss(jnp.zeros((2, 1)), jnp.zeros((2, 1)))  # 2 log 2 each
      >>> loss.shape, [round(v, 4) for v in loss.tolist()]
      ((2,), [1.3863, 1.3863])
    """
    fn = "discriminator_loss"
    _check_logits(fn, "real_logits", real_logits)
    _check_same_shape(fn, "fake_logits", fake_logits, "real_logits", real_logits)
    return -gan_value(real_logits, fake_logits)


def generator_loss(fake_logits: Any, non_saturating: bool = True) -> jax.Array:
    """Generator loss per example, from the discriminator's logits on generated examples.

    * ``non_saturating=True`` (default; Goodfellow et al., 2014, section 3):
      ``-log D(G(z)) = -log_sigmoid(fake)``, strong gradients when the discriminator wins.
    * ``non_saturating=False``, the minimax form: ``log(1 - D(G(z))) = log_sigmoid(-fake)``,
      the generator's part of :func:`gan_value`, minimised by the generator.

    Args:
      fake_logits: ``[B, ...]`` float logits of generated examples.
      non_saturating: Python bool, which form to use (static).

    Returns:
      ``[B]`` losses (float32 for half-precision inputs).

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import losses as L
      >>> fake = jnp.zeros((1, 1))  # D(G(z)) = 1/2
      >>> round(float(L.generator_loss(fake)[0]), 4)  # -log(1/2)
      0.6931
      >>> round(float(L.generator_loss(fake, non_saturating=False)[0]), 4)  # log(1 - 1/2)
      -0.6931
    """
    fn = "generator_loss"
    _check_logits(fn, "fake_logits", fake_logits)
    if not isinstance(non_saturating, bool | np.bool_):
        _fail(fn, f"non_saturating must be a Python bool, got {type(non_saturating).__name__}")
    (fake,) = _cast(_compute_dtype(fake_logits), fake_logits)
    if non_saturating:
        return -_sum_nonbatch(jax.nn.log_sigmoid(fake))
    return _sum_nonbatch(jax.nn.log_sigmoid(-fake))


def _logit_pair(fn: str, real_logits: Any, fake_logits: Any) -> tuple[jax.Array, jax.Array]:
    _check_logits(fn, "real_logits", real_logits)
    _check_same_shape(fn, "fake_logits", fake_logits, "real_logits", real_logits)
    return _cast(_compute_dtype(real_logits, fake_logits), real_logits, fake_logits)


def _fake_only(fn: str, fake_logits: Any) -> jax.Array:
    _check_logits(fn, "fake_logits", fake_logits)
    return _cast(_compute_dtype(fake_logits), fake_logits)[0]


def hinge_discriminator_loss(real_logits: Any, fake_logits: Any) -> jax.Array:
    """Hinge discriminator loss ``relu(1 - D(x)) + relu(1 + D(G(z)))`` per example.

    ``D`` is the discriminator's raw output (no sigmoid). Pointwise, for densities ``p_data``
    and ``p_g`` at ``x``, ``p_data relu(1 - d) + p_g relu(1 + d)`` is minimised by
    ``d = +1`` where ``p_data > p_g`` and ``d = -1`` where ``p_data < p_g``: the optimal
    discriminator is ``sign(p_data - p_g)``, and the generator's loss against it is
    proportional to the total variation distance (Lim & Ye, 2017, "Geometric GAN", eq. 8;
    Miyato et al., 2018, eq. 17; Tran, Ranganath & Blei, 2017).

    Args:
      real_logits: ``[B, ...]`` float raw outputs on real examples.
      fake_logits: same shape as ``real_logits``, raw outputs on generated examples.

    Returns:
      ``[B]`` losses ``>= 0`` (float32 for half-precision inputs).

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import losses as L
      >>> # Scores beyond the margins (+1 real, -1 fake) cost nothing; 0 costs 1 on each side.
      >>> L.hinge_discriminator_loss(jnp.array([[2.0], [0.0]]), jnp.array([[-2.0], [0.0]]))
      Array([0., 2.], dtype=float32)
    """
    real, fake = _logit_pair("hinge_discriminator_loss", real_logits, fake_logits)
    return _sum_nonbatch(jax.nn.relu(1.0 - real) + jax.nn.relu(1.0 + fake))


def hinge_generator_loss(fake_logits: Any) -> jax.Array:
    """Hinge generator loss ``-D(G(z))`` per example (Lim & Ye, 2017; Miyato et al., 2018,
    eq. 17): the generator raises the discriminator's raw output on its samples, without the
    hinge (whose gradient would vanish once ``D(G(z)) > -1``).

    Args:
      fake_logits: ``[B, ...]`` float raw outputs on generated examples.

    Returns:
      ``[B]`` losses (float32 for half-precision inputs).

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import losses as L
      >>> L.hinge_generator_loss(jnp.array([[0.5], [-1.0]]))
      Array([-0.5,  1. ], dtype=float32)
    """
    return -_sum_nonbatch(_fake_only("hinge_generator_loss", fake_logits))


def wasserstein_critic_loss(real_logits: Any, fake_logits: Any) -> jax.Array:
    """Wasserstein critic loss ``D(G(z)) - D(x)`` per example (Arjovsky, Chintala & Bottou,
    2017, eq. 3).

    By the Kantorovich-Rubinstein duality, ``W_1(p_data, p_g) = sup_{||f||_L <= 1}
    E_data[f(x)] - E_g[f(x)]``: over 1-Lipschitz critics ``D`` the batch mean of this loss
    is minimised at ``-W_1``. The loss itself does not make ``D`` Lipschitz; add
    :func:`gradient_penalty` (Gulrajani et al., 2017) or use a spectrally normalised critic.
    ``D`` is the critic's raw output (no sigmoid).

    Args:
      real_logits: ``[B, ...]`` float critic scores of real examples.
      fake_logits: same shape as ``real_logits``, scores of generated examples.

    Returns:
      ``[B]`` losses, of either sign (float32 for half-precision inputs).

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import losses as L
      >>> L.wasserstein_critic_loss(jnp.array([[1.0]]), jnp.array([[3.0]]))  # 3 - 1
      Array([2.], dtype=float32)
    """
    real, fake = _logit_pair("wasserstein_critic_loss", real_logits, fake_logits)
    return _sum_nonbatch(fake - real)


def wasserstein_generator_loss(fake_logits: Any) -> jax.Array:
    """Wasserstein generator loss ``-D(G(z))`` per example (Arjovsky et al., 2017, Alg. 1):
    the generator's part of :func:`wasserstein_critic_loss`, with the sign flipped.

    Args:
      fake_logits: ``[B, ...]`` float critic scores of generated examples.

    Returns:
      ``[B]`` losses (float32 for half-precision inputs).

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import losses as L
      >>> L.wasserstein_generator_loss(jnp.array([[3.0], [-1.0]]))
      Array([-3.,  1.], dtype=float32)
    """
    return -_sum_nonbatch(_fake_only("wasserstein_generator_loss", fake_logits))


def _check_key(fn: str, name: str, key: Any) -> None:
    dtype = getattr(key, "dtype", None)
    typed = dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)
    raw = dtype == jnp.uint32 and _shape(key) == (2,)
    if not ((typed and _shape(key) == ()) or raw):
        _fail(
            fn,
            f"{name} must be one jax.random key (jax.random.key(s) or a uint32[2] PRNGKey), "
            f"got {getattr(dtype, 'name', type(key).__name__)}{_shape(key)}",
        )


def gradient_penalty(
    critic: Callable[[jax.Array], jax.Array],
    real: Any,
    fake: Any,
    rng: jax.Array,
    weight: Any = 10.0,
) -> jax.Array:
    """WGAN-GP gradient penalty ``weight * (||grad_x D(x_hat)||_2 - 1)^2`` per example.

    ``x_hat_b = eps_b x_b + (1 - eps_b) G(z)_b`` with ``eps_b ~ U[0, 1]`` drawn from ``rng``,
    one per example (Gulrajani et al., 2017, Alg. 1; ``weight`` is their ``lambda``, 10 in
    the paper). The norm is over all of an example's input axes. It is added to
    :func:`wasserstein_critic_loss` to keep the critic close to 1-Lipschitz along the lines
    between real and generated examples.

    ``grad_x D(x_hat)`` is taken as the gradient of ``sum_b critic(x_hat)_b`` with respect to
    the batch, which holds each example's own input gradient as long as ``critic`` treats the
    examples independently (no batch normalisation or other mixing across the batch, which
    Gulrajani et al. also leave out of the critic). The result is differentiable with respect
    to whatever ``critic`` closes over (its parameters: a double backward pass) and to
    ``real`` and ``fake``; stop the gradient of ``fake`` yourself when only the critic
    trains. ``x_hat`` is computed in at least float32. Where the input gradient is exactly
    zero the norm's derivative is taken as 0 (its subgradient), not NaN.

    Args:
      critic: a function ``[B, *S] -> [B]`` (or ``[B, 1]``), the critic's raw output; it may
        close over parameters.
      real: ``[B, *S]`` float real examples.
      fake: ``[B, *S]`` float generated examples (same shape as ``real``).
      rng: a ``jax.random`` key for the interpolation weights ``eps`` (the only randomness).
      weight: ``lambda >= 0``, a scalar (checked when concrete; a traced value is the caller's
        responsibility).

    Returns:
      ``[B]`` penalties ``>= 0`` (float32 for half-precision inputs).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from genjax import losses as L
      >>> critic = lambda x: x @ jnp.array([3.0, 4.0])  # linear: ||grad|| = 5 everywhere
      >>> real, fake = jnp.ones((2, 2)), jnp.zeros((2, 2))
      >>> L.gradient_penalty(critic, real, fake, jax.random.key(0))  # 10 * (5 - 1)^2
      Array([160., 160.], dtype=float32)
    """
    fn = "gradient_penalty"
    if not callable(critic):
        _fail(fn, f"critic must be a function [B, ...] -> [B], got {type(critic).__name__}")
    _check_min_rank(fn, "real", real, 1, "[B, ...]")
    _check_same_shape(fn, "fake", fake, "real", real)
    _check_key(fn, "rng", rng)
    _check_scalar(fn, "weight", weight)
    _check_nonnegative(fn, "weight", weight)
    dtype = _compute_dtype(real, fake)
    real, fake = _cast(dtype, real, fake)
    b = real.shape[0]
    eps = jax.random.uniform(rng, (b,) + (1,) * (real.ndim - 1), dtype)
    x_hat = eps * real + (1.0 - eps) * fake
    scores, pullback = jax.vjp(critic, x_hat)
    if jnp.ndim(scores) < 1 or jnp.shape(scores)[0] != b or jnp.size(scores) != b:
        _fail(
            fn,
            f"critic must return one score per example, [{b}] or [{b}, 1], got shape "
            f"{tuple(jnp.shape(scores))}",
        )
    (grad,) = pullback(jnp.ones_like(scores))
    sq_norm = _sum_nonbatch(jnp.square(grad.astype(dtype)))
    positive = sq_norm > 0
    norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, sq_norm, 1.0)), 0.0)
    return jnp.asarray(weight, dtype) * jnp.square(norm - 1.0)


def least_squares_discriminator_loss(real_logits: Any, fake_logits: Any) -> jax.Array:
    """Least-squares discriminator loss ``1/2 (D(x) - 1)^2 + 1/2 D(G(z))^2`` per example.

    The LSGAN of Mao et al. (2017, eq. 2) with targets ``b = 1`` for real and ``a = 0`` for
    generated examples (``D`` the raw output, no sigmoid). Pointwise,
    ``p_data (d - 1)^2 / 2 + p_g d^2 / 2`` is minimised by
    ``D*(x) = p_data(x) / (p_data(x) + p_g(x))`` (their eq. 4 with ``a = 0, b = 1``), the same
    optimal discriminator as the minimax game's, here on the output scale rather than through
    a sigmoid.

    Args:
      real_logits: ``[B, ...]`` float raw outputs on real examples.
      fake_logits: same shape as ``real_logits``, raw outputs on generated examples.

    Returns:
      ``[B]`` losses ``>= 0`` (float32 for half-precision inputs).

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import losses as L
      >>> real, fake = jnp.array([[1.0], [0.0]]), jnp.array([[0.0], [1.0]])
      >>> L.least_squares_discriminator_loss(real, fake)  # on target, then 1/2 + 1/2
      Array([0., 1.], dtype=float32)
    """
    real, fake = _logit_pair("least_squares_discriminator_loss", real_logits, fake_logits)
    return _sum_nonbatch(0.5 * jnp.square(real - 1.0) + 0.5 * jnp.square(fake))


def least_squares_generator_loss(fake_logits: Any) -> jax.Array:
    """Least-squares generator loss ``1/2 (D(G(z)) - 1)^2`` per example (Mao et al., 2017,
    eq. 2 with target ``c = 1``, the value the discriminator gives real data).

    Args:
      fake_logits: ``[B, ...]`` float raw outputs on generated examples.

    Returns:
      ``[B]`` losses ``>= 0`` (float32 for half-precision inputs).

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import losses as L
      >>> L.least_squares_generator_loss(jnp.array([[1.0], [3.0]]))  # (3 - 1)^2 / 2 = 2
      Array([0., 2.], dtype=float32)
    """
    fake = _fake_only("least_squares_generator_loss", fake_logits)
    return _sum_nonbatch(0.5 * jnp.square(fake - 1.0))


# --------------------------------------------------------------------------------------------
# VQ-VAE (van den Oord et al., 2017).
# --------------------------------------------------------------------------------------------


def vector_quantize(z_e: Any, codebook: Any) -> tuple[jax.Array, jax.Array]:
    """Snap each vector of ``z_e`` to its nearest code, with a straight-through gradient.

    The index of the nearest code (van den Oord et al., 2017, eq. 1) uses the squared distance
    ``||z||^2 - 2 z . e_k + ||e_k||^2``: one ``[N, D] x [D, K]`` matmul, never an ``[N, K, D]``
    broadcast; ties go to the lowest index. The distances are computed in float32 or wider at
    the highest matmul precision.

    The first output is the straight-through value ``z_e + sg(z_q - z_e)``: its value is
    ``z_q = codebook[indices]`` and its gradient w.r.t. ``z_e`` is the identity (the decoder's
    gradient is copied to the encoder), with no gradient to ``codebook``. It is evaluated as
    ``sg(z_q) + (z_e - sg(z_e))``, which has exactly those derivatives and whose value is
    exactly ``z_q`` in floating point. To train the codebook, recompute ``z_q =
    codebook[indices]`` and use :func:`vq_codebook_loss` / :func:`vq_commitment_loss`.

    Args:
      z_e: ``[..., D]`` float encoder outputs (any leading axes, e.g. ``[B, H, W, D]``).
      codebook: ``[K, D]`` float code vectors.

    Returns:
      ``(z_q_st, indices)``: ``z_q_st`` of shape ``z_e.shape`` in the common dtype of ``z_e`` and
      ``codebook`` (bf16 stays bf16: it is an activation, not a loss), and int32 ``indices`` of
      shape ``z_e.shape[:-1]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import losses as L
      >>> codebook = jnp.array([[0.0, 0.0], [1.0, 1.0], [4.0, 4.0]])
      >>> z_q, indices = L.vector_quantize(jnp.array([[0.9, 1.2], [3.0, 3.0]]), codebook)
      >>> indices, z_q.tolist()
      (Array([1, 2], dtype=int32), [[1.0, 1.0], [4.0, 4.0]])
    """
    fn = "vector_quantize"
    _check_min_rank(fn, "z_e", z_e, 1, "[..., D]")
    D = _shape(z_e)[-1]
    cb_shape = _shape(codebook)
    if len(cb_shape) != 2 or cb_shape[1] != D or cb_shape[0] < 1:
        _fail(
            fn,
            f"codebook must have shape [K, D] with K >= 1 and D={D} (z_e.shape[-1]), "
            f"got {cb_shape}",
        )
    z_e = jnp.asarray(z_e)
    codebook = jnp.asarray(codebook)
    out_dtype = jnp.result_type(z_e, codebook)
    dist_dtype = jnp.promote_types(out_dtype, jnp.float32)
    flat = lax.stop_gradient(z_e).reshape(-1, D).astype(dist_dtype)
    codes = lax.stop_gradient(codebook).astype(dist_dtype)
    cross = jnp.matmul(flat, codes.T, precision=_HIGHEST)  # [N, K], the one matmul
    distances = (
        jnp.sum(jnp.square(flat), axis=-1, keepdims=True)
        - 2.0 * cross
        + jnp.sum(jnp.square(codes), axis=-1)[None, :]
    )
    indices = jnp.argmin(distances, axis=-1).astype(jnp.int32).reshape(z_e.shape[:-1])
    z_q = jnp.take(codebook, indices, axis=0).astype(out_dtype)
    z_e = z_e.astype(out_dtype)
    z_q_st = lax.stop_gradient(z_q) + (z_e - lax.stop_gradient(z_e))
    return z_q_st, indices


def l2_normalize(x: Any, epsilon: float = 1e-6) -> jax.Array:
    """``x / max(||x||, epsilon)`` over the last axis, in float32 or wider.

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import losses as L
      >>> L.l2_normalize(jnp.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
      [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    _check_min_rank("l2_normalize", "x", x, 1, "[..., D]")
    x = jnp.asarray(x)
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    norm_sq = jnp.sum(jnp.square(x), axis=-1, keepdims=True)
    return x * lax.rsqrt(jnp.maximum(norm_sq, jnp.asarray(epsilon, x.dtype) ** 2))


def cosine_vector_quantize(z_e: Any, codebook: Any) -> tuple[jax.Array, jax.Array]:
    """Nearest code by cosine similarity, in the l2-normalised space (Yu et al., 2022,
    "Vector-quantized Image Modeling with Improved VQGAN", ViT-VQGAN).

    ``k = argmax_j cos(z, e_j)``; on unit vectors ``||z^ - e^_j||^2 = 2 - 2 cos``, so this is
    :func:`vector_quantize` of ``z^ = l2_normalize(z_e)`` against ``l2_normalize(codebook)``
    (one matmul, float32 distances). The first output is ``e^_k`` with the straight-through
    gradient of ``z^`` (so the encoder's gradient passes through the normalisation).

    Args:
      z_e: ``[..., D]`` float vectors (e.g. projected encoder outputs).
      codebook: ``[K, D]`` float code vectors (any norm; zero rows stay zero).

    Returns:
      ``(z_q_st, indices)``: float32 ``z_e.shape`` unit vectors and int32 ``z_e.shape[:-1]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import losses as L
      >>> codebook = jnp.array([[1.0, 0.0], [0.0, 5.0], [-3.0, 0.0]])
      >>> z_q, indices = L.cosine_vector_quantize(jnp.array([[10.0, 1.0], [0.1, 0.2]]), codebook)
      >>> indices, z_q.tolist()
      (Array([0, 1], dtype=int32), [[1.0, 0.0], [0.0, 1.0]])
    """
    fn = "cosine_vector_quantize"
    _check_min_rank(fn, "z_e", z_e, 1, "[..., D]")
    _check_rank(fn, "codebook", codebook, 2, "[K, D]")
    return vector_quantize(l2_normalize(z_e), l2_normalize(codebook))


def _check_vq_pair(fn: str, z_e: Any, z_q: Any) -> None:
    _check_min_rank(fn, "z_e", z_e, 1, "[B, ...]")
    _check_same_shape(fn, "z_q", z_q, "z_e", z_e)


def vq_codebook_loss(z_e: Any, z_q: Any) -> jax.Array:
    """VQ-VAE codebook ("dictionary") loss ``||sg[z_e] - z_q||^2`` per example.

    Summed over every non-batch axis (van den Oord et al., 2017, eq. 3, second term). Only
    ``z_q`` receives gradient: it moves the chosen codes towards the encoder outputs.

    Args:
      z_e: ``[B, ...]`` float encoder outputs.
      z_q: same shape, the quantised values *without* straight-through, i.e.
        ``codebook[indices]`` with ``indices`` from :func:`vector_quantize` (the straight-through
        output carries no gradient to the codebook, so it must not be passed here).

    Returns:
      ``[B]`` losses (float32 for half-precision inputs).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from genjax import losses as L
      >>> z_e, z_q = jnp.array([[1.0, 2.0]]), jnp.array([[3.0, 0.0]])
      >>> L.vq_codebook_loss(z_e, z_q)  # 2^2 + 2^2
      Array([8.], dtype=float32)
      >>> jax.grad(lambda q: L.vq_codebook_loss(z_e, q).sum())(z_q)  # moves the code, not z_e
      Array([[ 4., -4.]], dtype=float32)
    """
    fn = "vq_codebook_loss"
    _check_vq_pair(fn, z_e, z_q)
    z_e, z_q = _cast(_compute_dtype(z_e, z_q), z_e, z_q)
    return _sum_nonbatch(jnp.square(lax.stop_gradient(z_e) - z_q))


def vq_commitment_loss(z_e: Any, z_q: Any) -> jax.Array:
    """VQ-VAE commitment loss ``||z_e - sg[z_q]||^2`` per example.

    Summed over every non-batch axis (van den Oord et al., 2017, eq. 3, third term, weighted by
    ``beta`` outside). Only ``z_e`` receives gradient: it keeps the encoder close to its codes.

    Args:
      z_e: ``[B, ...]`` float encoder outputs.
      z_q: same shape, the quantised values ``codebook[indices]`` (not the straight-through
        output, see :func:`vq_codebook_loss`).

    Returns:
      ``[B]`` losses (float32 for half-precision inputs).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from genjax import losses as L
      >>> z_e, z_q = jnp.array([[1.0, 2.0]]), jnp.array([[3.0, 0.0]])
      >>> L.vq_commitment_loss(z_e, z_q)  # 2^2 + 2^2
      Array([8.], dtype=float32)
      >>> jax.grad(lambda e: L.vq_commitment_loss(e, z_q).sum())(z_e)  # moves the encoder
      Array([[-4.,  4.]], dtype=float32)
    """
    fn = "vq_commitment_loss"
    _check_vq_pair(fn, z_e, z_q)
    z_e, z_q = _cast(_compute_dtype(z_e, z_q), z_e, z_q)
    return _sum_nonbatch(jnp.square(z_e - lax.stop_gradient(z_q)))


def codebook_perplexity(indices: Any, num_codes: int) -> jax.Array:
    """Perplexity of code usage, ``exp(H(p))`` with ``p`` the histogram of ``indices``.

    ``H(p) = -sum_k p_k log p_k`` over the empirical frequencies of the codes in ``indices``
    (all axes pooled). Ranges from 1 (one code used) to ``num_codes`` (uniform usage). Indices
    outside ``[0, num_codes)`` cannot be checked when traced; they are not counted. A diagnostic,
    not differentiable.

    The histogram is counted exactly, in integers (int32, or int64 when ``jax_enable_x64`` is
    on), and only then normalised in float32: a float32 count stops growing at ``2^24`` per code
    (``2^24 + 1`` rounds back to ``2^24``), which a few hundred batches of code maps reach.
    ``indices`` may therefore hold at most ``2^31 - 1`` entries without x64 (``2^63 - 1`` with
    it); the size is static, and a larger array raises (sum histograms over chunks instead).

    Args:
      indices: integer array of any non-empty shape, e.g. from :func:`vector_quantize`.
      num_codes: Python int ``K >= 1``, the codebook size (static).

    Returns:
      float32 scalar perplexity.

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import losses as L
      >>> float(L.codebook_perplexity(jnp.array([2, 2, 2, 2]), num_codes=4))  # one code used
      1.0
      >>> round(float(L.codebook_perplexity(jnp.array([0, 1, 2, 3]), num_codes=4)), 4)
      4.0
    """
    fn = "codebook_perplexity"
    if isinstance(num_codes, bool) or not isinstance(num_codes, int | np.integer):
        _fail(fn, f"num_codes must be a Python int >= 1, got {num_codes!r}")
    if num_codes < 1:
        _fail(fn, f"num_codes must be >= 1, got {num_codes}")
    indices = jnp.asarray(indices)
    if not jnp.issubdtype(indices.dtype, jnp.integer):
        _fail(fn, f"indices must have an integer dtype, got {indices.dtype}")
    if indices.size == 0:
        _fail(fn, f"indices must be non-empty, got shape {indices.shape}")
    count_dtype = jax.dtypes.canonicalize_dtype(jnp.int64)  # int32 unless x64 is enabled
    max_count = int(jnp.iinfo(count_dtype).max)
    if indices.size > max_count:
        _fail(
            fn,
            f"indices must have at most {max_count} entries (the {jnp.dtype(count_dtype).name} "
            f"counts), got {indices.size}; enable jax_enable_x64 or sum histograms over chunks",
        )
    num_codes = int(num_codes)
    flat = indices.reshape(-1)
    valid = (flat >= 0) & (flat < num_codes)
    # Out-of-range entries are routed to index num_codes, which mode="drop" discards.
    slots = jnp.where(valid, flat, num_codes)
    counts = jnp.zeros((num_codes,), count_dtype).at[slots].add(1, mode="drop")
    total = jnp.maximum(jnp.sum(counts), 1)  # <= indices.size: no overflow
    p = counts.astype(jnp.float32) / total.astype(jnp.float32)
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
    return jnp.exp(entropy)
