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
import vq_settings

from genjax.data import Preprocess, load, preprocess
from genjax.losses import codebook_perplexity
from genjax.models import vqvae as V
from genjax.models.base import DataInfo
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
    model = V.VQVAE(vq_settings.small_config(), (64,))
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
    config = vq_settings.small_config(
        num_codes=6, code_dim=3, rule=rule, mlp_hidden=(16,), num_latents=2
    )
    model = V.VQVAE(config, (64,))
    return V.VQVAELoss(model, **kw)


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
    model = V.VQVAE(vq_settings.small_config(num_codes=4, code_dim=2), (64,))
    with pytest.raises(ValueError, match=r"beta must be a finite number in .*got -0\.5"):
        V.VQVAELoss(model, beta=-0.5)
    with pytest.raises(ValueError, match=r"decay .*got 1\.0"):
        V.VQVAELoss(model, decay=1.0)
    with pytest.raises(ValueError, match="needs rule='ema'"):
        V.VQVAELoss(V.VQVAE(vq_settings.small_config(rule="loss"), (64,)), restart_after=10)
    with pytest.raises(ValueError, match="VQVAELoss: model must be a VQVAE"):
        V.VQVAELoss(vq_settings.small_config())
    with pytest.raises(ValueError, match="codebook_init must be one of"):
        V.VQVAELoss(model, codebook_init="zeros")


def test_config_rejects_bad_values_naming_the_field():
    with pytest.raises(ValueError, match=r"^VQVAEConfig\.num_codes \(K\) must be >= 2, got 1"):
        V.VQVAEConfig(num_codes=1)
    beta_message = r"^VQVAEConfig\.beta must be a finite number >= 0, got -1"
    with pytest.raises(ValueError, match=beta_message):
        V.VQVAEConfig(beta=-1.0)
    with pytest.raises(ValueError, match=r"needs VQVAEConfig\.rule=ema"):
        V.VQVAEConfig(rule="loss", restart_after=50)


def test_eval_settings_reject_bad_values():
    from experiments.models.vqvae import VQVAEEval
    from genjax.config import ConfigError

    with pytest.raises(ConfigError, match=r"eval\.compare holds unknown"):
        VQVAEEval(compare=("vanilla",))
    with pytest.raises(ConfigError, match=r"eval\.num_samples must be an int >= 1, got 0"):
        VQVAEEval(num_samples=0)
    with pytest.raises(ConfigError, match=r"eval\.temperature must be a finite number > 0"):
        VQVAEEval(temperature=0.0)
    assert VQVAEEval(compare=[]).compare == ()


@pytest.mark.parametrize(
    "changes, field",
    [
        (dict(arch="transformer"), "arch"),
        (dict(rule="kmeans"), "rule"),
        (dict(codebook_init="zeros"), "codebook_init"),
        (dict(num_codes=1), "num_codes"),
        (dict(num_codes=2.5), "num_codes"),
        (dict(code_dim=0), "code_dim"),
        (dict(hidden=1), "hidden"),  # conv: the decoder's last stage has hidden // 2 channels
        (dict(arch="mlp", hidden=0), "hidden"),
        (dict(num_stages=0), "num_stages"),
        (dict(num_res_blocks=-1), "num_res_blocks"),
        (dict(res_hidden=0), "res_hidden"),
        (dict(mlp_hidden=(32, 0)), "mlp_hidden"),
        (dict(num_latents=0), "num_latents"),
        (dict(beta=-0.5), "beta"),
        (dict(beta=float("inf")), "beta"),
        (dict(decay=1.0), "decay"),
        (dict(decay=-0.1), "decay"),
        (dict(epsilon=-1e-3), "epsilon"),
        (dict(restart_after=-1), "restart_after"),
        (dict(rule="loss", restart_after=10), "restart_after"),
        (dict(reservoir_size=-1), "reservoir_size"),
        (dict(prior_steps=-1), "prior_steps"),
        (dict(prior_width=0), "prior_width"),
        (dict(prior_depth=-1), "prior_depth"),
        (dict(prior_heads=0), "prior_heads"),
        (dict(prior_width=10, prior_heads=4), "prior_width"),
        (dict(prior_learning_rate=0.0), "prior_learning_rate"),
    ],
)
def test_each_config_rule_raises_a_value_error_naming_its_field(changes, field):
    with pytest.raises(ValueError, match=rf"^VQVAEConfig\.{field}\b"):
        V.VQVAEConfig(**changes)


