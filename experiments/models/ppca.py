"""PPCA in the experiment command: gradient training through the engine, beside the closed
form and EM on the same split (Tipping & Bishop, 1999).

The model, its hyper-parameters and its loss are the library's (``genjax.models.ppca``:
``PPCAConfig``, ``PPCAObjective``); this module holds the dataset configs, the evaluation
settings (``PPCAEval``), the evaluation and its figures.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np

from experiments.models import schedule
from experiments.registry import EvalContext, ModelSpec
from genjax import viz
from genjax._checks import check_int
from genjax.config import ConfigError, DataConfig, OptimizerConfig, RunConfig
from genjax.data import preprocess
from genjax.models import ppca


@dataclasses.dataclass(frozen=True)
class PPCAEval:
    """PPCA's evaluation settings (the baselines fitted beside gradient training).

    Attributes:
      em_steps: EM iterations run beside gradient training for comparison.
      select_q: candidate q values whose held-out log-likelihood is reported ('' = none).
    """

    em_steps: int = 300
    select_q: tuple[int, ...] = (1, 2, 5, 10, 20, 30, 40)

    def __post_init__(self):
        try:
            check_int("eval.em_steps", self.em_steps, 1)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        select_q = tuple(self.select_q)
        if any(isinstance(q, bool) or not isinstance(q, int | np.integer) for q in select_q):
            raise ConfigError(f"eval.select_q must hold ints, got {self.select_q}")
        if any(q < 1 for q in select_q):
            raise ConfigError(f"eval.select_q must hold values >= 1, got {self.select_q}")
        object.__setattr__(self, "select_q", select_q)


def _digits() -> RunConfig:
    return RunConfig(
        model="ppca",
        dataset="digits",
        model_config=ppca.PPCAConfig(),
        evaluation=PPCAEval(),
        train=schedule(3000, 256, 100, checkpoint_every=1000, data_on_device=False),
        optimizer=OptimizerConfig(learning_rate=3e-2, cosine_decay=True),
        data=DataConfig(flatten=True),
    )


def _mnist() -> RunConfig:
    return dataclasses.replace(
        _digits(),
        dataset="mnist",
        model_config=ppca.PPCAConfig(latent_dim=32),
        evaluation=PPCAEval(select_q=(8, 16, 32, 64, 128)),
        train=schedule(5000, 512, 100, checkpoint_every=1000, data_on_device=False),
    )


def _split_x(config: RunConfig, dataset) -> np.ndarray:
    raw = dataset.get(np.arange(dataset.num_examples))
    batch = preprocess(raw, jax.random.PRNGKey(0), config.data.preprocess(), dataset.image_max)
    return np.asarray(batch["x"], np.float64)


def eval_during(config: RunConfig, objective: ppca.PPCAObjective, test):
    x_test = jnp.asarray(_split_x(config, test), jnp.float32)

    def evaluate(params, model_state):
        ll = objective.log_likelihood(params, model_state, x_test)
        return {"test_log_likelihood": float(jnp.mean(ll))}

    return evaluate


def evaluate(ctx: EvalContext) -> dict:
    config, objective = ctx.config, ctx.objective
    model, q = objective.model, objective.model.latent_dim
    x_train, x_test = _split_x(config, ctx.train), _split_x(config, ctx.test)

    def mean_ll(p, x):
        return float(jnp.mean(ppca.log_likelihood(model, p, jnp.asarray(x, jnp.float32))))

    grad = objective.ppca_params(ctx.params)
    closed = ppca.fit_closed_form(jnp.asarray(x_train, jnp.float32), q)
    em, trace = ppca.fit_em(
        jnp.asarray(x_train, jnp.float32), q, steps=config.evaluation.em_steps, rng=ctx.rng
    )
    metrics = {
        "test_log_likelihood": mean_ll(grad, x_test),
        "train_log_likelihood": mean_ll(grad, x_train),
        "closed_form_test_log_likelihood": mean_ll(closed, x_test),
        "closed_form_train_log_likelihood": mean_ll(closed, x_train),
        "em_test_log_likelihood": mean_ll(em, x_test),
        "em_train_log_likelihood": mean_ll(em, x_train),
        "sigma2": float(grad.sigma2),
        "closed_form_sigma2": float(closed.sigma2),
    }
    candidates = [c for c in config.evaluation.select_q if c < x_train.shape[1]]
    if candidates:
        held_out = ppca.select_latent_dim(
            jnp.asarray(x_train, jnp.float32), jnp.asarray(x_test, jnp.float32), candidates
        )
        (ctx.workdir / "q_selection.json").write_text(json.dumps(held_out, indent=2) + "\n")
        metrics["best_q_by_test_log_likelihood"] = int(max(held_out, key=held_out.get))
        viz.curves(
            [{"step": k, "split": "test", "test_log_likelihood": v} for k, v in held_out.items()],
            ["test_log_likelihood"],
            ctx.figures / "q_selection.png",
            split="test",
            title="held-out log-likelihood by q (closed form)",
        )
    _figures(ctx, model, grad, x_test, np.asarray(trace))
    return metrics


def _figures(ctx: EvalContext, model: ppca.PPCA, p: ppca.PPCAParams, x_test, em_trace) -> None:
    shape = ctx.info.image_shape
    figs = ctx.figures
    q = p.W.shape[1]
    if shape is not None:
        W = np.asarray(p.W).T  # [q, D]
        W = W / (np.abs(W).max(axis=1, keepdims=True) + 1e-12)
        viz.image_grid(
            (W + 1) / 2,
            figs / "principal_directions.png",
            image_shape=shape,
            ncols=min(q, 10),
            title="columns of W (grey = 0)",
        )
        samples = np.asarray(ppca.sample(model, p, jax.random.PRNGKey(7), 64))
        viz.image_grid(
            samples, figs / "samples.png", image_shape=shape, ncols=16, title="samples from p(x)"
        )
        x = x_test[:16]
        recon = np.asarray(ppca.reconstruct(model, p, jnp.asarray(x, jnp.float32)))
        viz.image_grid(
            np.concatenate([x, recon]),
            figs / "reconstructions.png",
            image_shape=shape,
            ncols=16,
            title="test images (top), reconstructions",
        )
    history = [r for r in ctx.history if "log_likelihood" in r]
    viz.curves(
        history,
        ["log_likelihood"],
        figs / "training_curve.png",
        title="train log-likelihood (gradient)",
        ylabel="nats / example",
    )
    viz.curves(
        [{"step": i + 1, "split": "em", "em": v} for i, v in enumerate(em_trace)],
        ["em"],
        figs / "em_curve.png",
        split="em",
        title="EM train log-likelihood",
    )
    if q == 2:
        z = np.asarray(ppca.encode(model, p, jnp.asarray(x_test, jnp.float32)))
        labels = ctx.test.features.get("label")
        viz.scatter(
            z,
            figs / "latent_scatter.png",
            labels=labels,
            title="E[z|x] of the test split, by class",
        )


SPEC = ModelSpec(
    name="ppca",
    description="probabilistic PCA: gradient training vs the closed form and EM",
    configs={"digits": _digits, "mnist": _mnist},
    evaluate=evaluate,
    metric_names=("test_log_likelihood", "closed_form_test_log_likelihood"),
    eval_cls=PPCAEval,
    eval_during=eval_during,
    headline=(
        (
            "test log-likelihood, gradient training (nats/example)",
            "test_log_likelihood",
            "closed_form_test_log_likelihood",
            "maximum-likelihood closed form (Tipping & Bishop 1999)",
        ),
        (
            "test log-likelihood, EM (nats/example)",
            "em_test_log_likelihood",
            "closed_form_test_log_likelihood",
            "closed form",
        ),
    ),
    key_figures=("samples.png", "reconstructions.png", "principal_directions.png"),
    outputs=("q_selection.json",),
)
