"""Tests for genjax.models.vae and the shared blocks of genjax.nn, against independent oracles.

Oracles: hand-written NumPy forward passes, scipy's normal log-densities (Monte Carlo KL),
the PPCA closed form (a linear VAE's optimal ELBO is the maximum PPCA log-likelihood), the
exact linear-Gaussian ELBO written out in NumPy, hand-computed warm-up schedules, and the
independent-Bernoulli baseline (which a VAE that ignores z cannot beat).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats

from genjax import nn as gnn
from genjax.data import Preprocess, load, preprocess
from genjax.eval import baselines, iwae_log_likelihood
from genjax.models import ppca, vae
from genjax.models.base import DataInfo
from genjax.train import Engine, Task, init_state


def _digits(split: str, binarize: str) -> np.ndarray:
    d = load("digits", split)
    raw = d.get(np.arange(d.num_examples))
    spec = Preprocess(binarize=binarize, flatten=True)
    return np.asarray(preprocess(raw, None, spec, d.image_max)["x"])


def _module(data_shape, **fields) -> vae.VAE:
    """The VAE module of a ``VAEConfig`` with ``fields``: ReLU and an initial variance of 1
    unless given (the values these tests were written for)."""
    config = vae.VAEConfig(**{"activation": "relu", "init_variance": 1.0, **fields})
    return vae.VAE(config, tuple(data_shape))


def _train(task, x, steps, batch_size, seed=0):
    """Engine.run_on_device for ``steps`` steps; returns the final state and metrics [steps]."""
    engine = Engine(task)
    host = jax.tree.map(np.asarray, init_state(task, jax.random.PRNGKey(seed), {"x": x[:2]}))
    state = engine.place_state(host)
    data = engine.place_resident({"x": jnp.asarray(x)})
    return engine.run_on_device(state, data, num_steps=steps, batch_size=batch_size, seed=seed)


# --------------------------------------------------------------------------------------------
# genjax.nn building blocks
# --------------------------------------------------------------------------------------------


def test_mlp_matches_numpy_forward_pass():
    mlp = gnn.MLP((5, 3), activation="tanh")
    x = np.random.default_rng(0).normal(size=(4, 7)).astype(np.float32)
    params = jax.jit(mlp.init)(jax.random.PRNGKey(0), x)["params"]
    h = np.tanh(x @ np.asarray(params["dense_0"]["kernel"]) + np.asarray(params["dense_0"]["bias"]))
    expected = h @ np.asarray(params["dense_1"]["kernel"]) + np.asarray(params["dense_1"]["bias"])
    np.testing.assert_allclose(mlp.apply({"params": params}, x), expected, rtol=1e-5, atol=1e-5)


def test_conv_encoder_stage_matches_numpy_strided_correlation():
    # One stage, 3x3 kernel, stride 2, SAME padding on a 6x6 image: XLA pads 0 before and 1
    # after (total padding 1), so output (i, j) sees input rows 2i..2i+2 and columns 2j..2j+2.
    enc = gnn.ConvEncoder(features=(2,), kernel_size=3, activation="identity")
    x = np.random.default_rng(1).normal(size=(1, 6, 6, 3)).astype(np.float32)
    params = jax.jit(enc.init)(jax.random.PRNGKey(0), x)["params"]["conv_0"]
    k, b = np.asarray(params["kernel"]), np.asarray(params["bias"])
    padded = np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
    expected = np.zeros((1, 3, 3, 2), np.float32)
    for i in range(3):
        for j in range(3):
            patch = padded[0, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3, :]
            expected[0, i, j] = np.einsum("hwc,hwco->o", patch, k) + b
    got = jax.jit(enc.apply)({"params": {"conv_0": params}}, x)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("shape", "stages", "code_size"),
    [((8, 8, 1), 2, (2, 2)), ((28, 28, 1), 2, (7, 7)), ((32, 32, 3), 3, (4, 4))],
)
def test_conv_stacks_fit_the_library_image_sizes(shape, stages, code_size):
    # Shapes only: traced with jax.eval_shape, nothing is compiled.
    rng = jax.random.PRNGKey(0)
    x = jax.ShapeDtypeStruct((2, *shape), jnp.float32)
    enc = gnn.ConvEncoder(features=(4,) * stages)
    h = jax.eval_shape(enc.apply, jax.eval_shape(enc.init, rng, x), x)
    assert h.shape == (2, *code_size, 4)
    dec = gnn.ConvDecoder(image_shape=shape, features=(4,) * stages, output_channels=5)
    assert dec.start_size == code_size
    for z in (jax.ShapeDtypeStruct((2, 3), jnp.float32), h):  # a latent vector, a feature map
        out = jax.eval_shape(dec.apply, jax.eval_shape(dec.init, rng, z), z)
        assert out.shape == (2, *shape[:2], 5)
    model = _module(shape, latent_dim=3, architecture="conv", hidden=(4,) * stages)
    variables = jax.eval_shape(model.init, rng, x)
    mean, log_var = jax.eval_shape(
        functools.partial(model.apply, method=vae.VAE.encode), variables, x
    )
    assert mean.shape == log_var.shape == (2, 3)


def test_blocks_reject_bad_configurations():
    with pytest.raises(ValueError, match=r"multiples of 2\^3 = 8.*\(28, 28, 1\)"):
        gnn.ConvDecoder(image_shape=(28, 28, 1), features=(4, 4, 4)).init(
            jax.random.PRNGKey(0), jnp.zeros((1, 3))
        )
    with pytest.raises(ValueError, match=r"feature-map input must be \[B, 2, 2, c\]"):
        gnn.ConvDecoder(image_shape=(8, 8, 1), features=(4, 4)).init(
            jax.random.PRNGKey(0), jnp.zeros((1, 3, 3, 4))
        )
    with pytest.raises(ValueError, match=r"ConvEncoder input must be images \[B, H, W, C\]"):
        gnn.ConvEncoder().init(jax.random.PRNGKey(0), jnp.zeros((2, 64)))
    with pytest.raises(ValueError, match=r"MLP.activation must be one of .* got 'swish2'"):
        gnn.MLP((3,), activation="swish2").init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"ConvEncoder.norm must be one of"):
        gnn.ConvEncoder(norm="batch").init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))


# --------------------------------------------------------------------------------------------
# Bad input to the VAE
# --------------------------------------------------------------------------------------------


def test_vae_rejects_bad_input():
    good = _module((64,), latent_dim=2, hidden=(8,))
    params = vae.init(good, jax.random.PRNGKey(0), {"x": jnp.zeros((1, 64))})
    with pytest.raises(ValueError, match=r"latent_dim must be an int >= 1, got 0"):
        vae.init(_module((64,), latent_dim=0), jax.random.PRNGKey(0), {"x": jnp.zeros((1, 64))})
    x = np.full((3, 64), 0.5, np.float32)
    x[1, 5] = 16.0  # raw digits pixel, not scaled
    with pytest.raises(
        ValueError, match=r"\[0, 1\] for the Bernoulli likelihood, got values in \[0.5, 16\]"
    ):
        vae.elbo(good, params, x, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"x must have shape \[B, \*data_shape\] = \[B, 64\]"):
        vae.encode(good, params, np.zeros((3, 8, 8, 1)))
    conv = _module((28, 28, 1), latent_dim=2, architecture="conv", hidden=(4, 4, 4))
    with pytest.raises(ValueError, match=r"multiples of 2\^3 = 8, got an image of shape"):
        vae.init(conv, jax.random.PRNGKey(0), {"x": jnp.zeros((1, 28, 28, 1))})
    flat_conv = _module((64,), latent_dim=2, architecture="conv")
    with pytest.raises(ValueError, match=r"conv'\) needs images, data_shape = \(H, W, C\)"):
        vae.init(flat_conv, jax.random.PRNGKey(0), {"x": jnp.zeros((1, 64))})
    with pytest.raises(ValueError, match=r"num_samples must be an int >= 1, got 0"):
        vae.elbo(good, params, x[:1] * 0, jax.random.PRNGKey(0), num_samples=0)


@pytest.mark.parametrize(
    ("architecture", "shape", "likelihood", "variance"),
    [
        ("mlp", (8, 8, 1), "gaussian", "pixel"),
        ("mlp", (64,), "bernoulli", "isotropic"),
        ("mlp", (4, 4, 3), "gaussian", "fixed"),
        ("linear", (6,), "gaussian", "isotropic"),
    ],
)
def test_likelihood_matches_scipy(architecture, shape, likelihood, variance):
    model = _module(
        shape,
        latent_dim=3,
        architecture=architecture,
        hidden=(4, 4) if architecture == "conv" else (16,),
        likelihood=likelihood,
        variance=variance,
        fixed_variance=0.3,
    )
    params = vae.init(model, jax.random.PRNGKey(0), {"x": jnp.zeros((1, *shape))})
    rng = np.random.default_rng(2)
    x = rng.random((2, *shape)).astype(np.float32)
    if likelihood == "bernoulli":
        x = (x > 0.5).astype(np.float32)
    z = rng.normal(size=(2, 3)).astype(np.float32)
    got = np.asarray(vae.log_px_given_z(model, params, x, z))
    decode = jax.jit(functools.partial(model.apply, method=vae.VAE.decode))
    out = np.asarray(decode(params, jnp.asarray(z)), np.float64)
    assert out.shape == (2, *shape)
    if likelihood == "bernoulli":
        p = 1.0 / (1.0 + np.exp(-out))
        expected = scipy.stats.bernoulli(p).logpmf(x).reshape(2, -1).sum(1)
    else:
        if variance == "fixed":
            var = 0.3
        else:
            raw = np.asarray(params["params"]["raw_variance"], np.float64)
            var = np.exp(raw) + model.config.min_variance
        expected = scipy.stats.norm(out, np.sqrt(var)).logpdf(x).reshape(2, -1).sum(1)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


# --------------------------------------------------------------------------------------------
# The ELBO
# --------------------------------------------------------------------------------------------


def test_analytic_kl_elbo_agrees_with_monte_carlo_kl_elbo():
    """E_q[log p(x|z)] - KL (closed form) = E_q[log p(x|z) + log p(z) - log q(z|x)]."""
    model = _module((64,), latent_dim=4, hidden=(32,))
    x = _digits("test", "static")[:6]
    params = vae.init(model, jax.random.PRNGKey(3), {"x": x})
    # Move the posterior away from the prior so the KL is not ~0: shift and shrink q.
    p = params["params"]
    head = p["encoder"]["dense_1"]
    head = {"kernel": head["kernel"] * 3.0, "bias": head["bias"].at[4:].set(-1.5)}
    params = {"params": {**p, "encoder": {**p["encoder"], "dense_1": head}}}
    num = 2000

    analytic = np.asarray(vae.elbo(model, params, x, jax.random.PRNGKey(4), num_samples=num))

    # Oracle: Monte Carlo KL from scipy log-densities at numpy draws z ~ q(z | x).
    mean, log_var = (np.asarray(a, np.float64) for a in vae.encode(model, params, x))
    std = np.exp(0.5 * log_var)
    z = mean + std * np.random.default_rng(5).normal(size=(num, *mean.shape))
    log_q = scipy.stats.norm(mean, std).logpdf(z).sum(-1)
    log_p = scipy.stats.norm(0.0, 1.0).logpdf(z).sum(-1)
    n_rec = 400
    x_rep = np.broadcast_to(x, (n_rec, *x.shape)).reshape(-1, 64)
    z_rec = z[:n_rec].reshape(-1, 4).astype(np.float32)
    log_px = np.asarray(vae.log_px_given_z(model, params, x_rep, z_rec)).reshape(n_rec, -1)
    kl_mc = (log_q - log_p).mean(0)
    kl_err = (log_q - log_p).std(0) / np.sqrt(num)
    assert np.all(kl_mc > 1.0)  # the check is not trivially about KL = 0
    # The reconstruction term is common; estimate it from the first n_rec draws.
    mc = log_px.mean(0) - kl_mc
    err = np.sqrt(log_px.var(0) / n_rec + kl_err**2)
    assert np.all(np.abs(analytic - mc) < 5 * err + 1e-3), (analytic, mc, err)
    # The library's own Monte Carlo KL mode estimates the same number.
    library_mc = np.asarray(
        vae.elbo(model, params, x, jax.random.PRNGKey(6), num_samples=num, analytic_kl=False)
    )
    assert np.all(np.abs(library_mc - analytic) < 5 * err + 1e-3)


def test_kl_warmup_schedule_through_the_engine():
    """Warm-up via model state: step s uses beta * min(1, s / S), hand-computed."""
    beta, warmup = 0.5, 4
    assert float(vae.kl_weight(0, beta, warmup)) == 0.0
    assert float(vae.kl_weight(2, beta, warmup)) == pytest.approx(0.25)
    assert float(vae.kl_weight(9, beta, warmup)) == pytest.approx(0.5)
    assert float(vae.kl_weight(0, beta, 0)) == pytest.approx(0.5)

    config = vae.VAEConfig(
        hidden=(8,), latent_dim=2, activation="relu", init_variance=1.0, beta=beta,
        warmup_steps=warmup,
    )  # fmt: skip
    objective = config.objective(DataInfo(shape=(64,)))
    assert objective.model == vae.VAE(config, (64,))
    task = objective.task(optax.adam(1e-3))
    assert task.players[0].stateful and task.post_update is not None
    x = _digits("train", "static")[:64]
    state, metrics = _train(task, x, steps=6, batch_size=32)
    np.testing.assert_allclose(
        np.asarray(metrics["kl_weight"]), [0.0, 0.125, 0.25, 0.375, 0.5, 0.5], atol=1e-7
    )
    assert float(state.model_state["kl_weight"]) == pytest.approx(0.5)
    # The loss is minus the warm-up-weighted bound: -(log p(x|z) - w KL).
    expected_loss = -(np.asarray(metrics["log_px_given_z"]) - np.asarray(metrics["kl_weight"])
                      * np.asarray(metrics["kl"]))  # fmt: skip
    np.testing.assert_allclose(np.asarray(metrics["loss"]), expected_loss, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# Linear VAE = PPCA
# --------------------------------------------------------------------------------------------


def _linear_gaussian_elbo(x, p, min_variance):
    """Exact ELBO of the linear VAE (no sampling), written out in float64 NumPy.

    q = N(A x + a, diag(s2)), p(x|z) = N(W z + b, sigma2 I):
    E_q log p(x|z) = log N(x; W m + b, sigma2 I) - sum_j ||W_j||^2 s2_j / (2 sigma2),
    KL = 1/2 sum_j (s2_j + m_j^2 - 1 - log s2_j).
    """
    f = lambda a: np.asarray(a, np.float64)
    A, a = f(p["encoder"]["kernel"]), f(p["encoder"]["bias"])
    s2 = np.exp(f(p["encoder_log_var"]))
    W, b = f(p["decoder"]["kernel"]).T, f(p["decoder"]["bias"])  # W [D, q]
    sigma2 = np.exp(f(p["raw_variance"])) + min_variance
    x = f(x)
    m = x @ A + a
    d = x.shape[1]
    resid = x - m @ W.T - b
    rec = -0.5 * (d * np.log(2 * np.pi * sigma2) + (resid**2).sum(1) / sigma2)
    rec -= ((W**2).sum(0) * s2).sum() / (2 * sigma2)
    kl = 0.5 * (s2 + m**2 - 1.0 - np.log(s2)).sum(1)
    return rec - kl, W, b, sigma2


@pytest.mark.slow
def test_linear_vae_reaches_the_ppca_maximum_likelihood():
    """Lucas et al. (2019): the linear VAE's optimal ELBO is the maximum PPCA log-likelihood."""
    x = _digits("train", "none")  # continuous digits in [0, 1], [1442, 64]
    q, steps = 5, 1200
    fitted = ppca.fit_closed_form(jnp.asarray(x), q)
    ppca_ml = float(np.mean(ppca.log_likelihood(ppca.PPCA(data_dim=64, latent_dim=q), fitted, x)))
    model = _module((64,), latent_dim=q, architecture="linear", likelihood="gaussian")
    task = Task.from_loss(
        functools.partial(vae.init, model),
        functools.partial(vae.loss, model),
        optax.adam(optax.cosine_decay_schedule(2e-2, steps)),
    )
    state, _ = _train(task, x, steps=steps, batch_size=x.shape[0])  # full batch, scan-fused
    elbo, W, b, sigma2 = _linear_gaussian_elbo(
        x, state.params["model"]["params"], model.config.min_variance
    )
    # The learned decoder is a PPCA model; its exact marginal likelihood (scipy) is between.
    cov = W @ W.T + sigma2 * np.eye(64)
    marginal = scipy.stats.multivariate_normal(b, cov).logpdf(x).mean()
    assert elbo.mean() <= marginal + 1e-6 <= ppca_ml + 1e-4
    assert ppca_ml - elbo.mean() <= 0.01 * abs(ppca_ml), (elbo.mean(), marginal, ppca_ml)


