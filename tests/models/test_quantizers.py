"""The VQ-VAE's quantizers beside nearest-code VQ: cosine lookup, residual VQ, FSQ.

Oracles: brute-force searches in NumPy float64 (cosine argmax, sequential residual nearest
codes), the EMA rule computed by hand per level, finite differences, the global-batch update
as the oracle of the per-device update after the engine's reduction, and float32 indices as
the oracle of bfloat16 ones on well-separated inputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import vq_settings

from genjax import losses as L
from genjax.models import vqvae as V
from genjax.models.base import DataInfo
from genjax.nn import fsq, rvq
from genjax.train import Engine, init_state
from genjax.train.step import _reduce_across

# --------------------------------------------------------------------------------------------
# Cosine lookup.
# --------------------------------------------------------------------------------------------


def test_cosine_lookup_equals_a_brute_force_search():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(300, 5)) * rng.uniform(0.1, 10.0, size=(300, 1))
    codebook = rng.normal(size=(17, 5)) * rng.uniform(0.1, 10.0, size=(17, 1))
    z_q, idx = L.cosine_vector_quantize(z.astype(np.float32), codebook.astype(np.float32))
    cos = (z @ codebook.T) / np.linalg.norm(z, axis=1)[:, None] / np.linalg.norm(codebook, axis=1)
    np.testing.assert_array_equal(np.asarray(idx), np.argmax(cos, axis=1))
    unit = codebook / np.linalg.norm(codebook, axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(z_q), unit[np.argmax(cos, axis=1)], rtol=1e-6, atol=1e-7)
    # The gradient passes through the normalisation of z: d/dz sum(w * z / |z|).
    z0, w = jnp.asarray(z[:3], jnp.float32), jnp.asarray(rng.normal(size=(3, 5)), jnp.float32)
    g = jax.grad(lambda v: jnp.sum(w * L.cosine_vector_quantize(v, codebook)[0]))(z0)
    zn = z[:3] / np.linalg.norm(z[:3], axis=1, keepdims=True)
    wn = np.asarray(w, np.float64)
    expected = (wn - np.sum(wn * zn, 1, keepdims=True) * zn) / np.linalg.norm(z[:3], axis=1)[
        :, None
    ]
    np.testing.assert_allclose(np.asarray(g), expected, rtol=1e-4, atol=1e-6)


def test_vqvae_with_a_projected_cosine_codebook_looks_codes_up_by_cosine():
    config = _small(cosine=True, codebook_dim=2, restart_after=5)
    objective = config.objective(DataInfo(shape=(64,)))
    x = jax.random.uniform(jax.random.PRNGKey(0), (16, 64))
    state, _ = _train(objective.task(optax.adam(1e-3)), {"x": x}, 3)
    params, ms = state.params, state.model_state
    assert "project_in" in params["model"]["params"] and "project_out" in params["model"]["params"]
    codes = np.asarray(objective.codebook(params, ms), np.float64)
    assert codes.shape == (8, 2)
    np.testing.assert_allclose(np.linalg.norm(codes, axis=1), 1.0, rtol=1e-5)
    z = np.asarray(
        objective.model.apply(params["model"], x, method=V.VQVAE.lookup_inputs), np.float64
    )
    np.testing.assert_allclose(np.linalg.norm(z, axis=-1), 1.0, rtol=1e-5)
    expected = np.argmax(z @ codes.T, axis=-1)
    np.testing.assert_array_equal(np.asarray(objective.encode(params, ms, x)), expected)


# --------------------------------------------------------------------------------------------
# Residual VQ.
# --------------------------------------------------------------------------------------------


def _numpy_rvq(z, codebooks, active):
    residual, total, idx = z.astype(np.float64), np.zeros(z.shape), []
    for level, book in enumerate(codebooks.astype(np.float64)):
        k = np.argmin(((residual[:, None] - book[None]) ** 2).sum(-1), axis=1)
        idx.append(k)
        if level < active:
            total += book[k]
            residual = residual - book[k]
    return total, np.stack(idx, axis=-1)


@pytest.mark.parametrize("active", [1, 2, 3])
def test_rvq_reconstruction_is_the_sum_of_its_levels_codes(active):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(200, 4)).astype(np.float32)
    books = (rng.normal(size=(3, 16, 4)) * np.array([1.0, 0.4, 0.15])[:, None, None]).astype(
        np.float32
    )
    z_q_st, z_q, idx, residuals = rvq.residual_quantize(z, books, jnp.int32(active))
    total, expected_idx = _numpy_rvq(z, books, active)
    np.testing.assert_array_equal(np.asarray(idx)[:, :active], expected_idx[:, :active])
    np.testing.assert_allclose(np.asarray(z_q), total, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(z_q_st), total, rtol=1e-5, atol=1e-6)
    # The sum of the looked-up codes of the active levels, level by level.
    by_hand = sum(books[level][np.asarray(idx)[:, level]] for level in range(active))
    np.testing.assert_allclose(np.asarray(z_q), by_hand, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(residuals[0]), z)
    if active == 3:
        np.testing.assert_allclose(rvq.codes_from_indices(books, idx), total, rtol=1e-5, atol=1e-6)
        # More levels, smaller error (each level picks the code nearest its residual, and
        # the zero-free codebooks here never make it worse on these inputs).
        errs = [np.mean((z - _numpy_rvq(z, books, a)[0]) ** 2) for a in (1, 2, 3)]
        assert errs[0] > errs[1] > errs[2], errs
    # Straight-through: d z_q_st / d z is the identity.
    w = jnp.asarray(rng.normal(size=z.shape), jnp.float32)
    g = jax.grad(lambda v: jnp.sum(w * rvq.residual_quantize(v, books, active)[0]))(z)
    np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


def test_rvq_state_update_follows_the_ema_rule_level_by_level():
    N, K, d, decay = 3, 4, 2, 0.7
    rng = np.random.default_rng(2)
    z = rng.normal(size=(12, d)).astype(np.float32)
    books = rng.normal(size=(N, K, d)).astype(np.float32)
    _, _, idx, residuals = rvq.residual_quantize(z, books)
    state = V.CodebookState(
        cluster_size=jnp.full((N, K), 1.0 / K),
        embed_sum=jnp.asarray(books) / K,
        last_used=jnp.asarray(rng.integers(0, 3, size=(N, K)), jnp.int32),
        reservoir=None,
        step=jnp.array(4, jnp.int32),
        restarts=jnp.zeros((), jnp.int32),
        key=jax.random.PRNGKey(0),
        data_variance=jnp.ones(()),
    )
    update = jax.jit(lambda r, i, k: V.update_residual_state(state, r, i, k, 2, decay=decay))
    new, _ = update(residuals, idx, jax.random.PRNGKey(1))
    idx, res = np.asarray(idx), np.asarray(residuals, np.float64)
    for level in range(N):
        n = np.array([np.sum(idx[:, level] == k) for k in range(K)]) / len(z)
        m = np.stack([res[level][idx[:, level] == k].sum(0) for k in range(K)]) / len(z)
        old_n, old_s = np.full(K, 1.0 / K), books[level] / K
        lu = np.asarray(state.last_used[level])
        if level < 2:  # active: the EMA rule and last_used = step for the chosen codes
            exp_n, exp_s = decay * old_n + (1 - decay) * n, decay * old_s + (1 - decay) * m
            exp_lu = np.where(n > 0, 4, lu)
        else:  # dropped: unchanged statistics, codes do not age
            exp_n, exp_s, exp_lu = old_n, old_s, lu + 1
        np.testing.assert_allclose(new.cluster_size[level], exp_n, rtol=1e-6)
        np.testing.assert_allclose(new.embed_sum[level], exp_s, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(new.last_used[level], exp_lu)
    assert int(new.step) == 5


def test_sharded_rvq_update_after_the_engines_reduction_equals_the_global_batch_update():
    N, K, D, devices = 3, 8, 3, 4
    rng = np.random.default_rng(3)
    z = jnp.asarray(rng.normal(size=(devices * 6, D)).astype(np.float32))
    books = jnp.asarray(rng.normal(size=(N, K, D)).astype(np.float32) * [[[1.0]], [[0.5]], [[0.2]]])
    _, _, indices, residuals = rvq.residual_quantize(z, books)
    state = V.CodebookState(
        cluster_size=jnp.full((N, K), 1.0 / K),
        embed_sum=books / K,
        last_used=jnp.asarray(rng.integers(0, 5, size=(N, K)), jnp.int32),
        reservoir=jnp.stack([V.pack_vectors(r[:K], jnp.zeros((K,), jnp.int32)) for r in residuals]),
        step=jnp.array(6, jnp.int32),
        restarts=jnp.zeros((), jnp.int32),
        key=jax.random.PRNGKey(11),
        data_variance=jnp.ones(()),
    )
    kw = dict(decay=0.8, restart_after=3)
    active = jnp.int32(2)
    global_new, _ = jax.jit(lambda r, i, k: V.update_residual_state(state, r, i, k, active, **kw))(
        residuals, indices, jax.random.PRNGKey(2)
    )
    assert int(global_new.restarts) > 0  # the case exercises restarts

    def per_device(r_local, idx_local, key):
        new, _ = V.update_residual_state(state, r_local, idx_local, key, active, **kw)
        return _reduce_across(new, "data")

    keys = jax.random.split(jax.random.PRNGKey(5), devices)
    local_res = jnp.moveaxis(residuals.reshape(N, devices, -1, D), 1, 0)
    reduced = jax.jit(jax.vmap(per_device, axis_name="data"))(
        local_res, indices.reshape(devices, -1, N), keys
    )
    first = jax.tree.map(lambda a: a[0], reduced)
    for name in ("cluster_size", "embed_sum"):
        np.testing.assert_allclose(getattr(first, name), getattr(global_new, name), rtol=1e-5)
    for name in ("last_used", "step", "restarts", "key"):
        np.testing.assert_array_equal(getattr(first, name), getattr(global_new, name))
    for leaf in jax.tree.leaves(reduced):
        np.testing.assert_array_equal(leaf, jnp.broadcast_to(leaf[0], leaf.shape))


# --------------------------------------------------------------------------------------------
# bfloat16 activations, float32 distances.
# --------------------------------------------------------------------------------------------


def test_bfloat16_inputs_give_the_float32_indices_on_well_separated_inputs():
    rng = np.random.default_rng(4)
    books = rng.normal(size=(3, 32, 6)).astype(np.float32) * 4.0
    books[1:] *= 0.01  # later levels far finer than bfloat16's error on level 1's inputs
    pick = rng.integers(0, 32, size=500)
    z = books[0][pick] + rng.normal(size=(500, 6)).astype(np.float32) * 0.05
    z16 = jnp.asarray(z, jnp.bfloat16)
    z32 = z16.astype(jnp.float32)
    idx16 = L.vector_quantize(z16, books[0])[1]
    np.testing.assert_array_equal(idx16, L.vector_quantize(z32, books[0])[1])
    np.testing.assert_array_equal(idx16, pick)
    np.testing.assert_array_equal(
        L.cosine_vector_quantize(z16, books[0])[1], L.cosine_vector_quantize(z32, books[0])[1]
    )
    st16, q16, i16, _ = rvq.residual_quantize(z16, books)
    _, q32, i32, _ = rvq.residual_quantize(z32, books)
    assert st16.dtype == jnp.bfloat16 and q16.dtype == jnp.float32
    np.testing.assert_array_equal(i16, i32)
    np.testing.assert_array_equal(q16, q32)


@pytest.mark.parametrize(
    "kw",
    [dict(quantizer="fsq", fsq_levels=(8, 5, 5, 5)), dict(quantizer="rvq", num_quantizers=2)],
)
def test_each_quantizer_trains_in_bfloat16_without_a_non_finite_step(kw):
    x = jax.random.uniform(jax.random.PRNGKey(0), (32, 64))
    objective = _small(restart_after=3 if kw["quantizer"] == "rvq" else 0, **kw).objective(
        DataInfo(shape=(64,))
    )
    _, metrics = _train(objective.task(optax.adam(3e-3)), {"x": x}, 12, dtype="bfloat16")
    loss = np.asarray(metrics["loss"])
    assert np.all(np.isfinite(loss)) and loss[-3:].mean() < loss[:3].mean(), loss


# --------------------------------------------------------------------------------------------
# The VQ-VAE with each quantizer.
# --------------------------------------------------------------------------------------------


_small = vq_settings.small_config


def _train(task, batch, steps, seed=0, dtype="float32"):
    engine = Engine(task, compute_dtype=dtype)
    state = jax.jit(lambda r: init_state(task, r, batch))(jax.random.PRNGKey(seed))
    state = engine.place_state(state)
    stack = jax.tree.map(lambda a: jnp.broadcast_to(a, (steps, *a.shape)), batch)
    return engine.run(state, stack)


def test_fsq_vqvae_codes_are_grid_indices_and_need_no_codebook():
    x = jax.random.uniform(jax.random.PRNGKey(1), (16, 64))
    levels = (8, 5, 5, 5)
    objective = _small(quantizer="fsq", fsq_levels=levels).objective(DataInfo(shape=(64,)))
    # The prior's vocabulary is the grid (the prior itself is exercised with RVQ below).
    assert objective.prior_model.num_codes == 1000 and objective.prior_model.seq_len == 3
    state, metrics = _train(objective.task(optax.adam(1e-3)), {"x": x}, 3)
    params, ms = state.params, state.model_state
    assert ms.cluster_size is None and ms.reservoir is None
    assert float(np.max(np.abs(metrics["commitment_loss"]))) == 0.0
    codes = objective.encode(params, ms, x)
    # The oracle: the grid point of the projected encoder output, rounded channel by channel.
    z = objective.model.apply(params["model"], x, method=V.VQVAE.lookup_inputs)
    grid = np.asarray(fsq.indices_to_codes(jnp.arange(1000), levels))
    q = np.asarray(fsq.quantize(z, levels)).reshape(-1, 4)
    expected = np.argmin(((q[:, None] - grid[None]) ** 2).sum(-1), axis=1).reshape(codes.shape)
    np.testing.assert_array_equal(np.asarray(codes), expected)
    np.testing.assert_allclose(
        objective.decode(params, ms, codes), objective.reconstruct(params, ms, x), atol=1e-6
    )
    used = len(np.unique(np.asarray(codes)))
    stats = objective.code_statistics(codes)
    assert float(stats["code_usage"]) == pytest.approx(used / 1000)


def test_fsq_noise_substitution_reaches_the_decoder_in_training_only():
    x = jax.random.uniform(jax.random.PRNGKey(5), (16, 64))
    levels = (8, 6, 5)
    noisy = _small(quantizer="fsq", fsq_levels=levels, fsq_noise=1.0).objective(
        DataInfo(shape=(64,))
    )
    plain = _small(quantizer="fsq", fsq_levels=levels).objective(DataInfo(shape=(64,)))
    loss = noisy.loss_fn
    params = jax.jit(loss.init)(jax.random.PRNGKey(0), {"x": x})
    state = loss.init_model_state(jax.random.PRNGKey(1), {"x": x}, params)
    model = loss.model
    # The oracle: the decoder applied by hand to bound(z) + noise, the noise drawn as
    # noisy_quantize draws it from the key the loss splits off.
    rng = jax.random.PRNGKey(2)
    _, noise_rng = jax.random.split(rng)
    z = model.apply(params, x, method=V.VQVAE.lookup_inputs)
    seen = fsq.noisy_quantize(noise_rng, z, levels, 1.0)
    x_hat = model.apply(params, seen, method=V.VQVAE.decode_codes)
    mse = np.mean(np.square(np.asarray(x_hat) - np.asarray(x)))
    _, (metrics, _) = loss.loss(params, state, {"x": x}, rng)
    assert float(metrics["recon_mse"]) == pytest.approx(mse, rel=1e-5)
    # Another key, another loss; without noise the key does not matter.
    _, (other, _) = loss.loss(params, state, {"x": x}, jax.random.PRNGKey(3))
    assert float(other["recon_mse"]) != pytest.approx(mse, rel=1e-3)
    a = plain.loss_fn.loss(params, state, {"x": x}, rng)[1][0]["recon_mse"]
    b = plain.loss_fn.loss(params, state, {"x": x}, jax.random.PRNGKey(3))[1][0]["recon_mse"]
    assert float(a) == float(b)
    # Inference is the rounded code either way: the same parameters give the same code maps.
    np.testing.assert_array_equal(
        noisy.encode({"model": params}, state, x), plain.encode({"model": params}, state, x)
    )


def test_rvq_vqvae_stacks_its_levels_as_extra_prior_positions():
    x = jax.random.uniform(jax.random.PRNGKey(2), (16, 64))
    config = _small(quantizer="rvq", num_quantizers=3, restart_after=5, prior_steps=1)
    objective = config.objective(DataInfo(shape=(64,)))
    assert objective.model.code_map_shape() == (3, 3) and objective.prior_model.seq_len == 9
    state, _ = _train(objective.run_task(lambda s, lr: optax.adam(1e-3), 3), {"x": x}, 3)
    params, ms = state.params, state.model_state
    assert ms["vq"].cluster_size.shape == (3, 8) and ms["vq"].reservoir.shape == (3, 8, 4)
    codes = objective.encode(params, ms, x)
    assert codes.shape == (16, 3, 3)
    books = np.asarray(objective.codebook(params, ms))
    z = np.asarray(objective.model.apply(params["vqvae"], x, method=V.VQVAE.encode))
    total, expected = _numpy_rvq(z.reshape(-1, 4), books, 3)
    np.testing.assert_array_equal(np.asarray(codes).reshape(-1, 3), expected)
    # Decoding the stacked indices decodes the sum of the levels' codes.
    decoded = objective.model.apply(
        params["vqvae"], jnp.asarray(total.reshape(z.shape), jnp.float32), method=V.VQVAE.decode
    )
    np.testing.assert_allclose(objective.decode(params, ms, codes), decoded, rtol=1e-5, atol=1e-5)
    assert np.isfinite(float(objective.prior_bits_per_code(params, ms, codes)))


def test_rvq_initialises_each_level_on_the_residuals_of_the_levels_before():
    x = jax.random.uniform(jax.random.PRNGKey(3), (16, 64))
    loss = (
        _small(quantizer="rvq", num_quantizers=2, codebook_init="sample")
        .objective(DataInfo(shape=(64,)))
        .loss_fn
    )
    params = jax.jit(loss.init)(jax.random.PRNGKey(0), {"x": x})
    state = jax.jit(loss.init_model_state)(jax.random.PRNGKey(1), {"x": x}, params)
    z = np.asarray(loss.encoder_outputs(params, x), np.float64)
    books = np.asarray(state.embed_sum) * 8  # N = 1 / K at initialisation
    for row in books[0]:  # level 1: encoder outputs
        assert np.min(np.abs(z - row).max(1)) < 1e-5
    k = np.argmin(((z[:, None] - books[0][None]) ** 2).sum(-1), axis=1)
    residual = z - books[0][k]
    for row in books[1]:  # level 2: residuals after level 1
        assert np.min(np.abs(residual - row).max(1)) < 1e-5


@pytest.mark.parametrize(
    "changes, field",
    [
        (dict(quantizer="pq"), "quantizer"),
        (dict(fsq_levels=(8, 1)), "fsq_levels"),
        (dict(fsq_levels=()), "fsq_levels"),
        (dict(num_quantizers=0), "num_quantizers"),
        (dict(codebook_dim=-1), "codebook_dim"),
        (dict(quantizer="fsq", codebook_dim=3), "codebook_dim"),
        (dict(cosine="yes"), "cosine"),
        (dict(quantizer="rvq", cosine=True), "cosine"),
        (dict(quantizer_dropout=True), "quantizer_dropout"),
        (dict(quantizer="rvq", rule="loss", restart_after=0), "quantizer"),
        (dict(quantizer="fsq", fsq_noise=1.5), "fsq_noise"),
        (dict(fsq_noise=0.5), "fsq_noise"),
    ],
)
def test_each_quantizer_setting_raises_a_value_error_naming_its_field(changes, field):
    with pytest.raises(ValueError, match=rf"^VQVAEConfig\.{field}\b"):
        V.VQVAEConfig(**changes)


def test_fsq_ignores_the_codebook_settings_and_config_lists_become_tuples():
    c = V.VQVAEConfig(quantizer="fsq", fsq_levels=[8, 8], rule="loss", restart_after=100)
    assert c.fsq_levels == (8, 8)
    objective = c.objective(DataInfo(shape=(8, 8, 1)))
    assert objective.loss_fn.restart_after == 0 and objective.prior_model.num_codes == 64


_STRATEGIES_SCRIPT = """
import json, jax, jax.numpy as jnp, numpy as np, optax
from genjax.models import vqvae as V
from genjax.models.base import DataInfo
from genjax.train import STRATEGIES, Engine, init_state
config = V.VQVAEConfig(arch="mlp", num_codes=8, code_dim=4, mlp_hidden=(32,), num_latents=3,
    quantizer="rvq", num_quantizers=3, quantizer_dropout=True, restart_after=0, prior_steps=0)
