"""Fréchet distance between Gaussians fitted to two sets of features.

For ``N(m1, C1)`` and ``N(m2, C2)`` the squared 2-Wasserstein (Fréchet) distance is

    d^2 = ||m1 - m2||^2 + tr(C1 + C2 - 2 (C1^{1/2} C2 C1^{1/2})^{1/2})

(Dowson & Landau, 1982). Heusel et al. (2017) apply it to Inception features of real and
generated images ("FID"); this library applies it to the penultimate-layer features of its
own small classifier (:mod:`genjax.eval.classifier`), so the numbers are comparable across
runs of this library, not with published FIDs.

The trace of the matrix square root uses the symmetric form: with ``S = C1^{1/2}`` (the
symmetric PSD root, from an eigendecomposition), ``C1^{1/2} C2 C1^{1/2}`` is symmetric PSD,
so ``tr((S C2 S)^{1/2}) = sum_i sqrt(lambda_i(S C2 S))``; this equals the
``tr(sqrtm(C1 C2))`` of the FID reference code but needs no non-symmetric matrix root and no
complex arithmetic. Everything runs in float64 NumPy on the host; tiny negative eigenvalues
from rounding are clipped to 0.

Note the estimate's bias: with ``N`` samples per set in ``D`` dimensions the plug-in distance
of two sets drawn from the *same* distribution is positive, of order ``tr(C) D / N``; compare
a model's distance with a reference distance computed at the same sample sizes (for example
the train-vs-test distance beside the samples-vs-test one).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["fit_gaussian", "frechet_distance", "gaussian_frechet_distance"]


def _features(name: str, x: Any, fn: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{fn}: {name} must be [N, D] features, got shape {a.shape}")
    if a.shape[0] < 2:
        raise ValueError(
            f"{fn}: {name} needs at least 2 examples to fit a covariance, got {a.shape[0]}"
        )
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{fn}: {name} must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{fn}: {name} contains non-finite values")
    return a


def fit_gaussian(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of ``features``.

    Args:
      features: ``[N, D]`` numeric array, ``N >= 2``.

    Returns:
      ``(mean [D], cov [D, D])`` in float64; ``cov`` uses the ``1 / (N - 1)`` normalisation.

    Example:
      >>> from genjax import eval as ev
      >>> mean, cov = ev.fit_gaussian([[0.0], [2.0]])
      >>> mean, cov  # unbiased: ((0 - 1)^2 + (2 - 1)^2) / (2 - 1)
      (array([1.]), array([[2.]]))
    """
    x = _features("features", features, "fit_gaussian")
    mean = x.mean(axis=0)
    centred = x - mean
    cov = centred.T @ centred / (x.shape[0] - 1)
    return mean, cov


def _nonnegative_spectrum(values: np.ndarray) -> np.ndarray:
    """Eigenvalues of a PSD matrix with rounding noise set to 0.

    ``eigh`` returns the zero eigenvalues of a rank-deficient matrix as values of order
    ``D * eps * lambda_max`` of either sign; their square roots (about 1e-8) would otherwise
    add up into the trace of the root. Values below that noise floor are exact zeros.
    """
    if values.size == 0:
        return values
    floor = values.size * np.finfo(values.dtype).eps * max(float(np.max(np.abs(values))), 0.0)
    return np.where(values > floor, values, 0.0)


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(cov)
    return (vectors * np.sqrt(_nonnegative_spectrum(values))) @ vectors.T


