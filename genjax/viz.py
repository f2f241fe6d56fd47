"""Figures written as PNG (matplotlib, Agg backend, no display needed).

Every function takes host arrays, writes one PNG and returns its path. Shapes:
images ``[N, H, W]``, ``[N, H, W, C]`` or flattened ``[N, H*W*C]`` with ``image_shape``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def _as_images(images, image_shape=None) -> np.ndarray:
    x = np.asarray(images, dtype=np.float32)
    if image_shape is not None:
        x = x.reshape(x.shape[0], *image_shape)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim not in (3, 4):
        raise ValueError(f"images must be [N, H, W] or [N, H, W, C], got shape {x.shape}")
    return x


def tile(images, ncols: int | None = None, image_shape=None, pad: int = 1) -> np.ndarray:
    """Arrange ``N`` images in a grid (row-major), ``pad`` pixels apart, as one array.

    Example:
      >>> import numpy as np
      >>> from genjax import viz
      >>> images = np.stack([np.zeros((2, 2)), np.ones((2, 2))])  # two 2x2 images
      >>> viz.tile(images, ncols=2)  # padding takes the smallest value
      array([[0., 0., 0., 0., 0., 0., 0.],
             [0., 0., 0., 0., 1., 1., 0.],
             [0., 0., 0., 0., 1., 1., 0.],
             [0., 0., 0., 0., 0., 0., 0.]], dtype=float32)
    """
    x = _as_images(images, image_shape)
    n, h, w = x.shape[:3]
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    shape = (nrows * (h + pad) + pad, ncols * (w + pad) + pad, *x.shape[3:])
    canvas = np.full(shape, x.min() if n else 0.0, np.float32)
    for i in range(n):
        r, c = divmod(i, ncols)
        canvas[
            pad + r * (h + pad) : pad + r * (h + pad) + h,
            pad + c * (w + pad) : pad + c * (w + pad) + w,
        ] = x[i]
    return canvas


def image_grid(
    images,
    path: str | Path,
    *,
    ncols: int | None = None,
    image_shape=None,
    title: str = "",
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
) -> Path:
    """Write a grid of images; grey-scale images use a reversed grey map (ink is dark).

    Example:
      >>> import tempfile, numpy as np
      >>> from pathlib import Path
      >>> from genjax import viz
      >>> images = np.random.default_rng(0).random((6, 64))  # flattened 8x8 grey images
      >>> path = Path(tempfile.mkdtemp()) / "grid.png"
      >>> path = viz.image_grid(images, path, image_shape=(8, 8, 1), title="samples")
      >>> path.name, path.read_bytes()[1:4]  # a PNG file
      ('grid.png', b'PNG')
    """
    x = _as_images(images, image_shape)
    ncols = ncols or math.ceil(math.sqrt(len(x)))
    grid = tile(x, ncols)
    nrows = math.ceil(len(x) / ncols)
    scale = 0.45 if x.shape[1] <= 16 else 0.9
    fig, ax = plt.subplots(figsize=(max(2.5, ncols * scale + 0.8), max(2.0, nrows * scale + 0.6)))
    if grid.ndim == 2:
        ax.imshow(grid, cmap="gray_r", vmin=vmin, vmax=vmax, interpolation="nearest")
    else:
        ax.imshow(np.clip(grid, 0, 1), interpolation="nearest")
    h, w = x.shape[1:3]
    ax.set_xticks([1 + (w + 1) * i + w / 2 for i in range(len(col_labels))] if col_labels else [])
    ax.set_yticks([1 + (h + 1) * i + h / 2 for i in range(len(row_labels))] if row_labels else [])
    if col_labels:
        ax.set_xticklabels(col_labels, fontsize=7)
        ax.xaxis.tick_top()
    if row_labels:
        ax.set_yticklabels(row_labels, fontsize=7)
    for side in ax.spines.values():
        side.set_visible(False)
    return _finish(fig, ax, path, title=title)


def curves(
    history: Sequence[Mapping],
    keys: Sequence[str],
    path: str | Path,
    *,
    split: str | None = "train",
    title: str = "",
    ylabel: str = "",
) -> Path:
    """Plot metric ``keys`` against ``step`` from ``metrics.jsonl`` records.

    Example:
      >>> import tempfile, numpy as np
      >>> from pathlib import Path
      >>> from genjax import viz
      >>> history = [{"step": 0, "split": "train", "loss": 1.0},
      ...            {"step": 10, "split": "train", "loss": 0.4},
      ...            {"step": 10, "split": "test", "loss": 0.5}]  # not plotted: split="train"
      >>> path = viz.curves(history, ["loss"], Path(tempfile.mkdtemp()) / "loss.png")
      >>> path.read_bytes()[1:4]  # a PNG file
      b'PNG'
    """
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for key in keys:
        pts = [
            (r["step"], r[key])
            for r in history
            if key in r and (split is None or r.get("split") == split)
        ]
        if pts:
            steps, values = zip(*pts, strict=True)
            ax.plot(steps, values, label=key, marker="." if len(pts) < 30 else None)
    ax.grid(alpha=0.3)
    if keys:
        ax.legend(fontsize=7)
    return _finish(fig, ax, path, title=title, xlabel="step", ylabel=ylabel)


def scatter(
    points,
    path: str | Path,
    *,
    labels=None,
    title: str = "",
    reference=None,
    size: float = 4.0,
) -> Path:
    """2-D scatter coloured by ``labels``, optionally over ``reference`` points (crosses).

    Example:
      >>> import tempfile, numpy as np
      >>> from pathlib import Path
      >>> from genjax import viz
      >>> points = np.random.default_rng(0).normal(size=(50, 2))
      >>> path = viz.scatter(points, Path(tempfile.mkdtemp()) / "points.png",
      ...                    labels=points[:, 0] > 0, reference=np.zeros((1, 2)))
      >>> path.read_bytes()[1:4]  # a PNG file
      b'PNG'
    """
    p = np.asarray(points)
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    if labels is None:
        ax.scatter(p[:, 0], p[:, 1], s=size, alpha=0.5, linewidths=0)
    else:
        sc = ax.scatter(
            p[:, 0], p[:, 1], c=np.asarray(labels), s=size, cmap="tab10", alpha=0.7, linewidths=0
        )
        fig.colorbar(sc, ax=ax, fraction=0.046, pad=0.04)
    if reference is not None:
        r = np.asarray(reference)
        ax.scatter(r[:, 0], r[:, 1], marker="x", c="k", s=30)
    ax.set_aspect("equal", adjustable="datalim")
    return _finish(fig, ax, path, title=title)


def field_scatter(
    xs,
    ys,
    values,
    points,
    path: str | Path,
    *,
    reference=None,
    title: str = "",
    value_label: str = "",
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    size: float = 2.0,
) -> Path:
    """A scalar field on a 2-D grid (``values [len(ys), len(xs)]``, e.g. a discriminator's
    ``D(x)``) as filled contours, with ``points [N, 2]`` on top of ``reference`` points
    (hollow circles, e.g. the true modes).

    Example:
      >>> import tempfile, numpy as np
      >>> from pathlib import Path
      >>> from genjax import viz
      >>> xs = ys = np.linspace(-1.0, 1.0, 5)
      >>> values = 1.0 / (1.0 + np.exp(-xs[None, :] - ys[:, None]))  # [len(ys), len(xs)]
      >>> path = Path(tempfile.mkdtemp()) / "field.png"
      >>> path = viz.field_scatter(xs, ys, values, np.zeros((3, 2)), path, value_label="D(x)")
      >>> path.read_bytes()[1:4]  # a PNG file
      b'PNG'
    """
    v = np.asarray(values, dtype=np.float64)
    xs, ys = np.asarray(xs), np.asarray(ys)
    if v.shape != (len(ys), len(xs)):
        raise ValueError(f"values must be [len(ys), len(xs)] = {(len(ys), len(xs))}, got {v.shape}")
    p = np.asarray(points)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"points must be [N, 2], got shape {p.shape}")
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    levels = np.linspace(vmin, vmax, 11) if vmin is not None and vmax is not None else 10
    cs = ax.contourf(xs, ys, v, levels=levels, cmap="RdBu_r", alpha=0.6)
    cb = fig.colorbar(cs, ax=ax, fraction=0.046, pad=0.04)
    if value_label:
        cb.set_label(value_label, fontsize=8)
    if reference is not None:
        r = np.asarray(reference)
        ax.scatter(
            r[:, 0], r[:, 1], marker="o", s=60, facecolors="none", edgecolors="gold", zorder=2
        )
    ax.scatter(p[:, 0], p[:, 1], s=size, c="k", alpha=0.35, linewidths=0, zorder=3)
    ax.set_xlim(xs[0], xs[-1])
    ax.set_ylim(ys[0], ys[-1])
    ax.set_aspect("equal")
    return _finish(fig, ax, path, title=title)


def bars(
    values: Mapping[str, float] | Sequence[float],
    path: str | Path,
    *,
    title: str = "",
    xlabel: str = "",
) -> Path:
    """A bar chart (a histogram of code usage, class frequencies...).

    Example:
      >>> import tempfile
      >>> from pathlib import Path
      >>> from genjax import viz
      >>> path = viz.bars({"a": 3, "b": 1, "c": 2}, Path(tempfile.mkdtemp()) / "usage.png")
      >>> path.read_bytes()[1:4]  # a PNG file
      b'PNG'
    """
    if isinstance(values, Mapping):
        names, heights = list(values), list(values.values())
    else:
        heights = list(values)
        names = [str(i) for i in range(len(heights))]
    fig, ax = plt.subplots(figsize=(max(4, len(heights) * 0.12 + 2), 3))
    ax.bar(range(len(heights)), heights)
    if len(names) <= 30:
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, fontsize=7)
    return _finish(fig, ax, path, title=title, xlabel=xlabel)


def heatmap(
    matrix,
    path: str | Path,
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    xticklabels: Sequence[str] | None = None,
    yticklabels: Sequence[str] | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    annotate: bool = False,
    fmt: str = "{:.2f}",
) -> Path:
    """A matrix ``[R, C]`` as coloured cells (row 0 at the top), with a colour bar; NaN cells
    are left blank. ``annotate`` writes each value in its cell (for small matrices).

    Example:
      >>> import tempfile, numpy as np
      >>> from pathlib import Path
      >>> from genjax import viz
      >>> matrix = np.array([[0.9, 0.1], [np.nan, 0.7]])  # the NaN cell stays blank
      >>> path = viz.heatmap(matrix, Path(tempfile.mkdtemp()) / "m.png", annotate=True)
      >>> path.read_bytes()[1:4]  # a PNG file
      b'PNG'
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"matrix must be [R, C], got shape {m.shape}")
    rows, cols = m.shape
    fig, ax = plt.subplots(figsize=(max(3.5, 0.45 * cols + 1.5), max(3.0, 0.4 * rows + 1.0)))
    im = ax.imshow(np.ma.masked_invalid(m), cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(cols))
    ax.set_yticks(range(rows))
    ax.set_xticklabels(xticklabels if xticklabels is not None else range(cols), fontsize=7)
    ax.set_yticklabels(yticklabels if yticklabels is not None else range(rows), fontsize=7)
    if annotate:
        finite = m[np.isfinite(m)]
        lo = vmin if vmin is not None else (finite.min() if finite.size else 0.0)
        hi = vmax if vmax is not None else (finite.max() if finite.size else 1.0)
        mid = (lo + hi) / 2
        for (r, c), v in np.ndenumerate(m):
            if np.isfinite(v):
                colour = "black" if v > mid else "white"
                ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=6, color=colour)
    return _finish(fig, ax, path, title=title, xlabel=xlabel, ylabel=ylabel)


