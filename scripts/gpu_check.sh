#!/usr/bin/env bash
# The GPU check in one command: the tests that matter on an accelerator, the benchmark with
# the PyTorch twin, and an epoch of every model in float32 and bfloat16; writes
# OUTDIR/gpu_check.json and OUTDIR/gpu_check.md (benchmarks/gpu_check.py says what is in
# them). About 5 minutes on one GPU; --dry-run shrinks every size to run on a CPU.
#   scripts/gpu_check.sh OUTDIR [--dry-run] [benchmarks.gpu_check options]
# It needs no network and installs nothing into the interpreter: $GPU_CHECK_PYTHON (default
# python3, the machine's own) runs it with the checkout on PYTHONPATH and the wheels of
# wheelhouse/ (scripts/gpu_wheelhouse.sh) unpacked offline into a scratch folder.
set -euo pipefail
if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
  echo "usage: scripts/gpu_check.sh OUTDIR [--dry-run] [options]" >&2
  exit 2
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
PY="${GPU_CHECK_PYTHON:-python3}"
mkdir -p "$1"
outdir="$(cd "$1" && pwd)"
shift
site="$(mktemp -d "${TMPDIR:-/tmp}/genjax-gpu-site.XXXXXX")"
trap 'rm -rf "$site"' EXIT
wheels=("$root"/wheelhouse/*.whl)
if [ -e "${wheels[0]}" ]; then
  "$PY" -m pip install --quiet --disable-pip-version-check --no-index --no-deps --no-compile \
    --no-cache-dir --target "$site" "${wheels[@]}"
else
  echo "scripts/gpu_check.sh: no wheelhouse/ (scripts/gpu_wheelhouse.sh makes it)" >&2
fi
export PYTHONPATH="$root:$site${PYTHONPATH:+:$PYTHONPATH}"
# jax, the PyTorch twin and the test workers share one GPU: no up-front 75% for jax.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg TF_CPP_MIN_LOG_LEVEL=3
cd "$root"
"$PY" -m benchmarks.gpu_check "$outdir" "$@"
