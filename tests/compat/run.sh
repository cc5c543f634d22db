#!/usr/bin/env bash
# The tests of interlock.compat: builds and installs the package with what the compat
# modules and their seeds' clients need into .venv (py/install-venv.sh), checks the compat
# package with mypy --strict, checks that the parts without FastAPI import without it, and
# runs pytest against the installed package. Arguments go to pytest.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bash "$root/py/install-venv.sh" "fastapi>=0.110" "uvicorn>=0.29" "requests>=2.28" \
    "aiohttp>=3.9" "websockets>=12" "pytest>=8" "pytest-timeout>=2.3" "mypy>=1.11"
py="$root/.venv/bin/python"
export MYPY_CACHE_DIR="$root/.venv/mypy-cache"

# From outside the source tree, so that the installed package is the one imported.
cd "$root/tests/compat"
echo "mypy --strict: interlock.compat"
"$py" -m mypy --strict -p interlock.compat
echo "mypy: the tests"
"$py" -m mypy --ignore-missing-imports .
"$py" -m pytest "$@"
