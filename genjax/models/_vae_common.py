"""What the VAE (:mod:`genjax.models.vae`) and the Cycle VAE (:mod:`genjax.models.cyclevae`)
share, written once: the checks of their configs, modules and data, the encoder/decoder
networks, the likelihood heads with their learned variances, the reparameterisation, the
pieces of the ELBO, sampling from the decoder, and the one-player objective.

Private: the two family modules are the public interface.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax import losses as L
from genjax._checks import check_choice, check_int, check_shape, is_concrete, is_int
from genjax.models.base import DataInfo, Objective
from genjax.nn import ACTIVATIONS, MLP, ConvDecoder, ConvEncoder, check_image_shape
from genjax.task import SINGLE, Task

LIKELIHOODS = ("bernoulli", "gaussian")
VARIANCES = ("fixed", "isotropic", "pixel")

_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------------------------
# Checks of the fields (configs and modules), of the data's shape, of arrays
# --------------------------------------------------------------------------------------------


def check_positive(label: str, value: Any) -> float:
    """``value``, a finite number ``> 0`` (not a bool)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{label} must be a finite number > 0, got {value!r}")
    return value


def check_nonnegative(label: str, value: Any) -> float:
    """``value``, a finite number ``>= 0`` (not a bool): a weight of the objective."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{label} must be a finite number >= 0, got {value!r}")
    return value


def check_bool(label: str, value: Any) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{label} must be true or false, got {value!r}")
    return bool(value)


def check_fields(
    config: Any, owner: str, architectures: tuple[str, ...], *, hidden_required: bool = False
) -> None:
    """Checks the fields the two families' configs share: ``architecture``, ``latent_dim``,
    ``hidden``, ``activation`` (a name in ``genjax.nn.ACTIVATIONS``), ``likelihood``,
    ``variance``, ``fixed_variance``, ``min_variance``, ``init_variance`` (where present) and
    ``kernel_size``. Raises ``ValueError`` naming ``<owner>.<field>``.

    ``hidden_required``: ``hidden`` may not be empty (always so for ``architecture='conv'``).
    """
    check_choice(f"{owner}.architecture", config.architecture, architectures)
    check_int(f"{owner}.latent_dim", config.latent_dim)
    hidden = config.hidden
    if not isinstance(hidden, tuple) or any(not is_int(h) or h < 1 for h in hidden):
        raise ValueError(
            f"{owner}.hidden must be a tuple (hashable, not a list) of positive ints, "
            f"got {hidden!r}"
        )
    if not hidden and (hidden_required or config.architecture == "conv"):
        why = (
            " (architecture='conv' needs at least one stage)"
            if config.architecture == "conv"
            else ""
        )
        raise ValueError(f"{owner}.hidden must be a non-empty tuple of positive ints{why}, got ()")
    check_choice(f"{owner}.activation", config.activation, tuple(ACTIVATIONS))
    check_choice(f"{owner}.likelihood", config.likelihood, LIKELIHOODS)
    check_choice(f"{owner}.variance", config.variance, VARIANCES)
    check_positive(f"{owner}.fixed_variance", config.fixed_variance)
    check_positive(f"{owner}.min_variance", config.min_variance)
    init_variance = getattr(config, "init_variance", None)
    if init_variance is not None and not (
        not isinstance(init_variance, bool)
        and isinstance(init_variance, int | float)
        and math.isfinite(init_variance)
        and init_variance > config.min_variance
    ):
        raise ValueError(
            f"{owner}.init_variance must be a finite number > min_variance = "
            f"{config.min_variance}, got {init_variance!r}"
        )
    check_int(f"{owner}.kernel_size", config.kernel_size)


def check_module(m: nn.Module, config_cls: type) -> tuple[int, ...]:
    """Validates a VAE-like module (Flax defers ``setup``, so construction does not): its
    ``config`` is a ``config_cls`` (validated when it was made) and its ``data_shape`` one the
    config can take. Returns ``data_shape`` as a tuple of ints."""
    owner = type(m).__name__
    config = m.config
    if not isinstance(config, config_cls):
        raise ValueError(
            f"{owner}.config must be a {config_cls.__name__}, got {type(config).__name__}"
        )
    shape = check_shape(f"{owner}.data_shape", m.data_shape, hashable=True)
    if config.architecture == "conv":
        if len(shape) != 3:
            raise ValueError(
                f"{owner}(architecture='conv') needs images, data_shape = (H, W, C), got "
                f"{shape} (do not flatten the inputs of a convolutional model)"
            )
        check_image_shape(
            shape,
            len(config.hidden),
            owner=f"{owner}(architecture='conv', hidden={config.hidden})",
        )
    return shape


def check_info(config: Any, info: DataInfo) -> None:
    """What a config asks of the data: images for ``architecture='conv'`` (of a size its
    stages divide), inputs in ``[0, 1]`` for the Bernoulli likelihood. Raises ``ValueError``
    naming ``<Config>.<field>`` and the shape."""
    if config.architecture == "conv":
        if len(info.shape) != 3:
            raise ValueError(
                f"{config._label('architecture')}='conv' needs images [H, W, C], got inputs "
                f"of shape {info.shape} from {info.label} (do not flatten the images of a "
                "convolutional model)"
            )
        check_image_shape(
            info.shape,
            len(config.hidden),
            owner=f"{config._label('hidden')}={config.hidden} with architecture='conv'",
        )
    if config.likelihood == "bernoulli" and not info.unit_interval:
        raise ValueError(
            f"{config._label('likelihood')}='bernoulli' needs inputs in [0, 1], but those of "
            f"{info.label} are not (scale them to [0, 1] or binarise them, or use "
            "likelihood='gaussian')"
        )


def check_x(data_shape: tuple[int, ...], x: Any, name: str) -> tuple[int, ...]:
    """``x``'s shape, which must be ``[B, *data_shape]`` (checked at trace time too)."""
    shape = tuple(data_shape)
    got = tuple(jnp.shape(x))
    if len(got) != len(shape) + 1 or got[1:] != shape:
        raise ValueError(
            f"{name} must have shape [B, *data_shape] = [B, {', '.join(map(str, shape))}], "
            f"got {got}"
        )
    return got


