"""Spectral features of speech and the distortion measure, with NumPy and SciPy only.

* :func:`log_mel` — short-time Fourier transform (Hann window), mel filterbank (triangular
  filters on the HTK mel scale, ``mel(f) = 2595 log10(1 + f / 700)``), natural log of the
  band *amplitudes* (``0.5 * log`` of the band power, floored).
* :func:`mel_cepstrum` — the cepstrum on the mel axis: with ``L_0 .. L_{M-1}`` the log-mel
  amplitudes of a frame (bands at warped frequencies ``w_m = pi (m + 1/2) / M``), the
  coefficients of ``L(w) = c_0 + 2 sum_{n>=1} c_n cos(n w)``, i.e.
  ``c_n = (1/M) sum_m L_m cos(pi n (m + 1/2) / M)`` (a DCT-II scaled by ``1 / (2M)``), the
  convention of mel-cepstral analysis (``c_0`` is the mean log amplitude), truncated to
  ``num_ceps`` coefficients; :func:`log_mel_from_cepstrum` is its inverse (exact when no
  coefficient was dropped, a smoothed envelope otherwise).
* :func:`mcd` — mel-cepstral distortion between aligned frames, in dB::

      MCD = (10 / ln 10) * sqrt(2 * sum_{d=1}^{D} (c_d - c'_d)^2)

  averaged over frames, ``c_0`` (the energy) left out (Kubichek, 1993; the usual form in
  voice-conversion papers, e.g. Toda et al., 2007).
* :func:`dtw` — dynamic time warping (steps (1,0), (0,1), (1,1), Euclidean frame cost) and
  :func:`mcd_dtw`, the MCD along the DTW path, which compares two utterances of one sentence.

These cepstra are MFCC-like (a DCT of a mel filterbank), not the all-pass-warped mel-cepstra
of SPTK's ``mcep`` that voice-conversion papers usually report MCD on; the formula is the same,
the numbers are comparable between systems measured here, not with published tables.

References:
  R. Kubichek, "Mel-cepstral distance measure for objective speech quality assessment",
  IEEE PACRIM 1993.
  T. Toda, A. W. Black, K. Tokuda, "Voice Conversion Based on Maximum-Likelihood Estimation
  of Spectral Parameter Trajectory", IEEE TASLP 15(8), 2007.
  H. Sakoe, S. Chiba, "Dynamic programming algorithm optimization for spoken word
  recognition", IEEE TASSP 26(1), 1978.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
import scipy.signal

__all__ = [
    "dtw",
    "frame_energy_db",
    "hz_to_mel",
    "log_mel",
    "log_mel_from_cepstrum",
    "mcd",
    "mcd_dtw",
    "mel_cepstrum",
    "mel_filterbank",
    "mel_to_hz",
    "trim_silence",
]

#: (10 / ln 10) * sqrt(2): the dB factor of the mel-cepstral distortion.
MCD_FACTOR = 10.0 / math.log(10.0) * math.sqrt(2.0)


def hz_to_mel(f):
    """HTK mel scale: ``2595 log10(1 + f / 700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def mel_to_hz(m):
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """Triangular mel filters ``[n_mels, n_fft // 2 + 1]`` (peak 1, on the FFT bin grid).

    Filter ``i`` rises from mel point ``i`` to ``i + 1`` and falls to ``i + 2``, with
    ``n_mels + 2`` points equally spaced on the mel scale between ``fmin`` and ``fmax``
    (default: Nyquist).
    """
    fmax = sample_rate / 2.0 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sample_rate / 2.0:
        raise ValueError(
            f"mel_filterbank: need 0 <= fmin < fmax <= sample_rate / 2 = {sample_rate / 2}, "
            f"got fmin={fmin}, fmax={fmax}"
        )
    freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    return np.clip(np.minimum(rising, falling), 0.0, None)


def _frames(signal: np.ndarray, sample_rate: int, win_s: float, hop_s: float, n_fft: int):
    win = round(win_s * sample_rate)
    hop = round(hop_s * sample_rate)
    if win > n_fft:
        raise ValueError(f"the window ({win} samples) is longer than n_fft={n_fft}")
    if signal.size < win:
        signal = np.pad(signal, (0, win - signal.size))
    count = 1 + (signal.size - win) // hop
    index = np.arange(win)[None, :] + hop * np.arange(count)[:, None]
    return signal[index] * scipy.signal.get_window("hann", win, fftbins=True)[None, :]


def log_mel(
    signal: np.ndarray,
    sample_rate: int,
    *,
    n_mels: int = 40,
    n_fft: int = 1024,
    win_s: float = 0.025,
    hop_s: float = 0.010,
    fmin: float = 0.0,
    fmax: float | None = None,
    floor: float = 1e-5,
) -> np.ndarray:
    """Natural-log mel-band amplitudes ``[T, n_mels]`` of a mono signal.

    Frames of ``win_s`` seconds every ``hop_s`` seconds (no padding at the ends), a Hann
    window, ``|FFT|^2`` on ``n_fft`` points, the mel filterbank, then
    ``0.5 * log(max(power, floor^2))``.
    """
    x = np.asarray(signal, np.float64)
    if x.ndim != 1:
        raise ValueError(f"log_mel: signal must be mono [N], got shape {x.shape}")
    frames = _frames(x, sample_rate, win_s, hop_s, n_fft)
    power = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2
    bands = power @ mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax).T
    return 0.5 * np.log(np.maximum(bands, floor**2))


