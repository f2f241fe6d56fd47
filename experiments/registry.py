"""Where each model joins the experiment command: one ``ModelSpec`` per model.

A model registers, in one place (its module under ``experiments/models/``):

* its hyperparameter dataclass and one ``RunConfig`` per supported dataset (``configs``);
* ``build_task(config, info) -> genjax.train.Task`` — the objective and optimizers;
* ``evaluate(ctx) -> dict`` — the final test metrics, under the names documented in the
  README (it may also write figures into ``ctx.workdir / "figures"``);
* optionally ``eval_during(config, info) -> (params, model_state) -> dict`` — cheap test
  metrics for ``train.eval_every``;
* optionally ``snapshot(config, info, workdir) -> (step, params, model_state) -> None`` —
  figures of the model at the same regular intervals (``train.eval_every``);
* ``bind(config, info, params, model_state) -> dict[str, callable]`` — the model's functions
  bound to trained parameters (``sample(rng, n)``, and ``encode`` / ``reconstruct`` /
  ``convert`` where the model has them), used by ``genjax.load_run``.

The command (``experiments.train``) looks models up here and has no per-model branches.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiments.config import RunConfig


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about its data, without holding the data.

    Attributes:
      name: dataset name.
      shape: shape of one preprocessed input ``x`` (e.g. ``(64,)`` flattened digits).
      num_classes: label classes (modes for 2-D mixtures), or None.
      image_shape: ``(H, W, C)`` of the raw images, or None for vector data.
    """

    name: str
    shape: tuple[int, ...]
    num_classes: int | None
    image_shape: tuple[int, ...] | None


@dataclasses.dataclass
class EvalContext:
    """Everything ``ModelSpec.evaluate`` may use."""

    config: RunConfig
    info: DataInfo
    params: Any
    model_state: Any
    train: Any  # genjax.data.Dataset
    test: Any  # genjax.data.Dataset
    workdir: Path
    rng: Any
    history: list[dict]  # the lines of metrics.jsonl

    @property
    def figures(self) -> Path:
        path = self.workdir / "figures"
        path.mkdir(exist_ok=True)
        return path


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model's entry in the experiment command (see the module docstring)."""

    name: str
    description: str
    config_cls: type
    configs: dict[str, Callable[[], RunConfig]]
    build_task: Callable[[RunConfig, DataInfo], Any]
    evaluate: Callable[[EvalContext], dict]
    bind: Callable[[RunConfig, DataInfo, Any, Any], dict[str, Callable]]
    metric_names: tuple[str, ...]
    eval_during: Callable[[RunConfig, DataInfo, Any], Callable[[Any, Any], dict]] | None = None
    snapshot: Callable[[RunConfig, DataInfo, Path], Callable[[int, Any, Any], None]] | None = None
    #: Rows of the report's headline table: (label, metric, reference metric or None,
    #: what the reference is). Both values are read from the run's own summary.json.
    headline: tuple[tuple[str, str, str | None, str], ...] = ()
    #: Figures (file names under figures/) shown first in the report, in this order.
    key_figures: tuple[str, ...] = ()
    #: Files and folders the model's evaluation writes at the top of the work directory,
    #: besides the command's own: what ``--overwrite`` may remove.
    outputs: tuple[str, ...] = ()


# Model name -> module that defines ``SPEC``. Importing lazily keeps ``--help`` fast and lets
# a broken model fail only when it is used.
_MODULES = {
    "cyclevae": "experiments.models.cyclevae",
    "gan": "experiments.models.gan",
    "ppca": "experiments.models.ppca",
    "vae": "experiments.models.vae",
    "vqvae": "experiments.models.vqvae",
}

_loaded: dict[str, ModelSpec] = {}


def model_names() -> list[str]:
    return sorted(_MODULES)


def get(name: str) -> ModelSpec:
    if name not in _MODULES:
        raise KeyError(name)
    if name not in _loaded:
        _loaded[name] = importlib.import_module(_MODULES[name]).SPEC
    return _loaded[name]