def check_data(model: Any, x: Any, name: str = "x") -> jax.Array:
    """Checks ``x`` against ``model``: shape ``[B, *data_shape]`` (always, also under ``jit``),
    finite and, for the Bernoulli likelihood, in ``[0, 1]`` (concrete arrays only).

    Returns ``x`` as a float array (float32 unless it already is a float).
    """
    check_x(model.data_shape, x, name)
    if is_concrete(x) and np.size(x):
        values = np.asarray(x)  # on the host: inside a trace, jnp.min would be traced
        lo, hi = float(values.min()), float(values.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"{name} must be finite, got values in [{lo}, {hi}]")
        if model.config.likelihood == "bernoulli" and (lo < 0.0 or hi > 1.0):
            raise ValueError(
                f"{name} must lie in [0, 1] for the Bernoulli likelihood, got values in "
                f"[{lo:g}, {hi:g}] (scale the data to [0, 1], or use likelihood='gaussian')"
            )
    return as_float(x)


def as_float(x: Any) -> jax.Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def check_z(model: Any, z: Any) -> jax.Array:
    z = jnp.asarray(z)
    if z.ndim != 2 or z.shape[1] != model.config.latent_dim:
        raise ValueError(f"z must have shape [B, {model.config.latent_dim}], got {tuple(z.shape)}")
    return z


# --------------------------------------------------------------------------------------------
# The module's parts
# --------------------------------------------------------------------------------------------


