"""Tests for genjax.models.ppca against independent oracles.

Oracles: scikit-learn's ``PCA.score`` / ``components_`` / ``inverse_transform``, scipy's
``multivariate_normal`` and ``subspace_angles``, numpy eigendecompositions of the ``D x D``
covariance, numpy Gaussian conditioning, and Monte Carlo moments. Oracle comparisons run in
float64 (``jax.enable_x64``).
"""

from __future__ import annotations

import math

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg
import scipy.stats
from sklearn import datasets
from sklearn.decomposition import PCA

from genjax.models import ppca


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _standardize(x):
    return (x - x.mean(0)) / x.std(0)


# (name, loader, q, spectrum methods). Wine and breast cancer are standardized (their raw
# features span orders of magnitude); digits has constant pixels, so its covariance has exact
# zero eigenvalues. Both spectrum paths run on digits, one each elsewhere (compile time).
DATASETS = {
    "digits": (lambda: datasets.load_digits().data, 10, ("svd", "gram")),
    "iris": (lambda: datasets.load_iris().data, 2, ("gram",)),
    "wine": (lambda: _standardize(datasets.load_wine().data), 3, ("svd",)),
    "breast_cancer": (lambda: _standardize(datasets.load_breast_cancer().data), 5, ("gram",)),
}


def _model(params):
    """The :class:`ppca.PPCA` module of ``params``'s shapes (the functions' first argument)."""
    return ppca.PPCA(data_dim=params.data_dim, latent_dim=params.latent_dim)


def _mean_ll(params, x):
    return float(jnp.mean(ppca.log_likelihood(_model(params), params, x)))


def _scipy_mean_ll(params, x):
    cov = np.asarray(params.W) @ np.asarray(params.W).T + float(params.sigma2) * np.eye(x.shape[1])
    return float(scipy.stats.multivariate_normal(np.asarray(params.mu), cov).logpdf(x).mean())


def _assert_rel(actual, expected, rtol):
    assert abs(actual - expected) <= rtol * abs(expected), (actual, expected)


# ------------------------------------------------------------------------------------------------
# Closed form vs scikit-learn
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(DATASETS))
def test_closed_form_matches_sklearn(name, x64):
    """Average log-likelihood, noise variance, subspace and column norms against sklearn's PCA.

    sklearn's ``PCA.score`` uses the unbiased covariance (divisor N - 1): our ``ddof=1`` fit must
    give the same average log-likelihood, and the ML fit (``ddof=0``) must exceed it by exactly
    ``(D / 2) (log c + 1/c - 1)``, ``c = N / (N - 1)`` (see ``fit_closed_form``'s docstring)."""
    loader, q, methods = DATASETS[name]
    x = loader()
    n, d = x.shape
    sk = PCA(n_components=q, svd_solver="full").fit(x)
    sk_score = sk.score(x)
    lam_ml = sk.explained_variance_ * (n - 1) / n  # the top-q eigenvalues of the ML covariance
    for method in methods:
        p1 = ppca.fit_closed_form(x, q, ddof=1, method=method)
        assert p1.W.dtype == jnp.float64
        _assert_rel(_mean_ll(p1, x), sk_score, 1e-4)
        # The same number from scipy's dense Gaussian (checks the Woodbury path end to end).
        _assert_rel(_scipy_mean_ll(p1, x), sk_score, 1e-4)

        p0 = ppca.fit_closed_form(x, q, method=method)
        c = n / (n - 1)
        gap = 0.5 * d * (math.log(c) + 1.0 / c - 1.0)
        _assert_rel(_mean_ll(p0, x), sk_score + gap, 1e-4)
        assert _mean_ll(p0, x) - _mean_ll(p1, x) == pytest.approx(gap, rel=1e-6)
        # The ML noise variance is sklearn's rescaled to the divisor N.
        np.testing.assert_allclose(float(p0.sigma2), sk.noise_variance_ * (n - 1) / n, rtol=1e-8)

        # W spans the top-q principal subspace, with squared column norms l_i - sigma2 (T&B
        # eq. 7), and mu is the sample mean.
        angles = scipy.linalg.subspace_angles(np.asarray(p0.W), sk.components_.T)
        assert angles.max() < 1e-3, angles
        np.testing.assert_allclose(
            np.sum(np.asarray(p0.W) ** 2, axis=0), lam_ml - float(p0.sigma2), rtol=1e-8
        )
        np.testing.assert_allclose(np.asarray(p0.mu), x.mean(0), rtol=1e-12, atol=1e-12)


