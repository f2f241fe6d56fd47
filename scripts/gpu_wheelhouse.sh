#!/usr/bin/env bash
# Download into wheelhouse/ (git-ignored) the pure-Python wheels that scripts/gpu_check.sh
# needs on a GPU machine with no network and not in its image: tensorboardX (the engine's
# TensorBoard logs and tests/train/test_metrics_log.py; its protobuf is there). Run here,
# with a network; the folder travels with the checkout (a few hundred KB).
#   scripts/gpu_wheelhouse.sh            # PYTHON=python3 by default
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
pins=(tensorboardX==2.6.5)
mkdir -p wheelhouse
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp --dest wheelhouse "${pins[@]}"
ls -l wheelhouse
du -sh wheelhouse