class LikelihoodHead(nn.Module):
    """Base of the two modules: the decoder's likelihood with its (learned) variance.

    Subclasses have a field ``config`` (with ``likelihood``, ``variance``, ``fixed_variance``
    and ``min_variance``) and create ``raw_variance`` in ``setup`` with
    :func:`setup_networks`.
    """

    def decoder_log_var(self) -> jax.Array:
        """``log sigma2`` of the Gaussian likelihood: ``[]`` or ``data_shape`` (``pixel``)."""
        if self.config.likelihood != "gaussian":
            raise ValueError("decoder_log_var: the Bernoulli likelihood has no variance")
        if self.config.variance == "fixed":
            return jnp.asarray(math.log(self.config.fixed_variance), jnp.float32)
        # log(min_variance + exp(raw)): smooth and >= log(min_variance).
        return jnp.logaddexp(self.raw_variance, math.log(self.config.min_variance))

    def log_px(self, x: jax.Array, out: jax.Array) -> jax.Array:
        """``log p(x | ...)`` per example from the decoder output ``out`` -> ``[B]``."""
        if self.config.likelihood == "bernoulli":
            return L.bernoulli_log_likelihood(out, x)
        return L.gaussian_log_likelihood(x, out, self.decoder_log_var())

    def mean(self, out: jax.Array) -> jax.Array:
        """``E[x | ...]`` from the decoder output: ``sigmoid(logits)`` or the Gaussian mean."""
        return jax.nn.sigmoid(out) if self.config.likelihood == "bernoulli" else out


def setup_networks(m: nn.Module, shape: tuple[int, ...], *, raw_variance: float) -> None:
    """In ``m.setup``: the MLP or conv encoder (``encoder``, ``encoder_head``) and decoder
    (``decoder``) for ``m.config.architecture``, and the learned variance of the Gaussian
    likelihood, the parameter ``raw_variance`` (initial value ``raw_variance``;
    ``sigma2 = min_variance + exp(raw)``)."""
    c = m.config
    q, hidden, act = c.latent_dim, tuple(c.hidden), c.activation
    if c.architecture == "mlp":
        m.encoder = MLP((*hidden, 2 * q), activation=act)
        m.decoder = MLP((*hidden[::-1], int(np.prod(shape))), activation=act)
    elif c.architecture == "conv":
        m.encoder = ConvEncoder(hidden, kernel_size=c.kernel_size, activation=act)
        m.encoder_head = nn.Dense(2 * q)
        m.decoder = ConvDecoder(shape, hidden[::-1], kernel_size=c.kernel_size, activation=act)
    if c.likelihood == "gaussian" and c.variance != "fixed":
        var_shape = () if c.variance == "isotropic" else shape
        init = nn.initializers.constant(raw_variance)
        m.raw_variance = m.param("raw_variance", init, var_shape)


def variables(params: Mapping[str, Any]) -> Mapping[str, Any]:
    """``{"params": ...}``, whether given that or the inner dict."""
    return params if "params" in params else {"params": params}


def init_variables(model: nn.Module, rng: jax.Array, batch: Mapping[str, Any], *args) -> dict:
    """``model.init`` on one zero example of ``batch["x"]``'s shape (and ``args``), jitted:
    eager initialisation would compile every small op on its own."""
    check_x(model.data_shape, batch["x"], 'batch["x"]')
    x = jnp.zeros((1, *model.data_shape), jnp.float32)
    return jax.jit(model.init)(rng, x, *args)


# --------------------------------------------------------------------------------------------
# The reparameterisation, the ELBO's pieces, sampling
# --------------------------------------------------------------------------------------------


def reparameterize(mean: jax.Array, log_var: jax.Array, eps: jax.Array) -> jax.Array:
    """``z = mean + exp(log_var / 2) * eps``."""
    return mean + jnp.exp(0.5 * log_var) * eps


def normal_like(rng: jax.Array, mean: jax.Array) -> jax.Array:
    return jax.random.normal(rng, mean.shape, mean.dtype)