def test_closed_form_is_a_maximum(x64):
    """Perturbing the ML parameters in any direction lowers the likelihood."""
    x = datasets.load_iris().data
    p = ppca.fit_closed_form(x, 2)
    best = _mean_ll(p, x)
    rng = np.random.default_rng(0)
    for _ in range(5):
        dw = rng.normal(size=p.W.shape) * 1e-2
        q = ppca.PPCAParams(W=p.W + dw, mu=p.mu + rng.normal(size=4) * 1e-2, sigma2=p.sigma2 * 1.01)
        assert _mean_ll(q, x) < best


def test_closed_form_float32_and_jit():
    x = datasets.load_digits().data.astype(np.float32)
    p = ppca.fit_closed_form(x, 10)
    assert p.W.dtype == jnp.float32 and p.W.shape == (64, 10) and p.sigma2.shape == ()
    jitted = jax.jit(lambda a: ppca.fit_closed_form(a, 10))(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(jitted.W), np.asarray(p.W), rtol=1e-4, atol=1e-4)
    with jax.enable_x64(True):
        ref = _mean_ll(ppca.fit_closed_form(x.astype(np.float64), 10), x.astype(np.float64))
    _assert_rel(_mean_ll(p, x), ref, 1e-5)


# ------------------------------------------------------------------------------------------------
# N < D
# ------------------------------------------------------------------------------------------------


def _numpy_ml_oracle(x, q):
    """ML PPCA from the eigendecomposition of the D x D covariance (numpy, divisor N)."""
    xc = x - x.mean(0)
    s = xc.T @ xc / x.shape[0]
    evals, evecs = np.linalg.eigh(s)
    evals, evecs = evals[::-1], evecs[:, ::-1]
    sigma2 = evals[q:].mean()  # all D - q discarded eigenvalues, zeros included
    w = evecs[:, :q] * np.sqrt(evals[:q] - sigma2)
    return w, sigma2


def _shapes_in_jaxpr(jaxpr):
    shapes = set()
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            shapes.add(tuple(getattr(v.aval, "shape", ())))
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            shapes |= _shapes_in_jaxpr(sub)
    return shapes


