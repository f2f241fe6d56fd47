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
learned variance ``sigma2 = min_variance + exp(raw)``, ``raw`` starting at 0), written once
for both families.

**Conventions.** Training starts from :class:`CycleVAEConfig` (every hyper-parameter of the
model and of its objective): ``CycleVAEConfig(...).objective(DataInfo(shape=...,
num_classes=K))`` is a :class:`CycleVAEObjective` whose ``task(optimizer)`` the engine trains;
``dataclasses.replace(config, cycle_weight=0.0)`` is the same model without the cycle. Every
function takes the module (``objective.model``) and its variables ``params = {"params":
...}`` first, in the order ``(model, params, data..., rng)``, so
``functools.partial(convert, model)`` is ``convert(params, x, source, target)``, a pure
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

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax._checks import check_choice as _check_choice
from genjax._checks import check_int as _check_count
from genjax._checks import is_concrete as _is_concrete
from genjax._checks import is_int as _is_int
from genjax.models import _vae_common as C
from genjax.models._vae_common import LIKELIHOODS, VARIANCES
from genjax.models.base import DataInfo, ModelConfig, single

__all__ = [
    "ARCHITECTURES",
    "LIKELIHOODS",
    "TARGET_SAMPLING",
    "VARIANCES",
    "CycleVAE",
    "CycleVAEConfig",
    "CycleVAEObjective",
    "check_data",
    "check_domains",
    "check_model",
    "convert",
    "cycle_reconstruct",
    "cycle_terms",
    "decode",
    "draw_targets",
    "elbo",
    "encode",
    "init",
    "loss",
    "reconstruct",
    "sample",
]

ARCHITECTURES = ("mlp", "conv")
TARGET_SAMPLING = ("others", "any")


