"""Orbax checkpoints of the train state: integrity-checked, and never confused with another run.

A checkpoint holds the whole ``TrainState`` (parameters, optimizer states, step, RNG key,
model state, guard counters) and a small JSON record (the data position, the metrics the
"best" policy ranks by, and a SHA-256 digest of the state). Orbax writes each checkpoint into
a temporary directory and renames it when complete, so a process killed mid-save leaves no
step directory behind, only a temporary one that ``CheckpointManager`` ignores and cleans up.

Reading a checkpoint back distinguishes three cases:

* **another model's checkpoint** (the saved tree has other leaves, shapes or dtypes than the
  state this run would train): ``ResumeError`` naming the first leaf that differs; nothing
  is moved, because the checkpoint is valid, just not this model's;
* **a damaged checkpoint** (a file truncated or garbled, unreadable metadata, a digest that
  does not match the bytes read back): skipped with one warning naming its directory and
  moved aside to ``<workdir>/corrupt_checkpoints/`` (never deleted), and the one before it
  is tried;
* a checkpoint that reads back whole and matches: restored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
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

#: Key of the state digest inside a checkpoint's JSON record (stripped when it is read back).
DIGEST_KEY = "state_sha256"
#: The file list (size and SHA-256 of every file) written into a step directory once Orbax
#: has committed it; a restore checks it first, so a truncated or garbled file is found
#: without handing it to Orbax.
MANIFEST = "genjax_files.json"


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or no usable checkpoint could be read."""


class ResumeError(RuntimeError):
    """The checkpoints in a work directory belong to another model or another data setup."""


def _flat(tree: Any) -> dict[str, Any]:
    """``{"params/model/params/Dense_0/kernel": leaf, ...}`` in Orbax's own key naming, so a
    state and the metadata Orbax saved for it flatten to the same keys."""
    serialized = ocp.tree.serialize_tree(tree, keep_empty_nodes=False)
    flat = ocp.tree.to_flat_dict(serialized)
    return {"/".join(str(k) for k in key): v for key, v in flat.items()}


def state_digest(state: Any) -> str:
    """SHA-256 over every leaf's name, dtype, shape and bytes (host arrays), in key order."""
    h = hashlib.sha256()
    for name, leaf in sorted(_flat(state).items()):
        arr = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _describe(shape, dtype) -> str:
    return f"{np.dtype(dtype).name}[{','.join(str(d) for d in shape)}]"