def test_n_less_than_d_matches_covariance_oracle(x64):
    rng = np.random.default_rng(1)
    n, d, q = 20, 50, 3
    x = rng.normal(size=(n, q)) @ rng.normal(size=(q, d)) * 2.0 + rng.normal(size=(n, d))
    w_ref, s2_ref = _numpy_ml_oracle(x, q)
    # The same covariance reached through the N >= D path: tiling the data k times keeps the
    # mean and the divisor-N covariance unchanged.
    tiled = np.tile(x, (3, 1))
    assert tiled.shape[0] >= d
    fits = [ppca.fit_closed_form(x, q, method=m) for m in ("svd", "gram")]
    fits += [ppca.fit_closed_form(tiled, q, method=m) for m in ("svd", "gram")]
    for p in fits:
        np.testing.assert_allclose(float(p.sigma2), s2_ref, rtol=1e-9)
        w = np.asarray(p.W)
        np.testing.assert_allclose(w @ w.T, w_ref @ w_ref.T, rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(np.asarray(p.mu), x.mean(0), atol=1e-12)
    # Canonical signs: the two N < D methods agree on W itself, not just on W W^T.
    np.testing.assert_allclose(np.asarray(fits[0].W), np.asarray(fits[1].W), atol=1e-8)


def test_n_less_than_d_never_forms_d_by_d(x64):
    n, d, q = 20, 50, 3
    x = jnp.asarray(np.random.default_rng(2).normal(size=(n, d)))
    for method in ("svd", "gram"):
        jaxpr = jax.make_jaxpr(lambda a, m=method: ppca._closed_form(a, q, 0, m))(x).jaxpr
        assert (d, d) not in _shapes_in_jaxpr(jaxpr), method
    w0 = jnp.zeros((d, q))
    jaxpr = jax.make_jaxpr(lambda a: ppca._em(a, w0, 1.0, 3, False))(x).jaxpr
    assert (d, d) not in _shapes_in_jaxpr(jaxpr)


# ------------------------------------------------------------------------------------------------
# EM
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(DATASETS))
def test_em_reaches_closed_form_and_never_decreases(name, x64):
    loader, q, _ = DATASETS[name]
    x = loader()
    target = _mean_ll(ppca.fit_closed_form(x, q), x)
    params, trace = ppca.fit_em(x, q, steps=200, rng=jax.random.key(0))
    trace = np.asarray(trace)
    assert trace.shape == (201,)
    assert np.all(np.diff(trace) >= -1e-9 * np.abs(trace[1:])), np.diff(trace).min()
    assert trace[-1] > trace[0]
    _assert_rel(trace[-1], target, 1e-3)
    # The trace is the average log-likelihood of the returned parameters (scipy oracle).
    _assert_rel(_scipy_mean_ll(params, x), trace[-1], 1e-10)
    # At the optimum W = U_q (L_q - sigma2 I)^{1/2} R: W spans the principal subspace.
    angles = scipy.linalg.subspace_angles(np.asarray(params.W), PCA(q).fit(x).components_.T)
    assert angles.max() < 0.1, angles


def test_em_covariance_modes_and_warm_start_agree(x64):
    x = _standardize(datasets.load_wine().data)
    p_imp, t_imp = ppca.fit_em(x, 3, steps=20, rng=jax.random.key(3), covariance="implicit")
    p_exp, t_exp = ppca.fit_em(x, 3, steps=20, rng=jax.random.key(3), covariance="explicit")
    np.testing.assert_allclose(np.asarray(t_imp), np.asarray(t_exp), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(p_imp.W), np.asarray(p_exp.W), rtol=1e-8, atol=1e-10)
    # A warm start continues where the first run stopped, and keeps improving.
    _, t_b = ppca.fit_em(x, 3, steps=20, params=p_imp, covariance="implicit")
    np.testing.assert_allclose(np.asarray(t_b)[0], np.asarray(t_imp)[-1], rtol=1e-12)
    assert float(t_b[-1]) >= float(t_b[0])


def test_em_float32_runs():
    x = datasets.load_iris().data.astype(np.float32)
    params, trace = ppca.fit_em(x, 2, steps=200, rng=jax.random.key(0))
    assert params.W.dtype == jnp.float32 and trace.dtype == jnp.float32
    trace = np.asarray(trace)
    assert np.all(np.isfinite(trace))
    assert np.all(np.diff(trace) >= -1e-5 * np.abs(trace[1:]))  # float32 rounding only
    with jax.enable_x64(True):
        target = _mean_ll(ppca.fit_closed_form(x.astype(np.float64), 2), x.astype(np.float64))
    _assert_rel(float(trace[-1]), target, 1e-3)


# ------------------------------------------------------------------------------------------------
# Inference and generation
# ------------------------------------------------------------------------------------------------


