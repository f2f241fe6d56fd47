"""The VQ-VAE's quantizers at equal bits on digits, and their rate-distortion curves.

    python -m experiments.vq_bits --workdir runs/vq-bits [--set train.compute_dtype=bfloat16]

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

Writes ``table.md``, ``table.json`` and ``rate_distortion.png`` in the work directory, one run
directory per row under it (resumable: a finished run is not retrained).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from genjax import viz
from genjax.viz import plt

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


def run_one(workdir: Path, name: str, extra: list[str]) -> dict:
    """Train (or read back) the run ``name``; its summary's metrics."""
    from experiments.train import main

    run_dir = workdir / name
    argv = ["--model", "vqvae", "--dataset", "digits", "--workdir", str(run_dir), "--quiet"]
    for item in (*RUNS[name], "eval.compare=", *extra):
        argv += ["--set", item]
    code = main(argv)
    if code != 0:
        raise SystemExit(f"vq_bits: run {name} failed with exit code {code}")
    return json.loads((run_dir / "summary.json").read_text())["metrics"]


def table_markdown(rows: dict[str, dict]) -> str:
    """The rows as a Markdown table of :data:`COLUMNS`."""
    lines = ["| run | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, m in rows.items():
        cells = [f"{m[c]:.4g}" if isinstance(m[c], float) else str(m[c]) for c in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def rate_distortion(curves: dict[str, list[tuple[float, float]]], path: Path) -> Path:
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
        title="digits: test reconstruction MSE against bits per image",
        xlabel="bits per image",
        ylabel="test MSE per value",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--only", nargs="*", default=list(RUNS), help="runs to make")
    parser.add_argument("--set", action="append", default=[], help="extra key=value")
    args = parser.parse_args(argv)
    unknown = [n for n in args.only if n not in RUNS]
    if unknown:
        print(f"vq_bits: unknown runs {unknown}; choose from {', '.join(RUNS)}", file=sys.stderr)
        return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = {name: run_one(args.workdir, name, args.set) for name in args.only}
    table = {name: {c: m[c] for c in COLUMNS} for name, m in rows.items()}
    (args.workdir / "table.json").write_text(json.dumps(table, indent=2) + "\n")
    (args.workdir / "table.md").write_text(table_markdown(rows))
    curves = {
        label: [(rows[n]["bits_per_image"], rows[n]["recon_mse"]) for n in names if n in rows]
        for label, names in CURVES.items()
    }
    pca = sorted({(m["bits_per_image"], m["pca_quantized_recon_mse"]) for m in rows.values()})
    curves["PCA, quantised coefficients"] = pca
    rate_distortion(curves, args.workdir / "rate_distortion.png")
    print(table_markdown(rows), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
