"""What the benchmarks share to time work: waiting for a result, the seconds of one call, a
first call then timed repeats, the summaries of repeated timings, and the budget that sizes a
timed row.

A timed call ends with :func:`block` on what it returns (``jax.block_until_ready``), so that
JAX's asynchronous dispatch does not hide the work; a call returning ``None`` (or a PyTorch
tensor, which is computed eagerly) blocks on nothing.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax


def block(tree: Any) -> Any:
    """Wait until every JAX array in ``tree`` is computed; returns ``tree``."""
    return jax.block_until_ready(tree)


def timed(fn: Callable[[], Any]) -> float:
    """Seconds of one call ``fn()``, until its result is ready."""
    t0 = time.perf_counter()
    block(fn())
    return time.perf_counter() - t0


def repeated(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """``(first_s, times)``: the seconds of a first call of ``fn`` (compilation and warm-up)
    and of each of ``repeats`` calls after it."""
    first = timed(fn)
    return first, [timed(fn) for _ in range(repeats)]


def seconds_per_step(fns: list[Callable[[], Any]], steps: int) -> list[float]:
    """Seconds per step of each of ``fns``, from one call each (each runs ``steps`` steps)."""
    return [timed(f) / steps for f in fns]


def median_min_max(values: list[float], suffix: str = "") -> dict[str, float]:
    """``{"median<suffix>", "min<suffix>", "max<suffix>"}`` of ``values``."""
    return {
        f"median{suffix}": statistics.median(values),
        f"min{suffix}": min(values),
        f"max{suffix}": max(values),
    }


def throughput(times: list[float], steps: int, batch: int) -> dict[str, float]:
    """Rates of repeats that each ran ``steps`` steps of ``batch`` examples in ``times[r]``
    seconds: ``steps_per_s`` (the median of ``steps / times[r]``), ``examples_per_s``
    (``batch`` times it) and the extreme ``steps_per_s_min``, ``steps_per_s_max``."""
    rates = [steps / t for t in times]
    med = statistics.median(rates)
    return {
        "steps_per_s": med,
        "examples_per_s": med * batch,
        "steps_per_s_min": min(rates),
        "steps_per_s_max": max(rates),
    }


@dataclasses.dataclass(frozen=True)
class Budget:
    """How long the timed repeats of one benchmark row run.

    Attributes:
      repeats: timed repeats of every method (at most; see :meth:`repeats_for`).
      target_s: seconds one repeat of the slowest method should last.
      row_s: seconds all the timed repeats of a row should fit in.
      min_repeats: the fewest repeats :attr:`row_s` may cut a row to.
      step_range: ``(min, max)`` steps per repeat.
    """

    repeats: int = 5
    target_s: float = 0.4
    row_s: float = 45.0
    min_repeats: int = 3
    step_range: tuple[int, int] = (2, 400)

    def steps_for(self, step_s: list[float]) -> int:
        """Steps per repeat: ``ceil(target_s / max(step_s))`` within :attr:`step_range`."""
        low, high = self.step_range
        return int(min(high, max(low, math.ceil(self.target_s / max(step_s)))))

    def repeats_for(self, round_s: float) -> int:
        """Repeats of rounds lasting ``round_s`` each: ``repeats``, cut to fit ``row_s`` but
        never below ``min_repeats``."""
        fit = int(self.row_s // max(round_s, 1e-9))
        return min(self.repeats, max(self.min_repeats, fit))
