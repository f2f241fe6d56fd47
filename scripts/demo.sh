#!/usr/bin/env bash
# Install (into .venv) and run the demo: train the model family offline on `digits`.
source "$(dirname "$0")/_venv.sh" ""
exec .venv/bin/python -m experiments.demo "$@"
