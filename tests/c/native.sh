# Sourced by tests/c/run.sh and tests/scenarios/run.sh, which both need the C library,
# the `interlock` command and the Octave MEX gateway, built the same way:
#   need_debs CMD:PACKAGE...  installs from Debian the packages whose command is missing
#                             (needs root, or sudo);
#   build_native              the library (static, release) and the interlock command,
#                             via cargo into $CARGO_TARGET_DIR; sets LIB to the library;
#   build_mex DIR             the MEX gateway of examples/matlab into DIR (interlock_mex).
# Expects the working directory to be the repository root and CARGO_TARGET_DIR set.

need_debs() {
  local missing=() pair sudo=""
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "== installing ${missing[*]} (Debian packages)"
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # Unquoted: an entry may name several packages ("octave liboctave-dev").
  # shellcheck disable=SC2068
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq ${missing[@]} >/dev/null
}

build_native() {
  echo "== building the library and the interlock command"
  cargo build --release -p interlock-ffi -p interlock-cli
  LIB="$CARGO_TARGET_DIR/release/libinterlock.a"
}

build_mex() {
  local root=$PWD
  mkdir -p "$1"
  (cd "$1" && mkoctfile --mex -o interlock_mex -I"$root/include" \
    "$root/examples/matlab/interlock_mex.c" "$LIB" -lpthread -ldl -lm)
}
