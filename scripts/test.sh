#!/usr/bin/env bash
# Install (into .venv) and run the whole test suite, lint and format check included.
# Installs everything the tests need, so that none skips (with CI set, tests/conftest.py
# fails a skipped test): the Debian programs below, and the `test`, `bench` and `speech`
# extras (the suite checks the benchmark's PyTorch twins and the speech audio).
set -euo pipefail

# Debian packages the tests run, as "program:package": headless Chromium loads the report page
# (tests/experiments/test_report.py); espeak-ng synthesises the speech data
# (tests/models/test_cyclevae.py).
system_deps=(chromium:chromium espeak-ng:espeak-ng)
missing=()
for dep in "${system_deps[@]}"; do
  command -v "${dep%%:*}" >/dev/null 2>&1 || missing+=("${dep#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "scripts/test.sh: apt-get install ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "scripts/test.sh: missing Debian packages, their tests will skip (and fail under CI):" \
      "as root, apt-get install -y --no-install-recommends ${missing[*]}" >&2
  fi
fi

source "$(dirname "$0")/_venv.sh" "[test,bench,speech]"
# The reference the Flax InceptionV3 (genjax/eval/inception.py) is tested against: torch-fidelity's
# FID feature extractor, pure PyTorch. Its metadata asks for torchvision, which the test never
# imports and whose PyPI build does not load against the CPU torch, so it goes in without deps.
if ! .venv/bin/python -c 'import importlib.util as u, sys; sys.exit(u.find_spec("torch_fidelity") is None)'; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps torch-fidelity==0.3.0
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest -n 2 --dist loadgroup -q "$@"
