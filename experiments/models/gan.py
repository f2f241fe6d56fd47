"""The GAN in the experiment command: mode coverage on the 2-D mixtures, class coverage and a
Fréchet distance on images.

    python -m experiments.train --model gan --dataset ring8 --workdir runs/gan-ring8
    python -m experiments.train --model gan --dataset grid25 --workdir runs/gan-grid25
    python -m experiments.train --model gan --dataset digits --workdir runs/gan-digits
    python -m experiments.gan_table --seeds 5     # 5 seeds on ring8 and grid25 + the papers

The discriminator and the generator are two players of one engine task (``d_steps``
discriminator updates per generator update, each player with its own Adam and learning rate);
the stabilisers of :mod:`genjax.models.gan` are config fields.

The loss is ``model.loss``: ``non_saturating`` (the default), ``minimax``, ``hinge``,
``wgan_gp`` or ``least_squares`` (formulas and references in :mod:`genjax.models.gan`), e.g.

    python -m experiments.train --model gan --dataset ring8 --workdir runs/gan-ring8-hinge \
        --set model.loss=hinge
    python -m experiments.train --model gan --dataset ring8 --workdir runs/gan-ring8-wgan \
        --set model.loss=wgan_gp --set model.d_steps=5 --set model.r1_gamma=0 \
        --set optimizer.learning_rate=1e-4 --set optimizer.b1=0 --set optimizer.b2=0.9

The second line is the recipe of Gulrajani et al. (2017, Alg. 1): 5 critic updates per
generator update, ``model.gp_weight=10`` (the default), Adam (1e-4, 0, 0.9), no R1. The
configs below keep their tuned non-saturating recipe; a different loss usually wants its own
learning rates and step counts, which the command leaves to the user.

The default recipe, the same for both mixtures: MLPs of three 256-unit layers, Adam (lr 1e-3,
b1 = 0.5), batch 256, the non-saturating loss, an R1 penalty (gamma = 0.1) during the first
8,000 steps only (of 16,000 on the ring, 24,000 on the grid), and sampling from an
exponential moving average of the generator's weights (decay 0.999). R1 keeps the early
game from collapsing onto a few modes; switched off, it lets the discriminator sharpen the
samples down to the modes' 0.02 / 0.05 standard deviations, where the high-quality criterion
(3 standard deviations) is measured.

Metrics on the 2-D mixtures (``genjax.data.mode_statistics``, the VEEGAN / PacGAN protocol):
``modes_captured`` (modes that are the nearest mode of at least one high-quality sample),
``high_quality_fraction`` (samples within 3 standard deviations of their nearest mode) and
``reverse_kl`` (the KL divergence of the high-quality samples' mode histogram from the uniform
one), over ``model.eval_samples`` generated points (2,500 by default, as in those papers);
the same three for the raw generator weights under ``raw_*`` when an EMA is kept.

Metrics on images (``digits``, ``mnist``): an evaluation classifier (``genjax.eval``, an MLP
trained on the train split, seeded and saved under ``classifier/``) labels
``model.image_samples`` generated images. ``class_fractions`` is their class histogram,
``class_coverage`` the number of classes whose share lies within a factor 1.5 of the uniform
share (5% to 15% for 10 classes), ``min_class_fraction`` / ``max_class_fraction`` its
extremes; ``frechet_distance`` is the Fréchet distance between Gaussians fitted to the
classifier's last hidden layer on the generated images and on the test split, reported beside
``frechet_train_test`` (the same distance between the train and the test split: what a
perfect generator would reach, up to sampling noise).

Figures: for 2-D data, the samples over the true modes with the discriminator's ``D(x)`` as
a background, every ``train.eval_every`` steps (``snapshots/step_XXXXXX.png``) and at the end
(``samples.png``), and the mode statistics over training (``mode_coverage.png``); for
images, a sample grid and the class histogram; for both, the training curves of both players.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments.config import ConfigError, DataConfig, OptimizerConfig, RunConfig
from experiments.registry import DataInfo, EvalContext, ModelSpec
from genjax import viz
from genjax.data import MIXTURES
from genjax.data.synthetic import mode_statistics
from genjax.eval import ClassifierConfig, frechet_distance, train_classifier
from genjax.models import gan
from genjax.nn import ACTIVATIONS, NORMS
from genjax.train import Player, Task, TrainConfig


@dataclasses.dataclass(frozen=True)
class GANConfig:
    """GAN hyperparameters and evaluation settings.

    Attributes:
      architecture: mlp | dcgan (dcgan needs images, data.flatten=false).
      latent_dim: dimension of z ~ N(0, I) (>= 1).
      generator_features: generator hidden widths (mlp) or channels coarse to fine (dcgan).
      discriminator_features: discriminator hidden widths (mlp) or channels fine to coarse.
      generator_activation: generator hidden activation.
      discriminator_activation: discriminator hidden activation.
      output: generator output activation: identity (2-D points) | sigmoid (pixels) | tanh.
      generator_norm: dcgan generator normalisation: none | layer | group.
      discriminator_norm: dcgan discriminator normalisation: none | layer | group.
      kernel_size: dcgan kernel size.
      spectral_norm: spectrally normalise the discriminator's weights (Miyato et al., 2018).
      loss: the GAN loss: non_saturating | minimax | hinge | wgan_gp | least_squares
        (genjax.models.gan; wgan_gp is usually run with d_steps=5, r1_gamma=0 and Adam
        lr 1e-4, b1=0, b2=0.9).
      gp_weight: weight lambda of the WGAN-GP gradient penalty (wgan_gp only; Gulrajani et
        al., 2017: 10).
      r1_gamma: R1 penalty weight on real data (0 = off; Mescheder et al., 2018).
      r1_steps: apply R1 only during the first r1_steps steps (0 = throughout).
      d_steps: discriminator updates per generator update (k >= 1).
      ema_decay: EMA decay of the generator's weights used for sampling (0 = no EMA).
      d_learning_rate: the discriminator's learning rate (none = optimizer.learning_rate).
      g_learning_rate: the generator's learning rate (none = optimizer.learning_rate).
      eval_samples: generated points for the 2-D mode statistics.
      image_samples: generated images for the class histogram and the Fréchet distance.
      classifier_steps: training steps of the evaluation classifier (images).
      classifier_seed: seed of the evaluation classifier.
    """

    architecture: str = "mlp"
    latent_dim: int = 16
    generator_features: tuple[int, ...] = (256, 256, 256)
    discriminator_features: tuple[int, ...] = (256, 256, 256)
    generator_activation: str = "relu"
    discriminator_activation: str = "leaky_relu"
    output: str = "identity"
    generator_norm: str = "none"
    discriminator_norm: str = "none"
    kernel_size: int = 4
    spectral_norm: bool = False
    loss: str = "non_saturating"
    gp_weight: float = 10.0
    r1_gamma: float = 0.1
    r1_steps: int = 8000
    d_steps: int = 1
    ema_decay: float = 0.999
    d_learning_rate: float | None = None
    g_learning_rate: float | None = None
    eval_samples: int = 2500
    image_samples: int = 10_000
    classifier_steps: int = 1000
    classifier_seed: int = 0

    def __post_init__(self):
        choices = {
            "architecture": gan.ARCHITECTURES,
            "output": gan.OUTPUTS,
            "generator_norm": NORMS,
            "discriminator_norm": NORMS,
            "generator_activation": tuple(ACTIVATIONS),
            "discriminator_activation": tuple(ACTIVATIONS),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"model.{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        for name in ("latent_dim", "kernel_size", "d_steps", "eval_samples", "image_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.classifier_steps < 1:
            raise ConfigError(f"model.classifier_steps must be >= 1, got {self.classifier_steps}")
        for name in ("generator_features", "discriminator_features"):
            widths = getattr(self, name)
            if not widths or any(w < 1 for w in widths):
                raise ConfigError(f"model.{name} must hold positive widths, got {widths}")
        if not self.r1_gamma >= 0:
            raise ConfigError(f"model.r1_gamma must be >= 0, got {self.r1_gamma}")
        if self.r1_steps < 0:
            raise ConfigError(f"model.r1_steps must be >= 0, got {self.r1_steps}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"model.ema_decay must be in [0, 1), got {self.ema_decay}")
        for name in ("d_learning_rate", "g_learning_rate"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"model.{name} must be > 0 (or none), got {value}")
        # loss and gp_weight are checked once, by genjax.models.gan.GAN (model_from_config),
        # before the work directory is touched.

    @staticmethod
    def upgrade_saved(values: dict) -> dict:
        """A ``config.json`` written before ``loss`` existed held ``non_saturating`` (a
        boolean): read it as ``loss``, so that such runs still load."""
        values = dict(values)
        if "non_saturating" in values and "loss" not in values:
            values["loss"] = "non_saturating" if values.pop("non_saturating") else "minimax"
        return values

    @property
    def non_saturating(self) -> bool:
        """Read-only, from ``loss``, for code written against the former boolean field: True
        for ``non_saturating``, False for ``minimax``; the other losses have no such reading."""
        if self.loss not in ("minimax", "non_saturating"):
            raise ConfigError(
                f"model.non_saturating has no meaning for model.loss={self.loss!r}; read model.loss"
            )
        return self.loss == "non_saturating"


def _mixture(name: str, steps: int) -> RunConfig:
    return RunConfig(
        model="gan",
        dataset=name,
        model_config=GANConfig(),
        train=TrainConfig(
            steps=steps,
            batch_size=256,
            fuse_steps=500,
            data_on_device=True,
            log_every=500,
            eval_every=steps // 8,
            checkpoint_every=steps // 4,
        ),
        optimizer=OptimizerConfig(learning_rate=1e-3, b1=0.5),
        data=DataConfig(),
    )


def _ring8() -> RunConfig:
    return _mixture("ring8", 16_000)


def _grid25() -> RunConfig:
    # 25 modes need longer than 8 to sharpen once R1 is off (at 16k steps the high-quality
    # fraction is still rising).
    return _mixture("grid25", 24_000)


def _digits() -> RunConfig:
    # Flattened 8x8 digits in [0, 1]: an MLP pair with a sigmoid output.
    return RunConfig(
        model="gan",
        dataset="digits",
        model_config=GANConfig(
            latent_dim=32,
            output="sigmoid",
            generator_features=(256, 256),
            discriminator_features=(256, 256),
            r1_gamma=1.0,
            r1_steps=0,
        ),
        train=TrainConfig(
            steps=6000,
            batch_size=128,
            fuse_steps=250,
            data_on_device=True,
            log_every=250,
            eval_every=1500,
            checkpoint_every=2000,
        ),
        optimizer=OptimizerConfig(learning_rate=2e-4, b1=0.5),
        data=DataConfig(flatten=True),
    )


def _mnist() -> RunConfig:
    # DCGAN pair on 28x28x1 (two stride-2 stages: 7x7 -> 14x14 -> 28x28).
    return dataclasses.replace(
        _digits(),
        dataset="mnist",
        model_config=GANConfig(
            architecture="dcgan",
            latent_dim=64,
            output="sigmoid",
            generator_features=(128, 64),
            discriminator_features=(64, 128),
            r1_gamma=1.0,
            r1_steps=0,
        ),
        train=TrainConfig(
            steps=20_000,
            batch_size=128,
            fuse_steps=250,
            log_every=250,
            eval_every=5000,
            checkpoint_every=5000,
        ),
        data=DataConfig(flatten=False),
    )


def model_from_config(m: GANConfig, info: DataInfo) -> gan.GAN:
    """The :class:`~genjax.models.gan.GAN` of a config and the data's shape (``ConfigError``
    when the shape does not fit the architecture)."""
    if m.architecture == "dcgan" and len(info.shape) != 3:
        raise ConfigError(
            f"model.architecture=dcgan needs images [H, W, C]; set data.flatten=false "
            f"(the input shape is {info.shape})"
        )
    try:
        return gan.GAN(
            data_shape=tuple(info.shape),
            latent_dim=m.latent_dim,
            architecture=m.architecture,
            generator_features=tuple(m.generator_features),
            discriminator_features=tuple(m.discriminator_features),
            generator_activation=m.generator_activation,
            discriminator_activation=m.discriminator_activation,
            output=m.output,
            generator_norm=m.generator_norm,
            discriminator_norm=m.discriminator_norm,
            kernel_size=m.kernel_size,
            spectral_norm=m.spectral_norm,
            loss=m.loss,
            gp_weight=m.gp_weight,
            r1_gamma=m.r1_gamma,
            r1_steps=m.r1_steps,
            d_steps=m.d_steps,
            ema_decay=m.ema_decay,
        )
    except ValueError as err:
        raise ConfigError(str(err).replace("GAN.", "model.")) from None


def build_task(config: RunConfig, info: DataInfo) -> Task:
    m = config.model_config
    model = model_from_config(m, info)
    steps = config.train.steps
    d_opt = config.optimizer.build(steps, learning_rate=m.d_learning_rate)
    # The generator is updated every d_steps-th step: its schedule spans its own updates.
    g_opt = config.optimizer.build(max(steps // m.d_steps, 1), learning_rate=m.g_learning_rate)
    return Task(
        init=functools.partial(gan.init, model=model),
        players=(
            Player(
                gan.DISC,
                functools.partial(gan.discriminator_objective, model),
                d_opt,
                stateful=True,
            ),
            Player(
                gan.GEN,
                functools.partial(gan.generator_objective, model),
                g_opt,
                every=m.d_steps,
                stateful=True,
            ),
        ),
        init_model_state=functools.partial(gan.init_model_state, model=model),
        post_update=functools.partial(gan.ema_post_update, model),
    )


def _samples(model, params, model_state, rng, n, *, raw: bool = False) -> jax.Array:
    variables = params[gan.GEN] if raw else gan.sampling_variables(model, params, model_state)
    return gan.sample(model, variables, rng, n)


def _mode_metrics(spec, samples, prefix: str = "") -> dict:
    stats = mode_statistics(spec, samples)
    return {
        f"{prefix}modes_captured": int(stats["modes_captured"]),
        f"{prefix}high_quality_fraction": float(stats["high_quality_fraction"]),
        f"{prefix}reverse_kl": float(stats["reverse_kl"]),
    }


@functools.lru_cache(maxsize=4)
def _surface_fn(model: gan.GAN):
    return jax.jit(functools.partial(gan.discriminate, model))


def _surface_figure(model, spec, params, model_state, samples, path, title) -> None:
    lim = float(np.max(np.abs(spec.means))) + 1.0
    axis = np.linspace(-lim, lim, 121, dtype=np.float32)
    gx, gy = np.meshgrid(axis, axis)
    points = np.stack([gx.ravel(), gy.ravel()], axis=1)
    d = np.asarray(_surface_fn(model)(params[gan.DISC], model_state, jnp.asarray(points)))
    # A probability for the logistic losses; a score on its own scale for the others.
    probability = model.loss in ("minimax", "non_saturating")
    viz.field_scatter(
        axis,
        axis,
        d.reshape(gx.shape),
        np.asarray(samples),
        path,
        reference=spec.means,
        title=title,
        value_label="D(x)",
        vmin=0.0 if probability else None,
        vmax=1.0 if probability else None,
    )


def _mixture_evaluate(ctx: EvalContext, model, spec) -> dict:
    m = ctx.config.model_config
    params, state = ctx.params, ctx.model_state
    samples = _samples(model, params, state, ctx.rng, m.eval_samples)
    metrics = _mode_metrics(spec, samples)
    if m.ema_decay > 0:
        raw = _samples(model, params, state, ctx.rng, m.eval_samples, raw=True)
        metrics.update(_mode_metrics(spec, raw, prefix="raw_"))
    metrics["num_modes"] = spec.num_modes
    _surface_figure(
        model,
        spec,
        params,
        state,
        samples,
        ctx.figures / "samples.png",
        f"{spec.name}: {m.eval_samples} samples (dots), modes (circles), D(x) (colour)",
    )
    tests = [r for r in ctx.history if r.get("split") == "test"]
    if tests:
        viz.curves(
            tests,
            ["modes_captured", "high_quality_fraction"],
            ctx.figures / "mode_coverage.png",
            split="test",
            title=f"{spec.name}: modes captured and high-quality fraction during training",
        )
    return metrics


def _image_evaluate(ctx: EvalContext, model) -> dict:
    config, m = ctx.config, ctx.config.model_config
    spec = dataclasses.replace(config.data.preprocess(), flatten=True)
    classifier = train_classifier(
        ctx.train, spec, ClassifierConfig(steps=m.classifier_steps, seed=m.classifier_seed)
    )
    classifier.save(ctx.workdir / "classifier")
    n = m.image_samples
    samples = np.asarray(_samples(model, ctx.params, ctx.model_state, ctx.rng, n)).reshape(n, -1)
    k = classifier.num_classes
    fractions = np.bincount(classifier.predict(samples), minlength=k) / n
    test_x = classifier.inputs(ctx.test)
    test_labels = np.asarray(ctx.test.features["label"])
    train_x = classifier.inputs(ctx.train)
    gen_features = classifier.features(samples)
    test_features = classifier.features(test_x)
    metrics = {
        "class_coverage": int(np.sum((fractions >= 0.5 / k) & (fractions <= 1.5 / k))),
        "num_classes": int(k),
        "min_class_fraction": float(fractions.min()),
        "max_class_fraction": float(fractions.max()),
        "class_fractions": [float(f) for f in fractions],
        "frechet_distance": frechet_distance(gen_features, test_features),
        "frechet_train_test": frechet_distance(classifier.features(train_x), test_features),
        "classifier_test_accuracy": classifier.accuracy(test_x, test_labels),
    }
    if ctx.info.image_shape is not None:
        viz.image_grid(
            samples[:64].reshape(-1, *ctx.info.image_shape),
            ctx.figures / "samples.png",
            ncols=8,
            title="samples (EMA generator)" if m.ema_decay else "samples",
        )
    viz.bars(
        {str(c): float(f) for c, f in enumerate(fractions)},
        ctx.figures / "class_histogram.png",
        title=f"class of {n} samples under the evaluation classifier (uniform: {1 / k:.2f})",
        xlabel="class",
    )
    return metrics


def evaluate(ctx: EvalContext) -> dict:
    model = model_from_config(ctx.config.model_config, ctx.info)
    spec = MIXTURES.get(ctx.config.dataset)
    if spec is not None:
        metrics = _mixture_evaluate(ctx, model, spec)
    else:
        metrics = _image_evaluate(ctx, model)
    history = [r for r in ctx.history if r.get("split") == "train"]
    viz.curves(
        history,
        ["disc/loss", "gen/loss"],
        ctx.figures / "training_curve.png",
        title="discriminator and generator losses",
    )
    return metrics


def eval_during(config: RunConfig, info: DataInfo, test):
    """Mode statistics of the EMA generator during training (2-D mixtures only)."""
    spec = MIXTURES.get(config.dataset)
    if spec is None:
        return None
    model = model_from_config(config.model_config, info)
    n = config.model_config.eval_samples

    def evaluate_now(params, model_state):
        samples = _samples(model, params, model_state, jax.random.PRNGKey(0), n)
        return _mode_metrics(spec, samples)

    return evaluate_now


def snapshot(config: RunConfig, info: DataInfo, workdir: Path):
    """Samples over the modes and ``D(x)`` at every evaluation (2-D mixtures only)."""
    spec = MIXTURES.get(config.dataset)
    if spec is None:
        return None
    model = model_from_config(config.model_config, info)
    n = config.model_config.eval_samples
    directory = workdir / "figures" / "snapshots"

    def write(step, params, model_state):
        samples = _samples(model, params, model_state, jax.random.PRNGKey(0), n)
        directory.mkdir(parents=True, exist_ok=True)
        _surface_figure(
            model,
            spec,
            params,
            model_state,
            samples,
            directory / f"step_{step:06d}.png",
            f"{spec.name}, step {step}",
        )

    return write


def bind(config: RunConfig, info: DataInfo, params, model_state) -> dict:
    model = model_from_config(config.model_config, info)
    variables = gan.sampling_variables(model, params, model_state)

    def discriminate(x):
        return gan.discriminate(model, params[gan.DISC], model_state, jnp.asarray(x))

    return {
        "model": lambda: model,
        "sample": lambda rng, n: gan.sample(model, variables, rng, n),
        "sample_raw": lambda rng, n: gan.sample(model, params[gan.GEN], rng, n),
        "discriminate": discriminate,
    }


SPEC = ModelSpec(
    name="gan",
    description="GAN: mode coverage on ring8/grid25, class coverage and Fréchet distance on images",
    config_cls=GANConfig,
    configs={"ring8": _ring8, "grid25": _grid25, "digits": _digits, "mnist": _mnist},
    build_task=build_task,
    evaluate=evaluate,
    bind=bind,
    metric_names=("modes_captured", "high_quality_fraction", "class_coverage", "frechet_distance"),
    eval_during=eval_during,
    snapshot=snapshot,
    headline=(
        ("modes captured", "modes_captured", "num_modes", "modes of the mixture"),
        (
            "high-quality fraction (within 3 std of a mode)",
            "high_quality_fraction",
            "raw_high_quality_fraction",
            "the raw (non-EMA) generator",
        ),
        ("classes within 5-15% of 10,000 samples", "class_coverage", "num_classes", "classes"),
        (
            "Fréchet distance to the test split (classifier features)",
            "frechet_distance",
            "frechet_train_test",
            "train split vs test split",
        ),
    ),
    key_figures=("samples.png", "class_histogram.png", "mode_coverage.png"),
    outputs=("classifier",),
)
