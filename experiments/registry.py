"""The experiment command's models: one ``ModelSpec`` per model, in ``experiments/models/``.

Each module there declares, for its family of the library (``genjax.models``):

* ``configs``: one ``RunConfig`` per supported dataset (the library's hyper-parameter
  dataclass in ``model_config``, the experiment's evaluation settings in ``evaluation``);
* ``evaluate(ctx) -> dict``: the final test metrics, under the names documented in the
  README (it may also write figures into ``ctx.figures``);
* optionally ``eval_during(config, objective, test) -> (params, model_state) -> dict``: cheap
  test metrics for ``train.eval_every``, and ``snapshot(config, objective, workdir) ->
  (step, params, model_state) -> None``: figures at the same intervals.

The command itself (``genjax.cli``) builds the model through the library's registry and has
no per-model branches; ``python -m experiments.train`` is that command with these specs.
"""

from __future__ import annotations

import importlib

from genjax.cli import EvalContext, ModelSpec
from genjax.models.base import DataInfo

__all__ = ["DataInfo", "EvalContext", "ModelSpec", "get", "model_names"]

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