def structure_mismatch(saved: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    """The first difference between two flat trees of ``.shape``/``.dtype`` leaves, in words,
    or ``None`` when they have the same keys, shapes and dtypes."""
    problems = []
    # Parameters first: they are what a user recognises ("the decoder's kernel").
    order = {"params": 0, "model_state": 1, "opt_state": 2}
    for name in sorted(set(saved) | set(wanted), key=lambda n: (order.get(n.split("/")[0], 3), n)):
        if name not in saved:
            problems.append(f"{name} is in this model but not in the checkpoint")
        elif name not in wanted:
            problems.append(f"{name} is in the checkpoint but not in this model")
        else:
            a, b = saved[name], wanted[name]
            if tuple(a.shape) != tuple(b.shape) or np.dtype(a.dtype) != np.dtype(b.dtype):
                problems.append(
                    f"{name} is {_describe(a.shape, a.dtype)} in the checkpoint and "
                    f"{_describe(b.shape, b.dtype)} in this model"
                )
    if not problems:
        return None
    more = f" (and {len(problems) - 1} more differences)" if len(problems) > 1 else ""
    return problems[0] + more


class _DropMessages(logging.Filter):
    def __init__(self, *fragments: str):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(f in text for f in self.fragments)


@contextlib.contextmanager
def _quiet_absl(*fragments: str):
    """Drop Orbax's absl log lines containing ``fragments`` (notices about options we chose
    on purpose, such as a read-only directory) for the duration of the block."""
    logger = logging.getLogger("absl")
    filt = _DropMessages(*fragments)
    logger.addFilter(filt)
    try:
        yield
    finally:
        logger.removeFilter(filt)


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
            # Orbax would set this itself for a reader, with a warning.
            save_interval_steps=0 if read_only else 1,
        )
        self.read_only = read_only
        self._unsealed: list[int] = []  # saved by this process, manifest not yet written
        if not read_only:
            self._warn_half_written()
        with _quiet_absl("Given directory is read only"):
            self.manager = ocp.CheckpointManager(
                self.directory,
                options=options,
                item_handlers={
                    "state": ocp.StandardCheckpointHandler(),
                    "meta": ocp.JsonCheckpointHandler(),
                },
            )

    def _warn_half_written(self) -> None:
        """Name the saves an interrupted run left half-written (Orbax's temporary
        directories); Orbax discards them when the manager opens, and the run resumes from the
        newest complete checkpoint."""
        if not self.directory.is_dir() or jax.process_index() != 0:
            return
        for path in sorted(self.directory.glob("*.orbax-checkpoint-tmp*")):
            warnings.warn(
                f"discarding half-written checkpoint {path} (a save that was interrupted); "
                "resuming from the newest complete one",
                RuntimeWarning,
                stacklevel=3,
            )

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, state: TrainState, meta: dict, metrics: dict | None = None) -> None:
        """Save a host copy of ``state`` (see ``Engine.fetch_state``) at ``state.step``.

        Refuses (raises ``CheckpointError``) a state holding a non-finite float, so no
        checkpoint with NaN is ever written. The JSON record gets the state's digest, which
        every restore checks.
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
        record = {**meta, DIGEST_KEY: state_digest(state)}
        self.wait()  # the previous save is committed: seal it before starting this one
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(record)
            ),
            metrics=metrics,
            force=True,
        )
        self._unsealed.append(step)

    def wait(self) -> None:
        """Block until the last save is committed, and write its file list."""
        self.manager.wait_until_finished()
        self._seal()

    def close(self) -> None:
        self.wait()
        self.manager.close()

    def _seal(self) -> None:
        """Write the file list of each committed step this process saved (process 0 only;
        a step the keep policy already removed has nothing to seal)."""
        unsealed, self._unsealed = self._unsealed, []
        if self.read_only or jax.process_index() != 0:
            return
        for step in unsealed:
            step_dir = self.directory / str(step)
            if not step_dir.is_dir():
                continue
            files = {
                str(p.relative_to(step_dir)): {"size": p.stat().st_size, "sha256": _file_sha256(p)}
                for p in sorted(step_dir.rglob("*"))
                if p.is_file() and p.name != MANIFEST
            }
            tmp = step_dir / f".{MANIFEST}.tmp"
            tmp.write_text(json.dumps(files, indent=1, sort_keys=True) + "\n")
            os.replace(tmp, step_dir / MANIFEST)

    def _check_files(self, step: int) -> None:
        """Compare the step's files with its file list; raises ``CheckpointError`` naming the
        first file that is missing, of another size or of other content. A step without a
        list (written before lists existed, or killed between commit and list) is left to
        Orbax and the state digest."""
        step_dir = self.directory / str(step)
        listing = step_dir / MANIFEST
        if not listing.is_file():
            return
        try:
            files = json.loads(listing.read_text())
        except (OSError, ValueError) as err:
            raise CheckpointError(f"its file list {listing} is unreadable: {err}") from None
        for name, expected in files.items():
            path = step_dir / name
            if not path.is_file():
                raise CheckpointError(f"{path} is missing")
            size = path.stat().st_size
            if size != expected["size"]:
                raise CheckpointError(f"{path} has {size} bytes, {expected['size']} were written")
            if _file_sha256(path) != expected["sha256"]:
                raise CheckpointError(f"{path} does not hold the bytes that were written")

    def _saved_structure(self, step: int) -> dict[str, Any]:
        """The leaves (shape and dtype) the checkpoint of ``step`` holds, from its metadata."""
        metadata = self.manager.item_metadata(step)["state"]
        if metadata is None:
            raise CheckpointError("its state metadata is missing")
        return _flat(metadata)

    def _read(self, step: int, abstract: Any | None) -> tuple[Any, dict]:
        """Restore ``step`` (into ``abstract``'s structure, or as saved) and check its digest;
        raises on any damage."""
        restore = ocp.args.StandardRestore(abstract)
        restored = self.manager.restore(
            step, args=ocp.args.Composite(state=restore, meta=ocp.args.JsonRestore())
        )
        state, meta = restored["state"], dict(restored["meta"] or {})
        saved_step = int(np.asarray(_flat(state)["step"]))
        if saved_step != step:
            raise CheckpointError(f"holds step {saved_step}, not {step}")
        digest = meta.pop(DIGEST_KEY, None)
        if digest is not None and digest != state_digest(state):
            raise CheckpointError("the state read back does not match the digest saved with it")
        return state, meta

    def _skip(self, step: int, err: BaseException) -> None:
        first_line = str(err).splitlines()[0] if str(err) else ""
        warnings.warn(
            f"skipping unreadable checkpoint {self.directory / str(step)}: "
            f"{type(err).__name__}: {first_line}",
            RuntimeWarning,
            stacklevel=3,
        )
        self._quarantine(step)

    def restore_latest(self, template: TrainState) -> tuple[TrainState, dict] | None:
        """The newest checkpoint that reads back whole, or ``None`` if there is none.

        Raises ``ResumeError`` when the newest checkpoint that has readable metadata holds a
        different tree (other leaves, shapes or dtypes) than ``template``: it belongs to
        another model, and is left where it is. A damaged checkpoint is skipped with a warning
        naming its directory (and moved aside unless read-only), and the one before it is
        tried.
        """
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        wanted = _flat(abstract)
        for step in reversed(self.steps()):
            try:
                self._check_files(step)
                saved = self._saved_structure(step)
            except Exception as err:
                self._skip(step, err)
                continue
            problem = structure_mismatch(saved, wanted)
            if problem is not None:
                raise ResumeError(
                    f"checkpoint {self.directory / str(step)} holds a different model: {problem}"
                )
            try:
                return self._read(step, abstract)
            except Exception as err:
                self._skip(step, err)
        return None

    def newest_readable_step(self) -> int | None:
        """The step of the newest checkpoint that reads back whole and matches its digest
        (read as saved, without a template), or ``None``. Damaged ones are skipped with a
        warning, and moved aside unless read-only."""
        for step in reversed(self.steps()):
            try:
                self._check_files(step)
                self._read(step, None)
                return step
            except Exception as err:
                self._skip(step, err)
        return None

    def _quarantine(self, step: int) -> None:
        """Move an unreadable step directory aside (never delete it), so the run can write
        that step again; it stays inspectable under ``<directory>/../corrupt_checkpoints``."""
        src = self.directory / str(step)
        if self.read_only or not src.exists() or jax.process_index() != 0:
            return
        dest_root = self.directory.parent / "corrupt_checkpoints"
        dest_root.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        dest = dest_root / f"{step}-{stamp}"
        n = 1
        while dest.exists():  # the same step moved aside twice within a second
            n += 1
            dest = dest_root / f"{step}-{stamp}-{n}"
        shutil.move(str(src), str(dest))
        self.manager.reload()
