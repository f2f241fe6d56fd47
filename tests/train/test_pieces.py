"""The pieces ``fit`` is made of, one at a time: chunk boundaries and the chunk runner,
resume and checkpoints, the train lines, evaluation, the non-finite guard, signals, and the
strategy objects of the engine."""

import dataclasses
import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import toy

from genjax.data import Preprocess
from genjax.data.pipeline import Batcher, preprocess
from genjax.train import (
    STRATEGIES,
    Engine,
    MetricsLog,
    NonFiniteError,
    ResumeError,
    fit,
    init_state,
)
from genjax.train.chunks import ChunkEnd, ChunkRunner, place_resident_data
from genjax.train.evaluation import Evaluation
from genjax.train.loop import NonFiniteGuard, _StopRequest
from genjax.train.reporting import TrainReporter, mean_metrics
from genjax.train.resume import RunCheckpoints, data_meta, fresh_state
from genjax.train.step import (
    JitStrategy,
    MeshStrategy,
    PmapStrategy,
    ShardMapStrategy,
    strategy_class,
)

FLAT = Preprocess(flatten=True)
CONFIG = toy.train_config(
    12, fuse_steps=4, log_every=4, checkpoint_every=8, async_checkpoints=False, tensorboard=False
)


def prepare(raw, rng):
    return preprocess(raw, rng, FLAT, 16)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _setup(config=CONFIG, strategy="jit"):
    data = toy.digits_dataset(256)
    batcher = Batcher(data, config.batch_size, config.seed)
    engine = Engine(toy.task(), prepare, strategy=strategy, donate=False)
    fresh = fresh_state(toy.task(), prepare, batcher, config.seed)
    return data, batcher, engine, jax.tree.map(np.asarray, fresh)


# ------------------------------------------------------------------ chunks
def test_chunk_end_names_what_is_due():
    config = dataclasses.replace(CONFIG, steps=24, log_every=4, eval_every=6, checkpoint_every=8)
    assert ChunkEnd.at(4, config) == ChunkEnd(4, log=True, evaluation=False, checkpoint=False)
    assert ChunkEnd.at(6, config) == ChunkEnd(6, log=False, evaluation=True, checkpoint=False)
    assert ChunkEnd.at(8, config) == ChunkEnd(8, log=True, evaluation=False, checkpoint=True)
    assert ChunkEnd.at(24, config) == ChunkEnd(24, log=True, evaluation=True, checkpoint=True)
    # eval_every=0: only at the end.
    no_eval = dataclasses.replace(config, eval_every=0)
    assert not ChunkEnd.at(12, no_eval).evaluation and ChunkEnd.at(24, no_eval).evaluation


class _SpyEngine:
    """Records which of the engine's loops a chunk used."""

    def __init__(self):
        self.calls = []

    def place_batch(self, raw, *, stacked=False):
        return ("placed", stacked, {k: v.shape for k, v in raw.items()})

    def step(self, state, raw):
        self.calls.append(("step", raw))
        return state + 1, {}

    def run(self, state, raws):
        self.calls.append(("run", raws))
        return state + raws[2]["image"][0], {}

    def run_on_device(self, state, data, *, num_steps, batch_size, seed):
        self.calls.append(("device", num_steps, batch_size, seed))
        return state + num_steps, {}


def test_chunk_runner_picks_one_step_a_stack_or_the_device_loop():
    data = toy.digits_dataset(256)
    batcher = Batcher(data, 32, 0)
    spy = _SpyEngine()
    per_step = dataclasses.replace(CONFIG, fuse_steps=1)
    state, _ = ChunkRunner(spy, batcher, per_step, None)(0, 3, 4)
    assert state == 1 and spy.calls == [("step", ("placed", False, {"image": (32, 8, 8, 1)}))]
    spy.calls.clear()
    state, _ = ChunkRunner(spy, batcher, per_step, None)(0, 4, 7)  # a longer chunk: a scan
    assert state == 3 and spy.calls[0][0] == "run" and spy.calls[0][1][1] is True
    spy.calls.clear()
    # fuse_steps > 1: even a one-step chunk goes through the scan (one compiled program).
    state, _ = ChunkRunner(spy, batcher, CONFIG, None)(0, 11, 12)
    assert state == 1 and spy.calls[0][0] == "run"
    spy.calls.clear()
    state, _ = ChunkRunner(spy, batcher, CONFIG, {"image": None})(0, 4, 8)
    assert state == 4 and spy.calls == [("device", 4, 32, 0)]


