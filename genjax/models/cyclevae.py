"""The cycle-consistent VAE (Cycle VAE) for conversion between domains without parallel data.

A VAE whose decoder is conditioned on a *domain* code ``c`` (a speaker, a digit class, ...),
trained so that the latent ``z`` holds what the domains share (the content) and the code holds
what tells them apart. With ``x`` one example of domain ``s`` and ``K >= 2`` domains::

    p(z) = N(0, I_q)
    q_phi(z | x, s) = N(mean_phi(x, s), diag(exp(log_var_phi(x, s))))         encoder
    p_theta(x | z, c) = prod_j Bernoulli(x_j; sigmoid(logits_theta(z, e_c)_j))   decoder, or
    p_theta(x | z, c) = prod_j N(x_j; mean_theta(z, e_c)_j, sigma2_j)             Gaussian

where ``e_c`` is a learned embedding of the code (``nn.Embed``), fed to the decoder beside
``z``; the encoder sees a second, separate embedding of the source code ``s`` when
``condition_encoder`` (so it can remove what it knows to be domain information), else only
``x``. Converting ``x`` from ``s`` to ``t`` is ``E[x | z = E_q[z | x, s], c = t]``
(:func:`convert`); ``t = s`` is a reconstruction.

**The objective** (Tobing et al., 2019, for voice conversion; Jha et al., 2018, for images):
per example, with the target domain ``t`` drawn at random, one reparameterised draw
``z = mean + sigma * eps`` of ``q(z | x, s)``, the converted features
``x_hat = E[x | z, t]`` (sigmoid of the logits, or the Gaussian mean), and a second draw
``z' ~ q(z | x_hat, t)``::

    ELBO_direct(x) = log p(x | z, s)  - beta       * KL(q(z | x, s)      || N(0, I))
    ELBO_cycle(x)  = log p(x | z', s) - cycle_beta * KL(q(z' | x_hat, t) || N(0, I))
    loss = -(1/B) sum_b [direct_weight * ELBO_direct(x_b) + cycle_weight * ELBO_cycle(x_b)]

both KLs in closed form (``losses.elbo``). The cycle ``x -> z -> x_hat_{s->t} -> z' ->
x_hat_{s->t->s}`` can give back ``x`` only if ``z'`` recovers from ``x_hat`` the content of
``x`` and ``x_hat`` carries no trace of ``s`` that the decoder would need, which pushes domain
information out of ``z``. ``cycle_weight = 0`` is the plain conditional VAE (same parameters,
same direct term), so the cycle's contribution is one switch. ``stop_gradient=True`` treats
``x_hat`` as data in the cycle term (the encoder and decoder still learn from the second pass,
but no gradient flows back through the conversion).

The target domain (:func:`draw_targets`): ``target_sampling="others"`` draws ``t`` uniformly
among the ``K - 1`` domains other than the source (the default: every cycle is a real
conversion); ``"any"`` draws uniformly among all ``K``, the source included (then about ``1/K``
of the cycles are reconstructions of a reconstruction).

Architectures (:class:`CycleVAE` ``architecture``):

* ``"mlp"`` for vectors (frames of spectral features) or flattened images: encoder
  ``[x, e^enc_s] -> MLP(hidden) -> Dense(2 q)`` as ``(mean, log_var)``; decoder
  ``[z, e^dec_c] -> MLP(reversed(hidden)) -> Dense(D)`` reshaped to ``data_shape``.
* ``"conv"`` for small images ``(H, W, C)``: ``genjax.nn.ConvEncoder(hidden)`` -> flatten ->
  ``[h, e^enc_s] -> Dense(2 q)``; decoder ``genjax.nn.ConvDecoder(data_shape,
  reversed(hidden))`` fed the vector ``[z, e^dec_c]``.

Likelihoods and variances are those of :mod:`genjax.models.vae` (Bernoulli logits, also the
cross-entropy for grey levels in [0, 1]; Gaussian with a fixed, isotropic or per-feature
learned variance ``sigma2 = min_variance + exp(raw)``).

**Conventions.** Every function takes the variables ``params = {"params": ...}`` (as
:func:`init` returns and the engine trains) first and the module as the keyword ``model``, so
``functools.partial(convert, model=m)`` is ``convert(params, x, source, target)``, a pure
function that ``jax.jit`` compiles and ``jax.vmap`` maps (e.g. over targets). ``source`` and
``target`` are int domain indices, a scalar (the same for every example) or ``[B]``.

**Bad input.** ``x`` whose shape is not ``[B, *data_shape]``, and non-integer or mis-shaped
domain codes, raise ``ValueError`` at trace time (also under ``jit``). Domain indices outside
``[0, K)`` raise ``ValueError`` when they are concrete (outside ``jit``); a traced index cannot
be checked, and an out-of-range one then yields NaN outputs (``jnp.take``'s fill mode), never a
silent wrong domain. Converting to the source's own domain is allowed: it is reconstruction.
A model needs ``num_domains >= 2``: with a single domain there is nothing to convert between
and the cycle objective is undefined, so :func:`check_model` refuses it.

References:
  P. L. Tobing, Y.-C. Wu, T. Hayashi, K. Kobayashi, T. Toda, "Non-Parallel Voice Conversion
  with Cyclic Variational Autoencoder", Interspeech 2019.
  A. H. Jha, S. Anand, M. Singh, V. S. R. Veeravasarapu, "Disentangling Factors of Variation
  with Cycle-Consistent Variational Auto-Encoders", ECCV 2018.
  K. Sohn, H. Lee, X. Yan, "Learning Structured Output Representation using Deep Conditional
  Generative Models", NeurIPS 2015 (the conditional VAE).
  D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
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
from genjax._checks import is_int as _is_int
from genjax.nn import MLP, ConvDecoder, ConvEncoder, check_image_shape, get_activation

__all__ = [
    "ARCHITECTURES",
    "LIKELIHOODS",
    "TARGET_SAMPLING",
    "VARIANCES",
    "CycleVAE",
    "check_data",
    "check_domains",
    "check_model",
    "convert",
    "cycle_reconstruct",
    "cycle_terms",
    "decode_mean",
    "draw_targets",
    "elbo",
    "encode",
    "init",
    "objective",
    "reconstruct",
    "sample",
]

ARCHITECTURES = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian")
VARIANCES = ("fixed", "isotropic", "pixel")
TARGET_SAMPLING = ("others", "any")


# --------------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------------


def check_model(m: CycleVAE) -> tuple[int, ...]:
    """Validates a :class:`CycleVAE`'s fields (Flax defers ``setup``, so construction does not);
    returns ``data_shape`` as a tuple of ints. Raises ``ValueError`` naming the field."""
    shape = m.data_shape
    if (
        not isinstance(shape, Sequence)
        or len(shape) < 1
        or any(not _is_int(s) or s < 1 for s in shape)
    ):
        raise ValueError(
            f"CycleVAE.data_shape must be a non-empty tuple of positive ints, got {shape!r}"
        )
    shape = tuple(int(s) for s in shape)
    k = m.num_domains
    if not _is_int(k) or k < 2:
        raise ValueError(
            f"CycleVAE.num_domains must be an int >= 2 (a Cycle VAE converts between domains; "
            f"a single-domain dataset has nothing to convert to), got {k!r}"
        )
    for name in ("latent_dim", "embed_dim", "kernel_size"):
        value = getattr(m, name)
        if not _is_int(value) or value < 1:
            raise ValueError(f"CycleVAE.{name} must be an int >= 1, got {value!r}")
    if m.architecture not in ARCHITECTURES:
        raise ValueError(
            f"CycleVAE.architecture must be one of {ARCHITECTURES}, got {m.architecture!r}"
        )
    if m.likelihood not in LIKELIHOODS:
        raise ValueError(f"CycleVAE.likelihood must be one of {LIKELIHOODS}, got {m.likelihood!r}")
    if m.variance not in VARIANCES:
        raise ValueError(f"CycleVAE.variance must be one of {VARIANCES}, got {m.variance!r}")
    for name in ("fixed_variance", "min_variance"):
        value = getattr(m, name)
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise ValueError(f"CycleVAE.{name} must be a finite number > 0, got {value!r}")
    hidden = m.hidden
    if (
        not isinstance(hidden, Sequence)
        or not hidden
        or any(not _is_int(h) or h < 1 for h in hidden)
    ):
        raise ValueError(
            f"CycleVAE.hidden must be a non-empty tuple of positive ints, got {hidden!r}"
        )
    if m.architecture == "conv":
        if len(shape) != 3:
            raise ValueError(
                f"CycleVAE(architecture='conv') needs images, data_shape = (H, W, C), got "
                f"{shape} (do not flatten the inputs of a convolutional model)"
            )
        check_image_shape(
            shape, len(hidden), owner=f"CycleVAE(architecture='conv', hidden={tuple(hidden)})"
        )
    get_activation(m.activation, name="CycleVAE.activation")
    return shape


class CycleVAE(nn.Module):
    """Domain-conditioned encoder and decoder of the Cycle VAE (see the module doc).

    Methods (through ``module.apply(params, ..., method=...)`` or the functions below):
    ``encode(x, source) -> (mean, log_var)`` (``[B, q]`` each), ``decode(z, domain)`` ->
    Bernoulli logits or Gaussian means ``[B, *data_shape]``, ``decoder_log_var()``
    (Gaussian), ``log_px(x, out) -> [B]``, and ``__call__(x, source)``, used by :func:`init`,
    which runs all of them.

    Attributes:
      data_shape: shape of one example: ``(D,)`` for feature vectors, ``(H, W, C)`` images.
      num_domains: ``K >= 2``, the number of domain codes ``0..K-1``.
      latent_dim: ``q >= 1``.
      architecture: ``"mlp"`` or ``"conv"``.
      hidden: MLP widths or conv channels of the encoder, fine to coarse; the decoder mirrors
        them.
      activation: a name in ``genjax.nn.ACTIVATIONS`` (or a callable).
      embed_dim: width of the learned domain embeddings.
      condition_encoder: also feed the encoder an embedding of the source domain.
      likelihood: ``"bernoulli"`` or ``"gaussian"``.
      variance: Gaussian only: ``"fixed"``, ``"isotropic"`` or ``"pixel"`` (per feature).
      fixed_variance: the variance of ``variance="fixed"``.
      min_variance: lower bound of a learned variance.
      kernel_size: conv kernel size.
    """

    data_shape: Sequence[int]
    num_domains: int
    latent_dim: int
    architecture: str = "mlp"
    hidden: Sequence[int] = (256, 256)
    activation: Any = "relu"
    embed_dim: int = 16
    condition_encoder: bool = True
    likelihood: str = "bernoulli"
    variance: str = "pixel"
    fixed_variance: float = 1.0
    min_variance: float = 1e-3
    kernel_size: int = 4

    def setup(self):
        shape = check_model(self)
        q, hidden = self.latent_dim, tuple(self.hidden)
        self.decoder_embed = nn.Embed(self.num_domains, self.embed_dim)
        if self.condition_encoder:
            self.encoder_embed = nn.Embed(self.num_domains, self.embed_dim)
        if self.architecture == "mlp":
            self.encoder = MLP((*hidden, 2 * q), activation=self.activation)
            self.decoder = MLP((*hidden[::-1], int(np.prod(shape))), activation=self.activation)
        else:
            self.encoder = ConvEncoder(
                hidden, kernel_size=self.kernel_size, activation=self.activation
            )
            self.encoder_head = nn.Dense(2 * q)
            self.decoder = ConvDecoder(
                shape, hidden[::-1], kernel_size=self.kernel_size, activation=self.activation
            )
        if self.likelihood == "gaussian" and self.variance != "fixed":
            var_shape = () if self.variance == "isotropic" else shape
            self.raw_variance = self.param("raw_variance", nn.initializers.zeros, var_shape)

    def encode(self, x: jax.Array, source: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``x [B, *data_shape]``, ``source`` int ``[B]`` -> ``(mean, log_var)``, ``[B, q]``."""
        b, q = x.shape[0], self.latent_dim
        if self.architecture == "mlp":
            h = x.reshape(b, -1)
            if self.condition_encoder:
                h = jnp.concatenate([h, self.encoder_embed(source).astype(h.dtype)], axis=-1)
            h = self.encoder(h)
        else:
            h = self.encoder(x).reshape(b, -1)
            if self.condition_encoder:
                h = jnp.concatenate([h, self.encoder_embed(source).astype(h.dtype)], axis=-1)
            h = self.encoder_head(h)
        return h[:, :q], h[:, q:]

    def decode(self, z: jax.Array, domain: jax.Array) -> jax.Array:
        """``z [B, q]``, ``domain`` int ``[B]`` -> logits or means ``[B, *data_shape]``."""
        h = jnp.concatenate([z, self.decoder_embed(domain).astype(z.dtype)], axis=-1)
        return self.decoder(h).reshape(z.shape[0], *self.data_shape)

    def decoder_log_var(self) -> jax.Array:
        """``log sigma2`` of the Gaussian likelihood: ``[]`` or ``data_shape`` (``pixel``)."""
        if self.likelihood != "gaussian":
            raise ValueError("decoder_log_var: the Bernoulli likelihood has no variance")
        if self.variance == "fixed":
            return jnp.asarray(math.log(self.fixed_variance), jnp.float32)
        # log(min_variance + exp(raw)): smooth and >= log(min_variance).
        return jnp.logaddexp(self.raw_variance, math.log(self.min_variance))

    def log_px(self, x: jax.Array, out: jax.Array) -> jax.Array:
        """``log p(x | z, c)`` per example from the decoder output ``out`` -> ``[B]``."""
        if self.likelihood == "bernoulli":
            return L.bernoulli_log_likelihood(out, x)
        return L.gaussian_log_likelihood(x, out, self.decoder_log_var())

    def mean(self, out: jax.Array) -> jax.Array:
        """``E[x | z, c]`` from the decoder output: ``sigmoid(logits)`` or the Gaussian mean."""
        return jax.nn.sigmoid(out) if self.likelihood == "bernoulli" else out

    def __call__(self, x: jax.Array, source: jax.Array) -> jax.Array:
        mean, _ = self.encode(x, source)
        return self.log_px(x, self.decode(mean, source))


