"""Tests for genjax.eval.sample_metrics against independent oracles.

Oracles: float64 NumPy brute force (full kernel matrices, ``scipy.spatial.distance.cdist``
distances sorted in full), ``scipy.stats.entropy``, a closed form of the population ``MMD^2``
of two Gaussians under the cubic kernel (itself checked by Monte Carlo), hand-computed cases,
and independent replicates whose spread gives the standard error.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats
from scipy.spatial.distance import cdist

from genjax.eval import sample_metrics as S

# --- oracles -----------------------------------------------------------------------------


def _np_mmd2(x, y):
    """Unbiased cubic-kernel MMD^2 from the three full kernel matrices, in float64."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    d = x.shape[1]
    kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    n, m = len(x), len(y)
    return (
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * kxy.mean()
    )


def _np_vstat(x, y):
    """The biased (V-statistic) MMD^2, diagonal terms included: what an unbiased test rejects."""
    d = x.shape[1]
    kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    return kxx.mean() + kyy.mean() - 2 * kxy.mean()


def _cubic_kernel_mean(a, A, b, B):
    """E (x.y/d + 1)^3 for independent x ~ N(a, A), y ~ N(b, B), in closed form.

    With s = x.y: E s = a.b; E s^2 = tr((A + aa')(B + bb')); conditioning on y,
    s | y ~ N(a.y, y'Ay), whose third moment is (a.y)^3 + 3 (a.y) y'Ay, and averaging over y
    gives E s^3 = (a.b)^3 + 3 (a.b)(a'Ba + b'Ab + tr(AB)) + 6 a'BAb.
    """
    d = len(a)
    ab = a @ b
    m2 = np.trace((A + np.outer(a, a)) @ (B + np.outer(b, b)))
    m3 = ab**3 + 3 * ab * (a @ B @ a + b @ A @ b + np.trace(A @ B)) + 6 * a @ B @ A @ b
    return 1 + 3 * ab / d + 3 * m2 / d**2 + m3 / d**3


def _population_mmd2(a, A, b, B):
    return (
        _cubic_kernel_mean(a, A, a, A)
        + _cubic_kernel_mean(b, B, b, B)
        - 2 * _cubic_kernel_mean(a, A, b, B)
    )


def _np_radii(x, k):
    # Sorted distances to every row, the row itself (0) first: column k is the k-th other.
    return np.sort(cdist(x, x), axis=1)[:, k]


def _np_prdc(x, y, k):
    rx, ry = _np_radii(x, k), _np_radii(y, k)
    d = cdist(x, y)  # [N, M]
    in_real = d <= rx[:, None]
    precision = in_real.any(axis=0).mean()
    recall = (d <= ry[None, :]).any(axis=1).mean()
    density = in_real.sum(axis=0).mean() / k
    coverage = in_real.any(axis=1).mean()
    return precision, recall, density, coverage