# --------------------------------------------------------------------------------------------
# A trained nonlinear VAE on binarised digits
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_digits_vae():
    x_train = _digits("train", "static")
    model = _module((64,), latent_dim=8, hidden=(200, 200), activation="tanh")
    task = Task.from_loss(
        functools.partial(vae.init, model), functools.partial(vae.loss, model), optax.adam(2e-3)
    )
    state, metrics = _train(task, x_train, steps=400, batch_size=128)
    return model, state.params["model"], x_train, np.asarray(metrics["elbo"])


@pytest.fixture(scope="module")
def trained_bounds(trained_digits_vae):
    """Test-split ELBO (100 samples) and IWAE bounds L_K for K = 1, 10, 1000."""
    model, params, _, _ = trained_digits_vae
    x = _digits("test", "static")
    elbo = float(np.mean(vae.elbo(model, params, x, jax.random.PRNGKey(0), num_samples=100)))
    weights = functools.partial(vae.log_weights, model, params)
    bounds = {
        k: float(
            np.mean(
                iwae_log_likelihood(
                    weights, x, jax.random.PRNGKey(k), num_samples=k, chunk_size=100, batch_size=64
                )
            )
        )
        for k in (1, 10, 1000)
    }
    return elbo, bounds


@pytest.mark.slow
def test_trained_vae_iwae_above_elbo_and_rising_with_k(trained_digits_vae, trained_bounds):
    _, _, _, train_elbo = trained_digits_vae
    assert train_elbo[-20:].mean() > train_elbo[:20].mean() + 10.0  # it did learn
    elbo, bounds = trained_bounds
    assert abs(bounds[1] - elbo) < 0.15  # L_1 is an unbiased ELBO estimate
    assert elbo < bounds[10] < bounds[1000], (elbo, bounds)
    assert bounds[1000] - bounds[10] > 0.1  # still rising past K = 10
    assert bounds[1000] - elbo > 0.5  # the importance weighting buys a real gap