# --------------------------------------------------------------------------------------------
# The hyper-parameters and the engine's objective
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CycleVAEConfig(C.SavedKeys, ModelConfig):
    """Hyper-parameters of the Cycle VAE and of its training objective.

    The domain codes are the data's labels (``info.num_classes >= 2`` of them).
    ``dataclasses.replace(config, cycle_weight=0.0)`` is the plain conditional VAE with the
    same architecture (the comparison the experiments report).

    Attributes:
      architecture: mlp | conv (conv needs images [H, W, C], not flattened).
      hidden: MLP widths or conv channels of the encoder (the decoder mirrors them).
      latent_dim: q, the latent dimension (>= 1).
      activation: hidden-layer activation (relu, tanh, elu, ...).
      embed_dim: width of the learned domain embeddings.
      condition_encoder: feed the encoder an embedding of the source domain too.
      likelihood: bernoulli (data in [0, 1]) | gaussian.
      variance: gaussian only: fixed | isotropic (one learned sigma2) | pixel (one per feature).
      fixed_variance: the variance when variance=fixed.
      min_variance: lower bound of a learned variance.
      kernel_size: conv kernel size.
      direct_weight: weight of the direct ELBO.
      cycle_weight: weight of the cycled ELBO (0 = the plain conditional VAE).
      beta: KL weight of the direct ELBO.
      cycle_beta: KL weight of the cycled ELBO (none = beta).
      target_sampling: others (uniform over the other domains) | any (the source included).
      stop_gradient: no gradient through the converted features in the cycle term.

    Training a Cycle VAE between 3 domains of 16-d vectors for two updates, then converting
    and sampling::

        >>> import jax, jax.numpy as jnp, optax
        >>> from genjax.models import cyclevae
        >>> from genjax.models.base import DataInfo
        >>> from genjax.train import Engine, init_state
        >>> config = cyclevae.CycleVAEConfig(hidden=(32,), latent_dim=2, embed_dim=4)
        >>> objective = config.objective(DataInfo(shape=(16,), num_classes=3))
        >>> engine = Engine(objective.task(optax.adam(1e-3)))
        >>> batch = {"x": jnp.zeros((6, 16)), "label": jnp.arange(6, dtype=jnp.int32) % 3}
        >>> state = init_state(engine.task, jax.random.PRNGKey(0), batch)
        >>> for _ in range(2):
        ...     state, metrics = engine.step(state, batch)
        >>> sorted(metrics)[:6]
        ['cycle_elbo', 'cycle_kl', 'cycle_log_px', 'elbo', 'kl', 'log_px']
        >>> objective.convert(state.params, state.model_state, batch["x"], 0, 2).shape
        (6, 16)
        >>> objective.sample(state.params, state.model_state, jax.random.PRNGKey(1), 4).shape
        (4, 16)
    """

    family: ClassVar[str] = "cyclevae"
    moved_to_eval: ClassVar[tuple[str, ...]] = (
        "compare",
        "classifier_steps",
        "classifier_seed",
        "elbo_samples",
    )

    architecture: str = "mlp"
    hidden: tuple[int, ...] = (256, 256)
    latent_dim: int = 8
    activation: str = "relu"
    embed_dim: int = 16
    condition_encoder: bool = True
    likelihood: str = "gaussian"
    variance: str = "fixed"
    fixed_variance: float = 0.01
    min_variance: float = 1e-3
    kernel_size: int = 4
    direct_weight: float = 1.0
    cycle_weight: float = 4.0
    beta: float = 1.0
    cycle_beta: float | None = None
    target_sampling: str = "others"
    stop_gradient: bool = False

    def __post_init__(self):
        if isinstance(self.hidden, list):
            object.__setattr__(self, "hidden", tuple(self.hidden))
        owner = "CycleVAEConfig"
        C.check_fields(self, owner, ARCHITECTURES, hidden_required=True)
        _check_count(self._label("embed_dim"), self.embed_dim)
        C.check_bool(self._label("condition_encoder"), self.condition_encoder)
        for name in ("direct_weight", "cycle_weight", "beta"):
            C.check_nonnegative(self._label(name), getattr(self, name))
        if self.cycle_beta is not None:
            C.check_nonnegative(self._label("cycle_beta"), self.cycle_beta)
        _check_choice(self._label("target_sampling"), self.target_sampling, TARGET_SAMPLING)
        C.check_bool(self._label("stop_gradient"), self.stop_gradient)

    def objective(self, info: DataInfo) -> CycleVAEObjective:
        """The Cycle VAE between the ``info.num_classes`` domains of data of ``info.shape``.

        Raises ``ValueError`` for unlabelled or single-class data (nothing to convert
        between), and, naming the field, for a config the data cannot take: conv on inputs
        that are not images (or whose size the stages do not divide), the Bernoulli
        likelihood on inputs not in ``[0, 1]``.
        """
        if info.num_classes is None:
            raise ValueError(
                f"the Cycle VAE needs labelled data (the label is the domain code); "
                f"{info.label} has no labels"
            )
        if not _is_int(info.num_classes) or info.num_classes < 2:
            raise ValueError(
                f"the Cycle VAE needs at least two domains to convert between; {info.label} "
                f"has {info.num_classes} class(es)"
            )
        C.check_info(self, info)
        model = CycleVAE(self, tuple(info.shape), int(info.num_classes))
        check_model(model)
        return CycleVAEObjective(config=self, info=info, model=model)


