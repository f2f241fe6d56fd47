"""Tests for genjax.models.gan against independent oracles.

Oracles: the optimal discriminator and the value ``-log 4 + 2 JSD`` of Goodfellow et al. (2014)
computed by numerical quadrature (scipy) from known 1-D densities; hand-built linear networks
whose logits, input gradients and losses (all five of ``GAN.loss``, the WGAN-GP penalty
``lambda (|a| - 1)^2`` of a linear critic among them) are written out in NumPy; finite
differences for the R1 penalty and for the gradient of the WGAN-GP objective of a non-linear
discriminator; NumPy's SVD for spectral normalisation; the EMA recursion by hand; the distance
of the generator's samples to the 2-D ring's modes after a short training with each loss; and
the command's one-line error for an unknown loss.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.integrate
import scipy.stats
from gan_settings import RING, plain_config

from genjax.models import gan
from genjax.models.base import DataInfo

d_objective = jax.jit(gan.discriminator_objective, static_argnums=0)
g_objective = jax.jit(gan.generator_objective, static_argnums=0)


def plain_gan(data_shape, **kw) -> gan.GAN:
    """The :class:`gan.GAN` of a plain config (``gan_settings.PLAIN``, updated by ``kw``) for
    ``data_shape``, built as the library builds it: ``config.objective(info).model``."""
    return plain_config(**kw).objective(DataInfo(shape=data_shape)).model


def replace(model: gan.GAN, **changes) -> gan.GAN:
    """``model`` with some of its config's fields changed."""
    return gan.GAN(dataclasses.replace(model.config, **changes), model.data_shape)


