"""The GAN's mode-collapse table: our default configuration over several seeds on the 2-D ring
and grid, beside the numbers published for the same benchmarks.

    python -m experiments.gan_table [--seeds 5] [--out runs/gan-table]
    python -m experiments.gan_table --losses non_saturating,hinge,least_squares,wgan_gp

Each (dataset, seed) is one run of the experiment command (``--model gan --dataset ring8|
grid25 --set train.seed=S``) in ``OUT/<dataset>-seed<S>/``, so an interrupted table resumes
and finished runs are not retrained. The table (``OUT/table.json`` and ``OUT/table.md``) gives
the mean and the standard error over seeds of ``modes_captured``, ``high_quality_fraction``
and ``reverse_kl``, with the published rows below.

With ``--losses``, the table has one row per GAN loss (``model.loss``): the default
configuration with the loss changed and, where the loss's paper trains it differently, that
paper's recipe (:data:`RECIPES`: for ``wgan_gp``, Gulrajani et al.'s 5 critic updates per
generator update, Adam (1e-4, 0, 0.9) and no R1; the step counts, the networks and the EMA
stay the default's). ``--same-recipe`` changes only the loss instead. Each (loss, dataset,
seed) runs in ``OUT/<dataset>-<loss>[-paper]-seed<S>/`` (``-paper`` when a recipe applies;
the default loss's runs in ``OUT/<dataset>-seed<S>/``, shared with the table without
``--losses``).

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
from genjax.models import gan

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

#: loss -> the ``--set`` overrides of the recipe its paper trains it with, where that differs
#: from the default configuration's (Gulrajani et al., 2017, Algorithm 1: n_critic = 5,
#: lambda = 10 (the default ``gp_weight``), Adam with alpha = 1e-4, beta1 = 0, beta2 = 0.9;
#: a gradient penalty in place of R1).
RECIPES: dict[str, tuple[str, ...]] = {
    "wgan_gp": (
        "model.d_steps=5",
        "model.r1_gamma=0",
        "optimizer.learning_rate=1e-4",
        "optimizer.b1=0",
        "optimizer.b2=0.9",
    ),
}


def _mean_stderr(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def _ours(runs: dict[str, list[dict]]) -> dict:
    ours = {}
    for dataset, per_seed in runs.items():
        row = {"seeds": len(per_seed)}
        for name in METRICS:
            values = [float(m[name]) for m in per_seed]
            mean, stderr = _mean_stderr(values)
            row[name] = {"mean": mean, "stderr": stderr, "values": values}
        ours[dataset] = row
    return ours


def _published() -> list[dict]:
    return [
        {"source": source, "method": method, **{d: list(v) for d, v in rows.items()}}
        for (source, method), rows in PUBLISHED.items()
    ]


def summarise(runs: dict[str, list[dict]]) -> dict:
    """``{dataset: [summary metrics per seed]}`` -> the table's data (means, standard errors,
    the per-seed values and the published rows)."""
    return {"ours": _ours(runs), "published": _published()}


def summarise_losses(
    runs: dict[str, dict[str, list[dict]]], recipes: dict[str, tuple[str, ...]] | None = None
) -> dict:
    """``{loss: {dataset: [summary metrics per seed]}}`` -> the table's data with one row per
    loss under ``"by_loss"`` (``[{"loss": ..., "recipe": [overrides], "ours": ...}]``, in the
    order given); ``recipes`` maps a loss to the overrides its runs used beyond the loss."""
    recipes = recipes or {}
    by_loss = [
        {"loss": loss, "recipe": list(recipes.get(loss, ())), "ours": _ours(per_dataset)}
        for loss, per_dataset in runs.items()
    ]
    return {"by_loss": by_loss, "published": _published()}


def _recipe_label(row: dict) -> str:
    return " (its paper's recipe)" if row.get("recipe") else ""


def _fmt(value: float | None, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.1f}%" if percent else f"{value:.2f}"


def _our_line(ours: dict, method: str) -> str:
    cells = []
    for dataset in DATASETS:
        row = ours.get(dataset)
        if row is None:
            cells += ["–"] * 3
            continue
        for name in METRICS:
            m = row[name]
            pct = name == "high_quality_fraction"
            err = f" ± {_fmt(m['stderr'], pct)}" if not math.isnan(m["stderr"]) else ""
            cells.append(f"**{_fmt(m['mean'], pct)}{err}**")
    seeds = sorted({row["seeds"] for row in ours.values()})
    plural = "" if seeds == [1] else "s"
    return (
        f"| genjax (this run) | {method}, {'/'.join(map(str, seeds))} seed{plural} | "
        + " | ".join(cells)
        + " |"
    )


def markdown(table: dict) -> str:
    """The table as Markdown: one row per method (per loss with ``"by_loss"``), ring and grid
    side by side."""
    head = (
        "| source | method | ring: modes (of 8) | ring: high quality | ring: reverse KL "
        "| grid: modes (of 25) | grid: high quality | grid: reverse KL |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    if "by_loss" in table:
        lines = [
            _our_line(r["ours"], f"GAN, loss={r['loss']}{_recipe_label(r)}")
            for r in table["by_loss"]
        ]
    else:
        lines = [_our_line(table["ours"], "GAN, default config")]
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
    parser.add_argument(
        "--losses",
        help=f"comma-separated GAN losses, one row each ({', '.join(gan.LOSSES)}); "
        "default: one row, the config's loss",
    )
    parser.add_argument(
        "--same-recipe",
        action="store_true",
        help="with --losses: change only model.loss, not the recipe its paper uses",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    losses: list[str | None] = [None]
    if args.losses is not None:
        losses = [name.strip() for name in args.losses.split(",")]
        unknown = [name for name in losses if name not in gan.LOSSES]
        if unknown or not losses:
            parser.error(f"--losses must name some of {', '.join(gan.LOSSES)}, got {args.losses!r}")
        if any(item.split("=")[0].strip() == "model.loss" for item in args.overrides):
            parser.error("--losses sets model.loss itself; drop --set model.loss=...")
    recipes = {} if args.same_recipe or args.losses is None else RECIPES
    out = Path(args.out)
    default_loss = gan.GANConfig().loss
    runs: dict[str | None, dict[str, list[dict]]] = {}
    jobs = [(loss, d, s) for loss in losses for d in DATASETS for s in range(args.seeds)]
    for i, (loss, dataset, seed) in enumerate(jobs, start=1):
        recipe = recipes.get(loss, ())
        named = "" if loss in (None, default_loss) else f"-{loss}" + ("-paper" if recipe else "")
        work = out / f"{dataset}{named}-seed{seed}"
        what = f"gan ({loss}) on {dataset}" if loss else f"gan on {dataset}"
        print(f"[{i}/{len(jobs)}] {what}, seed {seed} -> {work}", file=sys.stderr)
        argv_run = ["--model", "gan", "--dataset", dataset, "--workdir", str(work)]
        settings = [f"train.seed={seed}", *recipe, *args.overrides]
        if loss is not None:
            settings.append(f"model.loss={loss}")
        for item in settings:
            argv_run += ["--set", item]
        if args.quiet:
            argv_run.append("--quiet")
        code = train.main(argv_run)
        if code != 0:
            return code
        summary = json.loads((work / "summary.json").read_text())
        runs.setdefault(loss, {}).setdefault(dataset, []).append(summary["metrics"])
    table = summarise(runs[None]) if args.losses is None else summarise_losses(runs, recipes)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.json").write_text(json.dumps(table, indent=2) + "\n")
    (out / "table.md").write_text(markdown(table))
    print(markdown(table))
    print(f"table: {(out / 'table.md').absolute()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
