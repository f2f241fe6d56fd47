"""The VAE in the experiment command: ELBO training, then the test ELBO, the test NLL by the
importance-weighted bound (K = 5000), and two exact-likelihood baselines on the same split.

Datasets:

* ``digits`` (default: binarised, pixel >= 8 of 16, Bernoulli likelihood, MLP 2x200 tanh,
  8-d latent). The continuous variant uses the Gaussian likelihood on [0, 1] grey levels::

      python -m experiments.train --model vae --dataset digits --workdir runs/vae-digits-gauss \\
          --set model.likelihood=gaussian --set data.binarize=none

  (the baselines are for binary data and are skipped there). A 2-d latent
  (``--set model.latent_dim=2``) adds the latent scatter and the decoded manifold.
  The convolutional pair: ``--set model.architecture=conv --set model.hidden=32,64
  --set data.flatten=false``.
* ``mnist`` (when prepared in the data directory): the IWAE paper's one-stochastic-layer
  setting, 2x200 tanh around a 50-d latent, dynamic binarisation; Burda et al. (2016, table 1)
  report 86.76 nats (VAE, k = 1) against which ``test_nll_iwae`` can be set.

The model, its hyper-parameters and its loss are the library's (``genjax.models.vae``:
``VAEConfig``, ``VAEObjective``); this module holds the dataset configs, the evaluation
settings (``VAEEval``: ``--set eval.iwae_samples=...``), the evaluation and its figures.
KL warm-up (``model.warmup_steps``) runs through the engine's model state: a stateful loss
reads the KL weight from ``model_state["kl_weight"]`` and the ``post_update`` hook writes the
next step's weight from the engine's step counter (``VAEObjective.post_update``).
"""

from __future__ import annotations

import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np

from experiments.models import schedule
from experiments.models.image_metrics import (
    INCEPTION_METRIC_NAMES,
    InceptionEval,
    check,
    evaluate_inception,
)
from experiments.registry import EvalContext, ModelSpec
from genjax import viz
from genjax._checks import check_int, is_int
from genjax.config import ConfigError, DataConfig, OptimizerConfig, RunConfig
from genjax.data import preprocess
from genjax.eval import baselines, likelihood
from genjax.models import vae
from genjax.models.base import single


@dataclasses.dataclass(frozen=True)
class VAEEval(InceptionEval):
    """The VAE's evaluation settings (the model's are ``genjax.models.vae.VAEConfig``), with
    the InceptionV3 settings of :class:`~experiments.models.image_metrics.InceptionEval`.

    Attributes:
      elbo_samples: reparameterised samples per test example for the reported test ELBO.
      iwae_samples: K of the reported test NLL (importance-weighted bound).
      iwae_chunk: samples evaluated at once (memory bound of the IWAE estimate).
      iwae_batch: examples evaluated at once in the IWAE estimate.
      iwae_curve: extra K values whose test NLL is reported as test_nll_iwae_k<K> ('' = none).
      baseline_components: mixture components of the Bernoulli-mixture baseline.
      baseline_em_steps: EM iterations of the mixture baseline.
      baseline_pseudocount: Beta/Dirichlet pseudocount of both baselines.
      inception_samples: decoded samples (the decoder's means) in the InceptionV3 metrics,
        when ``inception_weights`` is given.
    """

    elbo_samples: int = 10
    iwae_samples: int = 5000
    iwae_chunk: int = 500
    iwae_batch: int = 32
    iwae_curve: tuple[int, ...] = (1, 10, 100, 1000)
    baseline_components: int = 20
    baseline_em_steps: int = 200
    baseline_pseudocount: float = 1.0
    inception_samples: int = 10_000

    def __post_init__(self):
        super().__post_init__()
        counts = (
            "inception_samples",
            "elbo_samples",
            "iwae_samples",
            "iwae_chunk",
            "iwae_batch",
            "baseline_components",
            "baseline_em_steps",
        )
        try:
            for name in counts:
                check_int(f"eval.{name}", getattr(self, name), 1)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        curve = tuple(self.iwae_curve)
        if any(not is_int(k) or k < 1 for k in curve):
            raise ConfigError(f"eval.iwae_curve must hold ints >= 1, got {self.iwae_curve}")
        object.__setattr__(self, "iwae_curve", curve)
        if not self.baseline_pseudocount >= 0:
            raise ConfigError(
                f"eval.baseline_pseudocount must be >= 0, got {self.baseline_pseudocount}"
            )


