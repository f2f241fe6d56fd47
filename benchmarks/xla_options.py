"""XLA:CPU settings against each other, per model: the scan-fused training step compiled with
each setting in the same process, timed in alternating rounds.

    python -m benchmarks.xla_options [--models ...] [--batch 128 512] [--rounds 6]
        [--settings xla_default dot individual_dot_reduce] [--out FILE]

Each setting is a value of XLA's ``xla_cpu_experimental_ynn_fusion_type`` (which operations
XLA:CPU hands to the YNNPACK library), given to one program as ``jax.jit``'s
``compiler_options`` (through :class:`genjax.train.Engine`'s ``compiler_options``), so one
process compares them on the same data, machine state and compiled code around them, with
no process-level flag in the way: this module takes genjax's own setting out of
``XLA_FLAGS`` before JAX starts (and sets ``GENJAX_XLA_DEFAULTS=0``), and stops with an
error if the caller's ``XLA_FLAGS`` names the field itself.

* ``xla_default``: no option, XLA's own default (each matrix product, each convolution,
  reductions);
* ``dot``: matrix products, fused with their neighbours, and nothing else;
* ``individual_dot``: each matrix product, and nothing else;
* ``individual_dot_reduce``: XLA's default without the convolutions, which go to XLA's
  Eigen kernels (genjax's setting, :mod:`genjax.xla_defaults`).

Per model and batch: examples/s of each setting (median over rounds, with min and max) and
each median over ``xla_default``'s. Prints one JSON object (and writes it to ``--out``), and
a Markdown table to stderr.
"""

from __future__ import annotations

import os

from genjax import xla_defaults

FIELD = "xla_cpu_experimental_ynn_fusion_type"
SETTINGS: dict[str, dict[str, str]] = {
    "xla_default": {},
    "dot": {FIELD: "LIBRARY_FUSION_TYPE_DOT"},
    "individual_dot": {FIELD: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"},
    "individual_dot_reduce": {
        FIELD: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"
    },
}
DEFAULT_SETTINGS = ("xla_default", "dot", "individual_dot_reduce")


def _clear_process_flags(environ: dict) -> None:
    """Takes genjax's own flags (added by :func:`genjax.xla_defaults.apply` when the
    ``benchmarks`` package loaded) out of ``XLA_FLAGS`` and switches them off for the
    packages imported after (``experiments`` applies them too); exits with a one-line
    error if other flags there set the compared field."""
    ours = set(xla_defaults.recommended_flags())
    kept = [f for f in environ.get("XLA_FLAGS", "").split() if f not in ours]
    clash = [f for f in kept if f.split("=")[0].lstrip("-") == FIELD]
    if clash:
        raise SystemExit(
            f"benchmarks.xla_options: XLA_FLAGS sets {clash[0]}; unset it to compare the "
            "settings per program"
        )
    environ["XLA_FLAGS"] = " ".join(kept)
    environ[xla_defaults.ENV_SWITCH] = "0"


_clear_process_flags(os.environ)  # before JAX starts

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from benchmarks import specs, timing  # noqa: E402
from benchmarks.run import GenjaxRunner, machine_info  # noqa: E402

DEFAULT_MODELS = ("ppca", "vae_mlp", "vae_conv", "vqvae_conv", "gan_mlp", "gan_dcgan", "cyclevae")


def measure(name: str, batch: int, settings: list[str], rounds: int, target_s: float) -> dict:
    """One model at one batch size: a runner per setting, then ``rounds`` alternating rounds
    of one timed fused call each (``steps`` steps, chosen so the slowest call lasts about
    ``target_s``)."""
    built = specs.build(name, batch)
    probe = built.raw_batches(1, seed=1)
    first = {k: v[0] for k, v in probe.items()}
    runners = {s: GenjaxRunner(built, first, compiler_options=SETTINGS[s]) for s in settings}
    for r in runners.values():
        r.per_step()
    step_s = timing.seconds_per_step([r.per_step for r in runners.values()], 1)
    steps = timing.Budget(target_s=target_s).steps_for(step_s)
    raw = built.raw_batches(steps, seed=0)
    for r in runners.values():
        r.load(raw)
        r.fused()  # warm-up
    times: dict[str, list[float]] = {s: [] for s in settings}
    for i in range(rounds):
        order = settings[i % len(settings) :] + settings[: i % len(settings)]
        for s in order:
            times[s].append(timing.timed(runners[s].fused))
    rates = {s: [steps * batch / t for t in ts] for s, ts in times.items()}
    row: dict[str, Any] = {"model": name, "batch": batch, "steps_per_round": steps}
    for s in settings:
        row[s] = {"examples_per_s": timing.median_min_max(rates[s])}
    base = settings[0]
    for s in settings:
        row[s]["over_" + base] = statistics.median(rates[s]) / statistics.median(rates[base])
    return row


def markdown(rows: list[dict], settings: list[str]) -> str:
    base = settings[0]
    head = "| model | batch | " + " | ".join(f"{s} ex/s" for s in settings) + " | best |"
    lines = [head, "|---|---:|" + "---:|" * len(settings) + "---|"]
    for row in rows:
        cells = []
        for s in settings:
            med = row[s]["examples_per_s"]["median"]
            ratio = "" if s == base else f" ({row[s]['over_' + base]:.2f}×)"
            cells.append(f"{med:,.0f}{ratio}")
        best = max(settings, key=lambda s: row[s]["examples_per_s"]["median"])
        lines.append(f"| {row['model']} | {row['batch']} | " + " | ".join(cells) + f" | {best} |")
    return "\n".join(lines)


def report(result: dict) -> str:
    """The Markdown file written beside ``--out``: when, where and how, then the table."""
    m = result["machine"]
    head = (
        f"Measured {result['date']} on {m['cpu']} ({m['cores']} cores, {m['backend']} "
        f"backend), jax {m['jax']}; `{result['command'].strip()}`; load average "
        f"{result['load_average_1min']:.2f} (1 min) at the end. Examples/s of the scan-fused "
        f"step, median of {result['rounds']} alternating rounds; in brackets, over "
        f"`{next(iter(result['settings']))}`."
    )
    return head + "\n\n" + result["markdown"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--batch", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--target-s", type=float, default=0.5)
    parser.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models) - set(specs.SPECS))
    if unknown:
        parser.error(f"unknown --models {unknown}; known: {sorted(specs.SPECS)}")
    bad = sorted(set(args.settings) - set(SETTINGS))
    if bad:
        parser.error(f"unknown --settings {bad}; known: {list(SETTINGS)}")
    if args.rounds < 1 or min(args.batch) < 1 or not args.target_s > 0:
        parser.error("--rounds and --batch must be >= 1 and --target-s > 0")
    rows = []
    for name in args.models:
        for batch in args.batch:
            rows.append(measure(name, batch, args.settings, args.rounds, args.target_s))
            print(markdown(rows[-1:], args.settings).splitlines()[-1], file=sys.stderr, flush=True)
    result = {
        "benchmark": "xla_options",
        "field": FIELD,
        "settings": {s: SETTINGS[s] for s in args.settings},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python -m benchmarks.xla_options " + " ".join(argv or sys.argv[1:]),
        "machine": {k: v for k, v in machine_info().items() if k != "torch_threads"},
        "load_average_1min": os.getloadavg()[0],
        "rounds": args.rounds,
        "rows": rows,
        "markdown": markdown(rows, args.settings),
    }
    print(result["markdown"], file=sys.stderr)
    text = json.dumps(result, indent=1)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        args.out.with_suffix(".md").write_text(report(result) + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
