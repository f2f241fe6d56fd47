"""Streaming a TFDS split from disk: the same rows and batches as in memory, only this
process's rows read, host memory bounded, and one-line errors.

The 50,000-record set is written here as MNIST IDX archives (the writers of
``test_builders``) and prepared once with genjax's ``mnist`` builder; the arrays written are
the oracle for every row read back.
"""

import dataclasses
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from test_builders import manual, write_idx_set

from genjax import data
from genjax.config import ConfigError, DataConfig, from_dict
from genjax.data import Batcher, DatasetError, Mnist, StreamingDataset, load
from genjax.models import config_class

N_TRAIN = 50_000
SPLIT_BYTES = N_TRAIN * (28 * 28 + 4)  # uint8 images + int32 labels: 39,400,000 bytes


@pytest.fixture(scope="module")
def mnist50k(tmp_path_factory):
    """``(data_dir, images [N, 28, 28], labels [N])``: a 50,000-record ``mnist`` train split
    (and 1,000 test records) prepared in a temporary data directory (about 10 s, once)."""
    data_dir = tmp_path_factory.mktemp("tfds50k")
    sizes = {"train": N_TRAIN, "test": 1000}
    written = write_idx_set(manual(data_dir), sizes, seed=7)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Mnist, "FILES", tuple(f.unchecked() for f in Mnist.FILES))
        patch.setattr(Mnist, "SPLIT_SIZES", sizes)
        load("mnist", "test", data_dir=data_dir, streaming=False)  # prepares both splits
    images, labels = written["train"]
    return data_dir, images, labels


@pytest.fixture(scope="module")
def both(mnist50k):
    """The train split in memory and streamed."""
    data_dir = mnist50k[0]
    return (
        load("mnist", "train", data_dir=data_dir, streaming=False),
        load("mnist", "train", data_dir=data_dir, streaming=True),
    )


def one_line(error_type, call, *fragments):
    with pytest.raises(error_type) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def test_streamed_rows_are_the_written_rows(mnist50k, both):
    _, images, labels = mnist50k
    memory, stream = both
    assert isinstance(stream, StreamingDataset) and type(memory) is data.Dataset
    assert len(stream) == stream.num_examples == N_TRAIN
    assert (stream.num_classes, stream.image_max, stream.input_key) == (10, 255, "image")
    assert stream.nbytes == SPLIT_BYTES
    specs = stream.feature_specs
    assert specs["image"].shape == (N_TRAIN, 28, 28, 1) and specs["image"].dtype == np.uint8
    assert specs["label"].shape == (N_TRAIN,) and specs["label"].dtype == np.int32
    assert {k: (v.shape, v.dtype) for k, v in memory.feature_specs.items()} == {
        k: (v.shape, v.dtype) for k, v in specs.items()
    }
    rng = np.random.default_rng(0)
    # Unsorted, repeated, negative and 2-D indices: the in-memory gather's semantics.
    for idx in (
        rng.integers(0, N_TRAIN, size=300),
        np.array([49_999, 0, 7, 7, 3]),
        np.array([-1, -N_TRAIN, 5]),
        rng.integers(0, N_TRAIN, size=(3, 17)),
    ):
        got = stream.get(idx)
        want_image = images[idx][..., None]
        assert got["image"].dtype == np.uint8 and got["label"].dtype == np.int32
        np.testing.assert_array_equal(got["image"], want_image)
        np.testing.assert_array_equal(got["label"], labels[idx].astype(np.int32))
        for key in ("image", "label"):
            np.testing.assert_array_equal(got[key], memory.get(idx)[key])
    with pytest.raises(IndexError, match="50000 is out of bounds"):
        stream.get([0, N_TRAIN])
    with pytest.raises(TypeError, match="integers"):
        stream.get(np.array([0.5]))


