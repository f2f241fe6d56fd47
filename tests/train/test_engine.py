"""The engine in one process: fused loops, players, model state, the guard, checkpoints."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import toy

from genjax.data import Preprocess
from genjax.data.sources import Dataset
from genjax.train import (
    SINGLE,
    Checkpointer,
    Engine,
    NonFiniteError,
    Player,
    Task,
    TrainConfig,
    chunk_ends,
    fit,
    init_state,
)

FLAT = Preprocess(flatten=True)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _prepare(raw, rng):
    from genjax.data.pipeline import preprocess

    return preprocess(raw, rng, FLAT, 16)


def _stack(data, steps, batch, seed=0):
    from genjax.data.pipeline import Batcher

    return Batcher(data, batch, seed).raw_batches(0, steps)


def test_scan_fused_equals_separate_steps():
    data = toy.digits_dataset(512)
    task = toy.task(noise=0.1)
    raws = _stack(data, 12, 32)
    engine = Engine(task, _prepare, donate=False)
    state0 = init_state(task, jax.random.PRNGKey(0), _prepare(raws_first(raws), None))
    s = state0
    for i in range(12):
        s, _ = engine.step(s, {k: v[i] for k, v in raws.items()})
    fused, metrics = engine.run(state0, raws)
    assert metrics["loss"].shape == (12,)
    assert int(fused.step) == int(s.step) == 12
    for a, b in zip(_leaves(s.params), _leaves(fused.params), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    # And the loop that gathers its batches on the device sees the same batches.
    resident = engine.place_resident(dict(data.features))
    dev, _ = engine.run_on_device(state0, resident, num_steps=12, batch_size=32, seed=0)
    for a, b in zip(_leaves(s.params), _leaves(dev.params), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_device_loop_crosses_epochs_with_the_host_batches():
    """The on-device loop draws each epoch's permutation once and carries it; across epoch
    boundaries, and resumed mid-epoch, it must gather exactly the host batcher's rows."""
    data = toy.digits_dataset(128)  # 4 steps per epoch at batch 32
    task = toy.task(noise=0.1)
    raws = _stack(data, 10, 32, seed=7)
    engine = Engine(task, _prepare, donate=False)
    state0 = init_state(task, jax.random.PRNGKey(0), _prepare(raws_first(raws), None))
    host, _ = engine.run(state0, raws)
    resident = engine.place_resident(dict(data.features))
    dev, _ = engine.run_on_device(state0, resident, num_steps=3, batch_size=32, seed=7)
    dev, _ = engine.run_on_device(dev, resident, num_steps=7, batch_size=32, seed=7)
    assert int(dev.step) == int(host.step) == 10
    for a, b in zip(_leaves(host.params), _leaves(dev.params), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def raws_first(raws):
    return {k: v[0] for k, v in raws.items()}


def test_two_players_alternate_k_to_1_as_computed_by_hand():
    """Two scalar players with SGD: a updated every step, b every 3rd step, each seeing the
    other's latest value. The oracle is the same recursion written out in plain Python."""
    lr = 0.1

    def loss_a(params, batch, rng):
        a, b = params["a"], params["b"]
        return jnp.mean((a - b - batch["x"]) ** 2), {}

    def loss_b(params, batch, rng):
        a, b = params["a"], params["b"]
        return jnp.mean((b + 0.5 * a - batch["x"]) ** 2), {}

    task = Task(
        init=lambda rng, batch: {"a": jnp.array(1.0), "b": jnp.array(-2.0)},
        players=(
            Player("a", loss_a, optax.sgd(lr)),
            Player("b", loss_b, optax.sgd(lr), every=3),
        ),
    )
    xs = np.linspace(-1, 1, 8 * 4).reshape(8, 4).astype(np.float32)
    engine = Engine(task, donate=False)
    state = init_state(task, jax.random.PRNGKey(0), {"x": xs[0]})
    state, metrics = engine.run(state, {"x": xs})

    a, b = 1.0, -2.0
    for step, x in enumerate(xs.astype(np.float64)):
        a = a - lr * np.mean(2 * (a - b - x))
        if (step + 1) % 3 == 0:
            b = b - lr * np.mean(2 * (b + 0.5 * a - x))
    np.testing.assert_allclose(float(state.params["a"]), a, rtol=1e-5)
    np.testing.assert_allclose(float(state.params["b"]), b, rtol=1e-5)
    assert set(metrics) >= {"a/loss", "b/loss", "nonfinite"}


def test_stateful_loss_and_post_update_hook():
    """Model state: a running mean of the batch means (EMA 0.5) and a step counter set by
    the post-update hook; checked against the same arithmetic by hand."""

    def loss(params, state, batch, rng):
        mean = jnp.mean(batch["x"])
        new = {"ema": 0.5 * state["ema"] + 0.5 * mean, "seen": state["seen"]}
        return jnp.mean((params - batch["x"]) ** 2), ({}, new)

    def hook(params, state, step):
        return {**state, "seen": step + 1}

    task = Task.from_loss(
        lambda rng, b: jnp.zeros(()),
        loss,
        optax.sgd(0.1),
        stateful=True,
        init_model_state=lambda rng, b, p: {"ema": jnp.array(0.0), "seen": jnp.array(0)},
        post_update=hook,
    )
    xs = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)
    engine = Engine(task, donate=False)
    state = init_state(task, jax.random.PRNGKey(0), {"x": xs[0]})
    state, _ = engine.run(state, {"x": xs})
    ema = 0.0
    for x in xs:
        ema = 0.5 * ema + 0.5 * x.mean()
    np.testing.assert_allclose(float(state.model_state["ema"]), ema, rtol=1e-6)
    assert int(state.model_state["seen"]) == 5


