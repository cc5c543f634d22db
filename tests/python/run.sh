#!/usr/bin/env bash
# The Python tests: builds and installs the package into .venv (see py/install-venv.sh),
# checks the stub with stubtest and runs pytest against the installed package, twice:
# with every engine embedded, then with every engine remote (README.md). Arguments go to
# pytest; INTERLOCK_TEST_ENGINE=embedded or =remote runs that mode only.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# FastAPI, uvicorn and websockets (the extra `interlock[fastapi]`): mypy checks the whole
# package, interlock.compat included.
bash "$root/py/install-venv.sh" "pytest>=8" "pytest-timeout>=2.3" "mypy>=1.11" \
    "fastapi>=0.110" "uvicorn>=0.29" "websockets>=12"
py="$root/.venv/bin/python"
export MYPY_CACHE_DIR="$root/.venv/mypy-cache"  # stubtest and mypy: no cache in the tree

# From outside the source tree, so that the installed package is the one imported.
cd "$root/tests/python"
echo "stubtest: interlock._interlock"
"$py" -m mypy.stubtest interlock._interlock
echo "mypy --strict: the package, and the example as a user's code sees the stub"
mypy=("$py" -m mypy --strict)
"${mypy[@]}" -p interlock
"${mypy[@]}" "$root/examples/python/optimizer.py"
echo "mypy: the tests use the API as the stub types it"
"$py" -m mypy .
# Both modes run even if the first fails; the script fails if either did.
modes=(embedded remote)
if [ -n "${INTERLOCK_TEST_ENGINE:-}" ]; then
    modes=("$INTERLOCK_TEST_ENGINE")
fi
failed=0
for mode in "${modes[@]}"; do
    echo "pytest: every engine $mode"
    "$py" -m pytest --engine="$mode" "$@" || failed=1
done
exit "$failed"
