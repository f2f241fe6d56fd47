"""Tests for genjax.models.vqvae against independent oracles.

Oracles: hand-computed EMA updates and restarts on tiny examples, brute-force nearest codes
in NumPy, the gradient of the decoder's loss taken at the quantised point itself, the
closed-form gradient of the codebook loss, the global-batch update as the oracle of the
per-device update after the engine's cross-device reduction, cluster membership for
k-means++, and a short training whose figures a model without a working quantiser cannot
reach.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax.data import Preprocess, load, preprocess
from genjax.losses import codebook_perplexity
from genjax.models import vqvae as V
from genjax.train import Engine, Task, init_state
from genjax.train.step import _reduce_across


def _state(**fields):
    base = dict(
        cluster_size=None,
        embed_sum=None,
        last_used=jnp.zeros((3,), jnp.int32),
        reservoir=None,
        step=jnp.zeros((), jnp.int32),
        restarts=jnp.zeros((), jnp.int32),
        key=jax.random.PRNGKey(0),
        data_variance=jnp.ones((), jnp.float32),
    )
    base.update(fields)
    return V.CodebookState(**base)


# --------------------------------------------------------------------------------------------
# Straight-through estimator and the codebook gradient.
# --------------------------------------------------------------------------------------------


def test_straight_through_gradient_wrt_z_e_equals_gradient_wrt_z_q():
    # An MLP pair with a code map of 3 vectors per image (the quantiser acts on the last
    # axis, whatever the leading ones).
    model = V.VQVAE(
        input_shape=(64,), arch="mlp", num_codes=8, code_dim=4, mlp_hidden=(32,), num_latents=3
    )
    x = jax.random.uniform(jax.random.PRNGKey(0), (5, 64))
    codebook = jax.random.normal(jax.random.PRNGKey(1), (8, 4))
    params = jax.jit(model.init)(jax.random.PRNGKey(2), x, codebook)
    z_e = jax.jit(lambda p, x: model.apply(p, x, method=V.VQVAE.encode))(params, x)
    assert z_e.shape == (5, 3, 4)

    def recon_from(z):
        x_hat = model.apply(params, z, method=V.VQVAE.decode)
        return jnp.sum(jnp.square(x_hat - x))

    def through_quantizer(z):
        q = model.apply(params, z, codebook, method=V.VQVAE.quantize)
        return recon_from(q.z_q_st)

    grad_z_e = jax.jit(jax.grad(through_quantizer))(z_e)
    # The oracle: the decoder's gradient at the quantised point, taken directly there.
    nearest = np.argmin(
        ((np.asarray(z_e)[..., None, :] - np.asarray(codebook)) ** 2).sum(-1), axis=-1
    )
    z_q = jnp.asarray(np.asarray(codebook)[nearest])
    grad_z_q = jax.jit(jax.grad(recon_from))(z_q)
    assert float(jnp.max(jnp.abs(grad_z_q))) > 0
    # Same values, same decoder: equal up to XLA's fusion choices in two separate programs.
    np.testing.assert_allclose(np.asarray(grad_z_e), np.asarray(grad_z_q), rtol=1e-6, atol=1e-9)
    # The quantiser's indices are the brute-force nearest codes.
    q = jax.jit(lambda z: model.apply(params, z, codebook, method=V.VQVAE.quantize))(z_e)
    np.testing.assert_array_equal(np.asarray(q.indices), nearest)


def _mlp_objective(rule="loss", **kw):
    model = V.VQVAE(
        input_shape=(64,),
        arch="mlp",
        num_codes=6,
        code_dim=3,
        rule=rule,
        mlp_hidden=(16,),
        num_latents=2,
    )
    return V.Objective(model, **kw)


def test_codebook_receives_exactly_the_codebook_loss_gradient():
    # d/d e_k of mean_b [sum_{i: k_i = k} ||sg z_i - e_k||^2 / (L D)]
    #   = 2 sum_{i: k_i = k} (e_k - z_i) / (L D B)
    obj = _mlp_objective("loss", beta=0.7, codebook_init="sample")
    x = jax.random.uniform(jax.random.PRNGKey(3), (5, 64))
    batch = {"x": x}
    params = jax.jit(obj.init)(jax.random.PRNGKey(4), batch)
    state = jax.jit(obj.init_model_state)(jax.random.PRNGKey(5), batch, params)
    loss = lambda p: obj.loss(p, state, batch, jax.random.PRNGKey(6))[0]
    grads = jax.jit(jax.grad(loss))(params)
    g = np.asarray(grads["params"]["quantizer"]["codebook"])
    cb = np.asarray(params["params"]["quantizer"]["codebook"], np.float64)
    z = np.asarray(obj.encoder_outputs(params, x), np.float64)  # [B * L, D]
    k = np.argmin(((z[:, None, :] - cb[None]) ** 2).sum(-1), axis=1)
    expected = np.zeros_like(cb)
    for i, code in enumerate(k):
        expected[code] += 2 * (cb[code] - z[i]) / (2 * 3 * 5)
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(g, expected, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------------------------
# The EMA rule.
# --------------------------------------------------------------------------------------------


def test_ema_update_matches_hand_computed_example():
    z = jnp.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [4.0, 4.0]])
    indices = jnp.array([0, 0, 2, 0])
    state = _state(
        cluster_size=jnp.array([0.5, 0.3, 0.2]),
        embed_sum=jnp.array([[1.0, 1.0], [0.0, 3.0], [2.0, 0.0]]),
    )
    update = jax.jit(lambda s, z, i, k: V.update_codebook_state(s, z, i, k, decay=0.5))
    new, _ = update(state, z, indices, jax.random.PRNGKey(0))
    # By hand: n = [3/4, 0, 1/4], m = [[8/4, 4/4], [0, 0], [0, 2/4]];
    # N' = .5 [.5, .3, .2] + .5 n = [.625, .15, .225]; S' = .5 S + .5 m.
    np.testing.assert_allclose(new.cluster_size, [0.625, 0.15, 0.225], rtol=1e-6)
    np.testing.assert_allclose(
        new.embed_sum, [[1.5, 1.0], [0.0, 1.5], [1.0, 0.25]], rtol=1e-6, atol=1e-7
    )
    np.testing.assert_array_equal(new.last_used, [0, 0, 0])  # step 0 used codes 0 and 2
    assert int(new.step) == 1
    # e = S' / N' without smoothing; with eps = 0.1: N~ = (N' + .1) / (1 + .3) * 1.
    np.testing.assert_allclose(
        V.ema_codebook(new.cluster_size, new.embed_sum, 0.0),
        [[2.4, 1.6], [0.0, 10.0], [1.0 / 0.225, 0.25 / 0.225]],
        rtol=1e-5,
    )
    smoothed = np.array([0.725, 0.25, 0.325]) / 1.3
    np.testing.assert_allclose(
        V.ema_codebook(new.cluster_size, new.embed_sum, 0.1),
        np.array([[1.5, 1.0], [0.0, 1.5], [1.0, 0.25]]) / smoothed[:, None],
        rtol=1e-5,
    )


def test_last_used_records_the_step_of_each_used_code():
    state = _state(last_used=jnp.array([3, 1, 2]), step=jnp.array(7, jnp.int32))
    new, stats = V.update_codebook_state(
        state, jnp.zeros((2, 4)), jnp.array([1, 1]), jax.random.PRNGKey(0), decay=0.9
    )
    np.testing.assert_array_equal(new.last_used, [3, 7, 2])
    assert new.cluster_size is None and int(new.step) == 8
    assert float(stats["restarted"]) == 0


# --------------------------------------------------------------------------------------------
# Dead-code restart.
# --------------------------------------------------------------------------------------------


def test_dead_code_restart_on_a_constructed_case():
    # Codes 1 and 3 were last used 10 and 8 updates ago (dead for N = 5); code 2 only 1 ago.
    reservoir_vectors = np.array([[10.0, 1.0], [20.0, 2.0], [30.0, 3.0], [40.0, 4.0]])
    state = V.CodebookState(
        cluster_size=jnp.array([0.4, 0.1, 0.3, 0.2]),
        embed_sum=jnp.array([[0.4, 0.4], [0.1, 0.0], [0.0, 0.3], [0.2, 0.2]]),
        last_used=jnp.array([10, 0, 9, 2], jnp.int32),
        reservoir=V.pack_vectors(reservoir_vectors, jnp.array([5, 9, 1, 3])),
        step=jnp.array(10, jnp.int32),
        restarts=jnp.array(4, jnp.int32),
        key=jax.random.PRNGKey(3),
        data_variance=jnp.ones(()),
    )
    z = jnp.array([[1.0, 1.0], [3.0, 1.0]])
    indices = jnp.array([0, 0])
    update = jax.jit(
        lambda s, z, i, k: V.update_codebook_state(s, z, i, k, decay=0.5, restart_after=5)
    )
    new, stats = update(state, z, indices, jax.random.PRNGKey(1))
    assert float(stats["restarted"]) == 2 and int(new.restarts) == 6
    codebook = np.asarray(V.ema_codebook(new.cluster_size, new.embed_sum, 0.0))
    # The two dead codes now sit on two distinct reservoir vectors, with mass sum(N) / K.
    restarted = {tuple(codebook[1]), tuple(codebook[3])}
    assert len(restarted) == 2
    assert restarted <= {tuple(v) for v in reservoir_vectors}
    np.testing.assert_allclose(np.asarray(new.cluster_size)[[1, 3]], [0.25, 0.25])
    np.testing.assert_array_equal(new.last_used, [10, 10, 9, 10])
    # The live codes follow the plain EMA update: n = [1, 0, 0, 0], m_0 = [2, 1].
    np.testing.assert_allclose(np.asarray(new.cluster_size)[[0, 2]], [0.5 * 0.4 + 0.5, 0.15])
    np.testing.assert_allclose(new.embed_sum[0], [0.2 + 1.0, 0.2 + 0.5])
    np.testing.assert_allclose(new.embed_sum[2], [0.0, 0.15])
    # The reservoir now holds this batch's encoder outputs.
    assert {tuple(v) for v in np.asarray(V.unpack_vectors(new.reservoir))} <= {
        (1.0, 1.0),
        (3.0, 1.0),
    }


def test_packed_reservoir_keeps_whole_vectors_under_elementwise_max():
    a = np.array([[1.5, -2.0, 3.25]], np.float32)
    b = np.array([[-7.0, 8.5, 0.125]], np.float32)
    pa, pb = V.pack_vectors(a, jnp.array([100])), V.pack_vectors(b, jnp.array([200]))
    np.testing.assert_array_equal(V.unpack_vectors(jnp.maximum(pa, pb)), b)
    np.testing.assert_array_equal(V.unpack_vectors(pa), a)  # exact in bfloat16


def test_sharded_update_after_the_engines_reduction_equals_the_global_batch_update():
    K, D, devices = 8, 3, 4
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.normal(size=(devices * 6, D)).astype(np.float32))
    codebook = jnp.asarray(rng.normal(size=(K, D)).astype(np.float32))
    _, indices = jax.vmap(lambda v: (None, jnp.argmin(jnp.sum((codebook - v) ** 2, -1))))(z)
    state = V.CodebookState(
        cluster_size=jnp.full((K,), 1.0 / K),
        embed_sum=codebook / K,
        last_used=jnp.asarray(rng.integers(0, 5, size=K), jnp.int32),
        reservoir=V.pack_vectors(z[:K], jnp.zeros((K,), jnp.int32)),
        step=jnp.array(6, jnp.int32),
        restarts=jnp.zeros((), jnp.int32),
        key=jax.random.PRNGKey(11),
        data_variance=jnp.ones(()),
    )
    kw = dict(decay=0.8, restart_after=3)
    global_new, _ = jax.jit(lambda z, i, k: V.update_codebook_state(state, z, i, k, **kw))(
        z, indices, jax.random.PRNGKey(2)
    )

    def per_device(z_local, idx_local, key):
        new, _ = V.update_codebook_state(state, z_local, idx_local, key, **kw)
        return _reduce_across(new, "data")

    keys = jax.random.split(jax.random.PRNGKey(5), devices)
    reduced = jax.jit(jax.vmap(per_device, axis_name="data"))(
        z.reshape(devices, -1, D), indices.reshape(devices, -1), keys
    )
    first = jax.tree.map(lambda a: a[0], reduced)
    for name in ("cluster_size", "embed_sum"):
        np.testing.assert_allclose(getattr(first, name), getattr(global_new, name), rtol=1e-5)
    for name in ("last_used", "step", "restarts", "key"):
        np.testing.assert_array_equal(getattr(first, name), getattr(global_new, name))
    # Every reservoir slot is one whole encoder output (bfloat16-rounded), not an average.
    truncated = np.asarray(V.unpack_vectors(V.pack_vectors(z, jnp.zeros((z.shape[0],)))))
    slots = np.asarray(V.unpack_vectors(first.reservoir))
    for row in slots:
        assert np.any(np.all(truncated == row, axis=1)), row
    # All devices agree on the state after the reduction.
    for leaf in jax.tree.leaves(reduced):
        np.testing.assert_array_equal(leaf, jnp.broadcast_to(leaf[0], leaf.shape))


# --------------------------------------------------------------------------------------------
# Initialisation.
# --------------------------------------------------------------------------------------------


def test_kmeans_plus_plus_seeds_one_centre_per_separated_cluster():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(6, 5)) * 100.0
    labels = np.repeat(np.arange(6), 40)
    points = centres[labels] + rng.normal(size=(240, 5)) * 0.01
    seeding = jax.jit(V.kmeans_plus_plus, static_argnums=2)
    seeds = np.asarray(seeding(jax.random.PRNGKey(0), points, 6))
    chosen = np.argmin(((seeds[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    assert sorted(chosen.tolist()) == list(range(6))
    # Degenerate input (every point equal): still K finite rows.
    same = np.asarray(seeding(jax.random.PRNGKey(0), np.zeros((3, 2)), 5))
    np.testing.assert_array_equal(same, np.zeros((5, 2)))


def test_sample_init_draws_distinct_rows_and_random_init_is_in_range():
    points = np.arange(40.0).reshape(20, 2)
    rows = np.asarray(V.init_codebook(jax.random.PRNGKey(0), points, 8, "sample"))
    assert len({tuple(r) for r in rows}) == 8 and all(
        tuple(r) in {tuple(p) for p in points} for r in rows
    )
    uniform = np.asarray(V.init_codebook(jax.random.PRNGKey(0), points, 8, "random"))
    assert uniform.shape == (8, 2) and np.abs(uniform).max() <= 1 / 8


# --------------------------------------------------------------------------------------------
# Bad input.
# --------------------------------------------------------------------------------------------


def test_bad_input_raises_clear_errors():
    z = jnp.zeros((2, 4))
    with pytest.raises(ValueError, match=r"num_codes.*>= 2.*got 1"):
        V.VectorQuantizer(num_codes=1, code_dim=4).init(jax.random.PRNGKey(0), z)
    with pytest.raises(ValueError, match=r"code_dim=3 must equal.*shape \(2, 4\)"):
        V.VectorQuantizer(num_codes=4, code_dim=3).init(jax.random.PRNGKey(0), z)
    with pytest.raises(ValueError, match=r"rule='ema' pass the codebook \[K, D\] = \[4, 4\]"):
        V.VectorQuantizer(num_codes=4, code_dim=4, rule="ema").init(jax.random.PRNGKey(0), z)
    model = V.VQVAE(input_shape=(64,), arch="mlp", num_codes=4, code_dim=2)
    with pytest.raises(ValueError, match=r"beta must be a finite number in .*got -0\.5"):
        V.Objective(model, beta=-0.5)
    with pytest.raises(ValueError, match=r"decay .*got 1\.0"):
        V.Objective(model, decay=1.0)
    with pytest.raises(ValueError, match="needs rule='ema'"):
        V.Objective(V.VQVAE(input_shape=(64,), arch="mlp", rule="loss"), restart_after=10)
    with pytest.raises(ValueError, match="num_codes"):
        V.Objective(V.VQVAE(input_shape=(64,), num_codes=1))
    with pytest.raises(ValueError, match="codebook_init must be one of"):
        V.Objective(model, codebook_init="zeros")


def test_experiment_config_rejects_bad_values():
    from experiments.config import ConfigError
    from experiments.models.vqvae import VQVAEConfig

    with pytest.raises(ConfigError, match=r"model\.num_codes \(K\) must be >= 2, got 1"):
        VQVAEConfig(num_codes=1)
    with pytest.raises(ConfigError, match=r"model\.beta must be a finite number >= 0, got -1"):
        VQVAEConfig(beta=-1.0)
    with pytest.raises(ConfigError, match=r"needs model\.rule=ema"):
        VQVAEConfig(rule="loss", restart_after=50)
    with pytest.raises(ConfigError, match=r"model\.compare holds unknown"):
        VQVAEConfig(compare=("vanilla",))


# --------------------------------------------------------------------------------------------
# A short training on digits.
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_short_training_on_digits_uses_the_codebook_and_reconstructs():
    train, test = load("digits", "train"), load("digits", "test")
    spec = Preprocess(flatten=True)
    model = V.VQVAE(
        input_shape=(64,),
        arch="mlp",
        num_codes=32,
        code_dim=8,
        rule="ema",
        mlp_hidden=(128,),
        num_latents=4,
    )
    obj = V.Objective(model, codebook_init="kmeans++", restart_after=20)
    task = Task.from_loss(
        obj.init, obj.loss, optax.adam(3e-3), stateful=True, init_model_state=obj.init_model_state
    )

    def prepare(raw, rng):
        return preprocess(raw, rng, spec, train.image_max)

    engine = Engine(task, prepare)
    data = engine.place_resident({k: np.asarray(v) for k, v in train.features.items()})
    first = {k: v[:128] for k, v in train.features.items()}
    state = engine.place_state(
        jax.jit(lambda r: init_state(task, r, prepare(first, None)))(jax.random.PRNGKey(0))
    )
    state, metrics = engine.run_on_device(state, data, num_steps=300, batch_size=128, seed=0)
    params, ms = state.params["model"], state.model_state
    x = prepare(test.features, None)["x"]
    mse = float(jnp.mean(jnp.square(V.reconstruct(model, params, ms, x) - x)))
    idx = V.encode_indices(model, params, ms, x)
    # The mean image scores 0.073 and one code per position (a collapsed codebook) 0.07;
    # 4 positions x 32 codes trained for 300 steps reach about 0.02.
    assert mse < 0.035, mse
    assert float(V.code_usage(idx, 32)) >= 0.9
    assert float(codebook_perplexity(idx, 32)) >= 0.5 * 32
    assert np.all(np.isfinite(np.asarray(metrics["loss"])))


def test_unigram_prior_baseline_by_hand():
    """Two positions, K = 3: the add-one-smoothed training histograms, computed by hand."""
    from experiments.models.vqvae import unigram_bits_per_code

    train = np.array([[0, 1], [0, 2], [1, 2]])
    test = np.array([[0, 2], [2, 1]])
    # Position 0: counts (2, 1, 0) + 1 = (3, 2, 1) / 6; position 1: (0, 1, 2) + 1 = (1, 2, 3) / 6.
    p0 = np.array([3, 2, 1]) / 6
    p1 = np.array([1, 2, 3]) / 6
    expected = (-np.log2([p0[0], p0[2]]).mean() - np.log2([p1[2], p1[1]]).mean()) / 2
    assert unigram_bits_per_code(train, test, 3) == pytest.approx(expected, rel=1e-12)
