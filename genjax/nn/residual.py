"""Residual stacks: shape-preserving towers of :class:`genjax.nn.conv.ResidualBlock`.

The VQ-VAE (van den Oord et al., 2017, section 4.1) puts two residual blocks after the
strided convolutions of its encoder and before the transposed convolutions of its decoder;
each block is ``x + Conv1x1(ReLU(Conv3x3(ReLU(x))))`` (:class:`~genjax.nn.conv.ResidualBlock`,
whose last operation is the addition, so the tower ends with one more activation).

:class:`ResidualStack` ``[B, H, W, C] -> [B, H, W, C]``::

    x -> block_1 -> ... -> block_n -> activation

With ``num_blocks = 0`` it is just the activation. The single block lives beside the strided
convolutions in ``genjax/nn/conv.py``; this module only stacks it.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.nn.conv import ResidualBlock
from genjax.nn.mlp import Activation, get_activation

__all__ = ["ResidualStack"]


class ResidualStack(nn.Module):
    """``num_blocks`` residual blocks followed by an activation; keeps the input's shape.

    Attributes:
      num_blocks: number of residual blocks (``>= 0``).
      hidden: channels of each block's inner 3x3 convolution (``>= 1``).
      activation: a name in :data:`genjax.nn.ACTIVATIONS` or a callable; used inside the
        blocks and once at the end.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from genjax.nn.residual import ResidualStack
      >>> ResidualStack(num_blocks=0).apply({}, jnp.array([[[[-1.0, 2.0]]]]))  # just the ReLU
      Array([[[[0., 2.]]]], dtype=float32)
      >>> stack = ResidualStack(num_blocks=2, hidden=8)
      >>> # Shapes only: jax.eval_shape traces the module without computing anything.
      >>> key, x = jax.random.key(0), jnp.ones((2, 4, 4, 3))
      >>> y, variables = jax.eval_shape(stack.init_with_output, key, x)
      >>> y.shape, sorted(variables["params"])
      ((2, 4, 4, 3), ['block_0', 'block_1'])
    """

    num_blocks: int = 2
    hidden: int = 32
    activation: Activation = "relu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n = self.num_blocks
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"ResidualStack.num_blocks must be an int >= 0, got {n!r}")
        if jnp.ndim(x) != 4:
            raise ValueError(
                f"ResidualStack input must be feature maps [B, H, W, C], got shape {jnp.shape(x)}"
            )
        act = get_activation(self.activation)
        for i in range(n):
            x = ResidualBlock(hidden=self.hidden, activation=self.activation, name=f"block_{i}")(x)
        return act(x)
