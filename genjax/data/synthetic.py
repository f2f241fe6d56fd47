"""2-D Gaussian mixtures of the GAN mode-collapse literature, and their mode statistics.

``ring8``
    8 isotropic Gaussians with means ``2 * (cos(2*pi*k/8), sin(2*pi*k/8))``, ``k = 0..7`` (a
    ring of radius 2), standard deviation 0.02 per coordinate. This is the "2D Ring" of the
    synthetic experiments of Srivastava et al. 2017 (VEEGAN), reused by Lin et al. 2018
    (PacGAN); VEEGAN took the ring-of-8 toy problem from Metz et al. 2017 (Unrolled GANs).
``grid25``
    25 isotropic Gaussians with means on the 5x5 grid ``{-4, -2, 0, 2, 4}^2``, standard
    deviation 0.05 per coordinate: the "2D Grid" of VEEGAN and PacGAN. Mode ``k`` has mean
    ``(v[k // 5], v[k % 5])`` with ``v = (-4, -2, 0, 2, 4)``.

Every mode has weight ``1 / M``. The fixed finite sets that :func:`genjax.data.load` returns for
these names are one draw from :data:`FIXED_SEED` (``train``: 50,000 points, ``test``: the next
10,000), with the mode index as ``label``.

:func:`mode_statistics` implements the evaluation of VEEGAN / PacGAN on these sets: a sample is
*high quality* if it lies within 3 standard deviations (Euclidean distance ``<= 3 * std``) of
its nearest mode; a mode is *captured* if at least ``min_count`` (default 1) high-quality
samples have it as nearest mode; and the "reverse KL" column of PacGAN's 2-D results is
``KL(p_modes || uniform)``, where ``p_modes`` is the histogram of the high-quality samples
over the modes (the model's distribution comes first, hence "reverse").
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "FIXED_SEED",
    "GRID25",
    "MIXTURES",
    "RING8",
    "SPLIT_SIZES",
    "MixtureSpec",
    "mixture_dataset",
    "mode_statistics",
    "sample_mixture",
]


@dataclasses.dataclass(frozen=True, eq=False)
class MixtureSpec:
    """An equal-weight mixture of isotropic 2-D Gaussians.

    Attributes:
      name: the dataset name (``"ring8"``, ``"grid25"``, ...).
      means: float32 ``[M, 2]``, the mode centres (stored read-only).
      std: the standard deviation of every coordinate of every mode.

    Compared and hashed by identity, so a spec can be a static argument of ``jax.jit``.

    Example:
      >>> from genjax import data
      >>> spec = data.MixtureSpec("pair", [[-1.0, 0.0], [1.0, 0.0]], std=0.1)
      >>> spec.num_modes, spec.means.dtype, spec.means.flags.writeable
      (2, dtype('float32'), False)
      >>> data.RING8.num_modes, data.RING8.std, data.GRID25.means[6].tolist()  # (v[1], v[1])
      (8, 0.02, [-2.0, -2.0])
    """

    name: str
    means: np.ndarray
    std: float

    def __post_init__(self):
        means = np.array(self.means, dtype=np.float32)
        if means.ndim != 2 or means.shape[1] != 2 or means.shape[0] < 1:
            raise ValueError(f"MixtureSpec.means must have shape [M, 2], got {means.shape}")
        if not (math.isfinite(self.std) and self.std > 0):
            raise ValueError(f"MixtureSpec.std must be a positive number, got {self.std}")
        means.setflags(write=False)
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "std", float(self.std))

    @property
    def num_modes(self) -> int:
        """``M``, the number of mixture components."""
        return self.means.shape[0]


def _ring(num_modes: int, radius: float) -> np.ndarray:
    angles = 2.0 * np.pi * np.arange(num_modes) / num_modes
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _grid(values: tuple[float, ...]) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    return np.stack(np.meshgrid(v, v, indexing="ij"), axis=-1).reshape(-1, 2)


#: VEEGAN / PacGAN "2D Ring": 8 modes on a circle of radius 2, std 0.02.
RING8 = MixtureSpec("ring8", _ring(8, 2.0), 0.02)
#: VEEGAN / PacGAN "2D Grid": 25 modes on {-4, -2, 0, 2, 4}^2, std 0.05.
GRID25 = MixtureSpec("grid25", _grid((-4.0, -2.0, 0.0, 2.0, 4.0)), 0.05)
#: The mixtures by dataset name.
MIXTURES: dict[str, MixtureSpec] = {s.name: s for s in (RING8, GRID25)}
#: Size of the fixed finite set per split, in the order they are cut from one draw.
SPLIT_SIZES: dict[str, int] = {"train": 50_000, "test": 10_000}
#: Seed of the fixed finite sets (the mixture's index in MIXTURES is folded in).
FIXED_SEED = 20170


@functools.partial(jax.jit, static_argnames=("spec", "n"))
def sample_mixture(spec: MixtureSpec, rng: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """Draws ``n`` i.i.d. points from the mixture.

    Args:
      spec: the mixture (static).
      rng: a ``jax.random`` key.
      n: number of samples (static Python int).

    Returns:
      ``(x, mode)``: ``x`` float32 ``[n, 2]`` with ``x = means[mode] + std * eps``,
      ``eps ~ N(0, I)``; ``mode`` int32 ``[n]`` uniform on ``0..M-1``.

    Example:
      >>> import jax, numpy as np
      >>> from genjax import data
      >>> x, mode = data.sample_mixture(data.RING8, jax.random.key(0), 100)
      >>> x.shape, mode.shape, mode.dtype
      ((100, 2), (100,), dtype('int32'))
      >>> bool(np.all(np.linalg.norm(x - data.RING8.means[mode], axis=1) < 6 * data.RING8.std))
      True
    """
    k_mode, k_noise = jax.random.split(rng)
    mode = jax.random.randint(k_mode, (n,), 0, spec.num_modes, dtype=jnp.int32)
    eps = jax.random.normal(k_noise, (n, 2), dtype=jnp.float32)
    x = jnp.asarray(spec.means)[mode] + spec.std * eps
    return x, mode


def mixture_dataset(spec: MixtureSpec, split: str) -> dict[str, np.ndarray]:
    """The fixed finite set of ``spec`` for ``split`` (``"train"`` or ``"test"``).

    One sample of ``sum(SPLIT_SIZES.values())`` points is drawn by :func:`sample_mixture` from
    key ``fold_in(key(FIXED_SEED), i)``, ``i`` the index of ``spec.name`` in :data:`MIXTURES`;
    ``train`` is its first 50,000 points and ``test`` the next 10,000 (disjoint, i.i.d.).
    Threefry keys make the draw the same on every machine, up to floating-point rounding of
    the normal transform on different backends. The draw is cached per process.

    Returns:
      ``{"x": float32 [N, 2], "label": int32 [N]}`` (label = mode index), copies.

    Example:
      >>> from genjax import data
      >>> test = data.mixture_dataset(data.GRID25, "test")
      >>> test["x"].shape, test["label"].shape, int(test["label"].max())
      ((10000, 2), (10000,), 24)
    """
    if split not in SPLIT_SIZES:
        raise ValueError(
            f"unknown split {split!r} for {spec.name!r}; available: {', '.join(SPLIT_SIZES)}"
        )
    x, mode = _fixed_sample(spec)
    start = 0
    for name, size in SPLIT_SIZES.items():
        if name == split:
            break
        start += size
    stop = start + SPLIT_SIZES[split]
    return {"x": x[start:stop].copy(), "label": mode[start:stop].copy()}


@functools.cache
def _fixed_sample(spec: MixtureSpec) -> tuple[np.ndarray, np.ndarray]:
    index = list(MIXTURES).index(spec.name) if spec.name in MIXTURES else len(MIXTURES)
    key = jax.random.fold_in(jax.random.key(FIXED_SEED), index)
    x, mode = sample_mixture(spec, key, sum(SPLIT_SIZES.values()))
    return np.asarray(x, dtype=np.float32), np.asarray(mode, dtype=np.int32)


@functools.partial(jax.jit, static_argnames=("spec", "min_count"))
def mode_statistics(
    spec: MixtureSpec, samples: jax.Array, *, min_count: int = 1
) -> dict[str, jax.Array]:
    """Mode coverage of ``samples`` against ``spec`` (VEEGAN / PacGAN evaluation).

    Each sample is assigned to its nearest mode (Euclidean). It is *high quality* if that
    distance is ``<= 3 * spec.std`` (the VEEGAN / PacGAN criterion). A mode is
    *captured* if it is the nearest mode of at least ``min_count`` high-quality samples;
    ``min_count=1`` is the VEEGAN / PacGAN count of modes on the 2-D sets (a stricter
    threshold, e.g. a fraction of the expected ``N / M``, can be passed instead).

    Args:
      spec: the true mixture.
      samples: float ``[N, 2]``, e.g. generator output.
      min_count: high-quality samples a mode needs to count as captured (>= 1).

    Returns:
      A dict of arrays (jitted; ``spec`` and ``min_count`` are static):
        ``modes_captured`` int32, in ``0..M``;
        ``high_quality_fraction`` float32, fraction of samples that are high quality;
        ``reverse_kl`` float32, ``KL(p || u) = sum_k p_k log(M p_k)`` (terms with
        ``p_k = 0`` are 0) where ``p`` is the histogram of high-quality samples over the
        modes and ``u`` uniform: 0 for perfect balance, ``log M`` if all fall in one mode,
        NaN if there is no high-quality sample (PacGAN's "reverse KL");
        ``mode_counts`` int32 ``[M]``, high-quality samples per mode.

    Example:
      >>> from genjax import data
      >>> stats = data.mode_statistics(data.RING8, data.RING8.means)  # one sample on every mode
      >>> int(stats["modes_captured"]), float(stats["high_quality_fraction"])
      (8, 1.0)
      >>> float(stats["reverse_kl"]), stats["mode_counts"].tolist()  # perfectly balanced
      (0.0, [1, 1, 1, 1, 1, 1, 1, 1])
      >>> stats = data.mode_statistics(data.RING8, data.RING8.means[[0, 0, 0]])  # all on mode 0
      >>> int(stats["modes_captured"]), round(float(stats["reverse_kl"]), 4)  # log 8
      (1, 2.0794)
    """
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    samples = jnp.asarray(samples, dtype=jnp.float32)
    if samples.ndim != 2 or samples.shape[1] != 2:
        raise ValueError(f"samples must have shape [N, 2], got {samples.shape}")
    means = jnp.asarray(spec.means)
    dist = jnp.linalg.norm(samples[:, None, :] - means[None, :, :], axis=-1)  # [N, M]
    nearest = jnp.argmin(dist, axis=1)
    high_quality = jnp.min(dist, axis=1) <= 3.0 * spec.std
    counts = jnp.zeros(spec.num_modes, jnp.int32).at[nearest].add(high_quality.astype(jnp.int32))
    total = counts.sum()
    p = counts / jnp.maximum(total, 1)
    kl_terms = jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0) * spec.num_modes), 0.0)
    reverse_kl = jnp.where(total > 0, kl_terms.sum(), jnp.nan)
    return {
        "modes_captured": jnp.sum(counts >= min_count).astype(jnp.int32),
        "high_quality_fraction": jnp.mean(high_quality.astype(jnp.float32)),
        "reverse_kl": reverse_kl.astype(jnp.float32),
        "mode_counts": counts,
    }
