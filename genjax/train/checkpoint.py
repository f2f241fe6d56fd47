"""Orbax checkpoints of the train state, with skip-the-corrupt restore.

A checkpoint holds the whole ``TrainState`` (parameters, optimizer states, step, RNG key,
model state, guard counters) and a small JSON record (the data position and the metrics the
"best" policy ranks by). Orbax writes each checkpoint into a temporary directory and renames
it when complete, so a process killed mid-save leaves no step directory behind, only a
temporary one that ``CheckpointManager`` ignores and cleans up.
"""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as cm

from genjax.train.state import TrainState

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or no usable checkpoint could be read."""


class Checkpointer:
    """Keep the last ``keep`` checkpoints (and the best by ``best_metric``) in ``directory``.

    Args:
      directory: where step directories are written (created if absent).
      keep: how many of the most recent checkpoints to keep.
      best_metric: name of a metric passed to ``save``; the checkpoint with the best value is
        kept in addition to the last ``keep``.
      best_mode: ``"min"`` or ``"max"``.
      asynchronous: write in a background thread (Orbax's async checkpointing); ``wait``
        blocks until the last save is durable.
      read_only: only read (``genjax.load_run``): create, clean up and move nothing.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        keep: int = 3,
        best_metric: str | None = None,
        best_mode: str = "min",
        asynchronous: bool = True,
        read_only: bool = False,
    ):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        if best_mode not in ("min", "max"):
            raise ValueError(f"best_mode must be 'min' or 'max', got {best_mode!r}")
        self.directory = Path(directory).absolute()
        self.best_metric = best_metric
        policies: list[Any] = [cm.LatestN(n=keep)]
        if best_metric is not None:
            policies.append(
                cm.BestN(
                    get_metric_fn=lambda metrics: float(metrics[best_metric]),
                    reverse=best_mode == "min",
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=cm.AnyPreservationPolicy(policies),
            enable_async_checkpointing=asynchronous and not read_only,
            # A reader (load_run next to a live run) must not clean up a save in progress.
            cleanup_tmp_directories=not read_only,
            create=not read_only,
            read_only=read_only,
        )
        self.read_only = read_only
        if not read_only:
            self._warn_half_written()
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )

    def _warn_half_written(self) -> None:
        """Name the saves an interrupted run left half-written (Orbax's temporary
        directories); Orbax discards them when the manager opens, and the run resumes from the
        newest complete checkpoint."""
        if not self.directory.is_dir() or jax.process_index() != 0:
            return
        for path in sorted(self.directory.glob("*.orbax-checkpoint-tmp*")):
            msg = (
                f"discarding half-written checkpoint {path} (a save that was interrupted); "
                "resuming from the newest complete one"
            )
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
            log.warning(msg)

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, state: TrainState, meta: dict, metrics: dict | None = None) -> None:
        """Save a host copy of ``state`` (see ``Engine.fetch_state``) at ``state.step``.

        Refuses (raises ``CheckpointError``) a state holding a non-finite float, so no
        checkpoint with NaN is ever written.
        """
        step = int(state.step)
        for path, leaf in jax.tree_util.tree_leaves_with_path(state):
            arr = np.asarray(leaf)
            if np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
                raise CheckpointError(
                    f"refusing to checkpoint step {step}: non-finite values in "
                    f"{jax.tree_util.keystr(path)}"
                )
        if self.best_metric is not None and (metrics is None or self.best_metric not in metrics):
            metrics = None
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(dict(meta))
            ),
            metrics=metrics,
            force=True,
        )

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()

    def restore_latest(self, template: TrainState) -> tuple[TrainState, dict] | None:
        """The newest checkpoint that reads back whole, or ``None`` if there is none.

        A checkpoint that fails to read (truncated, half-written, corrupt) is skipped with a
        warning naming its directory, and the one before it is tried.
        """
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        for step in reversed(self.steps()):
            try:
                restored = self.manager.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                    ),
                )
                state, meta = restored["state"], restored["meta"]
                if int(state.step) != step:
                    raise CheckpointError(f"holds step {int(state.step)}, not {step}")
                return state, dict(meta)
            except Exception as err:
                msg = (
                    f"skipping unreadable checkpoint {self.directory / str(step)}: "
                    f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                )
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
                log.warning(msg)
                self._quarantine(step)
        return None

    def _quarantine(self, step: int) -> None:
        """Move an unreadable step directory aside (never delete it), so the run can write
        that step again; it stays inspectable under ``<directory>/../corrupt_checkpoints``."""
        src = self.directory / str(step)
        if self.read_only or not src.exists() or jax.process_index() != 0:
            return
        dest_root = self.directory.parent / "corrupt_checkpoints"
        dest_root.mkdir(exist_ok=True)
        dest = dest_root / f"{step}-{time.strftime('%Y%m%dT%H%M%S')}"
        shutil.move(str(src), str(dest))
        self.manager.reload()
