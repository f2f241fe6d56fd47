"""Data for the speech experiment: the same sentences spoken by several espeak-ng voices,
as frames of mel-cepstra, synthesised offline.

    python -m experiments.speech.prepare --out DIR [--voices en-us+m3,en-us+f3,en-us+m7,en-us+f5]

Needs the ``espeak-ng`` program, from the Debian/Ubuntu package of the same name::

    apt-get install -y espeak-ng

Without it the command prints why it skips and exits with status 0 (the experiment is
optional; nothing else in genjax needs espeak-ng). For each voice and each sentence of
:data:`SENTENCES`, espeak-ng writes a WAV file (22.05 kHz, 16 bit), which is read with
``scipy.io.wavfile``, resampled to ``sample_rate`` (``scipy.signal.resample_poly``), turned
into natural-log mel-band amplitudes (``features.log_mel``: 25 ms Hann windows every 10 ms,
40 bands), trimmed of leading and trailing silence (frames more than 40 dB below the loudest)
and reduced to mel-cepstra ``c_0 .. c_24`` (``features.mel_cepstrum``). The voices are
espeak-ng variants of one language (``en-us`` with the ``+m3`` / ``+f3`` / ``+m7`` / ``+f5``
variants by default), which differ in pitch, formant scaling and voice quality rather than
in pronunciation, so that the difference between two voices is what a frame-wise converter
can learn.

Output, in ``DIR``:

``frames.npz``
  ``ceps`` float32 ``[F, num_ceps]`` and ``log_mel`` float32 ``[F, n_mels]``: the frames of
  every utterance, one after the other; ``utt_voice``, ``utt_sentence``, ``utt_start``,
  ``utt_length`` int32 ``[U]``: which voice and sentence each utterance is and where its
  frames are.
``meta.json``
  voices, sentences, the feature settings and the espeak-ng version.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from math import gcd
from pathlib import Path

import numpy as np
import scipy.io.wavfile
import scipy.signal

from experiments.speech import features

__all__ = [
    "DEFAULT_VOICES",
    "SENTENCES",
    "EspeakNotFound",
    "espeak_available",
    "load",
    "prepare",
    "synthesize",
]

#: espeak-ng voices (language + variant) used by default: four voices (two male, two female),
#: so that the conversion is many-to-many (twelve ordered source -> target pairs).
DEFAULT_VOICES = ("en-us+m3", "en-us+f3", "en-us+m7", "en-us+f5")

#: Sentences written for this experiment (plain declarative English of varied phonetic
#: content, 6 to 12 words each).
SENTENCES = (
    "The old boat drifted slowly toward the rocky shore.",
    "She painted the kitchen door a bright shade of green.",
    "A cold wind blew across the empty market square.",
    "We found three silver coins under the wooden floor.",
    "The children laughed when the puppy chased its tail.",
    "Fresh bread is sold every morning at the corner shop.",
    "His letter arrived two weeks after he had left.",
    "The river rises quickly after a heavy summer storm.",
    "Please put the blue cups back on the top shelf.",
    "A tall man in a grey coat waited by the gate.",
    "The engine made a strange noise as we climbed the hill.",
    "Our neighbours planted apple trees along the fence.",
    "The train to the coast leaves at half past nine.",
    "Thick fog covered the valley until late in the day.",
    "She keeps her notes in a small leather book.",
    "The judge listened carefully to both sides of the story.",
    "Bright lamps hung above the long table in the hall.",
    "He fixed the broken chair with glue and a few nails.",
    "The farmer sold his corn at a very good price.",
    "A flock of geese flew low over the frozen lake.",
    "The museum opens its new gallery next Thursday.",
    "They walked along the beach collecting smooth stones.",
    "My brother plays the violin in the city orchestra.",
    "The soup needs more salt and a little pepper.",
    "Heavy rain delayed the start of the football match.",
    "The clock on the tower stopped at a quarter to six.",
    "Most of the guests left before the music began.",
    "A young fox crept quietly through the tall grass.",
    "The teacher wrote the date in large letters on the board.",
    "We need fresh paint for the garden bench this spring.",
    "The candle flickered and then went out completely.",
    "Several ships were anchored outside the busy harbour.",
    "The baker woke up early to light the ovens.",
    "Dark clouds gathered over the hills in the west.",
    "He reads the newspaper every evening after dinner.",
    "The bridge was closed for repairs during the winter.",
    "Her favourite song played softly on the radio.",
    "The students measured the length of the playground.",
    "A loud knock on the door woke the whole house.",
    "The garden looks lovely when the roses are in bloom.",
    "Two owls called to each other across the dark wood.",
    "The price of fuel went up again this month.",
    "She tied the parcel with a piece of red string.",
    "The pilot announced that the flight would land soon.",
    "Wild horses grazed peacefully on the open plain.",
    "The library stays open late on Wednesday nights.",
    "Thin ice cracked under the weight of the heavy sled.",
    "The doctor told him to rest for a few days.",
    "Warm light poured through the narrow kitchen window.",
    "The committee will vote on the plan tomorrow.",
    "A gentle breeze carried the smell of cut grass.",
    "The workers finished the new road before the deadline.",
    "He whistled a cheerful tune as he walked to work.",
    "The cat slept all afternoon on the sunny windowsill.",
    "Every seat in the theatre was taken that night.",
    "The mountain path was steep and covered with loose rocks.",
    "She poured the milk into a tall glass jug.",
    "The village celebrates its founding every August.",
    "Small waves lapped against the side of the canoe.",
    "The map showed a hidden spring beyond the ridge.",
)


class EspeakNotFound(RuntimeError):
    """The ``espeak-ng`` program is not installed."""


INSTALL_HINT = (
    "espeak-ng is not installed; the speech experiment is optional and needs the Debian "
    "package `espeak-ng` (as root: apt-get install -y espeak-ng)"
)


def espeak_available() -> bool:
    """Whether the ``espeak-ng`` program is on the PATH."""
    return shutil.which("espeak-ng") is not None


def _espeak() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise EspeakNotFound(INSTALL_HINT)
    return path


def espeak_version() -> str:
    """``espeak-ng --version``'s first line."""
    out = subprocess.run([_espeak(), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "unknown"


def synthesize(text: str, voice: str, sample_rate: int, workdir: Path) -> np.ndarray:
    """``text`` spoken by espeak-ng ``voice``, as a float64 mono signal at ``sample_rate``.

    Raises:
      EspeakNotFound: espeak-ng is not installed.
      ValueError: espeak-ng rejects the voice (the message quotes its error).
    """
    wav = workdir / "utterance.wav"
    result = subprocess.run(
        [_espeak(), "-v", voice, "-w", str(wav), text], capture_output=True, text=True
    )
    if result.returncode != 0 or not wav.exists() or wav.stat().st_size <= 44:
        raise ValueError(
            f"espeak-ng could not synthesise with voice {voice!r}: "
            f"{(result.stderr or result.stdout).strip() or 'no audio written'}"
        )
    rate, signal = scipy.io.wavfile.read(wav)
    wav.unlink()
    x = signal.astype(np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if np.issubdtype(signal.dtype, np.integer):
        x /= float(np.iinfo(signal.dtype).max)
    if rate != sample_rate:
        g = gcd(rate, sample_rate)
        x = scipy.signal.resample_poly(x, sample_rate // g, rate // g)
    return x


def prepare(
    out: str | Path,
    *,
    voices: tuple[str, ...] = DEFAULT_VOICES,
    sentences: tuple[str, ...] = SENTENCES,
    sample_rate: int = 16000,
    n_mels: int = 40,
    num_ceps: int = 25,
    silence_db: float = 40.0,
) -> Path:
    """Synthesise every sentence with every voice and write ``frames.npz`` + ``meta.json``.

    Returns ``out``. Raises :class:`EspeakNotFound` when espeak-ng is absent and
    ``ValueError`` for fewer than two voices, no sentences, or a voice espeak-ng rejects.
    """
    voices, sentences = tuple(voices), tuple(sentences)
    if len(voices) < 2 or len(set(voices)) != len(voices):
        raise ValueError(f"voices must hold at least two distinct voices, got {voices!r}")
    if not sentences:
        raise ValueError("sentences must not be empty")
    version = espeak_version()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ceps, mels, utt = [], [], []
    start = 0
    with tempfile.TemporaryDirectory() as tmp:
        for v, voice in enumerate(voices):
            for s, text in enumerate(sentences):
                signal = synthesize(text, voice, sample_rate, Path(tmp))
                lm = features.log_mel(signal, sample_rate, n_mels=n_mels, n_fft=512)
                lm = lm[features.trim_silence(lm, silence_db)]
                ceps.append(features.mel_cepstrum(lm, num_ceps).astype(np.float32))
                mels.append(lm.astype(np.float32))
                utt.append((v, s, start, len(lm)))
                start += len(lm)
    utt_arr = np.asarray(utt, np.int32)
    np.savez_compressed(
        out / "frames.npz",
        ceps=np.concatenate(ceps),
        log_mel=np.concatenate(mels),
        utt_voice=utt_arr[:, 0],
        utt_sentence=utt_arr[:, 1],
        utt_start=utt_arr[:, 2],
        utt_length=utt_arr[:, 3],
    )
    meta = {
        "voices": list(voices),
        "sentences": list(sentences),
        "sample_rate": sample_rate,
        "n_mels": n_mels,
        "num_ceps": num_ceps,
        "n_fft": 512,
        "win_s": 0.025,
        "hop_s": 0.010,
        "silence_db": silence_db,
        "espeak_ng": version,
        "frames": int(start),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def load(directory: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """``(arrays of frames.npz, meta.json)`` of a prepared directory.

    Raises ``FileNotFoundError`` naming the command that prepares it.
    """
    directory = Path(directory)
    if not (directory / "frames.npz").exists() or not (directory / "meta.json").exists():
        raise FileNotFoundError(
            f"{directory} holds no prepared speech data; run "
            f"`python -m experiments.speech.prepare --out {directory}`"
        )
    with np.load(directory / "frames.npz") as data:
        arrays = {k: data[k] for k in data.files}
    return arrays, json.loads((directory / "meta.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory to write frames.npz into")
    parser.add_argument(
        "--voices",
        default=",".join(DEFAULT_VOICES),
        help="comma-separated espeak-ng voices (at least two), e.g. en-us+m3,en-us+f3",
    )
    parser.add_argument("--sentences", type=int, default=len(SENTENCES), help="how many")
    args = parser.parse_args(argv)
    if not espeak_available():
        print(f"skipped: {INSTALL_HINT}", file=sys.stderr)
        return 0
    voices = tuple(v.strip() for v in args.voices.split(",") if v.strip())
    if not 1 <= args.sentences <= len(SENTENCES):
        parser.error(f"--sentences must be in [1, {len(SENTENCES)}], got {args.sentences}")
    try:
        out = prepare(args.out, voices=voices, sentences=SENTENCES[: args.sentences])
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    meta = json.loads((out / "meta.json").read_text())
    print(f"wrote {meta['frames']} frames of {len(voices)} voices x {args.sentences} sentences")
    return 0


if __name__ == "__main__":
    sys.exit(main())
