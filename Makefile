# The two commands of the README: `make demo` and `make test`. Each installs what it
# needs. Cargo artifacts go to a target directory outside the clone so reruns reuse them.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/interlock-target

.PHONY: demo test test-rust test-c test-python lint bench

demo:
	cargo run --quiet --release -p interlock --example demo
	bash examples/c/run.sh
	bash examples/python/run.sh

test: lint test-rust test-c test-python

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

# Each benchmark also runs once, in a tiny configuration, so its code never rots.
test-rust:
	cargo test --workspace
	cargo test -p interlock --bench pairs --bench load

test-c:
	bash tests/c/run.sh

test-python:
	bash tests/python/run.sh
	.venv/bin/python -m pip install --quiet --disable-pip-version-check filelock fasteners portalocker redis
	.venv/bin/python bench/python/bench.py --smoke

bench:
	bash bench/run.sh