def test_posterior_matches_gaussian_conditioning(x64):
    x = datasets.load_wine().data[:40]
    x = (x - x.mean(0)) / x.std(0)
    rng = np.random.default_rng(4)
    d, q = x.shape[1], 3
    p = ppca.PPCAParams(
        W=jnp.asarray(rng.normal(size=(d, q))),
        mu=jnp.asarray(rng.normal(size=d) * 0.1),
        sigma2=jnp.asarray(0.3),
    )
    w, mu, s2 = np.asarray(p.W), np.asarray(p.mu), float(p.sigma2)
    # Joint Gaussian of (z, x): Cov(z) = I, Cov(x) = W W^T + s2 I, Cov(z, x) = W^T.
    c = w @ w.T + s2 * np.eye(d)
    mean_ref = (w.T @ np.linalg.solve(c, (x - mu).T)).T
    cov_ref = np.eye(q) - w.T @ np.linalg.solve(c, w)
    model = ppca.PPCA(data_dim=d, latent_dim=q)
    mean, cov = ppca.posterior(model, p, x)
    np.testing.assert_allclose(np.asarray(mean), mean_ref, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(np.asarray(cov), cov_ref, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(
        np.asarray(ppca.encode(model, p, x)), mean_ref, rtol=1e-9, atol=1e-10
    )
    np.testing.assert_allclose(
        np.asarray(ppca.reconstruct(model, p, x)), mean_ref @ w.T + mu, rtol=1e-9, atol=1e-10
    )
    proj = w @ np.linalg.solve(w.T @ w, w.T)
    np.testing.assert_allclose(
        np.asarray(ppca.reconstruct(model, p, x, kind="orthogonal")),
        (x - mu) @ proj + mu,
        rtol=1e-9,
        atol=1e-10,
    )
    np.testing.assert_allclose(
        np.asarray(ppca.log_likelihood(model, p, x)),
        scipy.stats.multivariate_normal(mu, c).logpdf(x),
        rtol=1e-10,
    )


def test_reconstruct_at_ml_solution(x64):
    """Orthogonal variant = PCA reconstruction (sklearn); posterior variant shrinks toward mu by
    (l_i - sigma2) / l_i along each principal direction."""
    x = datasets.load_iris().data
    p = ppca.fit_closed_form(x, 2)
    model = ppca.PPCA(data_dim=4, latent_dim=2)
    sk = PCA(2).fit(x)
    np.testing.assert_allclose(
        np.asarray(ppca.reconstruct(model, p, x, kind="orthogonal")),
        sk.inverse_transform(sk.transform(x)),
        rtol=1e-9,
        atol=1e-9,
    )
    lam = sk.explained_variance_ * (x.shape[0] - 1) / x.shape[0]
    shrink = (lam - float(p.sigma2)) / lam
    u = sk.components_  # [q, D]
    expected = ((x - x.mean(0)) @ u.T * shrink) @ u + x.mean(0)
    np.testing.assert_allclose(
        np.asarray(ppca.reconstruct(model, p, x)), expected, rtol=1e-9, atol=1e-9
    )


def test_samples_have_model_covariance():
    x = datasets.load_digits().data.astype(np.float32)
    p = ppca.fit_closed_form(x, 10)
    model = ppca.PPCA(data_dim=64, latent_dim=10)
    s = np.asarray(ppca.sample(model, p, jax.random.key(5), 100_000), dtype=np.float64)
    assert s.shape == (100_000, 64)
    c = np.asarray(p.covariance(), dtype=np.float64)
    rel = np.linalg.norm(np.cov(s, rowvar=False) - c) / np.linalg.norm(c)
    assert rel < 0.05, rel
    # The mean: within a few standard errors per coordinate.
    se = np.sqrt(np.diag(c) / s.shape[0])
    assert np.all(np.abs(s.mean(0) - np.asarray(p.mu)) < 5 * se + 1e-6)


# ------------------------------------------------------------------------------------------------
# Choosing q
# ------------------------------------------------------------------------------------------------


def test_select_latent_dim(x64):
    rng = np.random.default_rng(6)
    d, q_true = 12, 3
    w = rng.normal(size=(d, q_true)) * 2.0

    def draw(n):
        return rng.normal(size=(n, q_true)) @ w.T + 1.0 + 0.5 * rng.normal(size=(n, d))

    x_train, x_test = draw(300), draw(2000)
    scores = ppca.select_latent_dim(x_train, x_test, [1, 2, 3, 4, 9])
    assert list(scores) == [1, 2, 3, 4, 9]
    for q in (2, 3, 9):
        w_ref, s2_ref = _numpy_ml_oracle(x_train, q)
        cov = w_ref @ w_ref.T + s2_ref * np.eye(d)
        expected = scipy.stats.multivariate_normal(x_train.mean(0), cov).logpdf(x_test).mean()
        assert scores[q] == pytest.approx(expected, rel=1e-10)
    assert max(scores, key=scores.get) == q_true
    assert scores[3] - scores[2] > 1.0  # a missing direction costs far more than an extra one
    assert scores[3] - scores[9] > 0.0


# ------------------------------------------------------------------------------------------------
# Flax module / engine objective
# ------------------------------------------------------------------------------------------------


def test_module_objective_and_variables_roundtrip(x64):
    x = jnp.asarray(datasets.load_iris().data)
    variables = ppca.init(jax.random.key(0), {"x": x[:4]}, 2)
    shapes = jax.tree.map(jnp.shape, variables["params"])
    assert shapes == {"W": (4, 2), "mu": (4,), "sigma2_unconstrained": ()}
    p = ppca.params_from_variables(variables)
    assert float(p.sigma2) == pytest.approx(1.0, rel=1e-6)
    module = ppca.PPCA(data_dim=4, latent_dim=2)
    np.testing.assert_allclose(
        np.asarray(jax.jit(module.apply)(variables, x)), _scipy_ll_per_example(p, x), rtol=1e-5
    )
    loss, metrics = jax.jit(ppca.objective)(variables, {"x": x}, jax.random.key(1))
    assert float(loss) == pytest.approx(-_scipy_mean_ll(p, np.asarray(x)), rel=1e-5)
    assert float(metrics["log_likelihood"]) == pytest.approx(-float(loss))
    # Closed form -> variables -> params round trip, and the ML point is stationary.
    cf = ppca.fit_closed_form(x, 2)
    v_cf = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), ppca.variables_from_params(cf))
    back = ppca.params_from_variables(v_cf)
    np.testing.assert_allclose(float(back.sigma2), float(cf.sigma2), rtol=1e-10)
    grads = jax.jit(jax.grad(lambda v: ppca.objective(v, {"x": x})[0]))(v_cf)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads)) < 1e-8


