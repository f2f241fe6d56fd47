"""The VQ-VAE's quantizers at equal bits on digits, and their rate-distortion curves.

    python -m experiments.vq_bits --workdir runs/vq-bits [--no-bf16] [--only NAME ...]
        [--seeds N] [--dataset digits|mnist|cifar10]

Each row is one run of the VQ-VAE experiment (``python -m experiments.train --model vqvae
--dataset digits``: the digits configuration, its two phases and its evaluation on the whole
test split, without the side-by-side codebook variants), differing only in the quantizer.
On digits the code map is 2 x 2, so a map of ``S = 4`` positions costs

    VQ   K = 64:                     4 log2 64            = 24 bits per image
    FSQ  levels (4, 4, 4):           4 log2 64            = 24 bits
    RVQ  N = 2 levels of K = 8:      4 * 2 * log2 8       = 24 bits

beside PCA at the same bits (coefficients uniformly quantised,
:func:`experiments.models.vqvae.pca_baselines`). The rate-distortion plot adds RVQ at 1 and 4
levels (12, 48 bits) and FSQ at the paper's 2^8 and 2^10 tables ((8, 6, 5), 31.6 bits;
(8, 5, 5, 5), 39.9 bits).

``--dataset mnist`` or ``cifar10`` trains the same rows with that data set's configuration
(a 7 x 7 or 8 x 8 code map: every row's bits per image scale by the same number of positions,
so the rows stay at equal bits), for users who have the archives.

Each quantizer at 24 bits (the rows of :data:`BF16`) is trained again with
``train.compute_dtype=bfloat16`` (bfloat16 activations; parameters, distances, codebook
statistics and losses in float32), unless ``--no-bf16``; ``bf16.md`` / ``bf16.json`` give its
test MSE beside float32's, their ratio and the steps the non-finite guard skipped.

With ``--seeds N`` every run (and its bfloat16 twin) is trained again with ``train.seed=1 ..
N-1`` (as ``<name>[_bf16]-seedS``), and ``seeds.md`` / ``seeds.json`` give the mean and
standard deviation over the N seeds of the test MSE, code usage and perplexity, the lowest
usage, and the bfloat16 / float32 MSE ratios: one seed's usage or dtype ratio says little
when the seed alone moves them by several percent.

Writes ``table.md``, ``table.json``, ``bf16.md``, ``bf16.json`` and ``rate_distortion.png`` in
the work directory, one run directory per row under it (resumable: a finished run is not
retrained), and prints the tables and the wall time of each run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from functools import partial
from pathlib import Path

from genjax import viz
from genjax.viz import plt

#: The VQ-VAE experiment's data sets (``experiments.models.vqvae`` has a config for each).
DATASETS = ("digits", "mnist", "cifar10")
#: name: the quantizer's settings (``--set`` items).
RUNS: dict[str, tuple[str, ...]] = {
    "vq_ema_restart_k64": ("model.quantizer=vq", "model.num_codes=64"),
    "fsq_4x4x4": ("model.quantizer=fsq", "model.fsq_levels=4,4,4"),
    "rvq_2x8": ("model.quantizer=rvq", "model.num_codes=8", "model.num_quantizers=2"),
    "rvq_1x8": ("model.quantizer=rvq", "model.num_codes=8", "model.num_quantizers=1"),
    "rvq_4x8": ("model.quantizer=rvq", "model.num_codes=8", "model.num_quantizers=4"),
    "fsq_8x6x5": ("model.quantizer=fsq", "model.fsq_levels=8,6,5"),
    "fsq_8x5x5x5": ("model.quantizer=fsq", "model.fsq_levels=8,5,5,5"),
}
#: The float32 runs trained again in bfloat16 (as ``<name>_bf16``).
BF16 = ("vq_ema_restart_k64", "fsq_4x4x4", "rvq_2x8")
BF16_SET = "train.compute_dtype=bfloat16"
#: The rate-distortion curves: label -> runs in increasing bits.
CURVES = {
    "RVQ (K = 8; 1, 2, 4 levels)": ("rvq_1x8", "rvq_2x8", "rvq_4x8"),
    "FSQ (4,4,4), (8,6,5), (8,5,5,5)": ("fsq_4x4x4", "fsq_8x6x5", "fsq_8x5x5x5"),
}
COLUMNS = (
    "bits_per_image",
    "recon_mse",
    "pca_quantized_recon_mse",
    "code_usage",
    "perplexity",
    "prior_bits_per_code",
    "prior_sample_classes",
)


def run_one(
    workdir: Path,
    name: str,
    extra: list[str],
    *,
    bf16: bool = False,
    seed: int = 0,
    dataset: str = "digits",
) -> dict:
    """Train (or read back) the run ``name`` (in bfloat16 under ``<name>_bf16``; with
    ``train.seed=S`` for ``seed`` S > 0 under ``<name>[_bf16]-seedS``); its summary's metrics,
    with ``wall_s`` (of the training run) and ``skipped_steps`` (steps the non-finite guard
    skipped, from ``metrics.jsonl``)."""
    from experiments.train import main

    run_dir = workdir / ((f"{name}_bf16" if bf16 else name) + (f"-seed{seed}" if seed else ""))
    argv = ["--model", "vqvae", "--dataset", dataset, "--workdir", str(run_dir), "--quiet"]
    items = (*RUNS[name], "eval.compare=", *extra, *((BF16_SET,) if bf16 else ()))
    for item in (*items, *((f"train.seed={seed}",) if seed else ())):
        argv += ["--set", item]
    code = main(argv)
    if code != 0:
        raise SystemExit(f"vq_bits: run {run_dir.name} failed with exit code {code}")
    summary = json.loads((run_dir / "summary.json").read_text())
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    skipped = max(
        (r.get("skipped_steps", 0) for r in lines if r.get("split") == "train"), default=0
    )
    return {**summary["metrics"], "wall_s": summary["wall_s"], "skipped_steps": int(skipped)}


def bf16_rows(rows: dict[str, dict], bf16: dict[str, dict]) -> dict[str, dict]:
    """Per quantizer: float32 and bfloat16 test MSE, ``ratio = bf16 / f32`` and the bf16
    run's skipped (non-finite) steps."""
    return {
        name: {
            "recon_mse_float32": rows[name]["recon_mse"],
            "recon_mse_bfloat16": m["recon_mse"],
            "ratio": m["recon_mse"] / rows[name]["recon_mse"],
            "nonfinite_steps": m["skipped_steps"],
        }
        for name, m in bf16.items()
    }