def test_config_defaults_and_family():
    c = V.VQVAEConfig(mlp_hidden=[64, 32])
    assert c.family == "vqvae" and c.mlp_hidden == (64, 32)
    from genjax import models

    assert models.config_class("vqvae") is V.VQVAEConfig
    # The same fields and defaults as the experiment's model section always had.
    assert (c.num_codes, c.hidden, c.res_hidden, c.restart_after, c.prior_steps) == (
        64,
        32,
        16,
        100,
        2000,
    )


def test_objective_refuses_shapes_the_config_cannot_take():
    with pytest.raises(ValueError, match=r"^VQVAEConfig\.arch=conv needs images \[H, W, C\]"):
        V.VQVAEConfig().objective(DataInfo(shape=(64,)))
    with pytest.raises(ValueError, match=r"^VQVAEConfig\.num_stages: 3 stride-2 stage"):
        V.VQVAEConfig(num_stages=3).objective(DataInfo(shape=(28, 28, 1)))
    # MLP pairs take any shape; the conv pair takes 8 x 8 images with two stages.
    obj = V.VQVAEConfig(arch="mlp", num_latents=3).objective(DataInfo(shape=(5, 7)))
    assert obj.model.code_map_shape() == (3,) and obj.prior_model.seq_len == 3
    obj = V.VQVAEConfig().objective(DataInfo(shape=(8, 8, 1)))
    assert obj.model.code_map_shape() == (2, 2) and obj.prior_model.seq_len == 4


_small = vq_settings.small_config


def _digits_batch(n=128):
    train = load("digits", "train")
    raw = {k: np.asarray(v)[:n] for k, v in train.features.items()}
    return preprocess(raw, None, Preprocess(flatten=True), train.image_max)


def _train(task, batch, steps, seed=0):
    engine = Engine(task)
    state = jax.jit(lambda r: init_state(task, r, batch))(jax.random.PRNGKey(seed))
    state = engine.place_state(state)
    stack = jax.tree.map(lambda a: jnp.broadcast_to(a, (steps, *a.shape)), batch)
    return engine.run(state, stack)


def test_task_trains_the_vqvae_alone_and_its_loss_decreases():
    batch = _digits_batch()
    objective = _small(restart_after=20).objective(DataInfo(shape=(64,)))
    task = objective.task(optax.adam(3e-3))
    assert [p.name for p in task.players] == ["model"] and task.players[0].stateful
    state, metrics = _train(task, batch, 60)
    loss = np.asarray(metrics["loss"])
    assert np.all(np.isfinite(loss)) and loss[-10:].mean() < 0.5 * loss[:5].mean(), loss
    assert isinstance(state.model_state, V.CodebookState) and int(state.model_state.step) == 60
    # The same numbers as the loss object the task wraps.
    params, ms = state.params, state.model_state
    x = batch["x"][:4]
    np.testing.assert_array_equal(
        objective.reconstruct(params, ms, x), V.reconstruct(objective.model, params["model"], ms, x)
    )
    # A configuration with a prior phase needs the run's length: task() says where to go.
    with pytest.raises(ValueError, match=r"VQVAEConfig\.prior_steps=5.*run_task.*two_phase"):
        _small(prior_steps=5).objective(DataInfo(shape=(64,))).task(optax.adam(1e-3))
    # ... and a VQ-VAE without a prior does not sample.
    with pytest.raises(ValueError, match="no prior"):
        objective.sample(params, ms, jax.random.PRNGKey(0), 2)