def _linear_gan(**kw) -> gan.GAN:
    """An MLP GAN whose networks are linear (identity activations, one hidden unit)."""
    return plain_gan(
        (1,),
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
    params = gan.init(model, jax.random.PRNGKey(0), {"x": jnp.zeros((2, 1))})
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
    model = plain_gan(
        (1,),
        latent_dim=1,
        discriminator_features=(64, 64),
        generator_features=(1,),
        generator_activation="identity",
    )
    params = gan.init(model, jax.random.PRNGKey(0), {"x": jnp.zeros((2, 1))})
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
    saturating = replace(model, loss="minimax")
    mm, _ = g_objective(saturating, params, {}, {"x": x}, g_rng)
    assert float(mm) == pytest.approx(np.mean(-softplus(fake_logit)), rel=1e-5)


def test_r1_phase_ends_after_r1_steps():
    model = _linear_gan(r1_gamma=2.0, r1_steps=3)
    params = _linear_params(G_SCALE, G_SHIFT, 0.8, -0.3)
    state = gan.init_model_state(model, jax.random.PRNGKey(0), {"x": jnp.zeros((1, 1))}, params)
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
    model = plain_gan((3,), latent_dim=2, discriminator_features=(16, 16))
    params = gan.init(model, jax.random.PRNGKey(0), {"x": jnp.zeros((2, 3))})
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
    model = plain_gan(
        (4,),
        latent_dim=2,
        discriminator_features=(8,),
        discriminator_activation="identity",
        spectral_norm=True,
    )
    params = gan.init(model, jax.random.PRNGKey(0), {"x": jnp.zeros((2, 4))})
    state = gan.init_model_state(model, jax.random.PRNGKey(1), {"x": jnp.zeros((2, 4))}, params)
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
    state = gan.init_model_state(model, jax.random.PRNGKey(0), {"x": jnp.zeros((1, 1))}, params)
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
    model = plain_gan(
        shape,
        latent_dim=8,
        architecture="dcgan",
        generator_features=feats,
        discriminator_features=feats[::-1],
        output="sigmoid",
    )
    # Shapes only (no compilation): eval_shape traces the networks abstractly.
    params = jax.eval_shape(
        lambda r: gan.init(model, r, {"x": jnp.zeros((2, *shape))}), jax.random.PRNGKey(0)
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
    model = plain_gan(
        (8, 8, 1),
        latent_dim=4,
        architecture="dcgan",
        generator_features=(8, 4),
        discriminator_features=(4, 8),
        output="sigmoid",
    )
    params = gan.init(model, jax.random.PRNGKey(0), {"x": jnp.zeros((2, 8, 8, 1))})
    samples = np.asarray(gan.sample(model, params[gan.GEN], jax.random.PRNGKey(1), 16))
    assert samples.shape == (16, 8, 8, 1)
    assert samples.min() >= 0.0 and samples.max() <= 1.0 and samples.std() > 0


def test_bad_input():
    with pytest.raises(ValueError, match=r"GANConfig\.latent_dim must be an int >= 1, got 0"):
        gan.GANConfig(latent_dim=0)
    with pytest.raises(
        ValueError,
        match=r"GANConfig\.generator_features \(dcgan\): 2 stride-2 stage\(s\) need .* "
        r"multiples of 2\^2 = 4, got an image of shape \(30, 30, 1\)",
    ):
        plain_gan((30, 30, 1), architecture="dcgan", generator_features=(8, 8))
    with pytest.raises(
        ValueError, match=r"GANConfig\.architecture='dcgan' needs images \(H, W, C\)"
    ):
        plain_gan((64,), architecture="dcgan")
    with pytest.raises(ValueError, match=r"GANConfig\.architecture must be one of"):
        gan.GANConfig(architecture="wgan")
    with pytest.raises(
        ValueError, match=r"GANConfig\.r1_gamma must be a finite number >= 0, got -1"
    ):
        gan.GANConfig(r1_gamma=-1.0)
    with pytest.raises(
        ValueError, match=r"GANConfig\.ema_decay must be a finite number in \[0, 1\), got 1.0"
    ):
        gan.GANConfig(ema_decay=1.0)
    with pytest.raises(ValueError, match=r"GANConfig\.d_steps must be an int >= 1, got 0"):
        gan.GANConfig(d_steps=0)
    model = plain_gan((2,), latent_dim=3)
    with pytest.raises(
        ValueError, match=r'batch\["x"\] must have shape \[B, \*data_shape\] = \[B, 2\]'
    ):
        gan.init(model, jax.random.PRNGKey(0), {"x": jnp.zeros((4, 3))})
    params = gan.init(model, jax.random.PRNGKey(0), {"x": jnp.zeros((4, 2))})
    with pytest.raises(ValueError, match=r"z must have shape \[B, 3\], got \(4, 2\)"):
        gan.generate(model, params[gan.GEN], jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match="n must be an int >= 1, got 0"):
        gan.sample(model, params[gan.GEN], jax.random.PRNGKey(0), 0)


# ------------------------------------------------------------------ the five losses


def _softplus(t):
    return np.logaddexp(0.0, t)


#: loss -> (discriminator loss of (real logit, fake logit), generator loss of fake logit), the
#: per-example formulas written out in NumPy.
_HAND_LOSSES = {
    "minimax": (lambda r, f: _softplus(-r) + _softplus(f), lambda f: -_softplus(f)),
    "non_saturating": (lambda r, f: _softplus(-r) + _softplus(f), lambda f: _softplus(-f)),
    "hinge": (lambda r, f: np.maximum(0, 1 - r) + np.maximum(0, 1 + f), lambda f: -f),
    "wgan_gp": (lambda r, f: f - r, lambda f: -f),
    "least_squares": (lambda r, f: 0.5 * (r - 1) ** 2 + 0.5 * f**2, lambda f: 0.5 * (f - 1) ** 2),
}


@pytest.mark.parametrize("spectral_norm", [False, True])
@pytest.mark.parametrize("loss", gan.LOSSES)
def test_every_loss_matches_hand_computation_on_linear_networks(loss, spectral_norm):
    # D_logit(x) = a x + c and G(z) = 0.7 z + 1.5; grad_x D = a everywhere, so the WGAN-GP
    # penalty is gp_weight (|a| - 1)^2 and R1 is a^2, whatever the interpolation weights.
    # Spectral normalisation divides each 1x1 kernel by its absolute value: a becomes sign(a)
    # (the power iteration is exact on 1x1 matrices), so the same formulas hold with a = 1.
    model = _linear_gan(loss=loss, gp_weight=3.0, r1_gamma=2.0, spectral_norm=spectral_norm)
    a, c = 0.8, -0.3
    params = _linear_params(G_SCALE, G_SHIFT, a, c)
    slope = 1.0 if spectral_norm else a
    state = gan.init_model_state(model, jax.random.PRNGKey(9), {"x": jnp.zeros((1, 1))}, params)
    x = jnp.asarray([[0.5], [-1.0], [2.0], [0.1]])
    rng = jax.random.PRNGKey(3)
    value, (metrics, new_state) = d_objective(model, params, state, {"x": x}, rng)
    z = np.asarray(gan.sample_latent(model, rng, 4))
    real, fake = slope * np.asarray(x)[:, 0] + c, slope * (G_SCALE * z[:, 0] + G_SHIFT) + c
    d_hand, g_hand = _HAND_LOSSES[loss]
    expected = np.mean(d_hand(real, fake)) + 0.5 * 2.0 * slope**2
    if loss == "wgan_gp":
        expected += 3.0 * (abs(slope) - 1.0) ** 2
        assert float(metrics["gradient_penalty"]) == pytest.approx(
            3.0 * (abs(slope) - 1.0) ** 2, rel=1e-5, abs=1e-7
        )
        assert float(metrics["wasserstein"]) == pytest.approx(real.mean() - fake.mean(), rel=1e-5)
    assert float(value) == pytest.approx(expected, rel=1e-5)
    assert float(metrics["r1"]) == pytest.approx(slope**2, rel=1e-5)
    if loss in ("minimax", "non_saturating"):
        assert float(metrics["d_real"]) == pytest.approx(np.mean(1 / (1 + np.exp(-real))), 1e-5)
        assert float(metrics["gan_value"]) == pytest.approx(-np.mean(d_hand(real, fake)), 1e-5)
    else:
        assert float(metrics["real_score"]) == pytest.approx(real.mean(), rel=1e-5)
        assert float(metrics["fake_score"]) == pytest.approx(fake.mean(), rel=1e-5)
    if spectral_norm:
        # The discriminator's update wrote the singular values it found back: |1| and |a|.
        sigmas = [
            float(leaf)
            for path, leaf in jax.tree_util.tree_leaves_with_path(new_state["sn"])
            if str(path[-1].key).endswith("sigma")
        ]
        np.testing.assert_allclose(sorted(sigmas), [a, 1.0], rtol=1e-6)
    else:
        assert new_state == {}

    g_rng = jax.random.PRNGKey(4)
    g_value, (g_metrics, _) = g_objective(model, params, state, {"x": x}, g_rng)
    z = np.asarray(gan.sample_latent(model, g_rng, 4))
    fake = slope * (G_SCALE * z[:, 0] + G_SHIFT) + c
    assert float(g_value) == pytest.approx(np.mean(g_hand(fake)), rel=1e-5)
    key = "d_fake" if loss in ("minimax", "non_saturating") else "fake_score"
    assert set(g_metrics) == {key}


def test_default_loss_is_the_non_saturating_one():
    # The default recipe before the losses became a choice: BCE for the discriminator,
    # -log D(G(z)) for the generator.
    assert plain_gan((1,)).config.loss == "non_saturating"
    assert plain_gan((1,)).config.gp_weight == 10.0
    GANConfig = gan.GANConfig

    assert GANConfig().loss == "non_saturating" and GANConfig().gp_weight == 10.0
    assert GANConfig().non_saturating is True
    assert GANConfig(loss="minimax").non_saturating is False


@pytest.mark.parametrize("loss", gan.LOSSES)
def test_discriminate_is_on_the_scale_of_the_loss(loss):
    model = _linear_gan(loss=loss)
    params = _linear_params(1.0, 0.0, 2.0, 0.5)
    x = jnp.asarray([[-1.0], [0.0], [3.0]])
    logits = 2.0 * np.asarray(x)[:, 0] + 0.5
    expected = 1 / (1 + np.exp(-logits)) if loss in ("minimax", "non_saturating") else logits
    got = gan.discriminate(model, params[gan.DISC], {}, x)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6)


def test_wgan_gp_objective_gradient_matches_finite_differences():
    # The critic's gradient, which differentiates through the input gradient of the penalty
    # (a double backward pass), against central differences of the objective in float64.
    model = plain_gan(
        (3,),
        latent_dim=2,
        generator_features=(8,),
        discriminator_features=(8, 8),
        discriminator_activation="tanh",
        loss="wgan_gp",
        gp_weight=10.0,
    )
    params = gan.init(model, jax.random.PRNGKey(0), {"x": jnp.zeros((2, 3))})
    x = np.random.default_rng(2).normal(size=(6, 3))
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        batch = {"x": jnp.asarray(x)}
        rng = jax.random.PRNGKey(5)

        @jax.jit
        def loss(disc):
            full = {gan.DISC: disc, gan.GEN: params[gan.GEN]}
            return gan.discriminator_objective(model, full, {}, batch, rng)[0]

        grad = jax.grad(loss)(params[gan.DISC])
        leaves, treedef = jax.tree.flatten(params[gan.DISC])
        directions = np.random.default_rng(3)
        eps = 1e-5
        for _ in range(3):
            v = [directions.normal(size=leaf.shape) for leaf in leaves]
            tangent = jax.tree.unflatten(treedef, [jnp.asarray(d) for d in v])
            plus = jax.tree.map(lambda p, t: p + eps * t, params[gan.DISC], tangent)
            minus = jax.tree.map(lambda p, t: p - eps * t, params[gan.DISC], tangent)
            numeric = (float(loss(plus)) - float(loss(minus))) / (2 * eps)
            analytic = sum(
                float(jnp.sum(g * t))
                for g, t in zip(jax.tree.leaves(grad), jax.tree.leaves(tangent), strict=True)
            )
            assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-9)
        # The penalty's share of the gradient is not negligible (the check sees it).
        no_gp = replace(model, gp_weight=0.0)
        plain = jax.grad(
            lambda d: gan.discriminator_objective(
                no_gp, {gan.DISC: d, gan.GEN: params[gan.GEN]}, {}, batch, rng
            )[0]
        )(params[gan.DISC])
        pairs = zip(jax.tree.leaves(grad), jax.tree.leaves(plain), strict=True)
        diff = sum(float(jnp.sum((g - h) ** 2)) for g, h in pairs)
        assert diff > 1e-2


