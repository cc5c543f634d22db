#!/usr/bin/env bash
# Reruns every benchmark: Rust (criterion pairs; the load bench), Python (bench.py,
# beside threading.Lock, filelock, fasteners, portalocker and redis-py's Lock), then the
# server benchmarks (bench/remote.sh). Prints the tables that bench/RESULTS.md records.
# Takes about twenty minutes.
#
# On the 2-core VMs we measure on, a process's two busy threads (caller and actor) run
# either fast or about twice as slow for seconds at a time, depending on where the host
# places the VM's cores. So the pair benchmarks and the pipelined row run in three
# separate processes and RESULTS.md gives all three.
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

for run in 1 2 3; do
    echo "## pairs, process $run of 3"
    cargo bench -p interlock --bench pairs -- --noplot
done
cargo bench -p interlock --bench load
for run in 2 3; do
    echo "## pipelined, process $run of 3"
    cargo bench -p interlock --bench load -- pipelined
done
bash py/install-venv.sh filelock fasteners portalocker redis
.venv/bin/python bench/python/bench.py
for run in 2 3; do
    echo "## Python uncontended pairs, process $run of 3"
    .venv/bin/python bench/python/bench.py --pairs-only
done
bash bench/remote.sh
