#!/usr/bin/env bash
# Install twin, build the demo cities and serve them on http://127.0.0.1:${PORT:-8000}/.
# Extra arguments go to `twin demo` (e.g. --no-serve, --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
TWIN_SKIP_NODE=1 scripts/setup.sh  # the demo needs no Node tools
exec .venv/bin/twin demo --port "${PORT:-8000}" "$@"
