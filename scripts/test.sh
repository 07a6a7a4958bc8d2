#!/usr/bin/env bash
# Installs what the tests need (into .venv unless a virtual environment is active) and runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
python3 -m pip install -q -e ".[test]"
# The browser test of `vidindex serve` drives the OS Chromium (Playwright's own download cannot
# be reached from every machine). Without one, and without a way to install it, that test skips.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
        || echo "could not install chromium: the browser test will be skipped" >&2
fi
python3 -m pytest -q "$@"