def test_donated_run_from_a_fresh_state_with_aliased_leaves():
    """The default engine donates the state. A fresh ``init_state`` whose model state holds
    the parameters' own arrays (an EMA started as the weights, say) must still run, and give
    the numbers of the engine that does not donate. The oracle is the same arithmetic by hand:
    SGD on ``mean((w - x)^2)`` with the EMA of ``w`` after each step."""

    def loss(params, state, batch, rng):
        return jnp.mean((params["w"] - batch["x"]) ** 2), ({}, state)

    def hook(params, state, step):
        return {"ema": jax.tree.map(lambda e, p: 0.5 * e + 0.5 * p, state["ema"], params)}

    def make_task():
        return Task.from_loss(
            lambda rng, b: {"w": jnp.zeros(3)},
            loss,
            optax.sgd(0.1),
            stateful=True,
            init_model_state=lambda rng, b, p: {"ema": p},  # the very same arrays
            post_update=hook,
        )

    xs = np.arange(4 * 3, dtype=np.float32).reshape(4, 3)
    results = []
    for donate in (True, False):
        task = make_task()
        engine = Engine(task, donate=donate)
        state = engine.place_state(init_state(task, jax.random.PRNGKey(0), {"x": xs[0]}))
        state, _ = engine.run(state, {"x": xs})
        results.append(state)
    w, ema = np.zeros(3), np.zeros(3)
    for x in xs.astype(np.float64):
        w = w - 0.1 * 2 * (w - x) / 3
        ema = 0.5 * ema + 0.5 * w
    for state in results:
        np.testing.assert_allclose(np.asarray(state.params[SINGLE]["w"]), w, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(state.model_state["ema"]["w"]), ema, rtol=1e-6)
        assert int(state.step) == 4


def test_bfloat16_compute_keeps_float32_params():
    data = toy.digits_dataset(256)
    task = toy.task()
    raws = _stack(data, 4, 64)
    engine = Engine(task, _prepare, compute_dtype="bfloat16", donate=False)
    state = init_state(task, jax.random.PRNGKey(0), _prepare(raws_first(raws), None))
    seen = []

    def spy_loss(params, batch, rng):
        seen.append((jax.tree.leaves(params)[0].dtype, batch["x"].dtype))
        return toy.task().players[0].loss(params, batch, rng)

    state, metrics = engine.run(state, raws)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
    assert np.all(np.isfinite(np.asarray(metrics["loss"])))
    assert float(metrics["loss"][-1]) < float(metrics["loss"][0])
    # The loss really ran in bfloat16.
    spy = Task.from_loss(lambda r, b: None, None, optax.sgd(0.1))  # placeholder, not used
    del spy
    probe = Engine(
        Task(task.init, (Player("model", spy_loss, optax.sgd(0.1)),)),
        _prepare,
        compute_dtype="bfloat16",
        donate=False,
    )
    probe.step(state, raws_first(raws))
    assert seen and seen[0] == (jnp.bfloat16, jnp.bfloat16)


def test_nonfinite_step_is_skipped_counted_and_run_continues(tmp_path):
    # One NaN example: every batch that contains it has a NaN loss and must change nothing.
    data = toy.digits_dataset(256, nan_row=5)
    config = toy.train_config(40, log_every=10, checkpoint_every=20)
    result = fit(toy.task(), data, config, tmp_path)
    per_epoch = 256 // 32
    assert int(result.state.skipped) == 40 // per_epoch  # the NaN row, once per epoch
    assert all(np.all(np.isfinite(x)) for x in _leaves(result.state.params))
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["skipped_steps"] == int(result.state.skipped)
    assert sum(line["nonfinite"] * 10 for line in lines) == pytest.approx(result.state.skipped)