def test_run_task_builds_the_two_phases_with_the_runs_optimizers():
    objective = _small(prior_steps=3, prior_learning_rate=0.05).objective(DataInfo(shape=(64,)))
    with pytest.raises(ValueError, match=r"^VQVAEConfig\.prior_steps \(3\).*steps \(3\)"):
        objective.run_task(lambda steps, lr: optax.adam(1e-3), 3)
    calls = []

    def make_optimizer(steps, learning_rate):
        calls.append((steps, learning_rate))
        return optax.sgd(0.1)

    task = objective.run_task(make_optimizer, 7)
    assert calls == [(4, None)]  # the VQ-VAE's phase: steps - prior_steps
    assert [p.name for p in task.players] == ["vqvae", "prior"]
    batch = _digits_batch(32)
    engine = Engine(task)
    state = engine.place_state(jax.jit(lambda r: init_state(task, r, batch))(jax.random.PRNGKey(0)))
    snapshots = [jax.tree.map(np.asarray, state.params)]
    for _ in range(7):
        state, metrics = engine.step(state, batch)
        snapshots.append(jax.tree.map(np.asarray, state.params))

    def moved(player, step):  # did update ``step`` (0-based) change the player's parameters?
        a, b = snapshots[step][player], snapshots[step + 1][player]
        pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        return any(not np.array_equal(u, v) for u, v in pairs)

    assert [moved("vqvae", s) for s in range(7)] == [True] * 4 + [False] * 3
    assert [moved("prior", s) for s in range(7)] == [False] * 4 + [True] * 3
    assert int(state.model_state["updates"]) == 7 and int(state.model_state["vq"].step) == 4
    assert float(metrics["vqvae/loss"]) == 0.0 and float(metrics["prior/bits_per_code"]) > 0
    # The documented optimizers: the same run as two_phase_task with the VQ-VAE's optimizer
    # for its 4 steps and the prior's Adam at prior_learning_rate, cosine-decayed over 3.
    prior_adam = optax.adam(optax.cosine_decay_schedule(0.05, 3))
    explicit = objective.two_phase_task(optax.sgd(0.1), prior_adam, 4)
    ref_engine = Engine(explicit)
    ref = ref_engine.place_state(
        jax.jit(lambda r: init_state(explicit, r, batch))(jax.random.PRNGKey(0))
    )
    for _ in range(7):
        ref, _ = ref_engine.step(ref, batch)
    for a, b in zip(jax.tree.leaves(ref.params), jax.tree.leaves(state.params), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="vq_steps must be an int >= 1, got 0"):
        objective.two_phase_task(optax.sgd(0.1), prior_adam, 0)


def test_inference_methods_return_the_right_shapes():
    x = _digits_batch(16)["x"]
    objective = _small(prior_steps=1).objective(DataInfo(shape=(64,)))
    assert objective.functions() == (
        "sample",
        "encode",
        "decode",
        "reconstruct",
        "sample_codes",
        "codebook",
        "prior_bits_per_code",
    )
    task = objective.run_task(lambda steps, lr: optax.adam(1e-3), 2)
    state, _ = _train(task, {"x": x}, 2)
    params, ms = state.params, state.model_state
    codes = objective.encode(params, ms, x)
    assert codes.shape == (16, 3) and codes.dtype == jnp.int32
    assert int(codes.min()) >= 0 and int(codes.max()) < 8
    assert objective.decode(params, ms, codes).shape == (16, 64)
    np.testing.assert_allclose(
        objective.reconstruct(params, ms, x), objective.decode(params, ms, codes), atol=1e-6
    )
    assert objective.codebook(params, ms).shape == (8, 4)
    sample = jax.jit(objective.sample, static_argnums=3, static_argnames="temperature")
    sample_codes = jax.jit(objective.sample_codes, static_argnums=3)
    rng = jax.random.PRNGKey(4)
    drawn = sample_codes(params, ms, rng, 5)
    assert drawn.shape == (5, 3)
    samples = sample(params, ms, rng, 5)
    assert samples.shape == (5, 64) and np.all(np.isfinite(np.asarray(samples)))
    # sample = decode(sample_codes), with the same key; colder is allowed.
    np.testing.assert_allclose(samples, objective.decode(params, ms, drawn), atol=1e-6)
    assert sample(params, ms, rng, 3, temperature=0.5).shape == (3, 64)
    assert 0 < float(objective.prior_bits_per_code(params, ms, codes)) < 10
    with pytest.raises(ValueError, match=r"decode_indices: indices must be \[B, 3\]"):
        objective.decode(params, ms, jnp.zeros((2, 4), jnp.int32))
    # The loss rule's codebook is a parameter; the one-player task's params work the same way.
    objective = _small(rule="loss").objective(DataInfo(shape=(64,)))
    state, _ = _train(objective.task(optax.adam(1e-3)), {"x": x}, 1)
    params, ms = state.params, state.model_state
    np.testing.assert_array_equal(
        objective.codebook(params, ms), params["model"]["params"]["quantizer"]["codebook"]
    )
    assert objective.decode(params, ms, objective.encode(params, ms, x)).shape == (16, 64)


