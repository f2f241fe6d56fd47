"""The variational autoencoder (Kingma & Welling, 2014), with MLP, convolutional and linear
encoder/decoder pairs, Bernoulli and Gaussian likelihoods.

The model, with ``x`` one example of shape ``data_shape`` and ``z`` in ``R^q``::

    p(z) = N(0, I_q)
    q_phi(z | x) = N(mean_phi(x), diag(exp(log_var_phi(x))))                         encoder
    p_theta(x | z) = prod_j Bernoulli(x_j; sigmoid(logits_theta(z)_j))                decoder, or
    p_theta(x | z) = prod_j N(x_j; mean_theta(z)_j, sigma2_j)                         Gaussian

and the training objective is the evidence lower bound, per example,

    ELBO(x) = E_q[log p_theta(x | z)] - KL(q_phi(z | x) || p(z))  <=  log p_theta(x),

with the KL in closed form (``losses.gaussian_kl``) and the expectation estimated by one
reparameterised sample ``z = mean + exp(log_var / 2) * eps``, ``eps ~ N(0, I)``. Options:
``beta`` (Higgins et al., 2017) weights the KL, a linear KL warm-up over the first ``S`` steps
(Bowman et al., 2016; Sonderby et al., 2016), and free bits (Kingma et al., 2016), all through
``losses.elbo``. Evaluation reports the plain ELBO (``beta = 1``, no free bits) and the
importance-weighted bound of Burda et al. (2016) with many samples
(:func:`log_weights` + ``genjax.eval.iwae_log_likelihood``).

Architectures (:class:`VAE` ``architecture``):

* ``"mlp"``: ``x`` flattened -> ``MLP(hidden)`` -> ``Dense(2 q)`` for ``(mean, log_var)``;
  ``z -> MLP(reversed(hidden)) -> Dense(D)`` reshaped to ``data_shape``. Any ``data_shape``.
  The IWAE paper's one-stochastic-layer MNIST model is ``hidden=(200, 200)``, ``tanh``, ``q=50``.
* ``"conv"``: ``genjax.nn.ConvEncoder(hidden)`` (stride-2 convolutions) -> flatten ->
  ``Dense(2 q)``; ``genjax.nn.ConvDecoder(data_shape, reversed(hidden))`` (stride-2 transposed
  convolutions). ``data_shape = (H, W, C)`` with ``H`` and ``W`` multiples of
  ``2^len(hidden)`` (8x8 and 28x28 with two stages, 32x32x3 with up to five).
* ``"linear"``: ``mean = A x + a``, ``log_var`` a free ``[q]`` vector (the same for every ``x``),
  decoder ``W z + b``. With the Gaussian likelihood and ``variance="isotropic"`` this is the
  linear VAE whose optimal ELBO equals the maximum PPCA log-likelihood (Lucas et al., 2019):
  the maximum-likelihood ``W`` can be rotated so that the exact posterior is diagonal.

Likelihoods: ``"bernoulli"`` (decoder logits; ``x`` binary, or grey levels in ``[0, 1]`` for
which it is the cross-entropy, not a normalised density) and ``"gaussian"`` with ``variance``
``"fixed"`` (``fixed_variance``), ``"isotropic"`` (one learned ``sigma2``) or ``"pixel"`` (a
learned ``sigma2_j`` per pixel, independent of ``z``). Learned variances are bounded below,
``sigma2 = min_variance + exp(raw)``, because pixels that are constant in the training set would
otherwise drive their variance, and the likelihood, to infinity.

Every function here takes the module (a hashable description of the architecture) and its
variables ``params = {"params": ...}`` (as :func:`init` returns and the engine trains).
Public functions check shapes, and, for concrete arrays, that Bernoulli data lie in
``[0, 1]``; they raise ``ValueError`` naming the argument.

References:
  D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
  Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
  I. Higgins et al., "beta-VAE", ICLR 2017.
  S. R. Bowman et al., "Generating Sentences from a Continuous Space", CoNLL 2016.
  D. P. Kingma et al., "Improved Variational Inference with Inverse Autoregressive Flow",
  NeurIPS 2016 (free bits).
  J. Lucas, G. Tucker, R. Grosse, M. Norouzi, "Don't Blame the ELBO! A Linear VAE Perspective
  on Posterior Collapse", NeurIPS 2019.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax import losses as L
from genjax._checks import check_int as _check_count
from genjax._checks import is_concrete as _is_concrete
from genjax.nn import MLP, ConvDecoder, ConvEncoder, check_image_shape, get_activation

__all__ = [
    "ARCHITECTURES",
    "LIKELIHOODS",
    "VAE",
    "VARIANCES",
    "check_data",
    "check_model",
    "decode_mean",
    "elbo",
    "encode",
    "init",
    "init_warmup_state",
    "interpolate",
    "kl_weight",
    "log_px_given_z",
    "log_weights",
    "objective",
    "reconstruct",
    "sample",
    "warmup_objective",
    "warmup_post_update",
]

ARCHITECTURES = ("mlp", "conv", "linear")
LIKELIHOODS = ("bernoulli", "gaussian")
VARIANCES = ("fixed", "isotropic", "pixel")

_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------------


def check_model(m: VAE) -> tuple[int, ...]:
    """Validates a :class:`VAE`'s fields (Flax defers ``setup``, so construction does not);
    returns ``data_shape`` as a tuple of ints. Raises ``ValueError`` naming the field."""
    shape = m.data_shape
    if (
        not isinstance(shape, tuple)
        or len(shape) < 1
        or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape)
    ):
        raise ValueError(
            f"VAE.data_shape must be a non-empty tuple (hashable, not a list) of positive "
            f"ints, got {shape!r}"
        )
    shape = tuple(shape)
    q = m.latent_dim
    if isinstance(q, bool) or not isinstance(q, int) or q < 1:
        raise ValueError(f"VAE.latent_dim must be an int >= 1, got {q!r}")
    if m.architecture not in ARCHITECTURES:
        raise ValueError(f"VAE.architecture must be one of {ARCHITECTURES}, got {m.architecture!r}")
    if m.likelihood not in LIKELIHOODS:
        raise ValueError(f"VAE.likelihood must be one of {LIKELIHOODS}, got {m.likelihood!r}")
    if m.variance not in VARIANCES:
        raise ValueError(f"VAE.variance must be one of {VARIANCES}, got {m.variance!r}")
    if not (isinstance(m.fixed_variance, int | float) and m.fixed_variance > 0):
        raise ValueError(f"VAE.fixed_variance must be a number > 0, got {m.fixed_variance!r}")
    if not (isinstance(m.min_variance, int | float) and m.min_variance > 0):
        raise ValueError(f"VAE.min_variance must be a number > 0, got {m.min_variance!r}")
    if not (isinstance(m.init_variance, int | float) and m.init_variance > m.min_variance):
        raise ValueError(
            f"VAE.init_variance must be a number > min_variance = {m.min_variance}, "
            f"got {m.init_variance!r}"
        )
    hidden = m.hidden
    if not isinstance(hidden, tuple) or any(
        isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden
    ):
        raise ValueError(
            f"VAE.hidden must be a tuple (hashable, not a list) of positive ints, got {hidden!r}"
        )
    if m.architecture == "conv":
        if len(shape) != 3:
            raise ValueError(
                f"VAE(architecture='conv') needs images, data_shape = (H, W, C), got {shape} "
                "(do not flatten the inputs of a convolutional model)"
            )
        if not hidden:
            raise ValueError("VAE(architecture='conv') needs at least one stage in hidden, got ()")
        check_image_shape(shape, len(hidden), owner=f"VAE(architecture='conv', hidden={hidden})")
    get_activation(m.activation, name="VAE.activation")
    return shape


class VAE(nn.Module):
    """Encoder ``q(z | x)``, decoder ``p(x | z)`` and likelihood of a VAE (see the module doc).

    Methods (call through ``module.apply(params, ..., method=...)`` or the functions below):
    ``encode(x) -> (mean, log_var)``, ``decode(z) -> logits or means`` (``[B, *data_shape]``),
    ``decoder_log_var() -> log sigma2`` (Gaussian; broadcastable to ``data_shape``),
    ``log_px_given_z(x, z) -> [B]``, and ``__call__(x)``, used by :func:`init`, which runs all
    of them at the posterior mean.

    Attributes:
      data_shape: the shape of one example ``x``: ``(D,)`` for vectors, ``(H, W, C)`` images.
      latent_dim: ``q >= 1``.
      architecture: ``"mlp"``, ``"conv"`` or ``"linear"``.
      hidden: MLP widths or conv channels of the encoder, fine to coarse; the decoder mirrors
        them. Ignored by ``"linear"``.
      activation: a name in ``genjax.nn.ACTIVATIONS`` (or a callable).
      likelihood: ``"bernoulli"`` or ``"gaussian"``.
      variance: Gaussian only: ``"fixed"``, ``"isotropic"`` or ``"pixel"``.
      fixed_variance: the variance of ``variance="fixed"``.
      min_variance: lower bound of a learned variance.
      init_variance: initial value of a learned variance (``> min_variance``). Adam moves the
        log-variance by about the learning rate per step, so starting near the data's
        per-pixel variance (about 0.1 for images in [0, 1]) saves thousands of steps.
      kernel_size: conv kernel size.
    """

    data_shape: Sequence[int]
    latent_dim: int
    architecture: str = "mlp"
    hidden: Sequence[int] = (200, 200)
    activation: Any = "relu"
    likelihood: str = "bernoulli"
    variance: str = "isotropic"
    fixed_variance: float = 1.0
    min_variance: float = 1e-3
    init_variance: float = 1.0
    kernel_size: int = 4

    def setup(self):
        shape = check_model(self)
        q = self.latent_dim
        hidden = tuple(self.hidden)
        size = int(np.prod(shape))
        if self.architecture == "mlp":
            self.encoder = MLP((*hidden, 2 * q), activation=self.activation)
            self.decoder = MLP((*hidden[::-1], size), activation=self.activation)
        elif self.architecture == "linear":
            self.encoder = nn.Dense(q)
            self.encoder_log_var = self.param("encoder_log_var", nn.initializers.zeros, (q,))
            self.decoder = nn.Dense(size)
        else:
            self.encoder = ConvEncoder(
                hidden, kernel_size=self.kernel_size, activation=self.activation
            )
            self.encoder_head = nn.Dense(2 * q)
            self.decoder = ConvDecoder(
                shape,
                hidden[::-1],
                kernel_size=self.kernel_size,
                activation=self.activation,
            )
        if self.likelihood == "gaussian" and self.variance != "fixed":
            var_shape = () if self.variance == "isotropic" else shape
            raw0 = math.log(self.init_variance - self.min_variance)
            self.raw_variance = self.param(
                "raw_variance", nn.initializers.constant(raw0), var_shape
            )

    def _check_x(self, x: jax.Array) -> None:
        shape = tuple(self.data_shape)
        if jnp.ndim(x) != len(shape) + 1 or tuple(jnp.shape(x)[1:]) != shape:
            raise ValueError(
                f"x must have shape [B, *data_shape] = [B, {', '.join(map(str, shape))}], "
                f"got {tuple(jnp.shape(x))}"
            )

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``x [B, *data_shape] -> (mean [B, q], log_var [B, q])``."""
        self._check_x(x)
        q = self.latent_dim
        if self.architecture == "linear":
            mean = self.encoder(x.reshape(x.shape[0], -1))
            return mean, jnp.broadcast_to(self.encoder_log_var, mean.shape).astype(mean.dtype)
        if self.architecture == "mlp":
            h = self.encoder(x.reshape(x.shape[0], -1))
        else:
            h = self.encoder_head(self.encoder(x).reshape(x.shape[0], -1))
        return h[:, :q], h[:, q:]

    def decode(self, z: jax.Array) -> jax.Array:
        """``z [B, q] -> [B, *data_shape]``: Bernoulli logits or Gaussian means."""
        if jnp.ndim(z) != 2 or jnp.shape(z)[1] != self.latent_dim:
            raise ValueError(f"z must have shape [B, {self.latent_dim}], got {jnp.shape(z)}")
        out = self.decoder(z)
        return out.reshape(z.shape[0], *self.data_shape)

    def decoder_log_var(self) -> jax.Array:
        """``log sigma2`` of the Gaussian likelihood: ``[]`` or ``data_shape`` (``pixel``)."""
        if self.likelihood != "gaussian":
            raise ValueError("decoder_log_var: the Bernoulli likelihood has no variance")
        if self.variance == "fixed":
            return jnp.asarray(math.log(self.fixed_variance), jnp.float32)
        # log(min_variance + exp(raw)), smooth and >= log(min_variance).
        return jnp.logaddexp(self.raw_variance, math.log(self.min_variance))

    def log_px_given_z(self, x: jax.Array, z: jax.Array) -> jax.Array:
        """``log p(x | z)`` per example: ``x [B, *data_shape]``, ``z [B, q]`` -> ``[B]``."""
        out = self.decode(z)
        if self.likelihood == "bernoulli":
            return L.bernoulli_log_likelihood(out, x)
        return L.gaussian_log_likelihood(x, out, self.decoder_log_var())

    def __call__(self, x: jax.Array) -> jax.Array:
        mean, _ = self.encode(x)
        return self.log_px_given_z(x, mean)