def test_trained_vae_beats_independent_pixels(trained_digits_vae, trained_bounds):
    """A cheap stand-in for the K=5000 comparison the experiment reports (both baselines):
    after 400 steps the test NLL is far below the independent-Bernoulli baseline, which a
    decoder that ignores z (posterior collapse, a broken encoder) cannot get below."""
    _, _, x_train, _ = trained_digits_vae
    x = _digits("test", "static")
    probs = baselines.fit_independent_bernoulli(x_train)
    base_nll = -float(np.mean(baselines.independent_bernoulli_log_likelihood(probs, x)))
    nll = -trained_bounds[1][1000]
    assert nll < base_nll - 3.0, (nll, base_nll)


def test_sample_reconstruct_interpolate_shapes_and_ranges(trained_digits_vae):
    model, params, _, _ = trained_digits_vae
    x = _digits("test", "static")[:4]
    draws = np.asarray(vae.sample(model, params, jax.random.PRNGKey(0), 5))
    assert draws.shape == (5, 64) and set(np.unique(draws)) <= {0.0, 1.0}
    means = np.asarray(vae.sample(model, params, jax.random.PRNGKey(0), 5, mean=True))
    assert means.shape == (5, 64) and np.all((means > 0) & (means < 1))
    recon = np.asarray(vae.reconstruct(model, params, x))
    # Reconstructions are closer to their own input than to the other inputs.
    dist = ((recon[:, None] - x[None]) ** 2).sum(-1)
    assert np.all(np.argmin(dist, axis=1) == np.arange(4))
    path = np.asarray(vae.interpolate(model, params, x[:2], x[2:], steps=5))
    assert path.shape == (2, 5, 64)
    mean, _ = vae.encode(model, params, x)
    np.testing.assert_allclose(path[:, 0], vae.decode(model, params, mean[:2]), atol=1e-5)
    np.testing.assert_allclose(path[:, -1], vae.decode(model, params, mean[2:]), atol=1e-5)


