"""Host batches of the next chunks of steps, read in background threads while the device runs.

A host-fed run (the split is not resident on the device) needs, for each compiled chunk of
steps ``[start, end)``, the stacked raw rows ``Batcher.raw_batches(start, end - start)``.
:class:`HostBatches` reads them ahead with grain: the run's chunks are a random-access
sequence (``genjax.train.chunks.ChunkSchedule``), ``grain.MapDataset.source(chunks)`` maps each
chunk to its host batch, and ``.to_iter_dataset(grain.ReadOptions(num_threads,
prefetch_buffer_size))`` reads up to ``prefetch`` chunks ahead in a thread pool, returning them
in order. Each element is exactly ``read(start, end)``, the function of ``(seed, step)`` the
loop would call itself, so a run reads the same batches with prefetch on or off, and from any
resume step (the schedule starts there).

Threads rather than processes: the rows are gathered by NumPy or read by TFDS's array_record
source, which release the GIL for the copies and the file reads, and a batch is then handed to
the device without being pickled.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["HostBatches"]

#: At most this many reader threads, whatever ``prefetch`` is.
MAX_THREADS = 8


class HostBatches:
    """The host batches of a run's chunks, in order, read ahead in background threads.

    Args:
      read: ``read(start, end) -> {key: array}``, the host batch of the steps ``[start, end)``
        (e.g. ``lambda s, e: batcher.raw_batches(s, e - s)``). Called from reader threads, so
        it must be thread-safe (``Batcher`` and both dataset kinds are).
      chunks: the chunks ``(start, end)`` in the order the loop runs them, a sequence with
        ``len`` and random access (``ChunkSchedule``).
      prefetch: how many chunks are read ahead (grain's ``prefetch_buffer_size``); 0 reads
        each chunk in the calling thread when it is asked for.
      num_threads: reader threads (grain's ``num_threads``); default
        ``min(prefetch, MAX_THREADS)``.

    ``next(start, end)`` returns ``read(start, end)`` for the next chunk of ``chunks``, which
    must be ``(start, end)`` (a ``RuntimeError`` otherwise: the loop and the schedule
    disagree). ``wait_s`` is the time the caller spent blocked in ``next``. ``close`` cancels
    the reads not yet begun and waits for those in flight; it is also a context manager.
    Without grain (or array_record, which grain imports), the chunks are read in the calling
    thread, with one warning.

    Example:
      >>> from genjax.data import HostBatches
      >>> chunks = [(0, 4), (4, 8), (8, 10)]
      >>> with HostBatches(lambda s, e: list(range(s, e)), chunks, prefetch=2) as batches:
      ...     [batches.next(s, e) for s, e in chunks]
      [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    """

    def __init__(
        self,
        read: Callable[[int, int], Any],
        chunks: Sequence[tuple[int, int]],
        *,
        prefetch: int = 2,
        num_threads: int | None = None,
    ):
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise ValueError(f"prefetch must be an integer >= 0, got {prefetch!r}")
        threads = min(prefetch, MAX_THREADS) if num_threads is None else num_threads
        if prefetch and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"num_threads must be an integer >= 1, got {num_threads!r}")
        self._read = read
        self._chunks = chunks
        self._position = 0
        self._closed = False
        self._in_flight = 0
        self._idle = threading.Condition()
        self.wait_s = 0.0
        self._iterator = None
        if prefetch and len(chunks):
            self._iterator = _grain_iterator(self._tracked_read, chunks, threads, prefetch)
        if self._iterator is not None:
            self._iterator.start_prefetch()  # the first chunks are read during compilation

    def _tracked_read(self, chunk: tuple[int, int]):
        """``(chunk, read(*chunk))`` in a reader thread; nothing once closed."""
        with self._idle:
            if self._closed:
                return chunk, None
            self._in_flight += 1
        try:
            return chunk, self._read(*chunk)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def next(self, start: int, end: int) -> Any:
        """The host batch of the chunk ``[start, end)``, the next one of the schedule."""
        if self._closed:
            raise RuntimeError("HostBatches.next after close")
        t0 = time.perf_counter()
        try:
            if self._position >= len(self._chunks):
                raise RuntimeError(
                    f"chunk [{start}, {end}) asked for after the last of {len(self._chunks)}"
                )
            expected = tuple(int(v) for v in self._chunks[self._position])
            if expected != (int(start), int(end)):
                raise RuntimeError(
                    f"chunk [{start}, {end}) asked for where the schedule has "
                    f"[{expected[0]}, {expected[1]})"
                )
            self._position += 1
            if self._iterator is None:
                return self._read(start, end)
            chunk, batch = next(self._iterator)
            assert tuple(chunk) == expected, (chunk, expected)
            return batch
        finally:
            self.wait_s += time.perf_counter() - t0

    def close(self, timeout: float = 60.0) -> None:
        """Stops reading ahead: cancels the reads not begun, waits for those in flight."""
        if self._closed:
            return
        with self._idle:
            self._closed = True
        if self._iterator is not None:
            self._iterator.close()
            with self._idle:
                self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def __enter__(self) -> HostBatches:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _grain_iterator(read, chunks, num_threads: int, prefetch: int):
    """grain's thread-prefetching iterator over ``read(chunk)`` for each chunk, in order;
    None (and a warning) where grain cannot be imported."""
    try:
        import grain
    except ImportError as error:
        warnings.warn(
            f"grain is not importable ({error}); host batches are read without prefetch",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
    dataset = grain.MapDataset.source(chunks).map(read)
    return iter(dataset.to_iter_dataset(options))
