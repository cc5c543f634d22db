#!/usr/bin/env bash
# The Python demo: installs the package into .venv (shared with the Python tests, see
# py/install-venv.sh) and runs the optimizer example.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bash "$root/py/install-venv.sh"
echo "== Python: an optimizer, a monitor and a maintenance task share one reactor"
"$root/.venv/bin/python" "$root/examples/python/optimizer.py"
