"""The chunked step loop: where compiled chunks of steps end, what is due there, running one.

Steps are grouped into chunks that run in one dispatch (fused by ``lax.scan``). A chunk ends
at the next absolute step that is a multiple of ``fuse_steps``, ``log_every``,
``checkpoint_every`` or ``eval_every`` (or at ``steps``), so the grouping, and with it every
computation, does not depend on where a run was resumed.

The chunks of a run are also a random-access sequence (:class:`ChunkSchedule`), so that the
host batches of the next chunks can be read ahead in background threads
(``genjax.data.HostBatches``, with grain) while the device runs the current one.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from genjax.data.pipeline import Batcher
from genjax.data.prefetch import HostBatches
from genjax.data.sources import StreamingDataset
from genjax.train.state import TrainState
from genjax.train.step import Engine

if TYPE_CHECKING:
    from genjax.train.loop import TrainConfig


def chunk_ends(start: int, config: TrainConfig) -> Iterator[int]:
    """The absolute steps at which compiled chunks end, from ``start`` to ``config.steps``
    (generated as the run goes, so a long run costs no memory up front)."""
    marks = [config.fuse_steps, config.log_every, config.checkpoint_every]
    if config.eval_every:
        marks.append(config.eval_every)
    s = start
    while s < config.steps:
        s = min(min((s // m + 1) * m for m in marks), config.steps)
        yield s


class ChunkSchedule(Sequence):
    """The chunks ``(start, end)`` of a run from step ``start``, as a sequence with random
    access: element ``k`` is ``(e[k-1], e[k])`` for the ends ``e = list(chunk_ends(start,
    config))`` (``e[-1] = start``), computed without listing the ends before it.

    With the marks ``M`` (``fuse_steps``, ``log_every``, ``checkpoint_every`` and, if set,
    ``eval_every``), the number of ends in ``(start, x]`` for ``x < steps`` is by
    inclusion-exclusion ``c(x) = sum over non-empty S of M of (-1)^(|S|+1) (floor(x / l_S) -
    floor(start / l_S))`` with ``l_S = lcm(S)``; end ``k`` is the least ``x`` with ``c(x) > k``
    (a binary search), and the last end is ``steps``. So ``len`` and each element cost
    ``O(2^|M| log steps)``, and a run of ``2**31 - 1`` one-step chunks builds nothing up front.

    Example:
      >>> from genjax.train import TrainConfig
      >>> from genjax.train.chunks import ChunkSchedule
      >>> config = TrainConfig(steps=10, fuse_steps=4, log_every=3, checkpoint_every=10)
      >>> schedule = ChunkSchedule(2, config)
      >>> len(schedule), list(schedule)
      (6, [(2, 3), (3, 4), (4, 6), (6, 8), (8, 9), (9, 10)])
    """

    def __init__(self, start: int, config: TrainConfig):
        marks = {config.fuse_steps, config.log_every, config.checkpoint_every}
        if config.eval_every:
            marks.add(config.eval_every)
        self.start = int(start)
        self.steps = int(config.steps)
        self._terms = [
            ((-1) ** (len(subset) + 1), math.lcm(*subset))
            for size in range(1, len(marks) + 1)
            for subset in itertools.combinations(sorted(marks), size)
        ]
        inner = self._count(self.steps - 1) if self.start < self.steps - 1 else 0
        self._inner = inner  # ends strictly before ``steps``
        self._len = inner + 1 if self.start < self.steps else 0

    def _count(self, x: int) -> int:
        """The number of multiples of any mark in ``(start, x]``."""
        return sum(sign * (x // lcm - self.start // lcm) for sign, lcm in self._terms)

    def _end(self, k: int) -> int:
        if k >= self._inner:
            return self.steps
        lo, hi = self.start + 1, self.steps - 1  # c(hi) > k
        while lo < hi:
            mid = (lo + hi) // 2
            if self._count(mid) > k:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(self._len))]
        k = int(k)
        if k < 0:
            k += self._len
        if not 0 <= k < self._len:
            raise IndexError(f"chunk {k} of a schedule of {self._len}")
        return (self._end(k - 1) if k else self.start, self._end(k))


@dataclasses.dataclass(frozen=True)
class ChunkEnd:
    """What is due when a chunk ends at absolute step ``step``: a train metric line
    (``log``), an evaluation (``evaluation``) and a checkpoint (``checkpoint``). The last
    step of the run is all three."""

    step: int
    log: bool
    evaluation: bool
    checkpoint: bool

    @classmethod
    def at(cls, step: int, config: TrainConfig) -> ChunkEnd:
        last = step == config.steps
        return cls(
            step=step,
            log=step % config.log_every == 0 or last,
            evaluation=last or bool(config.eval_every and step % config.eval_every == 0),
            checkpoint=step % config.checkpoint_every == 0 or last,
        )


def check_resident_data(train_data: Any, config: TrainConfig) -> None:
    """A one-line ``ValueError`` when ``config.data_on_device`` asks to hold a streamed split
    (a ``StreamingDataset``, not in host memory) on the device."""
    if config.data_on_device and isinstance(train_data, StreamingDataset):
        raise ValueError(
            "train.data_on_device=true holds the whole split on the device, but the training "
            f"split of {train_data.name!r} is streamed from disk: set data.streaming=false "
            "(if it fits in memory) or train.data_on_device=false"
        )


def place_resident_data(engine: Engine, train_data: Any, config: TrainConfig) -> dict | None:
    """The training set placed whole on the device(s) when ``config.data_on_device`` (a
    single-process option: ``ValueError`` otherwise), else ``None``."""
    if not config.data_on_device:
        return None
    check_resident_data(train_data, config)
    if jax.process_count() > 1:
        raise ValueError("data_on_device is for single-process runs")
    return engine.place_resident({k: np.asarray(v) for k, v in train_data.features.items()})


class ChunkRunner:
    """Runs the steps ``[start, end)`` of one chunk on the engine, in one dispatch.

    With a resident dataset the batches are gathered on the device inside the scan
    (``Engine.run_on_device``); otherwise the host batcher delivers them: one placed batch
    for a one-step chunk when ``fuse_steps == 1`` (``Engine.step``), else a placed stack of
    the chunk's batches (``Engine.run``). Returns the new state and the chunk's metrics.

    Given ``start`` (the step the run starts or resumes at) and ``config.prefetch > 0``, the
    host batches of the run's chunks from ``start`` on (:class:`ChunkSchedule`) are read
    ahead in background threads (``genjax.data.HostBatches``, grain), ``config.prefetch``
    chunks ahead, so the chunks must then be run in that order. Without ``start`` each chunk
    is read when it is run. The batches are the same either way. ``wait_s`` counts the
    seconds spent waiting for host batches; ``close`` stops the readers (also a context
    manager).
    """

    def __init__(
        self,
        engine: Engine,
        batcher: Batcher,
        config: TrainConfig,
        resident: dict | None,
        *,
        start: int | None = None,
    ):
        self.engine = engine
        self.batcher = batcher
        self.config = config
        self.resident = resident
        self.wait_s = 0.0
        self._host: HostBatches | None = None
        prefetch = getattr(config, "prefetch", 0)
        if resident is None and start is not None and prefetch:
            self._host = HostBatches(self.read, ChunkSchedule(start, config), prefetch=prefetch)

    def _single(self, n: int) -> bool:
        return n == 1 and self.config.fuse_steps == 1

    def read(self, start: int, end: int) -> dict:
        """The host batch of the chunk ``[start, end)``: ``raw_batch(start)`` for a
        one-step chunk when ``fuse_steps == 1``, else ``raw_batches(start, end - start)``."""
        if self._single(end - start):
            return self.batcher.raw_batch(start)
        return self.batcher.raw_batches(start, end - start)

    def __call__(self, state: TrainState, start: int, end: int) -> tuple[TrainState, dict]:
        n = end - start
        engine, config = self.engine, self.config
        if self.resident is not None:
            return engine.run_on_device(
                state, self.resident, num_steps=n, batch_size=config.batch_size, seed=config.seed
            )
        t0 = time.perf_counter()
        raw = self._host.next(start, end) if self._host is not None else self.read(start, end)
        self.wait_s += time.perf_counter() - t0
        if self._single(n):
            return engine.step(state, engine.place_batch(raw))
        return engine.run(state, engine.place_batch(raw, stacked=True))

    def close(self) -> None:
        """Stops reading ahead (cancels the reads not begun, waits for those in flight)."""
        if self._host is not None:
            self._host.close()

    def __enter__(self) -> ChunkRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