# --------------------------------------------------------------------------------------------
# Validation at the public boundary
# --------------------------------------------------------------------------------------------


def check_data(model: VAE, x: Any, name: str = "x") -> jax.Array:
    """Checks ``x`` against the model: shape ``[B, *data_shape]``, finite, and in ``[0, 1]`` for
    the Bernoulli likelihood. Value checks run only on concrete arrays (not under ``jit``).

    Returns ``x`` as a float32 array. Raises ``ValueError`` naming the problem.
    """
    check_model(model)
    x = jnp.asarray(x)
    shape = tuple(model.data_shape)
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        raise ValueError(
            f"{name} must have shape [B, *data_shape] = [B, {', '.join(map(str, shape))}], "
            f"got {tuple(x.shape)}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    if _is_concrete(x) and x.size:
        lo, hi = float(jnp.min(x)), float(jnp.max(x))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"{name} must be finite, got values in [{lo}, {hi}]")
        if model.likelihood == "bernoulli" and (lo < 0.0 or hi > 1.0):
            raise ValueError(
                f"{name} must lie in [0, 1] for the Bernoulli likelihood, got values in "
                f"[{lo:g}, {hi:g}] (scale images to [0, 1] and binarise them, or use "
                "likelihood='gaussian')"
            )
    return x


