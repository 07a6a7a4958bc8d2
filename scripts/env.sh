# Sourced by demo.sh and test.sh: use the active virtual environment, else create and use
# .venv. Stock Debian/Ubuntu Pythons refuse `pip install` outside one (externally managed).
if ! python3 -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)' 2>/dev/null; then
    if [ ! -x .venv/bin/python3 ]; then
        python3 -m venv .venv || {
            echo "could not create .venv: install Python's venv module (e.g. apt-get install python3-venv)" >&2
            exit 1
        }
    fi
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi
# On a CPU-only machine torch==2.13.0 resolves to the local CPU build: no CUDA packages.
python3 -m pip install -q "torch==2.13.0"
