#!/usr/bin/env bash
# Install (into .venv) and run the whole test suite, lint and format check included.
source "$(dirname "$0")/_venv.sh" "[test]"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest -n 2 --dist loadgroup -q "$@"
