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
``losses.elbo`` (the warm-up's current weight is the model state of :class:`VAEObjective`).
Evaluation reports the plain ELBO (``beta = 1``, no free bits) and the importance-weighted
bound of Burda et al. (2016) with many samples
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

Training starts from :class:`VAEConfig` (every hyper-parameter of the model and of its
objective): ``VAEConfig(...).objective(DataInfo(shape=...))`` is a :class:`VAEObjective`
whose ``task(optimizer)`` the engine trains (see the example in :class:`VAEConfig`). Every
function here takes the module (``objective.model``, a hashable description of the
architecture) and its variables ``params = {"params": ...}`` first, in the order
``(model, params, data..., rng)``: :func:`sample`, :func:`encode`, :func:`decode`,
:func:`reconstruct`, :func:`elbo`, :func:`log_weights`. Public functions check shapes, and,
for concrete arrays, that Bernoulli data lie in ``[0, 1]``; they raise ``ValueError`` naming
the argument.

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

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax import losses
from genjax._checks import check_int as _check_count
from genjax.models import _vae_common as C
from genjax.models._vae_common import LIKELIHOODS, VARIANCES
from genjax.models.base import DataInfo, ModelConfig, single

__all__ = [
    "ARCHITECTURES",
    "LIKELIHOODS",
    "VAE",
    "VARIANCES",
    "VAEConfig",
    "VAEObjective",
    "check_data",
    "check_model",
    "decode",
    "elbo",
    "encode",
    "init",
    "interpolate",
    "kl_weight",
    "log_px_given_z",
    "log_weights",
    "loss",
    "reconstruct",
    "sample",
]

ARCHITECTURES = ("mlp", "conv", "linear")


# --------------------------------------------------------------------------------------------
# The hyper-parameters and the engine's objective
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VAEConfig(C.SavedKeys, ModelConfig):
    """Hyper-parameters of the VAE and of its training objective.

    Attributes:
      architecture: mlp | conv | linear (conv needs images [H, W, C], not flattened).
      hidden: MLP widths or conv channels of the encoder (the decoder mirrors them).
      latent_dim: q, the latent dimension (>= 1).
      activation: hidden-layer activation (relu, tanh, elu, ...).
      likelihood: bernoulli (binary data, or grey levels in [0, 1]) | gaussian.
      variance: gaussian only: fixed | isotropic (one learned sigma2) | pixel (learned per pixel).
      fixed_variance: the variance when variance=fixed.
      min_variance: lower bound of a learned variance.
      init_variance: initial learned variance (near the data's per-pixel variance).
      kernel_size: conv kernel size.
      beta: KL weight (1 = the ELBO; beta-VAE otherwise).
      warmup_steps: linear KL warm-up from 0 to beta over these steps (0 = none).
      free_bits: nats per latent dimension not penalised by the KL (0 = off).
      importance_samples: K, the samples per example of the training bound: 1 is the ELBO,
        K > 1 the importance-weighted bound L_K (the IWAE of Burda et al., 2016; needs
        beta = 1, no warm-up and no free bits, which L_K has no place for).

    Training a VAE on 64-d inputs with KL warm-up for two updates, then sampling::

        >>> import jax, jax.numpy as jnp, optax
        >>> from genjax.models import vae
        >>> from genjax.models.base import DataInfo
        >>> from genjax.train import Engine, init_state
        >>> config = vae.VAEConfig(hidden=(32,), latent_dim=2, warmup_steps=10)
        >>> objective = config.objective(DataInfo(shape=(64,)))
        >>> engine = Engine(objective.task(optax.adam(1e-3)))
        >>> batch = {"x": jnp.zeros((8, 64)), "label": jnp.zeros((8,), jnp.int32)}
        >>> state = init_state(engine.task, jax.random.PRNGKey(0), batch)
        >>> for _ in range(2):
        ...     state, metrics = engine.step(state, batch)
        >>> sorted(metrics)[:4], round(float(state.model_state["kl_weight"]), 6)
        (['elbo', 'kl', 'kl_weight', 'log_px_given_z'], 0.2)
        >>> objective.sample(state.params, state.model_state, jax.random.PRNGKey(1), 3).shape
        (3, 64)
    """

    family: ClassVar[str] = "vae"
    moved_to_eval: ClassVar[tuple[str, ...]] = (
        "elbo_samples",
        "iwae_samples",
        "iwae_chunk",
        "iwae_batch",
        "iwae_curve",
        "baseline_components",
        "baseline_em_steps",
        "baseline_pseudocount",
    )

    architecture: str = "mlp"
    hidden: tuple[int, ...] = (200, 200)
    latent_dim: int = 8
    activation: str = "tanh"
    likelihood: str = "bernoulli"
    variance: str = "isotropic"
    fixed_variance: float = 1.0
    min_variance: float = 1e-3
    init_variance: float = 0.1
    kernel_size: int = 4
    beta: float = 1.0
    warmup_steps: int = 0
    free_bits: float = 0.0
    importance_samples: int = 1

    def __post_init__(self):
        if isinstance(self.hidden, list):
            object.__setattr__(self, "hidden", tuple(self.hidden))
        C.check_fields(self, "VAEConfig", ARCHITECTURES)
        C.check_nonnegative(self._label("beta"), self.beta)
        _check_count(self._label("warmup_steps"), self.warmup_steps, 0)
        C.check_nonnegative(self._label("free_bits"), self.free_bits)
        _check_count(self._label("importance_samples"), self.importance_samples)
        if self.importance_samples > 1:
            for name, plain in (("beta", 1.0), ("warmup_steps", 0), ("free_bits", 0.0)):
                if getattr(self, name) != plain:
                    raise ValueError(
                        f"{self._label(name)}={getattr(self, name)!r} has no meaning in the "
                        f"importance-weighted bound ({self._label('importance_samples')}="
                        f"{self.importance_samples}); leave it at {plain!r}"
                    )

    def objective(self, info: DataInfo) -> VAEObjective:
        """The VAE for data of ``info.shape``; ``ValueError`` (naming the field) for data the
        config cannot take: conv on inputs that are not images (or whose size the stages do
        not divide), the Bernoulli likelihood on inputs not in ``[0, 1]``."""
        C.check_info(self, info)
        model = VAE(self, tuple(info.shape))
        check_model(model)
        return VAEObjective(config=self, info=info, model=model)


@dataclasses.dataclass(frozen=True)
class VAEObjective(C.OnePlayerObjective):
    """The VAE of a :class:`VAEConfig` on data of ``info``: the engine's loss (minus the
    batch-mean ELBO, :func:`loss`), and the model's functions on the engine's parameters.

    With ``config.warmup_steps > 0`` the loss is stateful: the KL weight of the next update
    is the model state ``{"kl_weight": w}``, set to ``w(0)`` by :meth:`init_model_state` and to
    ``w(step + 1)`` by :meth:`post_update` after update ``step`` (:func:`kl_weight`). The weight
    is a pure function of the engine's step counter (saved in every checkpoint), so a resumed
    run continues the schedule exactly; a step skipped by the non-finite guard still advances
    it, like the learning-rate schedule.

    Attributes:
      config: the :class:`VAEConfig`.
      info: the data's :class:`~genjax.models.base.DataInfo`.
      model: the :class:`VAE` module.
    """

    config: VAEConfig
    info: DataInfo
    model: VAE

    @property
    def stateful(self) -> bool:
        return self.config.warmup_steps > 0

    def init(self, rng: jax.Array, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Initial variables ``{"params": ...}`` (only ``batch["x"]``'s shape is used)."""
        return init(self.model, rng, batch)

    @property
    def loss(self):
        """The engine's loss: ``(params, batch, rng) -> (loss, metrics)``, or with warm-up
        ``(params, model_state, batch, rng) -> (loss, (metrics, model_state))``."""
        return self.warmup_loss if self.stateful else self.elbo_loss

    def elbo_loss(self, params, batch, rng):
        """:func:`loss` with the config's ``beta``, ``free_bits`` and ``importance_samples``."""
        c = self.config
        return loss(
            self.model,
            params,
            batch,
            rng,
            beta=c.beta,
            free_bits=c.free_bits,
            importance_samples=c.importance_samples,
        )

    def warmup_loss(self, params, model_state, batch, rng):
        """:func:`loss` with the KL weight ``model_state["kl_weight"]``, returned unchanged."""
        weight = model_state["kl_weight"]
        value, metrics = loss(
            self.model, params, batch, rng, beta=weight, free_bits=self.config.free_bits
        )
        return value, (metrics, model_state)

    def init_model_state(self, rng, batch, params) -> dict[str, jax.Array]:
        """``{"kl_weight": w(0)}``, the weight of the first update."""
        del rng, batch, params
        return {"kl_weight": kl_weight(0, self.config.beta, self.config.warmup_steps)}

    def post_update(self, params, model_state, step) -> dict[str, jax.Array]:
        """After update ``step``: ``{"kl_weight": w(step + 1)}``."""
        del params, model_state
        return {"kl_weight": kl_weight(step + 1, self.config.beta, self.config.warmup_steps)}

    # The model's functions on the engine's parameters. -------------------------------------

    def functions(self) -> tuple[str, ...]:
        return (*super().functions(), "posterior", "elbo", "log_weights")

    def sample(self, params, model_state, rng, n, *, mean: bool = False):
        """:func:`sample`: ``n`` draws ``[n, *shape]`` (``mean=True``: ``E[x | z]``)."""
        return sample(self.model, single(params), rng, n, mean=mean)

    def encode(self, params, model_state, x):
        """The posterior mean ``E_q[z | x]``, ``[B, q]``."""
        return encode(self.model, single(params), x)[0]

    def posterior(self, params, model_state, x):
        """``q(z | x)`` as ``(mean, log_var)``, each ``[B, q]``."""
        return encode(self.model, single(params), x)

    def decode(self, params, model_state, z):
        """:func:`decode`: ``E[x | z]``."""
        return decode(self.model, single(params), z)

    def reconstruct(self, params, model_state, x):
        """:func:`reconstruct`: ``E[x | z = E_q[z | x]]``."""
        return reconstruct(self.model, single(params), x)

    def elbo(self, params, model_state, x, rng, num_samples: int = 1):
        """:func:`elbo` of each example, ``[B]``."""
        return elbo(self.model, single(params), x, rng, num_samples=num_samples)

    def log_weights(self, params, model_state, x, rng, num_samples: int):
        """:func:`log_weights` (the terms of ``genjax.eval.iwae_log_likelihood``)."""
        return log_weights(self.model, single(params), x, rng, num_samples)


# --------------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------------


def check_model(m: VAE) -> tuple[int, ...]:
    """Validates a :class:`VAE` (Flax defers ``setup``, so construction does not): a
    :class:`VAEConfig` and a ``data_shape`` it can take; returns ``data_shape`` as a tuple of
    ints. Raises ``ValueError`` naming the field."""
    return C.check_module(m, VAEConfig)


class VAE(C.LikelihoodHead):
    """Encoder ``q(z | x)``, decoder ``p(x | z)`` and likelihood of a VAE (see the module doc).

    Methods (call through ``module.apply(params, ..., method=...)`` or the functions below):
    ``encode(x) -> (mean, log_var)``, ``decode(z) -> logits or means`` (``[B, *data_shape]``),
    ``decoder_log_var() -> log sigma2`` (Gaussian; broadcastable to ``data_shape``),
    ``log_px(x, out)`` and ``log_px_given_z(x, z) -> [B]``, ``mean(out)``, and ``__call__(x)``,
    used by :func:`init`, which runs all of them at the posterior mean.

    ``VAEConfig(...).objective(info).model`` is one; ``VAE(config, data_shape)`` builds it
    directly. Its hyper-parameters are those of the config (only ``architecture`` ...
    ``kernel_size`` are read here; ``beta``, ``warmup_steps`` and ``free_bits`` belong to the
    objective). A learned variance starts at ``config.init_variance``: Adam moves the
    log-variance by about the learning rate per step, so starting near the data's per-pixel
    variance (about 0.1 for images in [0, 1]) saves thousands of steps.

    Attributes:
      config: the :class:`VAEConfig`.
      data_shape: the shape of one example ``x``: ``(D,)`` for vectors, ``(H, W, C)`` images.
    """

    config: VAEConfig
    data_shape: tuple[int, ...]

    def setup(self):
        shape = check_model(self)
        q = self.config.latent_dim
        if self.config.architecture == "linear":
            self.encoder = nn.Dense(q)
            self.encoder_log_var = self.param("encoder_log_var", nn.initializers.zeros, (q,))
            self.decoder = nn.Dense(int(np.prod(shape)))
        raw0 = math.log(self.config.init_variance - self.config.min_variance)
        C.setup_networks(self, shape, raw_variance=raw0)

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``x [B, *data_shape] -> (mean [B, q], log_var [B, q])``."""
        C.check_x(self.data_shape, x, "x")
        q = self.config.latent_dim
        if self.config.architecture == "linear":
            mean = self.encoder(x.reshape(x.shape[0], -1))
            return mean, jnp.broadcast_to(self.encoder_log_var, mean.shape).astype(mean.dtype)
        if self.config.architecture == "mlp":
            h = self.encoder(x.reshape(x.shape[0], -1))
        else:
            h = self.encoder_head(self.encoder(x).reshape(x.shape[0], -1))
        return h[:, :q], h[:, q:]

    def decode(self, z: jax.Array) -> jax.Array:
        """``z [B, q] -> [B, *data_shape]``: Bernoulli logits or Gaussian means."""
        if jnp.ndim(z) != 2 or jnp.shape(z)[1] != self.config.latent_dim:
            raise ValueError(f"z must have shape [B, {self.config.latent_dim}], got {jnp.shape(z)}")
        out = self.decoder(z)
        return out.reshape(z.shape[0], *self.data_shape)

    def log_px_given_z(self, x: jax.Array, z: jax.Array) -> jax.Array:
        """``log p(x | z)`` per example: ``x [B, *data_shape]``, ``z [B, q]`` -> ``[B]``."""
        return self.log_px(x, self.decode(z))

    def __call__(self, x: jax.Array) -> jax.Array:
        mean, _ = self.encode(x)
        return self.log_px_given_z(x, mean)


# --------------------------------------------------------------------------------------------
# Validation at the public boundary, initialisation, the loss
# --------------------------------------------------------------------------------------------


def check_data(model: VAE, x: Any, name: str = "x") -> jax.Array:
    """Checks ``x`` against the model: shape ``[B, *data_shape]``, finite, and in ``[0, 1]`` for
    the Bernoulli likelihood. Value checks run only on concrete arrays (not under ``jit``).

    Returns ``x`` as a float32 array. Raises ``ValueError`` naming the problem.
    """
    check_model(model)
    return C.check_data(model, x, name)


def init(model: VAE, rng: jax.Array, example_batch: Mapping[str, Any]) -> dict[str, Any]:
    """Initial variables ``{"params": ...}`` of ``model``.

    Args:
      model: the :class:`VAE`.
      rng: a ``jax.random`` key.
      example_batch: a dict with ``"x"`` ``[B, *data_shape]`` (only its shape is used).
    """
    check_model(model)
    return C.init_variables(model, rng, example_batch)


def loss(
    model: VAE,
    params: Mapping[str, Any],
    batch: Mapping[str, Any],
    rng: jax.Array,
    *,
    beta: Any = 1.0,
    free_bits: float = 0.0,
    importance_samples: int = 1,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The engine's loss: minus the batch-mean ELBO, ``-(1/B) sum_b losses.elbo(...)_b``.

    ``losses.elbo(log p(x_b | z_b), mean_b, log_var_b, beta, free_bits)`` with one
    reparameterised ``z_b ~ q(z | x_b)`` (noise ``jax.random.normal(rng, [B, q])``) and the
    analytic KL. Bind ``model`` (and the weights) with ``functools.partial`` for
    ``Task.from_loss``, or use :meth:`VAEConfig.objective`.

    With ``importance_samples = K > 1`` it is minus the batch-mean importance-weighted bound
    ``L_K = logsumexp_k log w_k - log K``, ``log w_k = log p(x | z_k) + log p(z_k) -
    log q(z_k | x)`` over ``K`` reparameterised ``z_k ~ q(z | x)`` (:func:`log_weights`,
    ``losses.iwae_bound``; Burda et al., 2016, eq. 8), whose gradient weights each sample by
    its normalised importance weight; ``beta`` must be 1 and ``free_bits`` 0. Its metrics
    add ``iwae_bound``; ``elbo``, ``log_px_given_z`` and ``kl`` are then the means over the
    ``K`` samples (the KL a Monte Carlo estimate).

    Args:
      model: the :class:`VAE`.
      params: the model's variables (from :func:`init`).
      batch: a dict with ``"x"`` ``[B, *data_shape]``.
      rng: a ``jax.random`` key for the reparameterisation noise.
      beta: KL weight ``>= 0`` (1 is the ELBO; a traced scalar under KL warm-up).
      free_bits: nats per latent dimension below which the KL is not penalised (0 = off).

    Returns:
      ``(loss [], metrics)``; metrics (batch means): ``elbo`` (the true bound, ``beta = 1`` and
      no free bits), ``log_px_given_z``, ``kl``, ``kl_weight`` (``beta``).
    """
    x = batch["x"]
    if importance_samples > 1:
        return _iwae_loss(model, params, x, rng, importance_samples)
    v = C.variables(params)
    mean, log_var = model.apply(v, x, method=VAE.encode)
    z = C.reparameterize(mean, log_var, C.normal_like(rng, mean))
    log_px = model.apply(v, x, z, method=VAE.log_px_given_z)
    weighted, kl, plain = C.bound(log_px, mean, log_var, beta, free_bits)
    metrics = {
        "elbo": plain,
        "log_px_given_z": jnp.mean(log_px),
        "kl": jnp.mean(kl),
        "kl_weight": jnp.asarray(beta, jnp.float32),
    }
    return -jnp.mean(weighted), metrics


def _iwae_loss(model, params, x, rng, num_samples: int):
    log_px, log_p, log_q = _log_weights(model, params, x, rng, num_samples)
    bound = losses.iwae_bound(log_px, log_p, log_q)
    metrics = {
        "iwae_bound": jnp.mean(bound),
        "elbo": jnp.mean(log_px + log_p - log_q),
        "log_px_given_z": jnp.mean(log_px),
        "kl": jnp.mean(log_q - log_p),
        "kl_weight": jnp.asarray(1.0, jnp.float32),
    }
    return -jnp.mean(bound), metrics


def kl_weight(step: Any, beta: float, warmup_steps: int) -> jax.Array:
    """Linear KL warm-up: ``beta * min(1, step / warmup_steps)`` (``beta`` if no warm-up).

    ``step`` is the 0-based index of the update; the first update uses weight 0 and update
    ``warmup_steps`` and later use ``beta`` (Bowman et al., 2016; Sonderby et al., 2016).
    """
    if warmup_steps <= 0:
        return jnp.asarray(beta, jnp.float32)
    frac = jnp.clip(jnp.asarray(step, jnp.float32) / warmup_steps, 0.0, 1.0)
    return jnp.asarray(beta, jnp.float32) * frac


# --------------------------------------------------------------------------------------------
# Evaluation, inference and generation
# --------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("model",))
def _encode(model, params, x):
    return model.apply(C.variables(params), x, method=VAE.encode)


def encode(model: VAE, params: Mapping[str, Any], x: Any) -> tuple[jax.Array, jax.Array]:
    """``q(z | x)``: ``x [B, *data_shape] -> (mean [B, q], log_var [B, q])``."""
    return _encode(model, params, check_data(model, x))


@functools.partial(jax.jit, static_argnames=("model",))
def _decode(model, params, z):
    v = C.variables(params)
    return model.apply(v, model.apply(v, z, method=VAE.decode), method=VAE.mean)


def decode(model: VAE, params: Mapping[str, Any], z: Any) -> jax.Array:
    """``E[x | z]``: ``z [B, q] -> [B, *data_shape]`` (probabilities for Bernoulli)."""
    return _decode(model, params, C.check_z(model, jnp.asarray(z, jnp.float32)))


def log_px_given_z(model: VAE, params: Mapping[str, Any], x: Any, z: Any) -> jax.Array:
    """``log p(x | z)`` per example: ``x [B, *data_shape]``, ``z [B, q]`` -> ``[B]``."""
    x = check_data(model, x)
    return _log_px_given_z(model, params, x, jnp.asarray(z, jnp.float32))


@functools.partial(jax.jit, static_argnames=("model",))
def _log_px_given_z(model, params, x, z):
    return model.apply(C.variables(params), x, z, method=VAE.log_px_given_z)


def reconstruct(model: VAE, params: Mapping[str, Any], x: Any) -> jax.Array:
    """``E[x | z = E_q[z | x]]``: decode the posterior mean, ``[B, *data_shape]``."""
    mean, _ = encode(model, params, x)
    return _decode(model, params, mean)


@functools.partial(jax.jit, static_argnames=("model", "n", "mean"))
def _sample(model, params, rng, n, mean):
    return C.sample_decoder(
        model, params, rng, n, mean, lambda v, z: model.apply(v, z, method=VAE.decode)
    )


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
      model: the :class:`VAE`.
      params: its variables.
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
    out = _decode(model, params, z.reshape(-1, model.config.latent_dim))
    return out.reshape(m_a.shape[0], steps, *model.data_shape)


@functools.partial(jax.jit, static_argnames=("model", "num_samples", "analytic_kl"))
def _elbo(model, params, x, rng, num_samples, analytic_kl):
    v = C.variables(params)
    mean, log_var = model.apply(v, x, method=VAE.encode)
    log_px_of = lambda z: model.apply(v, x, z, method=VAE.log_px_given_z)
    return C.monte_carlo_elbo(mean, log_var, log_px_of, rng, num_samples, analytic_kl)


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
    v = C.variables(params)
    mean, log_var = model.apply(v, x, method=VAE.encode)
    b, q = mean.shape
    eps = jax.random.normal(rng, (num_samples, b, q), mean.dtype)
    z = C.reparameterize(mean, log_var, eps)  # [K, B, q]
    log_q, log_p = C.log_normal_terms(mean, log_var, eps, z)
    x_rep = jnp.broadcast_to(x, (num_samples, *x.shape)).reshape(num_samples * b, *x.shape[1:])
    log_px = model.apply(v, x_rep, z.reshape(num_samples * b, q), method=VAE.log_px_given_z)
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