def _digits() -> RunConfig:
    return RunConfig(
        model="vae",
        dataset="digits",
        model_config=vae.VAEConfig(),
        evaluation=VAEEval(),
        train=schedule(5000, 128, 250, checkpoint_every=1000, eval_every=1000),
        optimizer=OptimizerConfig(learning_rate=1e-3, cosine_decay=True),
        data=DataConfig(binarize="static", threshold=0.5, flatten=True),
    )


def _mnist() -> RunConfig:
    # Burda et al. (2016): 784-200-200-50 with tanh, Adam (lr 1e-3, decayed), dynamically
    # binarised MNIST. Their schedule is 3^i epochs at lr 1e-3 * 10^(-i/7), i = 0..7 (3280
    # epochs at batch 20); this config uses a cosine decay over ~850 epochs at batch 100.
    return RunConfig(
        model="vae",
        dataset="mnist",
        model_config=vae.VAEConfig(hidden=(200, 200), latent_dim=50, activation="tanh"),
        evaluation=VAEEval(iwae_batch=16, iwae_curve=()),
        train=schedule(
            500_000, 100, 1000, checkpoint_every=10_000, eval_every=50_000, fuse_steps=500
        ),
        optimizer=OptimizerConfig(learning_rate=1e-3, b2=0.999, cosine_decay=True),
        data=DataConfig(binarize="dynamic", flatten=True),
    )


def _binarized_mnist() -> RunConfig:
    # The fixed binarisation of Larochelle & Murray (2011), as in Burda et al.'s (2016)
    # "fixed" rows: the images are already 0/1 (image_max 1), so no binarisation here. The
    # dynamic and the fixed variants differ by about 2 nats of test NLL; compare like with like.
    base = _mnist()
    return dataclasses.replace(
        base, dataset="binarized_mnist", data=DataConfig(binarize="none", flatten=True)
    )


def _fashion_mnist() -> RunConfig:
    return dataclasses.replace(_mnist(), dataset="fashion_mnist")


def _celeb_a_64() -> RunConfig:
    # 64x64x3 faces in [0, 1]: a convolutional pair of four stride-2 stages around a 64-d
    # latent, a Gaussian likelihood with one learned variance, Adam 1e-3 with a cosine decay,
    # batch 64 (pythae's CelebA benchmark uses a 64-d latent). Its FID needs the InceptionV3
    # file: --set eval.inception_weights=PATH. The IWAE NLL of 12,288 continuous pixels is
    # reported in nats with K = 100 samples, to keep the evaluation's cost in bounds.
    return RunConfig(
        model="vae",
        dataset="celeb_a_64",
        model_config=vae.VAEConfig(
            architecture="conv",
            hidden=(32, 64, 128, 256),
            latent_dim=64,
            activation="relu",
            likelihood="gaussian",
            variance="isotropic",
            init_variance=0.05,
        ),
        evaluation=VAEEval(iwae_samples=100, iwae_chunk=50, iwae_curve=()),
        train=schedule(
            100_000, 64, 500, checkpoint_every=10_000, eval_every=25_000, data_on_device=False
        ),
        optimizer=OptimizerConfig(learning_rate=1e-3, cosine_decay=True),
        data=DataConfig(binarize="none", flatten=False),
    )


def _split_x(config: RunConfig, dataset) -> jax.Array:
    """The whole split preprocessed as in training (dynamic binarisation: one fixed draw)."""
    raw = dataset.get(np.arange(dataset.num_examples))
    rng = jax.random.PRNGKey(12345)
    return preprocess(raw, rng, config.data.preprocess(), dataset.image_max)["x"]


def eval_during(config: RunConfig, objective: vae.VAEObjective, test):
    model = objective.model
    x_test = _split_x(config, test)
    samples = config.evaluation.elbo_samples

    def evaluate(params, model_state):
        del model_state
        value = vae.elbo(model, single(params), x_test, jax.random.PRNGKey(1), num_samples=samples)
        return {"test_elbo": float(jnp.mean(value))}

    return evaluate


def _is_binary(x) -> bool:
    x = np.asarray(x)
    return bool(np.all((x == 0) | (x == 1)))