def _variables(params: Mapping[str, Any]) -> Mapping[str, Any]:
    return params if "params" in params else {"params": params}


# --------------------------------------------------------------------------------------------
# Initialisation and the engine's objective
# --------------------------------------------------------------------------------------------


def init(rng: jax.Array, example_batch: Mapping[str, Any], model: VAE) -> dict[str, Any]:
    """Initial variables ``{"params": ...}`` of ``model`` (for the engine, bind ``model`` with
    ``functools.partial(init, model=model)``).

    Args:
      rng: a ``jax.random`` key.
      example_batch: a dict with ``"x"`` ``[B, *data_shape]`` (only its shape is used).
      model: the :class:`VAE`.
    """
    check_model(model)
    x = example_batch["x"]
    shape = tuple(model.data_shape)
    if tuple(jnp.shape(x)[1:]) != shape:
        raise ValueError(
            f'batch["x"] must have shape [B, *data_shape] = [B, {", ".join(map(str, shape))}], '
            f"got {tuple(jnp.shape(x))}"
        )
    # One compiled call: eager initialisation would compile every small op on its own.
    return jax.jit(model.init)(rng, jnp.zeros((1, *shape), jnp.float32))


def _reparameterize(mean, log_var, rng):
    eps = jax.random.normal(rng, mean.shape, mean.dtype)
    return mean + jnp.exp(0.5 * log_var) * eps


