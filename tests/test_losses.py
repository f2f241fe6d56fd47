"""Tests of genjax.losses against independent oracles.

Oracles: scipy.stats densities, scikit-learn's PPCA log-likelihood, Gaussian conditioning done by
hand in NumPy, Monte-Carlo estimates, numerical quadrature, finite differences, brute-force
searches and small hand-computed cases. float64 is switched on per test (the ``x64`` fixture)
where the oracle comparison needs it.
"""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from jax import lax
from jax.test_util import check_grads
from scipy import integrate, linalg, optimize, special, stats
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA

import genjax.losses as L

# The tests call the library through jax.jit: one compilation per input shape instead of one per
# primitive (eager dispatch compiles every operation separately), which keeps this file fast.
# Scalars such as sigma2 and beta arrive traced, so this also covers the unchecked (traced)
# path; test_jit_vmap_grad_float32_and_bfloat16 compares eager calls with jitted ones, and the
# bad-input tests call eagerly.
J = SimpleNamespace(
    **{name: jax.jit(getattr(L, name)) for name in L.__all__},
)
J.generator_loss = jax.jit(L.generator_loss, static_argnames="non_saturating")
J.codebook_perplexity = jax.jit(L.codebook_perplexity, static_argnames="num_codes")

PROPERTY_SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _np(a) -> np.ndarray:
    return np.asarray(jnp.asarray(a, jnp.float32) if a.dtype == jnp.bfloat16 else a)


# ---------------------------------------------------------------------------------------------
# PPCA
# ---------------------------------------------------------------------------------------------


def _ppca_params(rng, D, q, sigma2):
    return rng.normal(size=(D, q)), rng.normal(size=D), sigma2


@pytest.mark.parametrize(("D", "q", "sigma2"), [(7, 3, 0.3), (20, 1, 2.0), (5, 5, 1e-2)])
def test_ppca_log_likelihood_matches_scipy_float64(x64, D, q, sigma2):
    rng = _rng(1)
    W, mu, _ = _ppca_params(rng, D, q, sigma2)
    x = rng.normal(size=(9, D)) * 2.0 + mu
    expected = stats.multivariate_normal(mu, W @ W.T + sigma2 * np.eye(D)).logpdf(x)
    got = J.ppca_log_likelihood(x, W, mu, sigma2)
    assert got.dtype == jnp.float64 and got.shape == (9,)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-10)


def test_ppca_log_likelihood_matches_scipy_float32():
    rng = _rng(2)
    D, q, sigma2 = 16, 4, 0.5
    W, mu, _ = _ppca_params(rng, D, q, sigma2)
    x = rng.normal(size=(6, D))
    expected = stats.multivariate_normal(mu, W @ W.T + sigma2 * np.eye(D)).logpdf(x)
    got = J.ppca_log_likelihood(x.astype(np.float32), W.astype(np.float32), mu, sigma2)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4)


@pytest.mark.parametrize("q", [2, 10])
def test_ppca_log_likelihood_matches_sklearn_on_digits(x64, q):
    # Convention: scikit-learn's PCA is Tipping & Bishop's PPCA fitted to the covariance with
    # N-1 normalisation (explained_variance_ and noise_variance_ are eigenvalues of
    # X^T X / (N - 1)). Its score_samples is log N(x; mean_, W W^T + noise_variance_ I) with
    # W = components_^T diag(sqrt(explained_variance_ - noise_variance_)), so we build W and
    # sigma2 from sklearn's own fitted attributes and compare the per-sample log-likelihoods.
    X = load_digits().data.astype(np.float64)
    pca = PCA(n_components=q).fit(X)
    W = pca.components_.T * np.sqrt(pca.explained_variance_ - pca.noise_variance_)
    got = np.asarray(J.ppca_log_likelihood(X, W, pca.mean_, pca.noise_variance_))
    np.testing.assert_allclose(got, pca.score_samples(X), rtol=1e-6)

    # The same parameters in closed form from the eigendecomposition (Tipping & Bishop, eq. 7-8)
    # of the N-1 sample covariance: identical model (W is unique up to a rotation, W W^T is not).
    evals, evecs = np.linalg.eigh(np.cov(X, rowvar=False))
    evals, evecs = evals[::-1], evecs[:, ::-1]
    sigma2_cf = evals[q:].mean()
    W_cf = evecs[:, :q] * np.sqrt(evals[:q] - sigma2_cf)
    np.testing.assert_allclose(sigma2_cf, pca.noise_variance_, rtol=1e-8)
    np.testing.assert_allclose(W_cf @ W_cf.T, W @ W.T, atol=1e-6 * np.abs(W @ W.T).max())
    got_cf = np.asarray(J.ppca_log_likelihood(X, W_cf, X.mean(0), sigma2_cf))
    np.testing.assert_allclose(got_cf, pca.score_samples(X), rtol=1e-6)


def test_ppca_closed_form_maximum_likelihood_is_a_stationary_point(x64):
    # Tipping & Bishop (1999): with S the N-normalised covariance, mu = mean(x),
    # sigma2 = mean of the discarded eigenvalues and W = U_q (Lambda_q - sigma2 I)^(1/2) maximise
    # the likelihood, so the gradient of our log-likelihood vanishes there and not elsewhere.
    X = load_digits().data[:600].astype(np.float64)
    q = 5
    evals, evecs = np.linalg.eigh(np.cov(X, rowvar=False, bias=True))
    evals, evecs = evals[::-1], evecs[:, ::-1]
    sigma2 = evals[q:].mean()
    W = evecs[:, :q] * np.sqrt(evals[:q] - sigma2)
    mu = X.mean(0)

    def mean_ll(W, mu, log_sigma2):
        return jnp.mean(J.ppca_log_likelihood(X, W, mu, jnp.exp(log_sigma2)))

    grad_fn = jax.jit(jax.grad(mean_ll, argnums=(0, 1, 2)))
    at_ml = grad_fn(W, mu, np.log(sigma2))
    off_ml = grad_fn(W * 1.05, mu + 0.1, np.log(sigma2) + 0.05)
    for g_ml, g_off in zip(at_ml, off_ml, strict=True):
        assert np.linalg.norm(g_ml) < 1e-6 * np.linalg.norm(g_off)
    assert mean_ll(W, mu, np.log(sigma2)) > mean_ll(W * 1.05, mu, np.log(sigma2))


def test_ppca_posterior_matches_gaussian_conditioning(x64):
    rng = _rng(3)
    D, q, sigma2 = 8, 3, 0.7
    W, mu, _ = _ppca_params(rng, D, q, sigma2)
    x = rng.normal(size=(5, D))
    # Joint of (z, x): z ~ N(0, I), Cov(z, x) = W^T, Cov(x) = C = W W^T + sigma2 I.
    C = W @ W.T + sigma2 * np.eye(D)
    expected_mean = (W.T @ np.linalg.solve(C, (x - mu).T)).T
    expected_cov = np.eye(q) - W.T @ np.linalg.solve(C, W)
    mean, cov = J.ppca_posterior(x, W, mu, sigma2)
    assert mean.shape == (5, q) and cov.shape == (q, q)
    np.testing.assert_allclose(np.asarray(mean), expected_mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.asarray(cov), expected_cov, rtol=1e-9, atol=1e-12)


def test_ppca_never_builds_a_d_by_d_matrix():
    D, q = 257, 3
    x, W, mu = jnp.zeros((4, D)), jnp.ones((D, q)), jnp.zeros(D)

    def value_and_grads(x, W, mu, sigma2):
        f = lambda *a: L.ppca_log_likelihood(*a).sum() + L.ppca_posterior(*a)[0].sum()
        return jax.value_and_grad(f, argnums=(0, 1, 2, 3))(x, W, mu, sigma2)

    text = str(jax.make_jaxpr(value_and_grads)(x, W, mu, 1.0))
    assert f"{D},{D}]" not in text
    assert f"[{D},{q}]" in text  # the check would see a D x D array if there were one


def _ill_conditioned_ppca(dtype, s_max, s_min, sigma2, D=64, q=8, B=64, seed=0):
    """PPCA parameters with ``W = U diag(s) V^T`` (``s`` log-spaced from ``s_max`` down to
    ``s_min``, ``U``, ``V`` random orthonormal, so ``W^T W`` is far from diagonal) and ``B``
    draws of ``x`` from the model, all rounded to ``dtype``. ``cond(C) = 1 + s_max^2 / sigma2``.
    """
    rng = _rng(seed)
    U = np.linalg.qr(rng.normal(size=(D, q)))[0]
    V = np.linalg.qr(rng.normal(size=(q, q)))[0]
    W = (U * np.geomspace(s_max, s_min, q)) @ V.T
    mu = rng.normal(size=D)
    x = rng.normal(size=(B, q)) @ W.T + mu + math.sqrt(sigma2) * rng.normal(size=(B, D))
    return x.astype(dtype), W.astype(dtype), mu.astype(dtype), dtype(sigma2)


def _dense_ppca_float64(x, W, mu, sigma2):
    """Oracle: log N(x; mu, W W^T + sigma2 I) and the posterior mean W^T C^{-1} (x - mu), from a
    float64 Cholesky factorisation of the dense D x D covariance (of the inputs' exact values).
    Its error, ~cond(C) * 1e-16 relative, is below 1e-7 nats for cond(C) <= 1e7."""
    x, W, mu = (np.asarray(a, np.float64) for a in (x, W, mu))
    C = W @ W.T + float(sigma2) * np.eye(W.shape[0])
    chol = linalg.cholesky(C, lower=True)
    white = linalg.solve_triangular(chol, (x - mu).T, lower=True)  # L^{-1} r: [D, B]
    log_p = -0.5 * (
        W.shape[0] * math.log(2 * math.pi)
        + 2 * np.sum(np.log(np.diag(chol)))
        + np.sum(white**2, axis=0)
    )
    c_inv_r = linalg.solve_triangular(chol.T, white, lower=False)
    return log_p, (W.T @ c_inv_r).T


