"""Cycle VAE training throughput, per-step and scan-fused, with the cycle on and off.

    python -m benchmarks.bench_cyclevae [--models digits digits_cycle0 mnist28]
        [--batch 128 512] [--steps 50] [--repeats 3] [--out FILE]

Every model is the experiment's own (``python -m experiments.train --model cyclevae --dataset
digits``: the ``RunConfig`` factory, ``--set`` overrides, then the library's
``config.model_config.objective(info).run_task(...)``), so the timed step is the training step,
preprocessing included:

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

import numpy as np

from benchmarks.bench_vae import machine, measure, report
from experiments.models import cyclevae as cyclevae_experiment
from genjax.config import apply_overrides
from genjax.data import load, preprocess
from genjax.models.base import DataInfo

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
    objective = config.model_config.objective(info)
    task = objective.run_task(config.optimizer.build, config.train.steps)
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
    return measure(task, prepare, data, repeats)


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
        **machine(args.steps),
        "results": {
            name: {str(b): bench(name, b, args.steps, args.repeats) for b in args.batch}
            for name in args.models
        },
    }
    report(result, args.out)


if __name__ == "__main__":
    main()
