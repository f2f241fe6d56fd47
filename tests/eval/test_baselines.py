"""Tests for genjax.eval.baselines against independent oracles.

Oracles: scipy's Bernoulli log-pmf and logsumexp (brute force over components), hand-counted
smoothed frequencies, recovery of a known synthetic mixture (the truth that generated the
data), and EM's monotone objective.
"""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest
import scipy.special
import scipy.stats

from genjax.eval import (
    BernoulliMixture,
    bernoulli_mixture_log_likelihood,
    fit_bernoulli_mixture,
    fit_independent_bernoulli,
    independent_bernoulli_log_likelihood,
)


def test_independent_bernoulli_fit_and_likelihood_against_scipy():
    x = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0], [1, 1, 0]], np.float32)
    probs = np.asarray(fit_independent_bernoulli(x, pseudocount=1.0))
    # (count + 1) / (4 + 2): pixel 0 on 4 times, pixel 1 twice, pixel 2 never.
    np.testing.assert_allclose(probs, [5 / 6, 3 / 6, 1 / 6], rtol=1e-6)
    x_test = np.array([[0, 1, 1], [1, 0, 0]], np.float32)
    expected = scipy.stats.bernoulli(probs).logpmf(x_test).sum(1)
    got = np.asarray(independent_bernoulli_log_likelihood(probs, x_test))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # Maximum likelihood (a = 0): a pixel never on gives -inf to a test example with it on.
    ml = fit_independent_bernoulli(x, pseudocount=0.0)
    assert np.isneginf(np.asarray(independent_bernoulli_log_likelihood(ml, x_test))[0])


def test_mixture_log_likelihood_against_brute_force():
    rng = np.random.default_rng(0)
    k, d = 3, 6
    probs = rng.uniform(0.05, 0.95, size=(k, d))
    weights = rng.dirichlet(np.ones(k))
    x = (rng.random((10, d)) < 0.4).astype(np.float32)
    mix = BernoulliMixture(log_weights=np.log(weights), probs=probs)
    per_component = np.stack(
        [np.log(weights[j]) + scipy.stats.bernoulli(probs[j]).logpmf(x).sum(1) for j in range(k)]
    )
    expected = scipy.special.logsumexp(per_component, axis=0)
    got = np.asarray(bernoulli_mixture_log_likelihood(mix, x))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_em_recovers_a_known_mixture_with_a_monotone_objective():
    rng = np.random.default_rng(1)
    k, d, n = 3, 24, 3000
    true_probs = np.full((k, d), 0.1)
    for j in range(k):  # component j mostly switches on its own third of the pixels
        true_probs[j, j * 8 : (j + 1) * 8] = 0.9
    true_weights = np.array([0.5, 0.3, 0.2])
    labels = rng.choice(k, size=n, p=true_weights)
    x = (rng.random((n, d)) < true_probs[labels]).astype(np.float32)

    mix, trace = fit_bernoulli_mixture(
        x, k, rng=jax.random.PRNGKey(0), steps=50, restarts=2, pseudocount=1.0
    )
    trace = np.asarray(trace)
    assert trace.shape == (51,)
    assert np.all(np.diff(trace) > -1e-5)  # EM never decreases the MAP objective
    probs, weights = np.asarray(mix.probs), np.exp(np.asarray(mix.log_weights))
    best = min(
        itertools.permutations(range(k)),
        key=lambda perm: np.abs(probs[list(perm)] - true_probs).max(),
    )
    # Sampling error of a frequency from >= 600 examples is about 0.012 (sd).
    assert np.abs(probs[list(best)] - true_probs).max() < 0.06
    np.testing.assert_allclose(weights[list(best)], true_weights, atol=0.03)
    # The fitted mixture explains held-out data better than independent pixels.
    x_test = (rng.random((500, d)) < true_probs[rng.choice(k, 500, p=true_weights)]).astype(
        np.float32
    )
    indep = fit_independent_bernoulli(x)
    assert (
        float(np.mean(bernoulli_mixture_log_likelihood(mix, x_test)))
        > float(np.mean(independent_bernoulli_log_likelihood(indep, x_test))) + 3.0
    )


def test_one_component_mixture_is_the_independent_model():
    x = (np.random.default_rng(2).random((50, 7)) < 0.3).astype(np.float32)
    mix, _ = fit_bernoulli_mixture(x, 1, rng=jax.random.PRNGKey(0), steps=3, pseudocount=0.5)
    # With one component every responsibility is 1: p = (count + a) / (N + 2 a).
    expected = (x.sum(0) + 0.5) / (50 + 1.0)
    np.testing.assert_allclose(np.asarray(mix.probs[0]), expected, rtol=1e-5)
    np.testing.assert_allclose(float(mix.log_weights[0]), 0.0, atol=1e-6)


def test_baselines_reject_bad_input():
    x = np.array([[0.0, 1.0], [1.0, 0.5]])
    with pytest.raises(ValueError, match=r"x must be binary .* got 1 other value\(s\), e.g. 0.5"):
        fit_independent_bernoulli(x)
    with pytest.raises(ValueError, match=r"x must be a 2-D array .* got shape \(2, 2, 1\)"):
        fit_independent_bernoulli(np.zeros((2, 2, 1)))
    binary = np.array([[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match=r"num_components must be <= the number of examples"):
        fit_bernoulli_mixture(binary, 3, rng=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"pseudocount must be a finite number >= 0, got -1"):
        fit_independent_bernoulli(binary, pseudocount=-1)
    with pytest.raises(ValueError, match=r"probs must have shape \[D\] = \(2,\), got \(3,\)"):
        independent_bernoulli_log_likelihood(np.full(3, 0.5), binary)