def _np_inception_score(p, splits):
    m = len(p)
    scores = []
    for s in range(splits):
        part = p[s * m // splits : (s + 1) * m // splits]
        marginal = part.mean(axis=0)
        scores.append(np.exp(np.mean([scipy.stats.entropy(row, marginal) for row in part])))
    return np.mean(scores), np.std(scores)


def _gaussians(seed, n, m, d, shift=0.0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(m, d)) + shift


# --- MMD^2 and KID -----------------------------------------------------------------------


def test_mmd2_matches_brute_force_for_every_chunk_size():
    x, y = _gaussians(0, 37, 23, 5, shift=0.4)
    expected = _np_mmd2(x, y)
    with jax.enable_x64(True):
        for chunk in (1, 7, 1024):  # 37 = 5 * 7 + 2 and 23 = 3 * 7 + 2: padded last blocks
            got = S.polynomial_kernel_mmd2(x, y, chunk_size=chunk)
            assert got.dtype == jnp.float64
            assert float(got) == pytest.approx(expected, rel=1e-12), chunk
    got = S.polynomial_kernel_mmd2(x.astype(np.float32), y.astype(np.float32), chunk_size=7)
    assert got.dtype == jnp.float32
    assert float(got) == pytest.approx(expected, rel=1e-5)
    # Symmetric in its two arguments.
    assert float(S.polynomial_kernel_mmd2(y, x)) == pytest.approx(expected, rel=1e-5)


def test_kid_subsets_are_capped_at_the_smaller_set():
    # N = M = 30 < subset_size: every subset is a permutation of both whole sets, so every
    # subset value is the whole-set MMD^2 and their spread is 0.
    x, y = _gaussians(1, 30, 30, 4, shift=0.3)
    result = S.kernel_inception_distance(x, y, jax.random.key(0), num_subsets=5, chunk_size=8)
    assert float(result.mean) == pytest.approx(_np_mmd2(x, y), rel=1e-5)
    assert float(result.std) < 1e-5 * abs(_np_mmd2(x, y))


def test_kid_values_come_from_subsets_without_replacement():
    # With two subsets, mean +- std (ddof=0) are the two subset values themselves. On 5 real
    # and 6 generated rows with subsets of 4, each must be the MMD^2 of one of the
    # C(5, 4) * C(6, 4) = 75 pairs of 4-row subsets, enumerated here.
    x, y = _gaussians(16, 5, 6, 3, shift=0.5)
    possible = np.array(
        [
            _np_mmd2(x[list(i)], y[list(j)])
            for i in itertools.combinations(range(5), 4)
            for j in itertools.combinations(range(6), 4)
        ]
    )
    for seed in range(3):
        result = S.kernel_inception_distance(
            x, y, jax.random.key(seed), num_subsets=2, subset_size=4
        )
        for value in (result.mean - result.std, result.mean + result.std):
            assert np.min(np.abs(possible - float(value))) < 1e-5 * np.max(np.abs(possible))


def test_kid_subset_average_is_unbiased_for_the_whole_set_statistic():
    # Given the data, a U-statistic of a random subset drawn without replacement averages to
    # the U-statistic of the whole sets; the subsets are independent given the data, so
    # std / sqrt(T) is the standard error. N != M and both capped at subset_size = 20 < M.
    # Drawing with replacement would repeat rows and add diagonal kernel terms: a bias of
    # about +0.7 on these sets (by simulation), far outside the tolerance.
    x, y = _gaussians(2, 60, 45, 3, shift=0.5)
    t = 2000
    result = S.kernel_inception_distance(
        x, y, jax.random.key(3), num_subsets=t, subset_size=20, chunk_size=8
    )
    stderr = float(result.std) / np.sqrt(t)
    assert abs(float(result.mean) - _np_mmd2(x, y)) < 4 * stderr
    assert 4 * stderr < 0.2


def test_mmd2_is_unbiased_when_both_samples_share_a_distribution():
    # T independent pairs of small samples of N(0, I): the mean of the unbiased estimate is
    # within a few standard errors of 0, while the V-statistic is positive by far more.
    rng = np.random.default_rng(4)
    t, n, d = 300, 30, 3
    xs = rng.normal(size=(t, n, d)).astype(np.float32)
    ys = rng.normal(size=(t, n, d)).astype(np.float32)
    values = np.asarray(
        jax.vmap(functools.partial(S.polynomial_kernel_mmd2, chunk_size=16))(xs, ys)
    )
    stderr = values.std(ddof=1) / np.sqrt(t)
    assert abs(values.mean()) < 4 * stderr
    biased = np.array(
        [_np_vstat(a.astype(np.float64), b.astype(np.float64)) for a, b in zip(xs, ys, strict=True)]
    )
    assert biased.mean() > 20 * stderr
    # The vmapped float32 values agree with the float64 oracle pair by pair.
    np.testing.assert_allclose(
        values[:5], [_np_mmd2(a, b) for a, b in zip(xs[:5], ys[:5], strict=True)], atol=1e-5
    )


def test_kid_is_about_zero_for_two_samples_of_one_distribution():
    x, y = _gaussians(5, 1500, 1500, 8)
    result = S.kernel_inception_distance(x, y, jax.random.key(5), num_subsets=20)
    # The mean of overlapping subsets varies no more than one subset does (std). A biased
    # estimate would sit near 2 (E k(x, x) - E k(x, x')) / 1000 = 2 (9.625 - 1.375) / 1000
    # = 0.0165 here (x ~ N(0, I_8)).
    assert abs(float(result.mean)) < 3 * float(result.std)
    assert 3 * float(result.std) < 0.012


def test_closed_form_population_mmd2_agrees_with_monte_carlo():
    # The oracle of the next test, checked on its own: E k(x, y) by direct sampling.
    rng = np.random.default_rng(6)
    a, A = np.array([0.2, 0.0, -0.1]), np.diag([1.0, 0.5, 2.0])
    b, L = np.array([0.7, -0.4, 0.3]), rng.normal(size=(3, 3)) * 0.5
    B = L @ L.T + 0.2 * np.eye(3)
    n = 400_000
    x = rng.multivariate_normal(a, A, n)
    y = rng.multivariate_normal(b, B, n)
    k = (np.sum(x * y, axis=1) / 3 + 1) ** 3
    assert abs(k.mean() - _cubic_kernel_mean(a, A, b, B)) < 4 * k.std() / np.sqrt(n)
    k = (np.sum(x[: n // 2] * x[n // 2 :], axis=1) / 3 + 1) ** 3
    assert abs(k.mean() - _cubic_kernel_mean(a, A, a, A)) < 4 * k.std() / np.sqrt(n // 2)


def test_kid_and_mmd2_estimate_the_closed_form_population_value():
    d = 4
    a, A = np.zeros(d), np.eye(d)
    b, B = np.array([0.6, -0.3, 0.0, 0.2]), np.diag([1.3, 0.8, 1.0, 1.0])
    expected = _population_mmd2(a, A, b, B)
    rng = np.random.default_rng(7)
    reps, n = 10, 2000
    xs = rng.multivariate_normal(a, A, (reps, n)).astype(np.float32)
    ys = rng.multivariate_normal(b, B, (reps, n)).astype(np.float32)
    # Whole-set estimates, one per independent replicate.
    whole = np.asarray(jax.vmap(S.polynomial_kernel_mmd2)(xs, ys))
    # KID with the standard 1000-row subsets, one per replicate.
    kid = np.array(
        [
            float(S.kernel_inception_distance(x, y, jax.random.key(i), num_subsets=10).mean)
            for i, (x, y) in enumerate(zip(xs, ys, strict=True))
        ]
    )
    for values in (whole, kid):
        stderr = values.std(ddof=1) / np.sqrt(reps)
        assert abs(values.mean() - expected) < 4 * stderr
        assert 4 * stderr < 0.15 * expected  # the check can tell a wrong kernel


def test_kid_under_jit():
    x, y = _gaussians(8, 50, 40, 3, shift=0.2)
    key = jax.random.key(9)
    kid = functools.partial(S.kernel_inception_distance, num_subsets=4, subset_size=25)
    eager = kid(x, y, key, chunk_size=6)
    jitted = jax.jit(kid, static_argnames="chunk_size")(x, y, key, chunk_size=1024)
    np.testing.assert_allclose(np.array(jitted), np.array(eager), rtol=1e-5)
    # The legacy uint32 key form draws the same subsets as the typed key it wraps.
    raw = jax.random.key_data(key)
    np.testing.assert_array_equal(np.array(kid(x, y, raw, chunk_size=6)), np.array(eager))


# --- Inception score ---------------------------------------------------------------------


def test_inception_score_hand_computed_cases():
    uniform = np.full((50, 7), 1 / 7)
    result = S.inception_score(uniform, num_splits=5)
    assert float(result.mean) == pytest.approx(1.0, abs=1e-6)
    assert float(result.std) == pytest.approx(0.0, abs=1e-6)
    # One-hot rows cycling through C = 6 classes, 12 rows per split: every split holds each
    # class twice, p(y) is uniform, KL = log 6 for every row, so the score is 6.
    one_hot = np.eye(6)[np.arange(120) % 6]
    result = S.inception_score(one_hot, num_splits=10)
    assert float(result.mean) == pytest.approx(6.0, rel=1e-6)
    assert float(result.std) == pytest.approx(0.0, abs=1e-5)
    # All rows one-hot on the same class: p(y|x) = p(y), score 1.
    same = np.eye(4)[np.zeros(40, int)]
    assert float(S.inception_score(same, num_splits=4).mean) == pytest.approx(1.0, abs=1e-6)


def test_inception_score_matches_scipy_entropy():
    rng = np.random.default_rng(10)
    p = rng.dirichlet(np.full(9, 0.3), size=103)  # 103 rows: splits of 10 and 11 rows
    p[::7, 0] = 0.0  # exact zeros: 0 log 0 = 0
    p /= p.sum(axis=1, keepdims=True)
    expected = _np_inception_score(p, splits=10)
    got = S.inception_score(p.astype(np.float32))
    np.testing.assert_allclose(np.array(got), expected, rtol=2e-5)
    with jax.enable_x64(True):
        np.testing.assert_allclose(np.array(S.inception_score(p)), expected, rtol=1e-11)
    # Logits: log-probabilities shifted by an arbitrary constant per row give the same score.
    logits = np.log(rng.dirichlet(np.ones(9), size=103)) + rng.normal(size=(103, 1)) * 5
    expected = _np_inception_score(scipy.special.softmax(logits, axis=1), splits=7)
    got = S.inception_score(logits.astype(np.float32), from_logits=True, num_splits=7)
    np.testing.assert_allclose(np.array(got), expected, rtol=2e-5)
    jitted = jax.jit(S.inception_score, static_argnames=("from_logits", "num_splits"))
    got = jitted(logits.astype(np.float32), from_logits=True, num_splits=7)
    np.testing.assert_allclose(np.array(got), expected, rtol=2e-5)


# --- k-NN radii, precision/recall, density/coverage --------------------------------------


def test_radii_precision_recall_density_coverage_match_brute_force():
    x, y = _gaussians(11, 150, 110, 6, shift=0.5)
    k = 3
    precision, recall, density, coverage = _np_prdc(x, y, k)
    with jax.enable_x64(True):
        # 150 = 21 * 7 + 3 and 110 = 15 * 7 + 5 rows: padded last blocks.
        np.testing.assert_allclose(S.knn_radii(x, k=k, chunk_size=7), _np_radii(x, k))
        # Duplicate rows are neighbours at distance 0 (the oracle counts them the same way).
        twice = np.concatenate([x[:40], x[:40], x[40:50]])
        for j in (1, 3):
            got = S.knn_radii(twice, k=j, chunk_size=7)
            np.testing.assert_allclose(got, _np_radii(twice, j), rtol=1e-9, atol=1e-6)
        for chunk in (7, 1024):
            pr = S.precision_recall(x, y, k=k, chunk_size=chunk)
            dc = S.density_coverage(x, y, k=k, chunk_size=chunk)
            # Equal up to the last bit of a mean: any one sample classified differently
            # would move a value by 1/150 or 1/110.
            got = [float(v) for v in (*pr, *dc)]
            assert got == pytest.approx([precision, recall, density, coverage], rel=1e-12), chunk
    # float32: a sample within rounding of a ball's boundary may flip; allow one.
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    pr = S.precision_recall(x32, y32, k=k, chunk_size=16)
    dc = S.density_coverage(x32, y32, k=k, chunk_size=16)
    assert abs(float(pr.precision) - precision) <= 1 / 110 + 1e-6
    assert abs(float(pr.recall) - recall) <= 1 / 150 + 1e-6
    assert abs(float(dc.density) - density) <= 1 / (k * 110) + 1e-6
    assert abs(float(dc.coverage) - coverage) <= 1 / 150 + 1e-6
    # Another k, and more generated than real samples.
    p, r, dn, c = _np_prdc(y[:60], x, 5)
    pr = S.precision_recall(y[:60], x, k=5, chunk_size=32)
    dc = S.density_coverage(y[:60], x, k=5, chunk_size=32)
    np.testing.assert_allclose(np.array([*pr, *dc]), [p, r, dn, c], atol=1e-6)


def test_identical_sets():
    x, _ = _gaussians(12, 200, 1, 5)
    for k in (1, 4):
        pr = S.precision_recall(x, x, k=k, chunk_size=64)
        dc = S.density_coverage(x, x, k=k, chunk_size=64)
        assert float(pr.precision) == float(pr.recall) == float(dc.coverage) == 1.0
        # Every ball holds its centre and its k neighbours: density = (k + 1) / k.
        assert float(dc.density) == pytest.approx((k + 1) / k, rel=1e-6)


def test_disjoint_far_apart_sets():
    x, y = _gaussians(13, 100, 80, 4)
    y = y + 100.0
    pr = S.precision_recall(x, y, chunk_size=32)
    dc = S.density_coverage(x, y, chunk_size=32)
    assert [float(v) for v in (*pr, *dc)] == [0.0, 0.0, 0.0, 0.0]


def test_generator_covering_half_the_modes():
    # Real: 4 well-separated unit Gaussians, 250 samples each. Generated: 500 samples from each
    # of the first 2 modes. Generated samples are realistic (precision near 1, short of it by
    # the few in the tails that fall outside every real ball), but the generator misses half
    # the real data (recall and coverage near 0.5, and at most 0.5, since the missed modes are
    # 20 standard deviations away); locally it matches the real density, so density is near 1.
    # Swapping precision and recall, or real and generated, fails this.
    rng = np.random.default_rng(14)
    d = 4
    centres = 20.0 * np.eye(d)
    real = np.concatenate([rng.normal(size=(250, d)) + c for c in centres])
    fake = np.concatenate([rng.normal(size=(500, d)) + c for c in centres[:2]])
    pr = S.precision_recall(real, fake, chunk_size=256)
    dc = S.density_coverage(real, fake, chunk_size=256)
    assert float(pr.precision) > 0.9
    assert 0.44 < float(pr.recall) <= 0.5
    assert 0.44 < float(dc.coverage) <= 0.5
    assert 0.8 < float(dc.density) < 1.2
    # Exchanging the roles exchanges the two numbers (the definitions mirror each other).
    swapped = S.precision_recall(fake, real, chunk_size=256)
    assert (float(swapped.precision), float(swapped.recall)) == (
        float(pr.recall),
        float(pr.precision),
    )


def test_neighbour_metrics_under_jit_and_vmap():
    x, y = _gaussians(15, 70, 50, 3, shift=0.3)
    pr = jax.jit(S.precision_recall, static_argnames=("k", "chunk_size"))
    dc = jax.jit(S.density_coverage, static_argnames=("k", "chunk_size"))
    radii = jax.jit(S.knn_radii, static_argnames=("k", "chunk_size"))
    expected = _np_prdc(x, y, 3)
    np.testing.assert_allclose(np.array(pr(x, y, chunk_size=9)), expected[:2], atol=1e-6)
    np.testing.assert_allclose(np.array(dc(x, y, chunk_size=9)), expected[2:], atol=1e-6)
    np.testing.assert_allclose(radii(x, chunk_size=9), _np_radii(x, 3), rtol=1e-5)
    batched = jax.vmap(functools.partial(S.precision_recall, chunk_size=16))
    both = batched(np.stack([x[:50], y]), np.stack([y, x[:50]]))
    expected = [_np_prdc(x[:50], y, 3)[:2], _np_prdc(y, x[:50], 3)[:2]]
    np.testing.assert_allclose(np.stack(both, axis=1), expected, atol=1e-6)


# --- bad input ---------------------------------------------------------------------------


def test_bad_inputs():
    x = np.zeros((10, 3))
    key = jax.random.key(0)
    cases = [
        (
            lambda: S.polynomial_kernel_mmd2(np.zeros(5), x),
            r"x must be \[N, D\] features, got shape \(5,\)",
        ),
        (lambda: S.polynomial_kernel_mmd2(x, np.zeros((1, 3))), r"y needs at least 2 rows"),
        (lambda: S.polynomial_kernel_mmd2(x, np.zeros((4, 2))), r"same feature dimension D"),
        (
            lambda: S.polynomial_kernel_mmd2(x, x, chunk_size=0),
            r"chunk_size must be an int >= 1, got 0",
        ),
        (
            lambda: S.polynomial_kernel_mmd2(x.astype(bool), x),
            r"x must be real numbers, got dtype bool",
        ),
        (
            lambda: S.kernel_inception_distance(x, np.full((4, 3), np.nan), key),
            r"generated contains non-finite",
        ),
        (
            lambda: S.kernel_inception_distance(x, x, key, num_subsets=0),
            r"num_subsets must be an int >= 1",
        ),
        (
            lambda: S.kernel_inception_distance(x, x, key, subset_size=1),
            r"subset_size must be an int >= 2",
        ),
        (lambda: S.kernel_inception_distance(x, x, 3), r"rng must be one jax.random key"),
        (
            lambda: S.kernel_inception_distance(x, np.zeros((4, 2)), key),
            r"real \(10, 3\) and generated \(4, 2\)",
        ),
        (
            lambda: S.inception_score(np.full((4, 3), 0.5), num_splits=2),
            r"must be probabilities .* row sums in \[1.5, 1.5\]",
        ),
        (lambda: S.inception_score(np.array([[1.5, -0.5]] * 4), num_splits=2), r"got min -0.5"),
        (
            lambda: S.inception_score(np.full((4, 2), 0.5), num_splits=5),
            r"num_splits must be <= M = 4",
        ),
        (lambda: S.inception_score(np.full(4, 0.5), num_splits=2), r"predictions must be \[M, C\]"),
        (
            lambda: S.inception_score(np.ones((4, 2), int), num_splits=2),
            r"must be floating point, got dtype int",
        ),
        (
            lambda: S.inception_score(np.full((4, 2), np.inf), from_logits=True, num_splits=2),
            r"non-finite",
        ),
        (
            lambda: S.inception_score(np.full((4, 2), 0.5), from_logits=1, num_splits=2),
            r"from_logits must be a bool",
        ),
        (lambda: S.knn_radii(x[:3]), r"features needs at least 4 rows, got shape \(3, 3\)"),
        (lambda: S.knn_radii(x, k=True), r"k must be an int >= 1, got True"),
        (
            lambda: S.precision_recall(x, x[:3]),
            r"precision_recall: generated needs at least 4 rows",
        ),
        (lambda: S.density_coverage(x[:3], x), r"density_coverage: real needs at least 4 rows"),
        (
            lambda: S.density_coverage(x, x, chunk_size=2.0),
            r"chunk_size must be an int >= 1, got 2.0",
        ),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
