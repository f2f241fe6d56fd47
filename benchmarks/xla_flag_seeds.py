"""Does the XLA:CPU flag change results beyond what a change of seed does? The demo's short runs
trained over several seeds with genjax's XLA settings off and on.

    python -m benchmarks.xla_flag_seeds [--seeds 5] [--runs gan-ring8 vqvae] [--out DIR]

A flag that only changes float32 rounding moves a chaotic training run (a GAN, a VQ-VAE's
codebook) to another trajectory, so one run with and one without it can differ by more than
rounding: the demo's GAN on the ring went from 0.3856 to 0.5384 high-quality samples. The
question is whether the flag shifts the *distribution* of results over seeds. Each run is one
demo entry (``experiments.demo.ENTRIES``: same model, data set and overrides) with
``train.seed=S``, trained by the experiment command in a child process with
``GENJAX_XLA_DEFAULTS=0`` (off) or ``1`` (on), so that the flag is set before JAX starts.

Prints JSON (and writes ``OUT/xla_flag_seeds.json``): per run and metric, the values over
seeds off and on, their means and standard deviations, the difference of the means, and
Welch's t-test p-value (scipy) for "same mean". Finished runs are read back, not retrained.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

#: demo entry -> the summary metrics compared.
METRICS: dict[str, tuple[str, ...]] = {
    "gan-ring8": ("high_quality_fraction", "modes_captured", "reverse_kl"),
    "vqvae": ("recon_mse", "code_usage", "prior_bits_per_code"),
}


def _entry(name: str) -> tuple[str, str, list[str]]:
    from experiments.demo import ENTRIES

    for entry_name, model, dataset, overrides in ENTRIES:
        if entry_name == name:
            return model, dataset, list(overrides)
    raise SystemExit(f"xla_flag_seeds: no demo entry {name!r}; choose from {sorted(METRICS)}")


def train_one(out: Path, name: str, seed: int, flag: bool) -> dict:
    """The summary metrics of demo entry ``name`` at ``seed``, trained with the flag on/off."""
    model, dataset, overrides = _entry(name)
    workdir = out / f"{name}-{'on' if flag else 'off'}-seed{seed}"
    summary = workdir / "summary.json"
    if not summary.exists():
        argv = [sys.executable, "-m", "experiments.train", "--model", model, "--dataset"]
        argv += [dataset, "--workdir", str(workdir), "--quiet"]
        for item in (*overrides, f"train.seed={seed}"):
            argv += ["--set", item]
        env = {**os.environ, "GENJAX_XLA_DEFAULTS": "1" if flag else "0"}
        env.pop("XLA_FLAGS", None)  # the switch alone decides
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
            raise SystemExit(f"xla_flag_seeds: {workdir.name} failed: {' '.join(tail)}")
    metrics = json.loads(summary.read_text())["metrics"]
    missing = [k for k in METRICS[name] if k not in metrics]
    if missing:
        raise SystemExit(f"xla_flag_seeds: {summary} has no metric {', '.join(missing)}")
    return {k: float(metrics[k]) for k in METRICS[name]}


def _stats(values: list[float]) -> dict:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"values": values, "mean": statistics.fmean(values), "std": std}


def compare(off: list[float], on: list[float]) -> dict:
    """Means, standard deviations and Welch's t-test of two samples of a metric."""
    from scipy import stats

    row = {"off": _stats(off), "on": _stats(on)}
    row["difference_of_means"] = row["on"]["mean"] - row["off"]["mean"]
    if len(off) > 1 and len(on) > 1 and (row["off"]["std"] > 0 or row["on"]["std"] > 0):
        row["welch_p"] = float(stats.ttest_ind(on, off, equal_var=False).pvalue)
    else:
        row["welch_p"] = 1.0 if off == on else 0.0
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per setting (0..S-1)")
    parser.add_argument("--runs", nargs="+", default=["gan-ring8", "vqvae"], choices=METRICS)
    parser.add_argument("--out", default=None, help="run directories (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error("--seeds must be at least 2 to compare spreads")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="xla-flag-seeds-"))
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {"seeds": args.seeds, "runs": {}}
    for name in args.runs:
        per_flag = {
            flag: [train_one(out, name, s, flag) for s in range(args.seeds)]
            for flag in (False, True)
        }
        result["runs"][name] = {
            metric: compare(
                [m[metric] for m in per_flag[False]], [m[metric] for m in per_flag[True]]
            )
            for metric in METRICS[name]
        }
    text = json.dumps(result, indent=2)
    (out / "xla_flag_seeds.json").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