# --------------------------------------------------------------------------------------------
# A short training on digits.
# --------------------------------------------------------------------------------------------


def _train_on_device(task, train, spec, steps):
    """``steps`` engine steps of ``task`` on the whole split resident on the device (batch
    128, seed 0); returns the state, the metrics and the preprocessing function."""

    def prepare(raw, rng):
        return preprocess(raw, rng, spec, train.image_max)

    engine = Engine(task, prepare)
    data = engine.place_resident({k: np.asarray(v) for k, v in train.features.items()})
    first = {k: v[:128] for k, v in train.features.items()}
    state = engine.place_state(
        jax.jit(lambda r: init_state(task, r, prepare(first, None)))(jax.random.PRNGKey(0))
    )
    state, metrics = engine.run_on_device(state, data, num_steps=steps, batch_size=128, seed=0)
    return state, metrics, prepare


@pytest.mark.slow
def test_short_training_on_digits_uses_the_codebook_and_reconstructs():
    train, test = load("digits", "train"), load("digits", "test")
    spec = Preprocess(flatten=True)
    config = vq_settings.small_config(num_codes=32, code_dim=8, mlp_hidden=(128,), num_latents=4)
    model = V.VQVAE(config, (64,))
    obj = V.VQVAELoss(model, codebook_init="kmeans++", restart_after=20)
    task = Task.from_loss(
        obj.init, obj.loss, optax.adam(3e-3), stateful=True, init_model_state=obj.init_model_state
    )

    state, metrics, prepare = _train_on_device(task, train, spec, steps=300)
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


# --------------------------------------------------------------------------------------------
# Through the experiment command.
# --------------------------------------------------------------------------------------------

_VQ = ["--model", "vqvae", "--dataset", "digits"]


