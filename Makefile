# The two commands of the README: `make demo` and `make test`. Each installs what it
# needs. Cargo artifacts go to a target directory outside the clone so reruns reuse them.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/interlock-target

.PHONY: demo test lint test-rust test-c test-python test-cross test-scenarios \
	test-journal test-dashboard test-compat bench

demo:
	cargo run --quiet --release -p interlock --example demo
	bash examples/c/run.sh
	bash examples/python/run.sh
	bash examples/server/run.sh

test: lint test-rust test-c test-python test-cross test-scenarios test-journal \
	test-dashboard test-compat

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

# Each benchmark also runs once, in a tiny configuration, so its code never rots. The
# reply slot is model-checked with loom; the fuzz targets run for a minute (skipped with
# a message where there is no nightly toolchain).
test-rust:
	cargo test --workspace
	cargo test --workspace --bench '*'
	bash core/loom.sh
	bash core/fuzz/run.sh 60

test-c:
	bash tests/c/run.sh

# The Python suite runs twice: on embedded engines, then on engines a server holds.
test-python:
	bash tests/python/run.sh
	.venv/bin/python -m pip install --quiet --disable-pip-version-check filelock fasteners portalocker redis
	.venv/bin/python bench/python/bench.py --smoke
	bash bench/remote.sh --smoke

# Real `interlock serve` processes: the auth matrix, bad input, limits.
test-cross:
	bash tests/cross/run.sh

# Python, C and Octave processes sharing one server; kill -9 and network cuts.
test-scenarios:
	bash tests/scenarios/run.sh

# The journal: crash trials (kill -9), restarts, bad files, the history table.
test-journal:
	bash tests/journal/run.sh

# The dashboard in Debian's headless Chromium, and `interlock watch` under tmux.
test-dashboard:
	bash tests/dashboard/run.sh

# The seed-compatible modules of interlock.compat under uvicorn.
test-compat:
	bash tests/compat/run.sh

bench:
	bash bench/run.sh