def _scipy_ll_per_example(p, x):
    x = np.asarray(x, np.float64)
    w = np.asarray(p.W, np.float64)
    c = w @ w.T + float(p.sigma2) * np.eye(x.shape[1])
    return scipy.stats.multivariate_normal(np.asarray(p.mu, np.float64), c).logpdf(x)


@pytest.mark.parametrize("name", ["iris", "wine", "breast_cancer"])
def test_adam_on_objective_reaches_closed_form(name):
    """Full-batch adam on the engine objective, from the module's random init, reaches the
    closed-form maximum. (Digits goes through the engine in test_ppca_engine.py: from a random
    init adam needs well over 1500 steps there.)"""
    loader, q, _ = DATASETS[name]
    x = jnp.asarray(loader(), jnp.float32)
    target = _mean_ll(ppca.fit_closed_form(x, q), x)
    variables = ppca.init(jax.random.key(0), {"x": x[:8]}, q)
    opt = optax.adam(0.1)
    batch = {"x": x}

    @jax.jit
    def train(v):
        def step(carry, _):
            v, s = carry
            (_, m), g = jax.value_and_grad(ppca.objective, has_aux=True)(v, batch, None)
            u, s = opt.update(g, s, v)
            return (optax.apply_updates(v, u), s), m["log_likelihood"]

        (v, _), lls = jax.lax.scan(step, (v, opt.init(v)), None, length=300)
        return v, lls

    variables, lls = train(variables)
    final = -float(jax.jit(ppca.objective)(variables, batch)[0])
    # The random init starts far outside the tolerance (10x), so reaching it means training.
    assert target - float(lls[0]) > 1e-2 * abs(target)
    _assert_rel(final, target, 1e-3)


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------


def _fitters():
    return {
        "closed_form": lambda x, q: ppca.fit_closed_form(x, q),
        "em": lambda x, q: ppca.fit_em(x, q, steps=2, rng=jax.random.key(0)),
        "select": lambda x, q: ppca.select_latent_dim(x, x, [q]),
    }