# --------------------------------------------------------------------------------------------
# Validation at the public boundary
# --------------------------------------------------------------------------------------------


def _variables(params: Mapping[str, Any]) -> Mapping[str, Any]:
    return params if "params" in params else {"params": params}


def _check_x_shape(model: CycleVAE, x: Any, name: str) -> tuple[int, ...]:
    shape = tuple(model.data_shape)
    got = tuple(jnp.shape(x))
    if len(got) != len(shape) + 1 or got[1:] != shape:
        raise ValueError(
            f"{name} must have shape [B, *data_shape] = [B, {', '.join(map(str, shape))}] "
            f"(the model's feature size), got {got}"
        )
    return got


def check_data(model: CycleVAE, x: Any, name: str = "x") -> jax.Array:
    """Checks ``x`` against the model: shape ``[B, *data_shape]`` (always, also under ``jit``),
    finite and, for the Bernoulli likelihood, in ``[0, 1]`` (concrete arrays only).

    Returns ``x`` as a float array. Raises ``ValueError`` naming the problem.
    """
    check_model(model)
    _check_x_shape(model, x, name)
    if _is_concrete(x) and np.size(x):
        values = np.asarray(x)  # on the host: inside a trace, jnp.min would be traced
        lo, hi = float(values.min()), float(values.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"{name} must be finite, got values in [{lo}, {hi}]")
        if model.likelihood == "bernoulli" and (lo < 0.0 or hi > 1.0):
            raise ValueError(
                f"{name} must lie in [0, 1] for the Bernoulli likelihood, got values in "
                f"[{lo:g}, {hi:g}] (scale the data to [0, 1], or use likelihood='gaussian')"
            )
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def check_domains(model: CycleVAE, domains: Any, batch: int, name: str = "domain") -> jax.Array:
    """Domain codes as int32 ``[batch]``: a scalar is broadcast, a ``[batch]`` array kept.

    Raises ``ValueError`` (naming ``name``) for a non-integer dtype or a shape other than
    ``[]`` / ``[batch]`` (at trace time), and for concrete values outside ``[0, num_domains)``.
    """
    dtype, shape = jnp.result_type(domains), tuple(jnp.shape(domains))
    if not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(f"{name} must hold integer domain indices, got dtype {dtype}")
    if shape not in ((), (batch,)):
        raise ValueError(f"{name} must be a scalar or have shape [B] = ({batch},), got {shape}")
    k = model.num_domains
    if _is_concrete(domains) and batch:
        values = np.asarray(domains)  # on the host: inside a trace, jnp.min would be traced
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi >= k:
            raise ValueError(
                f"{name} must be domain indices in [0, {k}) (num_domains={k}), got values in "
                f"[{lo}, {hi}]"
            )
    return jnp.broadcast_to(jnp.asarray(domains, jnp.int32), (batch,))