@pytest.mark.parametrize(
    "setting, fragment",
    [
        ("model.prior_steps=0", "model.prior_steps must be >= 1, got 0"),
        ("train.steps=100", "train.steps (100) must exceed model.prior_steps (2000)"),
        ("model.beta=-1", "model.beta must be a finite number >= 0, got -1"),
        ("model.num_codes=1", "model.num_codes (K) must be >= 2, got 1"),
        ("model.rule=loss", "model.restart_after=100 needs model.rule=ema"),
        ("model.prior_heads=3", "model.prior_width (16) must be divisible by model.prior_heads"),
        ("data.flatten=true", "model.arch=conv needs images [H, W, C]"),
        ("model.num_stages=4", "model.num_stages: 4 stride-2 stage(s)"),
        ("eval.num_samples=0", "eval.num_samples must be an int >= 1, got 0"),
        ("eval.compare=plain,vanilla", "eval.compare holds unknown configurations ['vanilla']"),
        ("eval.temperature=0", "eval.temperature must be a finite number > 0"),
        ("model.quantizer=pq", "model.quantizer must be one of ('vq', 'fsq', 'rvq'), got 'pq'"),
        ("model.quantizer_dropout=true", "model.quantizer_dropout=true needs model.quantizer=rvq"),
    ],
)
def test_command_refuses_bad_vqvae_settings_in_one_line(setting, fragment, tmp_path, capsys):
    from experiments.train import main

    work = tmp_path / "run"
    code = main([*_VQ, "--workdir", str(work), "--set", setting, "--quiet"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert fragment in err[0], err[0]
    assert not work.exists()


@pytest.mark.slow
def test_short_run_through_the_command_reports_and_loads_back(tmp_path):
    import json

    import genjax
    from experiments.train import main

    work = tmp_path / "vqvae"
    settings = (
        "train.steps=40",
        "model.prior_steps=20",
        "train.eval_every=20",
        "train.checkpoint_every=20",
        "train.fuse_steps=10",
        "train.log_every=10",
        "eval.compare=plain",
        "eval.num_samples=20",
    )
    argv = [*_VQ, "--workdir", str(work), "--quiet"]
    for item in settings:
        argv += ["--set", item]
    assert main(argv) == 0
    summary = json.loads((work / "summary.json").read_text())
    m = summary["metrics"]
    assert summary["steps"] == 40
    assert {"recon_mse", "code_usage", "perplexity", "prior_bits_per_code"} <= set(m)
    table = ("recon_mse", "code_usage", "perplexity")
    assert {f"{v}_{k}" for v in ("ema_restart", "plain") for k in table} <= set(m)
    others = ("pca_quantized_recon_mse", "prior_sample_classes", "prior_unigram_bits_per_code")
    assert set(others) <= set(m)
    assert m["bits_per_image"] == 2 * 2 * 6  # a 2 x 2 map of K = 64 codes
    saved = json.loads((work / "config.json").read_text())
    assert saved["eval"] == {"compare": ["plain"], "num_samples": 20, "temperature": 1.0}
    assert saved["model_config"]["prior_steps"] == 20
    tests = [
        json.loads(line)
        for line in (work / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["split"] == "test"
    ]
    assert [t["step"] for t in tests] == [20, 40] and "prior_bits_per_code" in tests[-1]
    figures = {p.name for p in (work / "figures").glob("*.png")}
    assert {"reconstructions.png", "prior_samples.png", "comparison_code_usage.png"} <= figures

    run = genjax.load_run(work)
    assert isinstance(run.objective, V.VQVAEObjective) and sorted(run.params) == ["prior", "vqvae"]
    rng = jax.random.PRNGKey(0)
    samples = np.asarray(run.sample(rng, 4))
    assert samples.shape == (4, 8, 8, 1) and np.all(np.isfinite(samples))
    np.testing.assert_array_equal(
        samples, run.objective.sample(run.params, run.model_state, rng, 4)
    )
    x = np.zeros((3, 8, 8, 1), np.float32)
    codes = run.encode(x)
    assert codes.shape == (3, 2, 2)
    assert run.decode(codes).shape == run.reconstruct(x).shape == (3, 8, 8, 1)
    assert run.codebook().shape == (64, 16) and run.sample_codes(rng, 2).shape == (2, 2, 2)
    assert np.isfinite(float(run.prior_bits_per_code(codes)))


# --------------------------------------------------------------------------------------------
# The module holds its config; FSQ's LayerNorm; bfloat16 compute.
# --------------------------------------------------------------------------------------------


def test_module_holds_the_config_and_checks_what_the_data_add():
    config = _small()
    objective = config.objective(DataInfo(shape=(64,)))
    assert objective.model == V.VQVAE(config, (64,)) and objective.model.config is config
    x = jnp.zeros((2, 64))
    with pytest.raises(ValueError, match=r"^VQVAE\.config must be a VQVAEConfig, got FrozenDict"):
        V.VQVAE({"arch": "mlp"}, (64,)).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match=r"^VQVAE\.data_shape must be a non-empty tuple.*\(0,\)"):
        V.VQVAE(config, (0,)).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match=r"VQVAE\(arch='conv'\) needs images"):
        V.VQVAE(V.VQVAEConfig(), (64,)).init(jax.random.PRNGKey(0), x)


def _layer_norm(z, scale, bias, eps=1e-6):
    mean = z.mean(-1, keepdims=True)
    var = ((z - mean) ** 2).mean(-1, keepdims=True)
    return (z - mean) / np.sqrt(var + eps) * scale + bias


def test_fsq_lookup_inputs_are_layer_norm_then_projection_and_ignore_the_encoders_scale():
    objective = _small(quantizer="fsq", fsq_levels=(4, 4, 4)).objective(DataInfo(shape=(64,)))
    x = jax.random.uniform(jax.random.PRNGKey(0), (16, 64))
    params = jax.jit(objective.loss_fn.init)(jax.random.PRNGKey(1), {"x": x})
    model, p = objective.model, params["params"]
    z_e = np.asarray(model.apply(params, x, method=V.VQVAE.encode), np.float64)
    norm, proj = p["fsq_norm"], p["project_in"]
    # The oracle: LayerNorm over the 4 channels by hand, then the Dense layer, in float64.
    expected = _layer_norm(z_e, np.asarray(norm["scale"]), np.asarray(norm["bias"])) @ np.asarray(
        proj["kernel"], np.float64
    ) + np.asarray(proj["bias"], np.float64)
    got = np.asarray(model.apply(params, x, method=V.VQVAE.lookup_inputs))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # Ten times the encoder's last layer: the same quantizer inputs, hence the same codes.
    last = dict(p["enc_mlp"])
    last["dense_1"] = jax.tree.map(lambda a: 10 * a, last["dense_1"])
    scaled = {"params": {**p, "enc_mlp": last}}
    z10 = np.asarray(model.apply(scaled, x, method=V.VQVAE.lookup_inputs))
    np.testing.assert_allclose(z10, got, rtol=1e-4, atol=1e-5)
    # Without the norm there is no such layer, and the inputs scale with the encoder.
    plain = _small(quantizer="fsq", fsq_levels=(4, 4, 4), fsq_layer_norm=False)
    plain_obj = plain.objective(DataInfo(shape=(64,)))
    plain_params = jax.jit(plain_obj.loss_fn.init)(jax.random.PRNGKey(1), {"x": x})
    assert "fsq_norm" not in plain_params["params"]


def test_fsq_layer_norm_is_validated_and_old_fsq_configs_load_without_it():
    with pytest.raises(ValueError, match=r"VQVAEConfig\.fsq_layer_norm must be true or false"):
        V.VQVAEConfig(fsq_layer_norm="yes")
    assert V.VQVAEConfig.upgrade_saved({"quantizer": "fsq"})["fsq_layer_norm"] is False
    assert "fsq_layer_norm" not in V.VQVAEConfig.upgrade_saved({"quantizer": "vq"})
    assert V.VQVAEConfig.upgrade_saved({"quantizer": "fsq", "fsq_layer_norm": True}) == {
        "quantizer": "fsq",
        "fsq_layer_norm": True,
    }


def _eqns(jaxpr):
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, list | tuple) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _eqns(inner)