def evaluate(ctx: EvalContext) -> dict:
    config, m = ctx.config, ctx.config.evaluation
    model = ctx.objective.model
    params = single(ctx.params)
    x_train, x_test = _split_x(config, ctx.train), _split_x(config, ctx.test)
    k_elbo, k_iwae, k_base, k_curve = jax.random.split(ctx.rng, 4)

    test_elbo = vae.elbo(model, params, x_test, k_elbo, num_samples=m.elbo_samples)
    weights = functools.partial(vae.log_weights, model, params)

    def nll_per_example(key, k):
        return -np.asarray(
            likelihood.iwae_log_likelihood(
                weights,
                x_test,
                key,
                num_samples=k,
                chunk_size=m.iwae_chunk,
                batch_size=m.iwae_batch,
            ),
            np.float64,
        )

    def nll(key, k):
        return likelihood.mean_and_stderr(nll_per_example(key, k))

    nll_values = nll_per_example(k_iwae, m.iwae_samples)
    test_nll, test_nll_err = likelihood.mean_and_stderr(nll_values)
    mean_elbo, elbo_err = likelihood.mean_and_stderr(test_elbo)
    metrics = {
        "test_elbo": mean_elbo,
        "test_elbo_stderr": elbo_err,
        "test_nll_iwae": test_nll,
        "test_nll_iwae_stderr": test_nll_err,
        "iwae_samples": m.iwae_samples,
        "train_elbo": float(
            jnp.mean(vae.elbo(model, params, x_train, k_elbo, num_samples=m.elbo_samples))
        ),
    }
    curve = {}
    for i, k in enumerate(sorted(set(m.iwae_curve))):
        curve[k] = nll(jax.random.fold_in(k_curve, i), k)[0]
        metrics[f"test_nll_iwae_k{k}"] = curve[k]
    if curve:
        curve[m.iwae_samples] = test_nll
        (ctx.workdir / "iwae_curve.json").write_text(
            json.dumps({str(k): v for k, v in sorted(curve.items())}, indent=2) + "\n"
        )
    if _is_binary(x_train) and _is_binary(x_test):
        base, mixture_ll = _baselines(config, x_train, x_test, k_base)
        metrics.update(base)
        # Paired over test examples (negative: the VAE is better); the spread between
        # examples cancels.
        gap, gap_err = likelihood.mean_and_stderr(nll_values + np.asarray(mixture_ll, np.float64))
        metrics["nll_minus_mixture_nll"] = gap
        metrics["nll_minus_mixture_nll_stderr"] = gap_err
    if m.inception_weights:
        # The decoder's means of prior samples, as images in [0, 1] (pythae's FID protocol).
        n = m.inception_samples
        samples = vae.sample(model, params, jax.random.fold_in(ctx.rng, 7), n, mean=True)
        images = np.clip(np.asarray(samples, np.float32), 0.0, 1.0)
        metrics.update(
            evaluate_inception(
                ctx, images.reshape(n, *ctx.info.image_shape), jax.random.fold_in(ctx.rng, 8)
            )
        )
    _figures(ctx, model, params, np.asarray(x_test), curve)
    return metrics


def _baselines(config: RunConfig, x_train, x_test, rng) -> tuple[dict, jax.Array]:
    """Both baselines' test NLL, and the mixture's per-example test log-likelihood."""
    m = config.evaluation
    flat_train = np.asarray(x_train).reshape(x_train.shape[0], -1)
    flat_test = np.asarray(x_test).reshape(x_test.shape[0], -1)
    probs = baselines.fit_independent_bernoulli(flat_train, pseudocount=m.baseline_pseudocount)
    mixture, _ = baselines.fit_bernoulli_mixture(
        flat_train,
        m.baseline_components,
        rng=rng,
        steps=m.baseline_em_steps,
        pseudocount=m.baseline_pseudocount,
    )
    mixture_ll = baselines.bernoulli_mixture_log_likelihood(mixture, flat_test)
    return {
        "baseline_bernoulli_nll": -float(
            jnp.mean(baselines.independent_bernoulli_log_likelihood(probs, flat_test))
        ),
        "baseline_mixture_nll": -float(jnp.mean(mixture_ll)),
    }, mixture_ll


