"""A small model for engine tests: a tanh autoencoder on flattened digits, with optional
input noise drawn from the step's key (so resumes must restore the RNG stream exactly)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

from genjax.data.sources import Dataset
from genjax.train import Task, TrainConfig


class AE(nn.Module):
    hidden: int = 16

    @nn.compact
    def __call__(self, x):
        h = nn.tanh(nn.Dense(self.hidden)(x))
        return nn.Dense(x.shape[-1])(h)


def digits_dataset(n=1024, nan_row=None) -> Dataset:
    """The first ``n`` of scikit-learn's digits as a Dataset (optionally with a NaN row)."""
    d = load_digits()
    if nan_row is None:
        feats = {"image": d.images[:n, :, :, None].astype(np.uint8)}
        return Dataset("digits-toy", "train", feats, image_max=16)
    x = (d.data[:n] / 16.0).astype(np.float32)
    x[nan_row] = np.nan
    return Dataset("digits-nan", "train", {"x": x})


def task(noise: float = 0.0, lr: float = 1e-2) -> Task:
    model = AE()

    def init(rng, batch):
        return model.init(rng, batch["x"])

    def loss(params, batch, rng):
        x = batch["x"]
        inp = x + noise * jax.random.normal(rng, x.shape, x.dtype) if noise else x
        err = jnp.sum((model.apply(params, inp) - x) ** 2, axis=-1)
        mse = jnp.mean(err)
        return mse, {"mse": mse}

    return Task.from_loss(init, loss, optax.adam(lr))


def train_config(steps: int, batch_size: int = 32, **fields) -> TrainConfig:
    """The ``TrainConfig`` of a toy run: ``steps`` steps of ``batch_size`` examples, no
    progress bar; ``fields`` set the rest (``TrainConfig``'s defaults otherwise)."""
    return TrainConfig(steps=steps, batch_size=batch_size, progress=False, **fields)


def kill_hooks(mode: str, kill_at: int):
    """Arms a subprocess to SIGKILL itself, for the resume tests: ``mode="save"`` dies at the
    moment Orbax would rename the finished temporary directory of step ``kill_at`` to its
    final name (the data written, the checkpoint not committed; dying right after
    ``Checkpointer.save`` returned raced the background writer, which under load had not yet
    created the temporary directory); ``mode="step"`` dies right after logging step
    ``kill_at``. Returns the ``on_log`` callback for ``fit``."""
    import os
    import signal

    if mode == "save":
        from orbax.checkpoint._src.path import atomicity

        real_finalize = atomicity.AtomicRenameTemporaryPath.finalize

        async def finalize_or_die(self, *args, **kwargs):
            if self.get_final().name == str(kill_at):
                os.kill(os.getpid(), signal.SIGKILL)
            return await real_finalize(self, *args, **kwargs)

        atomicity.AtomicRenameTemporaryPath.finalize = finalize_or_die

    def on_log(step, record):
        if mode == "step" and step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    return on_log


def flat_params(params) -> dict:
    """``{keystr(path): array}`` of a parameter tree, for ``np.savez``."""
    return {
        jax.tree_util.keystr(p): np.asarray(v)
        for p, v in jax.tree_util.tree_leaves_with_path(params)
    }


def run_worker(cmd: list[str], env=None, timeout=None):
    """Runs a resume worker ``cmd``: to completion (a ``CompletedProcess``, output captured,
    at most 600 s), or with ``timeout`` killed by an external SIGKILL after that many seconds
    wherever it is (the finished ``Popen``)."""
    import subprocess

    if timeout is None:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return proc


def load_params(path) -> dict:
    """The arrays a worker saved with ``np.savez``."""
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def cache_env(tmp_path) -> dict:
    """``os.environ`` with a compilation cache in ``tmp_path`` that every restart reuses (the
    same binaries, so the same numbers)."""
    import os

    env = dict(os.environ)
    env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "jax-cache")
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return env