GOOD = np.random.default_rng(7).normal(size=(30, 5))


def _with(value, index=(3, 2)):
    x = GOOD.copy()
    x[index] = value
    return x


BAD_INPUTS = [
    ("q_equals_d", GOOD, 5, r"latent_dim must be < data_dim.*latent_dim=5, data_dim=5"),
    ("q_above_d", GOOD, 9, r"latent_dim must be < data_dim"),
    ("q_zero", GOOD, 0, r"latent_dim must be >= 1; got latent_dim=0"),
    ("q_negative", GOOD, -2, r"latent_dim must be >= 1"),
    ("q_float", GOOD, 2.0, r"latent_dim must be an int"),
    ("one_example", GOOD[:1], 1, r"at least 2 examples.*got 1 example"),
    ("too_few_for_q", GOOD[:3], 2, r"latent_dim \+ 2 = 4 examples"),
    ("nan", _with(np.nan), 2, r"x.* must be finite; got 1 NaN and 0 infinite"),
    ("inf", _with(-np.inf), 2, r"must be finite; got 0 NaN and 1 infinite"),
    ("one_d", GOOD[0], 2, r"must be a 2-D array.*got shape \(5,\)"),
    ("three_d", GOOD[None], 2, r"must be a 2-D array.*got shape \(1, 30, 5\)"),
]


@pytest.mark.parametrize("fitter", ["closed_form", "em", "select"])
@pytest.mark.parametrize(("case", "x", "q", "match"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_inputs_raise(fitter, case, x, q, match):
    with pytest.raises(ValueError, match=match):
        _fitters()[fitter](x, q)


def test_bad_inputs_inference():
    p = ppca.fit_closed_form(GOOD, 2)
    model = ppca.PPCA(data_dim=5, latent_dim=2)
    with pytest.raises(ValueError, match=r"x has data_dim=4 but params are for data_dim=5"):
        ppca.log_likelihood(model, p, GOOD[:, :4])
    with pytest.raises(ValueError, match=r"must be finite; got 1 NaN"):
        ppca.posterior(model, p, _with(np.nan))
    with pytest.raises(ValueError, match=r"2-D array"):
        ppca.reconstruct(model, p, GOOD[0])
    with pytest.raises(ValueError, match=r"kind must be"):
        ppca.reconstruct(model, p, GOOD, kind="pca")
    with pytest.raises(ValueError, match=r"n must be a non-negative int"):
        ppca.sample(model, p, jax.random.key(0), -1)
    with pytest.raises(ValueError, match=r"needs rng"):
        ppca.fit_em(GOOD, 2)
    with pytest.raises(ValueError, match=r"params.W has latent_dim=2 but latent_dim=3"):
        ppca.fit_em(GOOD, 3, params=p)
    with pytest.raises(ValueError, match=r"x_test must have the same data_dim"):
        ppca.select_latent_dim(GOOD, GOOD[:, :4], [2])
    with pytest.raises(ValueError, match=r"ddof must be 0"):
        ppca.fit_closed_form(GOOD, 2, ddof=2)
    with pytest.raises(ValueError, match=r"method must be"):
        ppca.fit_closed_form(GOOD, 2, method="eig")


# ------------------------------------------------------------------------------------------------
# The family's contract: PPCAConfig, PPCAObjective, (model, params, ...) functions
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -3, 2.0, True, "4", None])
def test_config_rejects_bad_latent_dim(bad):
    with pytest.raises(ValueError, match=r"^PPCAConfig\.latent_dim must be an int >= 1, got "):
        ppca.PPCAConfig(latent_dim=bad)


def test_config_defaults_registry_and_saved_keys():
    from genjax import models

    assert models.config_class("ppca") is ppca.PPCAConfig
    config = ppca.PPCAConfig()
    assert config.family == "ppca" and config.latent_dim == 10
    assert [f.name for f in __import__("dataclasses").fields(config)] == ["latent_dim"]
    # Runs saved before the split kept the evaluation settings in the model section.
    old = {"latent_dim": 3, "em_steps": 300, "select_q": [1, 2]}
    assert ppca.PPCAConfig.upgrade_saved(old) == {"latent_dim": 3}


