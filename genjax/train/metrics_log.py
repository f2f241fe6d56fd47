"""A run's metric lines: ``metrics.jsonl``, and the same values as TensorBoard scalars.

``metrics.jsonl`` is the record (one JSON object per line, read back by the experiments and
the report). The TensorBoard event files in ``<workdir>/tensorboard`` carry the same numbers
(as float32, TensorBoard's type) under ``<split>/<metric>`` tags, and the run's figures
(:func:`write_figures`), so that ``tensorboard --logdir runs/`` shows every run side by
side. They are written through ``tensorboardX``, which needs no TensorFlow.

On a resume from step ``s``, lines past ``s`` (written by the interrupted invocation, whose
work is about to be redone) are dropped from ``metrics.jsonl``, and the new event file asks
TensorBoard to purge the events past ``s`` of the earlier ones, so neither shows a step
twice. Only process 0 writes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path

import jax
import numpy as np

TENSORBOARD_DIR = "tensorboard"


def _jsonable(x):
    if isinstance(x, np.generic | np.ndarray | jax.Array):
        return np.asarray(x).tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _unique_suffix() -> str:
    """tensorboardX names a file by the second and the host only, so a second writer opened
    within the same second (a quick resume, the figures after training) would truncate the
    first one's file. Nanoseconds, zero-padded, keep the names distinct and in time order
    (TensorBoard reads a directory's files in name order)."""
    return f".{time.time_ns():020d}"


def _summary_writer(logdir: Path, **kwargs):
    """``tensorboardX.SummaryWriter(logdir, **kwargs)``; imported here, so that a run with
    ``TrainConfig(tensorboard=False)`` needs no tensorboardX."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ModuleNotFoundError(
            "TensorBoard logs need the package tensorboardX (pip install tensorboardX); "
            "or turn them off with train.tensorboard=false (TrainConfig(tensorboard=False))",
            name="tensorboardX",
        ) from None
    return SummaryWriter(str(logdir), **kwargs)


def _scalars(record: dict) -> Iterable[tuple[str, float]]:
    """``(tag, value)`` for every numeric entry of a metric line (not its step or split)."""
    split = record.get("split", "train")
    for key, value in record.items():
        if key in ("step", "split") or isinstance(value, bool):
            continue
        if isinstance(value, int | float | np.integer | np.floating) or (
            isinstance(value, np.ndarray | jax.Array) and np.ndim(value) == 0
        ):
            yield f"{split}/{key}", float(value)


class MetricsLog:
    """Append metric lines to ``<workdir>/metrics.jsonl`` and (optionally) TensorBoard.

    Args:
      workdir: the run's directory.
      resume_step: the step the run starts from (0 for a fresh run).
      tensorboard: also write TensorBoard event files into ``<workdir>/tensorboard``.
    """

    def __init__(self, workdir: str | Path, *, resume_step: int, tensorboard: bool = True):
        workdir = Path(workdir)
        self.path = workdir / "metrics.jsonl"
        self.enabled = jax.process_index() == 0
        self._writer = None
        if not self.enabled:
            return
        if self.path.exists():
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_step
            ]
            self.path.write_text("".join(line + "\n" for line in kept))
        if tensorboard:
            self._writer = _summary_writer(
                workdir / TENSORBOARD_DIR,
                purge_step=resume_step + 1 if resume_step else None,
                flush_secs=10,
                filename_suffix=_unique_suffix(),
            )

    def write(self, record: dict) -> None:
        """One line: ``{"step": int, "split": "train" | "test", metric: value, ...}``."""
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record, default=_jsonable) + "\n")
        if self._writer is not None:
            step = int(record["step"])
            for tag, value in _scalars(record):
                self._writer.add_scalar(tag, value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def write_figures(workdir: str | Path, step: int, paths: Iterable[str | Path]) -> None:
    """Add PNG figures to the run's TensorBoard images at ``step`` (tag: the file's stem), so
    sample grids appear next to the curves. Process 0 only."""
    paths = list(paths)
    if jax.process_index() != 0 or not paths:
        return
    from matplotlib import image as mpimg

    with _summary_writer(
        Path(workdir) / TENSORBOARD_DIR, filename_suffix=_unique_suffix()
    ) as writer:
        for path in paths:
            pixels = mpimg.imread(str(path))  # PNG: float in [0, 1], [H, W, 3 or 4]
            if pixels.ndim == 2:
                pixels = pixels[..., None]
            writer.add_image(
                f"figures/{Path(path).stem}", pixels[..., :3], int(step), dataformats="HWC"
            )
