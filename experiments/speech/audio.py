"""Audio from the features: a vocoder-free inversion of mel-cepstra, and WAV files.

The experiment's features (``c_0 .. c_24`` of 40 log-mel bands, see :mod:`features`) hold the
spectral envelope and the energy of each 10 ms frame, not the pitch or the phase. To listen
to them, :func:`invert` rebuilds a waveform without a vocoder:

1. ``c -> L``: the 40 log-mel amplitudes (:func:`features.log_mel_from_cepstrum`, the
   coefficients beyond ``c_24`` set to 0: a smoothed envelope);
2. ``L -> |X|``: mel power ``P = exp(2 L)`` to a linear-frequency power ``S [n_fft // 2 + 1, T]``
   by non-negative least squares ``min_S ||B S - P||^2, S >= 0`` against the analysis
   filterbank ``B`` (:func:`features.mel_filterbank`), solved by multiplicative updates
   ``S <- S * (B^T P) / (B^T B S)`` (Lee & Seung, 2001) from the triangle-weighted
   interpolation of ``P``, then ``|X| = sqrt(S)``. (librosa's ``mel_to_stft`` solves the same
   problem with L-BFGS-B and took about two minutes per utterance here.)
3. ``|X| -> x``: phase by Griffin-Lim (Griffin & Lim, 1984; ``librosa.griffinlim``, fast
   variant of Perraudin et al., 2013, seeded), on the analysis frames of
   :func:`features.log_mel` (Hann window of 25 ms every 10 ms, ``n_fft`` points, no centring).

The result is intelligible but buzzy and whispery: the envelope has no harmonics, so the
voice's pitch is gone and what tells the voices apart is their formants and spectral tilt.
Every clip of a comparison (source, conversions, target) goes through the same inversion.
Re-analysed by :func:`features.log_mel` the inverted waveform gives back the cepstra it was
made from to 0.6 - 1.1 dB MCD on espeak-ng utterances (mean 0.84 dB over eight; the tests
bound it by 1 dB), well below the distance between two voices (about 5 dB).

WAV files are 16-bit PCM mono, written and read with Python's ``wave`` module.

References:
  D. Griffin, J. Lim, "Signal estimation from modified short-time Fourier transform",
  IEEE TASSP 32(2), 1984.
  N. Perraudin, P. Balazs, P. L. Søndergaard, "A fast Griffin-Lim algorithm", WASPAA 2013.
  D. D. Lee, H. S. Seung, "Algorithms for non-negative matrix factorization", NIPS 2001.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import threadpoolctl

from experiments.speech import features

__all__ = ["invert", "mel_to_power", "read_wav", "write_wav"]

#: Peak level of the written files (the inversion's absolute level is arbitrary).
PEAK = 0.9


def invert(
    ceps: np.ndarray,
    sample_rate: int,
    *,
    n_mels: int,
    n_fft: int = 512,
    win_s: float = 0.025,
    hop_s: float = 0.010,
    n_iter: int = 32,
    seed: int = 0,
) -> np.ndarray:
    """A waveform ``[N]`` whose :func:`features.log_mel` frames match mel-cepstra ``[T, C]``.

    ``N = (T - 1) hop + win`` samples, so that the analysis of the result has ``T`` frames,
    aligned with the given ones. See the module doc for the three steps.
    """
    import librosa  # heavy (numba); only the audio output needs it

    c = np.asarray(ceps, np.float64)
    if c.ndim != 2 or not 1 <= c.shape[1] <= n_mels or len(c) < 1:
        raise ValueError(f"invert: ceps must be [T, C] with 1 <= C <= n_mels, got {c.shape}")
    win, hop = round(win_s * sample_rate), round(hop_s * sample_rate)
    power = np.exp(2.0 * features.log_mel_from_cepstrum(c, n_mels)).T  # [n_mels, T]
    # Small products: OpenBLAS's threads only slow them down (by 30x on a busy 2-core machine).
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        basis = features.mel_filterbank(sample_rate, n_fft, n_mels)
        magnitude = np.sqrt(mel_to_power(power, basis))
    # One extra frame (a copy) at each end, so that the kept samples are all covered by two
    # windows: at the very ends the overlap-add divides by a window sum near 0.
    magnitude = np.pad(magnitude, ((0, 0), (1, 1)), mode="edge")
    signal = librosa.griffinlim(
        magnitude,
        n_iter=n_iter,
        hop_length=hop,
        win_length=win,
        n_fft=n_fft,
        window="hann",
        center=False,
        random_state=seed,
    )
    # librosa centres the window in the n_fft frame: skip its lead-in and the extra frame, so
    # that frame t's window starts at sample t * hop, as in features.log_mel.
    start = (n_fft - win) // 2 + hop
    return signal[start : start + (len(c) - 1) * hop + win]


def mel_to_power(mel_power: np.ndarray, basis: np.ndarray, iters: int = 100) -> np.ndarray:
    """``S [F, T] >= 0`` minimising ``||basis @ S - mel_power||^2`` for ``basis [M, F]`` and
    ``mel_power [M, T]`` (multiplicative updates, see the module doc)."""
    area = basis.sum(axis=1, keepdims=True)  # [M, 1]
    s = basis.T @ (mel_power / area) + 1e-12  # each band's power density, spread over its bins
    numerator = basis.T @ mel_power
    for _ in range(iters):
        s *= numerator / np.maximum(basis.T @ (basis @ s), 1e-30)
    return s


def write_wav(path: str | Path, signal: np.ndarray, sample_rate: int) -> Path:
    """Writes ``signal [N]`` as 16-bit mono PCM, scaled to a peak of :data:`PEAK`."""
    x = np.asarray(signal, np.float64)
    if x.ndim != 1 or not x.size or not np.all(np.isfinite(x)):
        raise ValueError(f"write_wav: signal must be a finite mono [N], got shape {x.shape}")
    peak = np.max(np.abs(x))
    if peak > 0:
        x = x * (PEAK / peak)
    pcm = np.round(x * 32767).astype("<i2")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(int(sample_rate))
        f.writeframes(pcm.tobytes())
    return path


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """``(signal [N] float64 in [-1, 1], sample_rate)`` of a 16-bit mono WAV file."""
    with wave.open(str(path), "rb") as f:
        if f.getnchannels() != 1 or f.getsampwidth() != 2:
            raise ValueError(f"read_wav: {path} is not 16-bit mono")
        rate, data = f.getframerate(), f.readframes(f.getnframes())
    return np.frombuffer(data, "<i2").astype(np.float64) / 32767.0, rate
