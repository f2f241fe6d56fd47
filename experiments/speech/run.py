"""The Cycle VAE on speech: frame-wise conversion between espeak-ng voices, measured by the
mel-cepstral distortion (MCD) against the same sentence spoken by the target voice and by a
speaker classifier, with the converted speech written as WAV files.

    python -m experiments.speech.run --workdir runs/cyclevae-speech [--steps 6000] [--seeds 3]

(optional experiment: needs the ``espeak-ng`` program, Debian package ``espeak-ng``; without it
the command prints why it skips and exits with status 0). Steps:

1. Data (``experiments.speech.prepare``, into ``WORKDIR/data`` unless ``--data`` points to a
   prepared directory): every sentence spoken by every voice (four by default), as mel-cepstra
   ``c_0..c_24``.
2. Split: the last ``--test-sentences`` sentences are the test set, spoken by every voice and
   never heard in training. The other sentences are dealt out to the voices in turn (sentence
   ``i`` to voice ``i mod V``), so no sentence is heard from two voices in training: the
   training data is **non-parallel**, as in Tobing et al. (2019). Frames are standardised per
   coefficient with the training mean and deviation.
3. Training (the library's engine, ``genjax.train.fit``), for each of ``--seeds`` seeds: the
   Cycle VAE on single frames (MLP, Gaussian likelihood with a learned per-coefficient
   variance, the voice index as the domain code) into ``WORKDIR/seed<k>/cycle``, and the same
   model with cycle weight 0 into ``WORKDIR/seed<k>/cycle0``. Both are also evaluated at the
   ``--curve`` steps on the way (the training-length curve; the run itself is unchanged).
4. Evaluation, for every test sentence and ordered voice pair ``s -> t``: the frames of voice
   ``s`` are converted to ``t`` (``genjax.models.cyclevae.convert``), ``c_0`` (the energy) is
   kept from the source, and the result is compared with voice ``t``'s own utterance of the
   sentence by the MCD along their DTW alignment (``features.mcd_dtw``), and given to a speaker
   classifier (:class:`SpeakerID`, trained on the training frames): the fraction of converted
   utterances heard as the target voice. Beside them: no conversion (the source against the
   target), a classic baseline, the per-coefficient mean and variance of the source voice
   mapped to those of the target voice (statistics of the training frames of each voice), the
   classifier's accuracy on the voices' own test utterances, and the reconstruction MCD
   (frames converted to their own voice, frame by frame).
5. Audio (seed 0): for the first ``--audio-sentences`` test sentences, every voice's source,
   its reconstruction and every pair's conversions by both models, as 16 kHz WAV files made
   from the features by ``audio.invert`` (mel-cepstra -> linear magnitude -> Griffin-Lim
   phase; no vocoder, so the clips have no pitch of their own: they sound whispered and buzzy,
   the same for every system).

Output in ``WORKDIR``: ``summary.json`` (``{"model", "dataset", "metrics": {...}, ...}``: per
system the MCD in dB and the speaker accuracy, means over seeds (``*_se``: standard errors),
over all test sentences and pairs and per pair; ``per_seed``; ``audio``: the report's players),
``table.md`` / ``table.json`` (the systems over seeds with standard errors, and the
training-length curve with the paired cycle - cycle0 difference), ``audio/*.wav``,
``figures/pair_<s>-<t>.png`` (the first audio sentence for each pair: source, the two
conversions and the target, as mel spectra rebuilt from the 25 cepstra) and
``figures/training_curve.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from experiments.speech import audio, features, prepare
from genjax import viz
from genjax.config import OptimizerConfig
from genjax.data import Dataset, Preprocess
from genjax.eval import ClassifierConfig, train_classifier
from genjax.models import cyclevae
from genjax.models.base import DataInfo, single
from genjax.train import TrainConfig, fit

#: The model used on speech frames (see the module doc); ``--cycle-weight`` sets cycle_weight.
SPEECH_MODEL = cyclevae.CycleVAEConfig(
    architecture="mlp",
    hidden=(256, 256),
    latent_dim=16,
    activation="relu",
    likelihood="gaussian",
    variance="pixel",
    min_variance=1e-3,
    cycle_weight=1.0,
)


def _utterances(arrays: dict) -> dict[tuple[int, int], np.ndarray]:
    out = {}
    for v, s, start, length in zip(
        arrays["utt_voice"],
        arrays["utt_sentence"],
        arrays["utt_start"],
        arrays["utt_length"],
        strict=True,
    ):
        out[(int(v), int(s))] = np.asarray(arrays["ceps"][start : start + length], np.float64)
    return out


def split(arrays: dict, num_voices: int, num_sentences: int, test_sentences: int):
    """``(train_x [F, D], train_voice [F], test_ids, utterances)``: the non-parallel training
    frames (sentence ``i`` of the training part only by voice ``i mod V``) and the test
    sentence ids (spoken by every voice)."""
    if not 1 <= test_sentences < num_sentences:
        raise ValueError(
            f"test_sentences must be in [1, {num_sentences - 1}] so that some sentences are "
            f"left for training, got {test_sentences}"
        )
    utt = _utterances(arrays)
    train_ids = range(num_sentences - test_sentences)
    test_ids = list(range(num_sentences - test_sentences, num_sentences))
    xs, vs = [], []
    for i in train_ids:
        v = i % num_voices
        xs.append(utt[(v, i)])
        vs.append(np.full(len(utt[(v, i)]), v, np.int32))
    return np.concatenate(xs), np.concatenate(vs), test_ids, utt


#: The speaker classifier's settings (one hidden layer on single frames).
CLASSIFIER = ClassifierConfig(hidden=(128,), steps=1500, batch_size=256, learning_rate=3e-3)

#: The report's headline rows: (label, metric, reference metric, reference description).
HEADLINE = [
    ["MCD after DTW (dB, lower is better; mean over seeds)", "mcd_db_cycle", "mcd_db_cycle0",
     "the same model trained with cycle weight 0"],
    ["converted test utterances heard as the target voice", "speaker_acc_cycle",
     "speaker_acc_cycle0", "cycle weight 0"],
    ["MCD after DTW, mean/variance mapping (dB)", "mcd_db_meanvar", "mcd_db_no_conversion",
     "no conversion"],
    ["heard as the target voice, mean/variance mapping", "speaker_acc_meanvar",
     "speaker_acc_no_conversion", "no conversion"],
    ["speaker classifier on the voices' own test utterances", "speaker_acc_real", "", ""],
]  # fmt: skip
HEADLINE_KEYS = ("mcd_db_cycle", "mcd_db_cycle0", "speaker_acc_cycle", "speaker_acc_cycle0")


def _history(workdir: Path) -> list[dict]:
    path = workdir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _train(task, dataset, args, seed, workdir, on_eval) -> dict:
    config = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        seed=seed,
        fuse_steps=min(250, args.steps),
        data_on_device=True,
        log_every=min(250, args.steps),
        eval_every=math.gcd(args.steps, *args.curve) if args.curve else 0,
        checkpoint_every=args.steps,
        progress=False,
    )
    return single(fit(task, dataset, config, workdir, on_eval=on_eval).state.params)


@dataclasses.dataclass
class TestSet:
    """The test utterances in model space, concatenated per voice so that one call converts
    every test sentence of a voice: ``x[s] [F_s, D]`` standardised, ``bounds[s]`` the
    ``(sentence, start, stop)`` of each utterance, ``utt`` the raw cepstra by (voice, sentence)."""

    x: dict[int, np.ndarray]
    bounds: dict[int, list[tuple[int, int, int]]]
    utt: dict[tuple[int, int], np.ndarray]
    mean: np.ndarray
    std: np.ndarray
    num_voices: int

    @classmethod
    def build(cls, utt, test_ids, num_voices, mean, std) -> TestSet:
        x, bounds = {}, {}
        for s in range(num_voices):
            parts, b, start = [], [], 0
            for n in test_ids:
                parts.append((utt[(s, n)] - mean) / std)
                b.append((n, start, start + len(utt[(s, n)])))
                start += len(utt[(s, n)])
            x[s], bounds[s] = np.concatenate(parts).astype(np.float32), b
        return cls(x, bounds, utt, mean, std, num_voices)

    def pairs(self):
        return [(s, t) for s in range(self.num_voices) for t in range(self.num_voices) if s != t]

    def split(self, s: int, frames: np.ndarray) -> dict[int, np.ndarray]:
        """Model-space frames of voice ``s``'s concatenated test set -> raw cepstra per
        sentence, with ``c_0`` (the energy) kept from the source."""
        out = {}
        for n, a, b in self.bounds[s]:
            c = np.asarray(frames[a:b], np.float64) * self.std + self.mean
            c[:, 0] = self.utt[(s, n)][:, 0]
            out[n] = c
        return out

    def converted(self, model, params, s: int, t: int) -> dict[int, np.ndarray]:
        """The Cycle VAE's conversion of voice ``s``'s test sentences to voice ``t``."""
        return self.split(s, np.asarray(cyclevae.convert(model, params, self.x[s], s, t)))


class SpeakerID:
    """Which voice speaks an utterance: an MLP classifier of single frames
    (``genjax.eval.train_classifier``) on the standardised ``c_1..c_24`` of the training frames
    (``c_0`` left out: conversions keep the source's energy); an utterance is given the voice
    of the largest summed frame log-probability."""

    def __init__(self, x_train, v_train, num_voices, mean, std):
        self.mean, self.std = mean, std
        data = Dataset(
            name="espeak-frames",
            split="train",
            features={"x": self._inputs(x_train), "label": v_train.astype(np.int32)},
            num_classes=num_voices,
        )
        self.classifier = train_classifier(data, Preprocess(scale=False), CLASSIFIER)

    def _inputs(self, ceps):
        return ((np.asarray(ceps) - self.mean) / self.std)[:, 1:].astype(np.float32)

    def voice(self, ceps: np.ndarray) -> int:
        """The voice of one utterance of raw cepstra ``[T, D]``."""
        logits = self.classifier.logits(self._inputs(ceps))
        log_p = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
        return int(np.argmax(log_p.sum(axis=0)))


def _add(results, system, pair, mcd, hit):
    entry = results.setdefault(system, {}).setdefault(pair, ([], []))
    entry[0].append(mcd)
    entry[1].append(float(hit))


def _summarise(results) -> dict:
    """``mcd_db_<system>[_<pair>]``, ``speaker_acc_<system>[_<pair>]`` (means over sentences
    and pairs) and ``speaker_acc_min_<system>`` (the worst pair)."""
    metrics = {}
    for system, pairs in results.items():
        mcds = [v for m, _ in pairs.values() for v in m]
        hits = [v for _, h in pairs.values() for v in h]
        metrics[f"mcd_db_{system}"] = float(np.mean(mcds))
        metrics[f"speaker_acc_{system}"] = float(np.mean(hits))
        metrics[f"speaker_acc_min_{system}"] = float(min(np.mean(h) for _, h in pairs.values()))
        for pair, (m, h) in sorted(pairs.items()):
            metrics[f"mcd_db_{system}_{pair}"] = float(np.mean(m))
            metrics[f"speaker_acc_{system}_{pair}"] = float(np.mean(h))
    return metrics


def evaluate_systems(model, systems, test: TestSet, speaker: SpeakerID) -> dict:
    """For each Cycle VAE in ``systems`` (name -> params): MCD (dB) after DTW against the
    target's own utterance and whether the speaker classifier hears the target voice, for
    every test sentence and ordered pair; and the reconstruction MCD (frame by frame)."""
    results: dict = {}
    metrics = {}
    for name, params in systems.items():
        recon = []
        for s in range(test.num_voices):
            for n, c in test.converted(model, params, s, s).items():
                recon.append(features.mcd(c, test.utt[(s, n)]))
        metrics[f"mcd_db_recon_{name}"] = float(np.mean(recon))
        for s, t in test.pairs():
            for n, c in test.converted(model, params, s, t).items():
                hit = speaker.voice(c) == t
                _add(results, name, f"{s}->{t}", features.mcd_dtw(c, test.utt[(t, n)]), hit)
    return {**metrics, **_summarise(results)}


def evaluate_baselines(test: TestSet, stats, speaker: SpeakerID) -> dict:
    """The same measures for no conversion (the source itself) and the mean / variance
    mapping of each coefficient (training statistics of each voice), and the classifier's
    accuracy on the voices' own test utterances (``speaker_acc_real``)."""
    results: dict = {}
    real = []
    for s, t in test.pairs():
        for n, _, _ in test.bounds[s]:
            src, tgt = test.utt[(s, n)], test.utt[(t, n)]
            _add(results, "no_conversion", f"{s}->{t}", features.mcd_dtw(src, tgt),
                 speaker.voice(src) == t)  # fmt: skip
            mv = (src - stats[s][0]) / stats[s][1] * stats[t][1] + stats[t][0]
            mv[:, 0] = src[:, 0]
            _add(results, "meanvar", f"{s}->{t}", features.mcd_dtw(mv, tgt), speaker.voice(mv) == t)
    for s in range(test.num_voices):
        real += [speaker.voice(test.utt[(s, n)]) == s for n, _, _ in test.bounds[s]]
    return {**_summarise(results), "speaker_acc_real": float(np.mean(real))}


def _mean_se(values) -> tuple[float, float]:
    v = np.asarray(values, np.float64)
    se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    return float(v.mean()), se


def _pm(mean, se, fmt="{:.3f}") -> str:
    return fmt.format(mean) + ("" if math.isnan(se) else " ± " + fmt.format(se))


SYSTEMS = ("cycle", "cycle0")


def write_table(workdir: Path, per_seed: list[dict], baselines: dict, curve: dict) -> dict:
    """``table.json`` / ``table.md``: MCD and speaker accuracy per system, mean ± standard
    error over seeds; at each training length of the curve, the same and the paired
    cycle - cycle0 difference; and per ordered pair (``s->t``, voice indices), every system."""
    rows = []
    for system in SYSTEMS:
        row = {"system": system}
        for key in ("mcd_db", "speaker_acc", "speaker_acc_min"):
            row[key] = _mean_se([m[f"{key}_{system}"] for m in per_seed])
        rows.append(row)
    for system in ("meanvar", "no_conversion"):
        row = {"system": system}
        for key in ("mcd_db", "speaker_acc", "speaker_acc_min"):
            row[key] = (baselines[f"{key}_{system}"], float("nan"))
        rows.append(row)
    lengths = []
    for step in sorted(curve, key=int):
        point = {"steps": int(step)}
        for key in ("mcd_db", "speaker_acc"):
            for system in SYSTEMS:
                point[f"{key}_{system}"] = _mean_se([m[f"{key}_{system}"] for m in curve[step]])
            point[f"{key}_diff"] = _mean_se(
                [m[f"{key}_cycle"] - m[f"{key}_cycle0"] for m in curve[step]]
            )
        lengths.append(point)
    pairs = []
    for pair in sorted(k.removeprefix("mcd_db_meanvar_") for k in baselines
                       if k.startswith("mcd_db_meanvar_")):  # fmt: skip
        row = {"pair": pair}
        for key in ("mcd_db", "speaker_acc"):
            for system in SYSTEMS:
                row[f"{key}_{system}"] = _mean_se([m[f"{key}_{system}_{pair}"] for m in per_seed])
            for system in ("meanvar", "no_conversion"):
                row[f"{key}_{system}"] = (baselines[f"{key}_{system}_{pair}"], float("nan"))
        pairs.append(row)
    table = {"seeds": len(per_seed), "systems": rows, "training_length": lengths, "pairs": pairs}
    pct = "{:.1%}"
    md = [
        f"| system | MCD after DTW, dB ({len(per_seed)} seeds) | target voice heard | worst pair |",
        "|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['system']} | {_pm(*r['mcd_db'])} | {_pm(*r['speaker_acc'], pct)} | "
            f"{_pm(*r['speaker_acc_min'], pct)} |"
        )
    md += [
        "",
        "| steps | MCD cycle | MCD cycle0 | cycle - cycle0 (paired) "
        "| heard, cycle | heard, cycle0 |",
        "|---|---|---|---|---|---|",
    ]
    for p in lengths:
        md.append(
            f"| {p['steps']} | {_pm(*p['mcd_db_cycle'])} | {_pm(*p['mcd_db_cycle0'])} | "
            f"{_pm(*p['mcd_db_diff'])} | {_pm(*p['speaker_acc_cycle'], pct)} | "
            f"{_pm(*p['speaker_acc_cycle0'], pct)} |"
        )
    names = (*SYSTEMS, "meanvar", "no_conversion")
    md += [
        "",
        "| pair | " + " | ".join(f"heard, {n}" for n in names) + " | "
        + " | ".join(f"MCD {n}" for n in names) + " |",
        "|---" * (1 + 2 * len(names)) + "|",
    ]  # fmt: skip
    for p in pairs:
        cells = [_pm(*p[f"speaker_acc_{n}"], pct) for n in names]
        cells += [_pm(*p[f"mcd_db_{n}"]) for n in names]
        md.append(f"| {p['pair']} | " + " | ".join(cells) + " |")
    (workdir / "table.json").write_text(json.dumps(table, indent=2) + "\n")
    (workdir / "table.md").write_text("\n".join(md) + "\n")
    return table


def _spectrogram(path, clips, meta, n):
    viz.spectrograms(
        [features.log_mel_from_cepstrum(c, meta["n_mels"]) for _, c in clips],
        path,
        titles=[label for label, _ in clips],
        title=f'"{meta["sentences"][n]}" (mel spectra rebuilt from c_0..c_24)',
        ylabel="mel band",
        frame_seconds=meta["hop_s"],
    )


def write_audio(workdir, model, systems, test: TestSet, meta, sentences) -> list[dict]:
    """WAV files (``audio.invert``) for the given test sentences: every voice's source and
    its reconstruction, and every pair's conversions; one spectrogram figure per pair of the
    first sentence. Returns the report's entries (figure and clips, paths relative to
    ``workdir``)."""
    rate, voices = meta["sample_rate"], meta["voices"]

    def wav(name, c):
        signal = audio.invert(c, rate, n_mels=meta["n_mels"], n_fft=meta["n_fft"])
        return audio.write_wav(workdir / "audio" / name, signal, rate).relative_to(workdir)

    converted = {
        (name, s, t): test.converted(model, params, s, t)
        for name, params in systems.items()
        for s in range(test.num_voices)
        for t in range(test.num_voices)
    }
    entries = []
    for k, n in enumerate(sentences):
        files = {}
        for s in range(test.num_voices):
            files[("source", s)] = wav(f"s{n}_{s}_source.wav", test.utt[(s, n)])
            files[("recon", s)] = wav(f"s{n}_{s}_recon_cycle.wav", converted[("cycle", s, s)][n])
            for t in range(test.num_voices):
                for name in systems:
                    if t != s:
                        c = converted[(name, s, t)][n]
                        files[(name, s, t)] = wav(f"s{n}_{s}-to-{t}_{name}.wav", c)
        if k:
            continue
        for s, t in test.pairs():
            clips = [(f"source: {voices[s]}", test.utt[(s, n)], files[("source", s)])]
            for name in systems:
                label = f"converted to {voices[t]} ({name})"
                clips.append((label, converted[(name, s, t)][n], files[(name, s, t)]))
            clips.append((f"target: {voices[t]} (same sentence)", test.utt[(t, n)],
                          files[("source", t)]))  # fmt: skip
            figure = workdir / "figures" / f"pair_{s}-{t}.png"
            _spectrogram(figure, [(label, c) for label, c, _ in clips], meta, n)
            entries.append(
                {
                    "title": f"{voices[s]} -> {voices[t]}",
                    "figure": str(figure.relative_to(workdir)),
                    "clips": [[label, str(f)] for label, _, f in clips],
                }
            )
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="directory of the run")
    parser.add_argument("--data", default="", help="prepared data (default: WORKDIR/data)")
    parser.add_argument("--voices", default=",".join(prepare.DEFAULT_VOICES))
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--cycle-weight", type=float, default=SPEECH_MODEL.cycle_weight)
    parser.add_argument("--test-sentences", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 of each system")
    parser.add_argument(
        "--curve",
        default="1000,2000,4000",
        help="comma-separated training steps (below --steps) also evaluated ('' for none)",
    )
    parser.add_argument("--audio-sentences", type=int, default=2, help="test sentences as WAV")
    args = parser.parse_args(argv)
    try:
        args.curve = sorted({int(v) for v in args.curve.split(",") if v.strip()})
    except ValueError:
        parser.error(f"--curve must be comma-separated integers, got {args.curve!r}")
    if any(not 0 < c < args.steps for c in args.curve):
        parser.error(f"--curve steps must lie in (0, --steps={args.steps}), got {args.curve}")
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    if not 0 <= args.audio_sentences <= args.test_sentences:
        parser.error(
            f"--audio-sentences must be in [0, --test-sentences], got {args.audio_sentences}"
        )
    workdir = Path(args.workdir).expanduser().absolute()
    data_dir = Path(args.data) if args.data else workdir / "data"
    t0 = time.perf_counter()
    if not (data_dir / "frames.npz").exists():
        if not prepare.espeak_available():
            print(f"skipped: {prepare.INSTALL_HINT}", file=sys.stderr)
            return 0
        voices = tuple(v.strip() for v in args.voices.split(",") if v.strip())
        print(f"synthesising {len(prepare.SENTENCES)} sentences x {len(voices)} voices ...")
        prepare.prepare(data_dir, voices=voices)
    arrays, meta = prepare.load(data_dir)
    num_voices, num_sentences = len(meta["voices"]), len(meta["sentences"])
    x_train, v_train, test_ids, utt = split(arrays, num_voices, num_sentences, args.test_sentences)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-8
    stats = {
        v: (x_train[v_train == v].mean(axis=0), x_train[v_train == v].std(axis=0) + 1e-8)
        for v in range(num_voices)
    }
    test = TestSet.build(utt, test_ids, num_voices, mean, std)
    speaker = SpeakerID(x_train, v_train, num_voices, mean, std)
    baselines = evaluate_baselines(test, stats, speaker)
    dataset = Dataset(
        name="espeak-frames",
        split="train",
        features={"x": ((x_train - mean) / std).astype(np.float32), "label": v_train},
        num_classes=num_voices,
    )
    # Standardised cepstra: not in [0, 1] (the model's likelihood is Gaussian).
    info = DataInfo(
        shape=(x_train.shape[1],), num_classes=num_voices, name="espeak-frames", unit_interval=False
    )
    m = dataclasses.replace(SPEECH_MODEL, cycle_weight=args.cycle_weight)
    optimizer = OptimizerConfig(learning_rate=1e-3, cosine_decay=True).build(args.steps)
    per_seed, curve, first = [], {str(c): [] for c in args.curve}, {}
    for seed in range(args.seeds):
        systems, points = {}, {c: {} for c in args.curve}
        for name, weight in (("cycle", m.cycle_weight), ("cycle0", 0.0)):
            objective = dataclasses.replace(m, cycle_weight=weight).objective(info)
            model, task = objective.model, objective.task(optimizer)
            run_dir = workdir / f"seed{seed}" / name
            cache = run_dir / "curve.json"
            done = json.loads(cache.read_text()) if cache.exists() else {}

            def on_eval(step, params, _state, model=model, name=name, done=done, cache=cache):
                if step in args.curve:
                    done[str(step)] = evaluate_systems(model, {name: single(params)}, test, speaker)
                    cache.write_text(json.dumps(done, indent=2) + "\n")

            systems[name] = _train(task, dataset, args, seed, run_dir, on_eval)
            missing = [c for c in args.curve if str(c) not in done]
            if missing:
                raise SystemExit(
                    f"error: {run_dir} is a finished run without its curve at steps {missing}; "
                    "use another --workdir"
                )
            for c in args.curve:
                points[c].update(done[str(c)])
        metrics = evaluate_systems(model, systems, test, speaker)
        per_seed.append(metrics)
        for c in args.curve:
            curve[str(c)].append(points[c])
        if seed == 0:
            first = systems
        print(f"seed {seed}: " + ", ".join(f"{k} {metrics[k]:.3f}" for k in HEADLINE_KEYS))
    curve[str(args.steps)] = per_seed
    table = write_table(workdir, per_seed, baselines, curve)
    entries = write_audio(workdir, model, first, test, meta, test_ids[: args.audio_sentences])
    figures = workdir / "figures"
    viz.curves(
        [r for r in _history(workdir / "seed0" / "cycle") if r.get("split") == "train"],
        ["elbo", "cycle_elbo"],
        figures / "training_curve.png",
        title="train ELBO per frame (direct and cycled), seed 0",
        ylabel="nats / frame",
    )
    metrics = {**baselines}
    for key in per_seed[0]:
        metrics[key], se = _mean_se([m[key] for m in per_seed])
        if not math.isnan(se) and "->" not in key:
            metrics[f"{key}_se"] = se
    summary = {
        "model": "cyclevae",
        "dataset": "espeak-frames",
        "voices": meta["voices"],
        "train_frames": len(x_train),
        "train_sentences": num_sentences - len(test_ids),
        "test_sentences": len(test_ids),
        "steps": args.steps,
        "seeds": args.seeds,
        "cycle_weight": m.cycle_weight,
        "wall_s": time.perf_counter() - t0,
        "headline": HEADLINE,
        "metrics": metrics,
        "per_seed": per_seed,
        "table": table,
        "audio": entries,
    }
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print((workdir / "table.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
