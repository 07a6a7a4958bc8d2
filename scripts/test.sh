#!/usr/bin/env bash
# Installs what the tests need and runs them. On a CPU-only machine `torch==2.13.0`
# resolves to the local CPU build, so no CUDA packages are downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q "torch==2.13.0"
python3 -m pip install -q -e ".[test]"
python3 -m pytest -q "$@"
