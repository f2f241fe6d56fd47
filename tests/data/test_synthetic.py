"""The 2-D mixtures against their published geometry, and mode statistics on hand-built sets."""

import itertools
import math

import jax
import numpy as np
import pytest

from genjax.data import GRID25, RING8, MixtureSpec, mode_statistics, sample_mixture
from genjax.data.synthetic import SPLIT_SIZES

# Same n as the fixed finite sets, so the compiled sampler is shared with `load`.
N = sum(SPLIT_SIZES.values())


def test_ring8_geometry():
    # VEEGAN's 2D ring: 8 means at angles 2*pi*k/8 on a circle of radius 2, std 0.02.
    expected = [
        (2 * math.cos(2 * math.pi * k / 8), 2 * math.sin(2 * math.pi * k / 8)) for k in range(8)
    ]
    np.testing.assert_allclose(RING8.means, expected, atol=1e-6)
    assert RING8.std == 0.02 and RING8.num_modes == 8


def test_grid25_geometry():
    # VEEGAN's 2D grid: 25 means on {-4, -2, 0, 2, 4}^2, std 0.05.
    expected = sorted(itertools.product([-4, -2, 0, 2, 4], repeat=2))
    assert sorted(map(tuple, GRID25.means.tolist())) == expected
    assert GRID25.std == 0.05 and GRID25.num_modes == 25


@pytest.mark.parametrize("spec", [RING8, GRID25], ids=lambda s: s.name)
def test_sample_moments_per_mode(spec):
    x, mode = sample_mixture(spec, jax.random.key(7), N)
    x, mode = np.asarray(x), np.asarray(mode)
    assert x.shape == (N, 2) and x.dtype == np.float32 and mode.dtype == np.int32
    counts = np.bincount(mode, minlength=spec.num_modes)
    # Uniform over modes: each count ~ Binomial(N, 1/M); allow 5 standard deviations.
    p = 1 / spec.num_modes
    assert np.all(np.abs(counts - N * p) < 5 * math.sqrt(N * p * (1 - p)))
    for k in range(spec.num_modes):
        xk = x[mode == k]
        n = len(xk)
        # Mean within 5 standard errors; std within 5 standard errors (~ std / sqrt(2n)).
        np.testing.assert_allclose(xk.mean(0), spec.means[k], atol=5 * spec.std / math.sqrt(n))
        np.testing.assert_allclose(xk.std(0), spec.std, rtol=5 / math.sqrt(2 * n))
        # Modes are far apart relative to std: every point is nearest to its own mode.
        nearest = np.argmin(np.linalg.norm(xk[:, None] - spec.means[None], axis=-1), axis=1)
        assert np.all(nearest == k)


def test_mode_statistics_all_modes_balanced():
    samples = np.repeat(GRID25.means, 4, axis=0)
    stats = mode_statistics(GRID25, samples)
    assert int(stats["modes_captured"]) == 25
    assert float(stats["high_quality_fraction"]) == 1.0
    assert float(stats["reverse_kl"]) == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_array_equal(stats["mode_counts"], np.full(25, 4))


def test_mode_statistics_collapsed():
    samples = np.tile(RING8.means[3], (100, 1)) + np.array([0.01, -0.01])
    stats = mode_statistics(RING8, samples)
    assert int(stats["modes_captured"]) == 1
    assert float(stats["high_quality_fraction"]) == 1.0
    # KL(one-hot || uniform over 8) = log 8.
    assert float(stats["reverse_kl"]) == pytest.approx(math.log(8), rel=1e-6)


def test_mode_statistics_off_mode_points():
    std = RING8.std
    on = RING8.means[:2]  # exactly on modes 0 and 1
    inside = RING8.means[2] + np.array([2.9 * std, 0.0])  # within 3 std of mode 2
    outside = RING8.means[4] + np.array([0.0, 3.1 * std])  # just beyond 3 std of mode 4
    origin = np.zeros(2)  # 2 away from every mode
    samples = np.vstack([on, inside, outside, origin])
    stats = mode_statistics(RING8, samples)
    assert int(stats["modes_captured"]) == 3
    assert float(stats["high_quality_fraction"]) == pytest.approx(3 / 5)
    np.testing.assert_array_equal(stats["mode_counts"], [1, 1, 1, 0, 0, 0, 0, 0])
    # Histogram (1/3, 1/3, 1/3, 0, ...) against uniform over 8: sum p log(8 p) = log(8/3).
    assert float(stats["reverse_kl"]) == pytest.approx(math.log(8 / 3), rel=1e-5)


def test_mode_statistics_unbalanced_kl_and_min_count():
    samples = np.vstack([np.tile(RING8.means[0], (6, 1)), np.tile(RING8.means[5], (2, 1))])
    stats = mode_statistics(RING8, samples, min_count=3)
    assert int(stats["modes_captured"]) == 1  # mode 5 has only 2 high-quality samples
    p = np.array([6, 2]) / 8
    assert float(stats["reverse_kl"]) == pytest.approx(float(np.sum(p * np.log(8 * p))), rel=1e-5)
    assert int(mode_statistics(RING8, samples)["modes_captured"]) == 2


def test_mode_statistics_no_high_quality_sample():
    stats = mode_statistics(RING8, np.zeros((10, 2)))
    assert int(stats["modes_captured"]) == 0
    assert float(stats["high_quality_fraction"]) == 0.0
    assert math.isnan(float(stats["reverse_kl"]))


def test_mixture_spec_validation():
    with pytest.raises(ValueError, match=r"shape \[M, 2\]"):
        MixtureSpec("bad", np.zeros((3, 3)), 0.1)
    with pytest.raises(ValueError, match="positive"):
        MixtureSpec("bad", np.zeros((3, 2)), 0.0)
    with pytest.raises(ValueError, match="min_count"):
        mode_statistics(RING8, np.zeros((1, 2)), min_count=0)