def bf16_markdown(table: dict[str, dict]) -> str:
    """:func:`bf16_rows` as a Markdown table."""
    lines = [
        "| run | test MSE float32 | test MSE bfloat16 | ratio | non-finite steps |",
        "|---|---|---|---|---|",
    ]
    for name, r in table.items():
        lines.append(
            f"| {name} | {r['recon_mse_float32']:.4g} | {r['recon_mse_bfloat16']:.4g} | "
            f"{r['ratio']:.3f} | {r['nonfinite_steps']} |"
        )
    return "\n".join(lines) + "\n"


#: The metrics :func:`seed_rows` summarises over seeds.
SEED_COLUMNS = ("recon_mse", "code_usage", "perplexity")


def _mean_std(values: list[float]) -> dict:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"values": values, "mean": statistics.fmean(values), "std": std}


def seed_rows(runs: dict[str, list[dict]], bf16: dict[str, list[dict]]) -> dict[str, dict]:
    """Per run, over its seeds: mean, standard deviation and values of :data:`SEED_COLUMNS`,
    the smallest code usage, and with a bfloat16 twin the per-seed ratios ``bf16 / f32`` of the
    test MSE and the ratio of the mean MSEs."""
    table = {}
    for name, per_seed in runs.items():
        row = {c: _mean_std([m[c] for m in per_seed]) for c in SEED_COLUMNS}
        row["seeds"] = len(per_seed)
        row["min_code_usage"] = min(m["code_usage"] for m in per_seed)
        if name in bf16:
            low = bf16[name]
            row["recon_mse_bfloat16"] = _mean_std([m["recon_mse"] for m in low])
            row["bf16_ratios"] = [
                b["recon_mse"] / f["recon_mse"] for f, b in zip(per_seed, low, strict=True)
            ]
            row["bf16_ratio_of_means"] = (
                row["recon_mse_bfloat16"]["mean"] / row["recon_mse"]["mean"]
            )
            row["bf16_nonfinite_steps"] = sum(m["skipped_steps"] for m in low)
        table[name] = row
    return table


