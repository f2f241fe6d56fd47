"""Sample-quality metrics of generative models, as jittable JAX functions of feature arrays.

Every function here takes features already computed by some feature network (for this
library, the penultimate layer of :mod:`genjax.eval.classifier`; in the literature, Inception
v3), ``real`` of shape ``[N, D]`` and ``generated`` of shape ``[M, D]``, or class
probabilities ``[M, C]`` for the Inception score:

* :func:`kernel_inception_distance` (Bińkowski et al., 2018) — the unbiased estimate of the
  squared maximum mean discrepancy with the cubic polynomial kernel, averaged over random
  subsets; :func:`polynomial_kernel_mmd2` is the same estimate on two whole sets.
* :func:`inception_score` (Salimans et al., 2016).
* :func:`precision_recall` (Kynkäänniemi et al., 2019) and :func:`density_coverage`
  (Naeem et al., 2020), both built on the k-nearest-neighbour radii of :func:`knn_radii`.

(The Fréchet distance lives in :mod:`genjax.eval.frechet`, in float64 NumPy on the host.)

Jit and validation. Each public function checks its arguments' shapes, dtypes and the
Python-int options (``k``, ``chunk_size``, ...) in Python, then calls a compiled
implementation. Shapes are static, so these checks also run when a caller traces the function
inside its own ``jax.jit`` / ``jax.vmap`` (pass the int options as static arguments). Checks
of *values* (finite features, rows of probabilities that sum to 1) need the numbers, so they
run only on concrete arrays; under a caller's trace the values pass unchecked.

Memory. Nothing here builds an ``N x M`` matrix. Pairwise quantities are computed one block
of ``chunk_size`` rows at a time against all rows of the other set, inside ``lax.scan``, so
the largest temporary is ``chunk_size x max(N, M)`` (``1024 x 50000`` float32 is 200 MB);
lower ``chunk_size`` to fit a smaller device. The last block is padded with zeros and its
padding masked out, so the results do not depend on ``chunk_size`` beyond float rounding.

Precision. Computation runs in the features' floating dtype, promoted to at least float32
(bfloat16 / float16 / integer features are computed in float32; float64 needs
``jax.enable_x64``). Matrix products use ``Precision.HIGHEST``, so GPUs and TPUs do not
silently drop to TF32 / bfloat16 passes: the squared distances ``|a|^2 + |b|^2 - 2 a.b`` and
the differences of kernel means that these metrics consist of lose digits to cancellation,
and a reduced-precision product would lose most of them.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from genjax._checks import check_int
from genjax._checks import is_concrete as _is_concrete

__all__ = [
    "DensityCoverage",
    "MeanStd",
    "PrecisionRecall",
    "density_coverage",
    "inception_score",
    "kernel_inception_distance",
    "knn_radii",
    "polynomial_kernel_mmd2",
    "precision_recall",
]

_HIGHEST = lax.Precision.HIGHEST


class MeanStd(NamedTuple):
    """A metric's mean over subsets (or splits) and the standard deviation of those values.

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import eval as ev
      >>> score = ev.inception_score(jnp.eye(4), num_splits=1)  # a MeanStd
      >>> round(float(score.mean), 4), float(score.std)
      (4.0, 0.0)
    """

    mean: jax.Array
    std: jax.Array


class PrecisionRecall(NamedTuple):
    """Improved precision and recall (Kynkäänniemi et al., 2019), each in ``[0, 1]``, as
    :func:`precision_recall` returns them.

    Example:
      >>> from genjax import eval as ev
      >>> precision, recall = ev.PrecisionRecall(precision=0.5, recall=1.0)  # unpacks in order
      >>> precision, recall
      (0.5, 1.0)
    """

    precision: jax.Array
    recall: jax.Array


class DensityCoverage(NamedTuple):
    """Density (``>= 0``, about 1 when the distributions match) and coverage (``[0, 1]``), as
    :func:`density_coverage` returns them.

    Example:
      >>> from genjax import eval as ev
      >>> ev.DensityCoverage(density=1.0, coverage=0.5)._asdict()  # fields by name
      {'density': 1.0, 'coverage': 0.5}
    """

    density: jax.Array
    coverage: jax.Array


# --- argument checks (Python, at call or trace time) -------------------------------------


def _check_int(fn: str, name: str, value: Any, minimum: int = 1) -> int:
    return check_int(f"{fn}: {name}", value, minimum)


def _promote(*arrays: jax.Array) -> list[jax.Array]:
    """The arrays in their common floating dtype, at least float32 (traced, inside the jits)."""
    dtype = jnp.promote_types(jnp.result_type(*arrays), jnp.float32)
    return [jnp.asarray(a, dtype) for a in arrays]


@jax.jit
def _all_finite_jit(a):
    return jnp.all(jnp.isfinite(a))


def _as_array(x: Any) -> np.ndarray | jax.Array:
    # NumPy inputs stay NumPy until the compiled function takes them: their value checks run
    # in NumPy, without compiling an XLA check for every new shape.
    return x if isinstance(x, jax.Array | np.ndarray) else np.asarray(x)


def _all_finite(a: np.ndarray | jax.Array) -> bool:
    """Whether every value is finite; ``True`` for traced values, which cannot be read."""
    if isinstance(a, np.ndarray):
        return bool(np.isfinite(a).all())
    return not _is_concrete(a) or bool(_all_finite_jit(a))


def _features(fn: str, name: str, x: Any, min_rows: int) -> np.ndarray | jax.Array:
    a = _as_array(x)
    if a.ndim != 2:
        raise ValueError(f"{fn}: {name} must be [N, D] features, got shape {tuple(a.shape)}")
    if not (jnp.issubdtype(a.dtype, jnp.floating) or jnp.issubdtype(a.dtype, jnp.integer)):
        raise ValueError(f"{fn}: {name} must be real numbers, got dtype {a.dtype}")
    if a.shape[0] < min_rows:
        raise ValueError(f"{fn}: {name} needs at least {min_rows} rows, got shape {a.shape}")
    if a.shape[1] < 1:
        raise ValueError(f"{fn}: {name} needs at least one feature column, got shape {a.shape}")
    if not _all_finite(a):
        raise ValueError(f"{fn}: {name} contains non-finite values (NaN or inf)")
    return a


def _pair(fn: str, real: Any, generated: Any, min_real: int, min_generated: int):
    x = _features(fn, "real", real, min_real)
    y = _features(fn, "generated", generated, min_generated)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"{fn}: real and generated must have the same feature dimension D, "
            f"got real {tuple(x.shape)} and generated {tuple(y.shape)}"
        )
    return x, y


# --- blocked pairwise helpers (traced) ---------------------------------------------------


def _row_blocks(x: jax.Array, chunk: int) -> tuple[jax.Array, jax.Array]:
    """``x [n, D]`` as zero-padded ``[n_blocks, chunk, D]`` blocks, and their row indices."""
    n = x.shape[0]
    blocks = -(-n // chunk)
    padded = jnp.pad(x, ((0, blocks * chunk - n), (0, 0)))
    return padded.reshape(blocks, chunk, x.shape[1]), jnp.arange(blocks * chunk).reshape(
        blocks, chunk
    )


def _cubic_kernel_sum(a: jax.Array, b: jax.Array, chunk: int, exclude_diagonal: bool):
    """``sum_{i, j} [(a_i . b_j / D + 1)^3 - 1]``, without the ``i == j`` terms when asked.

    The kernel enters less its constant 1: ``MMD^2_u`` is unchanged when a constant is added to
    the kernel (its three means each move by it, ``c + c - 2c = 0``), and without it the sums
    keep more of their float32 digits where ``a . b / D`` is small, as for centred features.
    Rows of ``a`` are taken ``chunk`` at a time; each block's row sums are kept and added at
    the end (a two-level sum, which loses fewer digits than one running float32 total).
    """
    n, d = a.shape
    cols = jnp.arange(b.shape[0])

    def block(_, inputs):
        rows, index = inputs
        s = jnp.matmul(rows, b.T, precision=_HIGHEST) / d
        k = s * (s * (s + 3.0) + 3.0)  # (s + 1)^3 - 1
        # Zero padding rows give s = 0 and so add 0 already; the mask does not rely on that.
        keep = (index < n)[:, None]
        if exclude_diagonal:
            keep = keep & (index[:, None] != cols[None, :])
        return None, jnp.sum(jnp.where(keep, k, 0.0), axis=1)

    _, row_sums = lax.scan(block, None, _row_blocks(a, chunk))
    return jnp.sum(row_sums)


def _mmd2(x: jax.Array, y: jax.Array, chunk: int) -> jax.Array:
    n, m = x.shape[0], y.shape[0]
    kxx = _cubic_kernel_sum(x, x, min(chunk, n), exclude_diagonal=True)
    kyy = _cubic_kernel_sum(y, y, min(chunk, m), exclude_diagonal=True)
    kxy = _cubic_kernel_sum(x, y, min(chunk, n), exclude_diagonal=False)
    return kxx / (n * (n - 1)) + kyy / (m * (m - 1)) - 2.0 * kxy / (n * m)


def _squared_distances(rows: jax.Array, others: jax.Array, others_sq: jax.Array) -> jax.Array:
    """``|rows_i - others_j|^2`` as ``|r|^2 + |o|^2 - 2 r.o``, clipped at 0 against rounding."""
    rows_sq = jnp.sum(rows * rows, axis=1)
    cross = jnp.matmul(rows, others.T, precision=_HIGHEST)
    return jnp.maximum(rows_sq[:, None] + others_sq[None, :] - 2.0 * cross, 0.0)


def _kth_neighbour_sq(x: jax.Array, k: int, chunk: int) -> jax.Array:
    """Squared distance from each row of ``x`` to its ``k``-th nearest other row: ``[N]``."""
    n = x.shape[0]
    x_sq = jnp.sum(x * x, axis=1)
    cols = jnp.arange(n)

    def block(_, inputs):
        rows, index = inputs
        d2 = _squared_distances(rows, x, x_sq)
        d2 = jnp.where(index[:, None] == cols[None, :], jnp.inf, d2)  # not its own neighbour
        # k - 1 rounds of "remove the nearest" and then a minimum: 2k passes over the block.
        # (lax.top_k sorts on the CPU: 25 times slower for a 1024 x 50000 block and k = 3.)
        # One entry goes per round, so a tie (a duplicate row) still counts k times.
        for _ in range(k - 1):
            nearest = jnp.argmin(d2, axis=1)
            d2 = jnp.where(cols[None, :] == nearest[:, None], jnp.inf, d2)
        return None, jnp.min(d2, axis=1)

    _, radii = lax.scan(block, None, _row_blocks(x, chunk))
    return radii.reshape(-1)[:n]


def _ball_pass(
    real: jax.Array,
    generated: jax.Array,
    real_r2: jax.Array,
    generated_r2: jax.Array | None,
    chunk: int,
):
    """One blocked pass over the generated rows against all real rows.

    Returns ``counts [M]`` (how many real balls ``B(x_i, r_i)`` hold ``y_j``), ``covered [N]``
    (whether the ball around ``x_i`` holds some ``y_j``) and, when ``generated_r2`` is given,
    ``recalled [N]`` (whether ``x_i`` lies in some generated ball ``B(y_j, r'_j)``).
    """
    n, m = real.shape[0], generated.shape[0]
    real_sq = jnp.sum(real * real, axis=1)
    blocks, index = _row_blocks(generated, chunk)
    if generated_r2 is None:
        gen_r2_blocks = jnp.zeros(index.shape, real.dtype)
    else:
        gen_r2_blocks = jnp.pad(generated_r2, (0, index.size - m)).reshape(index.shape)

    def block(carry, inputs):
        covered, recalled = carry
        rows, row_index, rows_r2 = inputs
        valid = (row_index < m)[:, None]
        d2 = _squared_distances(rows, real, real_sq)  # [chunk, N]
        in_real_ball = (d2 <= real_r2[None, :]) & valid
        covered = covered | jnp.any(in_real_ball, axis=0)
        if generated_r2 is not None:
            recalled = recalled | jnp.any((d2 <= rows_r2[:, None]) & valid, axis=0)
        return (covered, recalled), jnp.sum(in_real_ball, axis=1, dtype=jnp.int32)

    start = (jnp.zeros((n,), bool), jnp.zeros((n,), bool))
    (covered, recalled), counts = lax.scan(block, start, (blocks, index, gen_r2_blocks))
    return counts.reshape(-1)[:m], covered, recalled


# --- compiled implementations ------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("chunk",))
def _mmd2_jit(x, y, chunk):
    return _mmd2(*_promote(x, y), chunk)


@functools.partial(jax.jit, static_argnames=("num_subsets", "subset_size", "chunk"))
def _kid_jit(x, y, rng, num_subsets, subset_size, chunk):
    x, y = _promote(x, y)

    def one_subset(key):
        key_x, key_y = jax.random.split(key)
        ix = jax.random.choice(key_x, x.shape[0], (subset_size,), replace=False)
        iy = jax.random.choice(key_y, y.shape[0], (subset_size,), replace=False)
        return _mmd2(x[ix], y[iy], chunk)

    values = lax.map(one_subset, jax.random.split(rng, num_subsets))
    return MeanStd(jnp.mean(values), jnp.std(values))


@functools.partial(jax.jit, static_argnames=("k", "chunk"))
def _radii_jit(x, k, chunk):
    (x,) = _promote(x)
    return jnp.sqrt(_kth_neighbour_sq(x, k, chunk))


@functools.partial(jax.jit, static_argnames=("k", "chunk"))
def _precision_recall_jit(x, y, k, chunk):
    x, y = _promote(x, y)
    real_r2 = _kth_neighbour_sq(x, k, min(chunk, x.shape[0]))
    gen_r2 = _kth_neighbour_sq(y, k, min(chunk, y.shape[0]))
    counts, _, recalled = _ball_pass(x, y, real_r2, gen_r2, min(chunk, y.shape[0]))
    dtype = x.dtype
    return PrecisionRecall(jnp.mean(counts > 0, dtype=dtype), jnp.mean(recalled, dtype=dtype))


@functools.partial(jax.jit, static_argnames=("k", "chunk"))
def _density_coverage_jit(x, y, k, chunk):
    x, y = _promote(x, y)
    real_r2 = _kth_neighbour_sq(x, k, min(chunk, x.shape[0]))
    counts, covered, _ = _ball_pass(x, y, real_r2, None, min(chunk, y.shape[0]))
    dtype = x.dtype
    return DensityCoverage(jnp.mean(counts, dtype=dtype) / k, jnp.mean(covered, dtype=dtype))


@jax.jit
def _probability_summary_jit(p):
    sums = jnp.sum(p, axis=1)
    return jnp.min(p), jnp.min(sums), jnp.max(sums)


@functools.partial(jax.jit, static_argnames=("from_logits", "num_splits"))
def _inception_score_jit(predictions, from_logits, num_splits):
    (predictions,) = _promote(predictions)
    m = predictions.shape[0]
    # Split s holds rows [s M // S, (s + 1) M // S), as in Salimans et al.'s code.
    bounds = [s * m // num_splits for s in range(num_splits + 1)]
    sizes = np.diff(bounds)
    segment = jnp.asarray(np.repeat(np.arange(num_splits), sizes))
    if from_logits:
        log_p = jax.nn.log_softmax(predictions, axis=1)
        p = jnp.exp(log_p)
        p_log_p = p * log_p
    else:
        p = predictions
        p_log_p = jax.scipy.special.xlogy(p, p)
    sizes = jnp.asarray(sizes, p.dtype)
    marginal = jax.ops.segment_sum(p, segment, num_splits) / sizes[:, None]  # p(y), [S, C]
    kl = jnp.sum(p_log_p - jax.scipy.special.xlogy(p, marginal[segment]), axis=1)  # [M]
    scores = jnp.exp(jax.ops.segment_sum(kl, segment, num_splits) / sizes)
    return MeanStd(jnp.mean(scores), jnp.std(scores))


# --- public API --------------------------------------------------------------------------


def polynomial_kernel_mmd2(x: Any, y: Any, *, chunk_size: int = 1024) -> jax.Array:
    """Unbiased estimate of ``MMD^2`` between two whole sets with the cubic polynomial kernel.

    With ``k(a, b) = (a . b / D + 1)^3`` (the kernel of the kernel inception distance,
    Bińkowski et al., 2018, "Demystifying MMD GANs"), the U-statistic

        MMD^2_u = 1/(n(n-1)) sum_{i != i'} k(x_i, x_i') + 1/(m(m-1)) sum_{j != j'} k(y_j, y_j')
                  - 2/(n m) sum_{i, j} k(x_i, y_j)

    (Gretton et al., 2012, "A Kernel Two-Sample Test", Lemma 6) is an unbiased estimate of
    the population ``E k(x, x') + E k(y, y') - 2 E k(x, y)``; it can be negative when the two
    distributions are close.

    Args:
      x: ``[n, D]`` real-valued features, ``n >= 2``.
      y: ``[m, D]`` real-valued features, ``m >= 2``, the same ``D``.
      chunk_size: rows of the kernel matrices computed at once (peak memory about
        ``chunk_size * max(n, m)`` values). The result does not depend on it.

    Returns:
      A scalar in the compute dtype (float32, or float64 for float64 inputs under x64).

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import eval as ev
      >>> # D = 1: k(0, 0) = 1, k(1, 1) = 8, k(0, 1) = 1, so MMD^2 = 1 + 8 - 2 * 1.
      >>> float(ev.polynomial_kernel_mmd2(jnp.zeros((2, 1)), jnp.ones((2, 1))))
      7.0
    """
    fn = "polynomial_kernel_mmd2"
    chunk = _check_int(fn, "chunk_size", chunk_size)
    a = _features(fn, "x", x, 2)
    b = _features(fn, "y", y, 2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{fn}: x and y must have the same feature dimension D, "
            f"got x {tuple(a.shape)} and y {tuple(b.shape)}"
        )
    chunk = min(chunk, max(a.shape[0], b.shape[0]))  # one compiled version for larger chunks
    return _mmd2_jit(a, b, chunk)


def kernel_inception_distance(
    real: Any,
    generated: Any,
    rng: jax.Array,
    *,
    num_subsets: int = 100,
    subset_size: int = 1000,
    chunk_size: int = 1024,
) -> MeanStd:
    """Kernel inception distance: the cubic-kernel ``MMD^2_u`` averaged over random subsets.

    Bińkowski et al. (2018, "Demystifying MMD GANs", section 4) define
    ``KID = MMD^2_u(real, generated)`` with ``k(a, b) = (a . b / D + 1)^3`` (see
    :func:`polynomial_kernel_mmd2`) and report it averaged over subsets: for each of
    ``num_subsets`` subsets, ``s = min(subset_size, N, M)`` rows are drawn from each set
    without replacement (independently per subset, as in the reference implementations), and
    the mean and the standard deviation of the ``num_subsets`` estimates are returned. Each
    subset's estimate is unbiased, so the mean is too; two samples of the same distribution
    give values around 0 (negative ones included). Published KIDs are often quoted ``x 1000``.

    Args:
      real: ``[N, D]`` real-valued features of real data, ``N >= 2``.
      generated: ``[M, D]`` features of generated samples, ``M >= 2``, the same ``D``.
      rng: a ``jax.random`` key; subset ``t`` uses ``jax.random.split(rng, num_subsets)[t]``.
      num_subsets: number of subsets (100 in the references).
      subset_size: rows per subset before the cap at ``min(N, M)`` (1000 in the references).
      chunk_size: rows of each subset's kernel matrices computed at once.

    Returns:
      ``MeanStd(mean, std)``, scalars in the compute dtype; ``std`` is the population
      standard deviation (``ddof=0``) of the subset estimates, as torch-fidelity reports it.
      It describes the spread of one subset's estimate, not the standard error of the mean
      (the subsets overlap).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from genjax import eval as ev
      >>> kid = ev.kernel_inception_distance(jnp.zeros((4, 1)), jnp.ones((4, 1)), jax.random.key(0),
      ...                                    num_subsets=3, subset_size=2)
      >>> float(kid.mean), float(kid.std)  # every subset gives the MMD^2 of 0s against 1s
      (7.0, 0.0)
    """
    fn = "kernel_inception_distance"
    num_subsets = _check_int(fn, "num_subsets", num_subsets)
    subset_size = _check_int(fn, "subset_size", subset_size, minimum=2)
    chunk = _check_int(fn, "chunk_size", chunk_size)
    x, y = _pair(fn, real, generated, 2, 2)
    key = rng if isinstance(rng, jax.Array) else jnp.asarray(rng)
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    if not ((typed and key.shape == ()) or (key.dtype == jnp.uint32 and key.shape == (2,))):
        raise ValueError(
            f"{fn}: rng must be one jax.random key, got shape {key.shape} dtype {key.dtype}"
        )
    size = min(subset_size, x.shape[0], y.shape[0])
    return _kid_jit(x, y, key, num_subsets, size, min(chunk, size))


def inception_score(
    predictions: Any, *, from_logits: bool = False, num_splits: int = 10
) -> MeanStd:
    """Inception score ``exp(E_x KL(p(y|x) || p(y)))``, mean and std over splits.

    Salimans et al. (2016, "Improved Techniques for Training GANs", section 4): the ``M``
    rows are cut into ``num_splits`` consecutive splits (split ``s`` holds rows
    ``[s M // S, (s + 1) M // S)``, as in the paper's code); within a split, ``p(y)`` is the
    mean of its rows ``p(y|x)`` and the score is
    ``exp(mean_x sum_c p(c|x) (log p(c|x) - log p(c)))``, with ``0 log 0 = 0``. It lies in
    ``[1, C]``: 1 when every row is the same distribution, ``C`` when the rows are one-hot and
    the classes equally frequent.

    Args:
      predictions: ``[M, C]`` class probabilities (rows ``>= 0`` summing to 1, checked to
        ``max(1e-3, eps)`` of the dtype on concrete arrays), or logits with
        ``from_logits=True`` (turned into probabilities by a softmax over ``C``).
      from_logits: whether ``predictions`` are logits.
      num_splits: ``1 <= S <= M`` splits (10 in the paper).

    Returns:
      ``MeanStd(mean, std)`` of the ``S`` split scores (``std`` with ``ddof=0``, as in the
      paper's code), scalars in the compute dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import eval as ev
      >>> float(ev.inception_score(jnp.full((4, 4), 0.25), num_splits=2).mean)  # no information
      1.0
      >>> round(float(ev.inception_score(jnp.eye(4), num_splits=1).mean), 4)  # C confident classes
      4.0
    """
    fn = "inception_score"
    if not isinstance(from_logits, bool):
        raise ValueError(f"{fn}: from_logits must be a bool, got {from_logits!r}")
    num_splits = _check_int(fn, "num_splits", num_splits)
    p = _as_array(predictions)
    if p.ndim != 2 or p.shape[1] < 1:
        raise ValueError(f"{fn}: predictions must be [M, C] (C >= 1), got shape {p.shape}")
    if not jnp.issubdtype(p.dtype, jnp.floating):
        raise ValueError(f"{fn}: predictions must be floating point, got dtype {p.dtype}")
    if num_splits > p.shape[0]:
        raise ValueError(
            f"{fn}: num_splits must be <= M = {p.shape[0]} (rows of predictions), got {num_splits}"
        )
    if not _all_finite(p):
        raise ValueError(f"{fn}: predictions contains non-finite values (NaN or inf)")
    if not from_logits and (isinstance(p, np.ndarray) or _is_concrete(p)):
        if isinstance(p, np.ndarray):
            sums = p.sum(axis=1)
            smallest, low, high = p.min(), sums.min(), sums.max()
        else:
            smallest, low, high = _probability_summary_jit(p)
        smallest, low, high = float(smallest), float(low), float(high)
        # A distribution rounded to the input's dtype sums to 1 within that dtype's epsilon.
        tol = max(1e-3, float(jnp.finfo(p.dtype).eps))
        if smallest < 0 or abs(low - 1) > tol or abs(high - 1) > tol:
            raise ValueError(
                f"{fn}: predictions must be probabilities (rows >= 0 summing to 1; pass "
                f"from_logits=True for logits), got min {smallest:.3g} and row sums in "
                f"[{low:.6g}, {high:.6g}]"
            )
    return _inception_score_jit(p, from_logits, num_splits)


def knn_radii(features: Any, *, k: int = 3, chunk_size: int = 1024) -> jax.Array:
    """Distance from each row to its ``k``-th nearest neighbour in the same set, itself excluded.

    ``r_i = ||x_i - NN_k(x_i)||_2`` over ``{x_j : j != i}``, the radius of the ball that
    approximates the data manifold around ``x_i`` in Kynkäänniemi et al. (2019) and Naeem
    et al. (2020). A duplicate of ``x_i`` is a neighbour at distance 0.

    Args:
      features: ``[N, D]`` real-valued features, ``N > k``.
      k: the neighbour rank, ``1 <= k < N`` (3 in both papers).
      chunk_size: rows whose ``N`` distances are computed at once.

    Returns:
      ``[N]`` Euclidean distances in the compute dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import eval as ev
      >>> ev.knn_radii(jnp.array([[0.0], [1.0], [3.0], [6.0]]), k=1)  # to the nearest other row
      Array([1., 1., 2., 3.], dtype=float32)
    """
    fn = "knn_radii"
    k = _check_int(fn, "k", k)
    chunk = _check_int(fn, "chunk_size", chunk_size)
    x = _features(fn, "features", features, k + 1)
    return _radii_jit(x, k, min(chunk, x.shape[0]))


def precision_recall(
    real: Any, generated: Any, *, k: int = 3, chunk_size: int = 1024
) -> PrecisionRecall:
    """Improved precision and recall (Kynkäänniemi et al., 2019, "Improved Precision and
    Recall Metric for Assessing Generative Models").

    With ``r_i`` the ``k``-NN radius of real ``x_i`` among the real rows and ``r'_j`` that of
    generated ``y_j`` among the generated rows (:func:`knn_radii`),

        precision = (1/M) sum_j 1[exists i: ||y_j - x_i|| <= r_i]
        recall    = (1/N) sum_i 1[exists j: ||x_i - y_j|| <= r'_j]

    i.e. the fraction of generated samples inside the estimated real manifold (closed balls),
    and the fraction of real samples inside the estimated generated manifold.

    Args:
      real: ``[N, D]`` features of real data, ``N > k``.
      generated: ``[M, D]`` features of generated samples, ``M > k``, the same ``D``.
      k: the neighbour rank (3 in the paper).
      chunk_size: rows whose distances to the other set are computed at once.

    Returns:
      ``PrecisionRecall(precision, recall)``, scalars in ``[0, 1]`` in the compute dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import eval as ev
      >>> real = jnp.array([[0.0], [1.0], [2.0], [3.0]])  # 1-NN radii 1
      >>> generated = jnp.array([[0.5], [10.0]])  # 1-NN radii 9.5
      >>> result = ev.precision_recall(real, generated, k=1)  # 10 is off the real manifold
      >>> float(result.precision), float(result.recall)
      (0.5, 1.0)
    """
    fn = "precision_recall"
    k = _check_int(fn, "k", k)
    chunk = _check_int(fn, "chunk_size", chunk_size)
    x, y = _pair(fn, real, generated, k + 1, k + 1)
    return _precision_recall_jit(x, y, k, min(chunk, max(x.shape[0], y.shape[0])))


def density_coverage(
    real: Any, generated: Any, *, k: int = 3, chunk_size: int = 1024
) -> DensityCoverage:
    """Density and coverage of Naeem et al. (2020, "Reliable Fidelity and Diversity Metrics
    for Generative Models").

    With ``r_i`` the ``k``-NN radius of real ``x_i`` among the real rows (:func:`knn_radii`)
    and ``B_i`` the closed ball of radius ``r_i`` around ``x_i``,

        density  = 1/(k M) sum_j sum_i 1[y_j in B_i]
        coverage = (1/N) sum_i 1[exists j: y_j in B_i]

    Only real balls are used, so outlying real samples do not inflate either value. Density
    is about 1 when the generated samples follow the real distribution (it is ``(k + 1)/k``
    when ``generated`` is ``real`` itself, every ball holding its centre and its ``k``
    neighbours) and can exceed 1; coverage lies in ``[0, 1]``.

    Args:
      real: ``[N, D]`` features of real data, ``N > k``.
      generated: ``[M, D]`` features of generated samples, ``M >= 1``, the same ``D``.
      k: the neighbour rank (3 here, as for :func:`precision_recall`; the paper uses 5).
      chunk_size: rows whose distances to the other set are computed at once.

    Returns:
      ``DensityCoverage(density, coverage)``, scalars in the compute dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> from genjax import eval as ev
      >>> real = jnp.array([[0.0], [1.0], [2.0], [3.0]])  # 1-NN radii 1
      >>> generated = jnp.array([[0.5], [10.0]])  # 0.5 lies in the balls of 0 and 1
      >>> result = ev.density_coverage(real, generated, k=1)
      >>> float(result.density), float(result.coverage)  # 2 / (1 * 2) and 2 / 4
      (1.0, 0.5)
    """
    fn = "density_coverage"
    k = _check_int(fn, "k", k)
    chunk = _check_int(fn, "chunk_size", chunk_size)
    x, y = _pair(fn, real, generated, k + 1, 1)
    return _density_coverage_jit(x, y, k, min(chunk, max(x.shape[0], y.shape[0])))
