"""Multilayer perceptrons and the activation functions the building blocks accept by name.

:class:`MLP` is a stack of ``Dense`` layers acting on the last axis of its input, like
``flax.linen.Dense``; every hidden layer is followed by the activation, the last one only if
``activate_final``. Activations are given by name (so that configs can hold them as strings)
or as any callable ``jax.Array -> jax.Array``; :func:`get_activation` resolves them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["ACTIVATIONS", "MLP", "Activation", "get_activation"]

Activation = str | Callable[[jax.Array], jax.Array]

#: Activation names accepted wherever a building block takes ``activation``.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "leaky_relu": lambda x: jax.nn.leaky_relu(x, negative_slope=0.2),
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "softplus": jax.nn.softplus,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "identity": lambda x: x,
}


def get_activation(
    activation: Activation, *, name: str = "activation"
) -> Callable[[jax.Array], jax.Array]:
    """The function for an activation name in :data:`ACTIVATIONS`, or a callable unchanged.

    ``"leaky_relu"`` uses slope 0.2 for negative inputs (the DCGAN discriminator's choice).
    ``name`` is how the argument is called in the error message (e.g. ``"MLP.activation"``).

    Raises:
      ValueError: ``activation`` is an unknown name (the message lists the known ones) or
        neither a string nor a callable.

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import nn as gnn
      >>> gnn.get_activation("leaky_relu")(jnp.array([-1.0, 2.0]))
      Array([-0.2,  2. ], dtype=float32)
      >>> gnn.get_activation(jnp.abs) is jnp.abs
      True
    """
    if isinstance(activation, str):
        try:
            return ACTIVATIONS[activation]
        except KeyError:
            raise ValueError(
                f"{name} must be one of {sorted(ACTIVATIONS)} or a callable, got {activation!r}"
            ) from None
    if callable(activation):
        return activation
    raise ValueError(
        f"{name} must be a name in {sorted(ACTIVATIONS)} or a callable, "
        f"got {type(activation).__name__}"
    )


def check_features(owner: str, features: Any, *, allow_empty: bool = False) -> tuple[int, ...]:
    """Validates a sequence of layer widths / channel counts; returns it as a tuple of ints.

    Example:
      >>> from genjax.nn.mlp import check_features
      >>> check_features("MLP", [64, 10])
      (64, 10)
    """
    if isinstance(features, int) or not isinstance(features, Sequence):
        raise ValueError(f"{owner}.features must be a sequence of positive ints, got {features!r}")
    widths = tuple(features)
    if not allow_empty and not widths:
        raise ValueError(f"{owner}.features must hold at least one width, got {features!r}")
    for w in widths:
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise ValueError(f"{owner}.features must hold positive ints, got {features!r}")
    return widths


class MLP(nn.Module):
    """``Dense -> act -> ... -> Dense`` on the last axis: ``[..., D_in] -> [..., features[-1]]``.

    With ``features = (h_1, ..., h_L)`` the module computes ``a(W_1 x + b_1)``, then
    ``a(W_2 h + b_2)``, ..., and ``W_L h + b_L`` (activated too if ``activate_final``). Leading
    axes are batch axes; flatten images first (``x.reshape(B, -1)``) to feed them.

    Attributes:
      features: widths of the layers, the last one being the output width (at least one).
      activation: a name in :data:`ACTIVATIONS` or a callable, applied after every hidden layer.
      activate_final: also apply the activation to the output layer.
      kernel_init: initializer of the ``Dense`` kernels (default: Flax's LeCun normal).
      use_bias: whether the layers have biases.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from genjax import nn as gnn
      >>> mlp = gnn.MLP(features=(16, 3), activation="tanh")
      >>> y, variables = mlp.init_with_output(jax.random.key(0), jnp.ones((4, 5)))
      >>> y.shape, variables["params"]["dense_0"]["kernel"].shape
      ((4, 3), (5, 16))
    """

    features: Sequence[int]
    activation: Activation = "relu"
    activate_final: bool = False
    kernel_init: Callable[..., Any] = nn.initializers.lecun_normal()
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        widths = check_features("MLP", self.features)
        act = get_activation(self.activation, name="MLP.activation")
        if jnp.ndim(x) < 1:
            raise ValueError(f"MLP input must have at least one axis [..., D], got shape {()}")
        for i, width in enumerate(widths):
            x = nn.Dense(
                width, kernel_init=self.kernel_init, use_bias=self.use_bias, name=f"dense_{i}"
            )(x)
            if i < len(widths) - 1 or self.activate_final:
                x = act(x)
        return x
