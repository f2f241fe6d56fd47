"""The VQ-VAE in the experiment command: codebook health side by side, a prior, PCA at the
same bit budget, and prior samples judged by a classifier.

One command trains and reports everything::

    python -m experiments.train --model vqvae --dataset digits --workdir runs/vqvae-digits

The run is the library's two-phase task
(:meth:`genjax.models.vqvae.VQVAEObjective.run_task`): one engine task with two players,
``model.prior_steps`` of the ``train.steps`` for the second:

1. steps ``[0, train.steps - prior_steps)``: the VQ-VAE (player ``vqvae``, stateful: the codebook
   statistics live in the model state, see :mod:`genjax.models.vqvae`) with the configured rule
   (default: EMA + dead-code restart, k-means++ initialisation);
2. the remaining ``prior_steps``: the VQ-VAE frozen, the prior (player ``prior``, a causal
   transformer over the raster-ordered code map, :mod:`genjax.models.prior`) trained on the
   code maps of the training batches.

One checkpointed, resumable run gives ``genjax.load_run`` everything ``sample`` needs. This
module holds the evaluation: the hyper-parameters are the library's
:class:`~genjax.models.vqvae.VQVAEConfig` (section ``model``), the evaluation settings
:class:`VQVAEEval` (section ``eval``).

``evaluate`` then reports, on the test split (metric names in the README):

* ``recon_mse`` (per value, [0, 1] pixels), ``code_usage`` (fraction of the K codes used by
  the test split's code maps), ``perplexity`` (of that usage), ``prior_bits_per_code`` (the
  prior's test NLL in bits per code; ``prior_train_bits_per_code`` beside it, and
  ``prior_unigram_bits_per_code``, the baseline of independent positions) and
  ``bits_per_image`` = S log2 K, the fixed-length size of one code map;
* the same figures for the other codebook configurations (``eval.compare``: ``plain`` = the
  codebook loss, ``ema``, ``ema_restart``), each trained with this run's settings for the
  VQ-VAE phase's number of steps under ``compare/<name>`` in the work directory, as
  ``<name>_recon_mse``, ``<name>_code_usage``, ``<name>_perplexity`` (the run's own
  configuration appears under its name too), also in ``comparison.json``;
* PCA at the same bits per image (see :func:`pca_baselines`): ``pca_quantized_recon_mse`` and
  ``pca_float32_recon_mse``;
* prior samples decoded and classified by :func:`genjax.eval.classifier.train_classifier`
  trained on the train split: ``prior_sample_classes`` (classes that receive at least one of
  ``eval.num_samples`` samples) and ``prior_sample_min_class_fraction``; the classifier's test
  accuracy on real images and on their reconstructions.

Figures: reconstructions, prior samples, the code-usage histogram of every configuration,
the comparison bars and the training curves.
"""

from __future__ import annotations

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np

from experiments.models import schedule
from experiments.registry import DataInfo, EvalContext, ModelSpec
from genjax import viz
from genjax._checks import is_int
from genjax.config import ConfigError, DataConfig, OptimizerConfig, RunConfig
from genjax.data import preprocess
from genjax.eval.classifier import train_classifier
from genjax.models.vqvae import VQVAEConfig, VQVAEObjective
from genjax.train import fit

VARIANTS = {"plain": ("loss", False), "ema": ("ema", False), "ema_restart": ("ema", True)}
"""The codebook configurations compared, ``name: (rule, dead-code restart)``; they differ only
in these two settings (a restarting variant uses the run's ``restart_after``, or 100 steps if
the run itself does not restart)."""

_DEFAULT_RESTART = 100


@dataclasses.dataclass(frozen=True)
class VQVAEEval:
    """Evaluation settings of the VQ-VAE experiment.

    Attributes:
      compare: codebook configurations trained beside the run (plain, ema, ema_restart).
      num_samples: prior samples decoded and classified.
      temperature: sampling temperature of the prior.
    """

    compare: tuple[str, ...] = ("plain", "ema", "ema_restart")
    num_samples: int = 1000
    temperature: float = 1.0

    def __post_init__(self):
        if isinstance(self.compare, str) or not all(isinstance(c, str) for c in self.compare):
            raise ConfigError(f"eval.compare must be names of configurations, got {self.compare!r}")
        object.__setattr__(self, "compare", tuple(self.compare))
        unknown = [c for c in self.compare if c not in VARIANTS]
        if unknown:
            raise ConfigError(
                f"eval.compare holds unknown configurations {unknown}; choose from "
                f"{', '.join(VARIANTS)}"
            )
        if not is_int(self.num_samples) or self.num_samples < 1:
            raise ConfigError(f"eval.num_samples must be an int >= 1, got {self.num_samples!r}")
        t = self.temperature
        if not (isinstance(t, int | float) and math.isfinite(t) and t > 0):
            raise ConfigError(f"eval.temperature must be a finite number > 0, got {t!r}")


