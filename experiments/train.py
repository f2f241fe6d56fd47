"""The experiment command: train one model on one dataset into a work directory.

    python -m experiments.train --model MODEL --dataset NAME --workdir DIR [--set key=value ...]

(also installed as ``genjax-train``). The same command in an existing work directory resumes
the run; a finished run is not retrained. Every run writes into its work directory:

  config.json     the resolved configuration
  data_info.json  the shape of the model's input (so ``genjax.load_run`` needs no data)
  metrics.jsonl   train metrics every ``train.log_every`` steps, test metrics when evaluated
  checkpoints/    Orbax checkpoints (the last ``train.keep_checkpoints``, and the best)
  figures/        PNG figures
  summary.json    {"model", "dataset", "steps", "wall_s", "metrics": {...}} at the end

Bad input (unknown model, dataset or key, a wrong value, a work directory holding another
run, a dataset that is not prepared, an unwritable directory) exits with code 2 and one line
on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

from experiments import registry
from experiments.config import (
    ConfigError,
    DataConfig,
    OptimizerConfig,
    RunConfig,
    apply_overrides,
    describe_fields,
)
from experiments.runs import RUN_ERRORS, data_info, initial_state, load_split
from genjax.train import NonFiniteError, TrainConfig

PROG = "genjax-train"


class UsageError(Exception):
    """Bad input: reported as one line on stderr with exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's own default prints usage too)
        raise UsageError(message)


def _help_epilog() -> str:
    lines = ["models and their datasets:"]
    for name in registry.model_names():
        try:
            spec = registry.get(name)
            lines.append(f"  {name:<10} {spec.description}")
            lines.append(f"  {'':<10} datasets: {', '.join(sorted(spec.configs))}")
        except ImportError as err:  # a model whose dependencies are missing
            lines.append(f"  {name:<10} (unavailable: {err})")
    sections = [("train", TrainConfig), ("optimizer", OptimizerConfig), ("data", DataConfig)]
    for name in registry.model_names():
        with contextlib.suppress(ImportError):
            sections.append((f"model ({name})", registry.get(name).config_cls))
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Train a genjax model on a dataset into a work directory (resumable).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_help_epilog(),
    )
    parser.add_argument("--model", required=True, help="model name (see below)")
    parser.add_argument("--dataset", required=True, help="dataset name (see below)")
    parser.add_argument(
        "--workdir", required=True, help="directory of the run (resumed if it exists)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.steps=500 (repeatable)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="discard a different genjax run found in --workdir instead of refusing (only the "
        "files a run writes; a directory holding anything else is never emptied)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary table")
    return parser


def resolve_config(model: str, dataset: str, overrides: list[str]) -> RunConfig:
    if model not in registry.model_names():
        raise UsageError(
            f"unknown model {model!r}; choose one of: {', '.join(registry.model_names())}"
        )
    spec = registry.get(model)
    if dataset not in spec.configs:
        raise UsageError(
            f"unknown dataset {dataset!r} for model {model!r}; choose one of: "
            f"{', '.join(sorted(spec.configs))}"
        )
    try:
        return apply_overrides(spec.configs[dataset](), overrides)
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


def _run_outputs(model: object) -> set[str]:
    names = set(RUN_OUTPUTS)
    if isinstance(model, str) and model in registry.model_names():
        with contextlib.suppress(ImportError):
            names.update(registry.get(model).outputs)
    return names


def _listing(names: list[str]) -> str:
    shown = ", ".join(sorted(names)[:4])
    return shown + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def prepare_workdir(workdir: Path, config: RunConfig, overwrite: bool) -> None:
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
            foreign = [name for name in entries if name not in _run_outputs(previous["model"])]
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
    """A run's data and task, built (and so validated) before anything is written."""

    config: RunConfig
    spec: registry.ModelSpec
    train: object
    test: object
    info: registry.DataInfo
    task: object


def prepare(config: RunConfig) -> Prepared:
    """Load the data and build the task; every input error surfaces here, before the work
    directory is touched."""
    spec = registry.get(config.model)
    train = load_split(config, "train")
    test = load_split(config, "test")
    if config.train.batch_size > train.num_examples:
        raise ConfigError(
            f"train.batch_size={config.train.batch_size} is larger than the training split of "
            f"{config.dataset!r} ({train.num_examples} examples)"
        )
    info = data_info(config, train)
    task = spec.build_task(config, info)
    if config.train.best_metric:
        _check_best_metric(config, spec, info, task, test)
    return Prepared(config, spec, train, test, info, task)


def _check_best_metric(config: RunConfig, spec, info, task, test) -> None:
    """``train.best_metric`` must name one of the metrics the model evaluates during
    training (checked on the initial parameters, before the work directory is touched)."""
    name = config.train.best_metric
    if spec.eval_during is None:
        raise ConfigError(
            f"train.best_metric={name!r}: the {config.model} model evaluates nothing during "
            "training, so no checkpoint can be ranked; leave it empty"
        )
    state = initial_state(spec, config, info, task)
    names = sorted(spec.eval_during(config, info, test)(state.params, state.model_state))
    if name not in names:
        raise ConfigError(
            f"train.best_metric={name!r} is not one of the {config.model} model's evaluation "
            f"metrics: {', '.join(names)}"
        )


def run(prepared: Prepared, workdir: Path, *, progress: bool = True) -> dict:
    """Train (or resume) and evaluate; returns the summary written to ``summary.json``."""
    import jax

    from genjax.train import fit, write_figures

    config, spec, info, train, test = (
        prepared.config,
        prepared.spec,
        prepared.info,
        prepared.train,
        prepared.test,
    )
    t0 = time.perf_counter()
    (workdir / "data_info.json").write_text(json.dumps(dataclasses.asdict(info)) + "\n")
    during = spec.eval_during(config, info, test) if spec.eval_during else None
    snapshot = spec.snapshot(config, info, workdir) if spec.snapshot else None
    train_config = dataclasses.replace(config.train, progress=progress and config.train.progress)
    result = fit(
        prepared.task,
        train,
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
    ctx = registry.EvalContext(
        config=config,
        info=info,
        params=result.state.params,
        model_state=result.state.model_state,
        train=train,
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        config = resolve_config(args.model, args.dataset, args.overrides)
        if not args.workdir.strip():
            raise UsageError("--workdir is empty; name the run's directory")
        workdir = Path(args.workdir).expanduser().absolute()
        prepared = prepare(config)
        prepare_workdir(workdir, config, args.overwrite)
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
    except UsageError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except RUN_ERRORS as err:
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
