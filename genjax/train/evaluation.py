"""Evaluation during a run: on the test split every ``eval_every`` steps and at the end.

``evaluate(params, model_state) -> metrics`` gives the ``"split": "test"`` lines of
``metrics.jsonl``, and the metrics the checkpoint of that step is ranked by when the run
keeps its best checkpoint (``best_metric``); ``on_eval(step, params, model_state)`` runs at
the same steps (figures of the model as training goes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from genjax.train.metrics_log import MetricsLog
from genjax.train.state import TrainState
from genjax.train.step import Engine

if TYPE_CHECKING:
    from genjax.train.loop import TrainConfig


def check_best_metric(config: TrainConfig, metrics: dict) -> None:
    """``ValueError`` when ``config.best_metric`` is set and not among ``metrics``."""
    if config.best_metric and config.best_metric not in metrics:
        raise ValueError(
            f"train.best_metric={config.best_metric!r} is not one of the evaluation's metrics "
            f"{sorted(metrics)}"
        )


class Evaluation:
    """The run's evaluations; ``last`` holds the newest metrics (``{}`` before any).

    Args:
      config: ``best_metric``.
      evaluate: ``(params, model_state) -> metrics``, or ``None`` for no evaluation.
      on_eval: ``(step, params, model_state) -> None``, or ``None``.
    """

    def __init__(
        self,
        config: TrainConfig,
        evaluate: Callable[[Any, Any], dict] | None,
        on_eval: Callable[[int, Any, Any], None] | None,
    ):
        self.config = config
        self.evaluate = evaluate
        self.on_eval = on_eval
        self.last: dict = {}

    def check_best_metric_before_training(self, fresh: TrainState) -> None:
        """Name a misspelt ``best_metric`` now, before anything is written, not at the first
        evaluation: evaluate the fresh state once and check that it reports the metric (and
        that there is an evaluation at all)."""
        if not self.config.best_metric:
            return
        if self.evaluate is None:
            raise ValueError(
                f"train.best_metric={self.config.best_metric!r} ranks checkpoints by an "
                "evaluation metric, but this run has no evaluation (pass evaluate=...)"
            )
        check_best_metric(self.config, self.evaluate(fresh.params, fresh.model_state))

    def measure(self, engine: Engine, state: TrainState) -> dict:
        """Evaluate the engine's ``state`` (metrics as floats) into ``last``, if there is an
        evaluation; returns ``last``."""
        if self.evaluate is not None:
            metrics = self.evaluate(engine.params(state), engine.model_state(state))
            self.last = {k: float(v) for k, v in metrics.items()}
        return self.last

    def at_step(self, step: int, engine: Engine, state: TrainState, log: MetricsLog) -> None:
        """The evaluation due at ``step``: measure, write the test line, check that it
        reports ``best_metric``; then ``on_eval``."""
        if self.evaluate is not None:
            self.measure(engine, state)
            log.write({"step": step, "split": "test", **self.last})
            check_best_metric(self.config, self.last)
        if self.on_eval is not None:
            self.on_eval(step, engine.params(state), engine.model_state(state))
