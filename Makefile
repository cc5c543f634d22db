# The two commands of the README: `make demo` and `make test`. Each installs what it
# needs. Cargo artifacts go to a target directory outside the clone so reruns reuse them.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/interlock-target

.PHONY: demo test test-rust test-c test-python lint

demo:
	cargo run --quiet --release -p interlock --example demo
	bash examples/c/run.sh
	bash examples/python/run.sh

test: lint test-rust test-c test-python

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

test-rust:
	cargo test --workspace

test-c:
	bash tests/c/run.sh

test-python:
	bash tests/python/run.sh
