#!/usr/bin/env bash
# Makes the virtual environment .venv at the repository root (on first use) and builds
# and (re)installs the package from ./py into it, together with any requirements given
# as arguments. Used by tests/python/run.sh and examples/python/run.sh; needs Python
# 3.9+ and a Rust toolchain. Prints nothing but errors.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/interlock-target}"
export PATH="$venv/bin:$PATH"  # the build backend runs `maturin` from PATH

if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" "maturin>=1.7,<2" "$@"
# Every run builds and reinstalls the package, so nobody runs a stale build (cargo
# reuses what is unchanged in CARGO_TARGET_DIR).
"${pip[@]}" --force-reinstall --no-deps --no-build-isolation "$root/py"
