"""Data of a run, and loading a finished or interrupted run back (``genjax.load_run``)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import registry
from experiments.config import ConfigError, RunConfig, from_dict
from genjax.data import DatasetError, load, preprocess
from genjax.train import Checkpointer, ResumeError, init_state

#: Errors that are the user's input, not a bug: one line and exit code 2 in the command.
RUN_ERRORS = (ConfigError, DatasetError, ResumeError)


def load_split(config: RunConfig, split: str):
    return load(config.dataset, split, data_dir=config.data.data_dir or None)


def data_info(config: RunConfig, dataset) -> registry.DataInfo:
    """The shape of one preprocessed input, read off the first example."""
    raw = dataset.get(np.arange(1))
    x = preprocess(raw, jax.random.PRNGKey(0), config.data.preprocess(), dataset.image_max)["x"]
    image = dataset.features.get("image")
    return registry.DataInfo(
        name=dataset.name,
        shape=tuple(int(d) for d in x.shape[1:]),
        num_classes=dataset.num_classes,
        image_shape=tuple(int(d) for d in image.shape[1:]) if image is not None else None,
    )


@dataclasses.dataclass
class Run:
    """A trained (or partly trained) run, loaded from its work directory.

    Attributes:
      workdir: the run's directory.
      config: its resolved ``RunConfig``.
      info: the input shape and classes (``DataInfo``).
      step: the step of the checkpoint that was loaded.
      params: the parameters (``dict[player, params]`` as the engine keeps them).
      model_state: the non-gradient state.
      summary: ``summary.json`` if the run finished, else None.
      functions: the model's functions bound to the parameters; also reachable as
        attributes: ``run.sample(rng, n)`` for every model, ``run.encode(x)`` /
        ``run.reconstruct(x)`` where the model has an encoder, ``run.convert(x, source,
        target)`` for the Cycle VAE.
    """

    workdir: Path
    config: RunConfig
    info: registry.DataInfo
    step: int
    params: Any
    model_state: Any
    summary: dict | None
    functions: dict[str, Callable]

    def __getattr__(self, name):
        functions = self.__dict__.get("functions", {})
        if name in functions:
            return functions[name]
        raise AttributeError(
            f"this {self.__dict__.get('config').model if 'config' in self.__dict__ else ''} "
            f"run has no {name!r}; it offers {sorted(functions)}"
        )


def load_run(workdir: str | Path) -> Run:
    """Load the run in ``workdir``: its config, newest readable checkpoint, bound functions."""
    workdir = Path(workdir)
    config_path = workdir / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{workdir} holds no genjax run (no config.json)")
    raw = json.loads(config_path.read_text())
    spec = registry.get(raw["model"])
    config = from_dict(raw, spec.config_cls)
    info_raw = json.loads((workdir / "data_info.json").read_text())
    info = registry.DataInfo(
        name=info_raw["name"],
        shape=tuple(info_raw["shape"]),
        num_classes=info_raw["num_classes"],
        image_shape=tuple(info_raw["image_shape"]) if info_raw["image_shape"] else None,
    )
    task = spec.build_task(config, info)
    example = {"x": jnp.zeros((1, *info.shape), jnp.float32), "label": jnp.zeros((1,), jnp.int32)}
    template = jax.tree.map(
        np.asarray,
        jax.jit(lambda rng: init_state(task, rng, example))(jax.random.PRNGKey(config.train.seed)),
    )
    ckpt = Checkpointer(workdir / "checkpoints", asynchronous=False, read_only=True)
    try:
        restored = ckpt.restore_latest(template)
    finally:
        ckpt.close()
    if restored is None:
        raise FileNotFoundError(f"{workdir} has no readable checkpoint yet")
    state, _ = restored
    summary_path = workdir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    functions = spec.bind(config, info, state.params, state.model_state)
    return Run(
        workdir=workdir,
        config=config,
        info=info,
        step=int(state.step),
        params=state.params,
        model_state=state.model_state,
        summary=summary,
        functions=functions,
    )