def variant_name(m: VQVAEConfig) -> str:
    """The name of a configuration's codebook setting in :data:`VARIANTS` terms (``fsq`` or
    ``rvq`` for those quantizers)."""
    if m.quantizer != "vq":
        return m.quantizer
    if m.rule == "loss":
        return "plain"
    return "ema_restart" if m.restart_after else "ema"


def _digits() -> RunConfig:
    # Two stride-2 stages: a 2 x 2 code map of K = 64 codes, 24 bits per 8 x 8 image.
    return RunConfig(
        model="vqvae",
        dataset="digits",
        # A one-block, 16-wide prior: 1,442 training maps of 4 codes are too few for the
        # 64-wide, two-block transformer, which memorises them (train 2.6 bits per code, test
        # 7.5, worse than independent positions at 5.7); the small one stays at ~5.7.
        model_config=VQVAEConfig(prior_width=16, prior_depth=1),
        evaluation=VQVAEEval(),
        train=schedule(5000, 128, 250, checkpoint_every=1000, eval_every=1000),
        optimizer=OptimizerConfig(learning_rate=1e-3, cosine_decay=True),
        data=DataConfig(),
    )


def _mnist() -> RunConfig:
    # 28 x 28 -> 7 x 7 code map of K = 512 codes (vdO section 4.1 uses 256-channel layers
    # and K = 512 on 32 x 32 images).
    return dataclasses.replace(
        _digits(),
        dataset="mnist",
        model_config=VQVAEConfig(num_codes=512, code_dim=32, hidden=64, res_hidden=32),
        train=schedule(30_000, 128, 500, checkpoint_every=5000, eval_every=5000),
    )


def _cifar10() -> RunConfig:
    return dataclasses.replace(
        _mnist(),
        dataset="cifar10",
        model_config=VQVAEConfig(
            num_codes=512, code_dim=64, hidden=128, res_hidden=64, prior_width=128
        ),
    )


# --------------------------------------------------------------------------------------------
# Checks across sections.
# --------------------------------------------------------------------------------------------


def check(config: RunConfig, info: DataInfo) -> None:
    """The experiment needs the prior, and a VQ-VAE phase before it."""
    del info
    m = config.model_config
    if m.prior_steps < 1:
        raise ConfigError(
            f"model.prior_steps must be >= 1, got {m.prior_steps}: the experiment samples and "
            "scores the prior (the library trains the VQ-VAE alone with prior_steps=0)"
        )
    if config.train.steps <= m.prior_steps:
        raise ConfigError(
            f"train.steps ({config.train.steps}) must exceed model.prior_steps "
            f"({m.prior_steps}): the VQ-VAE trains for the difference"
        )


def vq_steps(config: RunConfig) -> int:
    return config.train.steps - config.model_config.prior_steps


# --------------------------------------------------------------------------------------------
# Evaluation.
# --------------------------------------------------------------------------------------------


def _split_x(config: RunConfig, dataset) -> jax.Array:
    raw = dataset.get(np.arange(dataset.num_examples))
    return preprocess(raw, jax.random.PRNGKey(0), config.data.preprocess(), dataset.image_max)["x"]


def _codes_and_reconstructions(objective: VQVAEObjective, params, model_state, x, chunk=1024):
    """Code maps and reconstructions of ``x`` under the engine's ``params`` / ``model_state``."""

    @jax.jit
    def run(p, s, xb):
        idx = objective.encode(p, s, xb)
        return idx, objective.decode(p, s, idx)

    outs = [run(params, model_state, x[i : i + chunk]) for i in range(0, x.shape[0], chunk)]
    return (
        np.concatenate([np.asarray(o[0]) for o in outs]),
        np.concatenate([np.asarray(o[1]) for o in outs]),
    )


