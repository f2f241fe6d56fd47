"""Engine throughput: per-step dispatch against scan-fused chunks, for a small MLP.

    python -m benchmarks.bench_engine [--batch 128 512] [--steps 200] [--repeats 5]

Prints one JSON object: for each batch size and loop, steps/s and examples/s (median and
spread over repeats, after compilation and warm-up) and the compile time.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax.train import Engine, Task, init_state


class MLP(nn.Module):
    """784 -> 256 -> 256 -> 784 autoencoder-sized MLP (a typical small model)."""

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Dense(256)(x))
        h = nn.relu(nn.Dense(256)(h))
        return nn.Dense(x.shape[-1])(h)


def _task() -> Task:
    model = MLP()

    def loss(params, batch, rng):
        del rng
        err = jnp.mean(jnp.sum((model.apply(params, batch["x"]) - batch["x"]) ** 2, -1))
        return err, {}

    return Task.from_loss(lambda rng, b: model.init(rng, b["x"]), loss, optax.adam(1e-3))


def _block(tree):
    jax.block_until_ready(tree)


def bench(batch: int, steps: int, repeats: int) -> dict:
    task = _task()
    rng = np.random.default_rng(0)
    xs = rng.random((steps, batch, 784), dtype=np.float32)
    engine = Engine(task)
    host = jax.tree.map(np.asarray, init_state(task, jax.random.PRNGKey(0), {"x": xs[0]}))
    out = {}

    # Per step: one dispatch per step, batches already on the device.
    batches = [engine.place_batch({"x": x}) for x in xs]
    t0 = time.perf_counter()
    state, m = engine.step(engine.place_state(host), batches[0])
    _block(m)
    compile_step = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for b in batches:
            state, m = engine.step(state, b)
        _block(state.params)
        times.append(time.perf_counter() - t0)
    out["per_step"] = _summary(times, steps, batch, compile_step)

    stack = engine.place_batch({"x": xs}, stacked=True)
    t0 = time.perf_counter()
    state, m = engine.run(engine.place_state(host), stack)
    _block(m)
    compile_run = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        state, m = engine.run(state, stack)
        _block(state.params)
        times.append(time.perf_counter() - t0)
    out["scan_fused"] = _summary(times, steps, batch, compile_run)
    return out


def _summary(times, steps, batch, compile_s):
    rates = [steps / t for t in times]
    med = statistics.median(rates)
    return {
        "steps_per_s": med,
        "examples_per_s": med * batch,
        "steps_per_s_min": min(rates),
        "steps_per_s_max": max(rates),
        "compile_plus_first_s": compile_s,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    result = {
        "benchmark": "engine_mlp_784_256_256_784_adam",
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "machine": platform.machine(),
        "jax": jax.__version__,
        "steps_per_repeat": args.steps,
        "results": {str(b): bench(b, args.steps, args.repeats) for b in args.batch},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