def _figures(ctx: EvalContext, model: vae.VAE, params, x_test: np.ndarray, curve: dict) -> None:
    figs, shape = ctx.figures, ctx.info.image_shape
    q = model.config.latent_dim
    if shape is not None:
        x = x_test[:16]
        recon = np.asarray(vae.reconstruct(model, params, x))
        viz.image_grid(
            np.concatenate([x, recon]).reshape(-1, *shape),
            figs / "reconstructions.png",
            ncols=16,
            title="test images (top), reconstructions E[x | z = E_q[z|x]] (bottom)",
        )
        samples = np.asarray(vae.sample(model, params, jax.random.PRNGKey(7), 64, mean=True))
        viz.image_grid(
            samples.reshape(-1, *shape),
            figs / "samples.png",
            ncols=16,
            title="prior samples: E[x | z], z ~ N(0, I)",
        )
        steps, pairs = 10, min(8, len(x_test) // 2)  # a small test split has fewer pairs
        if pairs:
            ends = x_test[:pairs], x_test[pairs : 2 * pairs]
            path = np.asarray(vae.interpolate(model, params, *ends, steps))
            viz.image_grid(
                path.reshape(-1, *shape),
                figs / "interpolation.png",
                ncols=steps,
                title="decoded straight lines between posterior means of two test images",
            )
    history = [r for r in ctx.history if r.get("split") == "train" and "elbo" in r]
    viz.curves(
        history,
        ["elbo", "log_px_given_z"],
        figs / "training_curve.png",
        title="train ELBO and reconstruction term",
        ylabel="nats / example",
    )
    viz.curves(history, ["kl", "kl_weight"], figs / "kl_curve.png", title="KL and its weight")
    tests = [r for r in ctx.history if r.get("split") == "test" and "test_elbo" in r]
    if tests:
        viz.curves(tests, ["test_elbo"], figs / "test_elbo.png", split="test", title="test ELBO")
    if curve:
        best = curve[max(curve)]
        viz.bars(
            {f"K={k}": v - best for k, v in sorted(curve.items())},
            figs / "iwae_curve.png",
            title=f"test NLL(K) - NLL(K={max(curve)}), nats",
            xlabel="importance samples K",
        )
    if q == 2:
        mean, _ = vae.encode(model, params, x_test)
        viz.scatter(
            np.asarray(mean),
            figs / "latent_scatter.png",
            labels=ctx.test.features.get("label"),
            title="E_q[z | x] of the test split, by class",
        )
        if shape is not None:
            n = 15
            # A grid of z at the Gaussian quantiles, so each cell has equal prior mass.
            grid = jax.scipy.special.ndtri(jnp.linspace(0.05, 0.95, n))
            zz = jnp.stack(jnp.meshgrid(grid, grid[::-1]), axis=-1).reshape(-1, 2)
            images = np.asarray(vae.decode(model, params, zz))
            viz.image_grid(
                images.reshape(-1, *shape),
                figs / "manifold.png",
                ncols=n,
                title="E[x | z] over a grid of prior quantiles of z",
            )


SPEC = ModelSpec(
    name="vae",
    description="variational autoencoder: ELBO training, test NLL by the IWAE bound, baselines",
    configs={
        "digits": _digits,
        "mnist": _mnist,
        "binarized_mnist": _binarized_mnist,
        "fashion_mnist": _fashion_mnist,
        "celeb_a_64": _celeb_a_64,
    },
    evaluate=evaluate,
    metric_names=(
        "test_elbo",
        "test_nll_iwae",
        "baseline_bernoulli_nll",
        "baseline_mixture_nll",
        *INCEPTION_METRIC_NAMES,
    ),
    eval_cls=VAEEval,
    eval_during=eval_during,
    check=check,
    headline=(
        (
            "test NLL, IWAE bound (nats/example, lower is better)",
            "test_nll_iwae",
            "baseline_mixture_nll",
            "mixture of Bernoulli products fitted by EM, same split",
        ),
        (
            "test NLL, IWAE bound (nats/example, lower is better)",
            "test_nll_iwae",
            "baseline_bernoulli_nll",
            "independent Bernoulli pixels, same split",
        ),
    ),
    key_figures=("samples.png", "reconstructions.png", "interpolation.png", "manifold.png"),
    outputs=("iwae_curve.json",),
)
