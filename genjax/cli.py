"""The training command: one model on one dataset into a resumable work directory.

    genjax-train --model MODEL --dataset NAME --workdir DIR [--set section.key=value ...]

The same command in an existing work directory resumes the run; a finished run is not
retrained. Every run writes into its work directory:

  config.json     the resolved configuration
  data_info.json  what the model was told about its input (so ``genjax.load_run`` needs no data)
  metrics.jsonl   train metrics every ``train.log_every`` steps, test metrics when evaluated
  tensorboard/    the same curves as TensorBoard event files (``train.tensorboard``)
  checkpoints/    Orbax checkpoints (the last ``train.keep_checkpoints``, and the best)
  figures/        PNG figures (where the evaluation draws any)
  summary.json    {"model", "dataset", "steps", "wall_s", "metrics": {...}} at the end

What the command knows of each model is a :class:`ModelSpec`: its starting configurations
and its evaluation. Installed, ``genjax-train`` uses the library's own specs
(:func:`library_specs`): any model on any dataset ``genjax.data`` reads, evaluated by the
mean of its training objective's metrics on the test split. A checkout's
``python -m experiments.train`` is this same command with the experiments' specs (tuned
configurations per dataset, the published metrics, figures).

Bad input (unknown model, dataset or key, a wrong value, a work directory holding another
run, a dataset that is not prepared, an unwritable directory) exits with code 2 and one line
on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from genjax import models, xla_defaults
from genjax.config import (
    ConfigError,
    DataConfig,
    OptimizerConfig,
    RunConfig,
    apply_overrides,
    describe_fields,
    from_dict,
)
from genjax.data.sources import StreamingDataset
from genjax.models.base import DataInfo, Objective
from genjax.runs import (
    RUN_ERRORS,
    build_objective,
    build_task,
    data_info,
    initial_state,
    load_split,
    write_data_info,
)
from genjax.train import NonFiniteError, TrainConfig


@dataclasses.dataclass
class EvalContext:
    """Everything a spec's ``evaluate`` may use."""

    config: RunConfig
    info: DataInfo
    objective: Objective
    params: Any  # the engine's dict[player, params]
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
    """A model's entry in the command.

    Attributes:
      name: the family's registry name (``genjax.models.families()``).
      description: one line for ``--help``.
      configs: dataset name -> the ``RunConfig`` the command starts from on it.
      evaluate: ``(EvalContext) -> dict`` of final test metrics.
      metric_names: the names ``evaluate`` reports (documentation and the report).
      eval_cls: frozen dataclass of the evaluation settings (section ``eval``, keys
        ``eval.<field>``), or None.
      eval_during: ``(config, objective, test) -> (params, model_state) -> dict``: cheap test
        metrics every ``train.eval_every`` steps.
      snapshot: ``(config, objective, workdir) -> (step, params, model_state) -> None``:
        figures at the same intervals.
      check: ``(config, info) -> None``: checks across sections (raise ``ConfigError``).
      headline: rows of the report's headline table: (label, metric, reference metric or
        None, what the reference is).
      key_figures: figures (file names under figures/) shown first in the report.
      outputs: files and folders the evaluation writes at the top of the work directory,
        besides the command's own: what ``--overwrite`` may remove.
      default_config: ``(dataset) -> RunConfig`` for a dataset not in ``configs`` (None:
        only the datasets in ``configs``).
    """

    name: str
    description: str
    configs: Mapping[str, Callable[[], RunConfig]]
    evaluate: Callable[[EvalContext], dict]
    metric_names: tuple[str, ...] = ()
    eval_cls: type | None = None
    eval_during: Callable[[RunConfig, Objective, Any], Callable[[Any, Any], dict]] | None = None
    snapshot: Callable[[RunConfig, Objective, Path], Callable[[int, Any, Any], None]] | None = None
    check: Callable[[RunConfig, DataInfo], None] | None = None
    headline: tuple[tuple[str, str, str | None, str], ...] = ()
    key_figures: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    default_config: Callable[[str], RunConfig] | None = None


PROG = "genjax-train"


class Catalog(Protocol):
    """Where the command finds its models (``experiments.registry`` is one)."""

    def model_names(self) -> list[str]: ...

    def get(self, name: str) -> ModelSpec: ...


