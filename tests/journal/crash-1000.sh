#!/usr/bin/env bash
# 1,000 crash trials (tests/journal/crash.py) on one journal file, after the same setup
# as run.sh; prints a summary as JSON and exits non-zero on any violation. Takes about
# half an hour. Extra arguments go to crash.py (--clients N, --dir DIR to keep files,
# --seed S to repeat a run).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
JOURNAL_SETUP_ONLY=1 bash "$here/run.sh"
cd "$here"
exec "$here/../../.venv/bin/python" crash.py --trials "${TRIALS:-1000}" "$@"