def _tfp_low_rank_log_density(x, W, mu, sigma2):
    """TensorFlow Probability's low-rank-plus-diagonal Gaussian (on JAX), the reference whose
    error on the same inputs and in the same dtype sets the bar."""
    from tensorflow_probability.substrates import jax as tfp

    def log_prob(x, W, mu, sigma2):
        dist = tfp.distributions.MultivariateNormalDiagPlusLowRankCovariance(
            loc=mu, cov_diag_factor=jnp.full(mu.shape, sigma2, mu.dtype), cov_perturb_factor=W
        )
        return dist.log_prob(x)

    return np.asarray(jax.jit(log_prob)(x, W, mu, sigma2), np.float64)


def _digits_rotated_float32(q=60):
    # scikit-learn's PPCA fit of digits at q = 60 (cond(C) = 1.7e6), with W rotated by a random
    # orthogonal matrix: the same model (W W^T is unchanged), but W^T W is no longer diagonal.
    X = load_digits().data
    pca = PCA(n_components=q).fit(X)
    W = pca.components_.T * np.sqrt(pca.explained_variance_ - pca.noise_variance_)
    W = W @ np.linalg.qr(_rng(5).normal(size=(q, q)))[0]
    return (
        X.astype(np.float32),
        W.astype(np.float32),
        pca.mean_.astype(np.float32),
        np.float32(pca.noise_variance_),
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # TFP's JAX backend, at import
@pytest.mark.parametrize("case", ["cond_1e7", "digits_q60"])
def test_ppca_log_likelihood_ill_conditioned_float32(case):
    # M = sigma2 I + W^T W is ill-conditioned when W's singular values reach far above
    # sqrt(sigma2). Through M^{-1} the float32 log-density was 723 nats wrong on the first case
    # and 22 on the second. The bar is 10x the error of TFP's low-rank Gaussian on the same
    # float32 inputs (3.8 and 18 nats); the absolute bound is of the order of what rounding
    # x - mu allows (measured: 1.5e-3 and 3.9e-4 nats).
    if case == "cond_1e7":
        x, W, mu, sigma2 = _ill_conditioned_ppca(np.float32, 100.0, 0.1, 1e-3)
    else:
        x, W, mu, sigma2 = _digits_rotated_float32()
    expected, _ = _dense_ppca_float64(x, W, mu, sigma2)
    got = J.ppca_log_likelihood(x, W, mu, sigma2)
    assert got.dtype == jnp.float32
    error = np.max(np.abs(np.asarray(got, np.float64) - expected))
    tfp_error = np.max(np.abs(_tfp_low_rank_log_density(x, W, mu, sigma2) - expected))
    assert error <= 10 * tfp_error, (error, tfp_error)
    assert error < 0.05, error


def test_ppca_posterior_ill_conditioned_float32():
    # Same inputs as the cond(C) = 1e7 case above. Through M^{-1} the mean was 2.6% off
    # (relative to its largest entry) and the covariance 0.4%; a backward-stable computation is
    # limited by eps s_max / sqrt(sigma2) ~ 2e-4 for the mean (measured 9e-6) and by ~eps for
    # the covariance (measured 1.3e-6).
    x, W, mu, sigma2 = _ill_conditioned_ppca(np.float32, 100.0, 0.1, 1e-3)
    _, expected_mean = _dense_ppca_float64(x, W, mu, sigma2)
    W64 = W.astype(np.float64)
    expected_cov = float(sigma2) * np.linalg.inv(W64.T @ W64 + float(sigma2) * np.eye(8))
    mean, cov = J.ppca_posterior(x, W, mu, sigma2)
    mean_error = np.max(np.abs(np.asarray(mean, np.float64) - expected_mean))
    assert mean_error < 1e-3 * np.max(np.abs(expected_mean)), mean_error
    cov_error = np.max(np.abs(np.asarray(cov, np.float64) - expected_cov))
    assert cov_error < 1e-4 * np.max(np.abs(expected_cov)), cov_error


def _mpmath_ppca_log_density(x, W, mu, sigma2, digits=40):
    """Oracle: log N(x; mu, W W^T + sigma2 I) with a dense Cholesky factorisation carried out
    in mpmath at ``digits`` significant digits on the inputs' exact binary values."""
    with mpmath.workdps(digits):
        D = W.shape[0]
        Wm = mpmath.matrix(W.tolist())
        chol = mpmath.cholesky(Wm * Wm.T + mpmath.mpf(float(sigma2)) * mpmath.eye(D))
        log_det = 2 * mpmath.fsum(mpmath.log(chol[i, i]) for i in range(D))
        out = []
        for row in np.asarray(x, np.float64):
            r = [mpmath.mpf(float(a)) - mpmath.mpf(float(m)) for a, m in zip(row, mu, strict=True)]
            white = []  # forward substitution: L^{-1} r
            for i in range(D):
                partial = r[i] - mpmath.fsum(chol[i, k] * white[k] for k in range(i))
                white.append(partial / chol[i, i])
            quad = mpmath.fsum(w * w for w in white)
            out.append(-(D * mpmath.log(2 * mpmath.pi) + log_det + quad) / 2)
        return np.array([float(v) for v in out])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # TFP's JAX backend, at import
def test_ppca_log_likelihood_ill_conditioned_float64(x64):
    # cond(C) = 1 + 1000^2 / 1e-4 = 1e10 (and cond(M) = 1e10): through M^{-1} the float64
    # log-density was 1.4e-4 nats off, TFP's low-rank Gaussian 3.9e-6 (measured 1.7e-10).
    # The oracle runs in mpmath: a float64 dense Cholesky of C is itself 1.3e-6 off here.
    x, W, mu, sigma2 = _ill_conditioned_ppca(np.float64, 1000.0, 1e-3, 1e-4, B=8, seed=1)
    expected = _mpmath_ppca_log_density(x, W, mu, sigma2)
    got = J.ppca_log_likelihood(x, W, mu, sigma2)
    assert got.dtype == jnp.float64
    error = np.max(np.abs(np.asarray(got) - expected))
    tfp_error = np.max(np.abs(_tfp_low_rank_log_density(x, W, mu, sigma2) - expected))
    assert error <= 10 * tfp_error, (error, tfp_error)
    assert error < 1e-8, error


def test_ppca_gradient_ill_conditioned_float32():
    # The gradient of sum_i log p(x_i) (Tipping & Bishop, 1999): with A = C^{-1} (x - mu)^T,
    # d/dW = A A^T W - B C^{-1} W, d/dmu = sum of A's columns, d/dsigma2 = (||A||^2 - B tr C^{-1})
    # / 2; here from a float64 inverse of the dense C. Differentiating through M^{-1} in float32
    # got d/dW wrong by 74x its size and d/dsigma2 by 540x on these inputs (now 4e-4, 3e-4).
    x, W, mu, sigma2 = _ill_conditioned_ppca(np.float32, 100.0, 0.1, 1e-3)
    x_f64, W64 = x.astype(np.float64), W.astype(np.float64)
    C_inv = np.linalg.inv(W64 @ W64.T + float(sigma2) * np.eye(W.shape[0]))
    A = C_inv @ (x_f64 - mu.astype(np.float64)).T
    expected = (
        A @ (A.T @ W64) - x.shape[0] * C_inv @ W64,
        A.sum(axis=1),
        0.5 * (np.sum(A**2) - x.shape[0] * np.trace(C_inv)),
    )
    total = lambda W, mu, s: jnp.sum(L.ppca_log_likelihood(x, W, mu, s))
    got = jax.jit(jax.grad(total, argnums=(0, 1, 2)))(W, mu, sigma2)
    for g, e in zip(got, expected, strict=True):
        assert np.max(np.abs(np.asarray(g, np.float64) - e)) < 1e-2 * np.max(np.abs(e))


def test_ppca_log_likelihood_forward_and_second_order_derivatives(x64):
    # The log-density carries a custom JVP: forward mode, reverse mode and the second order
    # (reverse over the JVP rule) all against finite differences.
    rng = _rng(18)
    args = (rng.normal(size=(3, 5)), rng.normal(size=(5, 2)), rng.normal(size=5), 0.6)
    args = tuple(jnp.asarray(a, jnp.float64) for a in args)
    check_grads(J.ppca_log_likelihood, args, order=2, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Gaussian KL and likelihoods
# ---------------------------------------------------------------------------------------------


def test_gaussian_kl_hand_computed():
    # KL(N(1, 1) || N(0, 1)) = 1/2; KL(N(0, e) || N(0, 1)) = (e - 1 - 1) / 2.
    got = J.gaussian_kl(jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 1.0]]))
    np.testing.assert_allclose(np.asarray(got), [0.5 + (math.e - 2.0) / 2.0], rtol=1e-6)


