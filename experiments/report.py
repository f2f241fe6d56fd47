"""The demo's report: one self-contained HTML page (images and audio inlined) and a Markdown
table.

    python -m experiments.report runs/demo        # writes runs/demo/report.html and report.md

Every number comes from the runs' own ``summary.json``; every picture from their
``figures/``; every sound from the WAV files their summary lists (the speech experiment's,
``python -m experiments.speech.run --workdir runs/demo/cyclevae-speech``, shown as audio
players beside their spectrograms). Nothing here computes a metric. The runs appear in the
order of the model families (PPCA, VAE, GAN, VQ-VAE, Cycle VAE; image data before speech).
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import sys
from pathlib import Path

from experiments import registry


def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    return html.escape(str(v))


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _image(path: Path, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="{_data_uri(path, "image/png")}">'


def _audio(path: Path, label: str) -> str:
    return (
        f'<audio controls preload="metadata" title="{html.escape(label)}" '
        f'src="{_data_uri(path, "audio/wav")}"></audio>'
    )


#: The order of the report's sections: the model families as the project introduces them.
FAMILIES = ("ppca", "vae", "gan", "vqvae", "cyclevae")
#: Datasets shown after the image data of their family.
LATE_DATASETS = ("espeak-frames",)


def _order(run: tuple[Path, dict, dict]) -> tuple:
    workdir, _, summary = run
    model = summary.get("model", "")
    family = FAMILIES.index(model) if model in FAMILIES else len(FAMILIES)
    return family, summary.get("dataset") in LATE_DATASETS, workdir.name


def load_runs(root: Path) -> list[tuple[Path, dict, dict]]:
    """``(workdir, config, summary)`` of each finished run directly under ``root``, in the
    order of :data:`FAMILIES`. A run of its own command (the speech experiment) has no
    ``config.json``: its config is ``{}``."""
    runs = []
    for summary_path in root.glob("*/summary.json"):
        workdir = summary_path.parent
        config_path = workdir / "config.json"
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
        runs.append((workdir, config, json.loads(summary_path.read_text())))
    return sorted(runs, key=_order)


def headline_rows(config: dict, summary: dict) -> list[tuple[str, str, str, str]]:
    """(label, value, reference value, reference description) for a run's headline table:
    the model spec's headline, or the summary's own ``headline`` for a run without a config."""
    try:
        headline = registry.get(config["model"]).headline
    except KeyError:
        headline = summary.get("headline", [])
    metrics = summary["metrics"]
    rows = []
    for label, key, ref_key, ref_label in headline:
        if key not in metrics:
            continue
        ref = _fmt(metrics[ref_key]) if ref_key and ref_key in metrics else ""
        rows.append((label, _fmt(metrics[key]), ref, ref_label if ref else ""))
    return rows


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
th { background: #f3f3f3; }
.figs { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.figs figure { margin: 0; } .figs img { max-width: 520px; border: 1px solid #eee; }
figcaption { font-size: 0.8em; color: #555; }
.pair { display: flex; gap: 16px; align-items: stretch; margin: 1em 0; }
.pair img { max-width: 620px; border: 1px solid #eee; }
.clips { display: flex; flex-direction: column; justify-content: space-around; gap: 10px; }
.clips div { font-size: 0.8em; color: #555; } .clips audio { width: 300px; display: block; }
"""


def _audio_section(workdir: Path, entries: list[dict]) -> list[str]:
    """Each entry of a summary's ``audio``: its spectrogram figure, with one player per panel
    (``clips``: ``[label, WAV path relative to the run]``) beside it, top to bottom."""
    parts = ["<h3>Listen</h3>"]
    for entry in entries:
        parts.append(f"<h4>{html.escape(entry['title'])}</h4><div class='pair'>")
        parts.append(_image(workdir / entry["figure"], entry["title"]))
        parts.append("<div class='clips'>")
        for label, wav in entry["clips"]:
            parts.append(f"<div>{html.escape(label)}{_audio(workdir / wav, label)}</div>")
        parts.append("</div></div>")
    return parts


def render_html(root: Path) -> str:
    runs = load_runs(root)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        "<title>genjax demo report</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>genjax demo report</h1>",
        f"<p>{len(runs)} runs from <code>{html.escape(str(root))}</code>. Every number is read "
        "from the run's <code>summary.json</code>; every picture from its "
        "<code>figures/</code>.</p>",
    ]
    for workdir, config, summary in runs:
        try:
            spec = registry.get(config["model"])
            key_figures = list(spec.key_figures)
        except KeyError:
            key_figures = []
        parts.append(
            f"<h2 id='{html.escape(workdir.name)}'>{html.escape(workdir.name)}: "
            f"{html.escape(summary['model'])} on {html.escape(summary['dataset'])}</h2>"
        )
        parts.append(f"<p>{summary['steps']} steps, {summary['wall_s']:.1f} s wall time.</p>")
        rows = headline_rows(config, summary)
        if rows:
            parts.append(
                "<table><tr><th>metric</th><th>value</th><th>reference</th>"
                "<th>reference is</th></tr>"
            )
            for label, value, ref, ref_label in rows:
                parts.append(
                    f"<tr><td>{html.escape(label)}</td><td>{value}</td><td>{ref}</td>"
                    f"<td>{html.escape(ref_label)}</td></tr>"
                )
            parts.append("</table>")
        parts.append("<details><summary>all metrics</summary><table>")
        for k, v in summary["metrics"].items():
            parts.append(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>")
        parts.append("</table></details>")
        entries = summary.get("audio", [])
        shown = {workdir / entry["figure"] for entry in entries}
        figures = sorted(p for p in (workdir / "figures").glob("*.png") if p not in shown)
        order = {name: i for i, name in enumerate(key_figures)}
        figures.sort(key=lambda p: (order.get(p.name, len(order)), p.name))
        parts.append("<div class='figs'>")
        for fig in figures:
            parts.append(
                f"<figure>{_image(fig, fig.stem)}<figcaption>{html.escape(fig.name)}"
                "</figcaption></figure>"
            )
        parts.append("</div>")
        if entries:
            parts += _audio_section(workdir, entries)
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(root: Path) -> str:
    lines = [
        "| run | model | dataset | metric | value | reference | reference is |",
        "|---|---|---|---|---|---|---|",
    ]
    for workdir, config, summary in load_runs(root):
        for label, value, ref, ref_label in headline_rows(config, summary):
            lines.append(
                f"| {workdir.name} | {summary['model']} | {summary['dataset']} | "
                f"{label} | {value} | {ref} | {ref_label} |"
            )
    return "\n".join(lines) + "\n"


def write_report(root: str | Path) -> Path:
    root = Path(root)
    out = root / "report.html"
    out.write_text(render_html(root))
    (root / "report.md").write_text(render_markdown(root))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="directory holding one run per subdirectory")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if not root.is_dir():
        print(f"report: error: {root} is not a directory", file=sys.stderr)
        return 2
    print(write_report(root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
