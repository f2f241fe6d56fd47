"""An autoregressive prior over code maps: a small causal transformer.

A VQ-VAE alone does not generate; van den Oord et al. (2017) fit an autoregressive model to
the code maps of the training set and decode its samples. Here the code map (``[h, w]`` or
``[M]`` indices in ``[0, K)``) is flattened in raster order to a sequence ``c_1 .. c_S`` and

    p(c) = prod_i p(c_i | c_<i),   p(c_i | c_<i) = softmax(f(BOS, c_1, .., c_{i-1})_i)

with ``f`` a decoder-only transformer (Vaswani et al., 2017; pre-layer-norm blocks as in
GPT-2, Radford et al., 2019): token and learned position embeddings, ``depth`` blocks of
causal multi-head self-attention and an MLP, each ``x + sublayer(LayerNorm(x))``, a final
LayerNorm and a ``Dense(K)`` read-out. The input is the sequence shifted right by one
behind a start token ``BOS = K``, and attention is masked to positions ``<= i``, so the
logits at position ``i`` depend only on ``c_<i`` (a test checks this by perturbation).

Functions: :func:`log_prob` (``[B]`` nats), :func:`bits_per_code` (the reported negative
log-likelihood, ``-log2 p(c) / S`` averaged over examples), :class:`PriorLoss` (the
engine's loss), and :func:`sample`, which draws all ``S`` positions one after another inside
one ``lax.fori_loop`` under ``jit`` (each iteration re-runs the network on the partial
sequence: ``S`` forward passes of a short sequence, no cache needed at these sizes).

The VQ-VAE family trains this prior in the second phase of its task, on the code maps of the
frozen VQ-VAE (:meth:`genjax.models.vqvae.VQVAEObjective.two_phase_task`; its size is set by
``VQVAEConfig.prior_width``, ``prior_depth`` and ``prior_heads``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from genjax._checks import check_int

__all__ = ["CausalTransformer", "PriorLoss", "bits_per_code", "log_prob", "sample"]

_LN2 = math.log(2.0)


def _check_int(owner: str, name: str, value: Any, minimum: int) -> int:
    return check_int(f"{owner}: {name}", value, minimum)


class _Block(nn.Module):
    width: int
    heads: int
    mlp_ratio: int

    @nn.compact
    def __call__(self, h: jax.Array, mask: jax.Array) -> jax.Array:
        a = nn.LayerNorm(name="ln_attn")(h)
        a = nn.MultiHeadDotProductAttention(
            num_heads=self.heads, qkv_features=self.width, name="attn"
        )(a, a, mask=mask)
        h = h + a
        m = nn.LayerNorm(name="ln_mlp")(h)
        m = nn.Dense(self.mlp_ratio * self.width, name="mlp_in")(m)
        m = nn.Dense(self.width, name="mlp_out")(jax.nn.gelu(m))
        return h + m


class CausalTransformer(nn.Module):
    """``codes [B, S] int -> logits [B, S, K]``; ``logits[:, i]`` depends on ``codes[:, :i]`` only.

    Attributes:
      num_codes: ``K >= 2``, the vocabulary (the VQ-VAE's codebook size).
      seq_len: ``S >= 1``, the length of a flattened code map.
      width: model width (divisible by ``heads``).
      depth: number of transformer blocks.
      heads: attention heads.
      mlp_ratio: hidden width of the MLPs, as a multiple of ``width``.
    """

    num_codes: int
    seq_len: int
    width: int = 64
    depth: int = 2
    heads: int = 4
    mlp_ratio: int = 4

    def validate(self) -> None:
        owner = "CausalTransformer"
        _check_int(owner, "num_codes", self.num_codes, 2)
        _check_int(owner, "seq_len", self.seq_len, 1)
        _check_int(owner, "width", self.width, 1)
        _check_int(owner, "depth", self.depth, 0)
        _check_int(owner, "heads", self.heads, 1)
        _check_int(owner, "mlp_ratio", self.mlp_ratio, 1)
        if self.width % self.heads:
            raise ValueError(
                f"{owner}: width must be divisible by heads, got width={self.width}, "
                f"heads={self.heads}"
            )

    @nn.compact
    def __call__(self, codes: jax.Array) -> jax.Array:
        self.validate()
        if jnp.ndim(codes) != 2 or jnp.shape(codes)[1] != self.seq_len:
            raise ValueError(
                f"CausalTransformer: codes must be [B, seq_len] = [B, {self.seq_len}], "
                f"got shape {jnp.shape(codes)}"
            )
        if not jnp.issubdtype(jnp.asarray(codes).dtype, jnp.integer):
            raise ValueError(
                f"CausalTransformer: codes must be integer indices, got {jnp.asarray(codes).dtype}"
            )
        B, S = codes.shape
        bos = jnp.full((B, 1), self.num_codes, jnp.int32)
        inputs = jnp.concatenate([bos, codes[:, :-1].astype(jnp.int32)], axis=1)
        h = nn.Embed(self.num_codes + 1, self.width, name="token")(inputs)
        pos = self.param("position", nn.initializers.normal(0.02), (S, self.width))
        h = h + pos[None].astype(h.dtype)
        mask = nn.make_causal_mask(inputs)
        for i in range(self.depth):
            h = _Block(self.width, self.heads, self.mlp_ratio, name=f"block_{i}")(h, mask)
        h = nn.LayerNorm(name="ln_out")(h)
        return nn.Dense(self.num_codes, name="logits")(h)


def _flat(model: CausalTransformer, codes: Any) -> jax.Array:
    codes = jnp.asarray(codes)
    if codes.ndim < 2 or int(np.prod(codes.shape[1:])) != model.seq_len:
        raise ValueError(
            f"prior: codes must be [B, ...] with seq_len={model.seq_len} positions per "
            f"example, got shape {codes.shape}"
        )
    return codes.reshape(codes.shape[0], -1)


def log_prob(model: CausalTransformer, params: Any, codes: Any) -> jax.Array:
    """``log p(c)`` in nats per example, ``[B]``; ``codes`` is ``[B, ...]`` (flattened in
    raster order to ``[B, S]``)."""
    flat = _flat(model, codes)
    logits = model.apply(params, flat).astype(jnp.float32)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_p, flat[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return jnp.sum(picked, axis=-1)


def bits_per_code(model: CausalTransformer, params: Any, codes: Any) -> jax.Array:
    """The negative log-likelihood in bits per code, averaged over the examples (scalar)."""
    return -jnp.mean(log_prob(model, params, codes)) / (model.seq_len * _LN2)


def sample(
    model: CausalTransformer,
    params: Any,
    rng: jax.Array,
    num_samples: int,
    *,
    temperature: float = 1.0,
) -> jax.Array:
    """``num_samples`` code sequences ``[n, S]`` (int32), drawn position by position.

    One ``lax.fori_loop`` over the ``S`` positions; iteration ``i`` runs the network on the
    partial sequence (positions ``>= i`` still hold zeros, which the causal mask hides from
    ``logits[:, i]``) and draws ``c_i ~ softmax(logits[:, i] / temperature)``. Jittable
    (``num_samples`` and ``temperature`` static).
    """
    n = _check_int("prior.sample", "num_samples", num_samples, 1)
    if not (isinstance(temperature, int | float) and temperature > 0):
        raise ValueError(f"prior.sample: temperature must be a number > 0, got {temperature!r}")
    S = model.seq_len

    def body(i, codes):
        logits = model.apply(params, codes)[:, i].astype(jnp.float32)
        draw = jax.random.categorical(jax.random.fold_in(rng, i), logits / temperature, axis=-1)
        return codes.at[:, i].set(draw.astype(jnp.int32))

    return lax.fori_loop(0, S, body, jnp.zeros((n, S), jnp.int32))


@dataclasses.dataclass(frozen=True)
class PriorLoss:
    """The prior's training loss for the engine: mean ``-log p(c) / S`` (nats per code).

    ``init(rng, batch)`` and ``loss(params, batch, rng) -> (loss, metrics)`` read the code maps
    from ``batch["codes"]`` (``[B, ...]`` int); metrics: ``bits_per_code``.

    Attributes:
      model: the :class:`CausalTransformer`.
    """

    model: CausalTransformer

    def __post_init__(self):
        if not isinstance(self.model, CausalTransformer):
            raise ValueError(
                f"PriorLoss: model must be a CausalTransformer, got {type(self.model).__name__}"
            )
        self.model.validate()

    def init(self, rng: jax.Array, batch: dict) -> Any:
        return self.model.init(rng, _flat(self.model, batch["codes"]))

    def loss(self, params: Any, batch: dict, rng: jax.Array) -> tuple[jax.Array, dict]:
        del rng
        nats = -jnp.mean(log_prob(self.model, params, batch["codes"])) / self.model.seq_len
        return nats, {"bits_per_code": nats / _LN2}