def test_gaussian_kl_is_accurate_near_the_prior():
    # For q close to p the KL is ~ d^2 / 4 per dim (d = log-variance difference): exp(d) - 1 - d
    # in float32 would lose every digit of that; the float64 oracle uses the same closed form.
    d = np.array([[1e-3, -1e-3, 3e-5]])
    expected = (0.5 * (np.expm1(d) - d)).sum(-1)
    got = J.gaussian_kl(np.zeros((1, 3), np.float32), d.astype(np.float32))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4)
    base = np.array([[2.0, -3.0, 0.5]], np.float32)
    shifted = (base + d).astype(np.float32)
    d32 = shifted.astype(np.float64) - base  # the difference float32 can represent
    got = J.gaussian_kl_diag(base, shifted, base, base)
    np.testing.assert_allclose(np.asarray(got), (0.5 * (np.expm1(d32) - d32)).sum(-1), rtol=1e-4)


def test_gaussian_kl_matches_monte_carlo():
    rng = _rng(4)
    mean = np.array([[0.3, -1.2], [1.5, 0.2], [0.0, 0.0]])
    log_var = np.array([[0.2, -0.5], [-1.0, 0.4], [0.0, 0.0]])
    n = 10**6
    eps = rng.standard_normal((n, *mean.shape))
    z = mean + np.exp(0.5 * log_var) * eps
    # log q(z) - log p(z) for z = mean + sigma * eps: the normalisers differ by log sigma.
    log_ratio = 0.5 * (z**2 - eps**2 - log_var)
    per_sample = log_ratio.sum(-1)  # [n, B]
    estimate = per_sample.mean(0)
    stderr = per_sample.std(0) / math.sqrt(n)
    got = np.asarray(J.gaussian_kl(mean.astype(np.float32), log_var.astype(np.float32)))
    assert np.all(np.abs(got - estimate) <= 5 * stderr + 1e-6)
    assert got[2] == 0.0  # q = p exactly


def test_gaussian_kl_diag_matches_quadrature_and_closed_form(x64):
    rng = _rng(5)
    mq, lq = rng.normal(size=(2, 3)), rng.normal(size=(2, 3)) * 0.5
    mp, lp = rng.normal(size=(2, 3)), rng.normal(size=(2, 3)) * 0.5
    got = np.asarray(J.gaussian_kl_diag(mq, lq, mp, lp))

    # Numerical integral of q log(q / p), one dimension at a time.
    by_quadrature = np.zeros(2)
    for b in range(2):
        for j in range(3):
            q_dist = stats.norm(mq[b, j], np.exp(0.5 * lq[b, j]))
            p_dist = stats.norm(mp[b, j], np.exp(0.5 * lp[b, j]))
            integrand = lambda t, q_dist=q_dist, p_dist=p_dist: (
                q_dist.pdf(t) * (q_dist.logpdf(t) - p_dist.logpdf(t))
            )
            by_quadrature[b] += integrate.quad(integrand, -np.inf, np.inf, epsabs=1e-12)[0]
    np.testing.assert_allclose(got, by_quadrature, rtol=1e-7)

    # Textbook form: log(sigma_p / sigma_q) + (sigma_q^2 + (mq - mp)^2) / (2 sigma_p^2) - 1/2.
    vq, vp = np.exp(lq), np.exp(lp)
    by_hand = (0.5 * np.log(vp / vq) + (vq + (mq - mp) ** 2) / (2 * vp) - 0.5).sum(-1)
    np.testing.assert_allclose(got, by_hand, rtol=1e-12)

    # Against a standard-normal prior it is gaussian_kl; a shared [Z] prior broadcasts.
    np.testing.assert_allclose(
        np.asarray(J.gaussian_kl_diag(mq, lq, 0.0, 0.0)),
        np.asarray(J.gaussian_kl(mq, lq)),
        rtol=1e-12,
    )
    shared = np.asarray(J.gaussian_kl_diag(mq, lq, mp[0], lp[0]))
    np.testing.assert_allclose(
        shared, np.asarray(J.gaussian_kl_diag(mq, lq, mp[[0, 0]], lp[[0, 0]])), rtol=1e-12
    )


def test_bernoulli_log_likelihood_matches_scipy(x64):
    rng = _rng(6)
    logits = rng.normal(size=(4, 3, 5)) * 4.0
    x = (rng.uniform(size=logits.shape) < 0.5).astype(np.float64)
    expected = stats.bernoulli.logpmf(x, special.expit(logits)).sum(axis=(1, 2))
    np.testing.assert_allclose(np.asarray(J.bernoulli_log_likelihood(logits, x)), expected)
    # Integer/bool targets and continuous targets (negative binary cross-entropy).
    np.testing.assert_allclose(
        np.asarray(J.bernoulli_log_likelihood(logits, x.astype(bool))), expected
    )
    p = rng.uniform(size=logits.shape)
    sig = special.expit(logits)
    expected_soft = (p * np.log(sig) + (1 - p) * np.log1p(-sig)).sum(axis=(1, 2))
    np.testing.assert_allclose(np.asarray(J.bernoulli_log_likelihood(logits, p)), expected_soft)


def test_gaussian_log_likelihoods_match_scipy(x64):
    rng = _rng(7)
    x = rng.normal(size=(5, 2, 4))
    mean = rng.normal(size=(5, 2, 4))
    log_var = rng.normal(size=(5, 2, 4))
    expected = stats.norm.logpdf(x, mean, np.exp(0.5 * log_var)).sum(axis=(1, 2))
    np.testing.assert_allclose(np.asarray(J.gaussian_log_likelihood(x, mean, log_var)), expected)
    # A per-feature log-variance shared over the batch broadcasts.
    shared = rng.normal(size=(2, 4))
    expected_shared = stats.norm.logpdf(x, mean, np.exp(0.5 * shared)).sum(axis=(1, 2))
    np.testing.assert_allclose(
        np.asarray(J.gaussian_log_likelihood(x, mean, shared)), expected_shared
    )
    for variance in (0.25, 3.0):
        expected_fixed = stats.norm.logpdf(x, mean, math.sqrt(variance)).sum(axis=(1, 2))
        np.testing.assert_allclose(
            np.asarray(J.gaussian_log_likelihood_fixed(x, mean, variance)), expected_fixed
        )


def test_elbo_hand_computed():
    log_px = np.array([-3.0, -1.5], np.float32)
    mean = np.array([[1.0, 0.0, 0.1], [0.0, 0.0, 2.0]], np.float32)
    log_var = np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    kl_dims = 0.5 * (np.exp(log_var) - 1.0 - log_var + mean**2)  # [[0.5, 0, .005], [0, .359, 2]]
    for beta in (1.0, 0.0, 4.0):
        expected = log_px - beta * kl_dims.sum(-1)
        got = J.elbo(log_px, mean, log_var, beta=beta)
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6)
    clamped = np.maximum(kl_dims, 0.25).sum(-1)
    got = J.elbo(log_px, mean, log_var, beta=2.0, free_bits=0.25)
    np.testing.assert_allclose(np.asarray(got), log_px - 2.0 * clamped, rtol=1e-6)
    # Below the threshold the KL gradient vanishes (the dims with KL < free_bits).
    g = jax.jit(jax.grad(lambda m: J.elbo(log_px, m, log_var, free_bits=0.25).sum()))(mean)
    np.testing.assert_array_equal(np.asarray(g)[kl_dims < 0.25], 0.0)
    np.testing.assert_allclose(np.asarray(g)[kl_dims > 0.25], -mean[kl_dims > 0.25])


# ---------------------------------------------------------------------------------------------
# IWAE
# ---------------------------------------------------------------------------------------------


def test_iwae_bound_matches_scipy_logsumexp(x64):
    rng = _rng(8)
    K, B = 7, 5
    a, b, c = (rng.normal(size=(K, B)) * 300.0 for _ in range(3))
    expected = special.logsumexp(a + b - c, axis=0) - math.log(K)
    np.testing.assert_allclose(np.asarray(J.iwae_bound(a, b, c)), expected, rtol=1e-12)
    # K = 1 is the single-sample ELBO estimate.
    np.testing.assert_allclose(
        np.asarray(J.iwae_bound(a[:1], b[:1], c[:1])), (a + b - c)[0], rtol=1e-12
    )


