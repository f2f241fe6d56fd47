"""Tests for genjax.models.cyclevae, against oracles (the speech experiment's are in
``tests/experiments/test_speech.py``).

Oracles: the whole cycle objective written out by hand in NumPy/SciPy (float64) from the
stored weights, term by term; chi-square tests of the target-domain draws; structural facts of
the gradient (what ``stop_gradient`` must cut); a scikit-learn classifier for a short training
run on digits.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.special
import scipy.stats

from genjax.models import cyclevae as cv
from genjax.models.base import DataInfo, single

K, D, Q, B = 3, 5, 2, 6


def _tiny(likelihood="gaussian", **kw):
    config = cv.CycleVAEConfig(
        latent_dim=Q,
        hidden=(4,),
        activation="tanh",
        embed_dim=3,
        likelihood=likelihood,
        variance="pixel",
        min_variance=0.05,
        **kw,
    )
    return cv.CycleVAE(config, (D,), K)


def _perturbed_params(model, seed=0):
    """Initial parameters with every leaf replaced by random values (so that biases, the
    embeddings and the learned variance all matter)."""
    params = cv.init(model, jax.random.PRNGKey(seed), {"x": jnp.zeros((1, D))})
    leaves, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(seed)
    new = [rng.normal(scale=0.7, size=np.shape(leaf)).astype(np.float32) for leaf in leaves]
    return jax.tree.unflatten(treedef, new)


# --------------------------------------------------------------------------------------------
# The objective, term by term, in NumPy
# --------------------------------------------------------------------------------------------


def _np(params):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), params)["params"]


def _mlp(p, h):
    n = len(p)
    for i in range(n):
        h = h @ p[f"dense_{i}"]["kernel"] + p[f"dense_{i}"]["bias"]
        if i < n - 1:
            h = np.tanh(h)
    return h


def _encode(p, x, s):
    h = _mlp(p["encoder"], np.concatenate([x, p["encoder_embed"]["embedding"][s]], axis=1))
    return h[:, :Q], h[:, Q:]


def _decode(p, z, c):
    return _mlp(p["decoder"], np.concatenate([z, p["decoder_embed"]["embedding"][c]], axis=1))


def _log_px(p, x, out, likelihood):
    if likelihood == "bernoulli":
        return np.sum(x * scipy.special.log_expit(out) + (1 - x) * scipy.special.log_expit(-out), 1)
    var = 0.05 + np.exp(p["raw_variance"])
    return np.sum(scipy.stats.norm.logpdf(x, loc=out, scale=np.sqrt(var)), axis=1)


def _mean(out, likelihood):
    return scipy.special.expit(out) if likelihood == "bernoulli" else out


def _kl(m, lv):
    return 0.5 * np.sum(np.exp(lv) + m**2 - 1.0 - lv, axis=1)


def _batch(likelihood, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(B, D)) if likelihood == "bernoulli" else rng.normal(size=(B, D))
    return {"x": x.astype(np.float32), "label": np.array([0, 1, 2, 2, 1, 0], np.int32)}


@pytest.mark.parametrize(("likelihood", "sampling"), [("gaussian", "others"), ("bernoulli", "any")])
def test_cycle_loss_is_the_sum_of_its_parts(likelihood, sampling):
    model = _tiny(likelihood)
    params = _perturbed_params(model)
    batch = _batch(likelihood)
    rng = jax.random.PRNGKey(3)
    weights = {"direct_weight": 0.7, "cycle_weight": 1.3, "beta": 0.5, "cycle_beta": 2.0}
    objective = jax.jit(functools.partial(cv.loss, model, target_sampling=sampling, **weights))
    loss, metrics = objective(params, batch, rng)

    # The documented randomness: split into (target, eps, eps_cycle) keys.
    k_t, k_e, k_c = jax.random.split(rng, 3)
    s = batch["label"]
    if sampling == "others":
        t = (s + 1 + np.asarray(jax.random.randint(k_t, (B,), 0, K - 1))) % K
        assert np.all(t != s)
    else:
        t = np.asarray(jax.random.randint(k_t, (B,), 0, K))
    eps = np.asarray(jax.random.normal(k_e, (B, Q)), np.float64)
    eps_c = np.asarray(jax.random.normal(k_c, (B, Q)), np.float64)

    p, x = _np(params), batch["x"].astype(np.float64)
    m, lv = _encode(p, x, s)
    z = m + np.exp(lv / 2) * eps
    log_px = _log_px(p, x, _decode(p, z, s), likelihood)
    x_hat = _mean(_decode(p, z, t), likelihood)
    m2, lv2 = _encode(p, x_hat, t)
    z2 = m2 + np.exp(lv2 / 2) * eps_c
    log_px2 = _log_px(p, x, _decode(p, z2, s), likelihood)
    kl, kl2 = _kl(m, lv), _kl(m2, lv2)
    direct = log_px - weights["beta"] * kl
    cycle = log_px2 - weights["cycle_beta"] * kl2
    expected = -np.mean(weights["direct_weight"] * direct + weights["cycle_weight"] * cycle)

    np.testing.assert_allclose(float(loss), expected, rtol=2e-5, atol=1e-5)
    for name, value in {
        "elbo": np.mean(log_px - kl),
        "log_px": np.mean(log_px),
        "kl": np.mean(kl),
        "cycle_elbo": np.mean(log_px2 - kl2),
        "cycle_log_px": np.mean(log_px2),
        "cycle_kl": np.mean(kl2),
    }.items():
        np.testing.assert_allclose(float(metrics[name]), value, rtol=2e-5, atol=1e-5, err_msg=name)

    # Cycle weight 0: the plain conditional VAE, the direct term alone (same eps key).
    objective0 = functools.partial(cv.loss, model, **{**weights, "cycle_weight": 0.0})
    loss0, metrics0 = jax.jit(objective0)(params, batch, rng)
    np.testing.assert_allclose(
        float(loss0), -np.mean(weights["direct_weight"] * direct), rtol=2e-5, atol=1e-5
    )
    assert "cycle_elbo" not in metrics0


def test_stop_gradient_cuts_only_the_path_through_the_conversion():
    # Sources all 0, targets all 1: the target code reaches the cycle term only through the
    # converted x_hat, so its decoder embedding gets a gradient from the cycle term exactly
    # when gradients pass through x_hat. Domain 2 is never used: zero gradient either way.
    model = _tiny("gaussian")
    params = _perturbed_params(model, seed=2)
    x = jnp.asarray(_batch("gaussian")["x"])
    s = jnp.zeros((B,), jnp.int32)
    t = jnp.ones((B,), jnp.int32)
    eps = jax.random.normal(jax.random.PRNGKey(0), (B, Q))
    eps_c = jax.random.normal(jax.random.PRNGKey(1), (B, Q))

    def cycle_term(params, stop):
        terms = cv.cycle_terms(model, params, x, s, t, eps, eps_c, stop_gradient=stop)
        return jnp.sum(terms["cycle_log_px"])

    grad = jax.jit(jax.grad(cycle_term), static_argnums=1)
    for stop in (False, True):
        g = grad(params, stop)["params"]["decoder_embed"]["embedding"]
        g = np.asarray(g)
        assert np.all(g[2] == 0)
        assert np.abs(g[0]).max() > 1e-3  # decode(z', s) always uses the source code
        if stop:
            assert np.all(g[1] == 0)
        else:
            assert np.abs(g[1]).max() > 1e-3


def test_objective_gradient_matches_finite_differences():
    # The cycle passes gradients through x_hat (sigmoid) and a second encoder pass; a central
    # difference in float64 along a random direction checks the whole chain.
    with jax.enable_x64(True):
        model = _tiny("bernoulli")
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), _perturbed_params(model))
        batch = {k: jnp.asarray(v) for k, v in _batch("bernoulli").items()}
        batch["x"] = batch["x"].astype(jnp.float64)
        rng = jax.random.PRNGKey(5)

        def f(p):
            return cv.loss(model, p, batch, rng, cycle_weight=1.5)[0]

        f = jax.jit(f)
        g = jax.jit(jax.grad(f))(params)
        rs = np.random.default_rng(0)
        direction = jax.tree.map(lambda a: jnp.asarray(rs.normal(size=a.shape)), params)
        h = 1e-6
        plus = jax.tree.map(lambda a, d: a + h * d, params, direction)
        minus = jax.tree.map(lambda a, d: a - h * d, params, direction)
        numeric = (float(f(plus)) - float(f(minus))) / (2 * h)
        analytic = sum(
            float(jnp.sum(a * d))
            for a, d in zip(jax.tree.leaves(g), jax.tree.leaves(direction), strict=True)
        )
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5)


@pytest.mark.parametrize("sampling", ["others", "any"])
def test_target_draws_are_uniform(sampling):
    n = 24000
    source = jnp.asarray(np.arange(n) % 4, jnp.int32)
    t = np.asarray(cv.draw_targets(jax.random.PRNGKey(0), source, 4, sampling))
    s = np.asarray(source)
    for src in range(4):
        counts = np.bincount(t[s == src], minlength=4)
        if sampling == "others":
            assert counts[src] == 0
            counts = np.delete(counts, src)
        assert scipy.stats.chisquare(counts).pvalue > 1e-3, (src, counts)


# --------------------------------------------------------------------------------------------
# convert: pure, jittable, vmappable; bad input
# --------------------------------------------------------------------------------------------


def test_convert_matches_numpy_and_is_jittable_and_vmappable_over_targets():
    model = _tiny("bernoulli")
    params = _perturbed_params(model, seed=4)
    x = _batch("bernoulli")["x"]
    source = np.array([0, 1, 2, 2, 1, 0], np.int32)
    p = _np(params)

    def oracle(target):
        m, _ = _encode(p, x.astype(np.float64), source)
        return scipy.special.expit(_decode(p, m, np.broadcast_to(target, (B,))))

    f = jax.jit(functools.partial(cv.convert, model))
    for target in range(K):
        np.testing.assert_allclose(f(params, x, source, target), oracle(target), atol=1e-5)
    all_targets = jax.vmap(f, in_axes=(None, None, None, 0))(params, x, source, jnp.arange(K))
    assert all_targets.shape == (K, B, D)
    for target in range(K):
        np.testing.assert_allclose(all_targets[target], oracle(target), atol=1e-5)
    # Per-example targets, and target == source is the reconstruction.
    mixed = np.array([2, 0, 1, 1, 2, 0], np.int32)
    np.testing.assert_allclose(
        cv.convert(model, params, x, source, mixed),
        np.stack([oracle(mixed[i])[i] for i in range(B)]),
        atol=1e-5,
    )
    np.testing.assert_allclose(
        cv.reconstruct(model, params, x, source),
        np.stack([oracle(source[i])[i] for i in range(B)]),
        atol=1e-5,
    )
    # The round trip is two conversions.
    there = np.asarray(cv.convert(model, params, x, source, mixed))
    m, _ = _encode(p, there.astype(np.float64), mixed)
    back = scipy.special.expit(_decode(p, m, source))
    np.testing.assert_allclose(
        cv.cycle_reconstruct(model, params, x, source, mixed), back, atol=1e-5
    )


def test_conv_architecture_shapes_and_vmapped_conversion():
    config = cv.CycleVAEConfig(
        latent_dim=3, architecture="conv", hidden=(4,), likelihood="bernoulli"
    )
    model = cv.CycleVAE(config, (8, 8, 1), 4)
    params = cv.init(model, jax.random.PRNGKey(0), {"x": jnp.zeros((2, 8, 8, 1))})
    x = jax.random.uniform(jax.random.PRNGKey(1), (5, 8, 8, 1))
    mean, log_var = cv.encode(model, params, x, 1)
    assert mean.shape == log_var.shape == (5, 3)
    f = jax.jit(functools.partial(cv.convert, model))
    out = jax.vmap(f, in_axes=(None, None, None, 0))(params, x, 1, jnp.arange(4))
    assert out.shape == (4, 5, 8, 8, 1)
    assert np.all((np.asarray(out) > 0) & (np.asarray(out) < 1))
    # The decoder does use the code: different targets, different images.
    assert np.abs(np.asarray(out[0] - out[3])).max() > 1e-4
    batch = {"x": x, "label": jnp.array([0, 1, 2, 3, 0])}
    loss, metrics = jax.jit(functools.partial(cv.loss, model))(params, batch, jax.random.PRNGKey(2))
    assert np.isfinite(float(loss)) and set(metrics) >= {"elbo", "cycle_elbo", "cycle_kl"}


def test_bad_input_is_rejected_with_named_arguments():
    model = _tiny("bernoulli")
    params = _perturbed_params(model)
    x = _batch("bernoulli")["x"]
    with pytest.raises(ValueError, match=r"target must be domain indices in \[0, 3\).*\[3, 3\]"):
        cv.convert(model, params, x, 0, 3)
    with pytest.raises(ValueError, match=r"source must be domain indices.*\[-1, 0\]"):
        cv.convert(model, params, x, np.array([0, 0, 0, 0, 0, -1]), 1)
    with pytest.raises(ValueError, match=r"x must have shape \[B, \*data_shape\] = \[B, 5\]"):
        cv.convert(model, params, np.zeros((B, 7), np.float32), 0, 1)
    with pytest.raises(ValueError, match=r"target must be a scalar or have shape \[B\]"):
        cv.convert(model, params, x, 0, np.zeros(4, np.int32))
    with pytest.raises(ValueError, match="integer domain indices"):
        cv.convert(model, params, x, 0, 1.0)
    with pytest.raises(ValueError, match="num_domains must be an int >= 2"):
        cv.check_model(cv.CycleVAE(cv.CycleVAEConfig(latent_dim=2), (D,), 1))
    with pytest.raises(ValueError, match=r'batch\["label"\]'):
        cv.loss(model, params, {"x": x}, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"batch\[\"label\"\] must be domain indices"):
        cv.loss(model, params, {"x": x, "label": np.full(B, 5)}, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="cycle_weight must be a finite number >= 0"):
        cv.loss(model, params, _batch("bernoulli"), jax.random.PRNGKey(0), cycle_weight=-1.0)
    with pytest.raises(ValueError, match="in \\[0, 1\\] for the Bernoulli"):
        cv.elbo(model, params, x + 2.0, 0, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="needs images"):
        conv = cv.CycleVAEConfig(latent_dim=2, architecture="conv")
        cv.check_model(cv.CycleVAE(conv, (64,), 2))
    # Under jit a traced out-of-range index cannot be checked: the output is NaN, not a
    # silently wrong domain (documented behaviour).
    f = jax.jit(functools.partial(cv.convert, model))
    assert np.all(np.isnan(np.asarray(f(params, x, 0, jnp.int32(7)))))
    # The shape check holds under jit too (trace time).
    with pytest.raises(ValueError, match="data_shape"):
        f(params, np.zeros((2, 4), np.float32), 0, 1)


# --------------------------------------------------------------------------------------------
# The contract: CycleVAEConfig, config.objective(info), CycleVAEObjective
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("architecture", "linear", r"one of \('mlp', 'conv'\), got 'linear'"),
        ("hidden", (), r"a non-empty tuple of positive ints, got \(\)"),
        ("hidden", (4, -1), r"a tuple \(hashable, not a list\) of positive ints, got \(4, -1\)"),
        ("latent_dim", 0, r"an int >= 1, got 0"),
        ("activation", "swish2", r"one of .*'relu'.*got 'swish2'"),
        ("embed_dim", 0, r"an int >= 1, got 0"),
        ("condition_encoder", "yes", r"true or false, got 'yes'"),
        ("likelihood", "poisson", r"one of \('bernoulli', 'gaussian'\), got 'poisson'"),
        ("variance", "diag", r"one of \('fixed', 'isotropic', 'pixel'\), got 'diag'"),
        ("fixed_variance", 0.0, r"a finite number > 0, got 0.0"),
        ("min_variance", float("inf"), r"a finite number > 0, got inf"),
        ("kernel_size", 0, r"an int >= 1, got 0"),
        ("direct_weight", -1.0, r"a finite number >= 0, got -1.0"),
        ("cycle_weight", -0.5, r"a finite number >= 0, got -0.5"),
        ("beta", float("nan"), r"a finite number >= 0, got nan"),
        ("cycle_beta", -2.0, r"a finite number >= 0, got -2.0"),
        ("target_sampling", "all", r"one of \('others', 'any'\), got 'all'"),
        ("stop_gradient", 1, r"true or false, got 1"),
    ],
)
def test_config_validation_names_the_field(field, value, message):
    with pytest.raises(ValueError, match=rf"^CycleVAEConfig\.{field} must be {message}"):
        cv.CycleVAEConfig(**{field: value})


def test_config_defaults_replace_and_saved_keys():
    config = cv.CycleVAEConfig()
    assert config.family == "cyclevae" and config.cycle_weight == 4.0
    assert dataclasses.replace(config, cycle_weight=0.0).cycle_weight == 0.0
    assert cv.CycleVAEConfig(cycle_beta=None).cycle_beta is None
    saved = {"latent_dim": 3, "compare": False, "classifier_steps": 5, "elbo_samples": 2}
    assert cv.CycleVAEConfig(**cv.CycleVAEConfig.upgrade_saved(saved)).latent_dim == 3


def test_objective_refuses_data_the_config_cannot_take():
    config = cv.CycleVAEConfig(hidden=(8,), latent_dim=2)
    with pytest.raises(ValueError, match=r"labelled data .* 'frames' has no labels"):
        config.objective(DataInfo(shape=(D,), name="frames"))
    with pytest.raises(ValueError, match=r"at least two domains .* 'one' has 1 class"):
        config.objective(DataInfo(shape=(D,), num_classes=1, name="one"))
    conv = cv.CycleVAEConfig(architecture="conv", hidden=(4,))
    with pytest.raises(ValueError, match=r"^CycleVAEConfig\.architecture='conv' needs images"):
        conv.objective(DataInfo(shape=(64,), num_classes=10))
    deep = cv.CycleVAEConfig(architecture="conv", hidden=(4, 4, 4, 4))
    with pytest.raises(ValueError, match=r"^CycleVAEConfig\.hidden=.*multiples of 2\^4 = 16"):
        deep.objective(DataInfo(shape=(8, 8, 1), num_classes=10))
    bernoulli = cv.CycleVAEConfig(likelihood="bernoulli")
    raw = DataInfo(shape=(D,), num_classes=K, unit_interval=False)
    with pytest.raises(ValueError, match=r"^CycleVAEConfig\.likelihood='bernoulli' needs inputs"):
        bernoulli.objective(raw)
    objective = config.objective(raw)  # the Gaussian likelihood takes any real features
    assert (objective.model.num_domains, objective.model.data_shape) == (K, (D,))


def test_objective_task_trains_and_serves_the_model():
    rng = np.random.default_rng(0)
    # Three domains: the same 5-d content, shifted by a per-domain offset.
    labels = rng.integers(0, K, 512).astype(np.int32)
    x = (rng.normal(size=(512, D)) + 3.0 * np.eye(K, D)[labels]).astype(np.float32)
    config = cv.CycleVAEConfig(
        hidden=(32,), latent_dim=Q, embed_dim=4, variance="pixel", cycle_weight=1.0
    )
    objective = config.objective(DataInfo(shape=(D,), num_classes=K))
    assert not objective.stateful and objective.family == "cyclevae"
    assert objective.functions() == (
        *("sample", "encode", "decode", "reconstruct", "convert"),
        *("posterior", "cycle_reconstruct", "elbo"),
    )
    batch, key = {"x": jnp.asarray(x[:8]), "label": jnp.asarray(labels[:8])}, jax.random.PRNGKey(2)
    params = objective.init(jax.random.PRNGKey(1), batch)
    got, metrics = objective.loss(params, batch, key)
    expected, _ = cv.loss(objective.model, params, batch, key, cycle_weight=1.0)
    assert float(got) == float(expected) and "cycle_elbo" in metrics

    from genjax.train import Engine, init_state

    engine = Engine(objective.task(optax.adam(3e-3)))
    example = {"x": x[:2], "label": labels[:2]}
    state = engine.place_state(init_state(engine.task, jax.random.PRNGKey(0), example))
    data = engine.place_resident({"x": jnp.asarray(x), "label": jnp.asarray(labels)})
    state, metrics = engine.run_on_device(state, data, num_steps=200, batch_size=64, seed=0)
    loss = np.asarray(metrics["loss"])
    assert np.isfinite(loss).all() and loss[-20:].mean() < loss[:20].mean() - 1.0
    p, ms = state.params, state.model_state
    draws = objective.sample(p, ms, jax.random.PRNGKey(0), 6)
    assert draws.shape == (6, D)
    np.testing.assert_allclose(
        draws, cv.sample(objective.model, single(p), jax.random.PRNGKey(0), 6, np.arange(6) % K)
    )
    assert objective.sample(p, ms, jax.random.PRNGKey(0), 4, 2, mean=False).shape == (4, D)
    z = objective.encode(p, ms, x[:5], labels[:5])
    assert z.shape == (5, Q)
    np.testing.assert_array_equal(z, objective.posterior(p, ms, x[:5], labels[:5])[0])
    assert objective.decode(p, ms, z, 1).shape == (5, D)
    np.testing.assert_allclose(
        objective.reconstruct(p, ms, x[:5], labels[:5]), objective.decode(p, ms, z, labels[:5])
    )
    converted = objective.convert(p, ms, x[:5], labels[:5], 0)
    assert converted.shape == (5, D)
    assert objective.cycle_reconstruct(p, ms, x[:5], labels[:5], 0).shape == (5, D)
    assert objective.elbo(p, ms, x[:5], labels[:5], jax.random.PRNGKey(0)).shape == (5,)
    # The learned conversion moves the features towards the target domain's offset.
    assert np.mean(np.asarray(converted)[:, 0]) > np.mean(x[:5][labels[:5] != 0][:, 0]) + 1.0


# --------------------------------------------------------------------------------------------
# A short training run on digits
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_short_digits_training_converts_to_the_target_class():
    # 400 steps of the experiment's model (seed 0 reaches 96%); a decoder that ignored the code
    # would convert at chance (~10%), one that copied the input would score ~0 on other
    # classes, and the same model without the cycle stays well below 85% this early.
    import optax
    from sklearn.linear_model import LogisticRegression

    from genjax.data import Preprocess, load, preprocess
    from genjax.train import Engine, init_state

    def split(name):
        d = load("digits", name)
        b = preprocess(d.get(np.arange(d.num_examples)), None, Preprocess(flatten=True), 16)
        return np.asarray(b["x"]), np.asarray(b["label"])

    (x_tr, y_tr), (x_te, y_te) = split("train"), split("test")
    # The library's default config: q = 8 and a Gaussian of fixed variance 0.01, with the
    # loss's default weights and cycle_weight=4.
    objective = cv.CycleVAEConfig().objective(DataInfo(shape=(64,), num_classes=10))
    model = objective.model
    c = model.config
    assert (model.data_shape, model.num_domains) == ((64,), 10)
    assert (c.latent_dim, c.likelihood, c.variance, c.fixed_variance) == (
        8,
        "gaussian",
        "fixed",
        0.01,
    )
    assert (c.direct_weight, c.cycle_weight, c.beta) == (1.0, 4.0, 1.0)
    task = objective.task(optax.adam(1e-3))
    engine = Engine(task)
    example = {"x": x_tr[:2], "label": y_tr[:2]}
    state = engine.place_state(
        jax.tree.map(np.asarray, init_state(task, jax.random.PRNGKey(0), example))
    )
    data = engine.place_resident({"x": jnp.asarray(x_tr), "label": jnp.asarray(y_tr)})
    state, metrics = engine.run_on_device(state, data, num_steps=400, batch_size=128, seed=0)
    assert np.isfinite(np.asarray(metrics["loss"])).all()
    params = state.params["model"]

    clf = LogisticRegression(max_iter=2000).fit(x_tr, y_tr)
    assert clf.score(x_te, y_te) > 0.9
    f = jax.jit(jax.vmap(functools.partial(cv.convert, model), in_axes=(None,) * 3 + (0,)))
    out = np.asarray(f(params, x_te, y_te, jnp.arange(10)))
    pred = clf.predict(out.reshape(-1, 64)).reshape(10, -1)
    other = np.arange(10)[:, None] != y_te[None, :]
    accuracy = np.mean((pred == np.arange(10)[:, None])[other])
    assert accuracy > 0.85, accuracy
    # The latent carries the writer's style: reconstructions beat the class-mean image.
    means = np.stack([x_tr[y_tr == c].mean(0) for c in range(10)])
    recon = np.asarray(cv.reconstruct(model, params, x_te, y_te))
    assert np.mean((recon - x_te) ** 2) < 0.7 * np.mean((means[y_te] - x_te) ** 2)
