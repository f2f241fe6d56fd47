"""Residual vector quantization (RVQ; Zeghidour et al., 2021, "SoundStream", Algorithm 1).

``N`` codebooks ``C_1 .. C_N`` (each ``[K, d]``) quantize successive residuals::

    r_1 = z
    k_l = argmin_j ||r_l - C_l[j]||^2,   r_{l+1} = r_l - C_l[k_l]     (l = 1 .. n)
    z_q = sum_{l <= n} C_l[k_l]

with ``n <= N`` the number of active levels (quantizer dropout trains with a random ``n``, so
one model serves ``n log2 K`` bits per vector for every ``n``); inactive levels add nothing,
and their indices are those of the last residual (ignore them). The residuals and the sum are
computed in float32 whatever the input's dtype, the distances by
:func:`genjax.losses.vector_quantize` (float32, one matmul per level). The straight-through
value ``sg(z_q) + (z - sg(z))`` carries the decoder's gradient to ``z`` unchanged; nothing flows
to the codebooks, which the VQ-VAE updates by moving averages, level by level, from the
residuals each level saw (:func:`genjax.models.vqvae.update_residual_state`).

Indices are stacked on a new last axis: ``[..., N]``; :func:`codes_from_indices` maps them
back to ``z_q``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from genjax import losses as L

__all__ = ["codes_from_indices", "residual_quantize"]


def _check_codebooks(fn: str, codebooks: Any, dim: int | None = None) -> jax.Array:
    codebooks = jnp.asarray(codebooks)
    if codebooks.ndim != 3 or (dim is not None and codebooks.shape[-1] != dim):
        want = "[N, K, d]" if dim is None else f"[N, K, d] with d={dim} (z.shape[-1])"
        raise ValueError(f"{fn}: codebooks must have shape {want}, got {codebooks.shape}")
    return codebooks


def residual_quantize(
    z: Any, codebooks: Any, num_active: Any = None
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Quantize ``z`` with ``N`` codebooks applied to successive residuals.

    Args:
      z: ``[..., d]`` float vectors.
      codebooks: ``[N, K, d]`` float, one codebook per level.
      num_active: int scalar ``n`` in ``[1, N]`` (may be traced), the levels used; ``None``:
        all ``N``.

    Returns:
      ``(z_q_st, z_q, indices, residuals)``: the straight-through value (``z.shape``, dtype of
      ``z``), the float32 sum of the active levels' codes, int32 indices ``[..., N]`` and the
      float32 residuals each level saw, ``[N, ..., d]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax.nn import rvq
      >>> codebooks = jnp.array([[[0.0], [4.0]], [[-1.0], [1.0]]])  # N = 2, K = 2, d = 1
      >>> z_q_st, z_q, indices, _ = rvq.residual_quantize(jnp.array([[3.2], [0.4]]), codebooks)
      >>> indices.tolist(), z_q.tolist()  # 3.2 -> 4 - 1; 0.4 -> 0 + 1
      ([[1, 0], [0, 1]], [[3.0], [1.0]])
    """
    fn = "residual_quantize"
    z = jnp.asarray(z)
    if z.ndim < 1 or not jnp.issubdtype(z.dtype, jnp.floating):
        raise ValueError(f"{fn}: z must be a float array [..., d], got {z.dtype} {z.shape}")
    codebooks = _check_codebooks(fn, codebooks, z.shape[-1]).astype(jnp.float32)
    levels = codebooks.shape[0]
    active = levels if num_active is None else num_active
    residual = lax.stop_gradient(z).astype(jnp.float32)
    total = jnp.zeros_like(residual)
    indices, residuals = [], []
    for level in range(levels):
        _, idx = L.vector_quantize(residual, codebooks[level])
        code = jnp.take(codebooks[level], idx, axis=0)
        code = jnp.where(level < active, code, jnp.zeros_like(code))
        residuals.append(residual)
        indices.append(idx)
        total = total + code
        residual = residual - code
    z_q = lax.stop_gradient(total)
    z_q_st = z_q.astype(z.dtype) + (z - lax.stop_gradient(z))
    return z_q_st, z_q, jnp.stack(indices, axis=-1), jnp.stack(residuals)


def codes_from_indices(codebooks: Any, indices: Any) -> jax.Array:
    """``z_q = sum_l codebooks[l, indices[..., l]]``: ``[..., N]`` ints -> ``[..., d]`` float32.

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax.nn import rvq
      >>> codebooks = jnp.array([[[0.0], [4.0]], [[-1.0], [1.0]]])
      >>> rvq.codes_from_indices(codebooks, jnp.array([[1, 0], [0, 1]])).tolist()
      [[3.0], [1.0]]
    """
    fn = "codes_from_indices"
    codebooks = _check_codebooks(fn, codebooks).astype(jnp.float32)
    indices = jnp.asarray(indices)
    if indices.ndim < 1 or indices.shape[-1] != codebooks.shape[0]:
        raise ValueError(
            f"{fn}: indices must be [..., N] with N={codebooks.shape[0]} levels, "
            f"got shape {indices.shape}"
        )
    per_level = [
        jnp.take(codebooks[level], indices[..., level], axis=0)
        for level in range(indices.shape[-1])
    ]
    return sum(per_level[1:], per_level[0])