def test_iwae_bound_increases_with_k_towards_log_px():
    # p(z) = N(0, 1), p(x | z) = N(z, 1), so p(x) = N(0, 2) and p(z | x) = N(x / 2, 1 / 2);
    # q(z | x) = N(0.3 x, 1) is deliberately wrong. E[L_K] increases with K towards log p(x),
    # and the K = 1 gap is KL(q || p(z | x)) (Burda et al., 2016, theorem 1).
    rng = _rng(9)
    B, K_max = 20000, 16
    x = rng.normal(size=B) * math.sqrt(2.0)
    q_mean, q_std = 0.3 * x, 1.0
    z = q_mean + q_std * rng.standard_normal((K_max, B))
    log_px_z = stats.norm.logpdf(x, z, 1.0).astype(np.float32)
    log_pz = stats.norm.logpdf(z).astype(np.float32)
    log_qz = stats.norm.logpdf(z, q_mean, q_std).astype(np.float32)
    log_px = stats.norm.logpdf(x, 0.0, math.sqrt(2.0))

    bounds = []
    for K in (1, 2, 4, 8, 16):
        # Average over the K_max / K disjoint groups of samples: an unbiased estimate of E[L_K].
        groups = [slice(g * K, (g + 1) * K) for g in range(K_max // K)]
        per_group = [
            np.asarray(J.iwae_bound(log_px_z[s], log_pz[s], log_qz[s])).mean() for s in groups
        ]
        bounds.append(float(np.mean(per_group)))
    assert all(lo < hi for lo, hi in itertools.pairwise(bounds)), bounds
    assert bounds[-1] < log_px.mean()
    kl_q_post = 0.5 * (np.log(0.5) + (1.0 + (0.2 * x) ** 2) / 0.5 - 1.0)
    np.testing.assert_allclose(log_px.mean() - bounds[0], kl_q_post.mean(), rtol=0.03)
    assert log_px.mean() - bounds[-1] < 0.25 * (log_px.mean() - bounds[0])


# ---------------------------------------------------------------------------------------------
# GAN
# ---------------------------------------------------------------------------------------------


def test_gan_losses_match_numpy_float64():
    rng = _rng(10)
    real = rng.normal(size=(6, 1)) * 5.0
    fake = rng.normal(size=(6, 1)) * 5.0
    d_real, d_fake = 1.0 / (1.0 + np.exp(-real)), 1.0 / (1.0 + np.exp(-fake))
    value = (np.log(d_real) + np.log(1.0 - d_fake))[:, 0]
    r32, f32 = real.astype(np.float32), fake.astype(np.float32)
    np.testing.assert_allclose(np.asarray(J.gan_value(r32, f32)), value, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(J.discriminator_loss(r32, f32)), -value, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(J.generator_loss(f32)), -np.log(d_fake)[:, 0], rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(J.generator_loss(f32, non_saturating=False)),
        np.log(1.0 - d_fake)[:, 0],
        rtol=1e-5,
    )
    # A [B] discriminator output is the same as [B, 1]; logits 0 give D = 1/2.
    np.testing.assert_allclose(np.asarray(J.gan_value(r32[:, 0], f32[:, 0])), value, rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(J.gan_value(jnp.zeros((2, 1)), jnp.zeros((2, 1)))), 2 * np.log(0.5)
    )


def test_gan_losses_extreme_logits_are_exact_not_nan():
    big = jnp.array([[1e4], [-1e4]])
    # log D(x) = log_sigmoid(l): 0 for l = 1e4, -1e4 for l = -1e4; log(1 - D) = log_sigmoid(-l).
    np.testing.assert_allclose(np.asarray(J.gan_value(big, -big)), [0.0, -2e4])
    np.testing.assert_allclose(np.asarray(J.generator_loss(big)), [0.0, 1e4])
    np.testing.assert_allclose(np.asarray(J.generator_loss(big, non_saturating=False)), [-1e4, 0])
    grads = jax.jit(jax.grad(lambda r, f: J.discriminator_loss(r, f).sum(), argnums=(0, 1)))(
        big, big
    )
    np.testing.assert_allclose(np.asarray(grads[0]).ravel(), [0.0, -1.0])
    np.testing.assert_allclose(np.asarray(grads[1]).ravel(), [1.0, 0.0])


# The hinge, Wasserstein and least-squares losses on small logits, written out by hand.
_REAL = [[2.0], [0.5], [-1.0]]
_FAKE = [[-3.0], [0.0], [1.5]]
_HAND = {
    # relu(1 - r) + relu(1 + f): 0 + 0, 0.5 + 1, 2 + 2.5.
    "hinge_discriminator_loss": ((_REAL, _FAKE), [0.0, 1.5, 4.5]),
    # -f.
    "hinge_generator_loss": ((_FAKE,), [3.0, 0.0, -1.5]),
    # f - r.
    "wasserstein_critic_loss": ((_REAL, _FAKE), [-5.0, -0.5, 2.5]),
    "wasserstein_generator_loss": ((_FAKE,), [3.0, 0.0, -1.5]),
    # (r - 1)^2 / 2 + f^2 / 2: 0.5 + 4.5, 0.125 + 0, 2 + 1.125.
    "least_squares_discriminator_loss": ((_REAL, _FAKE), [5.0, 0.125, 3.125]),
    # (f - 1)^2 / 2.
    "least_squares_generator_loss": ((_FAKE,), [8.0, 0.5, 0.125]),
}


@pytest.mark.parametrize("name", sorted(_HAND))
def test_gan_losses_hand_computed(name):
    args, expected = _HAND[name]
    args = tuple(jnp.asarray(a, jnp.float32) for a in args)
    got = getattr(J, name)(*args)
    assert got.shape == (3,) and got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6, atol=1e-7)
    # [B] logits give the same values; [B, 2] logits sum their two columns per example.
    flat = getattr(J, name)(*(a[:, 0] for a in args))
    np.testing.assert_allclose(np.asarray(flat), expected, rtol=1e-6, atol=1e-7)
    doubled = getattr(J, name)(*(jnp.concatenate([a, a], axis=1) for a in args))
    np.testing.assert_allclose(np.asarray(doubled), 2 * np.asarray(expected), rtol=1e-6, atol=1e-7)


def test_logistic_gan_losses_hand_computed():
    # Logit log 3 is D = 3/4 and -log 3 is D = 1/4.
    real, fake = jnp.asarray([math.log(3.0)]), jnp.asarray([-math.log(3.0)])
    assert float(J.discriminator_loss(real, fake)[0]) == pytest.approx(-2 * math.log(0.75))
    assert float(J.generator_loss(fake)[0]) == pytest.approx(math.log(4.0))
    assert float(J.generator_loss(fake, non_saturating=False)[0]) == pytest.approx(math.log(0.75))


# Two 1-D densities and points where both carry mass: the pointwise minimiser of the
# discriminator's expected loss, E(d) = p_data(x) l_real(d) + p_g(x) l_fake(d), is known in
# closed form for each loss.
_P_DATA, _P_G = stats.norm(0.0, 1.0), stats.norm(1.5, 0.7)
_XS = np.linspace(-1.5, 3.0, 10)


def _pointwise_minimiser(loss, p, q, bounds):
    """argmin_d p loss(d, c) + q loss(c, d) by scipy (c: any fixed value; it only adds a
    constant). The real and generated terms of a discriminator loss are separable, so this is
    p l_real(d) + q l_fake(d) up to a constant."""
    c = jnp.zeros((1,), jnp.float64)

    def expected(d):
        d = jnp.full((1,), d, jnp.float64)
        return float(p * loss(d, c)[0] + q * loss(c, d)[0])

    result = optimize.minimize_scalar(
        expected, bounds=bounds, method="bounded", options={"xatol": 1e-10}
    )
    assert result.success
    return result.x


@pytest.mark.parametrize(
    ("name", "optimum", "bounds"),
    [
        # Goodfellow et al. (2014), Prop. 1: D* = p / (p + q), i.e. the logit log(p / q).
        ("discriminator_loss", lambda p, q: math.log(p / q), (-20.0, 20.0)),
        # Mao et al. (2017), eq. 4 with a = 0, b = 1: D* = p / (p + q) on the output itself.
        ("least_squares_discriminator_loss", lambda p, q: p / (p + q), (-3.0, 3.0)),
        # Hinge: p relu(1 - d) + q relu(1 + d) is linear with slope q - p on [-1, 1] and rises
        # outside it, so its minimiser is sign(p - q).
        ("hinge_discriminator_loss", lambda p, q: math.copysign(1.0, p - q), (-3.0, 3.0)),
    ],
)
def test_discriminator_losses_are_minimised_pointwise_by_the_optimal_discriminator(
    x64, name, optimum, bounds
):
    loss = jax.jit(getattr(L, name))
    for x in _XS:
        p, q = _P_DATA.pdf(x), _P_G.pdf(x)
        d = _pointwise_minimiser(loss, p, q, bounds)
        assert d == pytest.approx(optimum(p, q), abs=1e-6), (name, x)


def test_wasserstein_critic_loss_mean_is_minus_w1_at_the_optimal_critic(x64):
    # For N(0, 1) against N(1.5, 1), W_1 = 1.5 and f(x) = -x is an optimal 1-Lipschitz critic:
    # the batch mean of the critic loss estimates -W_1 (Monte Carlo, 200,000 draws each).
    rng = _rng(31)
    real, fake = rng.normal(size=200_000), rng.normal(size=200_000) + 1.5
    loss = np.asarray(J.wasserstein_critic_loss(-real, -fake))
    assert loss.mean() == pytest.approx(-1.5, abs=0.02)


# --------------------------------------------------------------------------------- gradient penalty


@pytest.mark.parametrize("norm", [0.25, 1.0, 3.0])
def test_gradient_penalty_of_a_linear_critic_is_lambda_times_norm_minus_one_squared(norm):
    # D(x) = <w, x> + b has grad_x D = w at every x_hat, whatever the interpolation weights.
    rng = _rng(32)
    w = rng.normal(size=(2, 3))
    w *= norm / np.linalg.norm(w)
    w32 = jnp.asarray(w, jnp.float32)
    critic = lambda x: jnp.sum(x * w32, axis=(1, 2)) + 0.7
    real = jnp.asarray(rng.normal(size=(6, 2, 3)), jnp.float32)
    fake = jnp.asarray(rng.normal(size=(6, 2, 3)) * 3.0, jnp.float32)
    penalty = jax.jit(lambda r, f, k: L.gradient_penalty(critic, r, f, k, weight=10.0))
    for key in (jax.random.PRNGKey(0), jax.random.key(5)):
        got = penalty(real, fake, key)
        assert got.shape == (6,) and got.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(got), 10.0 * (norm - 1.0) ** 2, rtol=1e-5, atol=1e-6)
    # The default weight is Gulrajani et al.'s lambda = 10; weight scales linearly.
    default = L.gradient_penalty(critic, real, fake, jax.random.PRNGKey(1))
    np.testing.assert_allclose(np.asarray(default), 10.0 * (norm - 1.0) ** 2, rtol=1e-5, atol=1e-6)
    half = L.gradient_penalty(critic, real, fake, jax.random.PRNGKey(1), weight=0.5)
    np.testing.assert_allclose(np.asarray(half), 0.5 * (norm - 1.0) ** 2, rtol=1e-5, atol=1e-7)


