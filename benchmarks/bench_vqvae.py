"""VQ-VAE throughput: the convolutional VQ-VAE's training step, and the nearest-code search.

    python -m benchmarks.bench_vqvae [--rules plain ema ema_restart] [--batch 128 512]
        [--num-codes 512] [--steps 20] [--repeats 3] [--search-batch 128 512] [--out FILE]

The model is built the way ``python -m experiments.train --model vqvae --dataset mnist``
builds its VQ-VAE phase (the experiment's ``mnist`` ``RunConfig`` and the library's
``VQVAEConfig.objective``, with ``prior_steps=0`` for the VQ-VAE alone: 28 x 28 x 1
-> two stride-2 convolutions of 64 channels, 2 residual blocks -> a 7 x 7 map of 32-d codes,
``K = --num-codes``), for each codebook configuration (``plain``: codebook loss; ``ema``;
``ema_restart``: EMA and dead-code restart with its reservoir). Data: synthetic uint8 images
of MNIST's shape from a fixed seed (MNIST is not available offline; throughput does not depend
on pixel values). For each batch size, after compilation and a warm-up call, ``--repeats``
runs of ``--steps`` steps fused in one ``lax.scan`` (``Engine.run``) are timed.

The nearest-code search alone: for ``B`` images' code maps (``N = 49 B`` vectors of ``D = 32``)
and ``K`` codes, :func:`genjax.losses.vector_quantize` (one ``[N, D] x [D, K]`` matmul) against
a naive ``argmin_k sum_d (z[:, None, :] - e[None, :, :])^2`` over the ``[N, K, D]`` broadcast,
both jitted; the two must pick the same codes (checked, up to ties in float32).

Prints one JSON object (examples/s and steps/s medians with min and max, compile times,
search times in milliseconds) and writes it to ``--out`` if given.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import timing
from experiments.models import vqvae as vq_experiment
from genjax import losses as L
from genjax.data import preprocess
from genjax.models.base import DataInfo
from genjax.train import Engine, init_state

IMAGE_SHAPE = (28, 28, 1)
RULES = ("plain", "ema", "ema_restart")


def _config(rule: str, num_codes: int, batch: int):
    config = vq_experiment.SPEC.configs["mnist"]()
    name_rule, restart = vq_experiment.VARIANTS[rule]
    m = dataclasses.replace(
        config.model_config,
        num_codes=num_codes,
        rule=name_rule,
        restart_after=100 if restart else 0,
    )
    train = dataclasses.replace(config.train, batch_size=batch)
    return dataclasses.replace(config, model_config=m, train=train)


def bench_training(rule: str, num_codes: int, batch: int, steps: int, repeats: int) -> dict:
    config = _config(rule, num_codes, batch)
    info = DataInfo(
        shape=IMAGE_SHAPE, num_classes=10, name="synthetic-mnist", image_shape=IMAGE_SHAPE
    )
    # The VQ-VAE alone (its phase of the run), without the prior's player.
    objective = dataclasses.replace(config.model_config, prior_steps=0).objective(info)
    task = objective.task(config.optimizer.build(10_000))
    spec = config.data.preprocess()

    def prepare(raw, rng):
        return preprocess(raw, rng, spec, 255)

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (steps, batch, *IMAGE_SHAPE), dtype=np.uint8)
    labels = rng.integers(0, 10, (steps, batch), dtype=np.int32)
    first = {"image": images[0], "label": labels[0]}
    state = jax.jit(lambda key: init_state(task, key, prepare(first, None)))(jax.random.PRNGKey(0))
    engine = Engine(task, prepare)
    state = engine.place_state(jax.tree.map(np.asarray, state))
    stack = engine.place_batch({"image": images, "label": labels}, stacked=True)

    def fused():
        nonlocal state
        state, metrics = engine.run(state, stack)
        return state, metrics

    compile_s, times = timing.repeated(fused, repeats)
    return {**timing.throughput(times, steps, batch), "compile_plus_first_s": compile_s}


def _naive_nearest(z, codebook):
    return jnp.argmin(jnp.sum(jnp.square(z[:, None, :] - codebook[None, :, :]), axis=-1), axis=-1)


def _time(fn, *args, repeats: int) -> tuple[float, float]:
    """``(median ms, compile s)`` of ``fn(*args)``: ``repeats`` timed calls after the first."""
    compile_s, times = timing.repeated(lambda: fn(*args), repeats)
    return statistics.median(times) * 1e3, compile_s


def bench_search(batch: int, num_codes: int, code_dim: int, repeats: int) -> dict:
    n = batch * 49  # a 7 x 7 code map per image
    rng = np.random.default_rng(1)
    z = jnp.asarray(rng.normal(size=(n, code_dim)).astype(np.float32))
    codebook = jnp.asarray(rng.normal(size=(num_codes, code_dim)).astype(np.float32))
    fast = jax.jit(lambda z, e: L.vector_quantize(z, e)[1])
    naive = jax.jit(_naive_nearest)
    fast_ms, fast_compile = _time(fast, z, codebook, repeats=repeats)
    naive_ms, naive_compile = _time(naive, z, codebook, repeats=repeats)
    agree = float(np.mean(np.asarray(fast(z, codebook)) == np.asarray(naive(z, codebook))))
    return {
        "vectors": n,
        "num_codes": num_codes,
        "code_dim": code_dim,
        "vector_quantize_ms": fast_ms,
        "naive_broadcast_ms": naive_ms,
        "speedup": naive_ms / fast_ms,
        "naive_broadcast_bytes": n * num_codes * code_dim * 4,
        "same_codes_fraction": agree,
        "compile_s": {"vector_quantize": fast_compile, "naive_broadcast": naive_compile},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    parser.add_argument("--batch", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--num-codes", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--search-batch", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    code_dim = vq_experiment.SPEC.configs["mnist"]().model_config.code_dim
    result = {
        "benchmark": "vqvae_conv_mnist_shape",
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "jax": jax.__version__,
        "num_codes": args.num_codes,
        "steps_per_repeat": args.steps,
        "training": {
            rule: {
                str(b): bench_training(rule, args.num_codes, b, args.steps, args.repeats)
                for b in args.batch
            }
            for rule in args.rules
        },
        "nearest_code_search": {
            str(b): bench_search(b, args.num_codes, code_dim, max(args.repeats, 5))
            for b in args.search_batch
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
