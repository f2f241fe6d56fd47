"""How long the step loop waits for host batches: prefetch on vs off, in memory vs streamed.

    python -m benchmarks.input_pipeline [--records 50000] [--steps 200] [--batch 128]
        [--fuse-steps 4] [--log-every 20] [--prefetch 2] [--repeats 2] [--data-dir DIR]

A 50,000-record MNIST-shaped set (random uint8 ``[28, 28, 1]`` images, labels) is written as
IDX archives into ``<data-dir>/downloads/manual/`` and prepared with genjax's ``mnist``
builder (once per data directory; a temporary one by default). A convolutional VAE (channels
16, 32; Bernoulli likelihood on pixels scaled to [0, 1]) is trained for ``--steps`` steps by
the engine's own pieces (``Engine``, ``Batcher``, ``ChunkRunner`` over the run's
``ChunkSchedule``), syncing with the device at every ``--log-every`` steps as ``fit`` does at
its log lines. Four rows: the train split in memory or streamed from disk
(``StreamingDataset``), each with prefetch off (``0``: the loop reads a chunk's batches when it
is due) and on (``--prefetch`` chunks read ahead in grain's threads).

Prints JSON: per row, ``steps_per_s`` and ``wait_fraction``, the share of the loop's wall time
spent blocked obtaining host batches (``ChunkRunner.wait_s / wall``, medians of
``--repeats``), plus ``same_final_params`` (all four rows end bitwise equal).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import struct
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import optax

from genjax import data
from genjax.data import Batcher, Mnist, Preprocess, preprocess
from genjax.models.base import DataInfo
from genjax.models.vae import VAEConfig
from genjax.train import TrainConfig, init_state
from genjax.train.chunks import ChunkRunner, ChunkSchedule
from genjax.train.step import Engine

IDX = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _idx(magic: int, array: np.ndarray) -> bytes:
    """An IDX file: big-endian uint32 magic, one uint32 per dimension, then the bytes."""
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + np.ascontiguousarray(array, np.uint8).tobytes()


def prepare_set(data_dir: Path, records: int) -> None:
    """Writes and prepares an MNIST-layout set of ``records`` train (and 1,000 test) rows."""
    sizes = {"train": records, "test": 1000}
    builder = Mnist(data_dir=os.fspath(data_dir))
    if builder.is_prepared() and builder.info.splits["train"].num_examples == records:
        return
    rng = np.random.default_rng(0)
    manual = data_dir / "downloads" / "manual"
    manual.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        images, labels = IDX[split]
        pixels = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        (manual / images).write_bytes(gzip.compress(_idx(2051, pixels), compresslevel=1))
        classes = rng.integers(0, 10, size=n, dtype=np.uint8)
        (manual / labels).write_bytes(gzip.compress(_idx(2049, classes), compresslevel=1))
    # The archives are not the official ones: accept their sizes and record counts.
    Mnist.FILES = tuple(f.unchecked() for f in Mnist.FILES)
    Mnist.SPLIT_SIZES = sizes
    data.prepare("mnist", os.fspath(data_dir))


def run_row(train, task, spec, config: TrainConfig, log_every: int) -> dict:
    """Trains ``config.steps`` steps (after one compiling chunk); returns the timings."""

    def prepare(raw, rng):
        return preprocess(raw, rng, spec, train.image_max)

    engine = Engine(task, prepare)
    batcher = Batcher(train, config.batch_size, config.seed)
    example = prepare(batcher.raw_batch(0), jax.random.PRNGKey(0))
    state = engine.place_state(init_state(task, jax.random.PRNGKey(config.seed), example))
    schedule = ChunkSchedule(0, config)
    with ChunkRunner(engine, batcher, config, None, start=0) as run:
        first, *rest = schedule
        state, _ = run(state, *first)  # compiles
        jax.block_until_ready(state)
        run.wait_s = 0.0
        t0 = time.perf_counter()
        for start, end in rest:
            state, _ = run(state, start, end)
            if end % log_every == 0:
                jax.block_until_ready(state.step)  # fit's sync point at a log line
        jax.block_until_ready(state)
        wall = time.perf_counter() - t0
        steps = config.steps - first[1]
        params = [np.asarray(x) for x in jax.tree.leaves(engine.fetch_state(state).params)]
        return {"wall_s": wall, "wait_s": run.wait_s, "steps": steps, "params": params}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--fuse-steps", type=int, default=4)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--prefetch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data-dir", default="")
    args = parser.parse_args(argv)
    if min(args.records, args.steps, args.batch, args.fuse_steps, args.log_every) < 1:
        parser.error("--records, --steps, --batch, --fuse-steps and --log-every must be >= 1")
    if args.prefetch < 1 or args.repeats < 1:
        parser.error("--prefetch and --repeats must be >= 1")
    if args.log_every % args.fuse_steps:
        parser.error("--log-every must be a multiple of --fuse-steps")
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="genjax-input-"))
    t0 = time.perf_counter()
    prepare_set(data_dir, args.records)
    prepare_s = time.perf_counter() - t0

    spec = Preprocess()
    info = DataInfo(shape=(28, 28, 1), num_classes=10, image_shape=(28, 28, 1))
    objective = VAEConfig(architecture="conv", hidden=(16, 32), latent_dim=16).objective(info)
    task = objective.task(optax.adam(1e-3))
    rows, finals = [], []
    for streaming in (False, True):
        train = data.load("mnist", "train", data_dir=os.fspath(data_dir), streaming=streaming)
        for prefetch in (0, args.prefetch):
            config = TrainConfig(
                steps=args.fuse_steps + args.steps,
                batch_size=args.batch,
                fuse_steps=args.fuse_steps,
                log_every=args.log_every,
                checkpoint_every=args.fuse_steps + args.steps,
                prefetch=prefetch,
                progress=False,
            )
            runs = [run_row(train, task, spec, config, args.log_every) for _ in range(args.repeats)]
            finals.append(runs[0]["params"])
            rows.append(
                {
                    "data": "streaming" if streaming else "in_memory",
                    "prefetch": prefetch,
                    "steps_per_s": statistics.median(r["steps"] / r["wall_s"] for r in runs),
                    "wait_fraction": statistics.median(r["wait_s"] / r["wall_s"] for r in runs),
                    "wait_ms_per_step": statistics.median(
                        1e3 * r["wait_s"] / r["steps"] for r in runs
                    ),
                }
            )
    same = all(
        all(np.array_equal(a, b) for a, b in zip(finals[0], other, strict=True))
        for other in finals[1:]
    )
    result = {
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "records": args.records,
        "batch": args.batch,
        "fuse_steps": args.fuse_steps,
        "steps": args.steps,
        "model": "conv VAE, channels (16, 32), latent 16",
        "prepare_s": round(prepare_s, 2),
        "rows": [
            {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()} for row in rows
        ],
        "same_final_params": same,
    }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
