#!/usr/bin/env bash
# Reruns every benchmark: Rust (criterion pairs; the load bench) and Python (bench.py,
# beside threading.Lock, filelock, fasteners, portalocker and redis-py's Lock). Prints
# the tables that bench/RESULTS.md records. Takes about five minutes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/interlock-target}"

if ! command -v redis-server >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq redis-server >/dev/null) \
        || echo "redis-server could not be installed: the redis-py row is skipped"
fi

echo "## machine"
date -u '+%Y-%m-%d %H:%M UTC'
uname -srm
grep -m1 'model name' /proc/cpuinfo || true
nproc
rustc --version

cargo bench -p interlock --bench pairs -- --noplot
cargo bench -p interlock --bench load
bash py/install-venv.sh filelock fasteners portalocker redis
.venv/bin/python bench/python/bench.py