def _bf16(tree):
    return jax.tree.map(lambda a: a.astype(jnp.bfloat16) if a.dtype == jnp.float32 else a, tree)


@pytest.mark.parametrize("quantizer", ["vq", "rvq", "fsq"])
def test_bfloat16_compute_keeps_distances_statistics_and_losses_in_float32(quantizer):
    config = _small(
        quantizer=quantizer, restart_after=0 if quantizer == "fsq" else 5, num_quantizers=2
    )
    loss_fn = config.objective(DataInfo(shape=(64,))).loss_fn
    x = jax.random.uniform(jax.random.PRNGKey(0), (32, 64))
    params = jax.jit(loss_fn.init)(jax.random.PRNGKey(1), {"x": x})
    state = jax.jit(loss_fn.init_model_state)(jax.random.PRNGKey(2), {"x": x}, params)
    # What the engine does under compute_dtype=bfloat16: parameters and batch cast.
    pb, batch, rng = _bf16(params), {"x": x.astype(jnp.bfloat16)}, jax.random.PRNGKey(3)
    jaxpr = jax.make_jaxpr(loss_fn.loss)(pb, state, batch, rng).jaxpr
    argmins = [e for e in _eqns(jaxpr) if e.primitive.name == "argmin"]
    if quantizer == "fsq":
        assert not argmins  # no distances: rounding of the float32 bound
    else:  # every nearest-code search runs on float32 distances
        assert argmins and all(e.invars[0].aval.dtype == jnp.float32 for e in argmins)
    loss, (metrics, new) = jax.jit(loss_fn.loss)(pb, state, batch, rng)
    assert loss.dtype == jnp.float32
    assert all(v.dtype == jnp.float32 for v in metrics.values()), metrics
    floats = [a for a in jax.tree.leaves(new) if jnp.issubdtype(a.dtype, jnp.floating)]
    assert floats and all(a.dtype == jnp.float32 for a in floats)
    # The activations stay bfloat16: the decoder's input and output.
    cb = V._ema_arg(loss_fn.model, pb, state, loss_fn.epsilon)
    x_hat, z_e, q = loss_fn.model.apply(pb, batch["x"], cb)
    assert (x_hat.dtype, z_e.dtype, q.z_q_st.dtype) == (jnp.bfloat16,) * 3
    if quantizer != "vq":
        return
    # The EMA statistics against a float64 oracle on the same bfloat16 encoder outputs: an
    # accumulation in bfloat16 would be off by about 2^-9 relative.
    z = np.asarray(q.z, np.float64).reshape(-1, 4)
    codes = np.asarray(cb, np.float64)
    k = np.argmin(((z[:, None] - codes[None]) ** 2).sum(-1), axis=1)
    n = np.bincount(k, minlength=8) / len(z)
    m = np.stack([z[k == j].sum(0) for j in range(8)]) / len(z)
    d = loss_fn.decay
    np.testing.assert_allclose(
        new.cluster_size, d * np.asarray(state.cluster_size) + (1 - d) * n, rtol=1e-6
    )
    np.testing.assert_allclose(
        new.embed_sum, d * np.asarray(state.embed_sum) + (1 - d) * m, rtol=1e-5, atol=1e-8
    )
    # ... and the commitment loss against float64 on those outputs.
    z_q = codes[k].reshape(np.shape(q.z))
    expected = np.mean(((np.asarray(q.z, np.float64) - z_q) ** 2).sum((1, 2)) / 12)
    assert float(metrics["commitment_loss"]) == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow
