"""Tests for genjax.models.gan against independent oracles.

Oracles: the optimal discriminator and the value ``-log 4 + 2 JSD`` of Goodfellow et al. (2014)
computed by numerical quadrature (scipy) from known 1-D densities; hand-built linear networks
whose logits, input gradients and losses are written out in NumPy; finite differences for the
R1 penalty of a non-linear discriminator; NumPy's SVD for spectral normalisation; the EMA
recursion by hand; and the mode statistics of the 2-D ring after a short training.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.integrate
import scipy.stats

from genjax.models import gan

d_objective = jax.jit(gan.discriminator_objective, static_argnums=0)
g_objective = jax.jit(gan.generator_objective, static_argnums=0)


def _linear_gan(**kw) -> gan.GAN:
    """An MLP GAN whose networks are linear (identity activations, one hidden unit)."""
    return gan.GAN(
        data_shape=(1,),
        latent_dim=1,
        generator_features=(1,),
        discriminator_features=(1,),
        generator_activation="identity",
        discriminator_activation="identity",
        **kw,
    )


def _dense(kernel, bias):
    return {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.asarray(bias, jnp.float32)}


def _linear_params(g_scale, g_shift, d_weight, d_bias):
    """G(z) = g_scale * z + g_shift and D_logit(x) = d_weight * x + d_bias, as MLP params."""
    gen = {"mlp": {"dense_0": _dense([[1.0]], [0.0]), "dense_1": _dense([[g_scale]], [g_shift])}}
    disc = {"mlp": {"dense_0": _dense([[1.0]], [0.0]), "dense_1": _dense([[d_weight]], [d_bias])}}
    return {gan.DISC: {"params": {"net": disc}}, gan.GEN: {"params": gen}}


def test_param_layout_of_the_linear_helper():
    model = _linear_gan()
    params = gan.init(jax.random.PRNGKey(0), {"x": jnp.zeros((2, 1))}, model)
    hand = _linear_params(1.0, 0.0, 1.0, 0.0)
    assert jax.tree.structure(params) == jax.tree.structure(hand)


# ------------------------------------------------------------------ the value function (1-D)

P_DATA = scipy.stats.norm(0.0, 1.0)
G_SHIFT, G_SCALE = 1.5, 0.7
P_G = scipy.stats.norm(G_SHIFT, G_SCALE)


def _jsd() -> float:
    def integrand(x):
        p, q = P_DATA.pdf(x), P_G.pdf(x)
        m = 0.5 * (p + q)
        return 0.5 * (p * math.log(p / m) + q * math.log(q / m))

    return scipy.integrate.quad(integrand, -12, 14, limit=200)[0]


def test_value_at_the_optimal_discriminator_is_minus_log4_plus_2jsd():
    # The optimal discriminator's logit is log p_data - log p_g; the loss library's gan_value
    # at those logits, integrated, is V(G, D*), which Goodfellow et al. (Thm. 1) equate with
    # -log 4 + 2 JSD (the JSD here by independent quadrature).
    from genjax import losses as L

    xs = np.linspace(-8, 10, 200_001)
    logit = P_DATA.logpdf(xs) - P_G.logpdf(xs)
    # E_data[log D*] + E_g[log(1 - D*)] as one integral of gan_value-style terms.
    terms_real = np.asarray(L.gan_value(jnp.asarray(logit[:, None]), jnp.full((xs.size, 1), -1e4)))
    terms_fake = np.asarray(L.gan_value(jnp.full((xs.size, 1), 1e4), jnp.asarray(logit[:, None])))
    value = np.trapezoid(P_DATA.pdf(xs) * terms_real + P_G.pdf(xs) * terms_fake, xs)
    assert value == pytest.approx(-math.log(4) + 2 * _jsd(), abs=1e-4)


@pytest.fixture(scope="module")
def trained_1d_discriminator():
    """A discriminator trained to convergence against the fixed generator N(1.5, 0.7^2)."""
    model = gan.GAN(
        data_shape=(1,),
        latent_dim=1,
        discriminator_features=(64, 64),
        generator_features=(1,),
        generator_activation="identity",
    )
    params = gan.init(jax.random.PRNGKey(0), {"x": jnp.zeros((2, 1))}, model)
    # A linear generator G(z) = 0.7 z + 1.5 with z ~ N(0, 1), so p_g = N(1.5, 0.49) exactly.
    fixed = _linear_params(G_SCALE, G_SHIFT, 0.0, 0.0)[gan.GEN]
    params = {gan.DISC: params[gan.DISC], gan.GEN: fixed}
    optimizer = optax.adam(optax.cosine_decay_schedule(3e-3, 3000))

    def loss(disc, key):
        k_data, k_obj = jax.random.split(key)
        x = jax.random.normal(k_data, (512, 1))
        full = {gan.DISC: disc, gan.GEN: params[gan.GEN]}
        value, _ = gan.discriminator_objective(model, full, {}, {"x": x}, k_obj)
        return value

    @jax.jit
    def train(disc):
        def body(carry, step):
            disc, opt = carry
            grads = jax.grad(loss)(disc, jax.random.fold_in(jax.random.PRNGKey(1), step))
            updates, opt = optimizer.update(grads, opt, disc)
            return (optax.apply_updates(disc, updates), opt), None

        (disc, _), _ = jax.lax.scan(body, (disc, optimizer.init(disc)), jnp.arange(3000))
        return disc

    disc = train(params[gan.DISC])
    return model, disc


@functools.partial(jax.jit, static_argnums=0)
def _logits(model, disc, x):
    return gan.discriminator_logits(model, disc, {}, x)


def test_trained_discriminator_recovers_the_optimal_discriminator(trained_1d_discriminator):
    model, disc = trained_1d_discriminator
    xs = np.linspace(-2.5, 3.5, 601)
    d = np.asarray(jax.nn.sigmoid(_logits(model, disc, jnp.asarray(xs[:, None]))))
    p, q = P_DATA.pdf(xs), P_G.pdf(xs)
    d_star = p / (p + q)
    weight = 0.5 * (p + q)
    # Mixture-weighted mean absolute error, and pointwise where both densities carry mass.
    mae = np.sum(np.abs(d - d_star) * weight) / np.sum(weight)
    core = (xs > -1.0) & (xs < 2.5)
    assert mae < 0.02
    assert np.max(np.abs(d - d_star)[core]) < 0.06


def test_trained_discriminator_attains_the_value_minus_log4_plus_2jsd(trained_1d_discriminator):
    model, disc = trained_1d_discriminator

    xs = np.linspace(-8, 10, 4001)
    logits = np.asarray(_logits(model, disc, jnp.asarray(xs[:, None])))
    log_d, log_1md = -np.logaddexp(0, -logits), -np.logaddexp(0, logits)
    value = np.trapezoid(P_DATA.pdf(xs) * log_d + P_G.pdf(xs) * log_1md, xs)
    target = -math.log(4) + 2 * _jsd()
    # V(G, D) <= V(G, D*) for every D; a converged D comes within a few thousandths.
    assert value <= target + 1e-3
    assert value == pytest.approx(target, abs=0.01)


# ------------------------------------------------------------------ losses and penalties


def test_objectives_match_hand_computation_on_linear_networks():
    model = _linear_gan(r1_gamma=2.0)
    a, c = 0.8, -0.3
    params = _linear_params(G_SCALE, G_SHIFT, a, c)
    x = jnp.asarray([[0.5], [-1.0], [2.0], [0.1]])
    rng = jax.random.PRNGKey(3)
    loss, (metrics, state) = d_objective(model, params, {}, {"x": x}, rng)
    z = np.asarray(gan.sample_latent(model, rng, 4))
    fake = G_SCALE * z + G_SHIFT
    real_logit, fake_logit = a * np.asarray(x) + c, a * fake + c
    softplus = lambda t: np.logaddexp(0.0, t)
    bce = np.mean(softplus(-real_logit) + softplus(fake_logit))
    assert float(loss) == pytest.approx(bce + 0.5 * 2.0 * a**2, rel=1e-5)
    assert float(metrics["r1"]) == pytest.approx(a**2, rel=1e-6)
    assert float(metrics["gan_value"]) == pytest.approx(-bce, rel=1e-5)
    assert state == {}
    plain, (metrics, _) = d_objective(_linear_gan(), params, {}, {"x": x}, rng)
    assert float(plain) == pytest.approx(bce, rel=1e-5)
    assert "r1" not in metrics

    g_rng = jax.random.PRNGKey(4)
    z = np.asarray(gan.sample_latent(model, g_rng, 4))
    fake_logit = a * (G_SCALE * z + G_SHIFT) + c
    ns, _ = g_objective(model, params, {}, {"x": x}, g_rng)
    assert float(ns) == pytest.approx(np.mean(softplus(-fake_logit)), rel=1e-5)
    saturating = dataclasses.replace(model, non_saturating=False)
    mm, _ = g_objective(saturating, params, {}, {"x": x}, g_rng)
    assert float(mm) == pytest.approx(np.mean(-softplus(fake_logit)), rel=1e-5)


def test_r1_phase_ends_after_r1_steps():
    model = _linear_gan(r1_gamma=2.0, r1_steps=3)
    params = _linear_params(G_SCALE, G_SHIFT, 0.8, -0.3)
    state = gan.init_model_state(jax.random.PRNGKey(0), {"x": jnp.zeros((1, 1))}, params, model)
    assert int(state["step"]) == 0
    x = {"x": jnp.asarray([[0.5], [-1.0]])}
    rng = jax.random.PRNGKey(3)
    no_r1, _ = d_objective(_linear_gan(), params, {}, x, rng)
    on, (metrics, _) = d_objective(model, params, state, x, rng)
    assert float(on - no_r1) == pytest.approx(0.5 * 2.0 * 0.8**2, rel=1e-5)
    assert float(metrics["r1"]) == pytest.approx(0.8**2, rel=1e-6)
    for step in range(3):
        state = gan.ema_post_update(model, params, state, jnp.int32(step))
    assert int(state["step"]) == 3
    off, (metrics, _) = d_objective(model, params, state, x, rng)
    assert float(off) == pytest.approx(float(no_r1), rel=1e-6)
    assert float(metrics["r1"]) == 0.0


def test_r1_penalty_matches_finite_differences():
    model = gan.GAN(data_shape=(3,), latent_dim=2, discriminator_features=(16, 16))
    params = gan.init(jax.random.PRNGKey(0), {"x": jnp.zeros((2, 3))}, model)
    x = np.random.default_rng(0).normal(size=(5, 3))
    with jax.enable_x64(True):
        disc = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params[gan.DISC])
        penalty = np.asarray(
            jax.jit(gan.r1_penalty, static_argnums=0)(model, disc, {}, jnp.asarray(x))
        )
        logits = jax.jit(gan.discriminator_logits, static_argnums=0)

        def logit(v):
            return np.asarray(logits(model, disc, {}, jnp.asarray(v)))

        eps = 1e-6
        grads = np.zeros_like(x)
        for j in range(3):
            step = np.zeros_like(x)
            step[:, j] = eps
            grads[:, j] = (logit(x + step) - logit(x - step)) / (2 * eps)
    np.testing.assert_allclose(penalty, np.sum(grads**2, axis=1), rtol=1e-5)


def test_spectral_norm_divides_each_kernel_by_its_largest_singular_value():
    model = gan.GAN(
        data_shape=(4,),
        latent_dim=2,
        discriminator_features=(8,),
        discriminator_activation="identity",
        spectral_norm=True,
    )
    params = gan.init(jax.random.PRNGKey(0), {"x": jnp.zeros((2, 4))}, model)
    state = gan.init_model_state(jax.random.PRNGKey(1), {"x": jnp.zeros((2, 4))}, params, model)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(6, 4)), jnp.float32)

    @jax.jit
    def power_iterations(state):
        def body(s, i):
            _, (_, s) = gan.discriminator_objective(
                model, params, s, {"x": x}, jax.random.PRNGKey(i)
            )
            return s, None

        return jax.lax.scan(body, state, jnp.arange(50))[0]

    state = power_iterations(state)
    mlp = params[gan.DISC]["params"]["net"]["mlp"]
    w0, b0 = np.asarray(mlp["dense_0"]["kernel"]), np.asarray(mlp["dense_0"]["bias"])
    w1, b1 = np.asarray(mlp["dense_1"]["kernel"]), np.asarray(mlp["dense_1"]["bias"])
    s0, s1 = np.linalg.norm(w0, 2), np.linalg.norm(w1, 2)
    expected = ((np.asarray(x) @ (w0 / s0) + b0) @ (w1 / s1) + b1)[:, 0]
    got = np.asarray(
        jax.jit(gan.discriminator_logits, static_argnums=0)(model, params[gan.DISC], state, x)
    )
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # The unnormalised network differs (so the check above is not vacuous).
    raw = ((np.asarray(x) @ w0 + b0) @ w1 + b1)[:, 0]
    assert np.max(np.abs(raw - expected)) > 0.1


def test_ema_of_generator_weights():
    model = _linear_gan(ema_decay=0.9, d_steps=2)
    params = _linear_params(1.0, 0.0, 1.0, 0.0)
    state = gan.init_model_state(jax.random.PRNGKey(0), {"x": jnp.zeros((1, 1))}, params, model)
    start = np.asarray(state["ema"]["params"]["mlp"]["dense_1"]["bias"])
    moved = _linear_params(1.0, 2.0, 1.0, 0.0)
    # step 0: (0 + 1) % 2 != 0, the generator was not updated: EMA unchanged.
    same = gan.ema_post_update(model, moved, state, jnp.int32(0))
    np.testing.assert_array_equal(same["ema"]["params"]["mlp"]["dense_1"]["bias"], start)
    # step 1: updated, ema = 0.9 * 0 + 0.1 * 2.
    new = gan.ema_post_update(model, moved, state, jnp.int32(1))
    np.testing.assert_allclose(new["ema"]["params"]["mlp"]["dense_1"]["bias"], [0.2], rtol=1e-6)
    assert gan.sampling_variables(model, moved, new) is new["ema"]
    assert gan.sampling_variables(_linear_gan(), moved, {}) is moved[gan.GEN]


# ------------------------------------------------------------------ shapes and bad input


@pytest.mark.parametrize(("shape", "stages"), [((8, 8, 1), 2), ((28, 28, 1), 2), ((32, 32, 3), 3)])
def test_dcgan_shapes(shape, stages):
    feats = (32, 16, 8)[:stages]
    model = gan.GAN(
        data_shape=shape,
        latent_dim=8,
        architecture="dcgan",
        generator_features=feats,
        discriminator_features=feats[::-1],
        output="sigmoid",
    )
    # Shapes only (no compilation): eval_shape traces the networks abstractly.
    params = jax.eval_shape(
        lambda r: gan.init(r, {"x": jnp.zeros((2, *shape))}, model), jax.random.PRNGKey(0)
    )
    z = jax.ShapeDtypeStruct((3, 8), jnp.float32)
    samples = jax.eval_shape(lambda p, z: gan.generate(model, p, z), params[gan.GEN], z)
    assert samples.shape == (3, *shape)
    logits = jax.eval_shape(
        lambda p, x: gan.discriminator_logits(model, p, {}, x), params[gan.DISC], samples
    )
    assert logits.shape == (3,)
    assert params[gan.GEN]["params"]["deconv"]["output"]["kernel"].shape[-1] == shape[-1]


def test_dcgan_samples_in_unit_interval_with_sigmoid_output():
    model = gan.GAN(
        data_shape=(8, 8, 1),
        latent_dim=4,
        architecture="dcgan",
        generator_features=(8, 4),
        discriminator_features=(4, 8),
        output="sigmoid",
    )
    params = gan.init(jax.random.PRNGKey(0), {"x": jnp.zeros((2, 8, 8, 1))}, model)
    samples = np.asarray(gan.sample(model, params[gan.GEN], jax.random.PRNGKey(1), 16))
    assert samples.shape == (16, 8, 8, 1)
    assert samples.min() >= 0.0 and samples.max() <= 1.0 and samples.std() > 0


def test_bad_input():
    with pytest.raises(ValueError, match=r"GAN\.latent_dim must be an int >= 1, got 0"):
        gan.GAN(data_shape=(2,), latent_dim=0)
    with pytest.raises(
        ValueError, match=r"multiples of 2\^2 = 4, got an image of shape \(30, 30, 1\)"
    ):
        gan.GAN(data_shape=(30, 30, 1), architecture="dcgan", generator_features=(8, 8))
    with pytest.raises(ValueError, match=r"data_shape must be \(H, W, C\) for the dcgan"):
        gan.GAN(data_shape=(64,), architecture="dcgan")
    with pytest.raises(ValueError, match=r"GAN\.architecture must be one of"):
        gan.GAN(data_shape=(2,), architecture="wgan")
    with pytest.raises(ValueError, match=r"GAN\.r1_gamma must be a finite number >= 0, got -1"):
        gan.GAN(data_shape=(2,), r1_gamma=-1.0)
    with pytest.raises(ValueError, match=r"GAN.ema_decay must be in \[0, 1\), got 1.0"):
        gan.GAN(data_shape=(2,), ema_decay=1.0)
    with pytest.raises(ValueError, match=r"GAN\.d_steps must be an int >= 1, got 0"):
        gan.GAN(data_shape=(2,), d_steps=0)
    model = gan.GAN(data_shape=(2,), latent_dim=3)
    with pytest.raises(
        ValueError, match=r'batch\["x"\] must have shape \[B, \*data_shape\] = \[B, 2\]'
    ):
        gan.init(jax.random.PRNGKey(0), {"x": jnp.zeros((4, 3))}, model)
    params = gan.init(jax.random.PRNGKey(0), {"x": jnp.zeros((4, 2))}, model)
    with pytest.raises(ValueError, match=r"z must have shape \[B, 3\], got \(4, 2\)"):
        gan.generate(model, params[gan.GEN], jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match="n must be an int >= 1, got 0"):
        gan.sample(model, params[gan.GEN], jax.random.PRNGKey(0), 0)


# ------------------------------------------------------------------ training smoke test
