"""Data of a run, and loading a finished or interrupted run back (``genjax.load_run``)."""

from __future__ import annotations

import dataclasses
import json
import warnings
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


def initial_state(spec: registry.ModelSpec, config: RunConfig, info: registry.DataInfo, task):
    """The train state a run of ``config`` starts from (host arrays), built from the input's
    shape alone: the template a checkpoint is restored into."""
    example = {"x": jnp.zeros((1, *info.shape), jnp.float32), "label": jnp.zeros((1,), jnp.int32)}
    state = jax.jit(lambda rng: init_state(task, rng, example))(
        jax.random.PRNGKey(config.train.seed)
    )
    return jax.tree.map(np.asarray, state)


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


class RunError(ValueError):
    """A work directory cannot be loaded as a genjax run; the message names the file and the
    problem."""


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise RunError(f"{path} is missing: the directory holds no complete genjax run ({what})")
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise RunError(f"{path} is not valid JSON ({err}); it should hold {what}") from None


def load_run(workdir: str | Path) -> Run:
    """Load the run in ``workdir``: its config, newest readable checkpoint, bound functions.

    Raises ``FileNotFoundError`` for a directory that does not exist, ``RunError`` (one line
    naming the file and what is wrong) for anything else that is not a loadable run: a
    missing or malformed ``config.json`` / ``data_info.json``, a model this genjax does not
    have, config keys its model does not take, checkpoints of another model (a config edited
    after training), or no readable checkpoint. When ``summary.json`` describes a later step
    than the newest readable checkpoint (the final one is damaged), it warns and leaves
    ``summary`` as None, since the summary does not describe the parameters loaded.
    """
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise FileNotFoundError(f"run directory {workdir} does not exist")
    config_path = workdir / "config.json"
    raw = _read_json(config_path, "the run's configuration")
    if not isinstance(raw, dict) or "model" not in raw:
        raise RunError(f"{config_path} is not a genjax run's configuration (no 'model' key)")
    if raw["model"] not in registry.model_names():
        raise RunError(
            f"{config_path} names model {raw['model']!r}, which this genjax does not have "
            f"(it has {', '.join(registry.model_names())})"
        )
    spec = registry.get(raw["model"])
    try:
        config = from_dict(raw, spec.config_cls)
    except ConfigError as err:
        raise RunError(f"{config_path}: {err}") from None
    info_path = workdir / "data_info.json"
    info_raw = _read_json(info_path, "the shape of the model's input")
    try:
        info = registry.DataInfo(
            name=info_raw["name"],
            shape=tuple(info_raw["shape"]),
            num_classes=info_raw["num_classes"],
            image_shape=tuple(info_raw["image_shape"]) if info_raw["image_shape"] else None,
        )
    except (KeyError, TypeError) as err:
        raise RunError(f"{info_path} lacks or mangles the entry {err}") from None
    task = spec.build_task(config, info)
    template = initial_state(spec, config, info, task)
    ckpt = Checkpointer(workdir / "checkpoints", asynchronous=False, read_only=True)
    try:
        restored = ckpt.restore_latest(template)
    except ResumeError as err:
        raise RunError(f"{err}; was {config_path} edited after the run was trained?") from None
    finally:
        ckpt.close()
    if restored is None:
        raise RunError(f"{workdir / 'checkpoints'} holds no readable checkpoint yet")
    state, _ = restored
    step = int(state.step)
    summary_path = workdir / "summary.json"
    summary = _read_json(summary_path, "the run's summary") if summary_path.exists() else None
    if summary is not None and summary.get("steps") != step:
        warnings.warn(
            f"{summary_path} describes step {summary.get('steps')}, but the newest readable "
            f"checkpoint is step {step}; loading step {step} with no summary (rerun the "
            "command to finish the run)",
            RuntimeWarning,
            stacklevel=2,
        )
        summary = None
    functions = spec.bind(config, info, state.params, state.model_state)
    return Run(
        workdir=workdir,
        config=config,
        info=info,
        step=step,
        params=state.params,
        model_state=state.model_state,
        summary=summary,
        functions=functions,
    )
