#!/usr/bin/env bash
# The prepared one-GPU check: `mm1 bench gpu` (see benchmarks/README.md).
# Usage: benchmarks/gpu_check.sh [--root DIR] [--steps N] [--warmup N] [--paths dense,varlen] [--tiny]
# Prints one JSON line and a table; exits 1 when a correctness check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python}
if [ -x .venv/bin/python ]; then python=.venv/bin/python; fi
exec "$python" -m mm1 bench gpu "$@"
