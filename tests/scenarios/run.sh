#!/usr/bin/env bash
# The cross-process scenarios (make test-scenarios): two Python processes, a C program
# and an Octave MEX session sharing one `interlock serve`; kill -9 of a holder; network
# cuts through a TCP proxy (proxy.py) with a fence-checking device (device.py). See the
# docstrings of harness.py and of each test_*.py.
# Installs what they need: gcc and Octave from Debian if missing, the C library, the
# `interlock` command and the MEX gateway (tests/c/native.sh, as tests/c does), the C
# worker, and the Python package with pytest and mypy into .venv (py/install-venv.sh);
# then type-checks the scenarios and runs pytest, to which arguments go (e.g. -k network
# -x). Logs of every process of a test go to $CARGO_TARGET_DIR/scenarios/logs/TEST/; the
# measurements are printed at the end. The suite takes about 1.5 minutes.
#   SCENARIO_SKIP_INSTALL=1  use the builds and .venv as they are
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/interlock-target}"
export SCENARIO_BUILD="$CARGO_TARGET_DIR/scenarios"

if [ "${SCENARIO_SKIP_INSTALL:-0}" != 1 ]; then
  source tests/c/native.sh
  need_debs cc:gcc mkoctfile:"octave liboctave-dev"
  build_native
  build_mex "$SCENARIO_BUILD"
  echo "== building the C worker"
  cc -std=gnu11 -O1 -g -Wall -Wextra -Werror -Iinclude tests/scenarios/worker_c.c "$LIB" \
    -lpthread -ldl -lm -o "$SCENARIO_BUILD/worker_c"
  echo "== installing the Python package into .venv"
  bash py/install-venv.sh "pytest>=8" "pytest-timeout>=2.3" "mypy>=1.11"
fi

cd tests/scenarios
echo "== mypy: the scenarios"
"$root/.venv/bin/python" -m mypy --ignore-missing-imports --cache-dir "$SCENARIO_BUILD/mypy" .
exec "$root/.venv/bin/python" -m pytest "$@"
