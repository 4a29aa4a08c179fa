#!/usr/bin/env bash
# Install twin with its test tools (Python, Node and Debian packages) and run the whole
# test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-system.sh
scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
