"""PPCA trained by gradients through the engine lands where the closed form lands."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.decomposition import PCA

from genjax.data import Preprocess, load
from genjax.models import ppca
from genjax.models.base import DataInfo
from genjax.train import Engine, TrainConfig, fit, init_state


@pytest.fixture(scope="module")
def digits_x():
    train = load("digits", "train")
    x = train.features["image"].reshape(train.num_examples, -1).astype(np.float64) / 16.0
    return train, x


def _objective(q, d=64):
    return ppca.PPCAConfig(latent_dim=q).objective(DataInfo(shape=(d,), name="digits"))


def _task(q, steps, lr=3e-2):
    schedule = optax.cosine_decay_schedule(lr, steps)
    return _objective(q).task(optax.adam(schedule))


def test_engine_gradient_training_reaches_the_closed_form(digits_x, tmp_path):
    train, x = digits_x
    q, steps = 10, 2000
    config = TrainConfig(
        steps=steps,
        batch_size=train.num_examples,  # full batch: the maximum is a fixed point
        fuse_steps=500,
        log_every=500,
        checkpoint_every=steps,
        data_on_device=True,
        progress=False,
    )
    result = fit(_task(q, steps), train, config, tmp_path, preprocess_spec=Preprocess(flatten=True))
    objective = _objective(q)
    learned = objective.ppca_params(result.state.params)
    x32 = jnp.asarray(x, jnp.float32)
    ll_grad = float(jnp.mean(ppca.log_likelihood(objective.model, learned, x32)))
    # Oracle: scikit-learn's PCA on the same data, converted to the ML (divide-by-N) optimum:
    # score() uses the N-1 covariance; the ML log-likelihood is higher by
    # (D/2)(log c + 1/c - 1), c = N/(N-1) (see ppca.fit_closed_form's docstring).
    n, d = x.shape
    c = n / (n - 1)
    ll_ml = PCA(n_components=q).fit(x).score(x) + 0.5 * d * (np.log(c) + 1 / c - 1)
    assert ll_grad == pytest.approx(ll_ml, rel=1e-3)
    assert ll_grad <= ll_ml + 1e-3 * abs(ll_ml)  # cannot beat the maximum


def test_engine_gradient_step_matches_finite_differences(digits_x):
    """One SGD step through the engine moves sigma2's raw parameter by -lr * dNLL/draw, the
    derivative taken by central differences of scipy's float64 Gaussian log-density."""
    from scipy.stats import multivariate_normal

    _, x = digits_x
    x = x[:64]
    lr = 1e-3
    task = _objective(3).task(optax.sgd(lr))
    batch = {"x": jnp.asarray(x, jnp.float32)}
    state = init_state(task, jax.random.PRNGKey(0), batch)
    new, _ = Engine(task, donate=False).step(state, batch)
    p = state.params["model"]["params"]
    W, mu = np.asarray(p["W"], np.float64), np.asarray(p["mu"], np.float64)
    raw = float(p["sigma2_unconstrained"])

    def nll(r):
        sigma2 = np.log1p(np.exp(r)) + ppca.SIGMA2_FLOOR
        cov = W @ W.T + sigma2 * np.eye(W.shape[0])
        return -np.mean(multivariate_normal(mu, cov).logpdf(x))

    h = 1e-5
    grad = (nll(raw + h) - nll(raw - h)) / (2 * h)
    got = float(new.params["model"]["params"]["sigma2_unconstrained"])
    assert got - raw == pytest.approx(-lr * grad, rel=1e-3)