def test_streamed_batches_equal_in_memory_across_an_epoch_boundary(both):
    memory, stream = both
    batch = 4096  # 12 steps per epoch: steps 10..14 cross into epoch 1
    for processes in (1, 2):
        for p in range(processes):
            a = Batcher(memory, batch, seed=3, process_index=p, process_count=processes)
            b = Batcher(stream, batch, seed=3, process_index=p, process_count=processes)
            assert a.steps_per_epoch == b.steps_per_epoch == 12
            x, y = a.raw_batches(10, 5), b.raw_batches(10, 5)
            assert x["image"].shape == (5, batch // processes, 28, 28, 1)
            for key in ("image", "label"):
                assert x[key].dtype == y[key].dtype
                np.testing.assert_array_equal(x[key], y[key], err_msg=f"{key} p={p}")
            np.testing.assert_array_equal(a.raw_batch(12)["image"], b.raw_batch(12)["image"])
    # The two processes' halves put together are the one-process batch.
    whole = Batcher(stream, batch, seed=3).raw_batches(10, 5)["image"]
    halves = [Batcher(stream, batch, 3, process_index=p, process_count=2) for p in (0, 1)]
    joined = np.concatenate([h.raw_batches(10, 5)["image"] for h in halves], axis=1)
    np.testing.assert_array_equal(whole, joined)


class _Recording:
    """A record source that remembers which indices were read."""

    def __init__(self, rows):
        self.rows = rows
        self.read = []

    def __len__(self):
        return len(self.rows)

    def __getitems__(self, indices):
        self.read.extend(indices)
        return [{"image": self.rows[i], "label": i % 10} for i in indices]


def test_each_process_reads_only_its_own_rows():
    n, batch = 1000, 64
    rows = np.arange(n * 4, dtype=np.uint8).reshape(n, 2, 2, 1)
    specs = {
        "image": data.FeatureSpec((n, 2, 2, 1), np.dtype(np.uint8)),
        "label": data.FeatureSpec((n,), np.dtype(np.int32)),
    }
    read = {}
    for p in (0, 1):
        source = _Recording(rows)
        ds = StreamingDataset("rec", "train", source, specs, num_classes=10)
        batcher = Batcher(ds, batch, seed=1, process_index=p, process_count=2)
        out = batcher.raw_batches(14, 3)  # steps 14..16 cross the epoch boundary (15 / epoch)
        # The global batch's rows, from the permutation of each step's epoch (an independent
        # NumPy slice of the whole permutation).
        mine = []
        for step in (14, 15, 16):
            epoch, position = divmod(step, n // batch)
            perm = np.asarray(data.epoch_permutation(1, epoch, n))
            start = position * batch + p * batch // 2
            mine.append(perm[start : start + batch // 2])
        mine = np.stack(mine)
        np.testing.assert_array_equal(out["image"], rows[mine])
        assert sorted(source.read) == sorted(set(mine.ravel().tolist()))  # each row once
        read[p] = mine
    # Per step, the two processes' rows are disjoint halves of the global batch.
    for t in range(3):
        assert not set(read[0][t].tolist()) & set(read[1][t].tolist())


def test_auto_streams_above_the_threshold(mnist50k):
    data_dir = mnist50k[0]
    mb = SPLIT_BYTES / 2**20  # 37.57 MB
    auto = dict(data_dir=data_dir, streaming="auto")
    assert isinstance(load("mnist", "train", **auto, streaming_above_mb=mb - 0.1), StreamingDataset)
    assert type(load("mnist", "train", **auto, streaming_above_mb=mb + 0.1)) is data.Dataset
    assert type(load("mnist", "train", data_dir=data_dir)) is data.Dataset  # 2048 MB default
    assert isinstance(load("mnist", "train", data_dir=data_dir, streaming=True), StreamingDataset)
    assert isinstance(load("mnist", "train", data_dir=data_dir, streaming="TRUE"), StreamingDataset)


def test_digits_streams_too(digits_dir):
    memory = load("digits", "train", data_dir=digits_dir)
    stream = load("digits", "train[:50%]", data_dir=digits_dir, streaming=True)
    assert isinstance(stream, StreamingDataset) and len(stream) == 721
    idx = np.arange(len(stream))[::-1]
    np.testing.assert_array_equal(stream.get(idx)["image"], memory.features["image"][idx])
    info = data.data_info(stream, data.Preprocess(flatten=True))
    assert info == data.data_info(memory, data.Preprocess(flatten=True))
    assert info.image_shape == (8, 8, 1) and info.shape == (64,)


def test_one_line_errors(both):
    ring = "ring8", "train"
    one_line(DatasetError, lambda: load(*ring, streaming=True), "data.streaming", "ring8")
    assert type(load(*ring, streaming="auto")) is data.Dataset
    one_line(DatasetError, lambda: load(*ring, streaming="yes"), "data.streaming", "'yes'")
    one_line(DatasetError, lambda: load(*ring, streaming_above_mb=-1), "streaming_above_mb")
    one_line(ConfigError, lambda: DataConfig(streaming="maybe"), "data.streaming", "'maybe'")
    one_line(ConfigError, lambda: DataConfig(streaming_above_mb="big"), "data.streaming_above_mb")
    stream = both[1]
    one_line(DatasetError, lambda: stream.features, "streamed", "feature_specs")
    one_line(DatasetError, lambda: data.to_device(stream), "streamed")


def test_data_config_keys_default_and_read_old_configs():
    assert (DataConfig().streaming, DataConfig().streaming_above_mb) == ("auto", 2048.0)
    assert DataConfig(streaming=True).streaming == "true"  # a hand-written config.json bool
    assert DataConfig(streaming="False").streaming == "false"
    # A config.json saved before the keys existed still loads, with the defaults.
    saved = {"model": "ppca", "dataset": "digits", "model_config": {}, "train": {},
             "optimizer": {}, "data": {"binarize": "none", "data_dir": ""}}  # fmt: skip
    config = from_dict(saved, config_class("ppca"))
    assert (config.data.streaming, config.data.streaming_above_mb) == ("auto", 2048.0)
    again = from_dict(config.to_dict(), config_class("ppca"))
    assert again.data == config.data
    streamed = dataclasses.replace(config.data, streaming="true", streaming_above_mb=10)
    written = {**saved, "data": dataclasses.asdict(streamed)}
    assert from_dict(written, config_class("ppca")).data == streamed


def test_command_errors_are_one_line(tmp_path, capsys, digits_dir, monkeypatch):
    from genjax.cli import main

    monkeypatch.setenv("GENJAX_DATA_DIR", os.fspath(digits_dir))
    work = str(tmp_path / "w")
    cases = [
        (["--dataset", "ring8", "--set", "data.streaming=true"], "data.streaming"),
        (["--dataset", "digits", "--set", "data.streaming=maybe"], "data.streaming"),
        (
            ["--dataset", "digits", "--set", "data.streaming=true", "--set",
             "train.data_on_device=true"],
            "train.data_on_device",
        ),
    ]  # fmt: skip
    for extra, fragment in cases:
        code = main(["--model", "ppca", *extra, "--workdir", work])
        err = capsys.readouterr().err.strip()
        assert code == 2 and fragment in err and "\n" not in err, err
        assert not os.path.exists(work)


def test_host_batches_come_in_order_and_stop_cleanly():
    import threading
    import time

    from genjax.data import HostBatches

    chunks = [(s, s + 3) for s in range(0, 30, 3)]
    started = []

    def read(start, end):
        started.append(start)
        time.sleep(0.01 * ((start // 3) % 3))  # out-of-order completion in the threads
        return np.arange(start, end)

    with HostBatches(read, chunks, prefetch=4) as batches:
        for s, e in chunks:
            np.testing.assert_array_equal(batches.next(s, e), np.arange(s, e))
    assert sorted(started) == [s for s, _ in chunks]  # each chunk read once
    # The loop and the schedule disagree: a one-line error, not another chunk's batch.
    with HostBatches(read, chunks, prefetch=2) as batches:
        batches.next(0, 3)
        with pytest.raises(RuntimeError, match=r"\[4, 6\) asked for where the schedule has"):
            batches.next(4, 6)

    # An error in a reader thread reaches the caller.
    def broken(start, end):
        raise DatasetError(f"record {start} is damaged")

    batches = HostBatches(broken, chunks, prefetch=2)
    with batches, pytest.raises(DatasetError, match="record 0 is damaged"):
        batches.next(0, 3)
    # close() cancels what has not begun and waits for reads in flight.
    gate = threading.Event()
    begun = []

    def slow(start, end):
        begun.append(start)
        gate.wait(5)
        return start

    batches = HostBatches(slow, chunks, prefetch=2, num_threads=2)
    time.sleep(0.2)
    threading.Timer(0.3, gate.set).start()
    t0 = time.perf_counter()
    batches.close()
    assert time.perf_counter() - t0 >= 0.2 and len(begun) == 2
    time.sleep(0.1)
    assert len(begun) == 2  # nothing started after close
    with pytest.raises(RuntimeError, match="after close"):
        batches.next(0, 3)


# --------------------------------------------------------------------------------------
# Host memory: training over the 50,000-record split, streamed vs in memory.

_MEMORY = textwrap.dedent(
    """
    import sys
    mode, data_dir, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])

    def peak():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))

    import grain, jax, jax.numpy as jnp, numpy as np, optax
    from genjax import data
    from genjax.task import Task
    from genjax.train import TrainConfig, init_state
    from genjax.train.chunks import ChunkRunner, ChunkSchedule
    from genjax.train.step import Engine

    spec = data.Preprocess(flatten=True)
    prepare = lambda raw, rng: data.preprocess(raw, rng, spec, 255)
    def loss(p, batch, rng):
        value = jnp.mean(jnp.sum((batch["x"] @ p["w"]) ** 2, -1))
        return value, {}
    task = Task.from_loss(lambda rng, b: {"w": jnp.zeros((784, 16))}, loss, optax.sgd(1e-3))
    config = TrainConfig(steps=steps, batch_size=128, fuse_steps=4, log_every=4,
                         checkpoint_every=steps, prefetch=2, progress=False)
    engine = Engine(task, prepare)
    example = {"image": np.zeros((4, 128, 28, 28, 1), np.uint8),
               "label": np.zeros((4, 128), np.int32)}
    state = engine.place_state(init_state(task, jax.random.PRNGKey(0), prepare(example, None)))
    state, _ = engine.run(state, engine.place_batch(example, stacked=True))  # compiles
    # Costs that do not grow with the split: the batch permutation's compilation, and one
    # read of 1,536 records through the data source and the prefetch threads.
    data.epoch_permutation(0, 0, num_examples=50000).block_until_ready()
    warm = data.load("mnist", "train", data_dir=data_dir, streaming=True)
    chunks = [(0, 512), (512, 1024), (1024, 1536)]
    with data.HostBatches(lambda a, b: warm.get(np.arange(a, b)), chunks) as batches:
        [batches.next(*c) for c in chunks]
    del warm, batches
    jax.block_until_ready(state)
    base = peak()

    train = data.load("mnist", "train", data_dir=data_dir, streaming=mode == "streaming")
    batcher = data.Batcher(train, 128, seed=0)
    with ChunkRunner(engine, batcher, config, None, start=0) as run:
        for start, end in ChunkSchedule(0, config):
            state, _ = run(state, start, end)
            jax.block_until_ready(state)  # as fit's check at each log line (log_every=4)
    jax.block_until_ready(state)
    print(type(train).__name__, peak() - base)
    """
)


@pytest.mark.slow
def test_streaming_bounds_host_memory(mnist50k):
    """Peak RSS growth over 416 steps of 128 (53,248 records, across the epoch boundary):
    streamed, under half the split's 39.4 MB; in memory, above the split's bytes (the arrays
    are read and then frozen as a copy). The streamed growth measured 2.9-10.8 MB (the
    prefetch threads' buffers and allocator arenas, not rows kept), the in-memory 95-117 MB."""
    data_dir = os.fspath(mnist50k[0])
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
    growth = {}
    for mode in ("streaming", "memory"):
        proc = subprocess.run(
            [sys.executable, "-c", _MEMORY, mode, data_dir, "416"],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        kind, grown = proc.stdout.split()[-2:]
        growth[kind] = int(grown)
    print(f"peak RSS growth (MB): { {k: round(v / 2**20, 1) for k, v in growth.items()} }")
    assert growth["StreamingDataset"] < SPLIT_BYTES / 2, growth
    assert growth["Dataset"] > SPLIT_BYTES, growth
