"""VAE training throughput: the MLP and the convolutional VAE, per-step and scan-fused.

    python -m benchmarks.bench_vae [--models mlp conv] [--batch 128 512] [--steps 20]
        [--repeats 3] [--out FILE]

Both models are built the way ``python -m experiments.train --model vae --dataset mnist``
builds them (the experiment's ``RunConfig`` factory, then the library's
``config.model_config.objective(info).run_task(...)``, so the timed step is the training step,
dynamic binarisation included):

* ``mlp``: the IWAE paper's 784-200-200-50 tanh VAE (the ``mnist`` config);
* ``conv``: ``--set model.architecture=conv --set model.hidden=32,64 --set model.activation=relu
  --set data.flatten=false``: two stride-2 4x4 convolutions (28 -> 14 -> 7), a 50-d latent,
  and the mirrored transposed convolutions.

Data: synthetic uint8 images of MNIST's shape (28 x 28 x 1) from a fixed seed (throughput does
not depend on pixel values; MNIST is not available offline). For each batch size it times,
after compilation and one warm-up call, ``--repeats`` runs of ``--steps`` steps:

* ``per_step``: ``Engine.step`` once per step, batches already on the device;
* ``scan_fused``: ``Engine.run``, the ``--steps`` steps in one ``lax.scan``.

Prints one JSON object (examples/s and steps/s as the median over repeats, their min and max,
and the compile time) and writes it to ``--out`` if given.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time

import jax
import numpy as np

from experiments.models import vae as vae_experiment
from genjax.config import apply_overrides
from genjax.data import preprocess
from genjax.models.base import DataInfo
from genjax.train import Engine, init_state

MODELS = {
    "mlp": (),
    "conv": (
        "model.architecture=conv",
        "model.hidden=32,64",
        "model.activation=relu",
        "data.flatten=false",
    ),
}
IMAGE_SHAPE = (28, 28, 1)


def _setup(name: str, batch: int):
    config = apply_overrides(vae_experiment.SPEC.configs["mnist"](), list(MODELS[name]))
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, batch_size=batch))
    spec = config.data.preprocess()
    shape = (int(np.prod(IMAGE_SHAPE)),) if spec.flatten else IMAGE_SHAPE
    info = DataInfo(name="mnist", shape=shape, num_classes=10, image_shape=IMAGE_SHAPE)
    objective = config.model_config.objective(info)
    task = objective.run_task(config.optimizer.build, config.train.steps)

    def prepare(raw, rng):
        return preprocess(raw, rng, spec, 255)

    return config, task, prepare


def bench(name: str, batch: int, steps: int, repeats: int) -> dict:
    _, task, prepare = _setup(name, batch)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(steps, batch, *IMAGE_SHAPE), dtype=np.uint8)
    return measure(task, prepare, {"image": images}, repeats)


def measure(task, prepare, data: dict, repeats: int) -> dict:
    """Times ``task``'s step on ``data`` (raw batches stacked, ``[steps, batch, ...]`` each),
    per step and scan-fused (see the module doc); also the last fused step's loss."""
    steps, batch = next(iter(data.values())).shape[:2]
    engine = Engine(task, prepare)
    example = prepare({k: v[0] for k, v in data.items()}, jax.random.PRNGKey(0))
    host = jax.tree.map(np.asarray, init_state(task, jax.random.PRNGKey(0), example))
    out = {}

    batches = [engine.place_batch({k: v[i] for k, v in data.items()}) for i in range(steps)]
    t0 = time.perf_counter()
    state, metrics = engine.step(engine.place_state(host), batches[0])
    jax.block_until_ready(metrics)
    compile_step = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for b in batches:
            state, metrics = engine.step(state, b)
        jax.block_until_ready(state.params)
        times.append(time.perf_counter() - t0)
    out["per_step"] = _summary(times, steps, batch, compile_step)

    stack = engine.place_batch(data, stacked=True)
    t0 = time.perf_counter()
    state, metrics = engine.run(engine.place_state(host), stack)
    jax.block_until_ready(metrics)
    compile_run = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        state, metrics = engine.run(state, stack)
        jax.block_until_ready(state.params)
        times.append(time.perf_counter() - t0)
    out["scan_fused"] = _summary(times, steps, batch, compile_run)
    out["final_loss"] = float(np.asarray(metrics["loss"])[-1])
    return out


def _summary(times, steps, batch, compile_s) -> dict:
    rates = [steps / t for t in times]
    med = statistics.median(rates)
    return {
        "examples_per_s": med * batch,
        "steps_per_s": med,
        "examples_per_s_min": min(rates) * batch,
        "examples_per_s_max": max(rates) * batch,
        "compile_plus_first_s": compile_s,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["mlp", "conv"])
    parser.add_argument("--batch", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    result = {
        "benchmark": "vae_training_throughput",
        "data": "synthetic uint8 28x28x1, dynamic binarisation inside the step",
        "models": {name: list(MODELS[name]) for name in args.models},
        **machine(args.steps),
        "results": {
            name: {str(b): bench(name, b, args.steps, args.repeats) for b in args.batch}
            for name in args.models
        },
    }
    report(result, args.out)


def machine(steps: int) -> dict:
    """Where and how the benchmark ran (beside its results in the JSON)."""
    return {
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "machine": platform.machine(),
        "jax": jax.__version__,
        "steps_per_repeat": steps,
        # A shared machine's load changes what a CPU measurement means; recorded with it.
        "load_average_at_start": list(os.getloadavg()),
    }


def report(result: dict, out: str) -> None:
    """Prints the result as JSON and writes it to ``out`` if given."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
