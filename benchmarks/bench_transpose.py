"""What the conv models' relayout transposes cost on XLA:CPU, and whether the way XLA emits
them matters: the kernel-gradient relayout of one activation, NHWC -> CHWN, inside
``lax.scan``, written four ways.

    python -m benchmarks.bench_transpose [--shape 512 28 28 32] [--steps 5] [--repeats 3]

Each scan step computes ``a = relu(x + b)`` and stores one ``[N, H, W, C]``-sized result per
step (the scan's stacked output, so nothing can be skipped):

* ``write``: ``a`` itself, no transpose (the floor: the elementwise work and the store);
* ``fused``: ``transpose(a, (3, 1, 2, 0))``, XLA free to fuse it with the ReLU (as in the
  models' backward pass);
* ``separate``: the same with ``a`` materialised first (``lax.optimization_barrier``);
* ``tiled``: through blocks of 16 examples x 8 channels, transposed block-wise;
* ``staged``: as ``[N, HW, C] -> [HW, N, C] -> [HW, C, N] -> [C, HW, N]``, each step
  materialised.

Prints JSON: milliseconds per scan step, median (and min, max) of ``repeats``, and each way's
milliseconds over ``write``'s.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from benchmarks import timing


def _ways(n: int, h: int, w: int, c: int) -> dict[str, Callable]:
    def relu(x, b):
        return jnp.maximum(x + b, 0.0)

    def write(x, b):
        return relu(x, b)

    def fused(x, b):
        return jnp.transpose(relu(x, b), (3, 1, 2, 0))

    def separate(x, b):
        return jnp.transpose(lax.optimization_barrier(relu(x, b)), (3, 1, 2, 0))

    def tiled(x, b):
        a = lax.optimization_barrier(relu(x, b)).reshape(n // 16, 16, h, w, c // 8, 8)
        a = jnp.transpose(a, (4, 5, 2, 3, 0, 1))  # c1 c0 h w n1 n0
        return a.reshape(c, h, w, n)

    def staged(x, b):
        a = lax.optimization_barrier(relu(x, b)).reshape(n, h * w, c)
        a = lax.optimization_barrier(jnp.transpose(a, (1, 0, 2)))  # [HW, N, C]
        a = lax.optimization_barrier(jnp.transpose(a, (0, 2, 1)))  # [HW, C, N]
        return jnp.transpose(a, (1, 0, 2)).reshape(c, h, w, n)

    return {"write": write, "fused": fused, "separate": separate, "tiled": tiled, "staged": staged}


def bench(shape: tuple[int, int, int, int], steps: int, repeats: int) -> dict:
    n, h, w, c = shape
    if n % 16 or c % 8:
        raise SystemExit(f"bench_transpose: --shape needs N % 16 == 0 and C % 8 == 0, got {shape}")
    x = jax.random.normal(jax.random.key(0), shape, jnp.float32)
    b = jnp.linspace(-0.5, 0.5, c, dtype=jnp.float32)
    reference = None
    out: dict[str, dict] = {}
    for name, way in _ways(n, h, w, c).items():

        def body(carry, _, way=way):
            return carry * 1.0001, way(carry, b)

        run = jax.jit(lambda x0, body=body: lax.scan(body, x0, None, length=steps)[1])
        result = timing.block(run(x))  # compile and warm up
        if name != "write":  # every transposing way computes the same array
            reference = result if reference is None else reference
            if not bool(jnp.array_equal(result, reference)):
                raise RuntimeError(f"bench_transpose: {name} computed a different array")
        del result
        times = [timing.timed(lambda run=run: run(x)) * 1e3 / steps for _ in range(repeats)]
        out[name] = timing.median_min_max(times, "_ms")
    floor = out["write"]["median_ms"]
    for row in out.values():
        row["over_write_ms"] = row["median_ms"] - floor
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=4, default=[512, 28, 28, 32])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.repeats < 1 or min(args.shape) < 1:
        parser.error("--steps, --repeats and every --shape entry must be >= 1")
    shape = tuple(args.shape)
    result = {
        "benchmark": "transpose",
        "shape": list(shape),
        "megabytes": 4 * shape[0] * shape[1] * shape[2] * shape[3] / 1e6,
        "steps": args.steps,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "results": bench(shape, args.steps, args.repeats),
    }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