def test_fit_logs_train_and_test_lines_and_keeps_the_best_checkpoint(tmp_path):
    """``eval_every`` evaluations land in metrics.jsonl as ``split: test`` lines with the
    evaluator's values (computed here from the parameters by hand: the full-data MSE), train
    lines carry rates, and the checkpoint of the best evaluation survives beside the latest."""
    data = toy.digits_dataset(256)
    task = toy.task()
    x_all = np.asarray(data.features["image"], np.float32).reshape(256, -1) / 16.0
    # A scripted metric: the best evaluation is the second. The first value is for the
    # evaluation fit makes before training, to check that best_metric is one of its metrics.
    scores = iter([0.0, 1.0, 3.0, 2.0])
    seen = []

    def evaluate(params, model_state):
        recon = toy.AE().apply(params[SINGLE], x_all)
        mse = float(np.mean(np.sum((np.asarray(recon) - x_all) ** 2, axis=-1)))
        seen.append(mse)
        return {"mse": mse, "score": next(scores)}

    config = toy.train_config(
        24,
        fuse_steps=4,
        log_every=4,
        eval_every=8,
        checkpoint_every=8,
        keep_checkpoints=1,
        best_metric="score",
        best_mode="max",
        async_checkpoints=False,
    )
    fit(task, data, config, tmp_path, preprocess_spec=FLAT, evaluate=evaluate)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    test = [line for line in lines if line["split"] == "test"]
    train = [line for line in lines if line["split"] == "train"]
    assert [line["step"] for line in test] == [8, 16, 24]
    assert len(seen) == 4  # the check before training, then steps 8, 16, 24
    assert [line["mse"] for line in test] == pytest.approx(seen[1:])
    assert seen[-1] < seen[1]  # the evaluations saw the parameters improve
    assert [line["step"] for line in train] == list(range(4, 25, 4))
    for line in train:
        assert line["steps_per_s"] > 0
        assert line["examples_per_s"] == pytest.approx(32 * line["steps_per_s"])
        assert np.isfinite(line["loss"])
    kept = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert kept == [16, 24]


def test_nonfinite_streak_stops_run_with_checkpoints_intact(tmp_path):
    x = np.full((64, 4), np.nan, np.float32)
    x[:32] = 1.0  # steps in the second half-epoch are all NaN
    data = Dataset("half-nan", "train", {"x": x})

    def loss(params, batch, rng):
        return jnp.mean((params - batch["x"]) ** 2), {}

    task = Task.from_loss(lambda r, b: jnp.zeros(4), loss, optax.sgd(0.1))
    config = toy.train_config(200, batch_size=1, log_every=8, checkpoint_every=8, max_bad_steps=5)
    with pytest.raises(NonFiniteError, match="max_bad_steps=5"):
        fit(task, data, config, tmp_path)
    ckpt = Checkpointer(tmp_path / "checkpoints")
    template = init_state(task, jax.random.PRNGKey(0), {"x": x[0]})
    state, _ = ckpt.restore_latest(jax.tree.map(np.asarray, template))
    ckpt.close()
    assert all(np.all(np.isfinite(v)) for v in _leaves(state))


def test_chunk_boundaries_depend_only_on_absolute_steps():
    cfg = TrainConfig(steps=23, fuse_steps=5, log_every=7, checkpoint_every=10)
    assert list(chunk_ends(0, cfg)) == [5, 7, 10, 14, 15, 20, 21, 23]
    assert list(chunk_ends(10, cfg)) == [14, 15, 20, 21, 23]


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("steps", 0, "train.steps"),
        ("batch_size", -1, "train.batch_size"),
        ("strategy", "ddp", "strategy must be one of"),
        ("compute_dtype", "float8", "compute_dtype"),
        ("best_mode", "best", "best_mode"),
    ],
)
def test_config_rejects_bad_values(field, value, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**{field: value})


def test_batch_larger_than_split_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="larger than the training split"):
        fit(toy.task(), toy.digits_dataset(64), TrainConfig(batch_size=128), tmp_path)


def test_checkpointer_keeps_the_last_n_and_the_best(tmp_path):
    task = toy.task()
    state = jax.tree.map(
        np.asarray,
        init_state(task, jax.random.PRNGKey(0), {"x": np.zeros((2, 64), np.float32)}),
    )
    ckpt = Checkpointer(tmp_path, keep=2, best_metric="score", best_mode="max")
    for step, score in [(1, 1.0), (2, 9.0), (3, 2.0), (4, 3.0), (5, 0.5)]:
        ckpt.save(state.replace(step=np.int32(step)), {"step": step}, {"score": score})
    ckpt.wait()
    assert ckpt.steps() == [2, 4, 5]  # the best (2) and the last two
    restored, meta = ckpt.restore_latest(state)
    ckpt.close()
    assert int(restored.step) == 5 and meta == {"step": 5}


def test_checkpointer_refuses_nonfinite_state(tmp_path):
    from genjax.train import CheckpointError

    state = jax.tree.map(
        np.asarray,
        init_state(toy.task(), jax.random.PRNGKey(0), {"x": np.zeros((2, 64), np.float32)}),
    )
    bad = jax.tree.map(lambda x: x * np.nan if x.dtype == np.float32 else x, state)
    ckpt = Checkpointer(tmp_path)
    with pytest.raises(CheckpointError, match="non-finite"):
        ckpt.save(bad, {"step": 0})
    ckpt.close()
    assert ckpt.steps() == []


def test_progress_bar_shows_each_players_loss():
    from genjax.train.loop import _loss_postfix

    assert _loss_postfix({"loss": 2.0, "mse": 1.0}) == {"loss": "2"}
    # A GAN has no "loss": the bar shows each player's, not a NaN.
    got = _loss_postfix({"disc/loss": 1.3, "gen/loss": 0.75, "disc/r1": 0.1, "nonfinite": 0.0})
    assert got == {"disc_loss": "1.3", "gen_loss": "0.75"}
