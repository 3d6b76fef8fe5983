# exvid: the two commands are `make dev` (run the product) and `make test` (everything CI runs).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV    ?= .venv
PY      := $(VENV)/bin/python
CARGO   ?= cargo
export EXVID_VENV := $(abspath $(VENV))
# When this make started: set-up steps report the time they took from here.
SETUP_T0 := $(shell date +%s)

.PHONY: help dev dev-lossy test tools system-tools chromium venv venv-run npm setup-done fmt-check clippy build unit edge browser template contract bench invoke clean

help:
	@echo "make dev    - run the local cloud: moto, every function, gateway, CDNs, Bunny + MediaConvert stand-ins, demo page"
	@echo "make test   - fmt, clippy, unit + integration + end-to-end tests (moto, ffmpeg), browser test (chromium), template checks"
	@echo "make bench  - release builds: binary size, init time vs a bare runtime, peak RSS"

# --- set-up -----------------------------------------------------------------------------------

tools:
	@command -v $(CARGO) >/dev/null || { echo "error: cargo not found; install Rust from rustup.rs" >&2; exit 1; }
	@command -v python3 >/dev/null || { echo "error: python3 not found; install Python 3.10+" >&2; exit 1; }
	@{ $(CARGO) fmt --version && $(CARGO) clippy --version; } >/dev/null 2>&1 || rustup component add rustfmt clippy >/dev/null 2>&1 \
	  || { echo "error: rustfmt and clippy are missing and could not be installed (rustup component add rustfmt clippy)" >&2; exit 1; }

# Two sets: what running the local cloud needs (make dev), and what the tests add (make test).
$(VENV)/.run: requirements-run.txt
	@echo "setup: Python tools to run the stack (moto) into $(VENV) …"
	@python3 -m venv $(VENV) >/dev/null 2>&1 || { echo "error: could not create $(VENV) (on Debian: apt-get install python3-venv)" >&2; exit 1; }
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements-run.txt \
	  || { echo "error: pip could not install requirements-run.txt into $(VENV)" >&2; exit 1; }
	@touch $@

$(VENV)/.test: requirements-test.txt requirements-run.txt $(VENV)/.run
	@echo "setup: Python tools for the tests (cfn-lint, SAM translator, schemathesis) into $(VENV) …"
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements-test.txt \
	  || { echo "error: pip could not install requirements-test.txt into $(VENV)" >&2; exit 1; }
	@touch $@

venv-run: $(VENV)/.run
venv: $(VENV)/.test

# ffmpeg (transcoding stand-ins) and chromium (browser test), from Debian's packages when missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system-tools:
	@missing=""; command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || missing="ffmpeg"; \
	  if [ -n "$$missing" ]; then \
	    echo "setup: $$missing from Debian's packages (apt-get) …"; \
	    { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; } >/dev/null 2>&1 \
	      || { echo "error: could not install $$missing (apt-get install $$missing)" >&2; exit 1; }; \
	  fi

chromium:
	@command -v chromium >/dev/null || { echo "setup: chromium from Debian's packages (apt-get) …"; \
	  { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; } >/dev/null 2>&1 \
	    || { echo "error: could not install chromium (apt-get install chromium)" >&2; exit 1; }; }

# The demo page's vendored players (hls.js, tus-js-client) and playwright-core, from npm.
DEMO := infra/devstack/demo
$(DEMO)/node_modules/.installed: $(DEMO)/package-lock.json
	@command -v npm >/dev/null || { echo "error: npm not found (apt-get install nodejs npm, Node 20 or later)" >&2; exit 1; }
	@echo "setup: the demo page's scripts (hls.js, tus-js-client, Uppy, Redoc) from npm into $(DEMO)/node_modules …"
	@cd $(DEMO) && npm ci --no-audit --no-fund --loglevel=error >/dev/null \
	  || { echo "error: npm could not install $(DEMO)/package.json" >&2; exit 1; }
	@touch $@

npm: $(DEMO)/node_modules/.installed

# --- run --------------------------------------------------------------------------------------

