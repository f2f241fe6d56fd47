"""Strided convolution and transposed-convolution stacks for images (NHWC).

Every stage halves (encoder) or doubles (decoder) the height and width with a stride-2
convolution and ``"SAME"`` padding, so ``n`` stages map an ``H x W`` image to
``H / 2^n x W / 2^n`` and back. The shapes the library trains on::

    digits  8 x 8 x 1    2 stages: 8 -> 4 -> 2           (3 stages: -> 1)
    mnist  28 x 28 x 1   2 stages: 28 -> 14 -> 7
    cifar  32 x 32 x 3   3 stages: 32 -> 16 -> 8 -> 4    (any n <= 5)

:class:`ConvEncoder` ``[B, H, W, C] -> [B, H/2^n, W/2^n, features[-1]]`` (a GAN discriminator,
a VAE or VQ-VAE encoder); :class:`ConvDecoder` ``[B, d]`` (a vector, projected by a ``Dense``
layer) or ``[B, H/2^n, W/2^n, c]`` (a feature map) ``-> [B, H, W, output_channels]`` (a GAN
generator, a VAE or VQ-VAE decoder); :class:`ResidualBlock` keeps the shape (VQ-VAE).
:func:`check_image_shape` is the shape rule the decoder enforces: ``H`` and ``W`` divisible by
``2^n``. The encoder accepts any size (``"SAME"`` padding rounds up: 28 -> 14 -> 7 -> 4), but
only divisible sizes can be mirrored by the decoder.

Normalisation is stateless only (``"none"``, ``"layer"``, ``"group"``): batch statistics would
be mutable state, which the library keeps out of its modules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from genjax._checks import check_int
from genjax.nn.convolution import Conv, conv_general_dilated
from genjax.nn.mlp import Activation, check_features, get_activation

__all__ = [
    "NORMS",
    "ConvDecoder",
    "ConvEncoder",
    "ConvTranspose2x",
    "ResidualBlock",
    "check_image_shape",
    "downsampled_size",
]

#: Normalisations accepted by the convolutional blocks (applied before the activation).
NORMS = ("none", "layer", "group")


def _check_int(owner: str, name: str, value: Any, minimum: int) -> int:
    return check_int(f"{owner}.{name}", value, minimum)


def _check_norm(owner: str, norm: Any) -> str:
    if norm not in NORMS:
        raise ValueError(f"{owner}.norm must be one of {NORMS}, got {norm!r}")
    return norm


def _normalize(norm: str, x: jax.Array, name: str) -> jax.Array:
    if norm == "layer":
        return nn.LayerNorm(name=name)(x)
    if norm == "group":
        return nn.GroupNorm(num_groups=math.gcd(8, x.shape[-1]), name=name)(x)
    return x


def check_image_shape(image_shape: Any, num_stages: int, *, owner: str = "image") -> tuple:
    """Checks that ``n = num_stages`` stride-2 stages fit an image; returns ``(H, W, C)``.

    Args:
      image_shape: ``(H, W, C)`` of one image (no batch axis).
      num_stages: ``n >= 0``, the number of stride-2 stages.
      owner: prefix of the error message (the module or model that asks).

    Raises:
      ValueError: ``image_shape`` is not three positive ints, or ``H`` or ``W`` is not divisible
        by ``2^n`` (the message gives the sizes that would fit).

    Example:
      >>> from genjax import nn as gnn
      >>> gnn.check_image_shape((28, 28, 1), 2)  # 28 -> 14 -> 7
      (28, 28, 1)
      >>> gnn.check_image_shape((28, 28, 1), 3)  # doctest: +ELLIPSIS
      Traceback (most recent call last):
          ...
      ValueError: image: 3 stride-2 stage(s) need ... multiples of 2^3 = 8, got ... (28, 28, 1) ...
    """
    shape = tuple(image_shape) if isinstance(image_shape, Sequence) else None
    if (
        shape is None
        or len(shape) != 3
        or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape)
    ):
        raise ValueError(
            f"{owner}: image_shape must be (H, W, C) with positive ints, got {image_shape!r}"
        )
    factor = 2**num_stages
    h, w, c = shape
    if h % factor or w % factor:
        raise ValueError(
            f"{owner}: {num_stages} stride-2 stage(s) need the image height and width to be "
            f"multiples of 2^{num_stages} = {factor}, got an image of shape {shape} "
            f"(e.g. 8x8 fits up to 3 stages, 28x28 up to 2, 32x32 up to 5)"
        )
    return h, w, c


def downsampled_size(image_shape: Any, num_stages: int) -> tuple[int, int]:
    """``(H / 2^n, W / 2^n)``: the spatial size after ``n`` stride-2 stages (checked).

    Example:
      >>> from genjax import nn as gnn
      >>> gnn.downsampled_size((28, 28, 1), 2), gnn.downsampled_size((32, 32, 3), 3)
      ((7, 7), (4, 4))
    """
    h, w, _ = check_image_shape(image_shape, num_stages)
    return h // 2**num_stages, w // 2**num_stages


def _check_images(owner: str, x: jax.Array) -> None:
    if jnp.ndim(x) != 4:
        raise ValueError(
            f"{owner} input must be images [B, H, W, C] (NHWC), got shape {jnp.shape(x)}"
        )


class ConvEncoder(nn.Module):
    """Stride-2 convolutions: ``[B, H, W, C] -> [B, ceil(H/2^n), ceil(W/2^n), features[-1]]``.

    Stage ``i`` is ``Conv(features[i], kernel_size, stride 2, "SAME") -> norm -> activation``.
    Flatten the output (``h.reshape(B, -1)``) and add a ``Dense`` head for a vector output.

    Attributes:
      features: output channels of each stage; ``n = len(features)`` stages.
      kernel_size: square kernel size of every convolution.
      activation: a name in :data:`genjax.nn.ACTIVATIONS` or a callable.
      norm: ``"none"``, ``"layer"`` or ``"group"`` (group norm with ``gcd(8, channels)``
        groups), applied before each activation.
      norm_first: also normalise the first stage (DCGAN leaves it out of the discriminator).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from genjax import nn as gnn
      >>> encoder = gnn.ConvEncoder(features=(4, 8))
      >>> # Shapes only: jax.eval_shape traces the module without computing anything.
      >>> key, x = jax.random.key(0), jnp.ones((2, 8, 8, 1))
      >>> h, variables = jax.eval_shape(encoder.init_with_output, key, x)
      >>> h.shape, variables["params"]["conv_1"]["kernel"].shape  # 2 stages: 8 -> 4 -> 2
      ((2, 2, 2, 8), (4, 4, 4, 8))
    """

    features: Sequence[int] = (32, 64)
    kernel_size: int = 4
    activation: Activation = "relu"
    norm: str = "none"
    norm_first: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        widths = check_features("ConvEncoder", self.features)
        k = _check_int("ConvEncoder", "kernel_size", self.kernel_size, 1)
        norm = _check_norm("ConvEncoder", self.norm)
        act = get_activation(self.activation, name="ConvEncoder.activation")
        _check_images("ConvEncoder", x)
        for i, width in enumerate(widths):
            x = Conv(width, (k, k), strides=(2, 2), padding="SAME", name=f"conv_{i}")(x)
            if i > 0 or self.norm_first:
                x = _normalize(norm, x, f"norm_{i}")
            x = act(x)
        return x


class ConvDecoder(nn.Module):
    """Stride-2 transposed convolutions up to ``image_shape``: ``-> [B, H, W, output_channels]``.

    The input is either a vector ``[B, d]``, projected by ``Dense(h0 * w0 * start_features)``
    and an activation to a ``[B, h0, w0, start_features]`` map, or a feature map
    ``[B, h0, w0, c]`` used as it is, with ``(h0, w0) = (H / 2^n, W / 2^n)`` and
    ``n = len(features)``. Stage ``i`` is ``ConvTranspose(features[i], kernel_size, stride 2,
    "SAME") -> norm -> activation`` (doubling the size); a final ``Conv(output_channels,
    final_kernel_size, stride 1)`` with no activation gives logits, means, or whatever the
    caller's likelihood needs (e.g. ``2 C`` channels for a mean and a log-variance).

    Attributes:
      image_shape: ``(H, W, C)`` of the output; ``H`` and ``W`` must be multiples of ``2^n``.
      features: channels after each transposed convolution, coarse to fine (``n`` stages).
      output_channels: channels of the output (``None``: ``C`` of ``image_shape``).
      start_features: channels of the projected starting map (``None``: ``features[0]``);
        unused for feature-map inputs.
      kernel_size: square kernel of the transposed convolutions.
      final_kernel_size: square kernel of the last, stride-1 convolution.
      activation: a name in :data:`genjax.nn.ACTIVATIONS` or a callable.
      norm: ``"none"``, ``"layer"`` or ``"group"``, applied before each activation of the
        projection and the stages.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from genjax import nn as gnn
      >>> decoder = gnn.ConvDecoder(image_shape=(8, 8, 1), features=(8, 4))
      >>> decoder.start_size  # [B, d] -> Dense -> [B, 2, 2, 8] -> [B, 4, 4, 8] -> [B, 8, 8, 4]
      (2, 2)
      >>> # Shapes only: jax.eval_shape traces the module without computing anything.
      >>> key, z = jax.random.key(0), jnp.zeros((2, 3))
      >>> x, variables = jax.eval_shape(decoder.init_with_output, key, z)
      >>> x.shape, variables["params"]["project"]["kernel"].shape
      ((2, 8, 8, 1), (3, 32))
    """

    image_shape: Sequence[int]
    features: Sequence[int] = (64, 32)
    output_channels: int | None = None
    start_features: int | None = None
    kernel_size: int = 4
    final_kernel_size: int = 3
    activation: Activation = "relu"
    norm: str = "none"

    @property
    def start_size(self) -> tuple[int, int]:
        """``(H / 2^n, W / 2^n)``, the spatial size of the starting map."""
        return downsampled_size(self.image_shape, len(check_features("ConvDecoder", self.features)))

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        owner = "ConvDecoder"
        widths = check_features(owner, self.features)
        h, w, c = check_image_shape(self.image_shape, len(widths), owner=owner)
        k = _check_int(owner, "kernel_size", self.kernel_size, 1)
        k_final = _check_int(owner, "final_kernel_size", self.final_kernel_size, 1)
        out_c = c if self.output_channels is None else self.output_channels
        _check_int(owner, "output_channels", out_c, 1)
        norm = _check_norm(owner, self.norm)
        act = get_activation(self.activation, name=f"{owner}.activation")
        h0, w0 = h // 2 ** len(widths), w // 2 ** len(widths)
        if jnp.ndim(z) == 2:
            start = widths[0] if self.start_features is None else self.start_features
            _check_int(owner, "start_features", start, 1)
            x = nn.Dense(h0 * w0 * start, name="project")(z)
            x = x.reshape(z.shape[0], h0, w0, start)
            x = act(_normalize(norm, x, "norm_project"))
        elif jnp.ndim(z) == 4:
            if tuple(z.shape[1:3]) != (h0, w0):
                raise ValueError(
                    f"{owner}: a feature-map input must be [B, {h0}, {w0}, c] to reach "
                    f"{(h, w)} in {len(widths)} stride-2 stage(s), got shape {tuple(z.shape)}"
                )
            x = z
        else:
            raise ValueError(
                f"{owner} input must be a vector batch [B, d] or a feature map "
                f"[B, {h0}, {w0}, c], got shape {jnp.shape(z)}"
            )
        for i, width in enumerate(widths):
            x = ConvTranspose2x(width, k, name=f"deconv_{i}")(x)
            x = act(_normalize(norm, x, f"norm_{i}"))
        return Conv(out_c, (k_final, k_final), padding="SAME", name="output")(x)


def _phase_taps(kernel_size: int, pad_before: int, phase: int) -> tuple[slice, int, int] | None:
    """The kernel taps and input offsets of one output phase of a stride-2 transposed conv.

    ``lax.conv_transpose`` (no kernel flip) computes ``y[o] = sum_t x_d[o + t - p] w[t]`` with
    ``x_d`` the input dilated by 2 and ``p`` the padding before it. Output ``o = 2 i + a``
    therefore reads the taps ``t`` with ``a + t - p`` even, at input ``i + (a + t - p) / 2``:
    every other tap, at consecutive offsets. Returns ``(taps, first offset, last offset)``, or
    None when no tap reaches that phase (a 1x1 kernel's odd outputs are zero).
    """
    taps = [t for t in range(kernel_size) if (phase + t - pad_before) % 2 == 0]
    if not taps:
        return None
    first, last = ((phase + t - pad_before) // 2 for t in (taps[0], taps[-1]))
    return slice(taps[0], taps[-1] + 1, 2), first, last


class ConvTranspose2x(nn.Module):
    """A stride-2, ``"SAME"`` transposed convolution, ``[B, H, W, C] -> [B, 2H, 2W, features]``.

    The same function and the same parameters (``kernel [k, k, C, features]``, ``bias``, with
    ``flax.linen.ConvTranspose``'s initialisers) as ``nn.ConvTranspose(features, (k, k),
    strides=(2, 2), padding="SAME")``, computed as four stride-1 convolutions, one per output
    phase (row and column parity), each with the kernel's taps that reach that phase, then
    interleaved. Why: XLA's CPU backend runs the input-dilated convolution of
    ``lax.conv_transpose`` and above all its kernel gradient very slowly (a 14x14 -> 28x28
    layer at batch 128: 1.2 s for the kernel gradient against about 10 ms for a stride-1
    convolution's), which made every convolutional decoder ~20x slower to train on a CPU than
    its PyTorch twin. The FLOPs are the same as the transposed convolution's useful ones.

    Attributes:
      features: output channels.
      kernel_size: the square kernel's size ``k >= 1``.

    Example:
      >>> import flax.linen as nn, jax.numpy as jnp
      >>> from genjax.nn.conv import ConvTranspose2x
      >>> kernel = jnp.linspace(-1.0, 1.0, 4 * 4 * 2 * 3).reshape(4, 4, 2, 3)  # [k, k, C, F]
      >>> variables = {"params": {"kernel": kernel, "bias": jnp.zeros(3)}}
      >>> x = jnp.linspace(0.0, 1.0, 4 * 4 * 2).reshape(1, 4, 4, 2)
      >>> y = ConvTranspose2x(features=3, kernel_size=4).apply(variables, x)
      >>> flax_y = nn.ConvTranspose(3, (4, 4), strides=(2, 2), padding="SAME").apply(variables, x)
      >>> y.shape, bool(jnp.allclose(y, flax_y, atol=1e-5))  # same parameters, same function
      ((1, 8, 8, 3), True)
    """

    features: int
    kernel_size: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, cin = self.kernel_size, x.shape[-1]
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (k, k, cin, self.features), jnp.float32
        )
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=None)
        # The phase form is for XLA:CPU; a program lowered for a GPU or TPU (also one exported
        # from a CPU host) gets the native transposed convolution (cuDNN, the TPU's MXU).
        y = lax.platform_dependent(
            x, kernel, cpu=_phase_conv_transpose, default=_native_conv_transpose
        )
        return y + bias


def _native_conv_transpose(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """What ``flax.linen.ConvTranspose(F, (k, k), strides=(2, 2), padding="SAME")`` computes."""
    return lax.conv_transpose(x, kernel, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _phase_conv_transpose(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The same as :func:`_native_conv_transpose`, as four stride-1 phase convolutions."""
    k, features = kernel.shape[0], kernel.shape[-1]
    # lax.conv_transpose's "SAME" padding before the dilated input, for stride 2.
    pad_before = k - 1 if k < 3 else math.ceil(k / 2)
    b, h, w, _ = x.shape
    rows = []
    for a in (0, 1):
        cols = []
        for c in (0, 1):
            pa, pc = _phase_taps(k, pad_before, a), _phase_taps(k, pad_before, c)
            if pa is None or pc is None:
                cols.append(jnp.zeros((b, h, w, features), x.dtype))
                continue
            (ta, a0, a1), (tc, c0, c1) = pa, pc
            cols.append(
                conv_general_dilated(
                    x,
                    kernel[ta, tc],
                    (1, 1),
                    [(-a0, a1), (-c0, c1)],
                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                )
            )
        rows.append(jnp.stack(cols, axis=3))  # [B, H, W, 2 (column phase), F]
    y = jnp.stack(rows, axis=2)  # [B, H, 2 (row phase), W, 2, F]
    return y.reshape(b, 2 * h, 2 * w, features)


class ResidualBlock(nn.Module):
    """``x + Conv1x1(act(Conv3x3(act(x))))``, shape-preserving (van den Oord et al., 2017).

    ``[B, H, W, C] -> [B, H, W, C]``; the inner convolution has ``hidden`` channels.

    Attributes:
      hidden: channels of the 3x3 convolution.
      activation: a name in :data:`genjax.nn.ACTIVATIONS` or a callable.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from genjax import nn as gnn
      >>> block = gnn.ResidualBlock(hidden=8)
      >>> # Shapes only: jax.eval_shape traces the module without computing anything.
      >>> key, x = jax.random.key(0), jnp.ones((2, 4, 4, 3))
      >>> y, variables = jax.eval_shape(block.init_with_output, key, x)
      >>> y.shape, variables["params"]["conv_3x3"]["kernel"].shape
      ((2, 4, 4, 3), (3, 3, 3, 8))
    """

    hidden: int = 32
    activation: Activation = "relu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = _check_int("ResidualBlock", "hidden", self.hidden, 1)
        _check_images("ResidualBlock", x)
        act = get_activation(self.activation, name="ResidualBlock.activation")
        h = Conv(hidden, (3, 3), padding="SAME", name="conv_3x3")(act(x))
        h = Conv(x.shape[-1], (1, 1), name="conv_1x1")(act(h))
        return x + h
