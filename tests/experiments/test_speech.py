"""Tests for the speech experiment (``experiments/speech``), against oracles: the DCT-II and
the mel-cepstral distortion written from their formulas; DTW against a brute-force search over
every monotone path; the mel filterbank and the re-analysis of inverted audio by librosa's
independent implementation; scipy's WAV reader and standard error; a run of the whole command
on a few sentences where espeak-ng is installed."""

from __future__ import annotations

import json
import math

import librosa
import numpy as np
import pytest
import scipy.io.wavfile
import scipy.optimize
import scipy.stats

from experiments.speech import audio, features
from experiments.speech import prepare as speech_prepare
from experiments.speech import run as speech_run

needs_espeak = pytest.mark.skipif(
    not speech_prepare.espeak_available(), reason="espeak-ng is not installed (optional)"
)

SR, N_MELS, N_FFT, HOP, WIN = 16000, 40, 512, 160, 400


def test_mel_cepstrum_is_the_cosine_series_of_the_log_mel_frame():
    rng = np.random.default_rng(0)
    lm = rng.normal(size=(3, 8))
    n = lm.shape[1]
    w = np.pi * (np.arange(n) + 0.5) / n  # the bands' warped frequencies
    expected = np.stack([np.mean(lm * np.cos(k * w), axis=1) for k in range(5)], axis=1)
    np.testing.assert_allclose(features.mel_cepstrum(lm, 5), expected, atol=1e-12)
    # L(w) = c_0 + 2 sum c_k cos(k w): a frame that is such a series gives its coefficients.
    c = np.array([[0.3, -1.0, 0.25, 0.0, 0.5]])
    frame = c[:, :1] + 2 * (c[:, 1:] @ np.cos(np.arange(1, 5)[:, None] * w[None, :]))
    np.testing.assert_allclose(features.mel_cepstrum(frame, 5), c, atol=1e-12)
    # All coefficients kept: the inverse gives the log-mel frames back.
    np.testing.assert_allclose(
        features.log_mel_from_cepstrum(features.mel_cepstrum(lm, n), n), lm, atol=1e-12
    )