def test_fsq_on_the_conv_digits_model_uses_its_grid():
    train, test = load("digits", "train"), load("digits", "test")
    spec = Preprocess()
    config = V.VQVAEConfig(quantizer="fsq", fsq_levels=(4, 4, 4), prior_steps=0)
    objective = config.objective(DataInfo(shape=(8, 8, 1)))
    steps = 600
    task = objective.task(optax.adam(optax.cosine_decay_schedule(1e-3, steps)))

    state, _, prepare = _train_on_device(task, train, spec, steps=steps)
    x = prepare(test.features, None)["x"]
    idx = objective.encode(state.params, state.model_state, x)
    mse = float(jnp.mean(jnp.square(objective.reconstruct(state.params, state.model_state, x) - x)))
    # Without the LayerNorm this model ends on one or a few codes (the mean image, 0.073).
    assert float(V.code_usage(idx, 64)) >= 0.8
    assert mse < 0.035, mse


def test_vq_bits_bf16_rows_by_hand():
    from experiments import vq_bits

    rows = {"vq": {"recon_mse": 0.02}, "rvq": {"recon_mse": 0.01}}
    bf16 = {
        "vq": {"recon_mse": 0.021, "skipped_steps": 0},
        "rvq": {"recon_mse": 0.009, "skipped_steps": 3},
    }
    table = vq_bits.bf16_rows(rows, bf16)
    assert table["vq"]["ratio"] == pytest.approx(1.05) and table["rvq"]["ratio"] == pytest.approx(
        0.9
    )
    assert table["rvq"]["nonfinite_steps"] == 3 and table["vq"]["recon_mse_bfloat16"] == 0.021
    md = vq_bits.bf16_markdown(table).splitlines()
    assert md[2] == "| vq | 0.02 | 0.021 | 1.050 | 0 |" and md[3].endswith("| 0.900 | 3 |")
    assert set(vq_bits.BF16) <= set(vq_bits.RUNS)


def test_vq_bits_seed_rows_by_hand():
    from experiments import vq_bits

    def m(mse, usage, perp, skipped=0):
        return {"recon_mse": mse, "code_usage": usage, "perplexity": perp, "skipped_steps": skipped}

    runs = {"fsq": [m(0.01, 0.9, 100.0), m(0.03, 1.0, 120.0)], "rvq": [m(0.02, 1.0, 7.0)] * 2}
    low = {"fsq": [m(0.011, 0.9, 99.0), m(0.033, 0.95, 118.0, skipped=2)]}
    table = vq_bits.seed_rows(runs, low)
    fsq = table["fsq"]
    # By hand: mean (0.01 + 0.03) / 2, sample std |0.03 - 0.01| / sqrt(2).
    assert fsq["recon_mse"]["mean"] == pytest.approx(0.02)
    assert fsq["recon_mse"]["std"] == pytest.approx(0.02 / 2**0.5)
    assert fsq["min_code_usage"] == 0.9 and fsq["seeds"] == 2
    assert fsq["bf16_ratios"] == pytest.approx([1.1, 1.1])
    assert fsq["bf16_ratio_of_means"] == pytest.approx(0.022 / 0.02)
    assert fsq["bf16_nonfinite_steps"] == 2
    assert table["rvq"]["recon_mse"]["std"] == 0.0 and "bf16_ratios" not in table["rvq"]
    md = vq_bits.seeds_markdown(table).splitlines()
    assert md[2] == (
        "| fsq | 2 | 0.0200 ± 0.0141 | 95.0% ± 7.1% (90.0%) | 110.0 ± 14.1 | 1.100 (1.100, 1.100) |"
    )
    assert md[3].endswith("| – |")


def test_vq_bits_rejects_a_seed_count_below_one(tmp_path, capsys):
    from experiments import vq_bits

    assert vq_bits.main(["--workdir", str(tmp_path), "--seeds", "0"]) == 2
    assert "--seeds must be >= 1" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
