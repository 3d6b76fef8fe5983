# exvid: the two commands are `make dev` (run the product) and `make test` (everything CI runs).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV    ?= .venv
PY      := $(VENV)/bin/python
CARGO   ?= cargo
export EXVID_VENV := $(abspath $(VENV))

.PHONY: help dev test tools venv fmt-check clippy unit edge template bench invoke clean

help:
	@echo "make dev    - run the playback function locally (moto + the real bootstrap + a fixture event)"
	@echo "make test   - fmt, clippy, unit + integration tests (moto), template checks"
	@echo "make bench  - release builds: binary size, init time vs a bare runtime, peak RSS"

# --- set-up -----------------------------------------------------------------------------------

tools:
	@command -v $(CARGO) >/dev/null || { echo "error: cargo not found; install Rust from rustup.rs" >&2; exit 1; }
	@command -v python3 >/dev/null || { echo "error: python3 not found; install Python 3.10+" >&2; exit 1; }
	@{ $(CARGO) fmt --version && $(CARGO) clippy --version; } >/dev/null 2>&1 || rustup component add rustfmt clippy >/dev/null 2>&1 \
	  || { echo "error: rustfmt and clippy are missing and could not be installed (rustup component add rustfmt clippy)" >&2; exit 1; }

$(VENV)/.installed: requirements-dev.txt
	@python3 -m venv $(VENV) >/dev/null 2>&1 || { echo "error: could not create $(VENV) (on Debian: apt-get install python3-venv)" >&2; exit 1; }
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt \
	  || { echo "error: pip could not install requirements-dev.txt into $(VENV)" >&2; exit 1; }
	@touch $@

venv: $(VENV)/.installed

# --- run --------------------------------------------------------------------------------------

dev: tools venv
	$(CARGO) build -p playback -p devstack
	target/debug/devstack invoke playback --event tests/events/playback-get.json --seed tests/events/seed-playback.json

invoke: dev

# --- test -------------------------------------------------------------------------------------

fmt-check: tools
	$(CARGO) fmt --all -- --check

clippy: tools
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

unit: tools venv
	@mkdir -p target
	$(CARGO) test --workspace --all-features 2>&1 | tee target/test-output.log
	@awk '/^test result:/ {p+=$$4; f+=$$6; s+=$$8} END {printf "%d %d %d\n", p, f, s}' target/test-output.log > target/test-counts

# The CloudFront Function, in Node, against Bunny's vectors and the Rust-minted cases `unit` wrote.
edge:
	@command -v node >/dev/null || { echo "error: node not found (apt-get install nodejs, version 20 or later)" >&2; exit 1; }
	node --test infra/cloudfront/ 2>&1 | tee target/edge-output.log
	@awk '/^# pass/ {p=$$3} /^# fail/ {f=$$3} END {printf "%d %d\n", p, f}' target/edge-output.log > target/edge-counts

template: venv
	$(PY) infra/check_template.py
	$(PY) infra/test_check_template.py

test: fmt-check clippy unit edge template
	@read -r passed failed ignored < target/test-counts; read -r epassed efailed < target/edge-counts; \
	  echo "make test: fmt, clippy, template checks ok; cargo ($$passed) and node ($$epassed) tests below"; \
	  echo "tests: $$((passed + epassed)) passed, $$((failed + efailed)) failed, $$ignored skipped"

# --- measure ----------------------------------------------------------------------------------

bench: tools venv
	$(CARGO) build --release -p playback -p upload-intake -p transcode-start -p transcode-complete -p bunny-webhook -p bench-hello -p devstack
	target/release/bench

clean:
	$(CARGO) clean
	rm -rf $(VENV)
