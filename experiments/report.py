"""The demo's report: one self-contained HTML page (images inlined) and a Markdown table.

    python -m experiments.report runs/demo        # writes runs/demo/report.html and report.md

Every number comes from the runs' own ``summary.json``; every picture from their
``figures/``. Nothing here computes a metric.
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


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def load_runs(root: Path) -> list[tuple[Path, dict, dict]]:
    """``(workdir, config, summary)`` of each finished run directly under ``root``."""
    runs = []
    for summary_path in sorted(root.glob("*/summary.json")):
        workdir = summary_path.parent
        config = json.loads((workdir / "config.json").read_text())
        runs.append((workdir, config, json.loads(summary_path.read_text())))
    return runs


def headline_rows(config: dict, summary: dict) -> list[tuple[str, str, str, str]]:
    """(label, value, reference value, reference description) for a run's headline table."""
    try:
        spec = registry.get(config["model"])
    except KeyError:
        return []
    metrics = summary["metrics"]
    rows = []
    for label, key, ref_key, ref_label in spec.headline:
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
"""


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
        figures = sorted((workdir / "figures").glob("*.png"))
        order = {name: i for i, name in enumerate(key_figures)}
        figures.sort(key=lambda p: (order.get(p.name, len(order)), p.name))
        parts.append("<div class='figs'>")
        for fig in figures:
            parts.append(
                f"<figure>{_image(fig, fig.stem)}<figcaption>{html.escape(fig.name)}"
                "</figcaption></figure>"
            )
        parts.append("</div>")
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