def test_log_mel_of_a_tone_peaks_in_the_band_around_its_frequency():
    sr, f0 = 16000, 1000.0
    t = np.arange(sr // 2) / sr
    lm = features.log_mel(np.sin(2 * np.pi * f0 * t), sr, n_mels=40, n_fft=512)
    assert lm.shape == (1 + (sr // 2 - 400) // 160, 40)
    edges = features.mel_to_hz(np.linspace(0, features.hz_to_mel(sr / 2), 42))
    expected = np.argmin(np.abs(edges[1:-1] - f0))  # the band whose centre is nearest
    assert set(np.argmax(lm, axis=1)) <= {expected - 1, expected, expected + 1}
    assert np.bincount(np.argmax(lm, axis=1)).argmax() == expected


def test_mcd_formula_by_hand():
    a = np.array([[5.0, 1.0, 2.0], [0.0, 0.0, 0.0]])
    b = np.array([[-3.0, 1.0, 0.0], [9.0, 3.0, 4.0]])
    # c_0 is ignored; frame distances sqrt(4) and sqrt(9 + 16).
    per_frame = 10 / math.log(10) * math.sqrt(2) * np.array([2.0, 5.0])
    assert features.mcd(a, b) == pytest.approx(per_frame.mean(), rel=1e-12)
    with pytest.raises(ValueError, match="aligned frames"):
        features.mcd(a, b[:1])


def _brute_force_dtw(cost):
    best = {}

    def go(i, j):
        if (i, j) in best:
            return best[(i, j)]
        if i == 0 and j == 0:
            value = cost[0, 0]
        else:
            prev = [
                go(a, b) for a, b in ((i - 1, j - 1), (i - 1, j), (i, j - 1)) if a >= 0 and b >= 0
            ]
            value = cost[i, j] + min(prev)
        best[(i, j)] = value
        return value

    return go(cost.shape[0] - 1, cost.shape[1] - 1)


def test_dtw_finds_the_cheapest_monotone_path():
    rng = np.random.default_rng(3)
    for ta, tb in ((4, 3), (1, 5), (6, 6), (7, 2)):
        a, b = rng.normal(size=(ta, 2)), rng.normal(size=(tb, 2))
        cost = np.linalg.norm(a[:, None] - b[None], axis=-1)
        path, total = features.dtw(a, b)
        assert total == pytest.approx(_brute_force_dtw(cost), rel=1e-12)
        assert tuple(path[0]) == (0, 0) and tuple(path[-1]) == (ta - 1, tb - 1)
        steps = np.diff(path, axis=0)
        assert all(tuple(s) in {(1, 0), (0, 1), (1, 1)} for s in steps)
        assert cost[path[:, 0], path[:, 1]].sum() == pytest.approx(total, rel=1e-12)
    # A sequence against a time-stretched copy of itself: distortion 0.
    x = rng.normal(size=(5, 4))
    assert features.mcd_dtw(np.repeat(x, 2, axis=0), x) == pytest.approx(0.0, abs=1e-12)


def test_prepare_skips_cleanly_without_espeak(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(speech_prepare, "espeak_available", lambda: False)
    assert speech_prepare.main(["--out", str(tmp_path / "speech")]) == 0
    assert "apt-get install -y espeak-ng" in capsys.readouterr().err
    assert not (tmp_path / "speech").exists()
    monkeypatch.setattr(speech_prepare.shutil, "which", lambda name: None)
    with pytest.raises(speech_prepare.EspeakNotFound, match="espeak-ng"):
        speech_prepare.prepare(tmp_path / "x", sentences=("Hello.",))


@needs_espeak
def test_prepare_synthesises_two_voices(tmp_path):
    sentences = speech_prepare.SENTENCES[:2]
    out = speech_prepare.prepare(tmp_path, voices=("en-us+m3", "en-us+f3"), sentences=sentences)
    arrays, meta = speech_prepare.load(out)
    assert meta["voices"] == ["en-us+m3", "en-us+f3"] and meta["num_ceps"] == 25
    assert arrays["ceps"].shape[1] == 25 and arrays["log_mel"].shape[1] == 40
    assert list(arrays["utt_voice"]) == [0, 0, 1, 1]
    assert list(arrays["utt_sentence"]) == [0, 1, 0, 1]
    assert arrays["utt_length"].sum() == len(arrays["ceps"]) == meta["frames"]

    def utt(i):
        start, length = arrays["utt_start"][i], arrays["utt_length"][i]
        return arrays["ceps"][start : start + length]

    for i in range(4):
        assert 50 < len(utt(i)) < 600  # 0.5 to 6 s of speech at 10 ms per frame
    # An utterance against itself is 0 dB; the same sentence by the other voice is far
    # (the two voices are ~6 dB apart; > 2 dB would already be clearly audible).
    assert features.mcd_dtw(utt(0), utt(0)) == 0.0
    assert features.mcd_dtw(utt(0), utt(2)) > 2.0
    with pytest.raises(ValueError, match="could not synthesise"):
        speech_prepare.prepare(tmp_path / "bad", voices=("en-us", "xx-nonexistent"))


def test_speech_split_is_non_parallel_and_holds_out_the_test_sentences():
    voices, sentences = 3, 8
    utt = [(v, s) for v in range(voices) for s in range(sentences)]
    lengths = np.array([2 + (3 * v + s) % 4 for v, s in utt], np.int32)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int32)
    # Each frame records its (voice, sentence) in its first two coefficients.
    ceps = np.concatenate(
        [np.tile([v, s, 0.0], (n, 1)) for (v, s), n in zip(utt, lengths, strict=True)]
    )
    arrays = {
        "ceps": ceps,
        "utt_voice": np.array([v for v, _ in utt], np.int32),
        "utt_sentence": np.array([s for _, s in utt], np.int32),
        "utt_start": starts,
        "utt_length": lengths,
    }
    x, voice, test_ids, table = speech_run.split(arrays, voices, sentences, test_sentences=2)
    assert test_ids == [6, 7]
    assert np.array_equal(x[:, 0], voice)  # labels are the voices that spoke the frames
    heard = {(int(v), int(s)) for v, s in x[:, :2]}
    assert heard == {(s % voices, s) for s in range(6)}  # one voice per training sentence
    assert len(x) == sum(n for (v, s), n in zip(utt, lengths, strict=True) if (v, s) in heard)
    assert all(np.array_equal(table[(v, s)][:, :2], [[v, s]] * len(table[(v, s)])) for v, s in utt)
    with pytest.raises(ValueError, match="test_sentences"):
        speech_run.split(arrays, voices, sentences, test_sentences=8)


def test_speech_run_skips_cleanly_without_espeak(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(speech_prepare, "espeak_available", lambda: False)
    assert speech_run.main(["--workdir", str(tmp_path / "run")]) == 0
    assert "skipped: espeak-ng is not installed" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# Audio: the inversion of the features and the WAV files
# --------------------------------------------------------------------------------------------


def _librosa_cepstra(signal, num_ceps=25):
    """The features re-computed independently: librosa's power mel spectrogram on the same
    frames (HTK filters, no normalisation, Hann window, no centring), half its log, and the
    mel-cepstrum from its cosine-series formula. librosa centres the window in its n_fft
    frame: padding by the difference puts frame t's window at sample t * hop, as ours."""
    lead = np.zeros((N_FFT - WIN) // 2)
    y = np.concatenate([lead, np.asarray(signal, np.float64), lead])
    mel = librosa.feature.melspectrogram(
        y=y, sr=SR, n_fft=N_FFT, hop_length=HOP, win_length=WIN, window="hann", center=False,
        power=2.0, n_mels=N_MELS, htk=True, norm=None,
    ).T  # fmt: skip
    lm = 0.5 * np.log(np.maximum(mel, 1e-10))
    w = np.pi * (np.arange(N_MELS) + 0.5) / N_MELS
    return np.stack([np.mean(lm * np.cos(k * w), axis=1) for k in range(num_ceps)], axis=1), lm


def _mcd_by_formula(a, b):
    return np.mean(10 / np.log(10) * np.sqrt(2 * np.sum((a[:, 1:] - b[:, 1:]) ** 2, axis=1)))


def _vowels(seconds=1.2):
    """A voiced test signal: harmonics of a gliding 110-150 Hz pitch under two formants that
    move, the way a diphthong does, over a falling spectral tilt and a faint breath noise
    (-60 dB: without a floor the highest bands would lie 100 dB down, unlike speech)."""
    t = np.arange(round(seconds * SR)) / SR
    f0 = 110 + 40 * t / seconds
    phase = 2 * np.pi * np.cumsum(f0) / SR
    f1, f2 = 500 + 300 * t / seconds, 1500 + 700 * t / seconds
    x = np.zeros_like(t)
    for h in range(1, 60):
        fh = h * f0
        gain = np.exp(-(((fh - f1) / 150) ** 2)) + 0.5 * np.exp(-(((fh - f2) / 200) ** 2))
        x += np.where(fh < SR / 2, gain + 0.02 / h, 0.0) * np.sin(h * phase)
    x += 1e-3 * np.random.default_rng(0).normal(size=x.size)
    return 0.3 * x / np.abs(x).max()


def test_mel_filterbank_equals_librosas_htk_filters():
    ours = features.mel_filterbank(SR, N_FFT, N_MELS)
    theirs = librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=N_MELS, htk=True, norm=None)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)  # librosa computes in float32
    # And the log-mel analysis equals librosa's on the same frames.
    x = _vowels()
    _, lm = _librosa_cepstra(x)
    np.testing.assert_allclose(features.log_mel(x, SR, n_mels=N_MELS, n_fft=N_FFT), lm, atol=1e-4)


def test_mel_to_power_is_a_nonnegative_least_squares_solution():
    basis = features.mel_filterbank(SR, N_FFT, N_MELS)
    rng = np.random.default_rng(0)
    freqs = np.linspace(0, 1, N_FFT // 2 + 1)[:, None]
    truth = np.exp(-3 * freqs) * (1 + 0.5 * np.sin(6 * freqs + rng.uniform(0, 6, size=(1, 4))))
    mel = basis @ truth  # a consistent system: the least-squares residual is 0
    s = audio.mel_to_power(mel, basis, iters=2000)
    assert np.all(s >= 0)
    assert np.linalg.norm(basis @ s - mel) < 1e-3 * np.linalg.norm(mel)
    # scipy's active-set NNLS reaches a residual of 0 too (frame by frame).
    for k in range(mel.shape[1]):
        assert scipy.optimize.nnls(basis, mel[:, k])[1] < 1e-6 * np.linalg.norm(mel[:, k])


def _check_wav(path, frames):
    rate, pcm = scipy.io.wavfile.read(path)  # an independent reader
    assert rate == SR and pcm.dtype == np.int16 and pcm.ndim == 1
    assert len(pcm) == (frames - 1) * HOP + WIN  # exactly the analysis frames' span
    x = pcm / 32767.0
    assert np.abs(x).max() == pytest.approx(audio.PEAK, abs=1e-4)
    assert np.sqrt(np.mean(x**2)) > 0.02  # not silent
    return x


def _round_trip(signal, tmp_path):
    lm = features.log_mel(signal, SR, n_mels=N_MELS, n_fft=N_FFT)
    lm = lm[features.trim_silence(lm)]
    ceps = features.mel_cepstrum(lm, 25)
    inverted = audio.invert(ceps, SR, n_mels=N_MELS, n_fft=N_FFT)
    x = _check_wav(audio.write_wav(tmp_path / "x.wav", inverted, SR), len(ceps))
    again, _ = _librosa_cepstra(x)
    assert again.shape == ceps.shape
    return _mcd_by_formula(again, ceps), ceps


def test_features_to_audio_to_features_round_trip_within_1_db(tmp_path):
    mcd, ceps = _round_trip(_vowels(), tmp_path)
    # A mel-cepstral distortion of 1 dB is below what listeners tell apart; the voices of the
    # experiment are about 5 dB apart.
    assert mcd < 1.0, mcd
    # The measure can fail: another pitch contour's features are far from these.
    other, _ = _librosa_cepstra(_vowels(0.9)[::-1].copy())
    assert _mcd_by_formula(other[: len(ceps)], ceps[: len(other)]) > 2.0


@needs_espeak
def test_espeak_speech_round_trips_through_the_inversion(tmp_path):
    signal = speech_prepare.synthesize(speech_prepare.SENTENCES[0], "en-us+f3", SR, tmp_path)
    mcd, _ = _round_trip(signal, tmp_path)
    assert mcd < 1.0, mcd


def test_wav_files_read_back_and_bad_signals_are_refused(tmp_path):
    x = np.sin(np.linspace(0, 40, 800))
    path = audio.write_wav(tmp_path / "sub" / "a.wav", x, SR)
    y, rate = audio.read_wav(path)
    assert rate == SR
    np.testing.assert_allclose(y, audio.PEAK * x / np.abs(x).max(), atol=1 / 32767)
    for bad in (np.zeros((2, 3)), np.array([]), np.array([0.0, np.nan])):
        with pytest.raises(ValueError, match="signal"):
            audio.write_wav(tmp_path / "b.wav", bad, SR)
    with pytest.raises(ValueError, match="ceps"):
        audio.invert(np.zeros((3, 41)), SR, n_mels=N_MELS)


# --------------------------------------------------------------------------------------------
# The run: standard errors, the speaker classifier, the whole command on a few sentences
# --------------------------------------------------------------------------------------------


def test_mean_and_standard_error_match_scipy():
    values = [3.1, 3.5, 2.9, 3.3]
    mean, se = speech_run._mean_se(values)
    assert mean == pytest.approx(np.mean(values), rel=1e-12)
    assert se == pytest.approx(scipy.stats.sem(values), rel=1e-12)
    assert math.isnan(speech_run._mean_se([1.0])[1])


def test_speaker_classifier_hears_the_voice_of_whole_utterances():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=1.0, size=(3, 6))
    frames = [centres[v] + rng.normal(scale=1.5, size=(400, 6)) for v in range(3)]
    x, v = np.concatenate(frames), np.repeat(np.arange(3), 400)
    speaker = speech_run.SpeakerID(x, v, 3, x.mean(0), x.std(0))
    for voice in range(3):  # fresh utterances; single frames overlap, 60 of them do not
        utterance = centres[voice] + rng.normal(scale=1.5, size=(60, 6))
        assert speaker.voice(utterance) == voice
    # c_0 is not heard: shifting the energy by a lot changes nothing.
    shifted = utterance.copy()
    shifted[:, 0] += 100.0
    assert speaker.voice(shifted) == voice


@pytest.mark.slow
@needs_espeak
def test_the_command_writes_audio_tables_and_speaker_accuracy(tmp_path):
    data = speech_prepare.prepare(
        tmp_path / "data", voices=("en-us+m3", "en-us+f3"), sentences=speech_prepare.SENTENCES[:6]
    )
    workdir = tmp_path / "run"
    argv = ["--workdir", str(workdir), "--data", str(data), "--steps", "100", "--seeds", "2",
            "--curve", "50", "--test-sentences", "2", "--audio-sentences", "1"]  # fmt: skip
    assert speech_run.main(argv) == 0
    summary = json.loads((workdir / "summary.json").read_text())
    metrics = summary["metrics"]
    for system in ("cycle", "cycle0", "meanvar", "no_conversion"):
        for pair in ("0->1", "1->0"):
            assert 0 <= metrics[f"speaker_acc_{system}_{pair}"] <= 1
            assert metrics[f"mcd_db_{system}_{pair}"] > 0
    # The seeds' mean and standard error, recomputed from the per-seed numbers.
    per_seed = [m["mcd_db_cycle"] for m in summary["per_seed"]]
    assert metrics["mcd_db_cycle"] == pytest.approx(np.mean(per_seed))
    assert metrics["mcd_db_cycle_se"] == pytest.approx(scipy.stats.sem(per_seed))
    table = json.loads((workdir / "table.json").read_text())
    assert [p["steps"] for p in table["training_length"]] == [50, 100]
    assert "| cycle0 |" in (workdir / "table.md").read_text()
    # The audio: every voice's source and reconstruction, both conversions of each pair.
    arrays, _ = speech_prepare.load(data)
    n = 4  # the first test sentence
    for s, t in ((0, 1), (1, 0)):
        frames = int(arrays["utt_length"][s * 6 + n])
        for name in (f"s{n}_{s}_source", f"s{n}_{s}_recon_cycle", f"s{n}_{s}-to-{t}_cycle",
                     f"s{n}_{s}-to-{t}_cycle0"):  # fmt: skip
            _check_wav(workdir / "audio" / f"{name}.wav", frames)
    entry = summary["audio"][0]
    assert (workdir / entry["figure"]).exists() and len(entry["clips"]) == 4
