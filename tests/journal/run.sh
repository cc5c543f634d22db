#!/usr/bin/env bash
# The journal tests (tests/journal): real `interlock serve --journal` processes, real
# kill -9, real SQLite files in temporary directories, the sqlite3 command line.
# Installs what they need (the sqlite3 command line from Debian if it is missing, the
# `interlock` binary via cargo, the Python package into .venv via py/install-venv.sh),
# then runs pytest; arguments go to pytest (e.g. --trials 20 -k restart).
#   JOURNAL_TRIALS=N        crash trials of test_crash.py (default 100; and a third of
#                           that many more on a slow disk)
#   JOURNAL_SKIP_INSTALL=1  use the binary and .venv as they are
#   JOURNAL_SETUP_ONLY=1    install, run nothing (crash-1000.sh uses this)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/interlock-target}"
export INTERLOCK_BIN="${INTERLOCK_BIN:-$CARGO_TARGET_DIR/debug/interlock}"

# The sqlite3 command line (the history is checked with it, as a user would), strace
# (test_power_cut.py watches the order of fsync and answers) and a C compiler (the
# crash trials build slowdisk.c), from Debian if missing; as root without sudo.
missing=()
command -v sqlite3 >/dev/null || missing+=(sqlite3)
command -v strace >/dev/null || missing+=(strace)
command -v cc >/dev/null || missing+=(gcc libc6-dev)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} (Debian packages)"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ "${JOURNAL_SKIP_INSTALL:-0}" != 1 ]; then
    (cd "$root" && cargo build --quiet -p interlock-cli)
    bash "$root/py/install-venv.sh" "pytest>=8" "pytest-timeout>=2.3"
fi
[ "${JOURNAL_SETUP_ONLY:-0}" = 1 ] && exit 0

cd "$here"
exec "$root/.venv/bin/python" -m pytest "$@"
