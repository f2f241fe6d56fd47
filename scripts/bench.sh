#!/usr/bin/env bash
# Install (into .venv) the package plus the benchmark extra (torch, CPU wheel) and run the
# unified benchmark: genjax vs PyTorch step throughput and the matmul roofline.
#   scripts/bench.sh [--models vae_mlp gan_mlp ...] [--batch 128 512] [--out results.json]
source "$(dirname "$0")/_venv.sh" "[bench]"
exec .venv/bin/python -m benchmarks.run "$@"
