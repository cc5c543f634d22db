#!/usr/bin/env bash
# Runs the fuzz targets of core/fuzz, one after the other:
#   state_vs_model  interlock::State against the reference model (tests/model/mod.rs)
#   wire_decode     the JSON decoders of the wire protocol (ClientMsg, ServerMsg, Command,
#                   Reply, Event): no panic, and what decodes round-trips
#
# Usage: run.sh [SECONDS]            SECONDS in all (default 60), 5/6 to state_vs_model
#                                    and 1/6 to wire_decode (60: 50 s + 10 s)
#        run.sh STATE_SECS WIRE_SECS  each target for its own time; 0 skips a target
#
# Needs a nightly toolchain (libFuzzer's instrumentation); without one it says so and
# succeeds, so that a machine without nightly can still run the other checks. Exits
# non-zero if a target finds a crash (a difference, a panic), leaving the input that made
# it under core/fuzz/artifacts/<target>/; the other target still runs.
set -euo pipefail

usage() {
    echo "usage: $0 [SECONDS] | $0 STATE_SECS WIRE_SECS" >&2
    exit 2
}
number() {
    case "$1" in
    '' | *[!0-9]*) usage ;;
    esac
}
case $# in
0 | 1)
    total="${1:-60}"
    number "$total"
    wire=$((total / 6))
    state=$((total - wire))
    ;;
2)
    number "$1"
    number "$2"
    state="$1"
    wire="$2"
    ;;
*) usage ;;
esac
cd "$(dirname "$0")"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: skipped, no nightly toolchain (rustup toolchain install nightly)"
    exit 0
fi
# The targets are cargo-fuzz's (`cargo +nightly fuzz run state_vs_model` works, with
# cargo-fuzz installed), but this script builds them itself, with the flags cargo-fuzz
# 0.13 gives rustc (its `cargo fuzz build` defaults: release, libFuzzer's coverage
# instrumentation, AddressSanitizer), so that a fresh machine need not first compile
# cargo-fuzz. `--target` keeps the flags away from build scripts.
triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"
flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table
-Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-simplifycfg-branch-fold-threshold=0
--cfg fuzzing -Zsanitizer=address -Ccodegen-units=1"
case "$triple" in *-linux-*) flags="$flags -Cllvm-args=-sanitizer-coverage-stack-depth" ;; esac
# The caller's own flags come last, as with cargo-fuzz.
export RUSTFLAGS="$(echo $flags)${RUSTFLAGS:+ $RUSTFLAGS}"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_odr_violation=0"
# Its own target directory: these flags would rebuild everything the main build keeps.
target_dir="${CARGO_TARGET_DIR:-target}/fuzz"
echo "fuzz: building the targets (nightly, $triple)"
cargo +nightly build --release --bins --target "$triple" --target-dir "$target_dir"
bin="$target_dir/$triple/release"

failed=()
# fuzz TARGET SECONDS [CORPUS_DIR...] [LIBFUZZER_FLAGS...]
fuzz() {
    local target="$1" seconds="$2"
    shift 2
    if [ "$seconds" -eq 0 ]; then
        echo "fuzz: $target skipped (0 s)"
        return
    fi
    # The corpus grows from run to run; keep it (it is ignored by git) to start further on.
    mkdir -p "corpus/$target" "artifacts/$target"
    echo "fuzz: $target for ${seconds}s"
    # -rss_limit_mb: the model keeps every event of a run; well under this.
    if ! "$bin/$target" -artifact_prefix="artifacts/$target/" "corpus/$target" "$@" \
        -max_total_time="$seconds" -rss_limit_mb=4096 -print_final_stats=1; then
        failed+=("$target")
    fi
}

fuzz state_vs_model "$state"
# Seeds: one valid message of each kind; the dictionary: the protocol's names.
fuzz wire_decode "$wire" seeds/wire_decode -dict=wire_decode.dict

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]} (inputs under core/fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: no crash"