def mel_cepstrum(log_mel_frames: np.ndarray, num_ceps: int) -> np.ndarray:
    """``[T, num_ceps]``: ``c_n = (1/M) sum_m L_m cos(pi n (m + 1/2) / M)``, ``n < num_ceps``
    (see the module doc), for log-mel frames ``[T, M]``."""
    lm = np.asarray(log_mel_frames, np.float64)
    if not 1 <= num_ceps <= lm.shape[-1]:
        raise ValueError(
            f"mel_cepstrum: num_ceps must be in [1, {lm.shape[-1]}] (the mel bands), got {num_ceps}"
        )
    # scipy's unnormalised DCT-II is 2 sum_m L_m cos(pi n (2m + 1) / 2M).
    return scipy.fft.dct(lm, type=2, axis=-1)[..., :num_ceps] / (2.0 * lm.shape[-1])


def log_mel_from_cepstrum(ceps: np.ndarray, n_mels: int) -> np.ndarray:
    """``[T, n_mels]``: ``L_m = c_0 + 2 sum_{n>=1} c_n cos(pi n (m + 1/2) / M)`` with the
    coefficients beyond ``ceps``' last set to 0 (the inverse of :func:`mel_cepstrum`)."""
    c = np.asarray(ceps, np.float64)
    full = np.zeros((*c.shape[:-1], n_mels))
    full[..., : c.shape[-1]] = c * (2.0 * n_mels)
    return scipy.fft.idct(full, type=2, axis=-1)


def frame_energy_db(log_mel_frames: np.ndarray) -> np.ndarray:
    """``[T]`` frame energy in dB: ``10 log10 sum_b exp(2 log_mel_b)``."""
    lm = np.asarray(log_mel_frames, np.float64)
    return 10.0 / math.log(10.0) * np.log(np.sum(np.exp(2.0 * lm), axis=-1))


def trim_silence(log_mel_frames: np.ndarray, threshold_db: float = 40.0) -> slice:
    """The frames from the first to the last whose energy is within ``threshold_db`` of the
    loudest frame, as a ``slice`` (leading and trailing silence removed)."""
    energy = frame_energy_db(log_mel_frames)
    loud = np.flatnonzero(energy >= energy.max() - threshold_db)
    return slice(int(loud[0]), int(loud[-1]) + 1)


def mcd(c_a: np.ndarray, c_b: np.ndarray) -> float:
    """Mean mel-cepstral distortion (dB) between aligned frames ``[T, D + 1]`` (``c_0``
    excluded)."""
    a, b = np.asarray(c_a, np.float64), np.asarray(c_b, np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] < 2:
        raise ValueError(
            f"mcd: c_a and c_b must be aligned frames [T, D + 1] of one shape with D >= 1, "
            f"got {a.shape} and {b.shape}"
        )
    return float(np.mean(MCD_FACTOR * np.sqrt(np.sum((a[:, 1:] - b[:, 1:]) ** 2, axis=1))))


def dtw(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    """Dynamic time warping of ``a [Ta, D]`` and ``b [Tb, D]`` (Euclidean frame cost).

    The path starts at ``(0, 0)``, ends at ``(Ta - 1, Tb - 1)`` and moves by ``(1, 0)``,
    ``(0, 1)`` or ``(1, 1)``; it minimises the sum of the costs of the cells it visits.

    Returns:
      ``(path [L, 2] int, total cost)``; ties prefer the diagonal step.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or not (len(a) and len(b)):
        raise ValueError(
            f"dtw: a and b must be non-empty [T, D] sequences of one D, got {a.shape}, {b.shape}"
        )
    cost = np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0.0))
    ta, tb = cost.shape
    acc = np.full((ta + 1, tb + 1), np.inf)
    acc[0, 0] = 0.0
    # Anti-diagonal sweep: the cells (i, j) with i + j = d depend only on diagonals d - 1 and
    # d - 2, so each diagonal is one vectorised update (the same sums and minima, in any order).
    for d in range(2, ta + tb + 1):
        i = np.arange(max(1, d - tb), min(ta, d - 1) + 1)
        j = d - i
        best = np.minimum(np.minimum(acc[i - 1, j - 1], acc[i - 1, j]), acc[i, j - 1])
        acc[i, j] = best + cost[i - 1, j - 1]
    path = [(ta - 1, tb - 1)]
    i, j = ta, tb
    while (i, j) != (1, 1):
        moves = (
            (acc[i - 1, j - 1], i - 1, j - 1),
            (acc[i - 1, j], i - 1, j),
            (acc[i, j - 1], i, j - 1),
        )
        _, i, j = min(moves, key=lambda m: m[0])
        path.append((i - 1, j - 1))
    return np.asarray(path[::-1], np.int64), float(acc[ta, tb])


def mcd_dtw(converted: np.ndarray, target: np.ndarray) -> float:
    """MCD (dB) between two utterances of one sentence, along the DTW path of their cepstra
    without ``c_0`` (so the alignment ignores loudness)."""
    path, _ = dtw(np.asarray(converted)[:, 1:], np.asarray(target)[:, 1:])
    return mcd(np.asarray(converted)[path[:, 0]], np.asarray(target)[path[:, 1]])
