#!/usr/bin/env bash
# The server benchmarks: real `interlock serve` and `redis-server` processes on loopback,
# driven by the Rust load generator (bench/load, `interlock-bench`) and by Python
# (bench/python/remote.py). Prints the tables that bench/RESULTS.md records.
#
#   bash bench/remote.sh           # full run (about ten minutes), release builds
#   bash bench/remote.sh --smoke   # every row once in a tiny configuration (seconds)
#
# Rows that are compared run in one process, taking turns round after round, so that the
# VM's slow spells fall on all of them: the Rust pair and the TCP floor; interlock and
# redis at N sessions; the Python rows.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/interlock-target}"

smoke=false
[ "${1:-}" = "--smoke" ] && smoke=true

if ! command -v redis-server >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq redis-server >/dev/null) \
        || echo "redis-server could not be installed: the redis rows are skipped"
fi
# 10,000 connections on each side of loopback, and the servers' files besides.
ulimit -Hn 65536 2>/dev/null || true
ulimit -Sn "$(ulimit -Hn)"

if $smoke; then
    profile=debug
    cargo build --quiet -p interlock-cli -p interlock-bench
else
    profile=release
    cargo build --quiet --release -p interlock-cli -p interlock-bench
fi
bin="$CARGO_TARGET_DIR/$profile"
bash py/install-venv.sh redis requests

tmp="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# serve NAME ARGS...: starts `interlock serve` on a free port; sets $url and $pid.
serve() {
    local name="$1"
    shift
    "$bin/interlock" serve --bind 127.0.0.1:0 "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 100); do
        url="$(sed -n 's/^interlock serving at //p' "$tmp/$name.out")"
        [ -n "$url" ] && return 0
        sleep 0.1
    done
    cat "$tmp/$name.err" >&2
    return 1
}

# redis NAME ARGS...: starts redis-server on a free port; sets $redis_port (empty if absent).
redis() {
    redis_port=""
    command -v redis-server >/dev/null || return 0
    local name="$1"
    shift
    redis_port="$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    mkdir -p "$tmp/$name"
    redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$tmp/$name" "$@" >"$tmp/$name.log" &
    pids+=("$!")
    for _ in $(seq 100); do
        redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

stop() {
    kill "$1"
    wait "$1" 2>/dev/null || true
}

if $smoke; then
    pair_args=(--rounds 1 --secs 0.05 --spin-us 50)
    tput_args=(--rounds 1 --secs 0.2)
    sessions=2 durable_sessions=1,2 scale_sessions=20 scale_secs=0.5 py_args=(--smoke)
else
    pair_args=(--rounds 7 --secs 1 --spin-us 50)
    tput_args=(--rounds 3 --secs 3)
    sessions=64 durable_sessions=1,8,64 scale_sessions=10000 scale_secs=10 py_args=()
fi
redis_args=(--save "" --appendonly no)
durable_redis_args=(--save "" --appendonly yes --appendfsync always)

echo "## machine"
date -u '+%Y-%m-%d %H:%M UTC'
uname -srm
grep -m1 'model name' /proc/cpuinfo || true
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
redis-server --version 2>/dev/null || true

serve plain
echo "## Rust: one remote pair beside the TCP floor"
"$bin/interlock-bench" pair --url "$url" "${pair_args[@]}"
echo "## Python: remote, HTTP and durable pairs beside their floors"
.venv/bin/python bench/python/remote.py --url "$url" "${py_args[@]}"

echo "## throughput: $sessions sessions on $sessions resources (no journal, no persistence)"
redis plain "${redis_args[@]}"
"$bin/interlock-bench" throughput --url "$url" ${redis_port:+--redis-port "$redis_port"} \
    --sessions "$sessions" "${tput_args[@]}"
stop "$pid"

echo "## durable grants/s: interlock serve --journal beside redis appendfsync always"
serve durable --journal "$tmp/locks.db"
redis durable "${durable_redis_args[@]}"
"$bin/interlock-bench" throughput --url "$url" ${redis_port:+--redis-port "$redis_port"} \
    --sessions "$durable_sessions" "${tput_args[@]}"
stop "$pid"

echo "## scale: $scale_sessions sessions heartbeating (fd limit $(ulimit -n))"
serve scale --max-connections $((scale_sessions + 100))
"$bin/interlock-bench" scale --url "$url" --sessions "$scale_sessions" --secs "$scale_secs" \
    --server-pid "$pid"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