def test_chunk_runner_matches_the_engine_steps():
    _, batcher, engine, host = _setup()
    runner = ChunkRunner(engine, batcher, CONFIG, None)
    state = engine.place_state(host)
    state, _ = runner(state, 0, 3)
    state, metrics = runner(state, 3, 4)
    ref = engine.place_state(host)
    for s in range(4):
        ref, _ = engine.step(ref, engine.place_batch(batcher.raw_batch(s)))
    assert metrics["loss"].shape == (1,)
    for a, b in zip(_leaves(ref.params), _leaves(state.params), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_resident_data_only_when_asked():
    data, _, engine, _ = _setup()
    assert place_resident_data(engine, data, CONFIG) is None
    placed = place_resident_data(engine, data, dataclasses.replace(CONFIG, data_on_device=True))
    assert isinstance(placed["image"], jax.Array) and placed["image"].shape[0] == 256


# ------------------------------------------------------------------ resume
def test_run_checkpoints_start_fresh_save_and_restore(tmp_path):
    data, _, engine, host = _setup()
    meta = data_meta(data, CONFIG)
    assert meta == {"dataset": "digits-toy", "num_examples": 256, "batch_size": 32, "seed": 0}
    ckpts = RunCheckpoints(tmp_path, CONFIG, engine, meta)
    state, start = ckpts.restore_or_start(host)
    assert state is host and start == 0 and ckpts.latest_step() == 0
    ckpts.save(engine.place_state(host.replace(step=np.int32(8))))
    ckpts.close()
    assert ckpts.path == tmp_path / "checkpoints" and ckpts.latest_step() == 8

    again = RunCheckpoints(tmp_path, CONFIG, engine, meta)
    state, start = again.restore_or_start(host)
    again.close()
    assert start == 8
    for a, b in zip(_leaves(host.params), _leaves(state.params), strict=True):
        np.testing.assert_array_equal(a, b)

    other = RunCheckpoints(tmp_path, CONFIG, engine, {**meta, "seed": 1})
    with pytest.raises(ResumeError, match=r"was made with data .* use another work directory"):
        other.restore_or_start(host)  # closes its checkpointer before raising
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["8"]


# --------------------------------------------------------------- reporting
def test_mean_metrics_weights_chunks_by_their_steps():
    pending = [({"loss": jnp.array([1.0, 3.0])}, 2), ({"loss": jnp.array(8.0)}, 1)]
    assert mean_metrics(pending) == {"loss": 4.0}
    assert mean_metrics([]) == {}
    # pmap metrics carry a leading device axis; one replica is read.
    stacked = [({"loss": jnp.array([[1.0, 3.0], [9.0, 9.0]])}, 2)]
    assert mean_metrics(stacked, lambda x: x[0]) == {"loss": 2.0}


def test_reporter_writes_the_interval_line_and_calls_on_log(tmp_path):
    _, _, engine, host = _setup()
    seen = []
    log = MetricsLog(tmp_path, resume_step=0, tensorboard=False)
    reporter = TrainReporter(log, engine, CONFIG, 0, lambda s, r: seen.append((s, r)))
    reporter.add({"loss": jnp.array([2.0, 4.0]), "nonfinite": jnp.array([0.0, 1.0])}, 2)
    reporter.add({"loss": jnp.array([6.0, 8.0]), "nonfinite": jnp.array([0.0, 0.0])}, 2)
    record = reporter.write_train_line(4, engine.place_state(host.replace(skipped=np.int32(1))))
    reporter.close()
    assert reporter.last_train == {"loss": 5.0, "nonfinite": 0.25}
    assert record["skipped_steps"] == 1 and record["split"] == "train" and record["step"] == 4
    assert record["examples_per_s"] == pytest.approx(32 * record["steps_per_s"])
    assert seen == [(4, record)]
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == record
    assert reporter.elapsed() > 0


# -------------------------------------------------------------- evaluation
def test_evaluation_checks_best_metric_and_writes_test_lines(tmp_path):
    _, _, engine, host = _setup()
    config = dataclasses.replace(CONFIG, best_metric="score")
    with pytest.raises(ValueError, match="has no evaluation"):
        Evaluation(config, None, None).check_best_metric_before_training(host)
    wrong = Evaluation(config, lambda p, ms: {"other": 1.0}, None)
    with pytest.raises(ValueError, match=r"best_metric='score' is not one of .*\['other'\]"):
        wrong.check_best_metric_before_training(host)

    snapshots = []
    evaluation = Evaluation(
        config, lambda p, ms: {"score": np.float32(0.5)}, lambda s, p, ms: snapshots.append(s)
    )
    evaluation.check_best_metric_before_training(host)
    assert evaluation.last == {}  # the pre-check is not an evaluation of the run
    log = MetricsLog(tmp_path, resume_step=0, tensorboard=False)
    evaluation.at_step(8, engine, engine.place_state(host), log)
    log.close()
    assert evaluation.last == {"score": 0.5} and type(evaluation.last["score"]) is float
    assert snapshots == [8]
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {
        "step": 8,
        "split": "test",
        "score": 0.5,
    }
    assert Evaluation(CONFIG, None, None).measure(engine, host) == {}


# ------------------------------------------------------------------- guard
def test_guard_stops_at_max_bad_steps_with_the_checkpoints_closed(tmp_path):
    data, _, engine, host = _setup()
    config = dataclasses.replace(CONFIG, max_bad_steps=3)
    ckpts = RunCheckpoints(tmp_path, config, engine, data_meta(data, config))
    ckpts.save(engine.place_state(host.replace(step=np.int32(4))))
    guard = NonFiniteGuard(engine, config, ckpts)
    guard.check(engine.place_state(host.replace(max_bad_streak=np.int32(2))))
    with pytest.raises(NonFiniteError) as err:
        guard.check(engine.place_state(host.replace(max_bad_streak=np.int32(3))))
    assert str(err.value) == (
        "3 consecutive steps had a non-finite loss or gradient (limit train.max_bad_steps=3); "
        "the parameters were left at their last finite values and the checkpoints in "
        f"{tmp_path / 'checkpoints'} are intact (latest: step 4)"
    )
    assert (tmp_path / "checkpoints" / "4").is_dir()  # the save in flight landed


# ----------------------------------------------------------------- signals
def test_stop_request_catches_one_signal_and_gives_up_on_the_second(capsys):
    before = signal.getsignal(signal.SIGTERM)
    with _StopRequest() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested
        assert f"signal {int(signal.SIGTERM)} received" in capsys.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) == before


