#!/usr/bin/env bash
# The C and MATLAB/Octave tests of interlock (make test-c):
#   1. installs GNU Octave from Debian's packages if mkoctfile is missing (needs root);
#   2. builds the library once (cargo, release, into $CARGO_TARGET_DIR);
#   3. checks that include/interlock.h compiles as strict C99 and as C++;
#   4. builds the C tests with -Wall -Wextra -Werror under AddressSanitizer (and
#      UndefinedBehaviorSanitizer) and runs them;
#   5. if valgrind is installed, runs them again under valgrind against a debug build of
#      the library: ASan sees only the C side, valgrind also the Rust side (e.g. the
#      engine's memory while threads blocked in it are woken by interlock_engine_free);
#   6. builds the MEX gateway with mkoctfile --mex and runs the Octave test.
# Prints "c: N passed, M failed" last and exits non-zero if anything failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/interlock-target}"
LIB="$CARGO_TARGET_DIR/release/libinterlock.a"
DEBUG_LIB="$CARGO_TARGET_DIR/debug/libinterlock.a"
BUILD="$CARGO_TARGET_DIR/c-tests"
mkdir -p "$BUILD"

if ! command -v mkoctfile >/dev/null 2>&1; then
  echo "== installing GNU Octave (octave, liboctave-dev)"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y octave liboctave-dev
fi

echo "== building the library"
cargo build --release -p interlock-ffi

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

under_valgrind() {
  compile_test "$1" "$DEBUG_LIB" "$1-vg" &&
    valgrind -q --error-exitcode=99 --leak-check=full --show-possibly-lost=no \
      --errors-for-leak-kinds=definite \
      "$BUILD/$1-vg"
}

octave_test() {
  (cd "$BUILD" && mkoctfile --mex -o interlock_mex -I"$ROOT/include" \
    "$ROOT/examples/matlab/interlock_mex.c" "$LIB" -lpthread -ldl -lm) &&
    octave-cli --no-init-file --no-history --quiet --eval \
      "addpath('$BUILD'); addpath('$ROOT/examples/matlab'); source('$ROOT/tests/c/test_octave.m');"
}

run_counted header header_compiles
for t in test_api test_threads; do
  run_counted "$t" sanitized "$t"
done
if command -v valgrind >/dev/null 2>&1; then
  cargo build -p interlock-ffi
  for t in test_api test_threads; do
    run_counted "$t-valgrind" under_valgrind "$t"
  done
else
  echo "== valgrind is not installed: the valgrind pass is skipped"
fi
run_counted octave octave_test

echo "c: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