def _terms(model: VAE, params, x, rng):
    """One reparameterised sample: ``(log p(x|z) [B], mean [B, q], log_var [B, q])``."""
    variables = _variables(params)
    mean, log_var = model.apply(variables, x, method=VAE.encode)
    z = _reparameterize(mean, log_var, rng)
    log_px = model.apply(variables, x, z, method=VAE.log_px_given_z)
    return log_px, mean, log_var


def _loss_and_metrics(model, params, batch, rng, weight, free_bits):
    x = batch["x"]
    log_px, mean, log_var = _terms(model, params, x, rng)
    objective_values = L.elbo(log_px, mean, log_var, weight, free_bits=free_bits)
    kl = L.gaussian_kl(mean, log_var)
    metrics = {
        "elbo": jnp.mean(log_px - kl),
        "log_px_given_z": jnp.mean(log_px),
        "kl": jnp.mean(kl),
        "kl_weight": jnp.asarray(weight, jnp.float32),
    }
    return -jnp.mean(objective_values), metrics


def objective(
    params: Mapping[str, Any],
    batch: Mapping[str, Any],
    rng: jax.Array,
    *,
    model: VAE,
    beta: float = 1.0,
    free_bits: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The engine's loss: minus the batch-mean ELBO, ``-(1/B) sum_b losses.elbo(...)_b``.

    ``losses.elbo(log p(x_b | z_b), mean_b, log_var_b, beta, free_bits)`` with one
    reparameterised ``z_b ~ q(z | x_b)`` and the analytic KL.

    Args:
      params: the model's variables (from :func:`init`).
      batch: a dict with ``"x"`` ``[B, *data_shape]``.
      rng: a ``jax.random`` key for the reparameterisation noise.
      model: the :class:`VAE` (bind with ``functools.partial``).
      beta: KL weight ``>= 0`` (1 is the ELBO).
      free_bits: nats per latent dimension below which the KL is not penalised (0 = off).

    Returns:
      ``(loss [], metrics)``; metrics (batch means): ``elbo`` (the true bound, ``beta = 1`` and
      no free bits), ``log_px_given_z``, ``kl``, ``kl_weight``.
    """
    return _loss_and_metrics(model, params, batch, rng, beta, free_bits)


def kl_weight(step: Any, beta: float, warmup_steps: int) -> jax.Array:
    """Linear KL warm-up: ``beta * min(1, step / warmup_steps)`` (``beta`` if no warm-up).

    ``step`` is the 0-based index of the update; the first update uses weight 0 and update
    ``warmup_steps`` and later use ``beta`` (Bowman et al., 2016; Sonderby et al., 2016).
    """
    if warmup_steps <= 0:
        return jnp.asarray(beta, jnp.float32)
    frac = jnp.clip(jnp.asarray(step, jnp.float32) / warmup_steps, 0.0, 1.0)
    return jnp.asarray(beta, jnp.float32) * frac


def init_warmup_state(beta: float, warmup_steps: int) -> dict[str, jax.Array]:
    """The model state that carries the KL weight of the next update: ``{"kl_weight": w(0)}``."""
    return {"kl_weight": kl_weight(0, beta, warmup_steps)}


def warmup_post_update(
    params: Any, model_state: Mapping[str, Any], step: Any, *, beta: float, warmup_steps: int
) -> dict[str, jax.Array]:
    """The engine's ``post_update`` hook: after update ``step`` it stores ``w(step + 1)``.

    The weight is a pure function of the engine's step counter (saved in every checkpoint), so
    a resumed run continues the schedule exactly; a step skipped by the non-finite guard still
    advances it, like the learning-rate schedule.
    """
    del params, model_state
    return {"kl_weight": kl_weight(step + 1, beta, warmup_steps)}


def warmup_objective(
    params: Mapping[str, Any],
    model_state: Mapping[str, Any],
    batch: Mapping[str, Any],
    rng: jax.Array,
    *,
    model: VAE,
    free_bits: float = 0.0,
) -> tuple[jax.Array, tuple[dict[str, jax.Array], Mapping[str, Any]]]:
    """The stateful form of :func:`objective` for KL warm-up: the KL weight is read from
    ``model_state["kl_weight"]`` (kept by :func:`warmup_post_update`), which is returned
    unchanged. Use with ``Task.from_loss(..., stateful=True, init_model_state=...,
    post_update=...)``."""
    loss, metrics = _loss_and_metrics(
        model, params, batch, rng, model_state["kl_weight"], free_bits
    )
    return loss, (metrics, model_state)


# --------------------------------------------------------------------------------------------
# Evaluation, inference and generation
# --------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("model",))
def _encode(model, params, x):
    return model.apply(_variables(params), x, method=VAE.encode)


def encode(model: VAE, params: Mapping[str, Any], x: Any) -> tuple[jax.Array, jax.Array]:
    """``q(z | x)``: ``x [B, *data_shape] -> (mean [B, q], log_var [B, q])``."""
    return _encode(model, params, check_data(model, x))


@functools.partial(jax.jit, static_argnames=("model",))
def _decode_mean(model, params, z):
    out = model.apply(_variables(params), z, method=VAE.decode)
    return jax.nn.sigmoid(out) if model.likelihood == "bernoulli" else out


def decode_mean(model: VAE, params: Mapping[str, Any], z: Any) -> jax.Array:
    """``E[x | z]``: ``z [B, q] -> [B, *data_shape]`` (probabilities for Bernoulli)."""
    z = jnp.asarray(z, jnp.float32)
    if z.ndim != 2 or z.shape[1] != model.latent_dim:
        raise ValueError(f"z must have shape [B, {model.latent_dim}], got {tuple(z.shape)}")
    return _decode_mean(model, params, z)


def log_px_given_z(model: VAE, params: Mapping[str, Any], x: Any, z: Any) -> jax.Array:
    """``log p(x | z)`` per example: ``x [B, *data_shape]``, ``z [B, q]`` -> ``[B]``."""
    x = check_data(model, x)
    return _log_px_given_z(model, params, x, jnp.asarray(z, jnp.float32))


@functools.partial(jax.jit, static_argnames=("model",))
def _log_px_given_z(model, params, x, z):
    return model.apply(_variables(params), x, z, method=VAE.log_px_given_z)


def reconstruct(model: VAE, params: Mapping[str, Any], x: Any) -> jax.Array:
    """``E[x | z = E_q[z | x]]``: decode the posterior mean, ``[B, *data_shape]``."""
    mean, _ = encode(model, params, x)
    return _decode_mean(model, params, mean)


@functools.partial(jax.jit, static_argnames=("model", "n", "mean"))
def _sample(model, params, rng, n, mean):
    z_rng, x_rng = jax.random.split(rng)
    z = jax.random.normal(z_rng, (n, model.latent_dim), jnp.float32)
    variables = _variables(params)
    out = model.apply(variables, z, method=VAE.decode)
    if model.likelihood == "bernoulli":
        probs = jax.nn.sigmoid(out)
        return probs if mean else jax.random.bernoulli(x_rng, probs).astype(jnp.float32)
    if mean:
        return out
    std = jnp.exp(0.5 * model.apply(variables, method=VAE.decoder_log_var))
    return out + std * jax.random.normal(x_rng, out.shape, out.dtype)


def sample(
    model: VAE, params: Mapping[str, Any], rng: jax.Array, n: int, *, mean: bool = False
) -> jax.Array:
    """``n`` draws ``x ~ p(x) = E_z p(x | z)``, ``[n, *data_shape]``.

    ``z ~ N(0, I)``, then ``x ~ p(x | z)`` (binary for Bernoulli, with the decoder noise for
    Gaussian), or, with ``mean=True``, ``E[x | z]`` (probabilities / means, the usual picture).
    """
    n = _check_count("n", n, 0)
    check_model(model)
    return _sample(model, params, rng, n, bool(mean))


def interpolate(
    model: VAE, params: Mapping[str, Any], x_from: Any, x_to: Any, steps: int = 10
) -> jax.Array:
    """Decode the straight line between the posterior means of ``x_from`` and ``x_to``.

    Args:
      x_from, x_to: ``[B, *data_shape]`` pairs of examples.
      steps: points on each line (``>= 2``; the ends are the two posterior means).

    Returns:
      ``[B, steps, *data_shape]`` decoded means ``E[x | z_t]``, ``z_t = (1 - t) m_a + t m_b``.
    """
    steps = _check_count("steps", steps, 2)
    m_a, _ = encode(model, params, x_from)
    m_b, _ = encode(model, params, x_to)
    if m_a.shape != m_b.shape:
        raise ValueError(
            f"x_from and x_to must hold as many examples, got {m_a.shape[0]} and {m_b.shape[0]}"
        )
    t = jnp.linspace(0.0, 1.0, steps)[None, :, None]
    z = (1.0 - t) * m_a[:, None, :] + t * m_b[:, None, :]
    out = _decode_mean(model, params, z.reshape(-1, model.latent_dim))
    return out.reshape(m_a.shape[0], steps, *model.data_shape)


@functools.partial(jax.jit, static_argnames=("model", "num_samples", "analytic_kl"))
def _elbo(model, params, x, rng, num_samples, analytic_kl):
    variables = _variables(params)
    mean, log_var = model.apply(variables, x, method=VAE.encode)
    keys = jax.random.split(rng, num_samples)

    def one(key):
        z = _reparameterize(mean, log_var, key)
        log_px = model.apply(variables, x, z, method=VAE.log_px_given_z)
        if analytic_kl:
            return L.elbo(log_px, mean, log_var)
        eps = (z - mean) * jnp.exp(-0.5 * log_var)
        log_q = -0.5 * jnp.sum(jnp.square(eps) + _LOG_2PI + log_var, axis=-1)
        log_p = -0.5 * jnp.sum(jnp.square(z) + _LOG_2PI, axis=-1)
        return log_px + log_p - log_q

    return jnp.mean(jax.lax.map(one, keys), axis=0)


def elbo(
    model: VAE,
    params: Mapping[str, Any],
    x: Any,
    rng: jax.Array,
    *,
    num_samples: int = 1,
    analytic_kl: bool = True,
) -> jax.Array:
    """The ELBO of each example (``beta = 1``, no free bits), ``[B]``.

    ``E_q[log p(x | z)] - KL(q(z | x) || N(0, I))`` with the expectation averaged over
    ``num_samples`` reparameterised draws. ``analytic_kl=False`` uses the Monte Carlo KL
    instead, ``log q(z | x) - log p(z)`` at the same draws (same expectation, more variance).
    """
    x = check_data(model, x)
    num_samples = _check_count("num_samples", num_samples)
    return _elbo(model, params, x, rng, num_samples, bool(analytic_kl))


@functools.partial(jax.jit, static_argnames=("model", "num_samples"))
def _log_weights(model, params, x, rng, num_samples):
    variables = _variables(params)
    mean, log_var = model.apply(variables, x, method=VAE.encode)
    b, q = mean.shape
    eps = jax.random.normal(rng, (num_samples, b, q), mean.dtype)
    z = mean + jnp.exp(0.5 * log_var) * eps  # [K, B, q]
    log_q = -0.5 * jnp.sum(jnp.square(eps) + _LOG_2PI + log_var, axis=-1)
    log_p = -0.5 * jnp.sum(jnp.square(z) + _LOG_2PI, axis=-1)
    x_rep = jnp.broadcast_to(x, (num_samples, *x.shape)).reshape(num_samples * b, *x.shape[1:])
    log_px = model.apply(variables, x_rep, z.reshape(num_samples * b, q), method=VAE.log_px_given_z)
    return log_px.reshape(num_samples, b), log_p, log_q


def log_weights(
    model: VAE, params: Mapping[str, Any], x: Any, rng: jax.Array, num_samples: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Importance-sampling terms for ``losses.iwae_bound``, each ``[K, B]``.

    With ``z_k ~ q(z | x)`` (``k = 1..K``): ``(log p(x | z_k), log p(z_k), log q(z_k | x))``.
    ``genjax.eval.iwae_log_likelihood`` calls this in chunks of ``K`` to bound memory.
    """
    x = check_data(model, x)
    num_samples = _check_count("num_samples", num_samples)
    return _log_weights(model, params, x, rng, num_samples)
