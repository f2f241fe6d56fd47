"""A convolution's gradient step dispatched alone vs inside ``lax.scan``, with
``lax.conv_general_dilated`` and with ``genjax.nn.conv_general_dilated``.

    python -m benchmarks.bench_conv [--batch 128] [--steps 5] [--repeats 3]

One stride-2 3x3 convolution ``[B, 28, 28, 32] -> [B, 14, 14, 64]`` (NHWC / HWIO), a
gradient-descent step on its kernel for ``sum(y^2)`` (``first-order``) and with an R1-style
penalty, the squared norm of the input gradient, added (``second-order``: a gradient of a
gradient). ``per-call`` dispatches one jitted step at a time; ``scan`` runs ``steps`` of them
in one ``lax.scan`` (a ``while`` loop), as :meth:`genjax.train.Engine.run` does. Prints JSON:
milliseconds per step, median of ``repeats``. On XLA:CPU the scan column of plain ``lax``
shows the slowdown ``genjax.nn.convolution`` exists to avoid.
"""

from __future__ import annotations

import argparse
import json
import statistics

import jax
import jax.numpy as jnp
from jax import lax

from benchmarks import timing
from genjax.nn import conv_general_dilated

DN = ("NHWC", "HWIO", "NHWC")


def _loss(conv, second_order: bool):
    def value(w, x):
        return jnp.sum(conv(x, w, (2, 2), "SAME", dimension_numbers=DN) ** 2)

    if not second_order:
        return value

    def with_penalty(w, x):
        gx = jax.grad(lambda x: jnp.sum(conv(x, w, (2, 2), "SAME", dimension_numbers=DN)))(x)
        return value(w, x) + jnp.sum(gx**2)

    return with_penalty


def measure(conv, second_order: bool, batch: int, steps: int, repeats: int) -> dict:
    loss = _loss(conv, second_order)

    def step(w, x):
        return w - 1e-6 * jax.grad(loss)(w, x)

    xs = jax.random.normal(jax.random.PRNGKey(0), (steps, batch, 28, 28, 32))
    w0 = 0.1 * jax.random.normal(jax.random.PRNGKey(1), (3, 3, 32, 64))
    one = jax.jit(step)
    fused = jax.jit(lambda w, xs: lax.scan(lambda w, x: (step(w, x), None), w, xs)[0])
    batches = [xs[i] for i in range(steps)]

    def per_call():
        w = w0
        for x in batches:
            w = one(w, x)
        return w

    out = {}
    for name, run in (("per_call", per_call), ("scan", lambda: fused(w0, xs))):
        _, times = timing.repeated(run, repeats)  # the first call compiles and warms up
        out[f"{name}_ms_per_step"] = 1e3 * statistics.median(times) / steps
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if min(args.batch, args.steps, args.repeats) < 1:
        parser.error("--batch, --steps and --repeats must be >= 1")
    result = {"backend": jax.default_backend(), "batch": args.batch, "rows": []}
    for order in ("first-order", "second-order"):
        for label, conv in (("lax", lax.conv_general_dilated), ("genjax", conv_general_dilated)):
            row = measure(conv, order == "second-order", args.batch, args.steps, args.repeats)
            result["rows"].append({"gradient": order, "conv": label, **row})
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