# One line with the set-up time once everything is there (the first run installs, later ones
# only check).
setup-done:
	@echo "setup: ready in $$(( $$(date +%s) - $(SETUP_T0) )) s"

PORT ?= 8700
dev: tools venv-run system-tools npm build setup-done
	target/debug/devstack up --port $(PORT)

# The local cloud losing every provider event: the reconciler finishes uploads, links expire in 60 s.
dev-lossy: tools venv-run system-tools npm build setup-done
	target/debug/devstack up --port $(PORT) --drop-provider-events 1 --reconcile-every 5 --upload-ttl 60

# One function, one event, as Lambda would run it (no stack).
invoke: tools venv-run
	$(CARGO) build -p playback -p devstack
	target/debug/devstack invoke playback --event tests/events/playback-get.json --seed tests/events/seed-playback.json

# --- test -------------------------------------------------------------------------------------

fmt-check: tools
	$(CARGO) fmt --all -- --check

clippy: tools
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

# Every bootstrap binary: the local cloud runs the real ones.
build: tools
	@echo "setup: building every function and the local cloud (cargo build) …"
	@$(CARGO) build --workspace --bins

unit: tools venv system-tools build
	@mkdir -p target; rm -f target/e2e-timing.txt
	$(CARGO) test --workspace --all-features 2>&1 | tee target/test-output.log
	@awk '/^test result:/ {p+=$$4; f+=$$6; s+=$$8} END {printf "%d %d %d\n", p, f, s}' target/test-output.log > target/test-counts

# The CloudFront Function, in Node, against Bunny's vectors and the Rust-minted cases `unit` wrote.
edge:
	@command -v node >/dev/null || { echo "error: node not found (apt-get install nodejs, version 20 or later)" >&2; exit 1; }
	node --test infra/cloudfront/ 2>&1 | tee target/edge-output.log
	@awk '/^# pass/ {p=$$3} /^# fail/ {f=$$3} END {printf "%d %d\n", p, f}' target/edge-output.log > target/edge-counts

# The demo page in headless Chromium against a real devstack (both providers).
browser: tools venv system-tools chromium npm build
	@rm -rf target/browser-failures
	cd $(DEMO) && node --test browser.test.mjs 2>&1 | tee ../../../target/browser-output.log
	@awk '/^# pass/ {p=$$3} /^# fail/ {f=$$3} END {printf "%d %d\n", p, f}' target/browser-output.log > target/browser-counts

template: venv
	$(PY) infra/check_template.py
	$(PY) infra/test_check_template.py
	$(PY) infra/check_openapi.py

# Schemathesis against the running local cloud, as four roles, held to docs/openapi.yaml.
contract: venv system-tools build
	$(PY) infra/contract_fuzz.py

test: fmt-check clippy unit edge browser template contract
	@read -r passed failed ignored < target/test-counts; read -r epassed efailed < target/edge-counts; \
	  read -r bpassed bfailed < target/browser-counts; read -r fuzzed ffailed < target/schemathesis-counts; \
	  cat target/e2e-timing.txt 2>/dev/null || true; \
	  echo "make test: fmt, clippy, template checks ok; schemathesis: $$fuzzed generated requests, $$ffailed failed runs"; \
	  echo "make test: cargo ($$passed), node ($$epassed) and browser ($$bpassed) tests below"; \
	  echo "tests: $$((passed + epassed + bpassed)) passed, $$((failed + efailed + bfailed)) failed, $$ignored skipped"

# --- measure ----------------------------------------------------------------------------------

# Each package built by itself, as `sam build` (cargo lambda) builds it: one cargo invocation
# merges features across its packages, so devstack's (or another function's) would leak into a
# function and the bench would measure binaries nobody deploys.
BENCHED := bench-hello playback upload-intake transcode-start transcode-complete bunny-webhook
bench: tools venv
	@for p in $(BENCHED); do echo "bench: building $$p by itself (release)"; $(CARGO) build --release -q -p $$p || exit 1; done
	@echo "bench: building the bench driver (release)"; $(CARGO) build --release -q -p devstack --bin bench
	target/release/bench

clean:
	$(CARGO) clean
	rm -rf $(VENV)