@pytest.mark.parametrize(
    ("shape", "q", "match"),
    [
        ((8, 8, 1), 2, r"PPCA needs vector inputs \[D\]; got inputs of shape \(8, 8, 1\)"),
        ((5,), 5, r"^PPCAConfig\.latent_dim=5 must be smaller than the data dimension 5"),
        ((4,), 10, r"^PPCAConfig\.latent_dim=10 must be smaller than the data dimension 4"),
        ((1,), 1, r"^PPCAConfig\.latent_dim=1 must be smaller than the data dimension 1"),
    ],
)
def test_objective_refuses_shapes_it_cannot_take(shape, q, match):
    from genjax.models.base import DataInfo

    with pytest.raises(ValueError, match=match):
        ppca.PPCAConfig(latent_dim=q).objective(DataInfo(shape=shape, name="toy"))


def _objective(d=6, q=2):
    from genjax.models.base import DataInfo

    return ppca.PPCAConfig(latent_dim=q).objective(DataInfo(shape=(d,)))


def test_objective_builds_the_module_and_the_same_task_as_init_and_objective():
    """``objective.task`` is ``Task.from_loss(partial(ppca.init, latent_dim=q), ppca.objective)``:
    the same initial variables and the same loss and metrics."""
    obj = _objective()
    assert obj.model == ppca.PPCA(data_dim=6, latent_dim=2)
    assert obj.family == "ppca" and obj.config.latent_dim == 2
    batch = {"x": jnp.asarray(np.random.default_rng(0).normal(size=(16, 6)), jnp.float32)}
    rng = jax.random.key(3)
    mine = obj.init(rng, batch)
    theirs = ppca.init(rng, batch, 2)
    jax.tree.map(np.testing.assert_array_equal, mine, theirs)
    loss, metrics = obj.loss(mine, batch, rng)
    ref_loss, ref_metrics = ppca.objective(theirs, batch, rng)
    assert float(loss) == float(ref_loss)
    assert sorted(metrics) == ["log_likelihood", "sigma2"]
    jax.tree.map(np.testing.assert_array_equal, metrics, ref_metrics)
    task = obj.task(optax.sgd(0.1))
    assert task.single and [p.name for p in task.players] == ["model"]
    jax.tree.map(np.testing.assert_array_equal, task.init(rng, batch), {"model": theirs})
    with pytest.raises(ValueError, match=r'PPCAObjective.init: batch\["x"\] must have shape'):
        obj.init(rng, {"x": batch["x"][:, :5]})


def test_run_task_builds_one_optimizer_over_all_steps():
    calls = []

    def make_optimizer(steps, learning_rate):
        calls.append((steps, learning_rate))
        return optax.adam(1e-2)

    task = _objective().run_task(make_optimizer, 123)
    assert calls == [(123, None)] and task.single


def test_task_trains_and_the_loss_decreases():
    from genjax.train import Engine, init_state

    obj = _objective(d=8, q=2)
    x = jax.random.normal(jax.random.key(0), (64, 3)) @ jax.random.normal(jax.random.key(1), (3, 8))
    batch = {"x": x + 0.1 * jax.random.normal(jax.random.key(2), (64, 8))}
    task = obj.task(optax.adam(5e-2))
    state = init_state(task, jax.random.PRNGKey(0), batch)
    engine = Engine(task, donate=False)
    losses = []
    for _ in range(30):
        state, metrics = engine.step(state, batch)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < losses[0] - 1.0, losses
    assert float(metrics["log_likelihood"]) == pytest.approx(-losses[-1])


