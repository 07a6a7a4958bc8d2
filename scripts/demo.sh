#!/usr/bin/env bash
# Installs vidindex (into .venv unless a virtual environment is active) and runs the embedded
# default end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
python3 -m pip install -q -e .
vidindex demo "$@"
