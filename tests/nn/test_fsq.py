"""Finite scalar quantization against enumeration, hand values and finite differences."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.nn import fsq

TABLES = [(8, 6, 5), (8, 5, 5, 5), (7, 5, 5, 5, 5), (2, 3), (4,)]


@pytest.mark.parametrize("levels", TABLES)
def test_every_output_is_a_grid_point_and_every_grid_point_is_reached(levels):
    z = jax.random.normal(jax.random.PRNGKey(0), (20000, len(levels))) * 3.0
    codes = np.asarray(fsq.quantize(z, levels))
    for i, L in enumerate(levels):
        half = L // 2
        # The grid of channel i, enumerated by hand: L integers around 0, over L // 2.
        grid = (np.arange(-half, L - half) / half).astype(np.float32)
        assert len(grid) == L
        assert set(np.unique(codes[:, i])) == set(grid), (levels, i)


@pytest.mark.parametrize("levels", TABLES)
def test_index_round_trip_is_exact_and_enumerates_the_product_grid(levels):
    n = math.prod(levels)
    assert fsq.codebook_size(levels) == n
    codes = np.asarray(fsq.indices_to_codes(jnp.arange(n), levels))
    # Mixed radix, channel 0 fastest: itertools.product varies its last factor fastest.
    expected = [
        tuple(reversed(t)) for t in itertools.product(*[range(L) for L in reversed(levels)])
    ]
    digits = [
        tuple(round(float(c) * (L // 2) + L // 2) for c, L in zip(row, levels, strict=True))
        for row in codes
    ]
    assert digits == expected
    np.testing.assert_array_equal(np.asarray(fsq.codes_to_indices(codes, levels)), np.arange(n))
    # And quantize's outputs map to indices whose codes are those outputs again.
    z = jax.random.normal(jax.random.PRNGKey(1), (500, len(levels))) * 2.0
    q = fsq.quantize(z, levels)
    np.testing.assert_array_equal(fsq.indices_to_codes(fsq.codes_to_indices(q, levels), levels), q)


def test_hand_values():
    # L = 5 (odd): no shift, bound(0) = 0, large inputs saturate just inside +-2.
    np.testing.assert_allclose(fsq.bound(jnp.zeros((1, 1)), (5,)), [[0.0]], atol=1e-7)
    assert float(fsq.quantize(jnp.full((1, 1), 50.0), (5,))[0, 0]) == 1.0
    assert float(fsq.quantize(jnp.full((1, 1), -50.0), (5,))[0, 0]) == -1.0
    # L = 8 (even): the levels are -4..3 over 4, and z = 0 lands on level 0.
    assert float(fsq.quantize(jnp.zeros((1, 1)), (8,))[0, 0]) == 0.0
    assert float(fsq.quantize(jnp.full((1, 1), 50.0), (8,))[0, 0]) == 0.75
    assert float(fsq.quantize(jnp.full((1, 1), -50.0), (8,))[0, 0]) == -1.0


@pytest.mark.parametrize("levels", [(8, 6, 5), (2, 7)])
def test_straight_through_gradient_is_that_of_the_bounded_projection(levels):
    with jax.enable_x64(True):
        z = jax.random.normal(jax.random.PRNGKey(2), (6, len(levels)), jnp.float64)
        w = jax.random.normal(jax.random.PRNGKey(3), z.shape, jnp.float64)
        g = jax.grad(lambda z: jnp.sum(w * fsq.quantize(z, levels)))(z)
        half = np.asarray([L // 2 for L in levels], np.float64)

        def projected(zz):  # the bounded projection over the level spacing, no rounding
            return np.sum(np.asarray(w) * np.asarray(fsq.bound(zz, levels)) / half)

        eps = 1e-6
        fd = np.zeros(z.shape)
        for idx in np.ndindex(*z.shape):
            e = np.zeros(z.shape)
            e[idx] = eps
            fd[idx] = (projected(z + e) - projected(z - e)) / (2 * eps)
        np.testing.assert_allclose(np.asarray(g), fd, rtol=1e-6, atol=1e-9)


def test_bfloat16_inputs_quantize_like_float32():
    z = jax.random.normal(jax.random.PRNGKey(4), (1000, 3)).astype(jnp.bfloat16)
    q16 = fsq.quantize(z, (8, 6, 5))
    q32 = fsq.quantize(z.astype(jnp.float32), (8, 6, 5))
    assert q16.dtype == jnp.float32
    np.testing.assert_array_equal(q16, q32)


def test_layer_projects_only_when_the_width_differs():
    x = jax.random.normal(jax.random.PRNGKey(5), (4, 7, 7, 3))
    layer = fsq.FiniteScalarQuantizer(levels=(8, 6, 5))
    variables = layer.init(jax.random.PRNGKey(0), x)
    assert jax.tree.leaves(variables) == []
    out, idx = layer.apply(variables, x)
    assert out.shape == x.shape and idx.shape == (4, 7, 7) and idx.dtype == jnp.int32
    wide = jax.random.normal(jax.random.PRNGKey(6), (4, 16))
    v = layer.init(jax.random.PRNGKey(0), wide)
    out, idx = layer.apply(v, wide)
    assert out.shape == (4, 16) and int(idx.max()) < 240


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: fsq.quantize(jnp.zeros((2, 3)), (8, 5)), "last axis of len"),
        (lambda: fsq.quantize(jnp.zeros((2, 2)), (8, 1)), r"levels\[1\] must be an int >= 2"),
        (lambda: fsq.quantize(jnp.zeros((2, 1), jnp.int32), (8,)), "float array"),
        (lambda: fsq.indices_to_codes(jnp.zeros(2), (8,)), "integers"),
        (lambda: fsq.codebook_size(()), "non-empty"),
    ],
)
def test_bad_input_is_one_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_paper_tables():
    for target, levels in fsq.LEVELS.items():
        size = fsq.codebook_size(levels)
        # The paper's tables approximate each power of two (4,375 codes for 2^12).
        assert abs(math.log2(size) - math.log2(target)) < 0.15, (target, levels, size)


def test_bound_of_an_even_level_count_by_hand():
    # L = 4: h = 3 (1 + 1e-3) / 2, offset 1/2, shift atanh(1/2 / h): the levels are -2..1.
    # Closed forms in float64 with math, not the module's code path.
    h = 3 * 1.001 / 2
    s = math.atanh(0.5 / h)
    # bound(0) = tanh(s) h - 1/2 = 0: zero sits on a level, not on a rounding edge.
    np.testing.assert_allclose(fsq.bound(jnp.zeros((1, 1)), (4,)), [[0.0]], atol=1e-7)
    # The ends: h - 1/2 = 1.0015 and -h - 1/2 = -2.0015.
    np.testing.assert_allclose(fsq.bound(jnp.full((1, 1), 30.0), (4,)), [[1.0015]], rtol=1e-6)
    np.testing.assert_allclose(fsq.bound(jnp.full((1, 1), -30.0), (4,)), [[-2.0015]], rtol=1e-6)
    # bound(z) = b  <=>  z = atanh((b + 1/2) / h) - s: the three rounding edges b = -1.5,
    # -0.5, 0.5 by hand, and the level just either side of each.
    for edge, below, above in [(-1.5, -2, -1), (-0.5, -1, 0), (0.5, 0, 1)]:
        z = math.atanh((edge + 0.5) / h) - s
        np.testing.assert_allclose(fsq.bound(jnp.full((1, 1), z), (4,)), [[edge]], atol=2e-6)
        q = fsq.quantize(jnp.array([[z - 1e-3], [z + 1e-3]]), (4,))
        np.testing.assert_array_equal(np.asarray(q)[:, 0], np.array([below, above]) / 2)
    # L = 6 (half = 5 / 2 * 1.001, levels -3..2): the edge between levels 1 and 2 at b = 1.5.
    h6 = 5 * 1.001 / 2
    z = math.atanh(2.0 / h6) - math.atanh(0.5 / h6)
    np.testing.assert_allclose(fsq.bound(jnp.full((1, 1), z), (6,)), [[1.5]], atol=2e-6)


def test_noise_substitution_replaces_a_prob_fraction_by_uniform_noise_one_level_wide():
    from scipy import stats

    levels, prob = (8, 6, 5), 0.3
    z = jax.random.normal(jax.random.PRNGKey(7), (40000, 3)) * 1.5
    half = np.asarray([L // 2 for L in levels], np.float32)
    b = np.asarray(fsq.bound(z, levels))  # float32, as the quantizer computes it
    q = np.asarray(fsq.noisy_quantize(jax.random.PRNGKey(8), z, levels, prob))
    codes = np.round(b) / half  # the rounded codes, in float32
    noisy = q != codes  # a noisy value equals its code with probability ~0
    n = noisy.size
    # The substituted fraction: binomial(n, prob), checked to 5 standard deviations.
    assert abs(noisy.mean() - prob) < 5 * math.sqrt(prob * (1 - prob) / n)
    # Substituted values are bound(z) + U(-1/2, 1/2) levels: Kolmogorov-Smirnov against
    # scipy's uniform.
    u = (q.astype(np.float64) * half - b)[noisy]
    assert stats.kstest(u, stats.uniform(loc=-0.5, scale=1.0).cdf).pvalue > 1e-3
    # prob = 0 is quantize itself; different keys give different noise.
    np.testing.assert_array_equal(
        fsq.noisy_quantize(jax.random.PRNGKey(8), z, levels, 0.0), fsq.quantize(z, levels)
    )
    other = np.asarray(fsq.noisy_quantize(jax.random.PRNGKey(9), z, levels, prob))
    assert np.mean(other != q) > 0.3


def test_noise_substitution_keeps_the_straight_through_gradient():
    levels = (8, 6, 5)
    z = jax.random.normal(jax.random.PRNGKey(10), (64, 3))
    w = jax.random.normal(jax.random.PRNGKey(11), z.shape)
    key = jax.random.PRNGKey(12)
    g_noisy = jax.grad(lambda z: jnp.sum(w * fsq.noisy_quantize(key, z, levels, 0.7)))(z)
    g_plain = jax.grad(lambda z: jnp.sum(w * fsq.quantize(z, levels)))(z)
    # Both are the bounded projection's gradient, checked against finite differences above.
    np.testing.assert_allclose(g_noisy, g_plain, rtol=1e-6)


@pytest.mark.parametrize("prob", [-0.1, 1.5, "half"])
def test_noise_substitution_probability_is_validated(prob):
    with pytest.raises(ValueError, match=r"noisy_quantize: prob must be a number in \[0, 1\]"):
        fsq.noisy_quantize(jax.random.PRNGKey(0), jnp.zeros((2, 3)), (8, 6, 5), prob)
