"""The Cycle VAE on speech: frame-wise conversion between espeak-ng voices, measured by the
mel-cepstral distortion (MCD) against the same sentence spoken by the target voice.

    python -m experiments.speech.run --workdir runs/cyclevae-speech [--steps 6000]

(optional experiment: needs the ``espeak-ng`` program, Debian package ``espeak-ng``; without it
the command prints why it skips and exits with status 0). Steps:

1. Data (``experiments.speech.prepare``, into ``WORKDIR/data`` unless ``--data`` points to a
   prepared directory): every sentence spoken by every voice, as mel-cepstra ``c_0..c_24``.
2. Split: the last ``--test-sentences`` sentences are the test set, spoken by every voice.
   The other sentences are dealt out to the voices in turn (sentence ``i`` to voice
   ``i mod V``), so no sentence is heard from two voices in training: the training data is
   **non-parallel**, as in Tobing et al. (2019). Frames are standardised per coefficient with
   the training mean and deviation.
3. Training (the library's engine, ``genjax.train.fit``): the Cycle VAE on single frames
   (MLP, Gaussian likelihood with a learned per-coefficient variance, the voice index as the
   domain code) into ``WORKDIR/cycle``, and the same model with cycle weight 0 into
   ``WORKDIR/cycle0``.
4. Evaluation, for every test sentence and ordered voice pair ``s -> t``: the frames of voice
   ``s`` are converted to ``t`` (``genjax.models.cyclevae.convert``), ``c_0`` (the energy) is
   kept from the source, and the result is compared with voice ``t``'s own utterance of the
   sentence by the MCD along their DTW alignment (``features.mcd_dtw``). Reported beside it:
   the MCD without conversion (source against target), and a classic baseline, the
   per-coefficient mean and variance of the source voice mapped to those of the target voice
   (statistics of the training frames of each voice), plus the reconstruction MCD (frames
   converted to their own voice, frame by frame).

Output in ``WORKDIR``: ``summary.json`` (``{"model", "dataset", "metrics": {...}}``: MCD in dB
per system, mean over all test sentences and pairs, and per pair), ``figures/spectrograms.png``
(one test sentence: the source, the two conversions and the target, as mel spectra rebuilt
from the 25 cepstra) and ``figures/training_curve.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from experiments.speech import features, prepare
from genjax import viz
from genjax.config import OptimizerConfig
from genjax.data import Dataset
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


def _train(task, dataset, steps, batch_size, seed, workdir) -> dict:
    config = TrainConfig(
        steps=steps,
        batch_size=batch_size,
        seed=seed,
        fuse_steps=min(250, steps),
        data_on_device=True,
        log_every=min(250, steps),
        checkpoint_every=steps,
        progress=False,
    )
    return single(fit(task, dataset, config, workdir).state.params)


def evaluate(model, systems, utt, test_ids, num_voices, mean, std, stats) -> dict:
    """MCD (dB) after DTW for every system, test sentence and ordered voice pair."""
    results: dict[str, dict[str, list[float]]] = {}

    def add(system, pair, value):
        results.setdefault(system, {}).setdefault(pair, []).append(value)

    for n in test_ids:
        for s in range(num_voices):
            src = utt[(s, n)]
            x = jnp.asarray((src - mean) / std, jnp.float32)
            for name, params in systems.items():
                recon = np.asarray(cyclevae.reconstruct(model, params, x, s)) * std + mean
                add(f"recon_{name}", "all", features.mcd(recon, src))
            for t in range(num_voices):
                if t == s:
                    continue
                tgt, pair = utt[(t, n)], f"{s}->{t}"
                add("no_conversion", pair, features.mcd_dtw(src, tgt))
                mv = (src - stats[s][0]) / stats[s][1] * stats[t][1] + stats[t][0]
                mv[:, 0] = src[:, 0]
                add("meanvar", pair, features.mcd_dtw(mv, tgt))
                for name, params in systems.items():
                    out = np.asarray(cyclevae.convert(model, params, x, s, t))
                    out = out * std + mean
                    out[:, 0] = src[:, 0]  # the energy stays the source's
                    add(name, pair, features.mcd_dtw(out, tgt))
    metrics = {}
    for system, pairs in results.items():
        values = [v for vs in pairs.values() for v in vs]
        metrics[f"mcd_db_{system}"] = float(np.mean(values))
        if system.startswith("recon_"):
            continue
        for pair, vs in sorted(pairs.items()):
            metrics[f"mcd_db_{system}_{pair}"] = float(np.mean(vs))
    return metrics


def _figure(path, model, systems, utt, meta, n, s, t, mean, std):
    n_mels = meta["n_mels"]
    src, tgt = utt[(s, n)], utt[(t, n)]
    x = jnp.asarray((src - mean) / std, jnp.float32)
    panels = [features.log_mel_from_cepstrum(src, n_mels)]
    titles = [f"source: voice {meta['voices'][s]}"]
    for name, params in systems.items():
        out = np.asarray(cyclevae.convert(model, params, x, s, t)) * std + mean
        out[:, 0] = src[:, 0]
        panels.append(features.log_mel_from_cepstrum(out, n_mels))
        titles.append(f"converted to {meta['voices'][t]} ({name})")
    panels.append(features.log_mel_from_cepstrum(tgt, n_mels))
    titles.append(f"target: voice {meta['voices'][t]} (same sentence)")
    viz.spectrograms(
        panels,
        path,
        titles=titles,
        title=f'"{meta["sentences"][n]}" (mel spectra rebuilt from c_0..c_24)',
        ylabel="mel band",
        frame_seconds=meta["hop_s"],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="directory of the run")
    parser.add_argument("--data", default="", help="prepared data (default: WORKDIR/data)")
    parser.add_argument("--voices", default=",".join(prepare.DEFAULT_VOICES))
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--cycle-weight", type=float, default=SPEECH_MODEL.cycle_weight)
    parser.add_argument("--test-sentences", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
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
    systems = {}
    for name, weight in (("cycle", m.cycle_weight), ("cycle0", 0.0)):
        objective = dataclasses.replace(m, cycle_weight=weight).objective(info)
        model, task = objective.model, objective.task(optimizer)
        systems[name] = _train(
            task, dataset, args.steps, args.batch_size, args.seed, workdir / name
        )
    metrics = evaluate(model, systems, utt, test_ids, num_voices, mean, std, stats)
    figures = workdir / "figures"
    _figure(figures / "spectrograms.png", model, systems, utt, meta, test_ids[0], 0, 1, mean, std)
    history = [
        json.loads(line)
        for line in (workdir / "cycle" / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]
    viz.curves(
        [r for r in history if r.get("split") == "train"],
        ["elbo", "cycle_elbo"],
        figures / "training_curve.png",
        title="train ELBO per frame (direct and cycled)",
        ylabel="nats / frame",
    )
    summary = {
        "model": "cyclevae",
        "dataset": "espeak-frames",
        "voices": meta["voices"],
        "train_frames": len(x_train),
        "test_sentences": len(test_ids),
        "steps": args.steps,
        "cycle_weight": m.cycle_weight,
        "wall_s": time.perf_counter() - t0,
        "metrics": metrics,
    }
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for key in sorted(k for k in metrics if k.count("_") <= 3 or k.startswith("mcd_db_recon")):
        if "->" not in key:
            print(f"{key:32s} {metrics[key]:.3f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
