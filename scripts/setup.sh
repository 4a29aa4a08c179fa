#!/usr/bin/env bash
# Install twin and its test tools: Python packages into ./.venv (created if missing) and the
# Node tools of js/ (the Khronos glTF validator) with npm. Idempotent: a second run only
# checks. Used by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "twin needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
fi
# Reinstall only when pyproject.toml changed since the last install.
stamp=.venv/.twin-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
    touch "$stamp"
fi

# Node tools for the tests (pinned in js/package-lock.json).
if [ "${TWIN_SKIP_NODE:-}" != 1 ]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "npm is missing: install Node.js (Debian: apt-get install nodejs npm) for the glTF checks" >&2
        exit 1
    fi
    if [ ! -d js/node_modules ] || [ js/package-lock.json -nt js/node_modules ]; then
        (cd js && npm ci --no-audit --no-fund --loglevel=error)
        touch js/node_modules
    fi
fi
