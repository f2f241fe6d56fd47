"""The VQ-VAE in the experiment command: codebook health side by side, a prior, PCA at the
same bit budget, and prior samples judged by a classifier.

One command trains and reports everything::

    python -m experiments.train --model vqvae --dataset digits --workdir runs/vqvae-digits

The run is one engine task with two players and two phases (``model.prior_steps`` of the
``train.steps``):

1. steps ``[0, train.steps - prior_steps)``: the VQ-VAE (player ``vqvae``, stateful: the codebook
   statistics live in the model state, see :mod:`genjax.models.vqvae`) with the configured rule
   (default: EMA + dead-code restart, k-means++ initialisation);
2. the remaining ``prior_steps``: the VQ-VAE frozen, the prior (player ``prior``, a causal
   transformer over the raster-ordered code map, :mod:`genjax.models.prior`) trained on the
   code maps of the training batches.

Each player's optimizer is masked outside its phase (``optax.conditionally_mask``, so its
moments do not move either) and its loss is switched by a counter of applied updates kept in
the model state by the ``post_update`` hook; both stay in step when the non-finite guard
rejects an update. One checkpointed, resumable run gives ``genjax.load_run`` everything
``sample`` needs.

``evaluate`` then reports, on the test split (metric names in the README):

* ``recon_mse`` (per value, [0, 1] pixels), ``code_usage`` (fraction of the K codes used by
  the test split's code maps), ``perplexity`` (of that usage), ``prior_bits_per_code`` (the
  prior's test NLL in bits per code; ``prior_train_bits_per_code`` beside it, and
  ``prior_unigram_bits_per_code``, the baseline of independent positions) and
  ``bits_per_image`` = S log2 K, the fixed-length size of one code map;
* the same figures for the other codebook configurations (``model.compare``: ``plain`` = the
  codebook loss, ``ema``, ``ema_restart``), each trained with this run's settings for the
  VQ-VAE phase's number of steps under ``compare/<name>`` in the work directory, as
  ``<name>_recon_mse``, ``<name>_code_usage``, ``<name>_perplexity`` (the run's own
  configuration appears under its name too), also in ``comparison.json``;
* PCA at the same bits per image (see :func:`pca_baselines`): ``pca_quantized_recon_mse`` and
  ``pca_float32_recon_mse``;
* prior samples decoded and classified by :func:`genjax.eval.classifier.train_classifier`
  trained on the train split: ``prior_sample_classes`` (classes that receive at least one of
  ``model.num_samples`` samples) and ``prior_sample_min_class_fraction``; the classifier's test
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
import optax
from jax import lax

from experiments.config import ConfigError, DataConfig, OptimizerConfig, RunConfig
from experiments.registry import DataInfo, EvalContext, ModelSpec
from genjax import losses as L
from genjax import viz
from genjax.data import preprocess
from genjax.eval.classifier import train_classifier
from genjax.models import prior as P
from genjax.models import vqvae as V
from genjax.train import Player, Task, TrainConfig, fit

VARIANTS = {"plain": ("loss", False), "ema": ("ema", False), "ema_restart": ("ema", True)}
"""The codebook configurations compared, ``name: (rule, dead-code restart)``; they differ only
in these two settings (a restarting variant uses the run's ``restart_after``, or 100 steps if
the run itself does not restart)."""

_DEFAULT_RESTART = 100


@dataclasses.dataclass(frozen=True)
class VQVAEConfig:
    """VQ-VAE, prior and evaluation settings.

    Attributes:
      arch: conv | mlp (conv needs data.flatten=false).
      num_codes: K, the codebook size (>= 2).
      code_dim: D, the width of a code (the encoder's output channels).
      hidden: conv channels of the encoder and decoder.
      num_stages: stride-2 stages of the conv pair (the code map is H/2^s x W/2^s).
      num_res_blocks: residual blocks in the conv encoder and in the conv decoder.
      res_hidden: channels inside a residual block.
      mlp_hidden: hidden widths of the MLP pair.
      num_latents: vectors per code map for the MLP pair.
      rule: codebook update, loss (codebook loss) | ema (moving averages).
      beta: commitment weight (>= 0).
      decay: EMA decay in [0, 1).
      epsilon: Laplace pseudo-count of the EMA codebook (>= 0).
      codebook_init: random | sample | kmeans++ (from the first batch's encoder outputs).
      restart_after: restart codes unused for this many steps (0 = never; rule=ema only).
      reservoir_size: recent encoder outputs kept for restarts (0 = K).
      prior_steps: the last prior_steps of train.steps train the prior (VQ-VAE frozen).
      prior_width: width of the prior transformer.
      prior_depth: transformer blocks of the prior.
      prior_heads: attention heads of the prior.
      prior_learning_rate: Adam learning rate of the prior (cosine-decayed over prior_steps).
      compare: codebook configurations trained beside the run (plain, ema, ema_restart).
      num_samples: prior samples decoded and classified.
      temperature: sampling temperature of the prior.
    """

    arch: str = "conv"
    num_codes: int = 64
    code_dim: int = 16
    hidden: int = 32
    num_stages: int = 2
    num_res_blocks: int = 2
    res_hidden: int = 16
    mlp_hidden: tuple[int, ...] = (256,)
    num_latents: int = 4
    rule: str = "ema"
    beta: float = 0.25
    decay: float = 0.99
    epsilon: float = 1e-5
    codebook_init: str = "kmeans++"
    restart_after: int = 100
    reservoir_size: int = 0
    prior_steps: int = 2000
    prior_width: int = 64
    prior_depth: int = 2
    prior_heads: int = 4
    prior_learning_rate: float = 1e-3
    compare: tuple[str, ...] = ("plain", "ema", "ema_restart")
    num_samples: int = 1000
    temperature: float = 1.0

    def __post_init__(self):
        choices = {"arch": V.ARCHS, "rule": V.RULES, "codebook_init": V.INITS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"model.{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        if self.num_codes < 2:
            raise ConfigError(f"model.num_codes (K) must be >= 2, got {self.num_codes}")
        positive = (
            "code_dim",
            "hidden",
            "num_stages",
            "res_hidden",
            "num_latents",
            "prior_width",
            "prior_heads",
            "num_samples",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_res_blocks", "restart_after", "reservoir_size", "prior_depth"):
            if getattr(self, name) < 0:
                raise ConfigError(f"model.{name} must be >= 0, got {getattr(self, name)}")
        if not self.prior_steps >= 1:
            raise ConfigError(f"model.prior_steps must be >= 1, got {self.prior_steps}")
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ConfigError(f"model.beta must be a finite number >= 0, got {self.beta}")
        if not 0 <= self.decay < 1:
            raise ConfigError(f"model.decay must be in [0, 1), got {self.decay}")
        if not self.epsilon >= 0:
            raise ConfigError(f"model.epsilon must be >= 0, got {self.epsilon}")
        if self.restart_after and self.rule != "ema":
            raise ConfigError(
                f"model.restart_after={self.restart_after} needs model.rule=ema (the loss "
                "rule's codebook is a parameter); set model.restart_after=0"
            )
        if self.prior_width % self.prior_heads:
            raise ConfigError(
                f"model.prior_width ({self.prior_width}) must be divisible by model.prior_heads "
                f"({self.prior_heads})"
            )
        if not self.prior_learning_rate > 0 or not self.temperature > 0:
            raise ConfigError(
                "model.prior_learning_rate and model.temperature must be > 0, got "
                f"{self.prior_learning_rate} and {self.temperature}"
            )
        unknown = [c for c in self.compare if c not in VARIANTS]
        if unknown:
            raise ConfigError(
                f"model.compare holds unknown configurations {unknown}; choose from "
                f"{', '.join(VARIANTS)}"
            )

    @property
    def variant(self) -> str:
        """The name of this run's codebook configuration in :data:`VARIANTS` terms."""
        if self.rule == "loss":
            return "plain"
        return "ema_restart" if self.restart_after else "ema"


def _digits() -> RunConfig:
    # Two stride-2 stages: a 2 x 2 code map of K = 64 codes, 24 bits per 8 x 8 image.
    return RunConfig(
        model="vqvae",
        dataset="digits",
        # A one-block, 16-wide prior: 1,442 training maps of 4 codes are too few for the
        # 64-wide, two-block transformer, which memorises them (train 2.6 bits per code, test
        # 7.5, worse than independent positions at 5.7); the small one stays at ~5.7.
        model_config=VQVAEConfig(prior_width=16, prior_depth=1),
        train=TrainConfig(
            steps=5000,
            batch_size=128,
            fuse_steps=250,
            data_on_device=True,
            log_every=250,
            eval_every=1000,
            checkpoint_every=1000,
        ),
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
        train=TrainConfig(
            steps=30_000,
            batch_size=128,
            fuse_steps=500,
            data_on_device=True,
            log_every=500,
            eval_every=5000,
            checkpoint_every=5000,
        ),
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
# Model and task.
# --------------------------------------------------------------------------------------------


def _model(m: VQVAEConfig, info: DataInfo) -> V.VQVAE:
    return V.VQVAE(
        input_shape=tuple(info.shape),
        arch=m.arch,
        num_codes=m.num_codes,
        code_dim=m.code_dim,
        rule=m.rule,
        hidden=m.hidden,
        num_stages=m.num_stages,
        num_res_blocks=m.num_res_blocks,
        res_hidden=m.res_hidden,
        mlp_hidden=tuple(m.mlp_hidden),
        num_latents=m.num_latents,
    )


def _objective(m: VQVAEConfig, model: V.VQVAE) -> V.Objective:
    return V.Objective(
        model,
        beta=m.beta,
        decay=m.decay,
        epsilon=m.epsilon,
        codebook_init=m.codebook_init,
        restart_after=m.restart_after,
        reservoir_size=m.reservoir_size or None,
    )


def _prior_model(m: VQVAEConfig, model: V.VQVAE) -> P.CausalTransformer:
    return P.CausalTransformer(
        num_codes=m.num_codes,
        seq_len=math.prod(model.code_map_shape()),
        width=m.prior_width,
        depth=m.prior_depth,
        heads=m.prior_heads,
    )


def vqvae_objective(config: RunConfig, info: DataInfo) -> V.Objective:
    """The VQ-VAE's own objective (without the prior) for ``config``, validated as for a run
    (``ConfigError`` for bad input); the benchmarks time its update."""
    return _checked(config, info)[1]


def _checked(config: RunConfig, info: DataInfo):
    """Model, objective and prior for ``config`` (input errors as ConfigError)."""
    m = config.model_config
    if m.arch == "conv" and len(info.shape) != 3:
        raise ConfigError(
            f"model.arch=conv needs images [H, W, C]; set data.flatten=false "
            f"(the input shape is {info.shape})"
        )
    if config.train.steps <= m.prior_steps:
        raise ConfigError(
            f"train.steps ({config.train.steps}) must exceed model.prior_steps "
            f"({m.prior_steps}): the VQ-VAE trains for the difference"
        )
    try:
        model = _model(m, info)
        if m.arch == "conv":
            from genjax.nn import check_image_shape

            check_image_shape(tuple(info.shape), m.num_stages, owner="model.num_stages")
        objective = _objective(m, model)
        prior_model = _prior_model(m, model)
        prior_model.validate()
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return model, objective, prior_model


def vq_steps(config: RunConfig) -> int:
    return config.train.steps - config.model_config.prior_steps


def _vq_only_task(objective: V.Objective, optimizer) -> Task:
    return Task.from_loss(
        objective.init,
        objective.loss,
        optimizer,
        stateful=True,
        init_model_state=objective.init_model_state,
    )


def build_task(config: RunConfig, info: DataInfo) -> Task:
    m = config.model_config
    model, objective, prior_model = _checked(config, info)
    prior_objective = P.PriorObjective(prior_model)
    phase1 = vq_steps(config)

    def init(rng, batch):
        vq_key, prior_key = jax.random.split(rng)
        codes = jnp.zeros((1, prior_model.seq_len), jnp.int32)
        return {
            "vqvae": objective.init(vq_key, batch),
            "prior": prior_objective.init(prior_key, {"codes": codes}),
        }

    def init_model_state(rng, batch, params):
        return {
            "vq": objective.init_model_state(rng, batch, params["vqvae"]),
            "updates": jnp.zeros((), jnp.int32),
        }

    def vq_loss(params, ms, batch, rng):
        def train(_):
            loss, (metrics, state) = objective.loss(params["vqvae"], ms["vq"], batch, rng)
            return loss, metrics, state

        def frozen(_):  # phase 2: metrics of the frozen model, no gradient, state unchanged
            p = lax.stop_gradient(params["vqvae"])
            loss, (metrics, _) = objective.loss(p, ms["vq"], batch, rng)
            return jnp.zeros_like(loss), {**metrics, "restarted_codes": jnp.float32(0)}, ms["vq"]

        loss, metrics, state = lax.cond(ms["updates"] < phase1, train, frozen, None)
        return loss, (metrics, {**ms, "vq": state})

    def prior_loss(params, ms, batch, rng):
        def train(_):
            vq = lax.stop_gradient(params["vqvae"])
            codes = V.encode_indices(model, vq, ms["vq"], batch["x"], epsilon=m.epsilon)
            return prior_objective.loss(params["prior"], {"codes": codes}, rng)

        def idle(_):  # phase 1: nothing to compute (metrics read 0)
            return jnp.zeros(()), {"bits_per_code": jnp.zeros(())}

        loss, metrics = lax.cond(ms["updates"] >= phase1, train, idle, None)
        return loss, (metrics, ms)

    def post_update(params, ms, step):
        del params, step
        return {**ms, "updates": ms["updates"] + 1}

    vq_optimizer = optax.conditionally_mask(
        config.optimizer.build(phase1), lambda count: count < phase1
    )
    schedule = optax.cosine_decay_schedule(m.prior_learning_rate, m.prior_steps)
    prior_optimizer = optax.conditionally_mask(optax.adam(schedule), lambda count: count >= phase1)
    return Task(
        init=init,
        players=(
            Player("vqvae", vq_loss, vq_optimizer, stateful=True),
            Player("prior", prior_loss, prior_optimizer, stateful=True),
        ),
        init_model_state=init_model_state,
        post_update=post_update,
    )


# --------------------------------------------------------------------------------------------
# Evaluation.
# --------------------------------------------------------------------------------------------


def _split_x(config: RunConfig, dataset) -> jax.Array:
    raw = dataset.get(np.arange(dataset.num_examples))
    return preprocess(raw, jax.random.PRNGKey(0), config.data.preprocess(), dataset.image_max)["x"]


def _codes_and_reconstructions(model, params, state, x, epsilon, chunk=1024):
    @jax.jit
    def run(p, s, xb):
        idx = V.encode_indices(model, p, s, xb, epsilon=epsilon)
        return idx, V.decode_indices(model, p, s, idx, epsilon=epsilon)

    outs = [run(params, state, x[i : i + chunk]) for i in range(0, x.shape[0], chunk)]
    return (
        np.concatenate([np.asarray(o[0]) for o in outs]),
        np.concatenate([np.asarray(o[1]) for o in outs]),
    )


def code_metrics(indices: np.ndarray, recon: np.ndarray, x: np.ndarray, K: int) -> dict:
    """``recon_mse``, ``code_usage`` and ``perplexity`` of a split's code maps."""
    return {
        "recon_mse": float(np.mean(np.square(np.asarray(recon) - np.asarray(x)))),
        "code_usage": float(V.code_usage(jnp.asarray(indices), K)),
        "perplexity": float(L.codebook_perplexity(jnp.asarray(indices), K)),
    }


def eval_during(config: RunConfig, info: DataInfo, test):
    m = config.model_config
    model, _, prior_model = _checked(config, info)
    x_test = _split_x(config, test)
    bits = jax.jit(lambda p, c: P.bits_per_code(prior_model, p, c))

    def evaluate(params, model_state):
        idx, recon = _codes_and_reconstructions(
            model, params["vqvae"], model_state["vq"], x_test, m.epsilon
        )
        metrics = code_metrics(idx, recon, x_test, m.num_codes)
        metrics["prior_bits_per_code"] = float(bits(params["prior"], idx.reshape(len(idx), -1)))
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
    phase's steps (resumable, under ``compare/<name>``); returns (model, params, state)."""
    config, m = ctx.config, ctx.config.model_config
    rule, restart = VARIANTS[name]
    restart_after = (m.restart_after or _DEFAULT_RESTART) if restart else 0
    variant = dataclasses.replace(m, rule=rule, restart_after=restart_after)
    model = _model(variant, ctx.info)
    objective = _objective(variant, model)
    steps = vq_steps(config)
    train_config = dataclasses.replace(
        config.train,
        steps=steps,
        eval_every=0,
        checkpoint_every=steps,
        progress=False,
        best_metric="",
    )
    task = _vq_only_task(objective, config.optimizer.build(steps))
    result = fit(
        task,
        ctx.train,
        train_config,
        ctx.workdir / "compare" / name,
        preprocess_spec=config.data.preprocess(),
    )
    return model, result.state.params["model"], result.state.model_state


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
    config, m = ctx.config, ctx.config.model_config
    model, _, prior_model = _checked(config, ctx.info)
    params, state = ctx.params["vqvae"], ctx.model_state["vq"]
    x_train, x_test = (
        np.asarray(_split_x(config, ctx.train)),
        np.asarray(_split_x(config, ctx.test)),
    )
    K = m.num_codes
    seq_len = prior_model.seq_len

    idx_test, recon_test = _codes_and_reconstructions(model, params, state, x_test, m.epsilon)
    idx_train, _ = _codes_and_reconstructions(model, params, state, x_train, m.epsilon)
    metrics = code_metrics(idx_test, recon_test, x_test, K)
    bits = jax.jit(lambda p, c: P.bits_per_code(prior_model, p, c))
    metrics["prior_bits_per_code"] = float(bits(ctx.params["prior"], idx_test.reshape(-1, seq_len)))
    metrics["prior_train_bits_per_code"] = float(
        bits(ctx.params["prior"], idx_train.reshape(-1, seq_len))
    )
    metrics["prior_unigram_bits_per_code"] = unigram_bits_per_code(
        idx_train.reshape(-1, seq_len), idx_test.reshape(-1, seq_len), K
    )
    metrics["bits_per_image"] = seq_len * math.log2(K)
    metrics["restarted_codes_total"] = int(np.asarray(state.restarts))
    metrics.update(pca_baselines(x_train, x_test, metrics["bits_per_image"]))

    # Prior samples, decoded and classified.
    sample_fn = _sampler(model, prior_model, m)
    samples = np.asarray(sample_fn(ctx.params, ctx.model_state, jax.random.fold_in(ctx.rng, 1)))
    classifier = train_classifier(ctx.train)
    labels = ctx.test.features["label"]
    flat = lambda a: np.clip(np.asarray(a), 0.0, 1.0).reshape(len(a), -1)
    hist = classifier.class_histogram(flat(samples))
    metrics["prior_sample_classes"] = int(np.sum(hist > 0))
    metrics["prior_sample_min_class_fraction"] = float(hist.min())
    metrics["classifier_test_accuracy"] = classifier.accuracy(flat(x_test), labels)
    metrics["classifier_reconstruction_accuracy"] = classifier.accuracy(flat(recon_test), labels)

    # The codebook configurations side by side.
    table = {m.variant: {k: metrics[k] for k in ("recon_mse", "code_usage", "perplexity")}}
    histograms = {m.variant: np.bincount(idx_test.reshape(-1), minlength=K)}
    for name in m.compare:
        if name == m.variant:
            continue
        v_model, v_params, v_state = _train_variant(ctx, name)
        v_idx, v_recon = _codes_and_reconstructions(v_model, v_params, v_state, x_test, m.epsilon)
        table[name] = code_metrics(v_idx, v_recon, x_test, K)
        histograms[name] = np.bincount(v_idx.reshape(-1), minlength=K)
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


def _sampler(model: V.VQVAE, prior_model: P.CausalTransformer, m: VQVAEConfig):
    shape = model.code_map_shape()

    @jax.jit
    def run(params, model_state, rng):
        codes = P.sample(
            prior_model, params["prior"], rng, m.num_samples, temperature=m.temperature
        )
        codes = codes.reshape(m.num_samples, *shape)
        return V.decode_indices(model, params["vqvae"], model_state["vq"], codes, epsilon=m.epsilon)

    return run


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


def bind(config: RunConfig, info: DataInfo, params, model_state) -> dict:
    m = config.model_config
    model, _, prior_model = _checked(config, info)
    p, state, pp = params["vqvae"], model_state["vq"], params["prior"]
    shape = model.code_map_shape()
    eps = m.epsilon

    def sample(rng, n):
        codes = P.sample(prior_model, pp, rng, n, temperature=m.temperature)
        return V.decode_indices(model, p, state, codes.reshape(n, *shape), epsilon=eps)

    return {
        "model": lambda: model,
        "sample": sample,
        "sample_codes": lambda rng, n: P.sample(prior_model, pp, rng, n).reshape(n, *shape),
        "encode": lambda x: V.encode_indices(model, p, state, x, epsilon=eps),
        "decode": lambda codes: V.decode_indices(model, p, state, codes, epsilon=eps),
        "reconstruct": lambda x: V.reconstruct(model, p, state, x, epsilon=eps),
        "codebook": lambda: V.codebook(model, p, state, eps),
        "prior_bits_per_code": lambda codes: P.bits_per_code(
            prior_model, pp, jnp.asarray(codes).reshape(len(codes), -1)
        ),
    }


SPEC = ModelSpec(
    name="vqvae",
    description="VQ-VAE: codebook rules and health side by side, a transformer prior, PCA at "
    "equal bits",
    config_cls=VQVAEConfig,
    configs={"digits": _digits, "mnist": _mnist, "cifar10": _cifar10},
    build_task=build_task,
    evaluate=evaluate,
    bind=bind,
    metric_names=("recon_mse", "code_usage", "perplexity", "prior_bits_per_code"),
    eval_during=eval_during,
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
