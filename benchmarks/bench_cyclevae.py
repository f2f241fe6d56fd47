"""Cycle VAE training throughput, per-step and scan-fused, with the cycle on and off.

    python -m benchmarks.bench_cyclevae [--models digits digits_cycle0 mnist28]
        [--batch 128 512] [--steps 50] [--repeats 3] [--out FILE]

Every model is the experiment's own (``python -m experiments.train --model cyclevae --dataset
digits``: the ``RunConfig`` factory, ``--set`` overrides and ``build_task``), so the timed
step is the training step, preprocessing included:

* ``digits``: the default Cycle VAE on 8x8 digits (MLP 64-256-256-2x8, class embeddings,
  the cycle: two encoder and three decoder passes per step);
* ``digits_cycle0``: the same with ``model.cycle_weight=0`` (the plain conditional VAE: one
  encoder and one decoder pass), so the cycle's cost is the ratio of the two;
* ``mnist28``: the default model on MNIST-sized inputs (784 features), synthetic images.

Data: the digits train split for the two ``digits`` entries (real data, 1,442 images, batches
drawn with replacement), uniform random ``uint8`` 28x28 images with random labels for
``mnist28``. For each batch size, after compilation and one warm-up call, ``--repeats`` runs
of ``--steps`` steps are timed:

* ``per_step``: ``Engine.step`` once per step, batches already on the device;
* ``scan_fused``: ``Engine.run``, the ``--steps`` steps in one ``lax.scan``.

Prints one JSON object (training examples/s and steps/s, the median over repeats, their min and
max, the compile time) and writes it to ``--out`` if given.
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

from experiments.config import apply_overrides
from experiments.models import cyclevae as cyclevae_experiment
from experiments.registry import DataInfo
from genjax.data import load, preprocess
from genjax.train import Engine, init_state

#: name -> (--set overrides on the digits config, image shape of the data)
MODELS = {
    "digits": ((), (8, 8, 1)),
    "digits_cycle0": (("model.cycle_weight=0",), (8, 8, 1)),
    "mnist28": ((), (28, 28, 1)),
}


def _setup(name: str, batch: int):
    overrides, image_shape = MODELS[name]
    config = apply_overrides(cyclevae_experiment.SPEC.configs["digits"](), list(overrides))
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, batch_size=batch))
    spec = config.data.preprocess()
    shape = (int(np.prod(image_shape)),) if spec.flatten else image_shape
    info = DataInfo(name=name, shape=shape, num_classes=10, image_shape=image_shape)
    task = cyclevae_experiment.build_task(config, info)
    image_max = 16 if image_shape == (8, 8, 1) else 255

    def prepare(raw, rng):
        return preprocess(raw, rng, spec, image_max)

    return task, prepare, image_shape, image_max


def _data(image_shape, image_max, steps, batch, rng):
    if image_shape == (8, 8, 1):
        train = load("digits", "train")
        idx = rng.integers(0, train.num_examples, size=(steps, batch))
        return {"image": train.features["image"][idx], "label": train.features["label"][idx]}
    return {
        "image": rng.integers(0, image_max + 1, size=(steps, batch, *image_shape), dtype=np.uint8),
        "label": rng.integers(0, 10, size=(steps, batch)).astype(np.int32),
    }


def bench(name: str, batch: int, steps: int, repeats: int) -> dict:
    task, prepare, image_shape, image_max = _setup(name, batch)
    data = _data(image_shape, image_max, steps, batch, np.random.default_rng(0))
    engine = Engine(task, prepare)
    first = {k: v[0] for k, v in data.items()}
    example = prepare(first, jax.random.PRNGKey(0))
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
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--batch", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    result = {
        "benchmark": "cyclevae_training_throughput",
        "models": {name: list(MODELS[name][0]) for name in args.models},
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "machine": platform.machine(),
        "jax": jax.__version__,
        "steps_per_repeat": args.steps,
        # A shared machine's load changes what a CPU measurement means; recorded with it.
        "load_average_at_start": list(os.getloadavg()),
        "results": {
            name: {str(b): bench(name, b, args.steps, args.repeats) for b in args.batch}
            for name in args.models
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
