#!/usr/bin/env bash
# Installs what the tests need (into .venv unless a virtual environment is active) and runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
python3 -m pip install -q -e ".[test]"
python3 -m pytest -q "$@"
