"""The library without its optional packages: ``import genjax`` and training on in-memory
arrays need neither tensorflow-datasets, array-record nor tensorboardX (a GPU machine
without them runs the engine), while every public name of ``genjax.data`` stays importable.
"""

import subprocess
import sys
import textwrap

import genjax.data
from genjax.data import sources

# Run in a fresh interpreter where importing any of the three packages fails, as if absent.
WITHOUT_OPTIONAL = textwrap.dedent(
    """
    import sys
    for name in ("tensorflow_datasets", "array_record", "tensorboardX"):
        sys.modules[name] = None
    import tempfile
    import jax, jax.numpy as jnp, numpy as np, optax
    import genjax, genjax.cli, genjax.data, genjax.models, genjax.train
    from genjax.data import Dataset, DatasetError
    from genjax.train import Engine, Task, TrainConfig, fit, init_state

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype(np.float32)
    y = rng.normal(size=16).astype(np.float32)

    # Three engine steps of least squares with SGD, against the same steps in numpy:
    # w <- w - lr * 2 X^T (X w - y) / N.
    def lstsq(w, batch, key):
        loss = jnp.mean((batch["x"] @ w - batch["y"]) ** 2)
        return loss, {"mse": loss}

    task = Task.from_loss(lambda key, batch: jnp.zeros(3), lstsq, optax.sgd(0.1))
    engine = Engine(task, lambda raw, key: raw, donate=False)
    batch = {"x": x, "y": y}
    state = engine.place_state(init_state(task, jax.random.PRNGKey(0), batch))
    for _ in range(3):
        state, metrics = engine.step(state, engine.place_batch(batch))
    w = np.zeros(3)
    for _ in range(3):
        w = w - 0.1 * 2 * x.T @ (x @ w - y) / len(y)
    np.testing.assert_allclose(np.asarray(state.params["model"]), w, rtol=1e-5, atol=1e-6)

    # fit on an in-memory Dataset, full batches: mu <- mu - lr * 2 (mu - mean(x)).
    def centre(mu, batch, key):
        loss = jnp.mean(jnp.sum((batch["x"] - mu) ** 2, axis=-1))
        return loss, {}

    mean_task = Task.from_loss(lambda key, batch: jnp.zeros(3), centre, optax.sgd(0.1))
    data = Dataset("toy", "train", {"x": x})
    config = TrainConfig(steps=4, batch_size=16, progress=False, tensorboard=False)
    result = fit(mean_task, data, config, tempfile.mkdtemp())
    mu = np.zeros(3)
    for _ in range(4):
        mu = mu - 0.1 * 2 * (mu - x.mean(axis=0))
    np.testing.assert_allclose(np.asarray(result.state.params["model"]), mu, rtol=1e-5)

    # TensorBoard logs (the default) name the missing package and the switch.
    try:
        fit(mean_task, data, TrainConfig(steps=1, batch_size=16, progress=False),
            tempfile.mkdtemp())
    except ModuleNotFoundError as error:
        assert "tensorboardX" in str(error) and "train.tensorboard=false" in str(error), error
    else:
        raise AssertionError("fit with tensorboard=True ran without tensorboardX")

    # The synthetic sets load; a TFDS set is one DatasetError naming the packages.
    assert genjax.data.load("ring8", "test").features["x"].shape == (10000, 2)
    try:
        genjax.data.load("mnist", "test")
    except DatasetError as error:
        assert "tensorflow-datasets" in str(error), error
    else:
        raise AssertionError("load('mnist') ran without tensorflow_datasets")
    assert "tensorflow_datasets" not in {m for m in sys.modules if sys.modules[m] is not None}
    print("ok")
    """
)


def test_engine_and_fit_run_without_tfds_array_record_and_tensorboardx():
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_OPTIONAL], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "ok"


def test_builder_names_stay_importable_from_genjax_data():
    from genjax.data import BUILDERS, Digits, Mnist, builders, digits, mnist, prepare

    assert Mnist is mnist.Mnist and Digits is digits.Digits
    assert BUILDERS is builders.BUILDERS and prepare is builders.prepare
    # The static names that load() routes on are the builders' own, in the same order.
    assert tuple(BUILDERS) == sources.BUILDER_NAMES
    assert [cls.GENJAX_NAME for cls in BUILDERS.values()] == list(sources.BUILDER_NAMES)
    assert set(genjax.data.__all__) <= set(dir(genjax.data))
    for name in genjax.data.__all__:
        assert getattr(genjax.data, name) is not None
    try:
        genjax.data.no_such_name
    except AttributeError as error:
        assert "no_such_name" in str(error)
    else:
        raise AssertionError("genjax.data.no_such_name did not raise AttributeError")