def test_sigterm_checkpoints_then_stops_and_the_resume_ends_bitwise(tmp_path):
    config = dataclasses.replace(CONFIG, steps=16, checkpoint_every=100)
    data = toy.digits_dataset(256)
    ref = fit(toy.task(noise=0.1), data, config, tmp_path / "ref", preprocess_spec=FLAT)

    def term_at_8(step, record):
        if step == 8:
            os.kill(os.getpid(), signal.SIGTERM)

    work = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt, match="stopped at step 8 by a signal; checkpoint saved"):
        fit(toy.task(noise=0.1), data, config, work, preprocess_spec=FLAT, on_log=term_at_8)
    assert sorted(p.name for p in (work / "checkpoints").iterdir() if p.name.isdigit()) == ["8"]
    res = fit(toy.task(noise=0.1), data, config, work, preprocess_spec=FLAT)
    assert res.start_step == 8
    for a, b in zip(_leaves(ref.state), _leaves(res.state), strict=True):
        np.testing.assert_array_equal(a, b)


# -------------------------------------------------------------- strategies
def test_strategy_table_and_its_validation():
    assert STRATEGIES == ("jit", "mesh", "shard_map", "pmap")
    classes = [strategy_class(name) for name in STRATEGIES]
    assert classes == [JitStrategy, MeshStrategy, ShardMapStrategy, PmapStrategy]
    assert [c.name for c in classes] == list(STRATEGIES)
    assert [c.axis_name for c in classes] == [None, None, "data", "data"]
    with pytest.raises(ValueError, match=r"strategy must be one of \('jit', 'mesh', "):
        strategy_class("ddp")
    with pytest.raises(ValueError, match="strategy must be one of"):
        Engine(toy.task(), strategy="ddp")
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("batch",))
    with pytest.raises(ValueError, match="the mesh needs an axis named 'data'"):
        Engine(toy.task(), strategy="mesh", mesh=mesh)
    assert Engine(toy.task(), strategy="jit", mesh=mesh).mesh is None  # ignored


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_places_and_reads_back_one_copy(strategy):
    _, batcher, engine, host = _setup(strategy=strategy)
    placed = engine.place_state(host)
    n = jax.device_count()
    lead = (n,) if strategy == "pmap" else ()
    assert placed.params["model"]["params"]["Dense_0"]["bias"].shape == (*lead, 16)
    back = engine.fetch_state(placed)
    for a, b in zip(_leaves(host), _leaves(back), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert jax.tree.structure(engine.params(placed)) == jax.tree.structure(host.params)
    assert engine.model_state(placed) == {}
    assert int(engine.one_replica(placed.step)) == 0
    batch = engine.place_batch(batcher.raw_batch(0))
    state, metrics = engine.step(placed, batch)
    assert int(engine.fetch_state(state).step) == 1
    assert np.shape(engine.one_replica(jax.device_get(metrics))["loss"]) == ()


def test_fit_state_template_is_init_state_under_jit():
    _, batcher, _, host = _setup()
    raw = batcher.raw_batch(0)
    eager = init_state(toy.task(), jax.random.PRNGKey(0), prepare(raw, jax.random.PRNGKey(0)))
    for a, b in zip(_leaves(eager), _leaves(host), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
