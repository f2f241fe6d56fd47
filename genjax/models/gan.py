"""Generative adversarial networks (Goodfellow et al., 2014): MLP and DCGAN pairs, five losses
(minimax, non-saturating, hinge, Wasserstein with gradient penalty, least squares), and the usual
stabilisers, as two players of the training engine.

The game, with ``D = sigmoid(discriminator logits)``::

    min_G max_D  V(G, D) = E_{x ~ p_data}[log D(x)] + E_{z ~ N(0, I)}[log(1 - D(G(z)))]

For a fixed generator with density ``p_g`` the best discriminator is
``D*(x) = p_data(x) / (p_data(x) + p_g(x))`` and ``V(G, D*) = -log 4 + 2 JSD(p_data || p_g)``
(Goodfellow et al., 2014, Prop. 1 and Thm. 1), so the game's value is minimised exactly at
``p_g = p_data``.

The losses (``GANConfig.loss``), all per-example functions of the discriminator's raw outputs
from ``genjax.losses``; ``D`` is ``sigmoid(logits)`` for the first two and the raw output, with
no sigmoid, for the other three:

* ``"minimax"``: discriminator ``-(log D(x) + log(1 - D(G(z))))``
  (``losses.discriminator_loss``), generator ``log(1 - D(G(z)))``
  (``losses.generator_loss(..., non_saturating=False)``);
* ``"non_saturating"`` (the default): the same discriminator, generator ``-log D(G(z))``
  (``losses.generator_loss``; Goodfellow et al., 2014, section 3);
* ``"hinge"``: discriminator ``relu(1 - D(x)) + relu(1 + D(G(z)))``, generator ``-D(G(z))``
  (``losses.hinge_discriminator_loss`` / ``hinge_generator_loss``; Lim & Ye, 2017; Miyato
  et al., 2018);
* ``"wgan_gp"``: critic ``D(G(z)) - D(x) + gp_weight (||grad D(x_hat)||_2 - 1)^2`` with
  ``x_hat = eps x + (1 - eps) G(z)``, ``eps ~ U[0, 1]`` per example, generator ``-D(G(z))``
  (``losses.wasserstein_critic_loss``, ``gradient_penalty`` and
  ``wasserstein_generator_loss``; Arjovsky et al., 2017; Gulrajani et al., 2017);
* ``"least_squares"``: discriminator ``(D(x) - 1)^2 / 2 + D(G(z))^2 / 2``, generator
  ``(D(G(z)) - 1)^2 / 2`` (``losses.least_squares_discriminator_loss`` /
  ``least_squares_generator_loss``: the LSGAN of Mao et al., 2017, with ``a = 0``,
  ``b = c = 1``).

The optimal discriminator is ``p_data / (p_data + p_g)``, as a probability for the two
logistic losses and as the raw output for least squares, and ``sign(p_data - p_g)`` for hinge;
the WGAN critic's ``E_data[D] - E_g[D]`` estimates ``W_1(p_data, p_g)`` once the penalty keeps
it near 1-Lipschitz. The settings the papers use with each loss are left to the user, not
forced:

* ``"wgan_gp"``: ``d_steps = 5`` critic updates per generator update, ``gp_weight = 10``, Adam
  with learning rate ``1e-4``, ``b1 = 0``, ``b2 = 0.9`` (Gulrajani et al., 2017, Alg. 1), and
  usually no R1 (``r1_gamma = 0``). The critic's score goes into the loss as it is, with no
  sigmoid, and the critic has no batch normalisation (the penalty is per example; layer
  normalisation, ``discriminator_norm="layer"``, is the replacement the paper suggests);
* ``"hinge"``: usually with ``spectral_norm=True`` (Miyato et al., 2018);
* ``"least_squares"``, ``"minimax"``, ``"non_saturating"``: the logistic-GAN settings.

R1, spectral normalisation, ``d_steps``, two time-scales and the EMA work with every loss.

Stabilisers, each a field of :class:`GANConfig`:

* ``r1_gamma``: the R1 gradient penalty on real data, ``gamma / 2 * E_x ||grad_x D_logit(x)||^2``
  (Mescheder, Geiger & Nowozin, 2018), added to the discriminator's loss. With ``r1_steps =
  S > 0`` it acts only during the first ``S`` steps (a step counter in ``model_state["step"]``):
  the penalty keeps the early game from collapsing onto a few modes, but it also stops the
  discriminator from resolving structure finer than about ``sqrt(gamma)`` (its input gradient
  at real data is what it penalises), which on the 2-D mixtures (standard deviations 0.02 and
  0.05) leaves the samples visibly wider than the modes; switching it off once the modes are
  covered lets the discriminator sharpen them;
* ``spectral_norm``: every weight matrix of the discriminator is divided by its largest
  singular value, estimated by one power-iteration step per discriminator update (Miyato et
  al., 2018), with ``flax.linen.SpectralNorm`` wrapped around the whole discriminator network.
  Its power-iteration vectors are non-gradient state: they live in the engine's
  ``model_state["sn"]``, are advanced by the discriminator's update and only read elsewhere;
* ``d_steps = k``: ``k`` discriminator updates per generator update (the generator player
  has ``every=k``);
* two time-scales (Heusel et al., 2017): the two players take separate optimizers, so
  separate learning rates (``d_learning_rate`` / ``g_learning_rate`` in
  :meth:`GANObjective.run_task`, or one optimizer per player given to :meth:`GANObjective.task`);
* ``ema_decay``: an exponential moving average of the generator's weights, kept in
  ``model_state["ema"]`` and updated after every generator update; it is what
  :func:`sampling_variables` returns for sampling (Yazici et al., 2019; Karras et al., 2018).

Architectures (``GANConfig.architecture``):

* ``"mlp"``: generator ``z -> MLP(generator_features + (D,))`` reshaped to ``data_shape`` and
  passed through the ``output`` activation; discriminator ``x`` flattened ``->
  MLP(discriminator_features + (1,))``. Any ``data_shape`` (2-D points, flattened images).
* ``"dcgan"`` (Radford, Metz & Chintala, 2016, scaled down): generator
  ``genjax.nn.ConvDecoder`` (a ``Dense`` projection to a ``H/2^n x W/2^n`` map, then ``n``
  stride-2 transposed convolutions with ReLU, then a 3x3 convolution to ``C`` channels and the
  ``output`` activation); discriminator ``genjax.nn.ConvEncoder`` (``n`` stride-2 4x4
  convolutions with leaky ReLU, slope 0.2) then ``Dense(1)``. ``data_shape = (H, W, C)`` with
  ``H`` and ``W`` multiples of ``2^n``, ``n = len(features)``: 8x8 and 28x28 with two stages,
  32x32x3 with up to five. Batch normalisation (in the paper) would be mutable state, which
  the library's blocks leave out; ``generator_norm`` / ``discriminator_norm`` offer layer or
  group normalisation instead.

Class-conditional GAN (``GANConfig.conditional``; Mirza & Osindero, 2014, with the projection
discriminator of Miyato & Koyama, 2018), on data with ``info.num_classes = K >= 2`` classes
whose batches carry ``"label"`` (int ``[B]``):

* generator ``G(z, y)``: the network above reads ``[z, E y]``, ``z`` concatenated with a
  learned class embedding ``E`` (``K x embedding_dim``);
* discriminator ``D(x, y) = w . phi(x) + b + V[y] . phi(x)`` (Miyato & Koyama, 2018, eq. 3),
  ``phi(x)`` its last hidden layer (activated; the flattened feature map of the DCGAN) and
  ``V`` a learned ``K x F`` class embedding. It is the logit of the optimal discriminator
  when ``log p_data(y|x) / p_g(y|x)`` is linear in ``phi`` (the paper's derivation);
* in both players' objectives the generated examples take the real batch's labels, so the
  classes are drawn as often as in the data; the gradient penalties differentiate
  ``D(., y)`` at the examples' own labels. ``sample(..., labels)`` asks for classes
  (``labels=None``: ``i mod K``, an equal share of each).

The hyper-parameters are a :class:`GANConfig`; ``config.objective(info)`` builds them for
data of ``info.shape`` into a :class:`GANObjective`, whose ``model`` (a :class:`GAN`: the
config and the data shape) is what the module's functions take first. In the engine
(:meth:`GANObjective.task`) the GAN is two players, ``Player(DISC, discriminator_objective,
every=1)`` then ``Player(GEN, generator_objective, every=d_steps)``, both stateful, with
:func:`init_model_state` and :func:`ema_post_update`.
Parameters are a dict ``{"disc": {"params": ...}, "gen": {"params": ...}}`` (the engine's
player names :data:`DISC` and :data:`GEN`); the model state is ``{"sn": ...}`` with spectral
normalisation and ``{"ema": {"params": ...}}`` with an EMA (``{}`` with neither).

References:
  I. Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014.
  A. Radford, L. Metz, S. Chintala, "Unsupervised Representation Learning with Deep
  Convolutional Generative Adversarial Networks", ICLR 2016.
  L. Mescheder, A. Geiger, S. Nowozin, "Which Training Methods for GANs do actually
  Converge?", ICML 2018.
  T. Miyato, T. Kataoka, M. Koyama, Y. Yoshida, "Spectral Normalization for Generative
  Adversarial Networks", ICLR 2018.
  M. Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
  Equilibrium", NeurIPS 2017.
  Y. Yazici et al., "The Unusual Effectiveness of Averaging in GAN Training", ICLR 2019.
  J. H. Lim, J. C. Ye, "Geometric GAN", arXiv:1705.02894, 2017.
  M. Arjovsky, S. Chintala, L. Bottou, "Wasserstein Generative Adversarial Networks", ICML 2017.
  I. Gulrajani, F. Ahmed, M. Arjovsky, V. Dumoulin, A. Courville, "Improved Training of
  Wasserstein GANs", NeurIPS 2017.
  X. Mao et al., "Least Squares Generative Adversarial Networks", ICCV 2017.
  M. Mirza, S. Osindero, "Conditional Generative Adversarial Nets", arXiv:1411.1784, 2014.
  T. Miyato, M. Koyama, "cGANs with Projection Discriminator", ICLR 2018.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from genjax import losses as L
from genjax._checks import (
    check_choice,
    check_float,
    check_int,
    check_shape,
    is_concrete,
    is_int,
)
from genjax.models.base import DataInfo, ModelConfig, Objective, OptimizerFactory
from genjax.nn import ACTIVATIONS, MLP, NORMS, ConvDecoder, ConvEncoder, check_image_shape
from genjax.task import Player, Task

__all__ = [
    "ARCHITECTURES",
    "DISC",
    "GAN",
    "GEN",
    "LOSSES",
    "OUTPUTS",
    "Discriminator",
    "GANConfig",
    "GANObjective",
    "Generator",
    "discriminate",
    "discriminator_logits",
    "discriminator_objective",
    "ema_post_update",
    "generate",
    "generator_objective",
    "init",
    "init_model_state",
    "r1_penalty",
    "sample",
    "sample_latent",
    "sampling_variables",
]

ARCHITECTURES = ("mlp", "dcgan")
OUTPUTS = ("identity", "sigmoid", "tanh")
#: The GAN losses (``GANConfig.loss``); see the module docstring.
LOSSES = ("minimax", "non_saturating", "hinge", "wgan_gp", "least_squares")
#: The losses that read the discriminator's output as the logit of a probability.
_LOGISTIC = ("minimax", "non_saturating")
#: Player names of the discriminator and the generator in the engine's parameter dict.
DISC, GEN = "disc", "gen"
#: The keys of a per-player optimizer mapping given to :meth:`GANObjective.task`.
_OPTIMIZER_KEYS = ("discriminator", "generator")

_OUTPUT_FNS = {"identity": lambda x: x, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh}

#: ``loss -> (discriminator loss, generator loss)``, per-example functions of raw outputs.
_LOSS_FNS = {
    "minimax": (L.discriminator_loss, functools.partial(L.generator_loss, non_saturating=False)),
    "non_saturating": (L.discriminator_loss, L.generator_loss),
    "hinge": (L.hinge_discriminator_loss, L.hinge_generator_loss),
    "wgan_gp": (L.wasserstein_critic_loss, L.wasserstein_generator_loss),
    "least_squares": (L.least_squares_discriminator_loss, L.least_squares_generator_loss),
}


def _check_widths(label: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(f"{label} must be a sequence of ints >= 1, got {value!r}")
    widths = tuple(value)
    if not widths or not all(is_int(w) and w >= 1 for w in widths):
        raise ValueError(f"{label} must be a non-empty sequence of ints >= 1, got {value!r}")
    return tuple(int(w) for w in widths)


def _check_weight(label: str, value: Any) -> float:
    """A penalty weight: a finite real number >= 0 (not a bool, not a string)."""
    if isinstance(value, bool) or not (
        isinstance(value, int | float) and math.isfinite(value) and value >= 0
    ):
        raise ValueError(f"{label} must be a finite number >= 0, got {value!r}")
    return value


# --------------------------------------------------------------------------------------------
# The hyper-parameters, the model, the objective
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GANConfig(ModelConfig):
    """The hyper-parameters of a GAN and of its training game (the module docstring has the
    formulas); ``config.objective(info)`` builds it for data of ``info.shape``.

    Attributes:
      architecture: mlp | dcgan (dcgan needs images [H, W, C], data.flatten=false).
      latent_dim: dimension of z ~ N(0, I) (>= 1).
      generator_features: generator hidden widths (mlp) or channels coarse to fine (dcgan).
      discriminator_features: discriminator hidden widths (mlp) or channels fine to coarse.
      generator_activation: generator hidden activation (a genjax.nn.ACTIVATIONS name).
      discriminator_activation: discriminator hidden activation.
      output: generator output activation: identity (2-D points) | sigmoid (pixels) | tanh.
      generator_norm: dcgan generator normalisation: none | layer | group.
      discriminator_norm: dcgan discriminator normalisation (not on its first stage).
      kernel_size: dcgan (transposed) convolution kernel size.
      spectral_norm: spectrally normalise the discriminator's weights (Miyato et al., 2018).
      loss: the GAN loss: non_saturating | minimax | hinge | wgan_gp | least_squares
        (wgan_gp is usually run with d_steps=5, r1_gamma=0 and Adam lr 1e-4, b1=0, b2=0.9).
      gp_weight: weight lambda of the WGAN-GP gradient penalty (wgan_gp only; Gulrajani et
        al., 2017: 10).
      r1_gamma: R1 penalty weight gamma on real data, gamma/2 E||grad_x D(x)||^2 (0 = off;
        Mescheder et al., 2018).
      r1_steps: apply R1 only during the first r1_steps steps (0 = throughout).
      d_steps: discriminator updates per generator update (k >= 1).
      ema_decay: EMA decay in [0, 1) of the generator's weights used for sampling (0 = no EMA).
      d_learning_rate: the discriminator's learning rate in run_task (none = the optimizer's).
      g_learning_rate: the generator's learning rate in run_task (none = the optimizer's).
      conditional: a class-conditional GAN on the data's labels: z concatenated with a class
        embedding in the generator, a projection discriminator (Miyato & Koyama, 2018).
      embedding_dim: width of the generator's class embedding (conditional only).

    Training a small GAN on 2-D points for two steps, from the library alone::

        >>> import jax, jax.numpy as jnp, optax
        >>> from genjax.models import gan
        >>> from genjax.models.base import DataInfo
        >>> from genjax.train import Engine, init_state
        >>> config = gan.GANConfig(
        ...     latent_dim=2, generator_features=(16,), discriminator_features=(16,)
        ... )
        >>> objective = config.objective(DataInfo(shape=(2,)))
        >>> task = objective.task(optax.adam(1e-3))
        >>> batch = {"x": jnp.zeros((8, 2))}
        >>> engine = Engine(task)
        >>> state = engine.place_state(init_state(task, jax.random.PRNGKey(0), batch))
        >>> for _ in range(2):
        ...     state, metrics = engine.step(state, batch)
        >>> sorted(metrics)  # doctest: +NORMALIZE_WHITESPACE
        ['disc/d_fake', 'disc/d_real', 'disc/gan_value', 'disc/loss', 'disc/r1',
         'gen/d_fake', 'gen/loss', 'nonfinite']
        >>> params = engine.params(state)
        >>> objective.sample(params, state.model_state, jax.random.PRNGKey(1), 5).shape
        (5, 2)
    """

    family: ClassVar[str] = "gan"

    architecture: str = "mlp"
    latent_dim: int = 16
    generator_features: tuple[int, ...] = (256, 256, 256)
    discriminator_features: tuple[int, ...] = (256, 256, 256)
    generator_activation: str = "relu"
    discriminator_activation: str = "leaky_relu"
    output: str = "identity"
    generator_norm: str = "none"
    discriminator_norm: str = "none"
    kernel_size: int = 4
    spectral_norm: bool = False
    loss: str = "non_saturating"
    gp_weight: float = 10.0
    r1_gamma: float = 0.1
    r1_steps: int = 8000
    d_steps: int = 1
    ema_decay: float = 0.999
    d_learning_rate: float | None = None
    g_learning_rate: float | None = None
    conditional: bool = False
    embedding_dim: int = 32

    def __post_init__(self):
        label = self._label
        check_choice(label("architecture"), self.architecture, ARCHITECTURES)
        check_int(label("latent_dim"), self.latent_dim)
        for name in ("generator_features", "discriminator_features"):
            object.__setattr__(self, name, _check_widths(label(name), getattr(self, name)))
        for name in ("generator_activation", "discriminator_activation"):
            check_choice(label(name), getattr(self, name), sorted(ACTIVATIONS))
        check_choice(label("output"), self.output, OUTPUTS)
        for name in ("generator_norm", "discriminator_norm"):
            check_choice(label(name), getattr(self, name), NORMS)
        check_int(label("kernel_size"), self.kernel_size)
        for name in ("spectral_norm", "conditional"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{label(name)} must be a bool, got {getattr(self, name)!r}")
        check_int(label("embedding_dim"), self.embedding_dim)
        if self.loss not in LOSSES:
            raise ValueError(
                f"{label('loss')} must be one of {', '.join(LOSSES)}, got {self.loss!r}"
            )
        for name in ("gp_weight", "r1_gamma"):
            _check_weight(label(name), getattr(self, name))
        check_int(label("r1_steps"), self.r1_steps, minimum=0)
        check_int(label("d_steps"), self.d_steps)
        check_float(label("ema_decay"), self.ema_decay, 0, 1, high_open=True)
        for name in ("d_learning_rate", "g_learning_rate"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (math.isfinite(value) and value > 0)
            ):
                raise ValueError(
                    f"{label(name)} must be a finite number > 0 (or None), got {value!r}"
                )

    @classmethod
    def upgrade_saved(cls, values: dict) -> dict:
        """A ``config.json`` written before ``loss`` existed held ``non_saturating`` (a
        boolean): read it as ``loss``, so that such runs still load."""
        values = dict(values)
        if "non_saturating" in values and "loss" not in values:
            values["loss"] = "non_saturating" if values.pop("non_saturating") else "minimax"
        return values

    @property
    def non_saturating(self) -> bool:
        """Read-only, from ``loss``, for code written against the former boolean field: True
        for ``non_saturating``, False for ``minimax``; the other losses have no such reading."""
        if self.loss not in _LOGISTIC:
            raise ValueError(
                f"{self._label('non_saturating')} has no meaning for loss={self.loss!r}; "
                f"read {self._label('loss')}"
            )
        return self.loss == "non_saturating"

    @property
    def takes_images(self) -> bool:
        """The DCGAN reads ``[H, W, C]`` images; the MLP pair flattened vectors."""
        return self.architecture == "dcgan"

    def objective(self, info: DataInfo) -> GANObjective:
        """The GAN for data of ``info.shape`` (``ValueError`` naming the field when the
        architecture cannot take that shape)."""
        return GANObjective(self, info)


def _check_data_shape(config: GANConfig, shape: Any) -> tuple[int, ...]:
    shape = check_shape("GAN.data_shape", shape)
    if config.architecture == "dcgan":
        if len(shape) != 3:
            raise ValueError(
                f"{config._label('architecture')}='dcgan' needs images (H, W, C), but the input "
                f"shape is {shape} (flatten images only for 'mlp'; set data.flatten=false)"
            )
        name = max(
            ("generator_features", "discriminator_features"),
            key=lambda n: len(getattr(config, n)),
        )
        stages = len(getattr(config, name))
        check_image_shape(shape, stages, owner=f"{config._label(name)} (dcgan)")
    return shape


@dataclasses.dataclass(frozen=True)
class GAN:
    """A :class:`GANConfig` for data of one shape: what the module's functions take first
    (hashable, so it can be a ``jit`` static argument). ``config.objective(info).model`` is
    one; ``GAN(config, data_shape)`` builds it directly.

    Attributes:
      config: the hyper-parameters.
      data_shape: shape of one example: ``(2,)`` for 2-D points, ``(D,)`` flattened images,
        ``(H, W, C)`` images (``"dcgan"`` needs this form, with ``H`` and ``W`` multiples of
        ``2^n``, ``n`` the number of stages).
      num_classes: the number ``K >= 2`` of label classes of a conditional GAN
        (``config.conditional``); None for an unconditional one.
    """

    config: GANConfig
    data_shape: tuple[int, ...]
    num_classes: int | None = None

    def __post_init__(self):
        if not isinstance(self.config, GANConfig):
            raise ValueError(f"GAN.config must be a GANConfig, got {type(self.config).__name__}")
        object.__setattr__(self, "data_shape", _check_data_shape(self.config, self.data_shape))
        k = self.num_classes
        if self.config.conditional:
            if not is_int(k) or k < 2:
                raise ValueError(
                    f"{self.config._label('conditional')}=True needs labelled data with "
                    f"num_classes >= 2, got num_classes={k!r}"
                )
            object.__setattr__(self, "num_classes", int(k))
        elif k is not None:
            raise ValueError(
                f"GAN.num_classes must be None for an unconditional GAN "
                f"({self.config._label('conditional')}=False), got {k!r}"
            )

    @property
    def data_size(self) -> int:
        """``D = prod(data_shape)``."""
        return math.prod(self.data_shape)

    def generator(self) -> Generator:
        return Generator(self)

    def discriminator(self) -> Discriminator:
        return Discriminator(self)


@dataclasses.dataclass(frozen=True)
class GANObjective(Objective):
    """A :class:`GANConfig` built for data described by ``info``: the two players' losses,
    the initialisation, the engine's :class:`~genjax.task.Task` and the trained model's
    functions on the engine's parameters ``{"disc": ..., "gen": ...}``.

    Attributes:
      config: the hyper-parameters.
      info: the data's description (``info.shape`` is the shape of one example).
      model: the :class:`GAN` the module's functions take.
    """

    config: GANConfig
    info: DataInfo
    model: GAN = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self):
        classes = self.info.num_classes if self.config.conditional else None
        object.__setattr__(self, "model", GAN(self.config, self.info.shape, classes))

    # The engine's functions. -------------------------------------------------------------

    def init(self, rng: jax.Array, batch: Mapping[str, Any]) -> dict[str, Any]:
        """The initial parameters (:func:`init`)."""
        return init(self.model, rng, batch)

    def init_model_state(self, rng: jax.Array, batch: Mapping[str, Any], params) -> dict:
        """The non-gradient state (:func:`init_model_state`)."""
        return init_model_state(self.model, rng, batch, params)

    def discriminator_loss(self, params, model_state, batch, rng):
        """The discriminator player's stateful loss (:func:`discriminator_objective`)."""
        return discriminator_objective(self.model, params, model_state, batch, rng)

    def generator_loss(self, params, model_state, batch, rng):
        """The generator player's stateful loss (:func:`generator_objective`)."""
        return generator_objective(self.model, params, model_state, batch, rng)

    def post_update(self, params, model_state, step) -> dict:
        """The EMA and R1-phase bookkeeping after a step (:func:`ema_post_update`)."""
        return ema_post_update(self.model, params, model_state, step)

    def task(self, optimizer: optax.GradientTransformation | Mapping[str, Any]) -> Task:
        """The two-player task: the discriminator every step, the generator every
        ``d_steps``-th.

        Args:
          optimizer: one optax transformation (each player gets its own state of it), or
            ``{"discriminator": ..., "generator": ...}``, one per player.
        """
        if isinstance(optimizer, Mapping):
            if sorted(optimizer) != sorted(_OPTIMIZER_KEYS):
                raise ValueError(
                    f"GANObjective.task: an optimizer mapping must have the keys "
                    f"{list(_OPTIMIZER_KEYS)}, got {sorted(optimizer)}"
                )
            d_opt, g_opt = optimizer["discriminator"], optimizer["generator"]
        else:
            d_opt = g_opt = optimizer
        return Task(
            init=self.init,
            players=(
                Player(DISC, self.discriminator_loss, d_opt, stateful=True),
                Player(GEN, self.generator_loss, g_opt, every=self.config.d_steps, stateful=True),
            ),
            init_model_state=self.init_model_state,
            post_update=self.post_update,
        )

    def run_task(self, make_optimizer: OptimizerFactory, steps: int) -> Task:
        """The task of a ``steps``-step run: the discriminator's optimizer over ``steps``
        updates at ``d_learning_rate``, the generator's over its own ``max(steps // d_steps,
        1)`` updates at ``g_learning_rate`` (None: the factory's learning rate)."""
        c = self.config
        return self.task(
            {
                "discriminator": make_optimizer(steps, c.d_learning_rate),
                # The generator is updated every d_steps-th step: its schedule spans its own
                # updates.
                "generator": make_optimizer(max(steps // c.d_steps, 1), c.g_learning_rate),
            }
        )

    # The model's functions on the engine's parameters. -------------------------------------

    def sample(
        self, params: Mapping[str, Any], model_state: Any, rng: jax.Array, n: int, labels=None
    ):
        """``n`` samples ``[n, *info.shape]`` from the generator's EMA weights when the model
        keeps an EMA (``ema_decay > 0``), else from its raw weights; a conditional model's
        of the classes ``labels`` (int ``[n]``; None: ``arange(n) % K``, see :func:`sample`)."""
        variables = sampling_variables(self.model, params, model_state)
        return sample(self.model, variables, rng, n, labels)

    def sample_raw(
        self, params: Mapping[str, Any], model_state: Any, rng: jax.Array, n: int, labels=None
    ):
        """``n`` samples from the generator's raw (non-EMA) weights."""
        del model_state
        return sample(self.model, params[GEN], rng, n, labels)

    def discriminate(
        self, params: Mapping[str, Any], model_state: Any, x: Any, labels=None
    ) -> jax.Array:
        """``D(x)`` (``D(x, y)`` of a conditional model) on the scale of the loss, ``[B]``
        (:func:`discriminate`)."""
        return discriminate(self.model, params[DISC], model_state, jnp.asarray(x), labels)

    def functions(self) -> tuple[str, ...]:
        return (*super().functions(), "sample_raw", "discriminate")


# --------------------------------------------------------------------------------------------
# The two networks
# --------------------------------------------------------------------------------------------


class Generator(nn.Module):
    """``z [B, latent_dim] -> x [B, *data_shape]`` (see the module docstring); a conditional
    model's ``(z, y) -> x``, the network reading ``[z, E y]`` (``E`` a learned ``K x
    embedding_dim`` class embedding, ``y`` int ``[B]``).

    Attributes:
      model: the :class:`GAN` description.
    """

    model: GAN

    @nn.compact
    def __call__(self, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        m, c = self.model, self.model.config
        if jnp.ndim(z) != 2 or jnp.shape(z)[1] != c.latent_dim:
            raise ValueError(f"z must have shape [B, {c.latent_dim}], got {jnp.shape(z)}")
        labels = _check_labels(m, labels, z.shape[0], "Generator")
        if labels is not None:
            embedding = nn.Embed(m.num_classes, c.embedding_dim, name="embed")(labels)
            z = jnp.concatenate([z, embedding.astype(z.dtype)], axis=1)
        if c.architecture == "mlp":
            out = MLP(
                (*c.generator_features, m.data_size), activation=c.generator_activation, name="mlp"
            )(z)
        else:
            out = ConvDecoder(
                m.data_shape,
                c.generator_features,
                kernel_size=c.kernel_size,
                activation=c.generator_activation,
                norm=c.generator_norm,
                name="deconv",
            )(z)
        out = out.reshape(z.shape[0], *m.data_shape)
        return _OUTPUT_FNS[c.output](out)


class _DiscriminatorNet(nn.Module):
    model: GAN

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        c = self.model.config
        if labels is not None:
            return _projection(self.model, x, labels)
        if c.architecture == "mlp":
            h = x.reshape(x.shape[0], -1)
            out = MLP(
                (*c.discriminator_features, 1), activation=c.discriminator_activation, name="mlp"
            )(h)
        else:
            out = nn.Dense(1, name="head")(_features(self.model, x))
        return out[:, 0]


def _features(model: GAN, x: jax.Array) -> jax.Array:
    """The discriminator's features ``phi(x) [B, F]``: its last hidden layer (activated)."""
    c = model.config
    if c.architecture == "mlp":
        return MLP(
            c.discriminator_features,
            activation=c.discriminator_activation,
            activate_final=True,
            name="mlp",
        )(x.reshape(x.shape[0], -1))
    h = ConvEncoder(
        c.discriminator_features,
        kernel_size=c.kernel_size,
        activation=c.discriminator_activation,
        norm=c.discriminator_norm,
        name="conv",
    )(x)
    return h.reshape(h.shape[0], -1)


def _projection(model: GAN, x: jax.Array, labels: jax.Array) -> jax.Array:
    """The projection discriminator ``f(x, y) = w . phi(x) + b + V[y] . phi(x)`` (Miyato &
    Koyama, 2018, eq. 3), ``[B]``, called from inside a compact module."""
    phi = _features(model, x)
    head = nn.Dense(1, name="head")(phi)[:, 0]
    v = nn.Embed(model.num_classes, phi.shape[1], name="embed")(labels)
    return head + jnp.sum(v.astype(phi.dtype) * phi, axis=1)


class Discriminator(nn.Module):
    """``x [B, *data_shape] -> logits [B]``, optionally spectrally normalised; a conditional
    model's is the projection discriminator ``(x, y) -> w . phi(x) + b + V[y] . phi(x)``
    (Miyato & Koyama, 2018), ``phi`` the last hidden layer and ``V`` a learned ``K x F``
    class embedding.

    With ``model.config.spectral_norm`` the whole network is wrapped in
    ``flax.linen.SpectralNorm``, which normalises each of its kernels (convolution kernels
    reshaped to matrices) and keeps the power-iteration vectors in the ``"batch_stats"``
    collection; ``update_stats=True`` advances them (apply with ``mutable=["batch_stats"]``).

    Attributes:
      model: the :class:`GAN` description.
    """

    model: GAN

    @nn.compact
    def __call__(
        self, x: jax.Array, labels: jax.Array | None = None, update_stats: bool = False
    ) -> jax.Array:
        m = self.model
        if tuple(jnp.shape(x)[1:]) != m.data_shape or jnp.ndim(x) != len(m.data_shape) + 1:
            raise ValueError(
                f"x must have shape [B, *data_shape] = [B, {', '.join(map(str, m.data_shape))}], "
                f"got {tuple(jnp.shape(x))}"
            )
        labels = _check_labels(m, labels, x.shape[0], "Discriminator")
        net = _DiscriminatorNet(m, name="net")
        args = (x,) if labels is None else (x, labels)
        if m.config.spectral_norm:
            return nn.SpectralNorm(net, name="sn")(*args, update_stats=update_stats)
        return net(*args)


# --------------------------------------------------------------------------------------------
# Initialisation, sampling, the discriminator
# --------------------------------------------------------------------------------------------


def _check_batch_x(model: GAN, batch: Mapping[str, Any], fn: str) -> jax.Array:
    if not isinstance(batch, Mapping) or "x" not in batch:
        raise ValueError(f"{fn}: batch must be a dict with an 'x' entry")
    x = jnp.asarray(batch["x"])
    shape = model.data_shape
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        raise ValueError(
            f'{fn}: batch["x"] must have shape [B, *data_shape] = '
            f"[B, {', '.join(map(str, shape))}], got {tuple(x.shape)}"
        )
    return x


def _check_labels(model: GAN, labels: Any, n: int, fn: str) -> jax.Array | None:
    """``labels`` as int32 ``[n]`` in ``[0, K)`` for a conditional model (values checked when
    concrete), None for an unconditional one; ``ValueError`` naming ``fn`` otherwise."""
    if not model.config.conditional:
        if labels is not None:
            raise ValueError(
                f"{fn}: labels were given to an unconditional GAN "
                f"({model.config._label('conditional')}=False)"
            )
        return None
    if labels is None:
        raise ValueError(f"{fn}: a conditional GAN needs labels, int [{n}]")
    y = jnp.asarray(labels)
    if y.shape != (n,) or not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(f"{fn}: labels must be int [{n}], got {y.dtype} {tuple(y.shape)}")
    k = model.num_classes
    if is_concrete(y) and y.size:
        low, high = int(jnp.min(y)), int(jnp.max(y))
        if low < 0 or high >= k:
            raise ValueError(f"{fn}: labels must lie in [0, {k}), got values in [{low}, {high}]")
    return y.astype(jnp.int32)


def _batch_labels(model: GAN, batch: Mapping[str, Any], n: int, fn: str) -> jax.Array | None:
    """``batch["label"]`` of a conditional model (checked), None for an unconditional one."""
    if not model.config.conditional:
        return None
    if "label" not in batch:
        raise ValueError(f'{fn}: a conditional GAN needs batch["label"], int [B]')
    return _check_labels(model, batch["label"], n, fn)


@functools.partial(jax.jit, static_argnums=0)
def _init_variables(model: GAN, rng: jax.Array):
    k_disc, k_gen = jax.random.split(rng)
    z = jnp.zeros((1, model.config.latent_dim), jnp.float32)
    x = jnp.zeros((1, *model.data_shape), jnp.float32)
    labels = jnp.zeros((1,), jnp.int32) if model.config.conditional else None
    gen = model.generator().init(k_gen, z, labels)
    disc = model.discriminator().init(k_disc, x, labels)
    return disc, gen


def init(model: GAN, rng: jax.Array, example_batch: Mapping[str, Any]) -> dict[str, Any]:
    """Initial parameters ``{"disc": {"params": ...}, "gen": {"params": ...}}``.

    Args:
      model: the :class:`GAN` (``functools.partial(init, model)`` is the engine's init).
      rng: a ``jax.random`` key.
      example_batch: ``{"x": [B, *data_shape]}`` (only the shape is used; a conditional
        model's also holds ``"label"``, int ``[B]``).
    """
    _check_batch_x(model, example_batch, "gan.init")
    disc, gen = _init_variables(model, rng)
    return {DISC: {"params": disc["params"]}, GEN: {"params": gen["params"]}}


def init_model_state(
    model: GAN, rng: jax.Array, example_batch: Mapping[str, Any], params: Mapping[str, Any]
) -> dict[str, Any]:
    """The non-gradient state: ``{"sn": power-iteration vectors}`` with spectral normalisation,
    ``{"ema": a copy of the generator's variables}`` with an EMA, ``{"step": int32 0}`` with a
    limited R1 phase (``r1_steps > 0``); ``{}`` with none of these. ``functools.partial(
    init_model_state, model)`` is the engine's ``init_model_state``."""
    del example_batch
    c = model.config
    state: dict[str, Any] = {}
    if c.r1_gamma > 0 and c.r1_steps > 0:
        state["step"] = jnp.zeros((), jnp.int32)
    if c.spectral_norm:
        disc, _ = _init_variables(model, rng)
        state["sn"] = disc["batch_stats"]
    if c.ema_decay > 0:
        state["ema"] = jax.tree.map(jnp.array, dict(params[GEN]))
    return state


def sample_latent(model: GAN, rng: jax.Array, n: int) -> jax.Array:
    """``z ~ N(0, I)``, float32 ``[n, latent_dim]``."""
    return jax.random.normal(rng, (n, model.config.latent_dim), jnp.float32)


def generate(
    model: GAN, gen_variables: Mapping[str, Any], z: jax.Array, labels: jax.Array | None = None
) -> jax.Array:
    """``G(z)``: ``z [B, latent_dim] -> [B, *data_shape]``; ``G(z, y)`` with ``labels`` int
    ``[B]`` for a conditional model."""
    return model.generator().apply({"params": gen_variables["params"]}, z, labels)


def _sn_variables(model: GAN, disc_variables, model_state) -> dict[str, Any]:
    variables = {"params": disc_variables["params"]}
    if model.config.spectral_norm:
        variables["batch_stats"] = model_state["sn"]
    return variables


def discriminator_logits(
    model: GAN,
    disc_variables: Mapping[str, Any],
    model_state: Mapping[str, Any],
    x: jax.Array,
    labels: jax.Array | None = None,
) -> jax.Array:
    """Discriminator logits ``[B]`` of ``x [B, *data_shape]`` (of ``(x, labels)``, ``labels``
    int ``[B]``, for a conditional model; the power-iteration vectors in ``model_state["sn"]``
    are read, not advanced). ``D(x) = sigmoid(logits)``."""
    variables = _sn_variables(model, disc_variables, model_state)
    return model.discriminator().apply(variables, x, labels)


def discriminate(
    model: GAN,
    disc_variables: Mapping[str, Any],
    model_state: Mapping[str, Any],
    x: jax.Array,
    labels: jax.Array | None = None,
) -> jax.Array:
    """``D(x)`` on the scale of the model's loss, ``[B]``: ``sigmoid(logits)`` (the probability
    that ``x`` is real) for ``"minimax"`` and ``"non_saturating"``, the raw output for the
    others (a score for ``"hinge"`` and ``"wgan_gp"``; for ``"least_squares"`` a value whose
    optimum is ``p_data / (p_data + p_g)``)."""
    logits = discriminator_logits(model, disc_variables, model_state, x, labels)
    return jax.nn.sigmoid(logits) if model.config.loss in _LOGISTIC else logits


def r1_penalty(
    model: GAN,
    disc_variables: Mapping[str, Any],
    model_state: Mapping[str, Any],
    x: jax.Array,
    labels: jax.Array | None = None,
) -> jax.Array:
    """``||grad_x D_logit(x)||^2`` per example, ``[B]`` (Mescheder et al., 2018, eq. 9); a
    conditional model's ``||grad_x D_logit(x, y)||^2`` at the examples' own labels.

    The examples do not interact in the discriminator, so the gradient of the summed logits
    with respect to the batch holds each example's own input gradient.
    """

    def total(inputs):
        return jnp.sum(discriminator_logits(model, disc_variables, model_state, inputs, labels))

    grads = jax.grad(total)(x)
    return jnp.sum(jnp.square(grads).reshape(x.shape[0], -1), axis=1)


# --------------------------------------------------------------------------------------------
# The players' objectives
# --------------------------------------------------------------------------------------------


def discriminator_objective(
    model: GAN,
    params: Mapping[str, Any],
    model_state: Mapping[str, Any],
    batch: Mapping[str, Any],
    rng: jax.Array,
) -> tuple[jax.Array, tuple[dict[str, jax.Array], dict[str, Any]]]:
    """The discriminator's loss on one batch (a stateful engine loss).

    ``mean_b l_D(D(x_b), D(G(z_b))) [+ mean_b gp_weight (||grad D(x_hat_b)|| - 1)^2]
    + r1_gamma / 2 * mean_b ||grad D(x_b)||^2`` with ``z_b ~ N(0, I)``, one per real example,
    ``l_D`` the discriminator loss of ``model.config.loss`` (the module docstring's list) and
    the gradient penalty for ``"wgan_gp"`` only (``x_hat_b`` from ``losses.gradient_penalty``, its
    interpolation weights drawn from ``fold_in(rng, 1)``; ``z`` is drawn from ``rng``). With
    spectral normalisation the real and generated examples go through the discriminator in
    one call that advances the power-iteration vectors (returned in the new model state); the
    penalties differentiate the same normalised network.

    Returns:
      ``(loss, (metrics, model_state))``; metrics: for ``"minimax"`` and ``"non_saturating"``,
      ``gan_value`` (the batch estimate of ``V(G, D)``) and ``d_real`` / ``d_fake`` (mean
      ``D = sigmoid(logits)`` on real / generated examples); for the other losses,
      ``real_score`` / ``fake_score`` (mean raw output on real / generated examples), and for
      ``"wgan_gp"`` also ``wasserstein`` (``real_score - fake_score``, the critic's estimate
      of ``W_1``) and ``gradient_penalty`` (its weighted batch mean, as added to the loss);
      with ``r1_gamma > 0``, ``r1`` (mean squared input-gradient norm on real data; 0 after
      the R1 phase).
    """
    fn = "gan.discriminator_objective"
    x = _check_batch_x(model, batch, fn)
    c = model.config
    b = x.shape[0]
    labels = _batch_labels(model, batch, b, fn)
    both_labels = None if labels is None else jnp.concatenate([labels, labels])
    z = sample_latent(model, rng, b)
    fake = jax.lax.stop_gradient(generate(model, params[GEN], z, labels)).astype(x.dtype)
    both = jnp.concatenate([x, fake], axis=0)
    disc = model.discriminator()
    new_state = dict(model_state)
    if c.spectral_norm:
        logits, updates = disc.apply(
            _sn_variables(model, params[DISC], model_state),
            both,
            both_labels,
            update_stats=True,
            mutable=["batch_stats"],
        )
        new_state["sn"] = updates["batch_stats"]
    else:
        logits = disc.apply({"params": params[DISC]["params"]}, both, both_labels)
    real_logits, fake_logits = logits[:b], logits[b:]
    d_loss, _ = _LOSS_FNS[c.loss]
    loss = jnp.mean(d_loss(real_logits, fake_logits))
    if c.loss in _LOGISTIC:
        metrics = {
            "gan_value": jnp.mean(L.gan_value(real_logits, fake_logits)),
            "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
            "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
        }
    else:
        metrics = {"real_score": jnp.mean(real_logits), "fake_score": jnp.mean(fake_logits)}
    if c.loss == "wgan_gp":

        def critic(inputs):
            return discriminator_logits(model, params[DISC], model_state, inputs, labels)

        gp_rng = jax.random.fold_in(rng, 1)
        gp = jnp.mean(L.gradient_penalty(critic, x, fake, gp_rng, c.gp_weight))
        gp = gp.astype(loss.dtype)
        loss = loss + gp
        metrics["wasserstein"] = metrics["real_score"] - metrics["fake_score"]
        metrics["gradient_penalty"] = gp
    if c.r1_gamma > 0:

        def penalty():
            r1 = r1_penalty(model, params[DISC], model_state, x, labels)
            return jnp.mean(r1).astype(loss.dtype)

        if c.r1_steps > 0:
            # lax.cond runs one branch: no double backward pass once the phase is over.
            active = model_state["step"] < c.r1_steps
            r1 = jax.lax.cond(active, penalty, lambda: jnp.zeros((), loss.dtype))
            weight = jnp.where(active, 0.5 * c.r1_gamma, 0.0)
        else:
            r1, weight = penalty(), 0.5 * c.r1_gamma
        loss = loss + weight * r1
        metrics["r1"] = r1
    return loss, (metrics, new_state)


def generator_objective(
    model: GAN,
    params: Mapping[str, Any],
    model_state: Mapping[str, Any],
    batch: Mapping[str, Any],
    rng: jax.Array,
) -> tuple[jax.Array, tuple[dict[str, jax.Array], dict[str, Any]]]:
    """The generator's loss on one batch: ``mean_b l_G(D(G(z_b)))``, ``B`` draws, ``l_G`` the
    generator loss of ``model.config.loss`` (the module docstring's list).

    ``B`` is the real batch's size (the real examples themselves are not used). The
    power-iteration vectors are read, not advanced.

    Returns:
      ``(loss, (metrics, model_state))``; metric ``d_fake`` (mean ``sigmoid(D(G(z)))``) for
      ``"minimax"`` and ``"non_saturating"``, ``fake_score`` (mean raw ``D(G(z))``) otherwise.
    """
    fn = "gan.generator_objective"
    x = _check_batch_x(model, batch, fn)
    c = model.config
    labels = _batch_labels(model, batch, x.shape[0], fn)
    z = sample_latent(model, rng, x.shape[0])
    fake = generate(model, params[GEN], z, labels).astype(x.dtype)
    logits = discriminator_logits(model, params[DISC], model_state, fake, labels)
    _, g_loss = _LOSS_FNS[c.loss]
    loss = jnp.mean(g_loss(logits))
    if c.loss in _LOGISTIC:
        metrics = {"d_fake": jnp.mean(jax.nn.sigmoid(logits))}
    else:
        metrics = {"fake_score": jnp.mean(logits)}
    return loss, (metrics, model_state)


def ema_post_update(
    model: GAN, params: Mapping[str, Any], model_state: Mapping[str, Any], step: jax.Array
) -> dict[str, Any]:
    """After step ``step``: ``ema <- decay * ema + (1 - decay) * gen`` on the steps where the
    generator was updated (``(step + 1) % d_steps == 0``), unchanged otherwise; the R1-phase
    counter, if any, becomes ``step + 1``."""
    model_state = dict(model_state)
    if "step" in model_state:
        model_state["step"] = jnp.asarray(step + 1, jnp.int32)
    if "ema" not in model_state:
        return model_state
    decay = model.config.ema_decay
    updated = (step + 1) % model.config.d_steps == 0
    ema = jax.tree.map(
        lambda e, g: jnp.where(updated, decay * e + (1.0 - decay) * g.astype(e.dtype), e),
        model_state["ema"],
        dict(params[GEN]),
    )
    return {**model_state, "ema": ema}


def sampling_variables(
    model: GAN, params: Mapping[str, Any], model_state: Mapping[str, Any]
) -> Mapping[str, Any]:
    """The generator variables to sample with: the EMA if the model keeps one, else ``gen``."""
    if model.config.ema_decay > 0 and "ema" in model_state:
        return model_state["ema"]
    return params[GEN]


def sample(
    model: GAN, gen_variables: Mapping[str, Any], rng: jax.Array, n: int, labels: Any = None
) -> jax.Array:
    """``n`` samples ``G(z)``, ``z ~ N(0, I)``: ``[n, *data_shape]``.

    A conditional model's are ``G(z, y_i)`` of the classes ``labels`` (int ``[n]`` in
    ``[0, K)``); with ``labels=None`` the classes cycle, ``y_i = i mod K``, an equal share
    of each. An unconditional model takes no labels.
    """
    fn = "gan.sample"
    n = check_int(f"{fn}: n", n)
    if model.config.conditional and labels is None:
        labels = jnp.arange(n, dtype=jnp.int32) % model.num_classes
    return _sample(model, gen_variables, rng, n, _check_labels(model, labels, n, fn))


@functools.partial(jax.jit, static_argnums=(0, 3))
def _sample(model, gen_variables, rng, n, labels):
    return generate(model, gen_variables, sample_latent(model, rng, n), labels)