def seeds_markdown(table: dict[str, dict]) -> str:
    """:func:`seed_rows` as a Markdown table (mean ± standard deviation over seeds)."""
    lines = [
        "| run | seeds | test MSE | code usage (lowest) | perplexity | bf16 / f32 MSE, "
        "ratio of means (per seed) |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in table.items():
        mse, use, perp = (r[c] for c in SEED_COLUMNS)
        dtype = "–"
        if "bf16_ratios" in r:
            per_seed = ", ".join(f"{v:.3f}" for v in r["bf16_ratios"])
            dtype = f"{r['bf16_ratio_of_means']:.3f} ({per_seed})"
        lines.append(
            f"| {name} | {r['seeds']} | {mse['mean']:.4f} ± {mse['std']:.4f} | "
            f"{use['mean']:.1%} ± {use['std']:.1%} ({r['min_code_usage']:.1%}) | "
            f"{perp['mean']:.1f} ± {perp['std']:.1f} | {dtype} |"
        )
    return "\n".join(lines) + "\n"


def table_markdown(rows: dict[str, dict]) -> str:
    """The rows as a Markdown table of :data:`COLUMNS`."""
    lines = ["| run | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, m in rows.items():
        cells = [f"{m[c]:.4g}" if isinstance(m[c], float) else str(m[c]) for c in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def rate_distortion(
    curves: dict[str, list[tuple[float, float]]], path: Path, dataset: str = "digits"
) -> Path:
    """One line per curve of ``(bits, mse)`` points."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, points in curves.items():
        if points:
            bits, mse = zip(*sorted(points), strict=True)
            ax.plot(bits, mse, marker="o", label=label)
    ax.legend(fontsize=8)
    return viz._finish(
        fig,
        ax,
        path,
        title=f"{dataset}: test reconstruction MSE against bits per image",
        xlabel="bits per image",
        ylabel="test MSE per value",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument(
        "--dataset",
        default="digits",
        choices=DATASETS,
        help="the VQ-VAE experiment's data set and its configuration (default: digits; "
        "mnist and cifar10 need their archives, see the README's Datasets)",
    )
    parser.add_argument("--only", nargs="*", default=list(RUNS), help="runs to make")
    parser.add_argument("--set", action="append", default=[], help="extra key=value")
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"also train {', '.join(BF16)} (those of --only) in bfloat16 (default: on)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="train each run of --only (and its bfloat16 twin) with train.seed=0..N-1 and "
        "write seeds.md / seeds.json (the main table stays seed 0's; default: 1)",
    )
    args = parser.parse_args(argv)
    if args.seeds < 1:
        print(f"vq_bits: --seeds must be >= 1, got {args.seeds}", file=sys.stderr)
        return 2
    unknown = [n for n in args.only if n not in RUNS]
    if unknown:
        print(f"vq_bits: unknown runs {unknown}; choose from {', '.join(RUNS)}", file=sys.stderr)
        return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    one = partial(run_one, args.workdir, dataset=args.dataset)
    rows = {name: one(name, args.set) for name in args.only}
    bf16 = {
        name: one(name, args.set, bf16=True) for name in args.only if args.bf16 and name in BF16
    }
    table = {name: {c: m[c] for c in COLUMNS} for name, m in rows.items()}
    (args.workdir / "table.json").write_text(json.dumps(table, indent=2) + "\n")
    (args.workdir / "table.md").write_text(table_markdown(rows))
    curves = {
        label: [(rows[n]["bits_per_image"], rows[n]["recon_mse"]) for n in names if n in rows]
        for label, names in CURVES.items()
    }
    pca = sorted({(m["bits_per_image"], m["pca_quantized_recon_mse"]) for m in rows.values()})
    curves["PCA, quantised coefficients"] = pca
    rate_distortion(curves, args.workdir / "rate_distortion.png", args.dataset)
    print(table_markdown(rows), end="")
    if bf16:
        dtype_table = bf16_rows(rows, bf16)
        (args.workdir / "bf16.json").write_text(json.dumps(dtype_table, indent=2) + "\n")
        (args.workdir / "bf16.md").write_text(bf16_markdown(dtype_table))
        print(bf16_markdown(dtype_table), end="")
    walls = {n: m["wall_s"] for n, m in rows.items()}
    walls.update({f"{n}_bf16": m["wall_s"] for n, m in bf16.items()})
    if args.seeds > 1:
        seeds = range(1, args.seeds)
        runs = {n: [rows[n], *(one(n, args.set, seed=s) for s in seeds)] for n in rows}
        low = {
            n: [m, *(one(n, args.set, bf16=True, seed=s) for s in seeds)] for n, m in bf16.items()
        }
        seed_table = seed_rows(runs, low)
        (args.workdir / "seeds.json").write_text(json.dumps(seed_table, indent=2) + "\n")
        (args.workdir / "seeds.md").write_text(seeds_markdown(seed_table))
        print(seeds_markdown(seed_table), end="")
        for label, group in (("", runs), ("_bf16", low)):
            for n, ms in group.items():
                for s, m in zip(seeds, ms[1:], strict=True):
                    walls[f"{n}{label}-seed{s}"] = m["wall_s"]
    print("wall s: " + ", ".join(f"{n} {w:.0f}" for n, w in walls.items()))
    print(f"total wall s: {sum(walls.values()):.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
