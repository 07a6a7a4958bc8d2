#!/usr/bin/env bash
# Installs vidindex and runs the embedded default end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q "torch==2.13.0"
python3 -m pip install -q -e .
vidindex demo "$@"
