#!/usr/bin/env bash
# Part of `make demo`: starts `interlock serve` and two programs, as two lab PCs would
# run them, that take turns on one power supply through the server.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bash "$root/py/install-venv.sh"
py="$root/.venv/bin/python"
log="$(mktemp)"
# The package's console script: the same `interlock` command cargo builds.
"$root/.venv/bin/interlock" serve --bind 127.0.0.1:0 >"$log" 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do
    url="$(sed -n 's/^interlock serving at //p' "$log")"
    [ -n "$url" ] && break
    sleep 0.05
done
echo "== Server: interlock serve at $url; two processes share one power supply through it"
"$py" "$root/examples/server/lab_pc.py" "$url" "pc-A" 3 &
a=$!
"$py" "$root/examples/server/lab_pc.py" "$url" "pc-B" 3 &
b=$!
wait $a $b
echo "== the server's history of the power supply:"
"$root/.venv/bin/interlock" history psu --url "$url" | tail -n 4
