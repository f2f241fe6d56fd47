"""Shared Flax (linen) building blocks, used by several models.

    from genjax import nn as gnn
    gnn.MLP(features=(200, 200, 50), activation="tanh")          # [..., D] -> [..., 50]
    gnn.ConvEncoder(features=(32, 64))                            # [B, 28, 28, 1] -> [B, 7, 7, 64]
    gnn.ConvDecoder(image_shape=(28, 28, 1), features=(64, 32))   # [B, d] -> [B, 28, 28, 1]
    gnn.ResidualBlock(hidden=32)                                  # [B, H, W, C] -> same shape
    gnn.Conv(64, (3, 3))     # flax nn.Conv computed with gnn.conv_general_dilated

Modules hold no training logic and no mutable state; parameters are plain pytrees. Every
block validates its configuration when called and raises ``ValueError`` naming the field, the
expected and the received value. ``check_image_shape`` / ``downsampled_size`` tell which image
sizes ``n`` stride-2 stages fit (``H`` and ``W`` multiples of ``2^n``). Every convolution goes
through :func:`conv_general_dilated`, whose gradients XLA:CPU runs at full speed inside the
engine's scan-fused loop (see :mod:`genjax.nn.convolution`). The quantizers beside the
VQ-VAE's codebook: :mod:`genjax.nn.fsq` (finite scalar quantization) and :mod:`genjax.nn.rvq`
(residual vector quantization).
"""

from genjax.nn import fsq, rvq
from genjax.nn.conv import (
    NORMS,
    ConvDecoder,
    ConvEncoder,
    ResidualBlock,
    check_image_shape,
    downsampled_size,
)
from genjax.nn.convolution import Conv, conv_general_dilated
from genjax.nn.fsq import FiniteScalarQuantizer
from genjax.nn.mlp import ACTIVATIONS, MLP, Activation, get_activation

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "NORMS",
    "Activation",
    "Conv",
    "ConvDecoder",
    "ConvEncoder",
    "FiniteScalarQuantizer",
    "ResidualBlock",
    "check_image_shape",
    "conv_general_dilated",
    "downsampled_size",
    "fsq",
    "get_activation",
    "rvq",
]
