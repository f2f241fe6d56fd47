"""A run's work directory read back: ``load_run(workdir)`` rebuilds the model from the saved
configuration through the library's registry (:func:`genjax.models.config_class`) and
restores the newest readable checkpoint into it::

    run = genjax.load_run("runs/vae-digits")
    x = run.sample(jax.random.key(0), 16)      # [16, 64]
    z_mean, z_log_var = run.encode(x)          # [16, q] each
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from genjax import data, models
from genjax.config import ConfigError, RunConfig, from_dict, model_error
from genjax.data import DatasetError, load
from genjax.models.base import DataInfo, Objective
from genjax.train import Checkpointer, ResumeError, init_state

__all__ = ["RUN_ERRORS", "Run", "RunError", "data_info", "initial_state", "load_run"]


class RunError(ValueError):
    """A work directory cannot be loaded as a genjax run; the message names the file and the
    problem."""


#: Errors that are the user's input, not a bug: one line and exit code 2 in the command.
RUN_ERRORS = (ConfigError, DatasetError, ResumeError, RunError)


def load_split(config: RunConfig, split: str):
    """The ``split`` of the run's dataset (``genjax.data.load``). The training split is
    streamed from disk as ``data.streaming`` and ``data.streaming_above_mb`` say; the other
    splits, which the evaluations read whole, are held in memory."""
    streaming = config.data.streaming if split == "train" else "false"
    return load(
        config.dataset,
        split,
        data_dir=config.data.data_dir or None,
        streaming=streaming,
        streaming_above_mb=config.data.streaming_above_mb,
    )


def data_info(config: RunConfig, dataset) -> DataInfo:
    """What the model of ``config`` is told about ``dataset`` (:func:`genjax.data.data_info`
    with the run's preprocessing)."""
    return data.data_info(dataset, config.data.preprocess())


def build_objective(config: RunConfig, info: DataInfo) -> Objective:
    """``config.model_config.objective(info)``, its errors in the command's words."""
    try:
        return config.model_config.objective(info)
    except ValueError as err:
        raise model_error(err, type(config.model_config)) from None


def build_task(config: RunConfig, objective: Objective):
    """The engine's task of a run: the objective's, with the run's optimizer and steps."""
    try:
        return objective.run_task(config.optimizer.build, config.train.steps)
    except ValueError as err:
        raise model_error(err, type(config.model_config)) from None


def initial_state(config: RunConfig, info: DataInfo, task):
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

    The model's functions are methods bound to the loaded parameters: ``run.sample(rng, n)``
    for every model, ``run.encode(x)``, ``run.decode(z, ...)``, ``run.reconstruct(x, ...)``
    where the model has them, ``run.convert(x, source, target)`` for the Cycle VAE, and any
    further function its objective lists in ``functions()`` (the GAN's ``discriminate``).

    Attributes:
      workdir: the run's directory.
      config: its resolved ``RunConfig`` (``evaluation`` is None: the command's evaluation
        settings are not the library's to read).
      info: what the model was told about the data (:class:`~genjax.models.base.DataInfo`).
      objective: the family's :class:`~genjax.models.base.Objective` for that data.
      step: the step of the checkpoint that was loaded.
      params: the parameters (``dict[player, params]`` as the engine keeps them).
      model_state: the non-gradient state.
      summary: ``summary.json`` if the run finished, else None.
    """

    workdir: Path
    config: RunConfig
    info: DataInfo
    objective: Objective
    step: int
    params: Any
    model_state: Any
    summary: dict | None

    @property
    def model(self) -> Any:
        """The object the family's module-level functions take first."""
        return self.objective.model

    def functions(self) -> tuple[str, ...]:
        return self.objective.functions()

    def sample(self, rng: jax.Array, n: int, *args, **kwargs):
        return self.objective.sample(self.params, self.model_state, rng, n, *args, **kwargs)

    def encode(self, x, *args, **kwargs):
        return self._call("encode", x, *args, **kwargs)

    def decode(self, z, *args, **kwargs):
        return self._call("decode", z, *args, **kwargs)

    def reconstruct(self, x, *args, **kwargs):
        return self._call("reconstruct", x, *args, **kwargs)

    def convert(self, x, source, target, **kwargs):
        return self._call("convert", x, source, target, **kwargs)

    def _call(self, name: str, *args, **kwargs):
        if name not in self.functions():
            raise AttributeError(
                f"this {self.config.model} run has no {name!r}; it offers "
                f"{', '.join(self.functions())}"
            )
        return getattr(self.objective, name)(self.params, self.model_state, *args, **kwargs)

    def __getattr__(self, name: str):
        objective = self.__dict__.get("objective")
        if objective is not None and not name.startswith("_") and name in objective.functions():
            return lambda *args, **kwargs: self._call(name, *args, **kwargs)
        model = self.__dict__["config"].model if "config" in self.__dict__ else "genjax"
        offers = ", ".join(objective.functions()) if objective is not None else "nothing"
        raise AttributeError(f"this {model} run has no {name!r}; it offers {offers}")


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise RunError(f"{path} is missing: the directory holds no complete genjax run ({what})")
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise RunError(f"{path} is not valid JSON ({err}); it should hold {what}") from None


def read_config(workdir: Path, eval_cls: type | None = None) -> RunConfig:
    """The ``RunConfig`` saved in ``workdir/config.json`` (``RunError`` naming the problem)."""
    config_path = workdir / "config.json"
    raw = _read_json(config_path, "the run's configuration")
    if not isinstance(raw, dict) or "model" not in raw:
        raise RunError(f"{config_path} is not a genjax run's configuration (no 'model' key)")
    if raw["model"] not in models.families():
        raise RunError(
            f"{config_path} names model {raw['model']!r}, which this genjax does not have "
            f"(it has {', '.join(models.families())})"
        )
    try:
        return from_dict(raw, models.config_class(raw["model"]), eval_cls)
    except ConfigError as err:
        raise RunError(f"{config_path}: {err}") from None


def read_data_info(workdir: Path) -> DataInfo:
    info_path = workdir / "data_info.json"
    raw = _read_json(info_path, "the shape of the model's input")
    if not isinstance(raw, dict):
        raise RunError(f"{info_path} is not an object")
    fields = {f.name for f in dataclasses.fields(DataInfo)}
    try:
        return DataInfo(**{k: v for k, v in raw.items() if k in fields})
    except (KeyError, TypeError, ValueError) as err:
        raise RunError(f"{info_path} lacks or mangles an entry ({err})") from None


def write_data_info(workdir: Path, info: DataInfo) -> None:
    (workdir / "data_info.json").write_text(json.dumps(dataclasses.asdict(info)) + "\n")


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
    config = read_config(workdir)
    info = read_data_info(workdir)
    config_path = workdir / "config.json"
    try:
        objective = build_objective(config, info)
        task = build_task(config, objective)
    except ConfigError as err:
        raise RunError(f"{config_path}: {err}") from None
    template = initial_state(config, info, task)
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
    return Run(
        workdir=workdir,
        config=config,
        info=info,
        objective=objective,
        step=step,
        params=state.params,
        model_state=state.model_state,
        summary=summary,
    )