def _check_weight(name: str, w: Any) -> None:
    if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {w!r}")


# --------------------------------------------------------------------------------------------
# Initialisation, the objective and its parts
# --------------------------------------------------------------------------------------------


def init(rng: jax.Array, example_batch: Mapping[str, Any], *, model: CycleVAE) -> dict[str, Any]:
    """Initial variables ``{"params": ...}`` (for the engine: ``functools.partial(init,
    model=model)``). Only the shape of ``example_batch["x"]`` ``[B, *data_shape]`` is used."""
    check_model(model)
    _check_x_shape(model, example_batch["x"], 'batch["x"]')
    x = jnp.zeros((1, *model.data_shape), jnp.float32)
    # One compiled call: eager initialisation would compile every small op on its own.
    return jax.jit(model.init)(rng, x, jnp.zeros((1,), jnp.int32))


def draw_targets(rng: jax.Array, source: jax.Array, num_domains: int, sampling: str) -> jax.Array:
    """A target domain per example, int32 ``[B]``.

    ``"others"``: ``t = (s + 1 + u) mod K`` with ``u ~ Uniform{0, ..., K - 2}``, uniform over the
    ``K - 1`` domains other than ``s``. ``"any"``: ``t ~ Uniform{0, ..., K - 1}``. Both draw
    ``jax.random.randint(rng, [B], 0, K - 1 or K)``.
    """
    if sampling not in TARGET_SAMPLING:
        raise ValueError(f"target_sampling must be one of {TARGET_SAMPLING}, got {sampling!r}")
    source = jnp.asarray(source, jnp.int32)
    if sampling == "any":
        return jax.random.randint(rng, source.shape, 0, num_domains, jnp.int32)
    u = jax.random.randint(rng, source.shape, 0, num_domains - 1, jnp.int32)
    return (source + 1 + u) % num_domains


