"""Tests for genjax.eval.frechet against closed forms and scipy's matrix square root."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from genjax.eval.frechet import fit_gaussian, frechet_distance, gaussian_frechet_distance


def _scipy_oracle(m1, c1, m2, c2):
    """The FID reference formula: tr(C1 + C2 - 2 sqrtm(C1 C2)) with scipy's general sqrtm."""
    root = scipy.linalg.sqrtm(c1 @ c2)
    return float(np.sum((m1 - m2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * np.trace(root).real)


def _random_cov(rng, d, rank=None):
    a = rng.normal(size=(d, rank or d))
    return a @ a.T / d + (0 if rank else 0.1) * np.eye(d)


def test_one_dimension_by_hand():
    # (m1 - m2)^2 + (s1 - s2)^2 = (1 - (-2))^2 + (3 - 0.5)^2 = 9 + 6.25
    assert gaussian_frechet_distance([1.0], [[9.0]], [-2.0], [[0.25]]) == pytest.approx(15.25)
    assert gaussian_frechet_distance([0.0], [[4.0]], [0.0], [[4.0]]) == 0.0


def test_diagonal_covariances_closed_form():
    a, b = np.array([1.0, 4.0, 0.0]), np.array([0.25, 1.0, 9.0])
    m1, m2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = gaussian_frechet_distance(m1, np.diag(a), m2, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("d", [2, 5, 16])
def test_general_covariances_match_scipy_sqrtm(d):
    rng = np.random.default_rng(d)
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    c1, c2 = _random_cov(rng, d), _random_cov(rng, d)
    expected = _scipy_oracle(m1, c1, m2, c2)
    assert gaussian_frechet_distance(m1, c1, m2, c2) == pytest.approx(expected, rel=1e-8)
    # Symmetric in its two arguments.
    assert gaussian_frechet_distance(m2, c2, m1, c1) == pytest.approx(expected, rel=1e-8)


def test_singular_covariances():
    # Rank-deficient covariances (more dimensions than samples, the small-test-split case).
    rng = np.random.default_rng(0)
    c1, c2 = _random_cov(rng, 6, rank=2), _random_cov(rng, 6, rank=3)
    m = np.zeros(6)
    # Both rank-1 along the same direction u: sqrt terms add up, d = (sqrt a - sqrt b)^2.
    u = np.array([1.0, 2.0, 2.0]) / 3.0
    got = gaussian_frechet_distance(np.zeros(3), 4.0 * np.outer(u, u), np.zeros(3), np.outer(u, u))
    assert got == pytest.approx(1.0, abs=1e-10)
    assert gaussian_frechet_distance(m, c1, m, c1) == pytest.approx(0.0, abs=1e-9)
    assert gaussian_frechet_distance(m, c1, m, c2) >= 0.0


def test_distance_is_rotation_invariant():
    rng = np.random.default_rng(3)
    q = scipy.stats.ortho_group.rvs(4, random_state=4)
    m1, m2 = rng.normal(size=4), rng.normal(size=4)
    c1, c2 = _random_cov(rng, 4), _random_cov(rng, 4)
    base = gaussian_frechet_distance(m1, c1, m2, c2)
    rotated = gaussian_frechet_distance(q @ m1, q @ c1 @ q.T, q @ m2, q @ c2 @ q.T)
    assert rotated == pytest.approx(base, rel=1e-9)


def test_fit_gaussian_and_frechet_distance_of_samples():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 3)) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0, 0, 2.0]])
    y = rng.normal(size=(300, 3)) + 1.0
    mean, cov = fit_gaussian(x)
    np.testing.assert_allclose(mean, x.mean(axis=0))
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False))
    expected = _scipy_oracle(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-8)


def test_large_samples_converge_to_the_population_distance():
    rng = np.random.default_rng(2)
    n = 200_000
    x = rng.normal(size=(n, 2)) * np.array([1.0, 3.0])
    y = rng.normal(size=(n, 2)) * np.array([2.0, 3.0]) + np.array([0.5, 0.0])
    # Population value: 0.5^2 + (1 - 2)^2 + (3 - 3)^2 = 1.25.
    assert frechet_distance(x, y) == pytest.approx(1.25, abs=0.03)


def test_bad_inputs():
    eye = np.eye(2)
    with pytest.raises(ValueError, match=r"features1 must be \[N, D\] features, got shape \(5,\)"):
        frechet_distance(np.zeros(5), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="same dimension D, got 2 and 3"):
        frechet_distance(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="features2 needs at least 2 examples"):
        frechet_distance(np.zeros((5, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        frechet_distance(np.full((5, 2), np.nan), np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"cov1 must be \[D, D\] = \(2, 2\)"):
        gaussian_frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), eye)
    with pytest.raises(ValueError, match="cov2 must be symmetric"):
        gaussian_frechet_distance(np.zeros(2), eye, np.zeros(2), np.array([[1.0, 0.5], [0, 1]]))
    with pytest.raises(ValueError, match="cov1 must be positive semi-definite"):
        gaussian_frechet_distance(np.zeros(2), -eye, np.zeros(2), eye)
    with pytest.raises(ValueError, match="same dimension, got D=2 and D=1"):
        gaussian_frechet_distance(np.zeros(2), eye, np.zeros(1), np.eye(1))
