"""Tests for the class-conditional GAN of genjax.models.gan against independent oracles.

Oracles: the projection discriminator ``w . phi(x) + b + V[y] . phi(x)`` (Miyato & Koyama,
2018, eq. 3) and the generator ``MLP([z, E y])`` written out in NumPy from the networks'
parameters; the two players' losses recomputed from those forward passes; the R1 penalty of a
one-hidden-layer tanh discriminator from its closed-form input gradient
``W_0 ((1 - h^2) * (w + V[y]))``; the geometry of the 8-mode ring after a short training (each
class's samples at its own mode); and the command's run read back by ``genjax.load_run``.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from gan_settings import RING, plain_config

from genjax.models import gan
from genjax.models.base import DataInfo

K = 3


def conditional(data_shape=(2,), num_classes=K, **kw) -> gan.GANObjective:
    settings = dict(
        latent_dim=2,
        generator_features=(5,),
        discriminator_features=(4,),
        generator_activation="tanh",
        discriminator_activation="tanh",
        r1_gamma=0.0,
        r1_steps=0,
        ema_decay=0.0,
        embedding_dim=3,
        conditional=True,
    )
    config = gan.GANConfig(**{**settings, **kw})
    return config.objective(DataInfo(shape=data_shape, num_classes=num_classes))


def _random_params(objective, seed=0):
    """Initial parameters with every leaf redrawn (so biases are not zero)."""
    batch = {"x": jnp.zeros((2, 2)), "label": jnp.zeros((2,), jnp.int32)}
    params = objective.init(jax.random.PRNGKey(seed), batch)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    pairs = zip(keys, leaves, strict=True)
    leaves = [jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in pairs]
    return jax.tree.unflatten(tree, leaves)


def _np(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _d_numpy(params, x, y):
    """The projection discriminator by hand; returns the logits and the hidden layer."""
    p = _np(params[gan.DISC]["params"]["net"])
    dense = p["mlp"]["dense_0"]
    h = np.tanh(x @ dense["kernel"] + dense["bias"])
    w, b = p["head"]["kernel"][:, 0], p["head"]["bias"][0]
    v = p["embed"]["embedding"][y]
    return h @ w + b + np.sum(v * h, axis=1), h


def _g_numpy(params, z, y):
    p = _np(params[gan.GEN]["params"])
    inputs = np.concatenate([z, p["embed"]["embedding"][y]], axis=1)
    d0, d1 = p["mlp"]["dense_0"], p["mlp"]["dense_1"]
    return np.tanh(inputs @ d0["kernel"] + d0["bias"]) @ d1["kernel"] + d1["bias"]


def _softplus(t):
    return np.logaddexp(0.0, t)


def test_projection_discriminator_is_the_inner_product_plus_the_linear_term():
    objective = conditional()
    params = _random_params(objective)
    x = np.random.default_rng(0).normal(size=(6, 2))
    y = np.array([0, 1, 2, 2, 1, 0])
    expected, _ = _d_numpy(params, x, y)
    logits = gan.discriminator_logits(objective.model, params[gan.DISC], {}, jnp.asarray(x), y)
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-5, atol=1e-5)
    # The label matters: the same x under another class gives another logit.
    other = gan.discriminator_logits(objective.model, params[gan.DISC], {}, jnp.asarray(x), 2 - y)
    assert np.max(np.abs(np.asarray(other)[:2] - np.asarray(logits)[:2])) > 1e-3
    # discriminate is sigmoid(logits) for the (default) non-saturating loss.
    d = objective.discriminate(params, {}, x, y)
    np.testing.assert_allclose(np.asarray(d), 1 / (1 + np.exp(-expected)), rtol=1e-5)


def test_conditional_generator_reads_z_and_the_class_embedding():
    objective = conditional()
    params = _random_params(objective)
    model, rng = objective.model, jax.random.PRNGKey(3)
    labels = np.array([0, 1, 2, 0, 1])
    samples = np.asarray(objective.sample(params, {}, rng, 5, labels=labels))
    z = np.asarray(gan.sample_latent(model, rng, 5), np.float64)
    np.testing.assert_allclose(samples, _g_numpy(params, z, labels), rtol=1e-5, atol=1e-5)
    # Same z, another class: another sample.
    moved = np.asarray(objective.sample(params, {}, rng, 5, labels=(labels + 1) % K))
    assert np.min(np.linalg.norm(moved - samples, axis=1)) > 1e-3
    # Without labels the classes cycle: y_i = i mod K.
    np.testing.assert_array_equal(
        np.asarray(objective.sample(params, {}, rng, 5)),
        np.asarray(objective.sample(params, {}, rng, 5, labels=np.arange(5) % K)),
    )


@pytest.mark.parametrize("loss", ["non_saturating", "wgan_gp"])
def test_objectives_use_the_batch_labels_for_real_and_generated_examples(loss):
    objective = conditional(loss=loss, gp_weight=0.0)
    params = _random_params(objective)
    model, rng = objective.model, jax.random.PRNGKey(5)
    x = np.random.default_rng(1).normal(size=(4, 2))
    y = np.array([2, 0, 1, 2])
    batch = {"x": jnp.asarray(x, jnp.float32), "label": jnp.asarray(y)}
    z = np.asarray(gan.sample_latent(model, rng, 4), np.float64)
    fake = _g_numpy(params, z, y)
    real_logits, _ = _d_numpy(params, x, y)
    fake_logits, _ = _d_numpy(params, fake, y)
    if loss == "non_saturating":
        d_expected = np.mean(_softplus(-real_logits) + _softplus(fake_logits))
        g_expected = np.mean(_softplus(-fake_logits))
    else:  # the penalty's weight is 0: the critic's loss alone
        d_expected = np.mean(fake_logits - real_logits)
        g_expected = np.mean(-fake_logits)
    d_loss, _ = gan.discriminator_objective(model, params, {}, batch, rng)
    g_loss, _ = gan.generator_objective(model, params, {}, batch, rng)
    assert float(d_loss) == pytest.approx(d_expected, rel=1e-5, abs=1e-5)
    assert float(g_loss) == pytest.approx(g_expected, rel=1e-5, abs=1e-5)


def test_r1_penalty_at_the_examples_labels_matches_the_closed_form_gradient():
    objective = conditional(r1_gamma=1.0)
    params = _random_params(objective)
    x = np.random.default_rng(2).normal(size=(5, 2))
    y = np.array([0, 1, 2, 1, 0])
    _, h = _d_numpy(params, x, y)
    p = _np(params[gan.DISC]["params"]["net"])
    direction = p["head"]["kernel"][:, 0] + p["embed"]["embedding"][y]  # [B, F]
    grad = ((1 - h**2) * direction) @ p["mlp"]["dense_0"]["kernel"].T  # [B, D]
    r1 = gan.r1_penalty(objective.model, params[gan.DISC], {}, jnp.asarray(x), y)
    np.testing.assert_allclose(np.asarray(r1), np.sum(grad**2, axis=1), rtol=1e-4)


def test_spectrally_normalised_conditional_pair_trains_a_step():
    from genjax.train import Engine, init_state

    objective = conditional(spectral_norm=True)
    task = objective.task(optax.adam(1e-3))
    batch = {"x": jnp.ones((6, 2)), "label": jnp.arange(6, dtype=jnp.int32) % K}
    engine = Engine(task)
    state = engine.place_state(init_state(task, jax.random.PRNGKey(0), batch))
    sn_before = jax.tree.map(np.asarray, state.model_state["sn"])
    state, metrics = engine.step(state, batch)
    assert np.isfinite(float(metrics["disc/loss"])) and np.isfinite(float(metrics["gen/loss"]))
    moved = jax.tree.map(
        lambda a, b: np.max(np.abs(a - np.asarray(b))), sn_before, state.model_state["sn"]
    )
    assert max(jax.tree.leaves(moved)) > 0  # the power iteration advanced


def test_dcgan_conditional_pair_shapes():
    objective = gan.GANConfig(
        architecture="dcgan",
        latent_dim=4,
        generator_features=(8, 4),
        discriminator_features=(4, 8),
        output="sigmoid",
        conditional=True,
    ).objective(DataInfo(shape=(8, 8, 1), num_classes=10))
    labels = jnp.arange(4, dtype=jnp.int32)
    batch = {"x": jnp.zeros((4, 8, 8, 1)), "label": labels}
    params = objective.init(jax.random.key(0), batch)
    assert params[gan.DISC]["params"]["net"]["embed"]["embedding"].shape == (10, 2 * 2 * 8)
    assert params[gan.GEN]["params"]["embed"]["embedding"].shape == (10, 32)
    samples = objective.sample(
        params, objective.init_model_state(None, batch, params), jax.random.key(1), 4, labels
    )
    assert samples.shape == (4, 8, 8, 1)
    d = objective.discriminate(params, {}, samples, labels)
    assert d.shape == (4,) and np.all((np.asarray(d) > 0) & (np.asarray(d) < 1))


def test_bad_conditional_input():
    objective = conditional()
    params = _random_params(objective)
    with pytest.raises(ValueError, match=r"GANConfig.conditional=True needs labelled data"):
        gan.GANConfig(conditional=True).objective(DataInfo(shape=(2,)))
    with pytest.raises(ValueError, match=r"GANConfig.conditional must be a bool"):
        gan.GANConfig(conditional=1)
    with pytest.raises(ValueError, match=r"GANConfig.embedding_dim must be an int >= 1"):
        gan.GANConfig(embedding_dim=0)
    with pytest.raises(ValueError, match=r'needs batch\["label"\]'):
        gan.discriminator_objective(
            objective.model, params, {}, {"x": jnp.zeros((2, 2))}, jax.random.key(0)
        )
    with pytest.raises(ValueError, match=r"gan.sample: labels must lie in \[0, 3\)"):
        objective.sample(params, {}, jax.random.key(0), 2, labels=[0, 3])
    with pytest.raises(ValueError, match=r"gan.sample: labels must be int \[2\]"):
        objective.sample(params, {}, jax.random.key(0), 2, labels=[0, 1, 2])
    plain = gan.GANConfig(latent_dim=2, generator_features=(4,), discriminator_features=(4,))
    plain = plain.objective(DataInfo(shape=(2,), num_classes=K))
    assert plain.model.num_classes is None  # the labels of the data are not used
    plain_params = plain.init(jax.random.key(0), {"x": jnp.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"labels were given to an unconditional GAN"):
        plain.sample(plain_params, {}, jax.random.key(0), 2, labels=[0, 1])


def test_short_training_puts_each_class_s_samples_at_its_own_mode():
    """On the 8-mode ring, the label of a point is its mode. After a short conditional run
    the samples requested for class c are nearest to mode c (an unconditioned generator
    would give 1/8 of them there, a generator ignoring the label at most the share of
    its largest mode)."""
    from genjax.config import OptimizerConfig
    from genjax.data import MIXTURES, load
    from genjax.train import Engine, init_state

    spec = MIXTURES["ring8"]
    train = load("ring8", "train").features
    data = {"x": jnp.asarray(train["x"], jnp.float32), "label": jnp.asarray(train["label"])}
    config = plain_config(**RING, r1_gamma=0.1, conditional=True, embedding_dim=8)
    objective = config.objective(DataInfo(shape=(2,), num_classes=8, name="ring8"))
    steps = 1500
    task = objective.run_task(OptimizerConfig(learning_rate=1e-3, b1=0.5).build, steps)
    engine = Engine(task)
    state = engine.place_state(
        init_state(task, jax.random.PRNGKey(0), {k: v[:256] for k, v in data.items()})
    )
    state, _ = engine.run_on_device(
        state, engine.place_resident(data), num_steps=steps, batch_size=256, seed=0
    )
    labels = np.arange(800) % 8
    samples = np.asarray(
        objective.sample(engine.params(state), state.model_state, jax.random.key(1), 800, labels)
    )
    nearest = np.argmin(np.linalg.norm(samples[:, None] - spec.means[None], axis=-1), axis=1)
    accuracy = np.mean(nearest == labels)
    assert accuracy > 0.9, np.bincount(nearest[labels == 0], minlength=8)


@pytest.mark.slow
def test_conditional_run_through_the_command_reports_and_loads_back(tmp_path):
    import genjax
    from experiments.train import main

    work = tmp_path / "cgan"
    settings = (
        "model.conditional=true",
        "train.steps=40",
        "train.eval_every=40",
        "train.checkpoint_every=40",
        "train.log_every=20",
        "eval.image_samples=500",
        "eval.classifier_steps=50",
    )
    argv = ["--model", "gan", "--dataset", "digits", "--workdir", str(work), "--quiet"]
    for item in settings:
        argv += ["--set", item]
    assert main(argv) == 0
    m = json.loads((work / "summary.json").read_text())["metrics"]
    assert 0 <= m["conditional_accuracy"] <= 1
    for name in ("class_conditional_accuracy", "class_precision_classifier"):
        assert len(m[name]) == 10
    for name in ("kid_classifier", "precision_classifier", "coverage_classifier"):
        assert np.isfinite(m[name])
    run = genjax.load_run(work)
    rng = jax.random.key(0)
    labels = np.array([3, 3, 7])
    samples = np.asarray(run.sample(rng, 3, labels=labels))
    assert samples.shape == (3, 64)
    np.testing.assert_array_equal(
        samples, run.objective.sample(run.params, run.model_state, rng, 3, labels=labels)
    )
    other = np.asarray(run.sample(rng, 3, labels=np.array([0, 0, 0])))
    assert np.min(np.abs(other - samples).max(axis=1)) > 1e-4
