#!/usr/bin/env bash
# The C and MATLAB/Octave tests of interlock (make test-c):
#   1. installs GNU Octave from Debian's packages if mkoctfile is missing (needs root);
#   2. builds the library once (cargo, release, into $CARGO_TARGET_DIR);
#   3. checks that include/interlock.h compiles as strict C99 and as C++;
#   4. builds the C tests with -Wall -Wextra -Werror under AddressSanitizer (and
#      UndefinedBehaviorSanitizer) and runs them (test_api, test_threads, test_fork, and
#      test_remote: an engine served and connected to in one process);
#   5. if valgrind is installed, runs them again under valgrind against a debug build of
#      the library: ASan sees only the C side, valgrind also the Rust side (e.g. the
#      engine's memory while threads blocked in it are woken by interlock_engine_free);
#      tests/c/valgrind.supp holds the suppressions, each with why it is a false positive;
#   6. builds test_memory without sanitizers and runs it (plain build: it measures the
#      process RSS, which ASan's quarantine and valgrind's allocator would distort);
#   7. builds the MEX gateway with mkoctfile --mex, starts `interlock serve` on a free
#      loopback port with a tokens file (the Octave test connects to it), runs the Octave
#      test, and stops the server.
# Prints "c: N passed, M failed" last and exits non-zero if anything failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/interlock-target}"
DEBUG_LIB="$CARGO_TARGET_DIR/debug/libinterlock.a"
BUILD="$CARGO_TARGET_DIR/c-tests"
mkdir -p "$BUILD"

source tests/c/native.sh
need_debs cc:gcc mkoctfile:"octave liboctave-dev"
build_native

passed=0
failed=0
# Runs a command, shows its output, and counts its "ok - " / "FAIL - " lines; a command
# that fails without reporting a failing test (it does not compile, it crashes, a
# sanitizer or valgrind reports an error) counts as one more failure.
run_counted() {
  local name=$1 log="$BUILD/$1.log" rc=0
  shift
  echo "== $name"
  "$@" >"$log" 2>&1 || rc=$?
  cat "$log"
  local p f
  p=$(grep -c '^ok - ' "$log" || true)
  f=$(grep -c '^FAIL - ' "$log" || true)
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "FAIL - $name exited with status $rc"
    f=1
  fi
  passed=$((passed + p))
  failed=$((failed + f))
}

WARN=(-Wall -Wextra -Werror)
SAN=(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1"

header_compiles() {
  cc -std=c99 -pedantic "${WARN[@]}" -Iinclude tests/c/header_check.c -o "$BUILD/header_c99"
  echo "ok - header compiles as C99"
  if command -v c++ >/dev/null 2>&1; then
    c++ -x c++ -std=c++11 -pedantic "${WARN[@]}" -Iinclude tests/c/header_check.c \
      -o "$BUILD/header_cxx"
    echo "ok - header compiles as C++"
  fi
}

# compile_test <test> <library> <output> [cc flags...]
compile_test() {
  local test=$1 lib=$2 out=$3
  shift 3
  cc -std=gnu11 -g -O1 "${WARN[@]}" "$@" -Iinclude "tests/c/$test.c" "$lib" \
    -lpthread -ldl -lm -o "$BUILD/$out"
}

sanitized() {
  compile_test "$1" "$LIB" "$1" "${SAN[@]}" && "$BUILD/$1"
}

plain() {
  compile_test "$1" "$LIB" "$1-plain" && "$BUILD/$1-plain"
}

VALGRIND=(valgrind -q --error-exitcode=99 --suppressions="$ROOT/tests/c/valgrind.supp")

# under_valgrind <test> [valgrind options...]
under_valgrind() {
  local test=$1
  shift
  compile_test "$test" "$DEBUG_LIB" "$test-vg" && "${VALGRIND[@]}" "$@" "$BUILD/$test-vg"
}

LEAKS=(--leak-check=full --show-possibly-lost=no --errors-for-leak-kinds=definite)

# The server the Octave test connects to: started by start_server, stopped (by its pid)
# by stop_server, also if this script ends early.
SERVER_PID=""
stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}
trap stop_server EXIT

# Starts `interlock serve` on 127.0.0.1, port 0, with fresh tokens (one client, one
# admin), and exports its URL and tokens for the Octave test. It prints its URL on
# stdout once it serves; this waits for that line (up to 30 s) rather than for a time.
start_server() {
  local out="$BUILD/octave-server.out" err="$BUILD/octave-server.err" url="" i
  INTERLOCK_TEST_TOKEN="client-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  INTERLOCK_TEST_ADMIN_TOKEN="admin-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  printf 'client %s\nadmin %s\n' "$INTERLOCK_TEST_TOKEN" "$INTERLOCK_TEST_ADMIN_TOKEN" \
    >"$BUILD/octave-tokens"
  : >"$out"
  INTERLOCK_LOG=warn "$CARGO_TARGET_DIR/release/interlock" serve --bind 127.0.0.1:0 \
    --tokens "$BUILD/octave-tokens" >"$out" 2>"$err" &
  SERVER_PID=$!
  for i in $(seq 600); do
    url=$(sed -n 's/^interlock serving at //p' "$out")
    if [ -n "$url" ] || ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    sleep 0.05
  done
  if [ -z "$url" ]; then
    echo "interlock serve did not start:"
    cat "$err"
    return 1
  fi
  echo "interlock serve at $url (pid $SERVER_PID)"
  export INTERLOCK_TEST_URL="$url" INTERLOCK_TEST_TOKEN INTERLOCK_TEST_ADMIN_TOKEN
}

octave_test() {
  local rc=0
  build_mex "$BUILD" &&
    start_server &&
    octave-cli --no-init-file --no-history --quiet --eval \
      "addpath('$BUILD'); addpath('$ROOT/examples/matlab'); source('$ROOT/tests/c/test_octave.m');" ||
    rc=$?
  stop_server
  return "$rc"
}

run_counted header header_compiles
for t in test_api test_threads test_fork test_remote; do
  run_counted "$t" sanitized "$t"
done
if command -v valgrind >/dev/null 2>&1; then
  cargo build -p interlock-ffi
  for t in test_api test_threads test_remote; do
    run_counted "$t-valgrind" under_valgrind "$t" "${LEAKS[@]}"
  done
  # Without the leak check: valgrind follows the forked child, and there the memory of
  # the inherited engine is lost by design (the threads that own it are not in the
  # child, so the engine lets go of it without touching it) and would count as definite
  # leaks. Memory errors still fail the child (exit status 99), and with it the test;
  # leaks of engines freed normally are what the test_api run checks.
  run_counted "test_fork-valgrind" under_valgrind test_fork --leak-check=no
else
  echo "== valgrind is not installed: the valgrind pass is skipped"
fi
run_counted test_memory plain test_memory
run_counted octave octave_test

echo "c: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
