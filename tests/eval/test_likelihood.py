"""Tests for genjax.eval.likelihood: the chunked importance-weighted log-likelihood estimate.

Oracle: a linear-Gaussian latent model (PPCA), whose exact ``log p(x)`` is scipy's
multivariate normal density and whose exact posterior is known in closed form. With the exact
posterior as proposal every importance weight equals ``p(x)``, so ``L_K`` must be ``log p(x)``
for any ``K``, chunking and batching; with a wider proposal ``E[L_1] = log p(x) - KL(q || p)``
(closed form) and ``L_K`` rises towards ``log p(x)``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from genjax.eval import iwae_log_likelihood, mean_and_stderr

D, Q, N = 5, 2, 40


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(D, Q))
    mu = rng.normal(size=D)
    sigma2 = 0.5
    cov = W @ W.T + sigma2 * np.eye(D)
    x = rng.multivariate_normal(mu, cov, size=N)
    exact = scipy.stats.multivariate_normal(mu, cov).logpdf(x)
    # Posterior: N(M^{-1} W^T (x - mu), sigma2 M^{-1}), M = W^T W + sigma2 I.
    M = W.T @ W + sigma2 * np.eye(Q)
    post_mean = np.linalg.solve(M, W.T @ (x - mu).T).T
    post_cov = sigma2 * np.linalg.inv(M)
    return dict(W=W, mu=mu, sigma2=sigma2, x=x, exact=exact, post_mean=post_mean, cov=post_cov)


def _log_weights_fn(m, scale, record=None):
    """Proposal q(z|x) = N(posterior mean, scale^2 * posterior covariance)."""
    W, mu = jnp.asarray(m["W"], jnp.float32), jnp.asarray(m["mu"], jnp.float32)
    chol = jnp.asarray(np.linalg.cholesky(m["cov"]) * scale, jnp.float32)
    cov_q = np.asarray(m["cov"]) * scale**2
    prec_q = jnp.asarray(np.linalg.inv(cov_q), jnp.float32)
    logdet_q = float(np.linalg.slogdet(cov_q)[1])
    M = m["W"].T @ m["W"] + m["sigma2"] * np.eye(Q)
    A = jnp.asarray(np.linalg.solve(M, m["W"].T), jnp.float32)  # posterior mean map
    s2 = m["sigma2"]

    def fn(xb, key, k):
        if record is not None:
            record.append((k, xb.shape[0]))
        mean = (xb - mu) @ A.T  # [b, Q]
        eps = jax.random.normal(key, (k, xb.shape[0], Q))
        z = mean + eps @ chol.T  # [k, b, Q]
        d = z - mean
        log_q = -0.5 * (jnp.einsum("kbi,ij,kbj->kb", d, prec_q, d) + Q * math.log(2 * math.pi))
        log_q = log_q - 0.5 * logdet_q
        log_pz = -0.5 * jnp.sum(z**2 + math.log(2 * math.pi), axis=-1)
        resid = xb - (z @ W.T + mu)
        log_px = -0.5 * jnp.sum(resid**2 / s2 + math.log(2 * math.pi * s2), axis=-1)
        return log_px, log_pz, log_q

    return fn


def test_exact_posterior_proposal_gives_the_exact_log_likelihood(model):
    record = []
    fn = _log_weights_fn(model, 1.0, record)
    # K = 7 in chunks of 3 (3 + 3 + a remainder of 1); 40 examples in batches of 16 (the last
    # one padded from 8).
    est = iwae_log_likelihood(
        fn, model["x"], jax.random.PRNGKey(0), num_samples=7, chunk_size=3, batch_size=16
    )
    assert est.shape == (N,)
    np.testing.assert_allclose(np.asarray(est), model["exact"], rtol=0, atol=2e-4)
    # Memory bound: never more than chunk_size samples of batch_size examples at once.
    assert {r for r in record} == {(3, 16), (1, 16)}


def test_estimate_rises_with_k_to_the_exact_log_likelihood(model):
    scale = 1.5  # a wider proposal than the posterior: every weight is bounded
    fn = _log_weights_fn(model, scale, None)
    x_many = np.tile(model["x"], (25, 1))  # small K: average over many independent draws
    means = {
        k: float(
            np.mean(
                iwae_log_likelihood(
                    fn,
                    x,
                    jax.random.PRNGKey(k),
                    num_samples=k,
                    chunk_size=256,
                    batch_size=250,
                )
            )
        )
        for k, x in ((1, x_many), (10, x_many), (5000, model["x"]))
    }
    exact = float(np.mean(model["exact"]))
    # E[L_1] = log p(x) - KL(q || p(z|x)) with KL = Q/2 (s^2 - 1 - log s^2) for q = s-scaled p.
    kl = 0.5 * Q * (scale**2 - 1 - math.log(scale**2))
    # Var log w = (s^2 - 1)^2 Q / 2 = 1.56 here, so the mean of 1000 draws has sd 0.04.
    assert abs(means[1] - (exact - kl)) < 0.16
    assert means[1] < means[10] < means[5000] <= exact + 0.01
    assert exact - means[5000] < 0.01  # 5000 samples in 19 full chunks + a remainder


def test_iwae_log_likelihood_rejects_bad_input(model):
    fn = _log_weights_fn(model, 1.0)
    x, key = model["x"], jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match=r"num_samples must be an int >= 1, got 0"):
        iwae_log_likelihood(fn, x, key, num_samples=0)
    with pytest.raises(ValueError, match=r"chunk_size must be an int >= 1, got -1"):
        iwae_log_likelihood(fn, x, key, num_samples=5, chunk_size=-1)
    with pytest.raises(ValueError, match=r"x must hold at least one example"):
        iwae_log_likelihood(fn, x[:0], key, num_samples=5)

    def flat(xb, key, k):
        a, b, c = fn(xb, key, k)
        return a.reshape(-1), b, c

    with pytest.raises(ValueError, match=r"must return \[k, b\] = \[4, 8\] arrays, got "):
        iwae_log_likelihood(flat, x, key, num_samples=4, batch_size=8)


def test_mean_and_stderr_matches_scipy_sem():
    v = np.random.default_rng(3).normal(size=50)
    mean, err = mean_and_stderr(v)
    assert mean == pytest.approx(v.mean())
    assert err == pytest.approx(scipy.stats.sem(v))
    with pytest.raises(ValueError, match="at least one number"):
        mean_and_stderr([])
