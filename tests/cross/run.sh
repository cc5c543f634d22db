#!/usr/bin/env bash
# The cross-process tests: real `interlock serve` processes on loopback, driven over HTTP,
# WebSocket and Server-Sent Events from Python (auth matrix, schemathesis, bad frames,
# limits). Builds and installs the package into .venv (see py/install-venv.sh) with the
# test tools, and runs the server as the package's `interlock` console script, so that
# what is tested is what is installed. Arguments go to pytest. Exits non-zero on any
# failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bash "$root/py/install-venv.sh" "requests>=2.31" "schemathesis>=4.3,<5" "websockets>=14" \
    "pytest>=8" "pytest-timeout>=2.3"
export INTERLOCK_BIN="$root/.venv/bin/interlock"
cd "$root/tests/cross"
started=$(date +%s)
status=0
"$root/.venv/bin/python" -m pytest "$@" || status=$?
echo "tests/cross: $(( $(date +%s) - started )) s"
exit "$status"
