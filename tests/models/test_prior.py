"""Tests for genjax.models.prior: causality by perturbation, and a Markov chain whose entropy
rate is known in closed form as the oracle of the fitted likelihood and of the samples."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax.models import prior as P

K, S = 4, 8
STAY = 0.9  # P(c_{i+1} = c_i + 1 mod K); each of the other K - 1 values has (1 - STAY) / 3


def _chain(rng: np.random.Generator, n: int) -> np.ndarray:
    codes = np.zeros((n, S), np.int32)
    codes[:, 0] = rng.integers(0, K, n)
    for i in range(1, S):
        step = rng.random(n) < STAY
        other = (codes[:, i - 1] + 1 + rng.integers(1, K, n)) % K  # any value but prev + 1
        codes[:, i] = np.where(step, (codes[:, i - 1] + 1) % K, other)
    return codes


def _entropy_bits_per_code() -> float:
    h_step = -STAY * math.log2(STAY) - (1 - STAY) * math.log2((1 - STAY) / (K - 1))
    return (math.log2(K) + (S - 1) * h_step) / S


def test_logits_at_position_i_do_not_depend_on_codes_at_positions_ge_i():
    model = P.CausalTransformer(num_codes=5, seq_len=6, width=16, depth=2, heads=2)
    codes = jnp.asarray(np.random.default_rng(0).integers(0, 5, (3, 6)), jnp.int32)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), codes)
    apply = jax.jit(model.apply)
    base = np.asarray(apply(params, codes))
    for j in range(6):
        changed = np.asarray(apply(params, codes.at[:, j].set((codes[:, j] + 1) % 5)))
        # Positions 0..j only see codes before them: unchanged, bit for bit.
        np.testing.assert_array_equal(changed[:, : j + 1], base[:, : j + 1])
        if j + 1 < 6:  # the next position does see c_j
            assert np.abs(changed[:, j + 1] - base[:, j + 1]).max() > 1e-6


def test_bad_configuration_and_input_raise():
    with pytest.raises(ValueError, match="width must be divisible by heads"):
        P.PriorLoss(P.CausalTransformer(num_codes=4, seq_len=3, width=10, heads=4))
    with pytest.raises(ValueError, match="num_codes must be an int >= 2"):
        P.PriorLoss(P.CausalTransformer(num_codes=1, seq_len=3))
    model = P.CausalTransformer(num_codes=4, seq_len=3, width=8, heads=2, depth=1)
    with pytest.raises(ValueError, match=r"seq_len=3 positions per example, got shape \(2, 4\)"):
        P.log_prob(model, {}, jnp.zeros((2, 4), jnp.int32))
    with pytest.raises(ValueError, match="temperature must be a number > 0"):
        P.sample(model, {}, jax.random.PRNGKey(0), 2, temperature=0.0)


@pytest.mark.slow
def test_fits_a_markov_chain_to_its_entropy_rate_and_samples_its_transitions():
    rng = np.random.default_rng(1)
    train, held_out = _chain(rng, 4096), _chain(rng, 2048)
    model = P.CausalTransformer(num_codes=K, seq_len=S, width=32, depth=1, heads=2)
    obj = P.PriorLoss(model)
    params = jax.jit(obj.init)(jax.random.PRNGKey(0), {"codes": train[:2]})
    opt = optax.adam(3e-3)

    @jax.jit
    def fit(params, data):
        def step(carry, i):
            params, opt_state = carry
            idx = jax.random.choice(jax.random.PRNGKey(i), data.shape[0], (128,))
            grads = jax.grad(lambda p: obj.loss(p, {"codes": data[idx]}, None)[0])(params)
            updates, opt_state = opt.update(grads, opt_state)
            return (optax.apply_updates(params, updates), opt_state), None

        (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), jnp.arange(400))
        return params

    params = fit(params, jnp.asarray(train))
    bits = float(jax.jit(lambda p, c: P.bits_per_code(model, p, c))(params, held_out))
    truth = _entropy_bits_per_code()  # 0.799 bits; a model blind to c_<i scores 2 bits
    # Not below the entropy rate (no peeking at c_i), and close to it (uses c_<i).
    assert truth - 0.03 <= bits <= truth + 0.08, (bits, truth)

    draws = np.asarray(
        jax.jit(lambda p, k: P.sample(model, p, k, 2000))(params, jax.random.PRNGKey(3))
    )
    assert draws.shape == (2000, S) and draws.min() >= 0 and draws.max() < K
    follows = np.mean(draws[:, 1:] == (draws[:, :-1] + 1) % K)
    assert abs(follows - STAY) < 0.025, follows
    first = np.bincount(draws[:, 0], minlength=K) / 2000
    np.testing.assert_allclose(first, 1 / K, atol=0.04)