def code_metrics(
    objective: VQVAEObjective, indices: np.ndarray, recon: np.ndarray, x: np.ndarray
) -> dict:
    """``recon_mse``, ``code_usage`` and ``perplexity`` of a split's code maps (over the
    quantizer's codes: FSQ's whole grid, RVQ's levels averaged; see
    :func:`genjax.models.vqvae.code_statistics`)."""
    stats = objective.code_statistics(jnp.asarray(indices))
    return {
        "recon_mse": float(np.mean(np.square(np.asarray(recon) - np.asarray(x)))),
        "code_usage": float(stats["code_usage"]),
        "perplexity": float(stats["perplexity"]),
    }


def eval_during(config: RunConfig, objective: VQVAEObjective, test):
    x_test = _split_x(config, test)
    bits = jax.jit(objective.prior_bits_per_code)

    def evaluate(params, model_state):
        idx, recon = _codes_and_reconstructions(objective, params, model_state, x_test)
        metrics = code_metrics(objective, idx, recon, x_test)
        metrics["prior_bits_per_code"] = float(bits(params, None, idx.reshape(len(idx), -1)))
        return metrics

    return evaluate


def pca_baselines(x_train: np.ndarray, x_test: np.ndarray, bits: float) -> dict:
    """Test MSE of PCA reconstructions that use ``bits`` bits per image.

    The matching rule. A VQ-VAE code map is ``S`` indices of ``log2 K`` bits, ``bits = S log2
    K`` per image (a fixed-length code, no entropy coding); the decoder, codebook, PCA basis,
    mean and quantiser ranges are model parameters and are not counted on either side.

    * quantised PCA: ``q = min(floor(bits / b), D)`` leading principal components (fitted on
      the train split), each coefficient uniformly quantised to ``b`` bits on ``[min, max]``
      of that coefficient over the train split (``2^b`` cells, reconstruction at the cell
      centre, test coefficients clipped to the range); ``b`` in 1..16 chosen by the *train*
      MSE, the test MSE reported.
    * float32 PCA: ``q = floor(bits / 32)`` components stored as float32 numbers (unquantised
      coefficients); ``q = 0`` is the mean image.

    Returns:
      ``pca_quantized_recon_mse``, ``pca_quantized_components``, ``pca_quantized_bits``
      (bits per coefficient), ``pca_float32_recon_mse``, ``pca_float32_components``.
    """
    xtr = np.asarray(x_train, np.float64).reshape(len(x_train), -1)
    xte = np.asarray(x_test, np.float64).reshape(len(x_test), -1)
    mean = xtr.mean(axis=0)
    _, _, vt = np.linalg.svd(xtr - mean, full_matrices=False)
    d = xtr.shape[1]

    def mse(x, coef, basis):
        return float(np.mean(np.square(coef @ basis + mean - x)))

    best = None
    for b in range(1, 17):
        q = min(int(bits // b), d, vt.shape[0])
        if q < 1:
            continue
        basis = vt[:q]
        ctr, cte = (xtr - mean) @ basis.T, (xte - mean) @ basis.T
        lo, hi = ctr.min(axis=0), ctr.max(axis=0)
        width = np.maximum(hi - lo, 1e-12)
        cells = 2**b

        def quantise(c, lo=lo, width=width, cells=cells):
            k = np.clip(np.floor((c - lo) / width * cells), 0, cells - 1)
            return lo + (k + 0.5) / cells * width

        train_mse = mse(xtr, quantise(ctr), basis)
        if best is None or train_mse < best[0]:
            best = (train_mse, mse(xte, quantise(cte), basis), q, b)
    q32 = min(int(bits // 32), d, vt.shape[0])
    basis = vt[:q32]
    float_mse = mse(xte, (xte - mean) @ basis.T, basis)
    out = {"pca_float32_recon_mse": float_mse, "pca_float32_components": q32}
    if best is not None:
        out.update(
            pca_quantized_recon_mse=best[1],
            pca_quantized_components=best[2],
            pca_quantized_bits=best[3],
        )
    return out


def _train_variant(ctx: EvalContext, name: str):
    """Train the codebook configuration ``name`` with this run's settings for the VQ-VAE
    phase's steps (resumable, under ``compare/<name>``); returns its objective (the VQ-VAE alone)
    and the engine's params and model state."""
    config, m = ctx.config, ctx.config.model_config
    rule, restart = VARIANTS[name]
    restart_after = (m.restart_after or _DEFAULT_RESTART) if restart else 0
    variant = dataclasses.replace(
        m,
        quantizer="vq",
        quantizer_dropout=False,
        rule=rule,
        restart_after=restart_after,
        prior_steps=0,
    )
    objective = variant.objective(ctx.info)
    steps = vq_steps(config)
    train_config = dataclasses.replace(
        config.train,
        steps=steps,
        eval_every=0,
        checkpoint_every=steps,
        progress=False,
        best_metric="",
    )
    task = objective.task(config.optimizer.build(steps))
    result = fit(
        task,
        ctx.train,
        train_config,
        ctx.workdir / "compare" / name,
        preprocess_spec=config.data.preprocess(),
    )
    return objective, result.state.params, result.state.model_state


def unigram_bits_per_code(train_codes, test_codes, num_codes: int) -> float:
    """The prior's baseline: independent positions, each with the add-one-smoothed histogram
    of the training codes at that position; its test NLL in bits per code.

    A prior that does not beat this has learned nothing about how codes go together (on 8x8
    digits' 2x2 code maps with 1,442 training images there is little to learn, and a large
    transformer memorises the training maps instead: its test NLL rises above this line).
    """
    train_codes, test_codes = np.asarray(train_codes), np.asarray(test_codes)
    total = 0.0
    for i in range(train_codes.shape[1]):
        counts = np.bincount(train_codes[:, i], minlength=num_codes) + 1.0
        total += float(np.mean(-np.log2(counts[test_codes[:, i]] / counts.sum())))
    return total / train_codes.shape[1]


def evaluate(ctx: EvalContext) -> dict:
    config, m, e = ctx.config, ctx.config.model_config, ctx.config.evaluation
    objective, params, model_state = ctx.objective, ctx.params, ctx.model_state
    x_train, x_test = (
        np.asarray(_split_x(config, ctx.train)),
        np.asarray(_split_x(config, ctx.test)),
    )
    K = objective.prior_model.num_codes
    seq_len = objective.prior_model.seq_len

    idx_test, recon_test = _codes_and_reconstructions(objective, params, model_state, x_test)
    idx_train, _ = _codes_and_reconstructions(objective, params, model_state, x_train)
    metrics = code_metrics(objective, idx_test, recon_test, x_test)
    bits = jax.jit(objective.prior_bits_per_code)
    metrics["prior_bits_per_code"] = float(bits(params, None, idx_test.reshape(-1, seq_len)))
    metrics["prior_train_bits_per_code"] = float(bits(params, None, idx_train.reshape(-1, seq_len)))
    metrics["prior_unigram_bits_per_code"] = unigram_bits_per_code(
        idx_train.reshape(-1, seq_len), idx_test.reshape(-1, seq_len), K
    )
    metrics["bits_per_image"] = seq_len * math.log2(K)
    _, codebook_state = objective.vq_parts(params, model_state)
    metrics["restarted_codes_total"] = int(np.asarray(codebook_state.restarts))
    metrics.update(pca_baselines(x_train, x_test, metrics["bits_per_image"]))

    # Prior samples, decoded and classified.
    sample_fn = jax.jit(
        lambda p, s, rng: objective.sample(p, s, rng, e.num_samples, temperature=e.temperature)
    )
    samples = np.asarray(sample_fn(params, model_state, jax.random.fold_in(ctx.rng, 1)))
    classifier = train_classifier(ctx.train)
    labels = ctx.test.features["label"]
    flat = lambda a: np.clip(np.asarray(a), 0.0, 1.0).reshape(len(a), -1)
    hist = classifier.class_histogram(flat(samples))
    metrics["prior_sample_classes"] = int(np.sum(hist > 0))
    metrics["prior_sample_min_class_fraction"] = float(hist.min())
    metrics["classifier_test_accuracy"] = classifier.accuracy(flat(x_test), labels)
    metrics["classifier_reconstruction_accuracy"] = classifier.accuracy(flat(recon_test), labels)

    # The codebook configurations side by side.
    own = variant_name(m)
    table = {own: {k: metrics[k] for k in ("recon_mse", "code_usage", "perplexity")}}
    histograms = {own: np.bincount(idx_test.reshape(-1), minlength=K)}
    for name in e.compare:
        if name == own:
            continue
        v_objective, v_params, v_state = _train_variant(ctx, name)
        v_idx, v_recon = _codes_and_reconstructions(v_objective, v_params, v_state, x_test)
        table[name] = code_metrics(v_objective, v_idx, v_recon, x_test)
        histograms[name] = np.bincount(v_idx.reshape(-1), minlength=v_objective.config.num_codes)
    for name, row in table.items():
        metrics.update({f"{name}_{k}": v for k, v in row.items()})
    (ctx.workdir / "comparison.json").write_text(
        json.dumps(
            {
                "num_codes": K,
                "steps": vq_steps(config),
                "test": table,
                "pca": {k: v for k, v in metrics.items() if k.startswith("pca_")},
                "bits_per_image": metrics["bits_per_image"],
            },
            indent=2,
        )
        + "\n"
    )
    _figures(ctx, x_test, recon_test, samples, classifier.predict(flat(samples)), table, histograms)
    return metrics


def _figures(ctx, x_test, recon, samples, sample_labels, table, histograms) -> None:
    figs, shape = ctx.figures, ctx.info.image_shape
    if shape is not None:
        viz.image_grid(
            np.concatenate([x_test[:16], np.clip(recon[:16], 0, 1)]).reshape(-1, *shape),
            figs / "reconstructions.png",
            ncols=16,
            title="test images (top), VQ-VAE reconstructions (bottom)",
        )
        order = np.argsort(sample_labels[:100], kind="stable")
        viz.image_grid(
            np.clip(samples[:100][order], 0, 1).reshape(-1, *shape),
            figs / "prior_samples.png",
            ncols=20,
            title="decoded prior samples, sorted by the classifier's label",
        )
    for name, counts in histograms.items():
        viz.bars(
            counts,
            figs / f"code_usage_histogram_{name}.png",
            title=f"{name}: uses of each code over the test split's code maps",
            xlabel="code index",
        )
    for key in ("recon_mse", "code_usage", "perplexity"):
        viz.bars(
            {name: row[key] for name, row in table.items()},
            figs / f"comparison_{key}.png",
            title=f"test {key} by codebook configuration",
        )
    train = [r for r in ctx.history if r.get("split") == "train"]
    phase1 = vq_steps(ctx.config)
    viz.curves(
        [r for r in train if r["step"] <= phase1],
        ["vqvae/recon_mse", "vqvae/commitment_loss", "vqvae/codebook_loss"],
        figs / "training_curve.png",
        title="VQ-VAE phase: train losses",
    )
    viz.curves(
        [r for r in train if r["step"] <= phase1],
        ["vqvae/batch_code_usage", "vqvae/dead_codes"],
        figs / "codebook_health.png",
        title="per-batch code usage and fraction of dead codes",
    )
    viz.curves(
        [r for r in train if r["step"] > phase1],
        ["prior/bits_per_code"],
        figs / "prior_curve.png",
        title="prior phase: train bits per code",
    )


SPEC = ModelSpec(
    name="vqvae",
    description="VQ-VAE: codebook rules and health side by side, a transformer prior, PCA at "
    "equal bits",
    configs={"digits": _digits, "mnist": _mnist, "cifar10": _cifar10},
    evaluate=evaluate,
    metric_names=("recon_mse", "code_usage", "perplexity", "prior_bits_per_code"),
    eval_cls=VQVAEEval,
    eval_during=eval_during,
    check=check,
    headline=(
        (
            "test reconstruction MSE per value (lower is better)",
            "recon_mse",
            "pca_quantized_recon_mse",
            "PCA at the same bits per image, coefficients uniformly quantised",
        ),
        (
            "test code usage (fraction of K codes)",
            "code_usage",
            "plain_code_usage",
            "plain VQ-VAE (codebook loss), same steps",
        ),
        (
            "test codebook perplexity",
            "perplexity",
            "plain_perplexity",
            "plain VQ-VAE (codebook loss), same steps",
        ),
        (
            "prior NLL, bits per code (test)",
            "prior_bits_per_code",
            "prior_unigram_bits_per_code",
            "independent positions, smoothed training histograms",
        ),
    ),
    key_figures=(
        "reconstructions.png",
        "prior_samples.png",
        "comparison_code_usage.png",
        "code_usage_histogram_ema_restart.png",
        "code_usage_histogram_plain.png",
    ),
    outputs=("compare", "comparison.json"),
)