# --------------------------------------------------------------------------------------------
# The contract: VAEConfig, config.objective(info), VAEObjective
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("architecture", "resnet", r"one of \('mlp', 'conv', 'linear'\), got 'resnet'"),
        ("hidden", (8, 0), r"a tuple \(hashable, not a list\) of positive ints, got \(8, 0\)"),
        ("hidden", (), r"a non-empty tuple of positive ints \(architecture='conv'"),
        ("latent_dim", 0, r"an int >= 1, got 0"),
        ("latent_dim", 2.0, r"an int >= 1, got 2.0"),
        ("activation", "swish2", r"one of .*'tanh'.*got 'swish2'"),
        ("likelihood", "poisson", r"one of \('bernoulli', 'gaussian'\), got 'poisson'"),
        ("variance", "diag", r"one of \('fixed', 'isotropic', 'pixel'\), got 'diag'"),
        ("fixed_variance", 0.0, r"a finite number > 0, got 0.0"),
        ("min_variance", -1e-3, r"a finite number > 0, got -0.001"),
        ("init_variance", 1e-3, r"a finite number > min_variance = 0.001, got 0.001"),
        ("kernel_size", 0, r"an int >= 1, got 0"),
        ("beta", -0.5, r"a finite number >= 0, got -0.5"),
        ("beta", float("nan"), r"a finite number >= 0, got nan"),
        ("warmup_steps", -1, r"an int >= 0, got -1"),
        ("free_bits", -0.1, r"a finite number >= 0, got -0.1"),
    ],
)
def test_config_validation_names_the_field(field, value, message):
    extra = {"architecture": "conv"} if field == "hidden" and value == () else {}
    with pytest.raises(ValueError, match=rf"^VAEConfig\.{field} must be {message}"):
        vae.VAEConfig(**extra, **{field: value})


