"""Faults in a work directory: another model's checkpoints, damaged ones, bad options.

Every case ends either bitwise equal to an uninterrupted run or with a clear error, warns
once per damaged checkpoint, and deletes nothing the run did not write.
"""

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import toy

from genjax.data import Preprocess
from genjax.train import Checkpointer, ResumeError, Task, TrainConfig, chunk_ends, fit
from genjax.train.checkpoint import MANIFEST

FLAT = Preprocess(flatten=True)
CONFIG = toy.train_config(
    24, log_every=8, checkpoint_every=8, keep_checkpoints=5, async_checkpoints=False
)


def _ae_task(hidden=16, first="Dense_0"):
    class AE(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.tanh(nn.Dense(hidden, name=first)(x))
            return nn.Dense(x.shape[-1], name="out")(h)

    model = AE()

    def loss(params, batch, rng):
        err = jnp.mean(jnp.sum((model.apply(params, batch["x"]) - batch["x"]) ** 2, -1))
        return err, {"mse": err}

    return Task.from_loss(lambda r, b: model.init(r, b["x"]), loss, optax.adam(1e-2))


def _tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the hash of its bytes (what "untouched" means)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _fit(task, workdir, config=CONFIG, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit(task, toy.digits_dataset(256), config, workdir, preprocess_spec=FLAT, **kw)
    return result, [str(w.message) for w in caught]


def _data_files(step_dir: Path) -> list[Path]:
    return [f for f in sorted(step_dir.rglob("*")) if f.is_file() and f.parent.name == "d"]


def _garble(path: Path) -> None:
    """Flip 16 bytes in the middle of a file: its size stays right, its content does not."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    for i in range(mid, min(mid + 16, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("changed", "match"),
    [
        (
            {"hidden": 32},
            r"params/model/params/Dense_0/bias is float32\[16\] in the checkpoint and "
            r"float32\[32\] in this model",
        ),
        (
            {"first": "encoder"},
            r"params/model/params/Dense_0/bias is in the checkpoint but not in this model",
        ),
    ],
    ids=["shape", "structure"],
)
def test_another_models_checkpoints_are_a_resume_error_and_stay_put(tmp_path, changed, match):
    work = tmp_path / "run"
    _fit(_ae_task(), work, dataclasses.replace(CONFIG, steps=16))
    before = _tree_digest(work)
    with pytest.raises(ResumeError, match=match) as err:
        _fit(_ae_task(**changed), work)
    assert "use another work directory" in str(err.value)
    assert str(work / "checkpoints" / "16") in str(err.value)
    # Nothing moved, rewritten or deleted: the checkpoints are valid, just not this model's.
    assert _tree_digest(work) == before
    assert not (work / "corrupt_checkpoints").exists()


@pytest.mark.parametrize("damage", ["truncate", "garble", "garble_meta"])
def test_a_damaged_newest_checkpoint_is_skipped_once_and_the_run_ends_bitwise(tmp_path, damage):
    ref, _ = _fit(_ae_task(), tmp_path / "ref")
    work = tmp_path / "run"
    _fit(_ae_task(), work)
    newest = work / "checkpoints" / "24"
    if damage == "truncate":
        for f in _data_files(newest):
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif damage == "garble":
        # Same sizes, other bytes: Orbax alone reads such a file back without complaint.
        for f in _data_files(newest):
            _garble(f)
    else:
        (newest / "meta" / "metadata").write_text('{"step": 24, "data": ')
    (work / "notes.txt").write_text("the user's own file")
    res, messages = _fit(_ae_task(), work)
    skipped = [m for m in messages if "skipping unreadable checkpoint" in m]
    assert len(skipped) == 1 and str(newest) in skipped[0], messages
    assert res.start_step == 16
    moved = list((work / "corrupt_checkpoints").iterdir())
    assert [p.name.split("-")[0] for p in moved] == ["24"]  # moved aside, not deleted
    assert (work / "notes.txt").read_text() == "the user's own file"
    for a, b in zip(_leaves(ref.state), _leaves(res.state), strict=True):
        np.testing.assert_array_equal(a, b)


def test_all_checkpoints_damaged_restarts_from_scratch_bitwise(tmp_path):
    ref, _ = _fit(_ae_task(), tmp_path / "ref")
    work = tmp_path / "run"
    _fit(_ae_task(), work)
    steps = sorted(int(p.name) for p in (work / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [8, 16, 24]
    for step in steps:
        for f in _data_files(work / "checkpoints" / str(step)):
            _garble(f)
    res, messages = _fit(_ae_task(), work)
    skipped = [m for m in messages if "skipping unreadable checkpoint" in m]
    assert len(skipped) == 3, messages
    assert res.start_step == 0
    assert len(list((work / "corrupt_checkpoints").iterdir())) == 3
    for a, b in zip(_leaves(ref.state), _leaves(res.state), strict=True):
        np.testing.assert_array_equal(a, b)


def test_checkpointer_digest_catches_a_garbled_state(tmp_path):
    _fit(_ae_task(), tmp_path / "run")
    ckpt = Checkpointer(tmp_path / "run" / "checkpoints", read_only=True, asynchronous=False)
    try:
        assert ckpt.newest_readable_step() == 24
        # Without its file list (as when a run is killed between commit and list), the
        # digest saved in the JSON record still catches the change.
        (tmp_path / "run" / "checkpoints" / "24" / MANIFEST).unlink()
        for f in _data_files(tmp_path / "run" / "checkpoints" / "24"):
            _garble(f)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert ckpt.newest_readable_step() == 16
    finally:
        ckpt.close()
    assert any("24" in str(w.message) for w in caught)
    # Read-only: the damaged checkpoint is reported, not moved.
    assert (tmp_path / "run" / "checkpoints" / "24").is_dir()


WORKER = Path(__file__).with_name("resume_worker.py")


def test_resume_after_truncation_prints_one_warning_and_no_tracebacks(tmp_path):
    """Orbax abandons a damaged read; tensorstore's other reads then report to a closed
    event loop. None of that reaches the user: one warning line for the checkpoint."""
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "cache"))
    work = tmp_path / "run"

    def run():
        cmd = [sys.executable, str(WORKER), str(work), "16", "none", "0", str(tmp_path / "o.npz")]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)

    first = run()
    assert first.returncode == 0, first.stderr[-3000:]
    for f in _data_files(work / "checkpoints" / "16"):
        f.write_bytes(f.read_bytes()[:100])
    second = run()
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Event loop is closed" not in second.stderr
    assert "Traceback" not in second.stderr
    warned = [line for line in second.stderr.splitlines() if "skipping unreadable" in line]
    assert len(warned) == 1, second.stderr


def test_step_counts_beyond_int32_are_refused_and_chunks_are_lazy():
    with pytest.raises(ValueError, match=r"train.steps must be an integer in \[1, 2147483647\]"):
        TrainConfig(steps=99999999999999999999)
    with pytest.raises(ValueError, match=r"train\.checkpoint_every"):
        TrainConfig(checkpoint_every=2**31)
    with pytest.raises(ValueError, match=r"train\.log_every"):
        TrainConfig(log_every=True)
    longest = TrainConfig(steps=2**31 - 1, fuse_steps=1)
    ends = chunk_ends(0, longest)  # a generator: nothing is built up front
    assert [next(ends) for _ in range(3)] == [1, 2, 3]


def test_an_unknown_best_metric_is_refused_before_training(tmp_path):
    config = dataclasses.replace(CONFIG, best_metric="elbo", eval_every=8)
    with pytest.raises(ValueError, match=r"best_metric='elbo'.*\['mse_test'\]"):
        _fit(_ae_task(), tmp_path / "a", config, evaluate=lambda p, s: {"mse_test": 1.0})
    assert not any((tmp_path / "a" / "checkpoints").glob("[0-9]*"))
    with pytest.raises(ValueError, match="has no evaluation"):
        _fit(_ae_task(), tmp_path / "b", config)
    # A known one keeps the best checkpoint beside the last ones.
    scores = iter([3.0, 1.0, 5.0, 2.0])  # the pre-check, then steps 8, 16, 24

    def evaluate(params, state):
        return {"mse_test": next(scores)}

    keep1 = dataclasses.replace(config, best_metric="mse_test", best_mode="min", keep_checkpoints=1)
    _fit(_ae_task(), tmp_path / "c", keep1, evaluate=evaluate)
    kept = sorted(int(p.name) for p in (tmp_path / "c" / "checkpoints").glob("[0-9]*"))
    assert kept == [8, 24]
    lines = (tmp_path / "c" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["mse_test"] for x in lines if '"test"' in x] == [1.0, 5.0, 2.0]