def bound(
    log_px: jax.Array, mean: jax.Array, log_var: jax.Array, weight: Any, free_bits: Any = 0.0
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(losses.elbo(log_px, mean, log_var, weight, free_bits) [B], KL [B], batch-mean ELBO)``:
    the weighted bound the loss uses, the closed-form KL, and the plain bound's metric."""
    weighted = L.elbo(log_px, mean, log_var, weight, free_bits=free_bits)
    kl = L.gaussian_kl(mean, log_var)
    return weighted, kl, jnp.mean(log_px - kl)


def monte_carlo_elbo(
    mean: jax.Array,
    log_var: jax.Array,
    log_px_of: Callable[[jax.Array], jax.Array],
    rng: jax.Array,
    num_samples: int,
    analytic_kl: bool = True,
) -> jax.Array:
    """The ELBO per example (``beta = 1``) averaged over ``num_samples`` draws
    ``z = reparameterize(mean, log_var, eps)``, one key of ``jax.random.split(rng,
    num_samples)`` each; ``log_px_of(z) -> [B]``. ``analytic_kl=False`` uses the Monte Carlo
    KL ``log q(z | x) - log p(z)`` at the same draws."""

    def one(key):
        z = reparameterize(mean, log_var, normal_like(key, mean))
        log_px = log_px_of(z)
        if analytic_kl:
            return L.elbo(log_px, mean, log_var)
        log_q, log_p = log_normal_terms(mean, log_var, (z - mean) * jnp.exp(-0.5 * log_var), z)
        return log_px + log_p - log_q

    return jnp.mean(jax.lax.map(one, jax.random.split(rng, num_samples)), axis=0)


def log_normal_terms(mean, log_var, eps, z) -> tuple[jax.Array, jax.Array]:
    """``(log q(z | x), log p(z))`` summed over the last axis, for ``z = mean + sigma eps``."""
    log_q = -0.5 * jnp.sum(jnp.square(eps) + _LOG_2PI + log_var, axis=-1)
    log_p = -0.5 * jnp.sum(jnp.square(z) + _LOG_2PI, axis=-1)
    return log_q, log_p


def sample_decoder(
    model: LikelihoodHead,
    params: Mapping[str, Any],
    rng: jax.Array,
    n: int,
    mean: bool,
    decode: Callable[[Mapping[str, Any], jax.Array], jax.Array],
) -> jax.Array:
    """``n`` draws of ``p(x) = E_z p(x | z)``: ``z_rng, x_rng = split(rng)``, ``z ~ N(0, I)``
    from ``z_rng``, the decoder output ``decode(variables, z)``, then ``E[x | z]`` (``mean``)
    or a draw of the likelihood from ``x_rng`` (binary, or the mean plus Gaussian noise)."""
    z_rng, x_rng = jax.random.split(rng)
    z = jax.random.normal(z_rng, (n, model.config.latent_dim), jnp.float32)
    v = variables(params)
    out = decode(v, z)
    if model.config.likelihood == "bernoulli":
        probs = jax.nn.sigmoid(out)
        return probs if mean else jax.random.bernoulli(x_rng, probs).astype(jnp.float32)
    if mean:
        return out
    std = jnp.exp(0.5 * model.apply(v, method=type(model).decoder_log_var))
    return out + std * jax.random.normal(x_rng, out.shape, out.dtype)


# --------------------------------------------------------------------------------------------
# Config and objective
# --------------------------------------------------------------------------------------------


class SavedKeys:
    """Mixin of the two configs: reads configs saved before the evaluation settings moved
    out of the model section (their keys are dropped from it)."""

    moved_to_eval: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def upgrade_saved(cls, values: dict) -> dict:
        return {k: v for k, v in values.items() if k not in cls.moved_to_eval}


class OnePlayerObjective(Objective):
    """An objective whose task has the one player ``"model"``: ``init``, ``loss`` (in the
    form of ``Task.from_loss``, on the model's own variables) and, when ``stateful``,
    ``init_model_state`` and ``post_update``."""

    @property
    def stateful(self) -> bool:
        """Whether the loss reads and returns the model state."""
        return False

    def init(self, rng: jax.Array, batch: Mapping[str, Any]) -> dict:
        raise NotImplementedError

    def task(self, optimizer: optax.GradientTransformation | Mapping[str, Any]) -> Task:
        if isinstance(optimizer, Mapping):
            if set(optimizer) != {SINGLE}:
                raise ValueError(
                    f"the {self.family} task has the one player {SINGLE!r}; got optimizers "
                    f"for {sorted(optimizer)}"
                )
            optimizer = optimizer[SINGLE]
        if self.stateful:
            return Task.from_loss(
                self.init,
                self.loss,
                optimizer,
                stateful=True,
                init_model_state=self.init_model_state,
                post_update=self.post_update,
            )
        return Task.from_loss(self.init, self.loss, optimizer)
