#!/usr/bin/env bash
# Model-checks the reply slot (core/src/reply.rs) with loom: every interleaving of its
# send / receive / cancel / hand-back races, up to LOOM_MAX_PREEMPTIONS preemptions per
# run. The slot is built on its own (the crate core/loom, which includes that one file),
# with `--cfg loom`, in a target directory of its own; prints how long it took.
#
#   core/loom.sh                          # all models
#   core/loom.sh two_blocking_waiters     # the models whose name contains that
#
# A deadlock (a lost wake-up) aborts the test binary after loom prints `deadlock; ...`.
# On a failure, LOOM_CHECKPOINT_FILE / LOOM_LOCATION help replay it (see loom's docs).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/core/loom"

export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }--cfg loom"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
# A --cfg loom build must not share std's target directory, or each would rebuild the other.
# (A relative one is taken from the repository's root, as before.)
target="${LOOM_TARGET_DIR:-${CARGO_TARGET_DIR:-target}/loom}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
export CARGO_TARGET_DIR="$target"

start=$(date +%s)
status=0
cargo test --release --lib "reply::loom_tests::${1:-}" -- --test-threads=1 --nocapture || status=$?
end=$(date +%s)
verdict=$([ "$status" -eq 0 ] && echo passed || echo FAILED)
echo "loom.sh: reply models $verdict in $((end - start)) s (LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS, build included)"
exit "$status"
