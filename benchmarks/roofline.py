"""The hardware's own limit: dense-matmul FLOP/s, and the FLOPs XLA counts in a train step.

The *roofline fraction* of a step is ``(FLOPs per step x steps per second) / peak``, where
the FLOPs come from XLA's cost analysis of the compiled step and ``peak`` is the FLOP/s of a
large square matmul of the same dtype, measured in the same process (so a loaded or throttled
machine lowers both). A matmul is the best case for a CPU or an accelerator: compute-bound,
vectorised, cache-blocked by the backend's GEMM. A step that reaches a large fraction of it
does little beyond its matmuls and convolutions; a step far below it is bound by memory
traffic (elementwise work, small matrices) or by per-op overheads.

    python -m benchmarks.roofline [--n 2048] [--repeats 5]

prints the matmul measurement (XLA, and PyTorch's when torch is installed) as JSON.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import timing

#: Side of the square matmul: large enough that the GEMM is compute-bound on a CPU or GPU
#: (2 n^3 = 17 GFLOP), small enough to time in a fraction of a second on two cores.
DEFAULT_N = 2048


class Matmul:
    """A jitted ``[n, n] @ [n, n]`` in ``dtype`` on the default device, ready to time."""

    def __init__(self, n: int = DEFAULT_N, dtype: Any = "float32"):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"matmul size n must be an int >= 1, got {n!r}")
        self.n = n
        self.dtype = jnp.dtype(dtype)
        ka, kb = jax.random.split(jax.random.key(0))
        self._a = jax.random.normal(ka, (n, n), self.dtype)
        self._b = jax.random.normal(kb, (n, n), self.dtype)
        self._fn = jax.jit(jnp.matmul)
        timing.block(self._fn(self._a, self._b))  # compile + warm-up

    @property
    def flops(self) -> float:
        return 2.0 * self.n**3

    def time_once(self) -> float:
        """Seconds for one matmul (dispatch to result)."""
        return timing.timed(lambda: self._fn(self._a, self._b))

    def flops_per_s(self, repeats: int = 5) -> dict[str, float]:
        rates = [self.flops / self.time_once() for _ in range(repeats)]
        summary = timing.median_min_max(rates)
        return {"n": self.n, "dtype": str(self.dtype), "repeats": repeats, **summary}


def torch_matmul_flops_per_s(
    n: int = DEFAULT_N, repeats: int = 5, dtype: str = "float32"
) -> dict[str, Any] | None:
    """The same matmul in PyTorch (for information: which GEMM the machine's best library
    reaches); None when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen, dtype=getattr(torch, dtype))
    b = torch.randn(n, n, generator=gen, dtype=getattr(torch, dtype))
    _, times = timing.repeated(lambda: torch.mm(a, b), repeats)  # the first call warms up
    rates = [2.0 * n**3 / t for t in times]
    return {"n": n, "dtype": dtype, "repeats": repeats, **timing.median_min_max(rates)}


def cost_analysis(fn: Callable, *args: Any) -> dict[str, float]:
    """XLA's cost analysis of ``fn`` (a jitted function, or one to wrap in ``jax.jit``)
    compiled for ``args``: ``flops``,
    ``transcendentals`` and ``bytes accessed`` (floats; 0.0 where the backend reports none),
    plus the compiled executable's memory footprint (``memory_bytes``: arguments + outputs +
    temporaries - aliased) when the backend reports it."""
    jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
    compiled = jitted.lower(*args).compile()
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else {}
    cost = dict(cost or {})
    out = {
        "flops": float(cost.get("flops", 0.0)),
        "transcendentals": float(cost.get("transcendentals", 0.0)),
        "bytes_accessed": float(cost.get("bytes accessed", 0.0)),
    }
    try:
        mem = compiled.memory_analysis()
    except Exception:  # some backends do not implement it
        mem = None
    if mem is not None:
        out["memory_bytes"] = float(
            mem.argument_size_in_bytes
            + mem.output_size_in_bytes
            + mem.temp_size_in_bytes
            - mem.alias_size_in_bytes
        )
    return out


def fraction(flops_per_step: float, steps_per_s: float, peak_flops_per_s: float) -> float:
    """Achieved FLOP/s of a step over the matmul peak."""
    if peak_flops_per_s <= 0:
        raise ValueError(f"peak_flops_per_s must be > 0, got {peak_flops_per_s}")
    return flops_per_step * steps_per_s / peak_flops_per_s


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=DEFAULT_N)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args(argv)
    result = {
        "backend": jax.default_backend(),
        "xla": Matmul(args.n, args.dtype).flops_per_s(args.repeats),
        "torch": torch_matmul_flops_per_s(args.n, args.repeats, args.dtype),
    }
    print(json.dumps(result, indent=2, default=np.asarray))
    return result


if __name__ == "__main__":
    main()