def _mlp_critic(w1, b1, w2):
    return lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ w1 + b1) @ w2


def test_gradient_penalty_of_a_nonlinear_critic_matches_finite_differences(x64):
    # With fake == real the interpolate is x itself, for any weights: the penalty must be
    # lambda (||grad D(x)|| - 1)^2 with the gradient from central differences of D.
    rng = _rng(33)
    w1, b1, w2 = rng.normal(size=(6, 16)), rng.normal(size=16), rng.normal(size=16)
    critic = _mlp_critic(*(jnp.asarray(a) for a in (w1, b1, w2)))
    x = rng.normal(size=(5, 2, 3))
    got = np.asarray(L.gradient_penalty(critic, x, x, jax.random.PRNGKey(2), weight=3.0))

    def d_numpy(v):
        return np.tanh(v.reshape(v.shape[0], -1) @ w1 + b1) @ w2

    eps = 1e-6
    grads = np.zeros((5, 6))
    flat = x.reshape(5, 6)
    for j in range(6):
        step = np.zeros_like(flat)
        step[:, j] = eps
        up, down = (flat + step).reshape(x.shape), (flat - step).reshape(x.shape)
        grads[:, j] = (d_numpy(up) - d_numpy(down)) / (2 * eps)
    expected = 3.0 * (np.linalg.norm(grads, axis=1) - 1.0) ** 2
    np.testing.assert_allclose(got, expected, rtol=1e-7)
    assert np.all(np.abs(np.linalg.norm(grads, axis=1) - 1.0) > 0.1)  # not trivially ~0


def test_gradient_penalty_interpolates_uniformly_per_example(x64):
    # D(x) = x^2 / 2 on real = 1, fake = 0 has grad D(x_hat) = x_hat = eps, so the penalty is
    # (1 - eps)^2 and reveals each example's eps: they must be i.i.d. U[0, 1] (scipy's KS
    # test), one per example, and a function of the key alone.
    critic = lambda x: 0.5 * jnp.sum(x**2, axis=1)
    n = 4000
    real, fake = np.ones((n, 1)), np.zeros((n, 1))
    penalty = jax.jit(lambda k: L.gradient_penalty(critic, real, fake, k, weight=1.0))
    eps = 1.0 - np.sqrt(np.asarray(penalty(jax.random.PRNGKey(3))))
    assert np.all((eps >= 0) & (eps <= 1))
    assert stats.kstest(eps, "uniform").pvalue > 1e-3
    assert len(np.unique(eps)) == n
    np.testing.assert_array_equal(1.0 - np.sqrt(np.asarray(penalty(jax.random.PRNGKey(3)))), eps)
    other = 1.0 - np.sqrt(np.asarray(penalty(jax.random.PRNGKey(4))))
    assert np.mean(np.abs(other - eps)) > 0.1


def test_gradient_penalty_is_per_example():
    # Changing one example's fake changes that example's penalty only.
    rng = _rng(34)
    critic = _mlp_critic(*(jnp.asarray(rng.normal(size=s), jnp.float32) for s in ((3, 8), 8, 8)))
    real = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
    fake = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
    key = jax.random.PRNGKey(6)
    before = np.asarray(L.gradient_penalty(critic, real, fake, key))
    after = np.asarray(L.gradient_penalty(critic, real, fake.at[2].add(5.0), key))
    np.testing.assert_array_equal(np.delete(after, 2), np.delete(before, 2))
    assert abs(after[2] - before[2]) > 1e-3


def test_gradient_penalty_with_a_flat_critic_has_finite_gradients():
    # A ReLU critic that is flat at every interpolate: grad D = 0, penalty lambda, and its
    # gradient with respect to the critic's weights is 0 (the norm's subgradient), not NaN.
    x = jnp.ones((3, 2))

    def total(w):
        critic = lambda v: jax.nn.relu(v @ w)
        return jnp.sum(L.gradient_penalty(critic, x, 2.0 * x, jax.random.PRNGKey(0)))

    w = jnp.asarray([-1.0, -1.0])
    value, grad = jax.jit(jax.value_and_grad(total))(w)
    assert float(value) == pytest.approx(30.0)
    np.testing.assert_array_equal(np.asarray(grad), [0.0, 0.0])


# ---------------------------------------------------------------------------------------------
# VQ-VAE
# ---------------------------------------------------------------------------------------------


def _brute_force_nearest(z_e, codebook):
    d = ((z_e[..., None, :] - codebook) ** 2).sum(-1)
    return d.argmin(-1), d


def test_vector_quantize_matches_brute_force_float64(x64):
    rng = _rng(11)
    z_e, codebook = rng.normal(size=(2, 3, 4, 5)), rng.normal(size=(11, 5))
    z_q_st, indices = J.vector_quantize(z_e, codebook)
    expected, _ = _brute_force_nearest(z_e, codebook)
    assert indices.dtype == jnp.int32 and indices.shape == (2, 3, 4)
    np.testing.assert_array_equal(np.asarray(indices), expected)
    np.testing.assert_array_equal(np.asarray(z_q_st), codebook[expected])


def test_vector_quantize_float32_picks_a_nearest_code():
    rng = _rng(12)
    z_e = rng.normal(size=(64, 8)).astype(np.float32) * 3
    codebook = rng.normal(size=(32, 8)).astype(np.float32)
    z_q_st, indices = J.vector_quantize(z_e, codebook)
    expected, d = _brute_force_nearest(z_e.astype(np.float64), codebook.astype(np.float64))
    chosen = np.take_along_axis(d, np.asarray(indices)[:, None], axis=1)[:, 0]
    np.testing.assert_allclose(chosen, d.min(-1), rtol=1e-5)
    assert np.mean(np.asarray(indices) == expected) > 0.95
    np.testing.assert_array_equal(np.asarray(z_q_st), codebook[np.asarray(indices)])
    # Duplicate codes: ties go to the lowest index.
    _, tied = J.vector_quantize(jnp.zeros((1, 2)), jnp.array([[1.0, 0], [0, 1.0], [1.0, 0]]))
    assert int(tied[0]) == 0


def test_vector_quantize_uses_one_matmul_not_a_broadcast():
    N, K, D = 24, 11, 5
    text = str(jax.make_jaxpr(L.vector_quantize)(jnp.zeros((N, D)), jnp.zeros((K, D))))
    assert f"{N},{K},{D}]" not in text
    assert text.count("dot_general") == 1


