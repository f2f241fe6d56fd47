"""Argument checks shared by the library's public functions (one place, one wording).

Each raises ``ValueError`` with ``"<label> must be ..., got <value>"``; callers put the
function or class and the argument into ``label`` (``"VQVAELoss: beta"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np


def is_int(value: Any) -> bool:
    """A Python or NumPy integer, not a bool."""
    return not isinstance(value, bool) and isinstance(value, int | np.integer)


def is_concrete(a: Any) -> bool:
    """Not a tracer: its values can be read (outside ``jit``, ``grad``, ``vmap``)."""
    return not isinstance(a, jax.core.Tracer)


def check_int(label: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an ``int``; it must be an integer ``>= minimum``."""
    if not is_int(value) or value < minimum:
        raise ValueError(f"{label} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_shape(label: str, shape: Any, *, hashable: bool = False) -> tuple[int, ...]:
    """``shape`` as a tuple of ints: a non-empty sequence of ints ``>= 1``, and a tuple when
    ``hashable`` (a field of a Flax module, which must hash)."""
    kinds = tuple if hashable else Sequence
    if (
        isinstance(shape, str)
        or not isinstance(shape, kinds)
        or not shape
        or not all(is_int(s) and s >= 1 for s in shape)
    ):
        kind = "tuple (hashable, not a list)" if hashable else "tuple"
        raise ValueError(f"{label} must be a non-empty {kind} of ints >= 1, got {shape!r}")
    return tuple(int(s) for s in shape)


def check_choice(label: str, value: Any, choices: Sequence[str]) -> str:
    """``value``, which must be one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{label} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_float(label: str, value: Any, low: float, high: float, *, high_open: bool) -> float:
    """``value`` as a finite ``float`` in ``[low, high]`` (``[low, high)`` if ``high_open``)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{label} must be a number, got {value!r}") from None
    if not (math.isfinite(v) and v >= low and (v < high if high_open else v <= high)):
        interval = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
        raise ValueError(f"{label} must be a finite number in {interval}, got {value!r}")
    return v