def test_config_defaults_and_saved_keys():
    config = vae.VAEConfig()
    assert config.family == "vae" and vae.VAEConfig(hidden=[4, 4]).hidden == (4, 4)
    assert (config.latent_dim, config.hidden, config.activation) == (8, (200, 200), "tanh")
    # A config saved when the evaluation settings were model keys still loads.
    saved = {"latent_dim": 3, "iwae_samples": 5000, "iwae_curve": [1, 10], "elbo_samples": 10}
    assert vae.VAEConfig(**vae.VAEConfig.upgrade_saved(saved)).latent_dim == 3


def test_objective_refuses_data_the_config_cannot_take():
    flat = DataInfo(shape=(64,), name="digits", image_shape=(8, 8, 1))
    conv = vae.VAEConfig(architecture="conv", hidden=(4, 4))
    with pytest.raises(ValueError, match=r"^VAEConfig\.architecture='conv' needs images \[H, W"):
        conv.objective(flat)
    deep = vae.VAEConfig(architecture="conv", hidden=(4, 4, 4, 4))
    with pytest.raises(ValueError, match=r"^VAEConfig\.hidden=.*multiples of 2\^4 = 16, got an"):
        deep.objective(DataInfo(shape=(8, 8, 1)))
    raw = DataInfo(shape=(64,), name="digits", unit_interval=False)
    with pytest.raises(ValueError, match=r"^VAEConfig\.likelihood='bernoulli' needs inputs in \[0"):
        vae.VAEConfig().objective(raw)
    assert vae.VAEConfig(likelihood="gaussian").objective(raw).model.data_shape == (64,)
    objective = conv.objective(DataInfo(shape=(8, 8, 1)))
    assert objective.model.config.architecture == "conv" and objective.model.config.hidden == (4, 4)


