"""The model contract: what every family (ppca, vae, gan, vqvae, cyclevae) offers.

A family is three things, so that a user trains any of them from the library alone and the
command line has no per-model wiring:

* a frozen dataclass of hyper-parameters, subclass of :class:`ModelConfig`: the one place
  they are declared (with a one-line meaning each in the ``Attributes:`` docstring section)
  and validated (``ValueError`` naming ``<ClassName>.<field>``);
* ``config.objective(info)`` -> an :class:`Objective`: the Flax module(s) built for data of
  the shape in ``info``, the loss, the initialisation, and ``task(optimizer)``, the engine's
  :class:`~genjax.task.Task`;
* module-level functions with one argument order: ``(model, params, ...)``, then data, then
  ``rng`` -- ``sample(model, params, rng, n)``, ``encode(model, params, x)``,
  ``convert(model, params, x, source, target)``.

Training a VAE on 64-d inputs for a few steps, from the library alone::

    >>> import jax, jax.numpy as jnp, optax
    >>> from genjax.models import vae
    >>> from genjax.models.base import DataInfo
    >>> from genjax.train import Engine, init_state
    >>> objective = vae.VAEConfig(hidden=(32,), latent_dim=2).objective(DataInfo(shape=(64,)))
    >>> task = objective.task(optax.adam(1e-3))
    >>> batch = {"x": jnp.zeros((8, 64)), "label": jnp.zeros((8,), jnp.int32)}
    >>> engine = Engine(task)
    >>> state = engine.place_state(init_state(task, jax.random.PRNGKey(0), batch))
    >>> state, metrics = engine.step(state, batch)
    >>> params = engine.params(state)
    >>> objective.sample(params, state.model_state, jax.random.PRNGKey(1), 3).shape
    (3, 64)

An :class:`Objective` also exposes the model's functions on the engine's parameters (the
``dict[player, params]`` a :class:`~genjax.task.Task` trains and a checkpoint holds), which is
how :func:`genjax.runs.load_run` serves a trained run: ``objective.sample(params,
model_state, rng, n)`` and, where the family has them, ``encode``, ``decode``, ``reconstruct``
and ``convert``.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import jax
import optax

from genjax.task import SINGLE, Task

#: ``(steps, learning_rate) -> optax transformation``: how a command builds an optimizer whose
#: schedule spans ``steps`` updates; ``learning_rate=None`` means the configured one.
OptimizerFactory = Callable[[int, "float | None"], optax.GradientTransformation]


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about its data, without holding the data.

    Attributes:
      shape: shape of one preprocessed input ``x`` (``(64,)`` for flattened 8x8 digits,
        ``(28, 28, 1)`` for MNIST images).
      num_classes: label classes (domains of a Cycle VAE, modes of a 2-D mixture), or None.
      name: the dataset's name (used in error messages).
      image_shape: ``(H, W, C)`` of the raw images, or None for vector data.
      unit_interval: whether the preprocessed inputs lie in ``[0, 1]`` (a Bernoulli
        likelihood needs it).
    """

    shape: tuple[int, ...]
    num_classes: int | None = None
    name: str = ""
    image_shape: tuple[int, ...] | None = None
    unit_interval: bool = True

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if not self.shape or any(d < 1 for d in self.shape):
            raise ValueError(f"DataInfo.shape must be positive sizes, got {self.shape}")
        if self.image_shape is not None:
            object.__setattr__(self, "image_shape", tuple(int(d) for d in self.image_shape))

    @property
    def label(self) -> str:
        return repr(self.name) if self.name else "the data"


class ModelConfig:
    """Base of every family's hyper-parameter dataclass (subclasses are frozen dataclasses).

    ``family`` is the registry name (``"vae"``); :meth:`objective` builds the model for the
    data; :meth:`upgrade_saved` reads the keys of configs saved by earlier versions.
    """

    family: ClassVar[str] = ""

    @property
    def takes_images(self) -> bool:
        """Whether the model reads ``[H, W, C]`` images (a command then does not flatten the
        data); overridden by families with a convolutional architecture."""
        return False

    def objective(self, info: DataInfo) -> Objective:
        raise NotImplementedError(f"{type(self).__name__}.objective")

    @classmethod
    def upgrade_saved(cls, values: dict) -> dict:
        """The saved ``values`` (a config.json section) in this version's keys."""
        return values

    def _label(self, name: str) -> str:
        return f"{type(self).__name__}.{name}"


class Objective(abc.ABC):
    """A family's model, loss and initialisation for one data shape; see the module docstring.

    Subclasses set ``config`` (their :class:`ModelConfig`), ``info`` (the :class:`DataInfo`)
    and ``model`` (the object the family's module-level functions take first), and implement
    :meth:`task` and :meth:`sample`. The inference methods take the engine's parameters: the
    ``dict[player, params]`` of the task (``{"model": params}`` for one-player families).
    """

    config: ModelConfig
    info: DataInfo
    model: Any

    @property
    def family(self) -> str:
        return self.config.family

    @abc.abstractmethod
    def task(self, optimizer: optax.GradientTransformation | Mapping[str, Any]) -> Task:
        """The engine's task, training with ``optimizer`` (one transformation, or one per
        player where the family has several)."""

    def run_task(self, make_optimizer: OptimizerFactory, steps: int) -> Task:
        """The task of a ``steps``-update run whose optimizers ``make_optimizer`` builds.

        Families whose players run on their own schedules (a GAN's generator every k-th
        step, a VQ-VAE's two phases) override this; the default is one optimizer over all
        ``steps``.
        """
        return self.task(make_optimizer(steps, None))

    # The model's functions on the engine's parameters. -------------------------------------

    @abc.abstractmethod
    def sample(self, params: Mapping[str, Any], model_state: Any, rng: jax.Array, n: int):
        """``n`` samples from the model, ``[n, *info.shape]``."""

    def encode(self, params: Mapping[str, Any], model_state: Any, x: Any):
        raise NotImplementedError(f"the {self.family} model has no encoder")

    def decode(self, params: Mapping[str, Any], model_state: Any, z: Any, *args):
        raise NotImplementedError(f"the {self.family} model has no decoder")

    def reconstruct(self, params: Mapping[str, Any], model_state: Any, x: Any, *args):
        raise NotImplementedError(f"the {self.family} model does not reconstruct its input")

    def convert(self, params: Mapping[str, Any], model_state: Any, x, source, target):
        raise NotImplementedError(f"the {self.family} model does not convert between domains")

    def functions(self) -> tuple[str, ...]:
        """Names of the inference methods this family implements."""
        names = ("sample", "encode", "decode", "reconstruct", "convert")
        return tuple(n for n in names if getattr(type(self), n) is not getattr(Objective, n))


def single(params: Mapping[str, Any]) -> Any:
    """The one player's parameters of a one-player task's ``{"model": params}``."""
    return params[SINGLE]