class UsageError(Exception):
    """Bad input: reported as one line on stderr with exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's own default prints usage too)
        raise UsageError(message)


def _datasets(spec: ModelSpec) -> str:
    names = ", ".join(sorted(spec.configs))
    if spec.default_config is not None:
        return (names + ", " if names else "") + "any dataset genjax.data reads"
    return names


def _help_epilog(catalog: Catalog) -> str:
    lines = ["models and their datasets:"]
    for name in catalog.model_names():
        try:
            spec = catalog.get(name)
            lines.append(f"  {name:<10} {spec.description}")
            lines.append(f"  {'':<10} datasets: {_datasets(spec)}")
        except ImportError as err:  # a model whose dependencies are missing
            lines.append(f"  {name:<10} (unavailable: {err})")
    sections = [("train", TrainConfig), ("optimizer", OptimizerConfig), ("data", DataConfig)]
    for name in catalog.model_names():
        with contextlib.suppress(ImportError):
            sections.append((f"model ({name})", models.config_class(name)))
            if (eval_cls := catalog.get(name).eval_cls) is not None:
                sections.append((f"eval ({name})", eval_cls))
    lines.append("")
    lines.append(
        "options for --set section.key=value (defaults shown; each model x dataset config "
        "may set its own):"
    )
    for title, cls in sections:
        prefix = title.split()[0]
        lines.append(f"  [{title}]")
        for field, default, meaning in describe_fields(cls):
            lines.append(f"    {prefix}.{field} = {default}")
            if meaning:
                lines.append(f"        {meaning}")
    return "\n".join(lines)


def add_overrides_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``, the list that
    :func:`resolve_config` applies."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )


def build_parser(catalog: Catalog | None = None) -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Train a genjax model on a dataset into a work directory (resumable).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_help_epilog(catalog or LIBRARY),
    )
    parser.add_argument("--model", required=True, help="model name (see below)")
    parser.add_argument("--dataset", required=True, help="dataset name (see below)")
    parser.add_argument(
        "--workdir", required=True, help="directory of the run (resumed if it exists)"
    )
    add_overrides_argument(
        parser, "override a config value, e.g. --set train.steps=500 (repeatable)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="discard a different genjax run found in --workdir instead of refusing (only the "
        "files a run writes; a directory holding anything else is never emptied)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary table")
    return parser


def resolve_config(
    model: str, dataset: str, overrides: list[str], catalog: Catalog | None = None
) -> RunConfig:
    catalog = catalog or LIBRARY
    if model not in catalog.model_names():
        raise UsageError(
            f"unknown model {model!r}; choose one of: {', '.join(catalog.model_names())}"
        )
    spec = catalog.get(model)
    if dataset in spec.configs:
        start = spec.configs[dataset]
    elif spec.default_config is not None:
        start = functools.partial(spec.default_config, dataset)
    else:
        raise UsageError(
            f"unknown dataset {dataset!r} for model {model!r}; choose one of: "
            f"{', '.join(sorted(spec.configs))}"
        )
    try:
        return apply_overrides(start(), overrides)
    except ConfigError as err:
        raise UsageError(str(err)) from None


def _diff(a: dict, b: dict, prefix="") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out


#: What the command itself writes at the top of a work directory (a model's evaluation adds
#: its ``ModelSpec.outputs``). ``--overwrite`` removes these and nothing else.
RUN_OUTPUTS = (
    "config.json",
    "data_info.json",
    "metrics.jsonl",
    "checkpoints",
    "corrupt_checkpoints",
    "figures",
    "summary.json",
    "summary.json.tmp",
    "wall.json",
    "tensorboard",
)
_CONFIG_KEYS = {"model", "dataset", "model_config", "train", "optimizer", "data"}


def _run_outputs(model: object, catalog: Catalog) -> set[str]:
    names = set(RUN_OUTPUTS)
    if isinstance(model, str) and model in catalog.model_names():
        with contextlib.suppress(ImportError):
            names.update(catalog.get(model).outputs)
    return names


def _listing(names: list[str]) -> str:
    shown = ", ".join(sorted(names)[:4])
    return shown + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def _in_current_keys(saved: dict, catalog: Catalog) -> dict:
    """A saved config.json in this version's layout (renamed keys, the evaluation settings
    in their own section), so that a run saved by an earlier version resumes; as saved if
    it does not read as a config of a model of ``catalog``."""
    model = saved.get("model")
    if not isinstance(model, str) or model not in catalog.model_names():
        return saved
    try:
        config = from_dict(saved, models.config_class(model), catalog.get(model).eval_cls)
    except (ConfigError, ImportError, KeyError):
        return saved
    return json.loads(config.to_json())


def prepare_workdir(
    workdir: Path, config: RunConfig, overwrite: bool, catalog: Catalog | None = None
) -> None:
    """Create ``workdir`` (or check it holds this same run) and write ``config.json``.

    A directory is only ever emptied when it holds a genjax run (a ``config.json`` with a
    run's sections) of another configuration, ``overwrite`` is set, and every entry in it is
    one a run writes; anything else in it is refused before a file is touched.
    """
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=workdir, prefix=".write-test-"):
            pass
    except OSError as err:
        raise UsageError(
            f"work directory {str(workdir)!r} is not writable: {err.strerror}"
        ) from None
    config_path = workdir / "config.json"
    entries = [p.name for p in workdir.iterdir()]
    current = json.loads(config.to_json())
    if entries and not config_path.is_file():
        raise UsageError(
            f"work directory {str(workdir)!r} is not empty and holds no genjax run "
            f"({_listing(entries)}); choose an empty or new directory"
        )
    if entries:
        try:
            previous = json.loads(config_path.read_text())
        except (OSError, ValueError):
            previous = None
        if not isinstance(previous, dict) or not set(previous) >= _CONFIG_KEYS:
            raise UsageError(
                f"{str(config_path)!r} is not the configuration of a genjax run; the directory "
                "is left as it is: choose another --workdir"
            )
        previous = _in_current_keys(previous, catalog or LIBRARY)
        if previous != current:
            if not overwrite:
                what = (
                    f"model {previous.get('model')!r} on {previous.get('dataset')!r}"
                    if previous.get("model") != config.model
                    or previous.get("dataset") != config.dataset
                    else "the same model with another config ("
                    + "; ".join(_diff(previous, current)[:3])
                    + ")"
                )
                raise UsageError(
                    f"work directory {str(workdir)!r} holds a run of {what}; "
                    "pass --overwrite to discard it, or choose another --workdir"
                )
            foreign = [
                name
                for name in entries
                if name not in _run_outputs(previous["model"], catalog or LIBRARY)
            ]
            if foreign:
                raise UsageError(
                    f"not emptying {str(workdir)!r}: besides a genjax run it holds "
                    f"{_listing(foreign)}, which no run writes; move them or choose another "
                    "--workdir"
                )
            for name in entries:
                child = workdir / name
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    config_path.write_text(config.to_json() + "\n")


def _print_summary(summary: dict, workdir: Path, stream=sys.stdout) -> None:
    print(
        f"\n{summary['model']} on {summary['dataset']}: {summary['steps']} steps, "
        f"{summary['wall_s']:.1f} s",
        file=stream,
    )
    width = max((len(k) for k in summary["metrics"]), default=0)
    for k, v in summary["metrics"].items():
        value = f"{v:.6g}" if isinstance(v, float) else str(v)
        print(f"  {k:<{width}}  {value}", file=stream)
    figures = sorted((workdir / "figures").glob("*.png")) if (workdir / "figures").exists() else []
    print(f"  work directory: {workdir}", file=stream)
    if figures:
        print(f"  figures: {', '.join(f.name for f in figures)}", file=stream)


@dataclasses.dataclass
class Prepared:
    """A run's data, model and task, built (and so validated) before anything is written."""

    config: RunConfig
    spec: ModelSpec
    train: object
    test: object
    info: DataInfo
    objective: Objective
    task: object


def prepare(config: RunConfig, catalog: Catalog | None = None) -> Prepared:
    """Load the data and build the model and its task; every input error surfaces here,
    before the work directory is touched."""
    spec = (catalog or LIBRARY).get(config.model)
    train = load_split(config, "train")
    test = load_split(config, "test")
    if config.train.data_on_device and isinstance(train, StreamingDataset):
        raise ConfigError(
            f"train.data_on_device=true needs the training split in memory, but "
            f"{config.dataset!r} train is streamed (data.streaming={config.data.streaming}): "
            "set data.streaming=false or train.data_on_device=false"
        )
    if config.train.batch_size > train.num_examples:
        raise ConfigError(
            f"train.batch_size={config.train.batch_size} is larger than the training split of "
            f"{config.dataset!r} ({train.num_examples} examples)"
        )
    info = data_info(config, train)
    if spec.check is not None:
        spec.check(config, info)
    objective = build_objective(config, info)
    task = build_task(config, objective)
    if config.train.best_metric:
        _check_best_metric(config, spec, info, objective, task, test)
    return Prepared(config, spec, train, test, info, objective, task)


def _check_best_metric(config: RunConfig, spec, info, objective, task, test) -> None:
    """``train.best_metric`` must name one of the metrics the model evaluates during
    training (checked on the initial parameters, before the work directory is touched)."""
    name = config.train.best_metric
    if spec.eval_during is None:
        raise ConfigError(
            f"train.best_metric={name!r}: the {config.model} model evaluates nothing during "
            "training, so no checkpoint can be ranked; leave it empty"
        )
    state = initial_state(config, info, task)
    names = sorted(spec.eval_during(config, objective, test)(state.params, state.model_state))
    if name not in names:
        raise ConfigError(
            f"train.best_metric={name!r} is not one of the {config.model} model's evaluation "
            f"metrics: {', '.join(names)}"
        )


def run(prepared: Prepared, workdir: Path, *, progress: bool = True) -> dict:
    """Train (or resume) and evaluate; returns the summary written to ``summary.json``."""
    import jax

    from genjax.train import fit, write_figures

    config, spec, info = prepared.config, prepared.spec, prepared.info
    objective, test = prepared.objective, prepared.test
    t0 = time.perf_counter()
    write_data_info(workdir, info)
    during = spec.eval_during(config, objective, test) if spec.eval_during else None
    snapshot = spec.snapshot(config, objective, workdir) if spec.snapshot else None
    train_config = dataclasses.replace(config.train, progress=progress and config.train.progress)
    result = fit(
        prepared.task,
        prepared.train,
        train_config,
        workdir,
        preprocess_spec=config.data.preprocess(),
        evaluate=during,
        on_eval=snapshot,
    )
    history = [
        json.loads(line)
        for line in (workdir / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]
    ctx = EvalContext(
        config=config,
        info=info,
        objective=objective,
        params=result.state.params,
        model_state=result.state.model_state,
        train=prepared.train,
        test=test,
        workdir=workdir,
        rng=jax.random.PRNGKey(config.train.seed + 1),
        history=history,
    )
    metrics = {k: _plain(v) for k, v in spec.evaluate(ctx).items()}
    if config.train.tensorboard:
        figures = (
            sorted((workdir / "figures").glob("*.png")) if (workdir / "figures").is_dir() else []
        )
        write_figures(workdir, int(result.state.step), figures)
    summary = {
        "model": config.model,
        "dataset": config.dataset,
        "steps": int(result.state.step),
        "wall_s": _previous_wall(workdir) + (time.perf_counter() - t0),
        "metrics": metrics,
    }
    tmp = workdir / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, workdir / "summary.json")
    return summary


def _finished_summary(workdir: Path, config: RunConfig) -> dict | None:
    """``summary.json`` if the run in ``workdir`` is finished: the summary is of the last step
    and the checkpoint of that step reads back whole. Otherwise None, and the run resumes
    from its newest readable checkpoint (saying why, when a summary was there)."""
    from genjax.train import Checkpointer

    try:
        summary = json.loads((workdir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or summary.get("steps") != config.train.steps:
        return None
    ckpt = Checkpointer(workdir / "checkpoints", asynchronous=False, read_only=True)
    try:
        # The training that follows reports each damaged checkpoint (and moves it aside).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            newest = ckpt.newest_readable_step()
    finally:
        ckpt.close()
    if newest == config.train.steps:
        return summary
    print(
        f"{PROG}: the run's final checkpoint (step {config.train.steps}) is missing or "
        f"unreadable; training again from "
        + (f"step {newest}" if newest is not None else "the start"),
        file=sys.stderr,
    )
    return None


def _previous_wall(workdir: Path) -> float:
    """Wall time of earlier invocations that stopped early (recorded in ``wall.json``; one
    ended by SIGKILL could not record its time and is not counted)."""
    path = workdir / "wall.json"
    try:
        return float(json.loads(path.read_text())["wall_s"])
    except (OSError, ValueError, KeyError):
        return 0.0


def _plain(v):
    try:
        return float(v) if not isinstance(v, int | str | bool | list | dict) else v
    except TypeError:
        return v


# --------------------------------------------------------------------------------------------
# The library's own specs: any family on any dataset, evaluated by its objective.
# --------------------------------------------------------------------------------------------


def objective_metrics(
    config: RunConfig, objective: Objective, dataset, *, max_examples: int | None = None
) -> Callable[[Any, Any], dict]:
    """``(params, model_state) -> {"<player>/<metric>" or "<metric>": mean}``: the mean of each
    player's training metrics (and loss) over ``dataset`` (its first ``max_examples``), in
    whole batches of ``train.batch_size``, with a fixed key."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from genjax.data import preprocess

    task = build_task(config, objective)
    n = dataset.num_examples if max_examples is None else min(max_examples, dataset.num_examples)
    size = min(config.train.batch_size, n)
    spec, image_max = config.data.preprocess(), dataset.image_max
    batches = [dataset.get(np.arange(i, i + size)) for i in range(0, n - size + 1, size)]
    prefix = len(task.players) > 1

    @jax.jit
    def one(params, model_state, raw, rng):
        data_key, loss_key = jax.random.split(rng)
        batch = preprocess(raw, data_key, spec, image_max)
        out = {}
        for player in task.players:
            if player.stateful:
                loss, (metrics, _) = player.loss(params, model_state, batch, loss_key)
            else:
                loss, metrics = player.loss(params, batch, loss_key)
            name = f"{player.name}/" if prefix else ""
            out[f"{name}loss"] = loss
            out.update({f"{name}{k}": v for k, v in metrics.items()})
        return {k: jnp.mean(jnp.asarray(v, jnp.float32)) for k, v in out.items()}

    def evaluate(params, model_state):
        rng = jax.random.PRNGKey(config.train.seed + 1)
        totals: dict[str, float] = {}
        for i, raw in enumerate(batches):
            values = jax.device_get(one(params, model_state, raw, jax.random.fold_in(rng, i)))
            for k, v in values.items():
                totals[k] = totals.get(k, 0.0) + float(v)
        return {k: v / len(batches) for k, v in totals.items()}

    return evaluate


def _library_evaluate(ctx: EvalContext) -> dict:
    metrics = objective_metrics(ctx.config, ctx.objective, ctx.test)(ctx.params, ctx.model_state)
    return {f"test_{k}": v for k, v in metrics.items()}


def _library_eval_during(config: RunConfig, objective: Objective, test):
    return objective_metrics(config, objective, test, max_examples=1000)


def _library_default(family: str, dataset: str) -> RunConfig:
    model_config = models.config_class(family)()
    return RunConfig(
        model=family,
        dataset=dataset,
        model_config=model_config,
        data=DataConfig(flatten=not model_config.takes_images),
    )


def library_spec(family: str) -> ModelSpec:
    """The library's spec of ``family``: its default hyper-parameters on any dataset, the
    data flattened unless the model takes images, and the test split's mean objective
    metrics as the evaluation (``test_<metric>``; during training on 1,000 test examples)."""
    doc = (models.config_class(family).__doc__ or family).strip().splitlines()[0]
    return ModelSpec(
        name=family,
        description=doc.rstrip("."),
        configs={},
        evaluate=_library_evaluate,
        eval_during=_library_eval_during,
        default_config=functools.partial(_library_default, family),
    )


class _Library:
    """The library's catalog: every registered family through :func:`library_spec`."""

    def model_names(self) -> list[str]:
        return models.families()

    def get(self, name: str) -> ModelSpec:
        return library_spec(name)


LIBRARY: Catalog = _Library()


def main(argv: list[str] | None = None, *, catalog: Catalog | None = None) -> int:
    """Run the command on ``argv`` (default ``sys.argv[1:]``) with the models of ``catalog``
    (default: the library's, :data:`LIBRARY`); returns the exit code. Sets genjax's XLA:CPU
    defaults first (:func:`genjax.xla_defaults.apply`), unless JAX has already started."""
    xla_defaults.apply()
    catalog = catalog or LIBRARY
    parser = build_parser(catalog)
    try:
        args = parser.parse_args(argv)
        config = resolve_config(args.model, args.dataset, args.overrides, catalog)
        if not args.workdir.strip():
            raise UsageError("--workdir is empty; name the run's directory")
        workdir = Path(args.workdir).expanduser().absolute()
        prepared = prepare(config, catalog)
        prepare_workdir(workdir, config, args.overwrite, catalog)
        summary = _finished_summary(workdir, config)
        if summary is not None:
            if not args.quiet:
                print(f"{PROG}: run already finished; not retraining", file=sys.stderr)
                _print_summary(summary, workdir)
            return 0
        t0 = time.perf_counter()
        try:
            summary = run(prepared, workdir, progress=not args.quiet)
        except BaseException:
            # Count this invocation's time in the run's wall time, then report.
            wall = _previous_wall(workdir) + time.perf_counter() - t0
            (workdir / "wall.json").write_text(json.dumps({"wall_s": wall}) + "\n")
            raise
    except (UsageError, *RUN_ERRORS) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except NonFiniteError as err:
        print(f"{PROG}: training stopped: {err}", file=sys.stderr)
        return 3
    except KeyboardInterrupt as err:
        print(f"{PROG}: interrupted: {err or 'stopped'}", file=sys.stderr)
        return 130
    if not args.quiet:
        _print_summary(summary, workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
