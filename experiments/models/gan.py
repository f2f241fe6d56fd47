"""The GAN in the experiment command: mode coverage on the 2-D mixtures, class coverage and a
Fréchet distance on images.

    python -m experiments.train --model gan --dataset ring8 --workdir runs/gan-ring8
    python -m experiments.train --model gan --dataset grid25 --workdir runs/gan-grid25
    python -m experiments.train --model gan --dataset digits --workdir runs/gan-digits
    python -m experiments.gan_table --seeds 5     # 5 seeds on ring8 and grid25 + the papers

The model is the library's (:class:`genjax.models.gan.GANConfig`, section ``model``): the
discriminator and the generator are two players of one engine task (``d_steps``
discriminator updates per generator update, each player with its own Adam and learning rate,
:meth:`~genjax.models.gan.GANObjective.run_task`); the stabilisers of
:mod:`genjax.models.gan` are config fields. This module adds the datasets' configs and the
evaluation (:class:`GANEval`, section ``eval``).

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
one), over ``eval.eval_samples`` generated points (2,500 by default, as in those papers);
the same three for the raw generator weights under ``raw_*`` when an EMA is kept.

Metrics on images (``digits``, ``mnist``, ``cifar10``, ``celeb_a_64``): an evaluation
classifier (``genjax.eval``, an MLP trained on the train split, seeded and saved under
``classifier/``) labels
``eval.image_samples`` generated images. ``class_fractions`` is their class histogram,
``class_coverage`` the number of classes whose share lies within a factor 1.5 of the uniform
share (5% to 15% for 10 classes), ``min_class_fraction`` / ``max_class_fraction`` its
extremes; ``frechet_distance`` is the Fréchet distance between Gaussians fitted to the
classifier's last hidden layer on the generated images and on the test split, reported beside
``frechet_train_test`` (the same distance between the train and the test split: what a
perfect generator would reach, up to sampling noise). In the same features
(``genjax.eval``): ``kid_classifier`` (the kernel inception distance of Bińkowski et al.,
2018: the unbiased cubic-kernel MMD^2, the mean over 100 subsets of up to 1,000 rows,
``kid_std_classifier`` their spread; not scaled by 1000), and ``precision_classifier`` /
``recall_classifier`` (Kynkäänniemi et al., 2019) and ``density_classifier`` /
``coverage_classifier`` (Naeem et al., 2020), all with k = 3 and on equal numbers of real and
generated rows (the first as many generated images as the test split has); the same against
the train split under ``<name>_train_test``.

With the FID network's weights (``--set eval.inception_weights=PATH``, the file
``pt_inception-2015-12-05-6726825d.pth`` that pytorch-fid downloads; reading it needs torch),
an image run also reports the same metrics in InceptionV3's 2048-d pool features
(:mod:`genjax.eval.inception`, pytorch-fid's resize to 299 x 299): ``fid_inception``,
``kid_inception``, ``precision_inception`` / ``recall_inception``, ``density_inception`` /
``coverage_inception``, each with its ``_train_test`` reference, and ``inception_score``
(10 splits of the 1008 logits, as torch-fidelity computes it; ``inception_score_test``: the
test images' own). The real images are the first ``eval.inception_reference`` (10,000) of
the test split, and as many of the train split for the references; the file is read before
training starts, so a bad path stops the run at once. Without the file only the
``*_classifier`` metrics are reported: their names say which features they use.

    python -m experiments.train --model gan --dataset cifar10 --workdir runs/gan-cifar10 \
        --set eval.inception_weights=/path/to/pt_inception-2015-12-05-6726825d.pth

The ``cifar10`` and ``celeb_a_64`` configs are Miyato et al. (2018)'s recipe for their
standard CNN (hinge loss, spectral normalisation, Adam (2e-4, 0.5), batch 64, 100,000
generator updates) on the DCGAN pair; they have not been run to completion here.

A class-conditional GAN (``--set model.conditional=true``, on a labelled set) is sampled
with the classes ``i mod K`` and also reports ``conditional_accuracy`` (the share of samples
the classifier puts in their requested class), ``class_conditional_accuracy`` (per class),
and ``class_precision_classifier`` / ``class_recall_classifier``: each class's samples
against the test examples of that class (k = 3, equal numbers of rows).

    python -m experiments.train --model gan --dataset digits --workdir runs/cgan-digits \
        --set model.conditional=true

Figures: for 2-D data, the samples over the true modes with the discriminator's ``D(x)`` as
a background (a conditional model's ``D(x, y)`` at the mode nearest to ``x``), every
``train.eval_every`` steps (``snapshots/step_XXXXXX.png``) and at the end
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

from experiments.models import schedule
from experiments.models.image_metrics import (
    INCEPTION_METRIC_NAMES,
    InceptionEval,
    check,
    evaluate_inception,
    feature_metrics,
    neighbour_metrics,
)
from experiments.registry import EvalContext, ModelSpec
from genjax import viz
from genjax._checks import check_int
from genjax.config import ConfigError, DataConfig, OptimizerConfig, RunConfig
from genjax.data import MIXTURES
from genjax.data.synthetic import mode_statistics
from genjax.eval import ClassifierConfig, frechet_distance, train_classifier
from genjax.models import gan


@dataclasses.dataclass(frozen=True)
class GANEval(InceptionEval):
    """How a trained GAN is evaluated (and the InceptionV3 settings of
    :class:`~experiments.models.image_metrics.InceptionEval`).

    Attributes:
      eval_samples: generated points for the 2-D mode statistics.
      image_samples: generated images for the class histogram, the Fréchet distance and the
        feature metrics.
      classifier_steps: training steps of the evaluation classifier (images).
      classifier_seed: seed of the evaluation classifier.
    """

    eval_samples: int = 2500
    image_samples: int = 10_000
    classifier_steps: int = 1000
    classifier_seed: int = 0

    def __post_init__(self):
        super().__post_init__()
        minimum = {"eval_samples": 1, "image_samples": 1, "classifier_steps": 1}
        try:
            for name in ("eval_samples", "image_samples", "classifier_steps", "classifier_seed"):
                check_int(f"eval.{name}", getattr(self, name), minimum.get(name, 0))
        except ValueError as err:
            raise ConfigError(str(err)) from None


def _mixture(name: str, steps: int) -> RunConfig:
    return RunConfig(
        model="gan",
        dataset=name,
        model_config=gan.GANConfig(),
        evaluation=GANEval(),
        train=schedule(steps, 256, 500, checkpoint_every=steps // 4, eval_every=steps // 8),
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
        model_config=gan.GANConfig(
            latent_dim=32,
            output="sigmoid",
            generator_features=(256, 256),
            discriminator_features=(256, 256),
            r1_gamma=1.0,
            r1_steps=0,
        ),
        evaluation=GANEval(),
        train=schedule(6000, 128, 250, checkpoint_every=2000, eval_every=1500),
        optimizer=OptimizerConfig(learning_rate=2e-4, b1=0.5),
        data=DataConfig(flatten=True),
    )


def _mnist() -> RunConfig:
    # DCGAN pair on 28x28x1 (two stride-2 stages: 7x7 -> 14x14 -> 28x28).
    digits = _digits()
    return dataclasses.replace(
        digits,
        dataset="mnist",
        model_config=dataclasses.replace(
            digits.model_config,
            architecture="dcgan",
            latent_dim=64,
            generator_features=(128, 64),
            discriminator_features=(64, 128),
        ),
        train=schedule(
            20_000, 128, 250, checkpoint_every=5000, eval_every=5000, data_on_device=False
        ),
        data=DataConfig(flatten=False),
    )


def _sngan(dataset: str, stages: tuple[int, ...]) -> RunConfig:
    # Miyato et al. (2018)'s recipe for their standard CNN: the hinge loss, spectral
    # normalisation in the discriminator, one discriminator update per generator update, Adam
    # (2e-4, 0.5, 0.999), batch 64, 100,000 generator updates; the DCGAN pair's channels
    # ``stages`` coarse to fine. Evaluate with the FID network by adding
    # ``--set eval.inception_weights=PATH``.
    return RunConfig(
        model="gan",
        dataset=dataset,
        model_config=gan.GANConfig(
            architecture="dcgan",
            latent_dim=128,
            output="sigmoid",
            generator_features=stages,
            discriminator_features=stages[::-1],
            generator_norm="group",
            spectral_norm=True,
            loss="hinge",
            r1_gamma=0.0,
        ),
        evaluation=GANEval(),
        train=schedule(100_000, 64, 500, checkpoint_every=10_000, eval_every=25_000),
        optimizer=OptimizerConfig(learning_rate=2e-4, b1=0.5),
        data=DataConfig(flatten=False),
    )


def _cifar10() -> RunConfig:
    # 32x32x3: three stride-2 stages, 4x4 -> 32x32.
    return _sngan("cifar10", (256, 128, 64))


def _celeb_a_64() -> RunConfig:
    # 64x64x3: four stride-2 stages, 4x4 -> 64x64.
    return _sngan("celeb_a_64", (512, 256, 128, 64))


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
    labels = None
    if model.config.conditional:  # D(x, y) at the class (mode) nearest to x
        labels = np.argmin(np.linalg.norm(points[:, None] - spec.means[None], axis=-1), axis=1)
    d = _surface_fn(model)(params[gan.DISC], model_state, jnp.asarray(points), labels)
    d = np.asarray(d)
    # A probability for the logistic losses; a score on its own scale for the others.
    probability = model.config.loss in ("minimax", "non_saturating")
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


def _mixture_evaluate(ctx: EvalContext, spec) -> dict:
    objective, n = ctx.objective, ctx.config.evaluation.eval_samples
    params, state = ctx.params, ctx.model_state
    samples = objective.sample(params, state, ctx.rng, n)
    metrics = _mode_metrics(spec, samples)
    if objective.config.ema_decay > 0:
        raw = objective.sample_raw(params, state, ctx.rng, n)
        metrics.update(_mode_metrics(spec, raw, prefix="raw_"))
    metrics["num_modes"] = spec.num_modes
    _surface_figure(
        objective.model,
        spec,
        params,
        state,
        samples,
        ctx.figures / "samples.png",
        f"{spec.name}: {n} samples (dots), modes (circles), D(x) (colour)",
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


def _conditional_metrics(classifier, labels, predicted, gen_features, test_features, test_labels):
    """A conditional model's ``conditional_accuracy`` (the share of samples the classifier
    puts in their requested class), per class, and each class's precision / recall against
    the test examples of that class (classifier features)."""
    k = classifier.num_classes
    per_class = [
        neighbour_metrics(test_features[test_labels == c], gen_features[labels == c], "classifier")
        for c in range(k)
    ]
    return {
        "conditional_accuracy": float(np.mean(predicted == labels)),
        "class_conditional_accuracy": [
            float(np.mean(predicted[labels == c] == c)) for c in range(k)
        ],
        "class_precision_classifier": [m["precision_classifier"] for m in per_class],
        "class_recall_classifier": [m["recall_classifier"] for m in per_class],
    }


def _image_evaluate(ctx: EvalContext) -> dict:
    config, e = ctx.config, ctx.config.evaluation
    spec = dataclasses.replace(config.data.preprocess(), flatten=True)
    classifier = train_classifier(
        ctx.train, spec, ClassifierConfig(steps=e.classifier_steps, seed=e.classifier_seed)
    )
    classifier.save(ctx.workdir / "classifier")
    n = e.image_samples
    conditional = ctx.objective.config.conditional
    k = classifier.num_classes
    if conditional:
        labels = np.arange(n) % k
        samples = ctx.objective.sample(ctx.params, ctx.model_state, ctx.rng, n, labels=labels)
    else:
        samples = ctx.objective.sample(ctx.params, ctx.model_state, ctx.rng, n)
    samples = np.asarray(samples).reshape(n, -1)
    predicted = classifier.predict(samples)
    fractions = np.bincount(predicted, minlength=k) / n
    test_x = classifier.inputs(ctx.test)
    test_labels = np.asarray(ctx.test.features["label"])
    train_x = classifier.inputs(ctx.train)
    gen_features = classifier.features(samples)
    test_features = classifier.features(test_x)
    train_features = classifier.features(train_x)
    metrics = {
        "class_coverage": int(np.sum((fractions >= 0.5 / k) & (fractions <= 1.5 / k))),
        "num_classes": int(k),
        "min_class_fraction": float(fractions.min()),
        "max_class_fraction": float(fractions.max()),
        "class_fractions": [float(f) for f in fractions],
        "frechet_distance": frechet_distance(gen_features, test_features),
        "frechet_train_test": frechet_distance(train_features, test_features),
        "classifier_test_accuracy": classifier.accuracy(test_x, test_labels),
    }
    # KID, precision / recall, density / coverage in the same features; "_train_test": the
    # train split against the test split, what a perfect generator would reach.
    kid_rng = jax.random.fold_in(ctx.rng, 1)
    metrics.update(feature_metrics(test_features, gen_features, kid_rng, "classifier"))
    reference = feature_metrics(test_features, train_features, kid_rng, "classifier")
    metrics.update({f"{name}_train_test": v for name, v in reference.items()})
    if conditional:
        metrics.update(
            _conditional_metrics(
                classifier, labels, predicted, gen_features, test_features, test_labels
            )
        )
    if e.inception_weights:
        images = samples.reshape(n, *ctx.info.image_shape)
        metrics.update(evaluate_inception(ctx, images, jax.random.fold_in(ctx.rng, 2)))
    if ctx.info.image_shape is not None:
        title = "samples (EMA generator)" if ctx.objective.config.ema_decay else "samples"
        viz.image_grid(
            samples[: 10 * k if conditional else 64].reshape(-1, *ctx.info.image_shape),
            ctx.figures / "samples.png",
            ncols=k if conditional else 8,
            title=f"{title}, class i in column i" if conditional else title,
        )
    viz.bars(
        {str(c): float(f) for c, f in enumerate(fractions)},
        ctx.figures / "class_histogram.png",
        title=f"class of {n} samples under the evaluation classifier (uniform: {1 / k:.2f})",
        xlabel="class",
    )
    return metrics


def evaluate(ctx: EvalContext) -> dict:
    spec = MIXTURES.get(ctx.config.dataset)
    metrics = _mixture_evaluate(ctx, spec) if spec is not None else _image_evaluate(ctx)
    history = [r for r in ctx.history if r.get("split") == "train"]
    viz.curves(
        history,
        ["disc/loss", "gen/loss"],
        ctx.figures / "training_curve.png",
        title="discriminator and generator losses",
    )
    return metrics


def eval_during(config: RunConfig, objective: gan.GANObjective, test):
    """Mode statistics of the EMA generator during training (2-D mixtures only)."""
    spec = MIXTURES.get(config.dataset)
    if spec is None:
        return None
    n = config.evaluation.eval_samples

    def evaluate_now(params, model_state):
        samples = objective.sample(params, model_state, jax.random.PRNGKey(0), n)
        return _mode_metrics(spec, samples)

    return evaluate_now


def snapshot(config: RunConfig, objective: gan.GANObjective, workdir: Path):
    """Samples over the modes and ``D(x)`` at every evaluation (2-D mixtures only)."""
    spec = MIXTURES.get(config.dataset)
    if spec is None:
        return None
    n = config.evaluation.eval_samples
    directory = workdir / "figures" / "snapshots"

    def write(step, params, model_state):
        samples = objective.sample(params, model_state, jax.random.PRNGKey(0), n)
        directory.mkdir(parents=True, exist_ok=True)
        _surface_figure(
            objective.model,
            spec,
            params,
            model_state,
            samples,
            directory / f"step_{step:06d}.png",
            f"{spec.name}, step {step}",
        )

    return write


SPEC = ModelSpec(
    name="gan",
    description="GAN: mode coverage on ring8/grid25, class coverage and Fréchet distance on images",
    configs={
        "ring8": _ring8,
        "grid25": _grid25,
        "digits": _digits,
        "mnist": _mnist,
        "cifar10": _cifar10,
        "celeb_a_64": _celeb_a_64,
    },
    evaluate=evaluate,
    metric_names=(
        "modes_captured",
        "high_quality_fraction",
        "class_coverage",
        "frechet_distance",
        "kid_classifier",
        "precision_classifier",
        "recall_classifier",
        "density_classifier",
        "coverage_classifier",
        "conditional_accuracy",
        *INCEPTION_METRIC_NAMES,
    ),
    eval_cls=GANEval,
    eval_during=eval_during,
    check=check,
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
            "FID to the test split (InceptionV3 features)",
            "fid_inception",
            "fid_inception_train_test",
            "train split vs test split",
        ),
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