def test_objective_task_trains_and_serves_the_model():
    x = _digits("train", "static")
    objective = vae.VAEConfig(hidden=(64,), latent_dim=2).objective(DataInfo(shape=(64,)))
    assert not objective.stateful and objective.family == "vae"
    assert objective.functions() == (
        *("sample", "encode", "decode", "reconstruct"),
        *("posterior", "elbo", "log_weights"),
    )
    task = objective.task(optax.adam(2e-3))
    assert not task.players[0].stateful and task.post_update is None
    # The objective's loss is the module's loss with the config's weights, number for number.
    batch, rng = {"x": jnp.asarray(x[:16])}, jax.random.PRNGKey(2)
    params = objective.init(jax.random.PRNGKey(1), batch)
    got, _ = objective.loss(params, batch, rng)
    assert float(got) == float(vae.loss(objective.model, params, batch, rng)[0])
    state, metrics = _train(task, x, steps=150, batch_size=64)
    loss = np.asarray(metrics["loss"])
    assert np.isfinite(loss).all() and loss[-20:].mean() < loss[:20].mean() - 5.0
    p, ms = state.params, state.model_state
    assert objective.sample(p, ms, jax.random.PRNGKey(0), 5).shape == (5, 64)
    means = objective.sample(p, ms, jax.random.PRNGKey(0), 5, mean=True)
    assert np.all((np.asarray(means) > 0) & (np.asarray(means) < 1))
    z = objective.encode(p, ms, x[:3])
    assert z.shape == (3, 2)
    np.testing.assert_array_equal(z, objective.posterior(p, ms, x[:3])[0])
    assert objective.decode(p, ms, z).shape == (3, 64)
    np.testing.assert_allclose(objective.reconstruct(p, ms, x[:3]), objective.decode(p, ms, z))
    assert objective.elbo(p, ms, x[:3], jax.random.PRNGKey(0)).shape == (3,)
    log_px, log_p, log_q = objective.log_weights(p, ms, x[:3], jax.random.PRNGKey(0), 4)
    assert log_px.shape == log_p.shape == log_q.shape == (4, 3)
    with pytest.raises(ValueError, match=r"one player 'model'; got optimizers for \['d', 'g'\]"):
        objective.task({"d": optax.adam(1e-3), "g": optax.adam(1e-3)})


