"""The demo: train every registered model on the bundled `digits` set, offline.

    python -m experiments.demo [--out runs/demo] [--quick]

Each model trains through the experiment command's own machinery into ``OUT/<name>/``; a
finished model is not retrained, an interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments import report, train

#: (work directory name, model, dataset, --set overrides)
ENTRIES: list[tuple[str, str, str, list[str]]] = [
    ("ppca", "ppca", "digits", []),
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