task = config.objective(DataInfo(shape=(64,))).task(optax.adam(3e-3))
x = jax.random.uniform(jax.random.PRNGKey(0), (6, 32, 64))
host0 = jax.tree.map(np.asarray, init_state(task, jax.random.PRNGKey(1), {"x": x[0]}))
out, reference = {"devices": jax.device_count()}, None
for strategy in STRATEGIES:
    engine = Engine(task, strategy=strategy, donate=False)
    s = engine.place_state(host0)
    for i in range(6):
        s, _ = engine.step(s, engine.place_batch({"x": x[i]}))
    ms = engine.fetch_state(s).model_state
    if reference is None:
        reference = ms
    diffs = [float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
             for a, b in zip(jax.tree.leaves(ms), jax.tree.leaves(reference))]
    out[strategy] = max(diffs)
print(json.dumps(out))
"""


@pytest.mark.slow
def test_rvq_codebook_state_is_the_same_under_every_strategy_on_4_devices(run_on_cpu_devices):
    result = run_on_cpu_devices(["-c", _STRATEGIES_SCRIPT], 4)
    assert result.pop("devices") == 4
    assert set(result) == {"jit", "mesh", "shard_map", "pmap"}
    # Six updates with quantizer dropout: the levels' EMA statistics agree to float rounding
    # (means of shard means), last_used, the step and the shared key exactly. (Restarts draw
    # their reservoir per device; their decision is checked against the global batch above.)
    for strategy, diff in result.items():
        assert diff <= 1e-5, (strategy, diff)


@pytest.mark.parametrize("kw", [dict(), dict(arch="conv", hidden=8, res_hidden=4, code_dim=16)])
def test_fsq_initialisation_gives_unit_scale_inputs_that_spread_over_the_grid(kw):
    shape = (8, 8, 1) if kw else (64,)
    x = jax.random.uniform(jax.random.PRNGKey(4), (64, *shape))
    loss = (
        _small(quantizer="fsq", fsq_levels=(4, 4, 4, 4)[: 3 if kw else 4], **kw)
        .objective(DataInfo(shape=shape))
        .loss_fn
    )
    params = jax.jit(loss.init)(jax.random.PRNGKey(0), {"x": x})
    z = np.asarray(loss.encoder_outputs(params, x), np.float64)
    assert np.std(z) == pytest.approx(1.0, rel=1e-4)
    # Unit-scale inputs land on many grid points, not the one the init's tiny outputs share.
    levels = loss.model.config.fsq_levels
    idx = np.asarray(fsq.codes_to_indices(fsq.quantize(z, levels), levels))
    assert len(np.unique(idx)) > 8
