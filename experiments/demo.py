"""The demo: train every registered model on the bundled `digits` set, offline.

    python -m experiments.demo [--out runs/demo]

Each model trains through the experiment command's own machinery into ``OUT/<name>/``; a
finished model is not retrained, an interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments import report, train

#: (work directory name, model, dataset, --set overrides). Each model's own digits config,
#: shortened where the full one takes more than about a minute on a 2-core CPU, so the whole
#: demo (installation included) stays within 10 minutes; the full runs are the experiments'
#: defaults (see the README's results).
ENTRIES: list[tuple[str, str, str, list[str]]] = [
    ("ppca", "ppca", "digits", []),
    ("vae", "vae", "digits", []),
    (
        "gan-ring8",
        "gan",
        "ring8",
        [
            "train.steps=6000",
            "model.r1_steps=3000",
            "train.eval_every=1500",
            "train.checkpoint_every=1500",
        ],
    ),
    ("gan-digits", "gan", "digits", []),
    (
        "vqvae",
        "vqvae",
        "digits",
        [
            "train.steps=1500",
            "model.prior_steps=500",
            "eval.compare=",
            "train.eval_every=500",
            "train.checkpoint_every=500",
        ],
    ),
    ("cyclevae", "cyclevae", "digits", ["train.steps=4000"]),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo", help="where the runs are written")
    args = parser.parse_args(argv)
    out = Path(args.out)
    for i, (name, model, dataset, overrides) in enumerate(ENTRIES, 1):
        print(f"[{i}/{len(ENTRIES)}] {model} on {dataset} -> {out / name}", file=sys.stderr)
        argv_run = ["--model", model, "--dataset", dataset, "--workdir", str(out / name)]
        for item in overrides:
            argv_run += ["--set", item]
        code = train.main(argv_run)
        if code != 0:
            return code
    path = report.write_report(out)
    print(f"report: {path.absolute()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
