#!/usr/bin/env bash
# Builds the interlock C library and the instrument-control example, then runs it
# (part of `make demo`). Uses the compiler line documented in examples/c/README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/interlock-target}"
LIBDIR="$CARGO_TARGET_DIR/release"

cargo build --quiet --release -p interlock-ffi
mkdir -p "$CARGO_TARGET_DIR/examples-c"
cc -std=c11 -Wall -Wextra -Werror -O2 -Iinclude examples/c/instrument.c \
  -L"$LIBDIR" -linterlock -lpthread -lm -Wl,-rpath,"$LIBDIR" \
  -o "$CARGO_TARGET_DIR/examples-c/instrument"
"$CARGO_TARGET_DIR/examples-c/instrument"