def test_experiment_config_errors_name_the_key():
    from experiments.models import vae as experiment
    from genjax.config import ConfigError, apply_overrides

    base = experiment.SPEC.configs["digits"]()
    with pytest.raises(ConfigError, match=r"model.latent_dim must be an int >= 1, got 0"):
        apply_overrides(base, ["model.latent_dim=0"])
    with pytest.raises(ConfigError, match=r"model.likelihood must be one of \('bernoulli', 'gaus"):
        apply_overrides(base, ["model.likelihood=poisson"])
    with pytest.raises(ConfigError, match=r"eval.iwae_samples must be an int >= 1, got 0"):
        apply_overrides(base, ["eval.iwae_samples=0"])


# --------------------------------------------------------------------------------------------
# The importance-weighted training bound (IWAE)
# --------------------------------------------------------------------------------------------


def _random_linear_gaussian_vae(seed=0, d=4, q=2):
    model = _module((d,), latent_dim=q, architecture="linear", likelihood="gaussian")
    x = np.random.default_rng(seed).normal(size=(60, d)).astype(np.float32)
    params = vae.init(model, jax.random.PRNGKey(seed), {"x": x[:2]})
    return model, params, x


def test_iwae_loss_rises_with_k_to_the_exact_marginal_likelihood():
    # A linear decoder with Gaussian noise is a PPCA model: log p(x) is a Gaussian density
    # (scipy). L_K is a lower bound whose mean rises with K to it (Burda et al., 2016).
    model, params, x = _random_linear_gaussian_vae()
    _, W, b, sigma2 = _linear_gaussian_elbo(x, params["params"], model.config.min_variance)
    exact = scipy.stats.multivariate_normal(b, W @ W.T + sigma2 * np.eye(4)).logpdf(x).mean()

    @functools.partial(jax.jit, static_argnums=0)
    def loss(k, rng):
        return vae.loss(model, params, {"x": x}, rng, importance_samples=k)

    def bound(k, seed):
        value, metrics = loss(k, jax.random.PRNGKey(seed))
        return -float(value), metrics

    elbo_exact = _linear_gaussian_elbo(x, params["params"], model.config.min_variance)[0].mean()
    l1 = np.mean([bound(1, s)[0] for s in range(40)])
    l10 = np.mean([bound(10, s)[0] for s in range(40)])
    l_big, metrics = bound(20_000, 0)
    assert abs(l1 - elbo_exact) < 0.05 * abs(elbo_exact)  # K = 1: the ELBO, one sample each
    assert l1 < l10 < exact + 1e-3
    assert exact - elbo_exact > 0.5  # the encoder is far from the posterior: a real gap
    assert abs(l_big - exact) < 0.02 * (exact - elbo_exact), (l_big, exact, elbo_exact)
    assert float(metrics["iwae_bound"]) == pytest.approx(l_big, rel=1e-6)


