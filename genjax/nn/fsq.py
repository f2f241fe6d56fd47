"""Finite scalar quantization (FSQ; Mentzer, Minnen, Agustsson & Tschannen, 2023).

FSQ replaces a VQ codebook with a fixed grid: each of ``d`` channels is squashed into a
bounded interval and rounded to one of ``L_i`` integer levels, so the implicit codebook is the
product grid of ``prod(L_i)`` points. It has no codebook to learn, so it needs no auxiliary
loss and no dead-code restarts, and every code stays reachable.

For channel ``i`` with ``L = L_i`` levels, ``h = (L - 1)(1 + eps) / 2``, ``o = 1/2`` if ``L``
is even and ``0`` if odd, and ``s = atanh(o / h)``:

    bound(z)    = tanh(z + s) h - o               in (-h - o, h - o)
    quantize(z) = round_ste(bound(z)) / (L // 2)  one of L values in [-1, 1]

``round_ste`` rounds in the forward pass and passes the gradient through unchanged
(straight-through), so ``d quantize / dz = bound'(z) / (L // 2)``. The shift ``s`` and offset ``o``
place an even number of levels symmetrically around 0 (``L = 8``: ``-4 .. 3``). Indices number
the grid points in mixed radix, channel 0 fastest: ``index = sum_i (q_i + L_i // 2) prod_{j<i} L_j``
with ``q_i`` the integer level. This is the convention of the paper's reference code; it lets a
prior over indices (``genjax.models.prior``) model FSQ codes exactly as it models VQ codes.

The level tables of the paper's Table 1, for a target codebook size:

    LEVELS[2**8]  == (8, 6, 5)           240 codes
    LEVELS[2**10] == (8, 5, 5, 5)        1,000 codes
    LEVELS[2**12] == (7, 5, 5, 5, 5)     4,375 codes
    LEVELS[2**14] == (8, 8, 8, 6, 5)     15,360 codes
    LEVELS[2**16] == (8, 8, 8, 5, 5, 5)  64,000 codes

Half-precision inputs are computed in float32 (rounding in bfloat16 would merge neighbouring
levels for large ``L``); results come back in float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax._checks import check_int

__all__ = [
    "LEVELS",
    "FiniteScalarQuantizer",
    "bound",
    "codebook_size",
    "codes_to_indices",
    "indices_to_codes",
    "noisy_quantize",
    "quantize",
]

#: The paper's level tables (Mentzer et al., 2023, Table 1), by target codebook size.
LEVELS: dict[int, tuple[int, ...]] = {
    2**8: (8, 6, 5),
    2**10: (8, 5, 5, 5),
    2**12: (7, 5, 5, 5, 5),
    2**14: (8, 8, 8, 6, 5),
    2**16: (8, 8, 8, 5, 5, 5),
}

_EPS = 1e-3


def _levels(fn: str, levels: Any) -> tuple[int, ...]:
    if isinstance(levels, str | bytes) or not isinstance(levels, Sequence) or not levels:
        raise ValueError(f"{fn}: levels must be a non-empty sequence of ints >= 2, got {levels!r}")
    return tuple(check_int(f"{fn}: levels[{i}]", v, 2) for i, v in enumerate(levels))


def _as_channels(fn: str, z: Any, levels: tuple[int, ...]) -> jax.Array:
    z = jnp.asarray(z)
    if not jnp.issubdtype(z.dtype, jnp.floating):
        raise ValueError(f"{fn}: z must be a float array, got dtype {z.dtype}")
    if z.ndim < 1 or z.shape[-1] != len(levels):
        raise ValueError(
            f"{fn}: z must have a last axis of len(levels) = {len(levels)} channels, "
            f"got shape {z.shape}"
        )
    return z.astype(jnp.promote_types(z.dtype, jnp.float32))


def codebook_size(levels: Sequence[int]) -> int:
    """``prod(levels)``: the number of grid points (codes).

    Example:
      >>> from genjax.nn import fsq
      >>> fsq.codebook_size((8, 6, 5)), fsq.codebook_size(fsq.LEVELS[2**10])
      (240, 1000)
    """
    return math.prod(_levels("codebook_size", levels))


def bound(z: Any, levels: Sequence[int]) -> jax.Array:
    """``tanh(z + s) h - o`` per channel (see the module docstring): ``[..., d] -> [..., d]``,
    each channel in an open interval that rounds to exactly ``L_i`` integers.

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax.nn import fsq
      >>> b = fsq.bound(jnp.array([[-9.0, -9.0], [9.0, 9.0]]), (3, 4))
      >>> jnp.round(b)  # L = 3 rounds to -1..1, L = 4 to -2..1
      Array([[-1., -2.],
             [ 1.,  1.]], dtype=float32)
    """
    levels = _levels("bound", levels)
    z = _as_channels("bound", z, levels)
    L = jnp.asarray(levels, z.dtype)
    # (1 + eps) widens the interval just past the outer levels, so that an even L = 2's
    # shift atanh(o / h) stays finite; it never reaches the next half-integer.
    half = (L - 1.0) * (1.0 + _EPS) / 2.0
    offset = jnp.where(jnp.asarray(levels) % 2 == 0, 0.5, 0.0).astype(z.dtype)
    shift = jnp.arctanh(offset / half)
    return jnp.tanh(z + shift) * half - offset


def quantize(z: Any, levels: Sequence[int]) -> jax.Array:
    """The FSQ code of ``z``: ``[..., d]`` float -> ``[..., d]`` float32 in ``[-1, 1]``, each
    channel one of ``L_i`` values ``q / (L_i // 2)``, ``q`` an integer. Straight-through: the
    gradient is that of ``bound(z) / (L // 2)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax.nn import fsq
      >>> fsq.quantize(jnp.array([[-5.0, 5.0], [0.0, 0.0]]), (3, 5))  # -1, 0, 1 in each channel
      Array([[-1.,  1.],
             [ 0.,  0.]], dtype=float32)
    """
    levels = _levels("quantize", levels)
    b = bound(z, levels)
    rounded = b + jax.lax.stop_gradient(jnp.round(b) - b)
    return rounded / jnp.asarray([lv // 2 for lv in levels], b.dtype)


def noisy_quantize(rng: jax.Array, z: Any, levels: Sequence[int], prob: float) -> jax.Array:
    """:func:`quantize` for training with noise substitution: each value is, with probability
    ``prob`` and independently, ``(bound(z) + u) / (L // 2)`` with ``u ~ U(-1/2, 1/2)`` (one
    level wide) instead of its rounded code. ``[..., d] -> [..., d]`` float32.

    Additive uniform noise is the continuous relaxation of rounding (Balle, Laparra &
    Simoncelli, 2017); substituting it for part of the rounding is the FSQ training of Parker
    et al. (2024, "Scaling Transformers for Low-Bitrate High-Quality Speech Coding",
    arXiv:2411.19842, section 3.2). The gradient is the same as :func:`quantize`'s,
    ``bound'(z) / (L // 2)``; only the forward value changes. ``prob = 0`` is
    :func:`quantize` (same values, ``rng`` unused); the noisy values are never codes, so use
    this in training only.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from genjax.nn import fsq
      >>> key, z, levels = jax.random.key(0), jnp.zeros((4, 3)), (8, 6, 5)
      >>> bool(jnp.all(fsq.noisy_quantize(key, z, levels, 0.0) == fsq.quantize(z, levels)))
      True
      >>> q = fsq.noisy_quantize(key, z, levels, 1.0)  # bound(0) = 0, plus noise
      >>> bool(jnp.all(jnp.abs(q * jnp.array([4, 3, 2])) <= 0.5))  # within half a level
      True
    """
    levels = _levels("noisy_quantize", levels)
    if not (isinstance(prob, int | float) and 0.0 <= prob <= 1.0):
        raise ValueError(f"noisy_quantize: prob must be a number in [0, 1], got {prob!r}")
    b = bound(z, levels)
    rounded = jnp.round(b)
    if prob > 0:
        mask_key, noise_key = jax.random.split(rng)
        noise = jax.random.uniform(noise_key, b.shape, b.dtype, -0.5, 0.5)
        substitute = jax.random.bernoulli(mask_key, prob, b.shape)
        rounded = jnp.where(substitute, b + noise, rounded)
    out = b + jax.lax.stop_gradient(rounded - b)
    return out / jnp.asarray([lv // 2 for lv in levels], b.dtype)


def codes_to_indices(codes: Any, levels: Sequence[int]) -> jax.Array:
    """``[..., d]`` codes (outputs of :func:`quantize`) -> ``[...]`` int32 indices in
    ``[0, prod(levels))``, mixed radix with channel 0 fastest.

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax.nn import fsq
      >>> fsq.codes_to_indices(jnp.array([[-1.0, -1.0], [0.0, -1.0], [1.0, 1.0]]), (3, 5))
      Array([ 0,  1, 14], dtype=int32)
    """
    levels = _levels("codes_to_indices", levels)
    codes = _as_channels("codes_to_indices", codes, levels)
    half = jnp.asarray([lv // 2 for lv in levels], codes.dtype)
    digits = jnp.round(codes * half + half).astype(jnp.int32)
    basis = jnp.asarray(np.cumprod((1, *levels[:-1])), jnp.int32)
    return jnp.sum(digits * basis, axis=-1)


def indices_to_codes(indices: Any, levels: Sequence[int]) -> jax.Array:
    """The inverse of :func:`codes_to_indices`: ``[...]`` ints -> ``[..., d]`` float32 codes.

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax.nn import fsq
      >>> codes = fsq.indices_to_codes(jnp.array([0, 1, 14]), (3, 5))
      >>> codes
      Array([[-1., -1.],
             [ 0., -1.],
             [ 1.,  1.]], dtype=float32)
      >>> fsq.codes_to_indices(codes, (3, 5))
      Array([ 0,  1, 14], dtype=int32)
    """
    levels = _levels("indices_to_codes", levels)
    indices = jnp.asarray(indices)
    if not jnp.issubdtype(indices.dtype, jnp.integer):
        raise ValueError(f"indices_to_codes: indices must be integers, got {indices.dtype}")
    basis = jnp.asarray(np.cumprod((1, *levels[:-1])), jnp.int32)
    L = jnp.asarray(levels, jnp.int32)
    digits = (indices[..., None].astype(jnp.int32) // basis) % L
    half = jnp.asarray([lv // 2 for lv in levels], jnp.float32)
    return (digits.astype(jnp.float32) - half) / half


class FiniteScalarQuantizer(nn.Module):
    """FSQ as a layer: ``[..., C] -> (z_q [..., C], indices [...])``.

    When ``C != len(levels)`` the input is projected to ``len(levels)`` channels by a Dense
    layer and the code back to ``C`` (the paper's setting for a wide encoder); otherwise the
    channels are quantized directly and the layer has no parameters.

    Attributes:
      levels: levels per channel, e.g. ``LEVELS[2**8]``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from genjax.nn import fsq
      >>> layer = fsq.FiniteScalarQuantizer(levels=(3, 5))
      >>> z_q, indices = layer.apply({}, jnp.array([[-5.0, 5.0], [0.0, 0.0]]))  # no parameters
      >>> z_q.tolist(), indices  # mixed radix, channel 0 fastest: 0 + 3 * 4 and 1 + 3 * 2
      ([[-1.0, 1.0], [0.0, 0.0]], Array([12,  7], dtype=int32))
      >>> # 16 channels: projected to 2 and back by Dense layers (shapes only, nothing computed).
      >>> key, z = jax.random.key(0), jnp.zeros((2, 4, 16))
      >>> (z_q, indices), variables = jax.eval_shape(layer.init_with_output, key, z)
      >>> z_q.shape, indices.shape, variables["params"]["project_in"]["kernel"].shape
      ((2, 4, 16), (2, 4), (16, 2))
    """

    levels: tuple[int, ...]

    @nn.compact
    def __call__(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        levels = _levels("FiniteScalarQuantizer", self.levels)
        channels = z.shape[-1]
        project = channels != len(levels)
        h = nn.Dense(len(levels), name="project_in")(z) if project else z
        codes = quantize(h, levels)
        indices = codes_to_indices(codes, levels)
        out = nn.Dense(channels, name="project_out")(codes) if project else codes
        return out, indices