def test_bad_loss_settings():
    with pytest.raises(
        ValueError,
        match=r"GANConfig\.loss must be one of minimax, non_saturating, hinge, wgan_gp, "
        r"least_squares, got 'wgan'",
    ):
        gan.GANConfig(loss="wgan")
    for bad in (-1.0, math.nan, math.inf, True, "10"):
        with pytest.raises(ValueError, match=r"GANConfig\.gp_weight must be a finite number >= 0"):
            gan.GANConfig(gp_weight=bad)
    with pytest.raises(Exception, match=r"GANConfig\.non_saturating has no meaning for"):
        _ = gan.GANConfig(loss="hinge").non_saturating


def test_unknown_loss_on_the_command_line_is_one_line_naming_the_choices(tmp_path, capsys):
    from experiments.train import main

    work = tmp_path / "run"
    argv = ["--model", "gan", "--dataset", "ring8", "--workdir", str(work)]
    code = main([*argv, "--set", "model.loss=bogus"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2
    assert err == [
        "genjax-train: error: model.loss must be one of minimax, non_saturating, hinge, "
        "wgan_gp, least_squares, got 'bogus'"
    ]
    code = main([*argv, "--set", "model.gp_weight=-1"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and "model.gp_weight must be a finite number >= 0" in err[0]
    assert not work.exists()


# ------------------------------------------------------------------ training smoke test

#: loss -> (steps, model settings, optimizer settings) of a short run on the ring. WGAN-GP uses
#: the paper's 5 critic updates per generator update (so 800 generator updates); its penalty
#: weight is 1 rather than 10, with which these 64-unit networks make the generator swing in
#: and out across the ring for the first few thousand steps (Gulrajani et al.'s own toy
#: experiments use 0.1).
_SMOKE = {
    "minimax": (2500, {}, {}),
    "non_saturating": (2500, {}, {}),
    "hinge": (2500, {}, {}),
    "least_squares": (2500, {}, {}),
    "wgan_gp": (4000, {"d_steps": 5, "gp_weight": 1.0}, {"learning_rate": 2e-3, "b2": 0.9}),
}


@pytest.fixture(scope="module")
def ring8():
    from genjax.data import MIXTURES, load

    x = np.asarray(load("ring8", "train").features["x"], np.float32)
    return MIXTURES["ring8"], x


@pytest.mark.slow
@pytest.mark.parametrize("loss", sorted(_SMOKE))
def test_short_training_moves_the_samples_onto_the_ring(loss, ring8):
    """A few thousand steps through the engine with each loss, the task built as the command
    builds it (``GANObjective.run_task``): the generator's samples, which start in a blob
    around the origin (mean distance to the nearest of the 8 modes about 1.46), end on the
    ring of radius 2 and gathered at its modes, at under a quarter of that distance (0.09 to
    0.17 of it over four seeds). Points spread evenly over the ring would be at 0.39, about
    0.27 of the start; a generator loss of the wrong sign, a discriminator loss with its
    targets swapped or one that does not train the discriminator drives the samples off the
    ring, into the origin, or at best onto a level curve of the untrained discriminator (0.28
    or more)."""
    from genjax.config import OptimizerConfig
    from genjax.train import Engine, init_state

    spec, x = ring8
    steps, model_kw, opt_kw = _SMOKE[loss]
    m = plain_config(**RING, loss=loss, **model_kw)
    optimizer = OptimizerConfig(**{"learning_rate": 1e-3, "b1": 0.5, **opt_kw})
    objective = m.objective(DataInfo(shape=(2,), num_classes=8, name="ring8"))
    # What the command builds: OptimizerConfig.build as the optimizer factory.
    task = objective.run_task(optimizer.build, steps)
    model = objective.model
    assert model.config.loss == loss
    engine = Engine(task)
    state = engine.place_state(init_state(task, jax.random.PRNGKey(0), {"x": x[:256]}))

    def nearest_and_radius(state):
        samples = np.asarray(
            gan.sample(model, engine.params(state)[gan.GEN], jax.random.PRNGKey(1), 2000)
        )
        dist = np.linalg.norm(samples[:, None, :] - spec.means[None], axis=-1).min(axis=1)
        return dist.mean(), np.linalg.norm(samples, axis=1).mean()

    before, _ = nearest_and_radius(state)
    data = engine.place_resident({"x": jnp.asarray(x)})
    state, metrics = engine.run_on_device(state, data, num_steps=steps, batch_size=256, seed=0)
    after, radius = nearest_and_radius(state)
    assert np.all(np.isfinite(metrics["disc/loss"])) and np.all(np.isfinite(metrics["gen/loss"]))
    assert before > 1.2
    assert after < 0.25 * before, (loss, before, after)
    assert 1.7 < radius < 2.3, (loss, radius)


def test_a_config_saved_before_the_loss_option_still_loads():
    import dataclasses

    from experiments.models.gan import SPEC, GANEval
    from genjax.config import RunConfig, from_dict

    config = SPEC.configs["ring8"]()
    saved = json.loads(config.to_json())
    for old, loss in ((True, "non_saturating"), (False, "minimax")):
        legacy = dict(saved, model_config=dict(saved["model_config"]))
        del legacy["model_config"]["loss"]
        legacy["model_config"]["non_saturating"] = old
        back = from_dict(legacy, gan.GANConfig, GANEval)
        assert isinstance(back, RunConfig) and back.model_config.loss == loss
        assert back.model_config == dataclasses.replace(config.model_config, loss=loss)
        assert back.evaluation == config.evaluation


def test_a_config_saved_with_the_evaluation_settings_among_the_model_s_still_loads():
    # Before the eval section, config.json kept eval_samples & co. in model_config (and, older
    # still, the boolean non_saturating instead of loss).
    import dataclasses

    from experiments.models.gan import SPEC, GANEval
    from genjax.config import from_dict

    config = dataclasses.replace(SPEC.configs["digits"](), evaluation=GANEval(eval_samples=500))
    saved = json.loads(config.to_json())
    eval_values = saved.pop("eval")
    model_values = {k: v for k, v in saved["model_config"].items() if k != "loss"}
    legacy = dict(saved, model_config={**model_values, **eval_values, "non_saturating": True})
    back = from_dict(legacy, gan.GANConfig, GANEval)
    assert back.model_config == config.model_config
    assert back.evaluation == GANEval(eval_samples=500)


# ------------------------------------------------------------------ the model contract

#: (field, bad value, the message's start after "GANConfig.<field> ").
_BAD_CONFIGS = [
    ("architecture", "wgan", "must be one of"),
    ("latent_dim", 0, "must be an int >= 1"),
    ("latent_dim", 2.5, "must be an int >= 1"),
    ("generator_features", (), "must be a non-empty sequence of ints >= 1"),
    ("generator_features", "256", "must be a sequence of ints >= 1"),
    ("discriminator_features", (64, 0), "must be a non-empty sequence of ints >= 1"),
    ("generator_activation", "swishy", "must be one of"),
    ("discriminator_activation", "swishy", "must be one of"),
    ("output", "softmax", "must be one of"),
    ("generator_norm", "batch", "must be one of"),
    ("discriminator_norm", "batch", "must be one of"),
    ("kernel_size", 0, "must be an int >= 1"),
    ("spectral_norm", 1, "must be a bool"),
    ("loss", "wgan", "must be one of minimax, non_saturating"),
    ("gp_weight", -1.0, "must be a finite number >= 0"),
    ("r1_gamma", math.nan, "must be a finite number >= 0"),
    ("r1_steps", -1, "must be an int >= 0"),
    ("d_steps", 0, "must be an int >= 1"),
    ("ema_decay", 1.0, "must be a finite number in [0, 1)"),
    ("ema_decay", -0.1, "must be a finite number in [0, 1)"),
    ("d_learning_rate", 0.0, "must be a finite number > 0 (or None)"),
    ("g_learning_rate", -1e-3, "must be a finite number > 0 (or None)"),
    ("g_learning_rate", True, "must be a finite number > 0 (or None)"),
]


@pytest.mark.parametrize(("field", "value", "message"), _BAD_CONFIGS)
def test_each_config_rule_raises_a_value_error_naming_the_field(field, value, message):
    with pytest.raises(ValueError) as info:
        gan.GANConfig(**{field: value})
    assert str(info.value).startswith(f"GANConfig.{field} {message}"), str(info.value)


def test_config_defaults_are_the_experiment_s_recipe_and_the_family_is_registered():
    from genjax import models

    c = gan.GANConfig()
    assert models.config_class("gan") is gan.GANConfig and c.family == "gan"
    assert (c.latent_dim, c.generator_features, c.discriminator_features) == (
        16,
        (256, 256, 256),
        (256, 256, 256),
    )
    assert (c.r1_gamma, c.r1_steps, c.d_steps, c.ema_decay) == (0.1, 8000, 1, 0.999)
    assert c.d_learning_rate is None and c.g_learning_rate is None
    assert not c.takes_images and gan.GANConfig(architecture="dcgan").takes_images
    # Lists (config.json) become tuples, and the config is hashable (a jit static argument).
    listed = gan.GANConfig(generator_features=[8, 8])
    assert listed.generator_features == (8, 8) and hash(listed) == hash(
        gan.GANConfig(generator_features=(8, 8))
    )
    assert gan.GANConfig.upgrade_saved({"non_saturating": False}) == {"loss": "minimax"}


@pytest.mark.parametrize(
    ("config", "shape", "message"),
    [
        (
            dict(architecture="dcgan"),
            (64,),
            r"GANConfig\.architecture='dcgan' needs images \(H, W, C\), but the input shape is "
            r"\(64,\)",
        ),
        (
            dict(architecture="dcgan", generator_features=(8, 8, 8), discriminator_features=(8,)),
            (28, 28, 1),
            r"GANConfig\.generator_features \(dcgan\): 3 stride-2 stage\(s\) .* \(28, 28, 1\)",
        ),
        (
            dict(architecture="dcgan", generator_features=(8,), discriminator_features=(8, 8, 8)),
            (28, 28, 1),
            r"GANConfig\.discriminator_features \(dcgan\): 3 stride-2 stage\(s\)",
        ),
    ],
)
def test_objective_refuses_a_shape_the_architecture_cannot_take(config, shape, message):
    with pytest.raises(ValueError, match=message):
        gan.GANConfig(**config).objective(DataInfo(shape=shape))


def _ring_batch(n=64, seed=0):
    angle = np.random.default_rng(seed).uniform(0, 2 * np.pi, n)
    return {"x": jnp.asarray(np.stack([2 * np.cos(angle), 2 * np.sin(angle)], 1), jnp.float32)}


def test_task_trains_the_discriminator_against_a_fixed_generator():
    # With the generator's learning rate 0 the game is the discriminator's alone: its loss,
    # log 4 at the start, falls as it learns to tell the ring from the generator's blob.
    from genjax.train import Engine, init_state

    config = gan.GANConfig(latent_dim=2, generator_features=(16,), discriminator_features=(32,))
    objective = config.objective(DataInfo(shape=(2,)))
    task = objective.task({"discriminator": optax.adam(1e-2), "generator": optax.sgd(0.0)})
    assert [(p.name, p.every, p.stateful) for p in task.players] == [
        (gan.DISC, 1, True),
        (gan.GEN, 1, True),
    ]
    engine = Engine(task)
    batch = _ring_batch()
    state = engine.place_state(init_state(task, jax.random.PRNGKey(0), batch))
    gen_before = jax.tree.map(np.asarray, engine.params(state)[gan.GEN])
    losses = []
    for _ in range(40):
        state, metrics = engine.step(state, batch)
        losses.append(float(metrics["disc/loss"]))
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.2, losses
    gen_after = engine.params(state)[gan.GEN]
    for a, b in zip(jax.tree.leaves(gen_before), jax.tree.leaves(gen_after), strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))


def test_task_takes_one_optimizer_for_both_players_or_a_mapping_of_two():
    objective = gan.GANConfig(d_steps=3).objective(DataInfo(shape=(2,)))
    opt = optax.adam(1e-3)
    task = objective.task(opt)
    assert [p.optimizer for p in task.players] == [opt, opt]
    assert [p.every for p in task.players] == [1, 3]
    with pytest.raises(ValueError, match=r"keys \['discriminator', 'generator'\], got \['disc'"):
        objective.task({"disc": opt, "gen": opt})


def test_run_task_builds_the_optimizers_of_the_two_time_scales():
    calls = []

    def factory(steps, learning_rate):
        calls.append((steps, learning_rate))
        return optax.sgd(1.0)

    config = gan.GANConfig(d_steps=5, d_learning_rate=4e-4, g_learning_rate=1e-4)
    task = config.objective(DataInfo(shape=(2,))).run_task(factory, 1003)
    # The generator's schedule spans its own updates, one every d_steps-th step.
    assert calls == [(1003, 4e-4), (200, 1e-4)]
    assert [p.every for p in task.players] == [1, 5]
    calls.clear()
    gan.GANConfig(d_steps=8).objective(DataInfo(shape=(2,))).run_task(factory, 3)
    assert calls == [(3, None), (1, None)]


def test_inference_methods_on_the_engine_s_parameters():
    from genjax.train import init_state

    config = gan.GANConfig(latent_dim=3, generator_features=(8,), discriminator_features=(8,))
    objective = config.objective(DataInfo(shape=(2,)))
    assert objective.model == gan.GAN(config, (2,)) and objective.family == "gan"
    assert objective.functions() == ("sample", "sample_raw", "discriminate")
    task = objective.task(optax.adam(1e-3))
    state = init_state(task, jax.random.PRNGKey(0), _ring_batch(4))
    params, model_state = state.params, state.model_state
    assert sorted(model_state) == ["ema", "step"]
    # Move the raw generator away from its EMA: sample reads the EMA, sample_raw the raw one.
    moved = {**params, gan.GEN: jax.tree.map(lambda a: a + 1.0, params[gan.GEN])}
    rng = jax.random.PRNGKey(1)
    ema = objective.sample(moved, model_state, rng, 7)
    raw = objective.sample_raw(moved, model_state, rng, 7)
    assert ema.shape == raw.shape == (7, 2)
    np.testing.assert_array_equal(ema, gan.sample(objective.model, model_state["ema"], rng, 7))
    np.testing.assert_array_equal(raw, gan.sample(objective.model, moved[gan.GEN], rng, 7))
    assert np.max(np.abs(np.asarray(ema) - np.asarray(raw))) > 0.1
    d = np.asarray(objective.discriminate(moved, model_state, np.asarray(ema)))
    assert d.shape == (7,) and np.all((d > 0) & (d < 1))
    # Without an EMA, sample is the raw generator's.
    plain = gan.GANConfig(**{**dataclasses.asdict(config), "ema_decay": 0.0})
    plain_objective = plain.objective(DataInfo(shape=(2,)))
    np.testing.assert_array_equal(
        plain_objective.sample(moved, {}, rng, 7), plain_objective.sample_raw(moved, {}, rng, 7)
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("eval_samples", 0, "eval.eval_samples must be an int >= 1, got 0"),
        ("image_samples", -5, "eval.image_samples must be an int >= 1, got -5"),
        ("classifier_steps", 0, "eval.classifier_steps must be an int >= 1, got 0"),
        ("classifier_seed", 1.5, "eval.classifier_seed must be an int >= 0, got 1.5"),
    ],
)
def test_eval_settings_are_checked(field, value, message):
    from experiments.models.gan import GANEval
    from genjax.config import ConfigError

    with pytest.raises(ConfigError) as info:
        GANEval(**{field: value})
    assert str(info.value) == message