def test_iwae_loss_gradient_matches_finite_differences():
    model, params, x = _random_linear_gaussian_vae(seed=1)
    rng = jax.random.PRNGKey(3)

    with jax.enable_x64():
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        x64 = jnp.asarray(x, jnp.float64)

        @jax.jit
        def f(p):
            return vae.loss(model, p, {"x": x64}, rng, importance_samples=8)[0]

        kernel = p64["params"]["decoder"]["kernel"]
        direction = jnp.asarray(np.random.default_rng(2).normal(size=kernel.shape))

        def shifted(t):
            moved = jax.tree.map(lambda a: a, p64)
            moved["params"]["decoder"]["kernel"] = kernel + t * direction
            return f(moved)

        h = 1e-5
        numeric = (shifted(h) - shifted(-h)) / (2 * h)
        analytic = jnp.sum(jax.grad(f)(p64)["params"]["decoder"]["kernel"] * direction)
    assert float(analytic) == pytest.approx(float(numeric), rel=1e-5)
    assert abs(float(analytic)) > 1e-3  # a direction the loss depends on


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"importance_samples": 0}, "VAEConfig.importance_samples"),
        ({"importance_samples": 5, "beta": 0.5}, "VAEConfig.beta=0.5 has no meaning"),
        ({"importance_samples": 5, "warmup_steps": 10}, "VAEConfig.warmup_steps=10"),
        ({"importance_samples": 5, "free_bits": 0.1}, "VAEConfig.free_bits=0.1"),
    ],
)
def test_iwae_config_refuses_what_the_bound_has_no_place_for(fields, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        vae.VAEConfig(**fields)


def test_iwae_objective_trains_through_the_engine():
    x = _digits("train", "static")[:256]
    config = vae.VAEConfig(hidden=(32,), latent_dim=4, importance_samples=5)
    objective = config.objective(DataInfo(shape=(64,), unit_interval=True))
    task = objective.task(optax.adam(3e-3))
    _, metrics = _train(task, x, steps=150, batch_size=64)
    bound = np.asarray(metrics["iwae_bound"])
    assert np.all(np.isfinite(bound)) and bound[-20:].mean() > bound[:20].mean() + 2.0
    # L_5 >= the mean of its samples' log weights (Jensen), batch by batch.
    assert np.all(bound >= np.asarray(metrics["elbo"]) - 1e-4)
