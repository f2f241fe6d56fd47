"""The GAN's mode-collapse table: our default configuration over several seeds on the 2-D ring
and grid, beside the numbers published for the same benchmarks.

    python -m experiments.gan_table [--seeds 5] [--out runs/gan-table]

Each (dataset, seed) is one run of the experiment command (``--model gan --dataset ring8|
grid25 --set train.seed=S``) in ``OUT/<dataset>-seed<S>/``, so an interrupted table resumes
and finished runs are not retrained. The table (``OUT/table.json`` and ``OUT/table.md``) gives
the mean and the standard error over seeds of ``modes_captured``, ``high_quality_fraction``
and ``reverse_kl``, with the published rows below.

Published rows, as printed in the papers (their protocols: 2,500 samples per trained model,
high quality = within 3 standard deviations of the nearest mode; VEEGAN averages 5 runs,
PacGAN 10 runs with standard errors, which are omitted here):

* Srivastava et al., "VEEGAN: Reducing Mode Collapse in GANs using Implicit Variational
  Learning", NeurIPS 2017, Table 1 (ring: 8 modes of std 0.02 on a circle of radius 2;
  grid: 25 modes of std 0.05 on {-4, -2, 0, 2, 4}^2 — the geometry used here).
* Lin et al., "PacGAN: The power of two samples in generative adversarial networks",
  NeurIPS 2018, Table 1 of the authors' released results (their ring is the same shape
  scaled by 1/2: radius 1, std 0.01). Later versions of the paper may differ slightly.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from experiments import train
from genjax import cli

DATASETS = ("ring8", "grid25")
NUM_MODES = {"ring8": 8, "grid25": 25}

#: (source, method) -> dataset -> (modes captured, high-quality fraction, reverse KL or None)
PUBLISHED: dict[tuple[str, str], dict[str, tuple[float, float, float | None]]] = {
    ("VEEGAN (2017)", "GAN"): {"ring8": (1.0, 0.993, None), "grid25": (3.3, 0.005, None)},
    ("VEEGAN (2017)", "ALI"): {"ring8": (2.8, 0.0013, None), "grid25": (15.8, 0.016, None)},
    ("VEEGAN (2017)", "Unrolled GAN"): {
        "ring8": (7.6, 0.356, None),
        "grid25": (23.6, 0.16, None),
    },
    ("VEEGAN (2017)", "VEEGAN"): {"ring8": (8.0, 0.529, None), "grid25": (24.6, 0.40, None)},
    ("PacGAN (2018)", "GAN"): {"ring8": (6.3, 0.982, 0.45), "grid25": (17.3, 0.948, 0.70)},
    ("PacGAN (2018)", "ALI"): {"ring8": (6.6, 0.976, 0.36), "grid25": (24.1, 0.957, 0.14)},
    ("PacGAN (2018)", "PacGAN2"): {"ring8": (7.9, 0.956, 0.07), "grid25": (23.8, 0.913, 0.13)},
    ("PacGAN (2018)", "PacGAN3"): {"ring8": (7.8, 0.977, 0.10), "grid25": (24.6, 0.942, 0.06)},
    ("PacGAN (2018)", "PacGAN4"): {"ring8": (7.8, 0.959, 0.07), "grid25": (24.8, 0.936, 0.04)},
}

METRICS = ("modes_captured", "high_quality_fraction", "reverse_kl")


def _mean_stderr(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def summarise(runs: dict[str, list[dict]]) -> dict:
    """``{dataset: [summary metrics per seed]}`` -> the table's data (means, standard errors,
    the per-seed values and the published rows)."""
    ours = {}
    for dataset, per_seed in runs.items():
        row = {"seeds": len(per_seed)}
        for name in METRICS:
            values = [float(m[name]) for m in per_seed]
            mean, stderr = _mean_stderr(values)
            row[name] = {"mean": mean, "stderr": stderr, "values": values}
        ours[dataset] = row
    published = [
        {"source": source, "method": method, **{d: list(v) for d, v in rows.items()}}
        for (source, method), rows in PUBLISHED.items()
    ]
    return {"ours": ours, "published": published}


def _fmt(value: float | None, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.1f}%" if percent else f"{value:.2f}"


def markdown(table: dict) -> str:
    """The table as Markdown: one row per method, ring and grid side by side."""
    head = (
        "| source | method | ring: modes (of 8) | ring: high quality | ring: reverse KL "
        "| grid: modes (of 25) | grid: high quality | grid: reverse KL |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    cells = []
    for dataset in DATASETS:
        row = table["ours"].get(dataset)
        if row is None:
            cells += ["–"] * 3
            continue
        for name in METRICS:
            m = row[name]
            pct = name == "high_quality_fraction"
            err = f" ± {_fmt(m['stderr'], pct)}" if not math.isnan(m["stderr"]) else ""
            cells.append(f"**{_fmt(m['mean'], pct)}{err}**")
    seeds = {row["seeds"] for row in table["ours"].values()}
    lines = [f"| genjax (this run) | GAN, default config, {'/'.join(map(str, seeds))} seeds | "]
    lines[0] += " | ".join(cells) + " |"
    for row in table["published"]:
        vals = []
        for dataset in DATASETS:
            modes, hq, kl = row[dataset]
            vals += [_fmt(modes), _fmt(hq, percent=True), _fmt(kl)]
        lines.append(f"| {row['source']} | {row['method']} | " + " | ".join(vals) + " |")
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per dataset (0..S-1)")
    parser.add_argument("--out", default="runs/gan-table", help="where the runs are written")
    cli.add_overrides_argument(
        parser, "a config override applied to every run (as for experiments.train)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    out = Path(args.out)
    runs: dict[str, list[dict]] = {}
    total = len(DATASETS) * args.seeds
    for i, (dataset, seed) in enumerate(
        ((d, s) for d in DATASETS for s in range(args.seeds)), start=1
    ):
        work = out / f"{dataset}-seed{seed}"
        print(f"[{i}/{total}] gan on {dataset}, seed {seed} -> {work}", file=sys.stderr)
        argv_run = ["--model", "gan", "--dataset", dataset, "--workdir", str(work)]
        for item in [f"train.seed={seed}", *args.overrides]:
            argv_run += ["--set", item]
        if args.quiet:
            argv_run.append("--quiet")
        code = train.main(argv_run)
        if code != 0:
            return code
        summary = json.loads((work / "summary.json").read_text())
        runs.setdefault(dataset, []).append(summary["metrics"])
    table = summarise(runs)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.json").write_text(json.dumps(table, indent=2) + "\n")
    (out / "table.md").write_text(markdown(table))
    print(markdown(table))
    print(f"table: {(out / 'table.md').absolute()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
