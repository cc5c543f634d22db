#!/usr/bin/env bash
# The dashboard tests (the page in a real browser) and the test of `interlock watch` (in a
# real terminal). Installs what they need, then runs pytest; arguments go to pytest.
#   1. Debian's chromium and tmux, if missing (needs root, or sudo). The browser is
#      Debian's: Playwright drives it by its path, and never downloads a build of its own
#      (so never run `playwright install`: the lab and CI machines have no internet).
#   2. playwright and pytest into the repository's .venv, with the interlock package
#      (py/install-venv.sh); the lock clients of the tests use that package.
#   3. the `interlock` binary (cargo, debug, into $CARGO_TARGET_DIR);
#   4. type-checks the tests (mypy --strict), then runs them.
# With INTERLOCK_UPDATE_SCREENSHOT=1 the screenshot test also rewrites docs/dashboard.png;
# it always leaves its screenshots in $CARGO_TARGET_DIR/dashboard-test/.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/interlock-target}"

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]} (Debian packages)"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        "${missing[@]}" fonts-dejavu-core >/dev/null
fi

echo "== installing playwright and pytest into .venv"
bash "$root/py/install-venv.sh" "playwright>=1.40" "pytest>=8" "pytest-timeout>=2.3" "mypy>=1.11"

echo "== building the interlock binary"
cargo build --quiet -p interlock-cli

cd "$root/tests/dashboard"
echo "== mypy --strict: the tests"
MYPY_CACHE_DIR="$root/.venv/mypy-cache-dashboard" "$root/.venv/bin/python" -m mypy --strict .
exec "$root/.venv/bin/python" -m pytest "$@"