def test_straight_through_gradient_is_the_gradient_at_z_q():
    rng = _rng(13)
    z_e = rng.normal(size=(3, 4, 2)).astype(np.float32)
    codebook = rng.normal(size=(6, 2)).astype(np.float32)
    c = rng.normal(size=z_e.shape).astype(np.float32)
    f = lambda z: jnp.sum(jnp.sin(z) * c)  # a stand-in for the decoder + reconstruction loss

    _, indices = J.vector_quantize(z_e, codebook)
    z_q = codebook[np.asarray(indices)]
    value, grad_z_e = jax.jit(jax.value_and_grad(lambda z: f(J.vector_quantize(z, codebook)[0])))(
        z_e
    )
    np.testing.assert_allclose(float(value), float(np.sum(np.sin(z_q) * c)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(grad_z_e), np.cos(z_q) * c, rtol=1e-6)
    grad_codebook = jax.jit(jax.grad(lambda cb: f(J.vector_quantize(z_e, cb)[0])))(codebook)
    np.testing.assert_array_equal(np.asarray(grad_codebook), 0.0)


def test_vq_losses_gradients_respect_stop_gradients():
    rng = _rng(14)
    z_e = rng.normal(size=(4, 3, 2)).astype(np.float32)
    codebook = rng.normal(size=(5, 2)).astype(np.float32)
    _, indices = J.vector_quantize(z_e, codebook)
    idx = np.asarray(indices)
    z_q = codebook[idx]

    expected_value = ((z_e - z_q) ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(np.asarray(J.vq_codebook_loss(z_e, z_q)), expected_value, 1e-6)
    np.testing.assert_allclose(np.asarray(J.vq_commitment_loss(z_e, z_q)), expected_value, 1e-6)

    codebook_grad = jax.grad(lambda a, b: J.vq_codebook_loss(a, b).sum(), argnums=(0, 1))
    g_e, g_q = jax.jit(codebook_grad)(z_e, z_q)
    np.testing.assert_array_equal(np.asarray(g_e), 0.0)
    np.testing.assert_allclose(np.asarray(g_q), 2 * (z_q - z_e), rtol=1e-6)
    commitment_grad = jax.grad(lambda a, b: J.vq_commitment_loss(a, b).sum(), argnums=(0, 1))
    g_e, g_q = jax.jit(commitment_grad)(z_e, z_q)
    np.testing.assert_allclose(np.asarray(g_e), 2 * (z_e - z_q), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(g_q), 0.0)

    # The whole VQ-VAE objective (eq. 3): recon(z_q_st) + codebook + beta * commitment.
    beta = 0.25
    c = rng.normal(size=z_e.shape).astype(np.float32)

    def objective(z_e, codebook):
        z_q_st, indices = J.vector_quantize(z_e, codebook)
        z_q = codebook[indices]
        recon = jnp.sum(z_q_st * c)
        return recon + jnp.sum(J.vq_codebook_loss(z_e, z_q) + beta * J.vq_commitment_loss(z_e, z_q))

    g_e, g_cb = jax.jit(jax.grad(objective, argnums=(0, 1)))(z_e, codebook)
    np.testing.assert_allclose(np.asarray(g_e), c + 2 * beta * (z_e - z_q), rtol=1e-5, atol=1e-6)
    expected_cb = np.zeros_like(codebook)
    np.add.at(expected_cb, idx.reshape(-1), (2 * (z_q - z_e)).reshape(-1, 2))
    np.testing.assert_allclose(np.asarray(g_cb), expected_cb, rtol=1e-5, atol=1e-6)


def test_codebook_perplexity_hand_computed():
    np.testing.assert_allclose(float(J.codebook_perplexity(jnp.array([0, 0, 1, 1]), 4)), 2.0)
    np.testing.assert_allclose(float(J.codebook_perplexity(jnp.arange(8), 8)), 8.0, rtol=1e-6)
    np.testing.assert_allclose(float(J.codebook_perplexity(jnp.full((3, 5), 2), 4)), 1.0)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    got = J.codebook_perplexity(jnp.array([[3, 3], [3, 1]]), 4)
    np.testing.assert_allclose(float(got), math.exp(entropy), rtol=1e-6)
    # Out-of-range codes are not counted.
    np.testing.assert_allclose(float(J.codebook_perplexity(jnp.array([0, 1, 7, -1]), 2)), 2.0)
    assert float(J.codebook_perplexity(jnp.arange(4), 4)) == 4.0


def test_codebook_perplexity_counts_past_float32_integers():
    # 2^25 indices, 3/4 of them code 0 and 1/4 code 1 (with out-of-range codes mixed in, which
    # must not count): a float32 histogram stops at 2^24 = 16,777,216 per code (x + 1 == x
    # there) and gave 1.8899 instead of exp(H(0.75, 0.25)) = 1.7548. Exact integer counts give
    # the hand value to float32 rounding.
    n = 2**25

    def perplexity():  # built inside one jit, so the 2^25 indices are never an input buffer
        position = lax.iota(jnp.int32, n + 2**20)
        indices = jnp.where(position % 4 == 3, 1, 0)
        indices = jnp.where(position >= n, 5, indices)  # 2^20 out-of-range entries at the end
        return L.codebook_perplexity(indices, num_codes=2)

    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    np.testing.assert_allclose(float(jax.jit(perplexity)()), math.exp(entropy), rtol=1e-6)


def test_codebook_perplexity_rejects_more_indices_than_its_counts_hold():
    # Counts are int32 unless x64 is enabled; the size is static, so the check is at trace time.
    # (A ShapeDtypeStruct: nothing of 2^31 elements is allocated.)
    big = jax.ShapeDtypeStruct((2**31,), jnp.int8)
    with pytest.raises(ValueError, match=r"codebook_perplexity: indices.*2147483647"):
        jax.eval_shape(lambda i: L.codebook_perplexity(i, 4), big)


# ---------------------------------------------------------------------------------------------
# Finite differences
# ---------------------------------------------------------------------------------------------


def _grad_cases(rng):
    """(name, function of float arrays, args) in float64, away from any kink."""
    B, D, q, Z = 3, 5, 2, 4
    x = rng.normal(size=(B, D))
    W, mu = rng.normal(size=(D, q)), rng.normal(size=D)
    mean, log_var = rng.normal(size=(B, Z)), rng.normal(size=(B, Z)) * 0.5
    logits = rng.normal(size=(B, 1)) * 2
    k_samples = [rng.normal(size=(4, B)) for _ in range(3)]
    z_e, z_q = rng.normal(size=(B, 2, 3)), rng.normal(size=(B, 2, 3))
    # Free bits 0.3: dims 0-1 have KL ~0.002 (clamped), the others have |mean| >= 1, so
    # KL >= 0.5 (not clamped); no finite-difference step crosses the kink.
    fb_mean = np.sign(mean) * (1.0 + np.abs(mean))
    fb_mean[:, :2] = 0.05
    fb_log_var = log_var.copy()
    fb_log_var[:, :2] = 0.05
    # Hinge logits away from its kinks (real = 1, fake = -1); a tanh critic for the penalty.
    hinge_real, hinge_fake = np.array([[1.7], [-0.4], [0.3]]), np.array([[-1.6], [0.2], [1.9]])
    w1, w2 = rng.normal(size=(D, 8)), rng.normal(size=8)
    real, fake = rng.normal(size=(B, D)), rng.normal(size=(B, D))

    def penalty(w, r, f):
        critic = lambda v: jnp.tanh(v @ w) @ jnp.asarray(w2, w.dtype)
        return L.gradient_penalty(critic, r, f, jax.random.PRNGKey(7), weight=2.0)

    return [
        ("ppca_log_likelihood", L.ppca_log_likelihood, (x, W, mu, np.float64(0.6))),
        ("ppca_posterior", L.ppca_posterior, (x, W, mu, np.float64(0.6))),
        ("gaussian_kl", L.gaussian_kl, (mean, log_var)),
        ("gaussian_kl_diag", L.gaussian_kl_diag, (mean, log_var, mean[::-1], log_var[::-1])),
        (
            "bernoulli_log_likelihood",
            L.bernoulli_log_likelihood,
            (logits, rng.uniform(size=(B, 1))),
        ),
        ("gaussian_log_likelihood", L.gaussian_log_likelihood, (mean, log_var, log_var[::-1])),
        ("gaussian_log_likelihood_fixed", L.gaussian_log_likelihood_fixed, (x, x[::-1], 0.8)),
        ("elbo", L.elbo, (x[:, 0], mean, log_var, np.float64(1.5))),
        (
            "elbo_free_bits",
            lambda a, m, v: L.elbo(a, m, v, free_bits=0.3),
            (x[:, 0], fb_mean, fb_log_var),
        ),
        ("iwae_bound", L.iwae_bound, tuple(k_samples)),
        ("gan_value", L.gan_value, (logits, logits[::-1])),
        ("discriminator_loss", L.discriminator_loss, (logits, -logits)),
        ("generator_loss", L.generator_loss, (logits,)),
        ("generator_loss_saturating", lambda f: L.generator_loss(f, False), (logits,)),
        ("hinge_discriminator_loss", L.hinge_discriminator_loss, (hinge_real, hinge_fake)),
        ("hinge_generator_loss", L.hinge_generator_loss, (logits,)),
        ("wasserstein_critic_loss", L.wasserstein_critic_loss, (logits, -logits)),
        ("wasserstein_generator_loss", L.wasserstein_generator_loss, (logits,)),
        ("gradient_penalty", penalty, (w1, real, fake)),
        ("least_squares_discriminator_loss", L.least_squares_discriminator_loss, (logits, -logits)),
        ("least_squares_generator_loss", L.least_squares_generator_loss, (logits,)),
        ("vq_codebook_loss", lambda b: L.vq_codebook_loss(z_e, b), (z_q,)),
        ("vq_commitment_loss", lambda a: L.vq_commitment_loss(a, z_q), (z_e,)),
    ]


@pytest.mark.parametrize("case", range(len(_grad_cases(_rng()))))
def test_gradients_match_finite_differences(x64, case):
    _, fn, args = _grad_cases(_rng(15))[case]
    args = tuple(jnp.asarray(a, jnp.float64) for a in args)
    # Reverse mode is what jax.grad uses; order 1 keeps the compilations few.
    check_grads(jax.jit(fn), args, order=1, modes=("rev",), atol=1e-6, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Transformations and dtypes
# ---------------------------------------------------------------------------------------------


def _transform_cases():
    """name -> (function, rng -> tuple of float args). The outputs are pytrees of arrays."""
    B = 4

    def ppca_args(r):  # x, W, mu, sigma2
        return r.normal(size=(B, 6)), r.normal(size=(6, 2)), r.normal(size=6), 0.5 + r.uniform()

    return {
        "ppca_log_likelihood": (L.ppca_log_likelihood, ppca_args),
        "ppca_posterior": (L.ppca_posterior, ppca_args),
        "gaussian_kl": (L.gaussian_kl, lambda r: (r.normal(size=(B, 3)), r.normal(size=(B, 3)))),
        "gaussian_kl_diag": (
            L.gaussian_kl_diag,
            lambda r: tuple(r.normal(size=(B, 3)) for _ in range(4)),
        ),
        "bernoulli_log_likelihood": (
            L.bernoulli_log_likelihood,
            lambda r: (r.normal(size=(B, 2, 3)) * 3, r.uniform(size=(B, 2, 3))),
        ),
        "gaussian_log_likelihood": (
            L.gaussian_log_likelihood,
            lambda r: tuple(r.normal(size=(B, 5)) for _ in range(3)),
        ),
        "gaussian_log_likelihood_fixed": (
            L.gaussian_log_likelihood_fixed,
            lambda r: (r.normal(size=(B, 5)), r.normal(size=(B, 5)), 0.5 + r.uniform()),
        ),
        "elbo": (
            L.elbo,
            lambda r: (r.normal(size=B), r.normal(size=(B, 3)), r.normal(size=(B, 3)), 0.5),
        ),
        "iwae_bound": (L.iwae_bound, lambda r: tuple(r.normal(size=(5, B)) * 3 for _ in range(3))),
        "gan_value": (L.gan_value, lambda r: (r.normal(size=(B, 1)), r.normal(size=(B, 1)))),
        "discriminator_loss": (
            L.discriminator_loss,
            lambda r: (r.normal(size=(B, 1)), r.normal(size=(B, 1))),
        ),
        "generator_loss": (L.generator_loss, lambda r: (r.normal(size=(B, 1)),)),
        "generator_loss_saturating": (
            lambda f: L.generator_loss(f, non_saturating=False),
            lambda r: (r.normal(size=(B, 1)),),
        ),
        **{
            name: (getattr(L, name), lambda r: (r.normal(size=(B, 1)), r.normal(size=(B, 1))))
            for name in (
                "hinge_discriminator_loss",
                "wasserstein_critic_loss",
                "least_squares_discriminator_loss",
            )
        },
        **{
            name: (getattr(L, name), lambda r: (r.normal(size=(B, 2)),))
            for name in (
                "hinge_generator_loss",
                "wasserstein_generator_loss",
                "least_squares_generator_loss",
            )
        },
        "gradient_penalty": (
            lambda w, real, fake: L.gradient_penalty(
                lambda v: jnp.tanh(v @ w).sum(-1), real, fake, jax.random.PRNGKey(8)
            ),
            lambda r: (r.normal(size=(3, 5)), r.normal(size=(B, 3)), r.normal(size=(B, 3))),
        ),
        "vector_quantize": (
            lambda z, cb: L.vector_quantize(z, cb)[0],
            lambda r: (r.normal(size=(B, 3, 2)), r.normal(size=(7, 2))),
        ),
        "vq_codebook_loss": (
            L.vq_codebook_loss,
            lambda r: (r.normal(size=(B, 3)), r.normal(size=(B, 3))),
        ),
        "vq_commitment_loss": (
            L.vq_commitment_loss,
            lambda r: (r.normal(size=(B, 3)), r.normal(size=(B, 3))),
        ),
    }


def _all_finite(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(tree))


def _assert_trees_close(a, b, rtol):
    for la, lb in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert la.shape == lb.shape and la.dtype == lb.dtype
        np.testing.assert_allclose(_np(la), _np(lb), rtol=rtol, atol=rtol)


_DTYPES = {"f32": jnp.float32, "bf16": jnp.bfloat16}


@pytest.mark.parametrize("name", sorted(_transform_cases()))
def test_jit_vmap_grad_float32_and_bfloat16(name):
    fn, make_args = _transform_cases()[name]

    def total(*a):
        return sum(jnp.sum(leaf.astype(jnp.float32)) for leaf in jax.tree.leaves(fn(*a)))

    def transformed(args, second, stacked):
        upcast = tuple(a.astype(jnp.float32) for a in args)
        grads = jax.grad(total, argnums=tuple(range(len(args))))(*args)
        return fn(*args), fn(*second), fn(*upcast), jax.vmap(fn)(*stacked), grads

    inputs = {}
    for key, dtype in _DTYPES.items():
        args = tuple(jnp.asarray(a, dtype) for a in make_args(_rng(16)))
        second = tuple(jnp.asarray(a, dtype) for a in make_args(_rng(17)))
        stacked = tuple(jnp.stack([a, b]) for a, b in zip(args, second, strict=True))
        inputs[key] = (args, second, stacked)
    # One compiled program per function: both dtypes, the function, its vmap and its gradient.
    results = jax.jit(lambda inputs: {k: transformed(*v) for k, v in inputs.items()})(inputs)

    for key, dtype in _DTYPES.items():
        out, out_second, out_upcast, batched, grads = results[key]
        assert _all_finite(out) and _all_finite(grads), key
        # Precision policy: losses come back in float32, computed from the upcast inputs (so a
        # bf16 input gives the float32 result of its bf16 value); the quantised activations of
        # vector_quantize keep the input dtype.
        expected_dtype = dtype if name == "vector_quantize" else jnp.float32
        assert all(leaf.dtype == expected_dtype for leaf in jax.tree.leaves(out)), key
        if name != "vector_quantize":
            _assert_trees_close(out, out_upcast, rtol=1e-5)
        # vmap over an extra leading axis of every argument == a loop over that axis.
        for i, one in enumerate((out, out_second)):
            _assert_trees_close(jax.tree.map(lambda leaf, i=i: leaf[i], batched), one, 1e-5)
        assert all(g.dtype == dtype for g in grads), key
    # Eager (op-by-op) execution gives the jitted numbers.
    _assert_trees_close(results["f32"][0], fn(*inputs["f32"][0]), rtol=1e-5)


def test_perplexity_under_jit_and_vmap():
    indices = jnp.array([[0, 0, 1, 1], [2, 2, 2, 2]])
    per_row, pooled = jax.jit(
        lambda i: (jax.vmap(lambda r: L.codebook_perplexity(r, 4))(i), L.codebook_perplexity(i, 4))
    )(indices)
    np.testing.assert_allclose(np.asarray(per_row), [2.0, 1.0], rtol=1e-6)
    assert float(pooled) == pytest.approx(2.0**1.5)  # pooled usage 1/4, 1/4, 1/2


# ---------------------------------------------------------------------------------------------
# Properties (hypothesis). Shapes come from small sets and every checked function is jitted, so
# each shape compiles once and the examples run at compiled speed.
# ---------------------------------------------------------------------------------------------


def _float_arrays(shape, low, high):
    return arrays(np.float32, shape, elements=st.floats(low, high, width=32))


_SHAPES = st.sampled_from([(1, 1), (1, 5), (3, 2), (4, 7)])


@jax.jit
def _kl_values(mean_q, log_var_q, mean_p, log_var_p):
    return (
        L.gaussian_kl(mean_q, log_var_q),
        L.gaussian_kl_diag(mean_q, log_var_q, mean_p, log_var_p),
        L.gaussian_kl_diag(mean_q, log_var_q, mean_q, log_var_q),
    )


@PROPERTY_SETTINGS
@given(data=st.data(), shape=_SHAPES)
def test_property_kl_is_nonnegative_and_finite(data, shape):
    mean_q = data.draw(_float_arrays(shape, -1e3, 1e3))
    log_var_q = data.draw(_float_arrays(shape, -50, 50))
    mean_p = data.draw(_float_arrays(shape, -1e3, 1e3))
    # KL(q || p) grows like exp(log_var_q - log_var_p) / 2 and like
    # (mean_q - mean_p)^2 exp(-log_var_p) / 2: keep the true value inside float32's range.
    log_var_p = np.clip(data.draw(_float_arrays(shape, -50, 50)), log_var_q - 80, None)
    mean_p = np.where(log_var_p < -30, np.clip(mean_p, mean_q - 1e2, mean_q + 1e2), mean_p)
    kl, kl_diag, kl_self = (np.asarray(a) for a in _kl_values(mean_q, log_var_q, mean_p, log_var_p))
    assert kl.shape == kl_diag.shape == (shape[0],)
    assert np.all(np.isfinite(kl)) and np.all(kl >= 0)
    assert np.all(np.isfinite(kl_diag)) and np.all(kl_diag >= 0)
    np.testing.assert_array_equal(kl_self, 0.0)


@PROPERTY_SETTINGS
@given(data=st.data(), shape=st.sampled_from([(1, 3), (2, 1), (5, 4), (8, 2)]))
def test_property_iwae_bound_between_elbo_and_max_weight(data, shape):
    terms = tuple(data.draw(_float_arrays(shape, -1e3, 1e3)) for _ in range(3))
    bound = np.asarray(jax.jit(L.iwae_bound)(*terms), np.float64)
    log_w = terms[0].astype(np.float64) + terms[1] - terms[2]
    tol = 1e-5 * (1.0 + np.abs(log_w).max(0))
    # Jensen: logsumexp_k(log w_k) - log K >= mean_k log w_k; and it never exceeds max_k log w_k.
    assert np.all(bound >= log_w.mean(0) - tol)
    assert np.all(bound <= log_w.max(0) + tol)


def _extreme_losses(logits, targets, log_var):
    mean = jnp.clip(logits, -100.0, 100.0)
    return {
        "bernoulli": L.bernoulli_log_likelihood(logits, targets),
        "gan_value": L.gan_value(logits, logits[::-1]),
        "discriminator": L.discriminator_loss(logits, -logits),
        "generator": L.generator_loss(logits),
        "generator_saturating": L.generator_loss(logits, non_saturating=False),
        "hinge": L.hinge_discriminator_loss(logits, logits[::-1]),
        "hinge_generator": L.hinge_generator_loss(logits),
        "wasserstein": L.wasserstein_critic_loss(logits, logits[::-1]),
        "wasserstein_generator": L.wasserstein_generator_loss(logits),
        "least_squares": L.least_squares_discriminator_loss(logits, logits[::-1]),
        "least_squares_generator": L.least_squares_generator_loss(logits),
        "kl": L.gaussian_kl(mean, log_var),
        # log-variance ratios up to e^50 (the true KL for e^100 overflows float32).
        "kl_diag": L.gaussian_kl_diag(mean, log_var, mean[::-1], jnp.clip(log_var[::-1], -25, 25)),
        "gaussian": L.gaussian_log_likelihood(mean[::-1], mean, log_var),
        "elbo": L.elbo(logits[:, 0], mean, log_var, free_bits=0.1),
        "iwae": L.iwae_bound(logits, log_var, logits[::-1]),
    }


@jax.jit
def _extreme_values_and_grads(logits, targets, log_var):
    # The gradient of the sum of all losses is finite iff every loss's gradient is (a non-finite
    # term gives inf or NaN in the sum), and one backward pass keeps the compilation small.
    values = _extreme_losses(logits, targets, log_var)
    total = lambda lg, lv: sum(v.sum() for v in _extreme_losses(lg, targets, lv).values())
    return values, jax.grad(total, argnums=(0, 1))(logits, log_var)


_EXTREME = st.sampled_from([-1e4, 1e4, 0.0, -50.0, 50.0])
_EXTREME_LOG_VAR = st.sampled_from([-50.0, 50.0, 0.0])


@PROPERTY_SETTINGS
@given(
    logits=arrays(np.float32, (3, 4), elements=_EXTREME | st.floats(-1e4, 1e4, width=32)),
    targets=arrays(np.float32, (3, 4), elements=st.floats(0, 1, width=32)),
    log_var=arrays(np.float32, (3, 4), elements=_EXTREME_LOG_VAR | st.floats(-50, 50, width=32)),
    dtype=st.sampled_from([jnp.float32, jnp.bfloat16]),
)
def test_property_extreme_inputs_give_finite_values_and_gradients(logits, targets, log_var, dtype):
    values, grads = _extreme_values_and_grads(
        *(jnp.asarray(a, dtype) for a in (logits, targets, log_var))
    )
    for name in values:
        assert _all_finite(values[name]), name
    assert _all_finite(grads)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------

_x, _W, _mu = np.zeros((4, 64)), np.ones((64, 2)), np.zeros(64)
_m, _v = np.zeros((4, 3)), np.zeros((4, 3))

_BAD_INPUTS = {
    "ppca W rows": (
        lambda: L.ppca_log_likelihood(_x, np.ones((63, 2)), _mu, 1.0),
        r"ppca_log_likelihood: W must have shape \[D, q\] with D=64 \(x.shape\[-1\]\), "
        r"got \(63, 2\)",
    ),
    "ppca W rank": (lambda: L.ppca_posterior(_x, np.ones(64), _mu, 1.0), "ppca_posterior: W "),
    "ppca mu": (lambda: L.ppca_log_likelihood(_x, _W, np.zeros(63), 1.0), "mu must have shape"),
    "ppca x rank": (lambda: L.ppca_log_likelihood(_x[0], _W, _mu, 1.0), "x must have rank 2"),
    "ppca sigma2 zero": (lambda: L.ppca_log_likelihood(_x, _W, _mu, 0.0), "sigma2 must be"),
    "ppca sigma2 negative numpy": (
        lambda: L.ppca_posterior(_x, _W, _mu, np.float32(-1.0)),
        "ppca_posterior: sigma2 must be finite and > 0",
    ),
    "ppca sigma2 nan": (lambda: L.ppca_log_likelihood(_x, _W, _mu, np.nan), "sigma2 must be"),
    "ppca sigma2 vector": (
        lambda: L.ppca_log_likelihood(_x, _W, _mu, np.ones(2)),
        "sigma2 must be a scalar",
    ),
    "ppca under jit": (
        lambda: jax.jit(lambda x: L.ppca_log_likelihood(x, np.ones((63, 2)), _mu, 1.0))(_x),
        "W must have shape",
    ),
    "ppca sigma2 negative under jit": (
        lambda: jax.jit(lambda x: L.ppca_log_likelihood(x, _W, _mu, -2.0))(_x),
        "sigma2 must be finite and > 0",
    ),
    "beta negative": (lambda: L.elbo(np.zeros(4), _m, _v, beta=-0.1), "elbo: beta must be"),
    "beta negative under jit": (
        lambda: jax.jit(lambda a: L.elbo(a, _m, _v, beta=-1.0))(np.zeros(4)),
        "beta must be finite and >= 0",
    ),
    "free_bits negative": (lambda: L.elbo(np.zeros(4), _m, _v, free_bits=-1.0), "free_bits"),
    "elbo log_px shape": (lambda: L.elbo(np.zeros(5), _m, _v), "log_px_given_z must have shape"),
    "kl shapes": (lambda: L.gaussian_kl(_m, np.zeros((4, 2))), "gaussian_kl: log_var must"),
    "kl scalar": (lambda: L.gaussian_kl(np.float32(0.0), np.float32(0.0)), "mean must have"),
    "kl_diag prior": (
        lambda: L.gaussian_kl_diag(_m, _v, np.zeros(2), _v),
        "gaussian_kl_diag: mean_p must broadcast",
    ),
    "bernoulli shapes": (
        lambda: L.bernoulli_log_likelihood(_m, np.zeros((4, 4))),
        "bernoulli_log_likelihood: x must have the same shape as logits",
    ),
    "gaussian mean": (
        lambda: L.gaussian_log_likelihood(_m, np.zeros((4, 4)), _v),
        "gaussian_log_likelihood: mean must broadcast",
    ),
    "fixed variance": (
        lambda: L.gaussian_log_likelihood_fixed(_m, _m, -1.0),
        "gaussian_log_likelihood_fixed: variance must be finite and > 0",
    ),
    "iwae rank": (lambda: L.iwae_bound(_m[0], _m[0], _m[0]), "log_px_given_z must have rank 2"),
    "iwae shapes": (lambda: L.iwae_bound(_m, _m, _m.T), "iwae_bound: log_qz_given_x must"),
    "gan shapes": (lambda: L.gan_value(_m, _m[:3]), "gan_value: fake_logits must"),
    "discriminator shapes": (
        lambda: L.discriminator_loss(_m, _m[:, :1]),
        "discriminator_loss: fake_logits must",
    ),
    "generator scalar": (lambda: L.generator_loss(np.float32(1.0)), "fake_logits must have"),
    "hinge shapes": (
        lambda: L.hinge_discriminator_loss(_m, _m[:3]),
        r"hinge_discriminator_loss: fake_logits must have the same shape as real_logits \(4, 3\)",
    ),
    "hinge generator scalar": (
        lambda: L.hinge_generator_loss(np.float32(1.0)),
        "hinge_generator_loss: fake_logits must have at least 1 axis",
    ),
    "wasserstein shapes": (
        lambda: L.wasserstein_critic_loss(_m, _m[:, :1]),
        "wasserstein_critic_loss: fake_logits must",
    ),
    "wasserstein generator scalar": (
        lambda: L.wasserstein_generator_loss(np.float32(1.0)),
        "wasserstein_generator_loss: fake_logits must",
    ),
    "least squares shapes": (
        lambda: L.least_squares_discriminator_loss(_m[0], _m),
        "least_squares_discriminator_loss: fake_logits must",
    ),
    "least squares generator scalar": (
        lambda: L.least_squares_generator_loss(np.float32(1.0)),
        "least_squares_generator_loss: fake_logits must",
    ),
    "penalty critic": (
        lambda: L.gradient_penalty(None, _m, _m, jax.random.PRNGKey(0)),
        r"gradient_penalty: critic must be a function \[B, ...\] -> \[B\], got NoneType",
    ),
    "penalty shapes": (
        lambda: L.gradient_penalty(lambda v: v[:, 0], _m, _m[:3], jax.random.PRNGKey(0)),
        "gradient_penalty: fake must have the same shape as real",
    ),
    "penalty scalar input": (
        lambda: L.gradient_penalty(
            lambda v: v, np.float32(0), np.float32(0), jax.random.PRNGKey(0)
        ),
        "gradient_penalty: real must have at least 1 axis",
    ),
    "penalty key": (
        lambda: L.gradient_penalty(lambda v: v[:, 0], _m, _m, np.zeros(2)),
        r"gradient_penalty: rng must be one jax.random key .*, got float64\(2,\)",
    ),
    "penalty key batch": (
        lambda: L.gradient_penalty(lambda v: v[:, 0], _m, _m, jax.random.split(jax.random.key(0))),
        "gradient_penalty: rng must be one jax.random key",
    ),
    "penalty weight negative": (
        lambda: L.gradient_penalty(lambda v: v[:, 0], _m, _m, jax.random.PRNGKey(0), weight=-1.0),
        r"gradient_penalty: weight must be finite and >= 0, got -1.0",
    ),
    "penalty weight vector": (
        lambda: L.gradient_penalty(lambda v: v[:, 0], _m, _m, jax.random.PRNGKey(0), np.ones(2)),
        "gradient_penalty: weight must be a scalar",
    ),
    "penalty critic output": (
        lambda: L.gradient_penalty(lambda v: v, _m, _m, jax.random.PRNGKey(0)),
        r"gradient_penalty: critic must return one score per example, \[4\] or \[4, 1\], "
        r"got shape \(4, 3\)",
    ),
    "penalty under jit": (
        lambda: jax.jit(lambda r: L.gradient_penalty(lambda v: v, r, r, jax.random.PRNGKey(0)))(_m),
        "critic must return one score per example",
    ),
    "codebook width": (
        lambda: L.vector_quantize(np.zeros((2, 5, 8)), np.zeros((16, 7))),
        r"vector_quantize: codebook must have shape \[K, D\] with K >= 1 and D=8",
    ),
    "codebook rank": (lambda: L.vector_quantize(_m, np.zeros(3)), "codebook must have shape"),
    "codebook width under jit": (
        lambda: jax.jit(L.vector_quantize)(np.zeros((2, 8)), np.zeros((16, 7))),
        "codebook must have shape",
    ),
    "vq codebook loss": (lambda: L.vq_codebook_loss(_m, _m[:, :2]), "vq_codebook_loss: z_q"),
    "vq commitment loss": (lambda: L.vq_commitment_loss(_m, _m.T), "vq_commitment_loss: z_q"),
    "num_codes zero": (
        lambda: L.codebook_perplexity(np.array([0, 1]), 0),
        "codebook_perplexity: num_codes must be >= 1",
    ),
    "num_codes float": (lambda: L.codebook_perplexity(np.array([0]), 2.0), "num_codes must be"),
    "float indices": (lambda: L.codebook_perplexity(np.zeros(3), 2), "indices must have an"),
}


@pytest.mark.parametrize("case", sorted(_BAD_INPUTS))
def test_bad_input_raises_naming_the_argument(case):
    call, message = _BAD_INPUTS[case]
    with pytest.raises(ValueError, match=message):
        call()