def _reparameterize(mean, log_var, eps):
    return mean + jnp.exp(0.5 * log_var) * eps


def cycle_terms(
    params: Mapping[str, Any],
    x: jax.Array,
    source: jax.Array,
    target: jax.Array,
    eps: jax.Array,
    eps_cycle: jax.Array,
    *,
    model: CycleVAE,
    stop_gradient: bool = False,
) -> dict[str, jax.Array]:
    """The per-example parts of the cycle objective for given targets and noise.

    With ``(m, lv) = encoder(x, s)``, ``z = m + exp(lv / 2) * eps``,
    ``x_hat = E[x | z, t]`` (``stop_gradient`` applied if asked),
    ``(m', lv') = encoder(x_hat, t)``, ``z' = m' + exp(lv' / 2) * eps_cycle``.

    Args:
      params: the model's variables.
      x: ``[B, *data_shape]``; source, target: int ``[B]``; eps, eps_cycle: ``[B, q]``.
      model: the :class:`CycleVAE`.
      stop_gradient: no gradient through ``x_hat``.

    Returns:
      A dict of ``[B]`` arrays: ``log_px`` (``log p(x | z, s)``), ``mean``/``log_var`` (``[B,
      q]``, of ``q(z | x, s)``), ``cycle_log_px`` (``log p(x | z', s)``), ``cycle_mean`` /
      ``cycle_log_var`` (of ``q(z' | x_hat, t)``), and ``converted`` (``x_hat``).
    """
    v = _variables(params)
    mean, log_var = model.apply(v, x, source, method=CycleVAE.encode)
    z = _reparameterize(mean, log_var, eps)
    out = model.apply(v, z, source, method=CycleVAE.decode)
    log_px = model.apply(v, x, out, method=CycleVAE.log_px)
    converted = model.apply(
        v, model.apply(v, z, target, method=CycleVAE.decode), method=CycleVAE.mean
    )
    if stop_gradient:
        converted = jax.lax.stop_gradient(converted)
    c_mean, c_log_var = model.apply(v, converted, target, method=CycleVAE.encode)
    z_cycle = _reparameterize(c_mean, c_log_var, eps_cycle)
    c_out = model.apply(v, z_cycle, source, method=CycleVAE.decode)
    cycle_log_px = model.apply(v, x, c_out, method=CycleVAE.log_px)
    return {
        "log_px": log_px,
        "mean": mean,
        "log_var": log_var,
        "cycle_log_px": cycle_log_px,
        "cycle_mean": c_mean,
        "cycle_log_var": c_log_var,
        "converted": converted,
    }