def spectrograms(
    panels: Sequence,
    path: str | Path,
    *,
    titles: Sequence[str] | None = None,
    title: str = "",
    ylabel: str = "band",
    frame_seconds: float | None = None,
) -> Path:
    """Spectrogram-like arrays ``[T, F]`` (time by frequency band), one panel each, stacked
    vertically on one shared colour scale, low bands at the bottom. ``frame_seconds`` labels
    the time axis in seconds (else in frames).

    Example:
      >>> import tempfile, numpy as np
      >>> from pathlib import Path
      >>> from genjax import viz
      >>> panels = [np.zeros((20, 4)), np.ones((20, 4))]  # [T, F] each
      >>> path = viz.spectrograms(panels, Path(tempfile.mkdtemp()) / "s.png", titles=["a", "b"],
      ...                         frame_seconds=0.01)
      >>> path.read_bytes()[1:4]  # a PNG file
      b'PNG'
    """
    arrays = [np.asarray(p, dtype=np.float64) for p in panels]
    if not arrays or any(a.ndim != 2 for a in arrays):
        raise ValueError(
            f"panels must be a non-empty list of [T, F] arrays, got shapes "
            f"{[a.shape for a in arrays]}"
        )
    if titles is not None and len(titles) != len(arrays):
        raise ValueError(f"titles must have one entry per panel ({len(arrays)}), got {len(titles)}")
    lo = min(float(np.min(a)) for a in arrays)
    hi = max(float(np.max(a)) for a in arrays)
    width = max(a.shape[0] for a in arrays)
    fig, axes = plt.subplots(
        len(arrays),
        1,
        figsize=(max(5.0, min(12.0, width / 40 + 2)), 2.1 * len(arrays) + 0.5),
        squeeze=False,
        gridspec_kw={"hspace": 0.6},  # room for each panel's title above the axis below it
    )
    for i, (ax, a) in enumerate(zip(axes[:, 0], arrays, strict=True)):
        extent = None
        if frame_seconds:
            extent = (0.0, a.shape[0] * frame_seconds, -0.5, a.shape[1] - 0.5)
        im = ax.imshow(
            a.T, origin="lower", aspect="auto", cmap="magma", vmin=lo, vmax=hi, extent=extent
        )
        ax.set_ylabel(ylabel, fontsize=7)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    axes[-1, 0].set_xlabel("time (s)" if frame_seconds else "frame")
    fig.colorbar(im, ax=axes[:, 0].tolist(), fraction=0.03, pad=0.02)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path, tight_layout=False)


def _finish(fig, ax, path, *, title: str = "", xlabel: str = "", ylabel: str = "") -> Path:
    """Sets the labels of ``ax`` that are given, then saves ``fig`` (:func:`_save`)."""
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9, wrap=True)  # wrapped to the figure's width, not clipped
    return _save(fig, path)


def _save(fig, path, *, tight_layout: bool = True) -> Path:
    """Writes ``fig`` to ``path`` (folders made as needed) at 110 dpi and closes it. Without
    ``tight_layout`` the figure keeps its own spacing and the saved area is cropped to what
    is drawn instead."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight_layout:
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    else:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
