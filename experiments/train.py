"""The experiment command: genjax's training command with the experiments' models.

    python -m experiments.train --model MODEL --dataset NAME --workdir DIR [--set key=value ...]

It is :func:`genjax.cli.main` (the installed ``genjax-train``, with the same options, work
directories and exit codes) given this package's specs (``experiments.registry``): the
tuned configuration of each model on each dataset, the published metrics, the figures and
the report's tables.
"""

from __future__ import annotations

import sys

from experiments import registry
from genjax import cli


def main(argv: list[str] | None = None) -> int:
    return cli.main(argv, catalog=registry)


if __name__ == "__main__":
    sys.exit(main())