def objective(
    params: Mapping[str, Any],
    batch: Mapping[str, Any],
    rng: jax.Array,
    *,
    model: CycleVAE,
    direct_weight: float = 1.0,
    cycle_weight: float = 1.0,
    beta: float = 1.0,
    cycle_beta: float | None = None,
    target_sampling: str = "others",
    stop_gradient: bool = False,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The engine's loss: minus the weighted sum of the direct and the cycled ELBO.

    ``loss = -(1/B) sum_b [direct_weight * losses.elbo(log p(x|z,s), m, lv, beta)_b +
    cycle_weight * losses.elbo(log p(x|z',s), m', lv', cycle_beta)_b]`` (see the module doc).
    Randomness: ``k_target, k_eps, k_cycle = jax.random.split(rng, 3)``; targets are
    ``draw_targets(k_target, s, K, target_sampling)``, ``eps`` and ``eps_cycle`` are
    ``jax.random.normal(k_eps | k_cycle, [B, q])``. When ``cycle_weight == 0`` the cycle pass
    is skipped (it would contribute exactly 0) and its metrics are not reported.

    Args:
      params: the model's variables.
      batch: ``{"x": [B, *data_shape], "label": int [B]}``; the label is the source domain.
      rng: a ``jax.random`` key.
      model: the :class:`CycleVAE` (bind with ``functools.partial``).
      direct_weight, cycle_weight: weights ``>= 0`` of the two ELBOs.
      beta: KL weight of the direct ELBO (1 = the bound).
      cycle_beta: KL weight of the cycled ELBO (``None``: ``beta``).
      target_sampling: ``"others"`` or ``"any"`` (:func:`draw_targets`).
      stop_gradient: no gradient through the converted features.

    Returns:
      ``(loss [], metrics)``; metrics (batch means): ``elbo`` (direct, ``beta = 1``),
      ``log_px``, ``kl`` and, if the cycle is on, ``cycle_elbo``, ``cycle_log_px``,
      ``cycle_kl``.
    """
    check_model(model)
    cycle_beta = beta if cycle_beta is None else cycle_beta
    for name, w in (
        ("direct_weight", direct_weight),
        ("cycle_weight", cycle_weight),
        ("beta", beta),
        ("cycle_beta", cycle_beta),
    ):
        _check_weight(name, w)
    if target_sampling not in TARGET_SAMPLING:
        raise ValueError(
            f"target_sampling must be one of {TARGET_SAMPLING}, got {target_sampling!r}"
        )
    if "label" not in batch:
        raise ValueError(
            f'the Cycle VAE objective needs the source domain as batch["label"] (int [B]), '
            f"got keys {sorted(batch)}"
        )
    x = batch["x"]
    b = _check_x_shape(model, x, 'batch["x"]')[0]
    source = check_domains(model, batch["label"], b, 'batch["label"]')
    k_target, k_eps, k_cycle = jax.random.split(rng, 3)
    q = model.latent_dim
    v = _variables(params)
    if cycle_weight == 0:
        mean, log_var = model.apply(v, x, source, method=CycleVAE.encode)
        eps = jax.random.normal(k_eps, (b, q), mean.dtype)
        out = model.apply(v, _reparameterize(mean, log_var, eps), source, method=CycleVAE.decode)
        t = {"log_px": model.apply(v, x, out, method=CycleVAE.log_px)}
        t.update(mean=mean, log_var=log_var)
    else:
        target = draw_targets(k_target, source, model.num_domains, target_sampling)
        dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
        eps = jax.random.normal(k_eps, (b, q), dtype)
        eps_cycle = jax.random.normal(k_cycle, (b, q), dtype)
        t = cycle_terms(
            params, x, source, target, eps, eps_cycle, model=model, stop_gradient=stop_gradient
        )
    direct = L.elbo(t["log_px"], t["mean"], t["log_var"], beta)
    kl = L.gaussian_kl(t["mean"], t["log_var"])
    per_example = direct_weight * direct
    metrics = {
        "elbo": jnp.mean(t["log_px"] - kl),
        "log_px": jnp.mean(t["log_px"]),
        "kl": jnp.mean(kl),
    }
    if cycle_weight != 0:
        cycle = L.elbo(t["cycle_log_px"], t["cycle_mean"], t["cycle_log_var"], cycle_beta)
        cycle_kl = L.gaussian_kl(t["cycle_mean"], t["cycle_log_var"])
        per_example = per_example + cycle_weight * cycle
        metrics.update(
            cycle_elbo=jnp.mean(t["cycle_log_px"] - cycle_kl),
            cycle_log_px=jnp.mean(t["cycle_log_px"]),
            cycle_kl=jnp.mean(cycle_kl),
        )
    return -jnp.mean(per_example), metrics


# --------------------------------------------------------------------------------------------
# Inference, conversion and generation
# --------------------------------------------------------------------------------------------


def _prepare(model, params, x, domains, names):
    """Validates ``x`` and the domain arguments; returns them as arrays."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    b = _check_x_shape(model, x, "x")[0]
    return x, tuple(check_domains(model, d, b, n) for d, n in zip(domains, names, strict=True))


@functools.partial(jax.jit, static_argnames=("model",))
def _encode(model, params, x, source):
    return model.apply(_variables(params), x, source, method=CycleVAE.encode)


def encode(
    params: Mapping[str, Any], x: Any, source: Any, *, model: CycleVAE
) -> tuple[jax.Array, jax.Array]:
    """``q(z | x, s)``: ``x [B, *data_shape]``, ``source`` -> ``(mean [B, q], log_var [B, q])``."""
    check_model(model)
    x, (source,) = _prepare(model, params, x, (source,), ("source",))
    return _encode(model, params, x, source)


@functools.partial(jax.jit, static_argnames=("model",))
def _decode_mean(model, params, z, domain):
    v = _variables(params)
    return model.apply(v, model.apply(v, z, domain, method=CycleVAE.decode), method=CycleVAE.mean)


def decode_mean(params: Mapping[str, Any], z: Any, domain: Any, *, model: CycleVAE) -> jax.Array:
    """``E[x | z, c]``: ``z [B, q]``, ``domain`` -> ``[B, *data_shape]``."""
    check_model(model)
    z = jnp.asarray(z)
    if z.ndim != 2 or z.shape[1] != model.latent_dim:
        raise ValueError(f"z must have shape [B, {model.latent_dim}], got {tuple(z.shape)}")
    domain = check_domains(model, domain, z.shape[0], "domain")
    return _decode_mean(model, params, z, domain)


@functools.partial(jax.jit, static_argnames=("model",))
def _convert(model, params, x, source, target):
    mean, _ = _encode(model, params, x, source)
    return _decode_mean(model, params, mean, target)


def convert(
    params: Mapping[str, Any], x: Any, source: Any, target: Any, *, model: CycleVAE
) -> jax.Array:
    """Convert ``x`` from domain ``source`` to domain ``target``: ``E[x | z = E_q[z|x,s], t]``.

    Pure and jittable (``jax.jit(functools.partial(convert, model=m))``); vmap it over targets
    with ``jax.vmap(f, in_axes=(None, None, None, 0))`` for ``[T, B, *data_shape]``.
    ``target == source`` is the reconstruction.

    Args:
      params: the model's variables.
      x: ``[B, *data_shape]`` examples of the source domain(s).
      source, target: int domain indices, scalars or ``[B]``, in ``[0, num_domains)``.
      model: the :class:`CycleVAE`.

    Returns:
      ``[B, *data_shape]`` converted features (probabilities for the Bernoulli likelihood).
    """
    check_model(model)
    x, (source, target) = _prepare(model, params, x, (source, target), ("source", "target"))
    return _convert(model, params, x, source, target)


def reconstruct(params: Mapping[str, Any], x: Any, source: Any, *, model: CycleVAE) -> jax.Array:
    """``E[x | z = E_q[z | x, s], s]``, i.e. ``convert(x, s, s)``: ``[B, *data_shape]``."""
    return convert(params, x, source, source, model=model)


def cycle_reconstruct(
    params: Mapping[str, Any], x: Any, source: Any, target: Any, *, model: CycleVAE
) -> jax.Array:
    """``x -> x_hat_{s->t} -> x_hat_{s->t->s}`` with posterior means: ``convert(convert(x, s,
    t), t, s)``, ``[B, *data_shape]`` (the deterministic round trip the objective trains)."""
    check_model(model)
    x, (source, target) = _prepare(model, params, x, (source, target), ("source", "target"))
    return _convert(model, params, _convert(model, params, x, source, target), target, source)


@functools.partial(jax.jit, static_argnames=("model", "n", "mean"))
def _sample(model, params, rng, domain, n, mean):
    z_rng, x_rng = jax.random.split(rng)
    z = jax.random.normal(z_rng, (n, model.latent_dim), jnp.float32)
    v = _variables(params)
    out = model.apply(v, z, domain, method=CycleVAE.decode)
    if model.likelihood == "bernoulli":
        probs = jax.nn.sigmoid(out)
        return probs if mean else jax.random.bernoulli(x_rng, probs).astype(jnp.float32)
    if mean:
        return out
    std = jnp.exp(0.5 * model.apply(v, method=CycleVAE.decoder_log_var))
    return out + std * jax.random.normal(x_rng, out.shape, out.dtype)


def sample(
    params: Mapping[str, Any],
    rng: jax.Array,
    n: int,
    domain: Any,
    *,
    model: CycleVAE,
    mean: bool = True,
) -> jax.Array:
    """``n`` draws of ``p(x | c) = E_z p(x | z, c)``, ``z ~ N(0, I)``: ``[n, *data_shape]``.

    ``domain`` is a scalar or ``[n]``; ``mean=True`` returns ``E[x | z, c]`` (the usual
    picture), ``False`` a draw from the likelihood.
    """
    check_model(model)
    n = _check_count("n", n, 0)
    domain = check_domains(model, domain, n, "domain")
    return _sample(model, params, rng, domain, n, bool(mean))


@functools.partial(jax.jit, static_argnames=("model", "num_samples"))
def _elbo(model, params, x, source, rng, num_samples):
    v = _variables(params)
    mean, log_var = model.apply(v, x, source, method=CycleVAE.encode)

    def one(key):
        z = _reparameterize(mean, log_var, jax.random.normal(key, mean.shape, mean.dtype))
        out = model.apply(v, z, source, method=CycleVAE.decode)
        return L.elbo(model.apply(v, x, out, method=CycleVAE.log_px), mean, log_var)

    return jnp.mean(jax.lax.map(one, jax.random.split(rng, num_samples)), axis=0)


def elbo(
    params: Mapping[str, Any],
    x: Any,
    source: Any,
    rng: jax.Array,
    *,
    model: CycleVAE,
    num_samples: int = 1,
) -> jax.Array:
    """The conditional ELBO ``E_q[log p(x | z, s)] - KL(q(z | x, s) || N(0, I))`` per example,
    ``[B]``, the expectation averaged over ``num_samples`` reparameterised draws."""
    x = check_data(model, x)
    num_samples = _check_count("num_samples", num_samples)
    (source,) = _prepare(model, params, x, (source,), ("source",))[1]
    return _elbo(model, params, x, source, rng, num_samples)