def _check_gaussian(fn: str, which: str, mean: Any, cov: Any) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(mean, dtype=np.float64)
    c = np.asarray(cov, dtype=np.float64)
    if m.ndim != 1:
        raise ValueError(f"{fn}: mean{which} must be a vector [D], got shape {m.shape}")
    d = m.shape[0]
    if c.shape != (d, d):
        raise ValueError(
            f"{fn}: cov{which} must be [D, D] = ({d}, {d}) (mean{which} has D={d}), "
            f"got shape {c.shape}"
        )
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(c))):
        raise ValueError(f"{fn}: mean{which} and cov{which} must be finite")
    scale = max(float(np.max(np.abs(c))), 1e-300) if c.size else 1.0
    if not np.allclose(c, c.T, rtol=1e-6, atol=1e-9 * scale):
        raise ValueError(f"{fn}: cov{which} must be symmetric")
    c = 0.5 * (c + c.T)
    if c.size and np.linalg.eigvalsh(c)[0] < -1e-8 * scale:
        raise ValueError(
            f"{fn}: cov{which} must be positive semi-definite, its smallest eigenvalue is "
            f"{np.linalg.eigvalsh(c)[0]:.3g}"
        )
    return m, c


def gaussian_frechet_distance(mean1: Any, cov1: Any, mean2: Any, cov2: Any) -> float:
    """Squared Fréchet distance between ``N(mean1, cov1)`` and ``N(mean2, cov2)``.

    ``||m1 - m2||^2 + tr(C1) + tr(C2) - 2 tr((C1^{1/2} C2 C1^{1/2})^{1/2})`` (see the module
    docstring). In one dimension this is ``(m1 - m2)^2 + (s1 - s2)^2``.

    Args:
      mean1: ``[D]`` mean of the first Gaussian.
      cov1: ``[D, D]`` symmetric positive semi-definite covariance.
      mean2: ``[D]`` mean of the second Gaussian.
      cov2: ``[D, D]`` symmetric positive semi-definite covariance.

    Returns:
      The distance (a Python float, ``>= 0``; values within rounding of 0 are clipped to 0).

    Raises:
      ValueError: shapes that do not agree, non-finite values, a covariance that is not
        symmetric or not positive semi-definite.

    Example:
      >>> from genjax import eval as ev
      >>> # One dimension: (m1 - m2)^2 + (s1 - s2)^2 = 3^2 + (1 - 2)^2.
      >>> ev.gaussian_frechet_distance([0.0], [[1.0]], [3.0], [[4.0]])
      10.0
    """
    fn = "gaussian_frechet_distance"
    m1, c1 = _check_gaussian(fn, "1", mean1, cov1)
    m2, c2 = _check_gaussian(fn, "2", mean2, cov2)
    if m1.shape != m2.shape:
        raise ValueError(
            f"{fn}: both Gaussians must have the same dimension, got D={m1.shape[0]} and "
            f"D={m2.shape[0]}"
        )
    s1 = _psd_sqrt(c1)
    middle = s1 @ c2 @ s1
    middle = 0.5 * (middle + middle.T)
    trace_root = float(np.sum(np.sqrt(_nonnegative_spectrum(np.linalg.eigvalsh(middle)))))
    distance = float(np.sum((m1 - m2) ** 2) + np.trace(c1) + np.trace(c2) - 2.0 * trace_root)
    return max(distance, 0.0)


def frechet_distance(features1: Any, features2: Any) -> float:
    """Fréchet distance between Gaussians fitted (:func:`fit_gaussian`) to two feature sets.

    Args:
      features1: ``[N1, D]`` features, ``N1 >= 2`` (e.g. of generated samples).
      features2: ``[N2, D]`` features, ``N2 >= 2``, the same ``D`` (e.g. of test images).

    Returns:
      The distance as a Python float (biased upwards at small ``N``; see the module note).

    Example:
      >>> from genjax import eval as ev
      >>> # Means 0 and 5, both with variance 1: the distance is 5^2.
      >>> ev.frechet_distance([[-1.0], [0.0], [1.0]], [[4.0], [5.0], [6.0]])
      25.0
    """
    fn = "frechet_distance"
    a = _features("features1", features1, fn)
    b = _features("features2", features2, fn)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{fn}: features1 and features2 must have the same dimension D, "
            f"got {a.shape[1]} and {b.shape[1]}"
        )
    return gaussian_frechet_distance(*fit_gaussian(a), *fit_gaussian(b))
