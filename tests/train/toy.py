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