def test_inference_methods_on_engine_params():
    """The objective's methods take the engine's ``{"model": variables}``; they are the module
    functions on ``(objective.model, variables)`` and on the equivalent PPCAParams."""
    obj = _objective(d=6, q=2)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(5, 6)), jnp.float32)
    variables = obj.init(jax.random.key(0), {"x": x})
    params = {"model": variables}
    assert obj.functions() == ("sample", "encode", "reconstruct", "log_likelihood", "ppca_params")
    p = obj.ppca_params(params)
    assert isinstance(p, ppca.PPCAParams) and p.W.shape == (6, 2)
    np.testing.assert_array_equal(
        np.asarray(p.sigma2), ppca.params_from_variables(variables).sigma2
    )
    assert obj.sample(params, {}, jax.random.key(1), 7).shape == (7, 6)
    np.testing.assert_array_equal(
        obj.sample(params, {}, jax.random.key(1), 7),
        ppca.sample(obj.model, p, jax.random.key(1), 7),
    )
    assert obj.encode(params, {}, x).shape == (5, 2)
    np.testing.assert_array_equal(obj.encode(params, {}, x), ppca.encode(obj.model, p, x))
    assert obj.reconstruct(params, {}, x).shape == (5, 6)
    np.testing.assert_array_equal(
        obj.reconstruct(params, {}, x, kind="orthogonal"),
        ppca.reconstruct(obj.model, p, x, kind="orthogonal"),
    )
    assert obj.log_likelihood(params, {}, x).shape == (5,)
    np.testing.assert_array_equal(
        obj.log_likelihood(params, {}, x), ppca.log_likelihood(obj.model, variables, x)
    )
    with pytest.raises(NotImplementedError, match="no decoder"):
        obj.decode(params, {}, jnp.zeros((1, 2)))
    with pytest.raises(NotImplementedError, match="does not convert"):
        obj.convert(params, {}, x, 0, 1)


def test_functions_read_variables_with_the_models_floor():
    """``params`` may be the module's variables: read with the model's ``sigma2_floor``."""
    x = jnp.asarray(np.random.default_rng(2).normal(size=(4, 3)))
    variables = ppca.init(jax.random.key(0), {"x": x}, 1, sigma2_floor=0.5)
    model = ppca.PPCA(data_dim=3, latent_dim=1, sigma2_floor=0.5)
    p = ppca.params_from_variables(variables, sigma2_floor=0.5)
    assert float(p.sigma2) == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(
        np.asarray(ppca.log_likelihood(model, variables, x)),
        _scipy_ll_per_example(p, x),
        rtol=1e-5,
    )
    # The inner dict works too, and jit traces through the checks.
    inner = variables["params"]
    np.testing.assert_allclose(
        np.asarray(jax.jit(lambda v, a: ppca.encode(model, v, a))(inner, x)),
        np.asarray(ppca.encode(model, p, x)),
        rtol=1e-6,
    )


def test_functions_check_params_against_the_model():
    p = ppca.fit_closed_form(GOOD, 2)
    x = GOOD
    with pytest.raises(ValueError, match=r"model must be a ppca.PPCA module.*got PPCAParams"):
        ppca.log_likelihood(p, p, x)
    with pytest.raises(ValueError, match=r"latent_dim must be < data_dim"):
        ppca.sample(ppca.PPCA(data_dim=2, latent_dim=2), p, jax.random.key(0), 1)
    with pytest.raises(
        ValueError,
        match=r"params are for data_dim=5, latent_dim=2 \(params.W has shape \(5, 2\)\) but the "
        r"model is PPCA\(data_dim=5, latent_dim=3\)",
    ):
        ppca.encode(ppca.PPCA(data_dim=5, latent_dim=3), p, x)
    with pytest.raises(ValueError, match=r"params are for data_dim=5.*PPCA\(data_dim=6"):
        ppca.sample(ppca.PPCA(data_dim=6, latent_dim=2), p, jax.random.key(0), 1)
    with pytest.raises(ValueError, match=r"variables are not PPCA variables: missing \['W'\]"):
        ppca.posterior(ppca.PPCA(data_dim=5, latent_dim=2), {"mu": 0, "sigma2_unconstrained": 0}, x)
    with pytest.raises(ValueError, match=r"params must be a PPCAParams or PPCA variables; got"):
        ppca.reconstruct(ppca.PPCA(data_dim=5, latent_dim=2), (p.W, p.mu, p.sigma2), x)