@dataclasses.dataclass(frozen=True)
class CycleVAEObjective(C.OnePlayerObjective):
    """The Cycle VAE of a :class:`CycleVAEConfig` on labelled data of ``info``: the engine's
    loss (:func:`loss` with the config's weights), and the model's functions on the engine's
    parameters (``source``, ``target`` and ``domain`` are the data's label indices).

    Attributes:
      config: the :class:`CycleVAEConfig`.
      info: the data's :class:`~genjax.models.base.DataInfo`.
      model: the :class:`CycleVAE` module.
    """

    config: CycleVAEConfig
    info: DataInfo
    model: CycleVAE

    def init(self, rng: jax.Array, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Initial variables ``{"params": ...}`` (only ``batch["x"]``'s shape is used)."""
        return init(self.model, rng, batch)

    def loss(self, params, batch, rng):
        """The engine's loss ``(params, batch, rng) -> (loss, metrics)``: :func:`loss`."""
        c = self.config
        return loss(
            self.model,
            params,
            batch,
            rng,
            direct_weight=c.direct_weight,
            cycle_weight=c.cycle_weight,
            beta=c.beta,
            cycle_beta=c.cycle_beta,
            target_sampling=c.target_sampling,
            stop_gradient=c.stop_gradient,
        )

    # The model's functions on the engine's parameters. -------------------------------------

    def functions(self) -> tuple[str, ...]:
        return (*super().functions(), "posterior", "cycle_reconstruct", "elbo")

    def sample(self, params, model_state, rng, n, domain=None, *, mean: bool = True):
        """:func:`sample`: ``n`` examples ``[n, *shape]``, of domain ``i % K`` for the ``i``-th
        unless ``domain`` is given."""
        return sample(self.model, single(params), rng, n, domain, mean=mean)

    def encode(self, params, model_state, x, source):
        """The posterior mean ``E_q[z | x, s]``, ``[B, q]``."""
        return encode(self.model, single(params), x, source)[0]

    def posterior(self, params, model_state, x, source):
        """``q(z | x, s)`` as ``(mean, log_var)``, each ``[B, q]``."""
        return encode(self.model, single(params), x, source)

    def decode(self, params, model_state, z, domain):
        """:func:`decode`: ``E[x | z, c]``."""
        return decode(self.model, single(params), z, domain)

    def reconstruct(self, params, model_state, x, source):
        """:func:`reconstruct`: ``convert(x, s, s)``."""
        return reconstruct(self.model, single(params), x, source)

    def convert(self, params, model_state, x, source, target):
        """:func:`convert` from domain ``source`` to ``target``."""
        return convert(self.model, single(params), x, source, target)

    def cycle_reconstruct(self, params, model_state, x, source, target):
        """:func:`cycle_reconstruct`: ``x -> t -> s`` with posterior means."""
        return cycle_reconstruct(self.model, single(params), x, source, target)

    def elbo(self, params, model_state, x, source, rng, num_samples: int = 1):
        """:func:`elbo`, the conditional ELBO of each example, ``[B]``."""
        return elbo(self.model, single(params), x, source, rng, num_samples=num_samples)


# --------------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------------


def check_model(m: CycleVAE) -> tuple[int, ...]:
    """Validates a :class:`CycleVAE`'s fields (Flax defers ``setup``, so construction does not);
    returns ``data_shape`` as a tuple of ints. Raises ``ValueError`` naming the field."""
    k = m.num_domains
    if not _is_int(k) or k < 2:
        raise ValueError(
            f"CycleVAE.num_domains must be an int >= 2 (a Cycle VAE converts between domains; "
            f"a single-domain dataset has nothing to convert to), got {k!r}"
        )
    return C.check_module(m, CycleVAEConfig)


class CycleVAE(C.LikelihoodHead):
    """Domain-conditioned encoder and decoder of the Cycle VAE (see the module doc).

    Methods (through ``module.apply(params, ..., method=...)`` or the functions below):
    ``encode(x, source) -> (mean, log_var)`` (``[B, q]`` each), ``decode(z, domain)`` ->
    Bernoulli logits or Gaussian means ``[B, *data_shape]``, ``decoder_log_var()``
    (Gaussian), ``log_px(x, out) -> [B]``, ``mean(out)``, and ``__call__(x, source)``, used by
    :func:`init`, which runs all of them.

    ``CycleVAEConfig(...).objective(info).model`` is one; ``CycleVAE(config, data_shape,
    num_domains)`` builds it directly. Its hyper-parameters are those of the config (the
    loss weights and ``target_sampling`` belong to the objective); a learned variance starts
    at ``min_variance + 1``.

    Attributes:
      config: the :class:`CycleVAEConfig`.
      data_shape: shape of one example: ``(D,)`` for feature vectors, ``(H, W, C)`` images.
      num_domains: ``K >= 2``, the number of domain codes ``0..K-1``.
    """

    config: CycleVAEConfig
    data_shape: tuple[int, ...]
    num_domains: int

    def setup(self):
        shape = check_model(self)
        self.decoder_embed = nn.Embed(self.num_domains, self.config.embed_dim)
        if self.config.condition_encoder:
            self.encoder_embed = nn.Embed(self.num_domains, self.config.embed_dim)
        C.setup_networks(self, shape, raw_variance=0.0)

    def _condition(self, h: jax.Array, source: jax.Array) -> jax.Array:
        if not self.config.condition_encoder:
            return h
        return jnp.concatenate([h, self.encoder_embed(source).astype(h.dtype)], axis=-1)

    def encode(self, x: jax.Array, source: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``x [B, *data_shape]``, ``source`` int ``[B]`` -> ``(mean, log_var)``, ``[B, q]``."""
        b, q = x.shape[0], self.config.latent_dim
        if self.config.architecture == "mlp":
            h = self.encoder(self._condition(x.reshape(b, -1), source))
        else:
            h = self.encoder_head(self._condition(self.encoder(x).reshape(b, -1), source))
        return h[:, :q], h[:, q:]

    def decode(self, z: jax.Array, domain: jax.Array) -> jax.Array:
        """``z [B, q]``, ``domain`` int ``[B]`` -> logits or means ``[B, *data_shape]``."""
        h = jnp.concatenate([z, self.decoder_embed(domain).astype(z.dtype)], axis=-1)
        return self.decoder(h).reshape(z.shape[0], *self.data_shape)

    def __call__(self, x: jax.Array, source: jax.Array) -> jax.Array:
        mean, _ = self.encode(x, source)
        return self.log_px(x, self.decode(mean, source))


# --------------------------------------------------------------------------------------------
# Validation at the public boundary
# --------------------------------------------------------------------------------------------


def check_data(model: CycleVAE, x: Any, name: str = "x") -> jax.Array:
    """Checks ``x`` against the model: shape ``[B, *data_shape]`` (always, also under ``jit``),
    finite and, for the Bernoulli likelihood, in ``[0, 1]`` (concrete arrays only).

    Returns ``x`` as a float array. Raises ``ValueError`` naming the problem.
    """
    check_model(model)
    return C.check_data(model, x, name)


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


# --------------------------------------------------------------------------------------------
# Initialisation, the loss and its parts
# --------------------------------------------------------------------------------------------


def init(model: CycleVAE, rng: jax.Array, example_batch: Mapping[str, Any]) -> dict[str, Any]:
    """Initial variables ``{"params": ...}``. Only the shape of ``example_batch["x"]``
    ``[B, *data_shape]`` is used."""
    check_model(model)
    return C.init_variables(model, rng, example_batch, jnp.zeros((1,), jnp.int32))


def draw_targets(rng: jax.Array, source: jax.Array, num_domains: int, sampling: str) -> jax.Array:
    """A target domain per example, int32 ``[B]``.

    ``"others"``: ``t = (s + 1 + u) mod K`` with ``u ~ Uniform{0, ..., K - 2}``, uniform over the
    ``K - 1`` domains other than ``s``. ``"any"``: ``t ~ Uniform{0, ..., K - 1}``. Both draw
    ``jax.random.randint(rng, [B], 0, K - 1 or K)``.
    """
    sampling = _check_choice("target_sampling", sampling, TARGET_SAMPLING)
    source = jnp.asarray(source, jnp.int32)
    if sampling == "any":
        return jax.random.randint(rng, source.shape, 0, num_domains, jnp.int32)
    u = jax.random.randint(rng, source.shape, 0, num_domains - 1, jnp.int32)
    return (source + 1 + u) % num_domains


def _pass(model, v, x_in, code_in, eps, x_out, code_out):
    """``encoder(x_in, code_in) -> (mean, log_var)``, ``z = mean + sigma * eps``, and
    ``log p(x_out | z, code_out)``: returns ``(log_px, mean, log_var, z)``."""
    mean, log_var = model.apply(v, x_in, code_in, method=CycleVAE.encode)
    z = C.reparameterize(mean, log_var, eps)
    out = model.apply(v, z, code_out, method=CycleVAE.decode)
    return model.apply(v, x_out, out, method=CycleVAE.log_px), mean, log_var, z


def cycle_terms(
    model: CycleVAE,
    params: Mapping[str, Any],
    x: jax.Array,
    source: jax.Array,
    target: jax.Array,
    eps: jax.Array,
    eps_cycle: jax.Array,
    *,
    stop_gradient: bool = False,
) -> dict[str, jax.Array]:
    """The per-example parts of the cycle objective for given targets and noise.

    With ``(m, lv) = encoder(x, s)``, ``z = m + exp(lv / 2) * eps``,
    ``x_hat = E[x | z, t]`` (``stop_gradient`` applied if asked),
    ``(m', lv') = encoder(x_hat, t)``, ``z' = m' + exp(lv' / 2) * eps_cycle``.

    Args:
      model: the :class:`CycleVAE`.
      params: the model's variables.
      x: ``[B, *data_shape]``; source, target: int ``[B]``; eps, eps_cycle: ``[B, q]``.
      stop_gradient: no gradient through ``x_hat``.

    Returns:
      A dict of ``[B]`` arrays: ``log_px`` (``log p(x | z, s)``), ``mean``/``log_var`` (``[B,
      q]``, of ``q(z | x, s)``), ``cycle_log_px`` (``log p(x | z', s)``), ``cycle_mean`` /
      ``cycle_log_var`` (of ``q(z' | x_hat, t)``), and ``converted`` (``x_hat``).
    """
    v = C.variables(params)
    log_px, mean, log_var, z = _pass(model, v, x, source, eps, x, source)
    converted = model.apply(
        v, model.apply(v, z, target, method=CycleVAE.decode), method=CycleVAE.mean
    )
    if stop_gradient:
        converted = jax.lax.stop_gradient(converted)
    cycle_log_px, c_mean, c_log_var, _ = _pass(model, v, converted, target, eps_cycle, x, source)
    return {
        "log_px": log_px,
        "mean": mean,
        "log_var": log_var,
        "cycle_log_px": cycle_log_px,
        "cycle_mean": c_mean,
        "cycle_log_var": c_log_var,
        "converted": converted,
    }


def loss(
    model: CycleVAE,
    params: Mapping[str, Any],
    batch: Mapping[str, Any],
    rng: jax.Array,
    *,
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
    is skipped (it would contribute exactly 0) and its metrics are not reported. Bind
    ``model`` and the weights with ``functools.partial`` for ``Task.from_loss``, or use
    :meth:`CycleVAEConfig.objective`.

    Args:
      model: the :class:`CycleVAE`.
      params: the model's variables.
      batch: ``{"x": [B, *data_shape], "label": int [B]}``; the label is the source domain.
      rng: a ``jax.random`` key.
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
        C.check_nonnegative(name, w)
    _check_choice("target_sampling", target_sampling, TARGET_SAMPLING)
    if "label" not in batch:
        raise ValueError(
            f'the Cycle VAE objective needs the source domain as batch["label"] (int [B]), '
            f"got keys {sorted(batch)}"
        )
    x = batch["x"]
    b = C.check_x(model.data_shape, x, 'batch["x"]')[0]
    source = check_domains(model, batch["label"], b, 'batch["label"]')
    k_target, k_eps, k_cycle = jax.random.split(rng, 3)
    q = model.config.latent_dim
    v = C.variables(params)
    if cycle_weight == 0:
        mean, log_var = model.apply(v, x, source, method=CycleVAE.encode)
        eps = jax.random.normal(k_eps, (b, q), mean.dtype)
        out = model.apply(v, C.reparameterize(mean, log_var, eps), source, method=CycleVAE.decode)
        t = {"log_px": model.apply(v, x, out, method=CycleVAE.log_px)}
        t.update(mean=mean, log_var=log_var)
    else:
        target = draw_targets(k_target, source, model.num_domains, target_sampling)
        dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
        eps = jax.random.normal(k_eps, (b, q), dtype)
        eps_cycle = jax.random.normal(k_cycle, (b, q), dtype)
        t = cycle_terms(
            model, params, x, source, target, eps, eps_cycle, stop_gradient=stop_gradient
        )
    direct, kl, plain = C.bound(t["log_px"], t["mean"], t["log_var"], beta)
    per_example = direct_weight * direct
    metrics = {"elbo": plain, "log_px": jnp.mean(t["log_px"]), "kl": jnp.mean(kl)}
    if cycle_weight != 0:
        cycle, cycle_kl, cycle_plain = C.bound(
            t["cycle_log_px"], t["cycle_mean"], t["cycle_log_var"], cycle_beta
        )
        per_example = per_example + cycle_weight * cycle
        metrics.update(
            cycle_elbo=cycle_plain,
            cycle_log_px=jnp.mean(t["cycle_log_px"]),
            cycle_kl=jnp.mean(cycle_kl),
        )
    return -jnp.mean(per_example), metrics


# --------------------------------------------------------------------------------------------
# Inference, conversion and generation
# --------------------------------------------------------------------------------------------


def _prepare(model, x, domains, names):
    """Validates the module, ``x`` and the domain arguments; returns them as arrays."""
    check_model(model)
    x = C.as_float(x)
    b = C.check_x(model.data_shape, x, "x")[0]
    return x, tuple(check_domains(model, d, b, n) for d, n in zip(domains, names, strict=True))


@functools.partial(jax.jit, static_argnames=("model",))
def _encode(model, params, x, source):
    return model.apply(C.variables(params), x, source, method=CycleVAE.encode)


def encode(
    model: CycleVAE, params: Mapping[str, Any], x: Any, source: Any
) -> tuple[jax.Array, jax.Array]:
    """``q(z | x, s)``: ``x [B, *data_shape]``, ``source`` -> ``(mean [B, q], log_var [B, q])``."""
    x, (source,) = _prepare(model, x, (source,), ("source",))
    return _encode(model, params, x, source)


@functools.partial(jax.jit, static_argnames=("model",))
def _decode(model, params, z, domain):
    v = C.variables(params)
    return model.apply(v, model.apply(v, z, domain, method=CycleVAE.decode), method=CycleVAE.mean)


def decode(model: CycleVAE, params: Mapping[str, Any], z: Any, domain: Any) -> jax.Array:
    """``E[x | z, c]``: ``z [B, q]``, ``domain`` -> ``[B, *data_shape]`` (the decoder's mean)."""
    check_model(model)
    z = C.check_z(model, z)
    domain = check_domains(model, domain, z.shape[0], "domain")
    return _decode(model, params, z, domain)


@functools.partial(jax.jit, static_argnames=("model",))
def _convert(model, params, x, source, target):
    mean, _ = _encode(model, params, x, source)
    return _decode(model, params, mean, target)


def convert(
    model: CycleVAE, params: Mapping[str, Any], x: Any, source: Any, target: Any
) -> jax.Array:
    """Convert ``x`` from domain ``source`` to domain ``target``: ``E[x | z = E_q[z|x,s], t]``.

    Pure and jittable (``jax.jit(functools.partial(convert, model))``); vmap it over targets
    with ``jax.vmap(f, in_axes=(None, None, None, 0))`` for ``[T, B, *data_shape]``.
    ``target == source`` is the reconstruction.

    Args:
      model: the :class:`CycleVAE`.
      params: the model's variables.
      x: ``[B, *data_shape]`` examples of the source domain(s).
      source, target: int domain indices, scalars or ``[B]``, in ``[0, num_domains)``.

    Returns:
      ``[B, *data_shape]`` converted features (probabilities for the Bernoulli likelihood).
    """
    x, (source, target) = _prepare(model, x, (source, target), ("source", "target"))
    return _convert(model, params, x, source, target)


def reconstruct(model: CycleVAE, params: Mapping[str, Any], x: Any, source: Any) -> jax.Array:
    """``E[x | z = E_q[z | x, s], s]``, i.e. ``convert(x, s, s)``: ``[B, *data_shape]``."""
    return convert(model, params, x, source, source)


def cycle_reconstruct(
    model: CycleVAE, params: Mapping[str, Any], x: Any, source: Any, target: Any
) -> jax.Array:
    """``x -> x_hat_{s->t} -> x_hat_{s->t->s}`` with posterior means: ``convert(convert(x, s,
    t), t, s)``, ``[B, *data_shape]`` (the deterministic round trip the objective trains)."""
    x, (source, target) = _prepare(model, x, (source, target), ("source", "target"))
    return _convert(model, params, _convert(model, params, x, source, target), target, source)


@functools.partial(jax.jit, static_argnames=("model", "n", "mean"))
def _sample(model, params, rng, domain, n, mean):
    return C.sample_decoder(
        model, params, rng, n, mean, lambda v, z: model.apply(v, z, domain, method=CycleVAE.decode)
    )


def sample(
    model: CycleVAE,
    params: Mapping[str, Any],
    rng: jax.Array,
    n: int,
    domain: Any = None,
    *,
    mean: bool = True,
) -> jax.Array:
    """``n`` draws of ``p(x | c) = E_z p(x | z, c)``, ``z ~ N(0, I)``: ``[n, *data_shape]``.

    ``domain`` is a scalar or ``[n]`` (``None``: domain ``i % K`` for the ``i``-th draw);
    ``mean=True`` returns ``E[x | z, c]`` (the usual picture), ``False`` a draw from the
    likelihood.
    """
    check_model(model)
    n = _check_count("n", n, 0)
    if domain is None:
        domain = jnp.arange(n, dtype=jnp.int32) % model.num_domains
    domain = check_domains(model, domain, n, "domain")
    return _sample(model, params, rng, domain, n, bool(mean))


@functools.partial(jax.jit, static_argnames=("model", "num_samples"))
def _elbo(model, params, x, source, rng, num_samples):
    v = C.variables(params)
    mean, log_var = model.apply(v, x, source, method=CycleVAE.encode)

    def log_px_of(z):
        out = model.apply(v, z, source, method=CycleVAE.decode)
        return model.apply(v, x, out, method=CycleVAE.log_px)

    return C.monte_carlo_elbo(mean, log_var, log_px_of, rng, num_samples)


def elbo(
    model: CycleVAE,
    params: Mapping[str, Any],
    x: Any,
    source: Any,
    rng: jax.Array,
    *,
    num_samples: int = 1,
) -> jax.Array:
    """The conditional ELBO ``E_q[log p(x | z, s)] - KL(q(z | x, s) || N(0, I))`` per example,
    ``[B]``, the expectation averaged over ``num_samples`` reparameterised draws."""
    x = check_data(model, x)
    num_samples = _check_count("num_samples", num_samples)
    (source,) = _prepare(model, x, (source,), ("source",))[1]
    return _elbo(model, params, x, source, rng, num_samples)
