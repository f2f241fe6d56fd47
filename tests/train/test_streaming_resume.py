"""Training on a streamed split: SIGKILL and resume end bitwise equal to an uninterrupted run,
and prefetch on or off, streamed or in memory, end in the same state.

Run as a script, this file is the worker the kill test starts:
``python test_streaming_resume.py WORKDIR DATA_DIR MODE KILL_AT OUT_NPZ`` trains the toy task
on the streamed ``digits`` train split (``MODE``: ``none``, or ``step``: SIGKILL itself right
after logging step ``KILL_AT``; ``save``: SIGKILL itself while checkpoint ``KILL_AT`` is
being committed).
"""

import dataclasses
import os
import random
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import toy

from genjax.config import DataConfig
from genjax.data import Preprocess, StreamingDataset, load
from genjax.train import TrainConfig, chunk_ends, fit
from genjax.train.chunks import ChunkSchedule

STEPS = 56  # digits train has 1442 examples: 45 steps of 32 per epoch, so two epochs
SPEC = Preprocess(flatten=True, binarize="dynamic")


def _config(**changes):
    base = toy.train_config(
        STEPS, seed=3, fuse_steps=4, log_every=4, checkpoint_every=8, keep_checkpoints=2
    )
    return dataclasses.replace(base, tensorboard=False, **changes)


def _train_split(data_dir, streaming):
    data = DataConfig(streaming=streaming)  # the run's data.streaming key
    return load("digits", "train", data_dir=data_dir, streaming=data.streaming)


def _worker(workdir, data_dir, mode, kill_at, out):
    on_log = toy.kill_hooks(mode, int(kill_at))
    train = _train_split(data_dir, "true")
    assert isinstance(train, StreamingDataset), train
    task = toy.task(noise=0.1)
    result = fit(task, train, _config(), workdir, preprocess_spec=SPEC, on_log=on_log)
    np.savez(out, step=int(result.state.step), **toy.flat_params(result.state.params))


@pytest.fixture(scope="module")
def digits_data_dir(tmp_path_factory):
    from genjax.data.digits import prepare_digits

    data_dir = tmp_path_factory.mktemp("tfds")
    prepare_digits(data_dir)
    return data_dir


def _run(workdir, data_dir, out, mode="none", kill_at=0, env=None, timeout=None):
    cmd = [sys.executable, __file__, str(workdir), str(data_dir), mode, str(kill_at), str(out)]
    return toy.run_worker(cmd, env=env, timeout=timeout)


_params = toy.load_params


@pytest.mark.slow
def test_sigkill_while_streaming_resumes_bitwise(tmp_path, digits_data_dir):
    env = toy.cache_env(tmp_path)
    ref = _run(tmp_path / "ref", digits_data_dir, tmp_path / "ref.npz", env=env)
    assert ref.returncode == 0, ref.stderr[-3000:]

    work, out = tmp_path / "killed", tmp_path / "killed.npz"
    # Kills before the first checkpoint, between checkpoints, mid-save, and after the epoch
    # boundary (step 45), each resumed by the next run.
    for mode, at in [("step", 4), ("step", 20), ("save", 40), ("step", 52)]:
        r = _run(work, digits_data_dir, out, mode, at, env=env)
        assert r.returncode == -9, (mode, at, r.returncode, r.stderr[-3000:])
        assert not out.exists()
    _run(work, digits_data_dir, out, env=env, timeout=random.Random(1).uniform(4.0, 8.0))
    if out.exists():
        out.unlink()
    final = _run(work, digits_data_dir, out, env=env)
    assert final.returncode == 0, final.stderr[-3000:]

    a, b = _params(tmp_path / "ref.npz"), _params(out)
    assert a.keys() == b.keys() and int(a["step"]) == int(b["step"]) == STEPS
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_prefetch_on_off_and_streaming_give_the_same_state(tmp_path, digits_data_dir):
    """Five runs of the same task and seed: streamed with prefetch 0, 1 and 3 chunks ahead,
    in memory with prefetch 0 and 2. Each chunk is run from the batches of (seed, step), so
    all five end bitwise equal."""
    stream = _train_split(digits_data_dir, "true")
    memory = _train_split(digits_data_dir, "false")
    assert isinstance(stream, StreamingDataset) and not isinstance(memory, StreamingDataset)
    runs = [(stream, 0), (stream, 1), (stream, 3), (memory, 0), (memory, 2)]
    finals = []
    for i, (train, prefetch) in enumerate(runs):
        config = _config(steps=48, prefetch=prefetch, async_checkpoints=False)
        result = fit(toy.task(noise=0.1), train, config, tmp_path / str(i), preprocess_spec=SPEC)
        assert int(result.state.step) == 48
        finals.append(toy.flat_params(result.state.params))
    for other in finals[1:]:
        assert other.keys() == finals[0].keys()
        for k in other:
            np.testing.assert_array_equal(finals[0][k], other[k], err_msg=k)
    # Training moved the parameters: the runs could have differed.
    fresh = fit(
        toy.task(noise=0.1), stream, _config(steps=1), tmp_path / "one", preprocess_spec=SPEC
    )
    one = toy.flat_params(fresh.state.params)
    assert any(not np.array_equal(v, finals[0][k]) for k, v in one.items())


def test_a_streamed_split_cannot_be_held_on_the_device(tmp_path, digits_data_dir):
    stream = _train_split(digits_data_dir, "true")
    config = _config(steps=4, data_on_device=True)
    with pytest.raises(ValueError, match="data_on_device") as info:
        fit(toy.task(), stream, config, tmp_path / "w", preprocess_spec=SPEC)
    assert "\n" not in str(info.value) and "data.streaming=false" in str(info.value)
    assert not (tmp_path / "w" / "checkpoints").exists()


def test_chunk_schedule_lists_the_chunk_ends_with_random_access():
    """Against a brute-force listing: every step after ``start`` that some mark divides,
    then ``steps``."""
    rnd = random.Random(0)
    for _ in range(300):
        marks = dict(
            fuse_steps=rnd.randint(1, 9),
            log_every=rnd.randint(1, 12),
            checkpoint_every=rnd.randint(1, 30),
            eval_every=rnd.choice([0, rnd.randint(1, 15)]),
        )
        config = TrainConfig(steps=rnd.randint(1, 120), **marks)
        start = rnd.randint(0, config.steps)
        divisors = [m for m in marks.values() if m]
        ends = [s for s in range(start + 1, config.steps) if any(s % m == 0 for m in divisors)]
        ends = [*ends, config.steps] if start < config.steps else []
        want = list(zip([start, *ends[:-1]], ends, strict=True)) if ends else []
        schedule = ChunkSchedule(start, config)
        assert len(schedule) == len(want) and list(schedule) == want, (marks, start)
        assert [e for _, e in want] == list(chunk_ends(start, config))
        if want:
            k = rnd.randrange(len(want))
            assert schedule[k] == want[k] and schedule[-1] == want[-1]
    longest = ChunkSchedule(5, TrainConfig(steps=2**31 - 1, fuse_steps=1))
    assert len(longest) == 2**31 - 1 - 5 and longest[10**9] == (10**9 + 5, 10**9 + 6)


if __name__ == "__main__":
    _worker(*sys.argv[1:6])
