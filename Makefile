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

.PHONY: help dev dev-lossy test fuzz fuzz-smoke load tools lint-tools system-tools qemu chromium venv venv-run venv-deploy npm setup fmt-check clippy build unit edge browser template contract sam-build deploy-check bench invoke clean

help:
	@echo "make dev    - run the local cloud: moto, every function, gateway, CDNs, Bunny + MediaConvert stand-ins, demo page"
	@echo "make test   - fmt, clippy, unit + integration + end-to-end tests (moto, ffmpeg), browser test (chromium), template checks"
	@echo "make fuzz   - every fuzz target (fuzz/) for FUZZ_SECONDS (300) each"
	@echo "make bench  - release builds: binary size, init time vs a bare runtime, peak RSS"
	@echo "make deploy-check - sam build, then every arm64 bootstrap run under qemu against moto"

# --- set-up -----------------------------------------------------------------------------------

tools:
	@command -v $(CARGO) >/dev/null || { echo "error: cargo not found; install Rust from rustup.rs" >&2; exit 1; }
	@command -v python3 >/dev/null || { echo "error: python3 not found; install Python 3.10+" >&2; exit 1; }

# Only the tests lint: `make dev` does not wait for rustup to fetch these.
lint-tools: tools
	@{ $(CARGO) fmt --version && $(CARGO) clippy --version; } >/dev/null 2>&1 || rustup component add rustfmt clippy >/dev/null 2>&1 \
	  || { echo "error: rustfmt and clippy are missing and could not be installed (rustup component add rustfmt clippy)" >&2; exit 1; }

# Each set-up step prints how long it took: `setup: <step> in N s`.
STEP_T0   := t0=$$(date +%s)
STEP_DONE  = echo "setup: $(1) in $$(( $$(date +%s) - t0 )) s"

# Two sets: what running the local cloud needs (make dev), and what the tests add (make test).
$(VENV)/.run: requirements-run.txt
	@echo "setup: Python tools to run the stack (moto) into $(VENV) …"; $(STEP_T0); \
	  python3 -m venv $(VENV) >/dev/null 2>&1 || { echo "error: could not create $(VENV) (on Debian: apt-get install python3-venv)" >&2; exit 1; }; \
	  $(PY) -m pip install -q --disable-pip-version-check -r requirements-run.txt \
	    || { echo "error: pip could not install requirements-run.txt into $(VENV)" >&2; exit 1; }; \
	  touch $@; $(call STEP_DONE,Python tools (moto))

$(VENV)/.test: requirements-test.txt requirements-run.txt $(VENV)/.run
	@echo "setup: Python tools for the tests (cfn-lint, SAM translator, schemathesis) into $(VENV) …"
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements-test.txt \
	  || { echo "error: pip could not install requirements-test.txt into $(VENV)" >&2; exit 1; }
	@touch $@

$(VENV)/.deploy: requirements-deploy.txt $(VENV)/.run
	@echo "setup: SAM CLI and cargo-lambda (with zig) into $(VENV) …"
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements-deploy.txt \
	  || { echo "error: pip could not install requirements-deploy.txt into $(VENV)" >&2; exit 1; }
	@touch $@

venv-run: $(VENV)/.run
venv: $(VENV)/.test
venv-deploy: $(VENV)/.deploy

# ffmpeg (transcoding stand-ins) and chromium (browser test), from Debian's packages when missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system-tools:
	@missing=""; command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || missing="ffmpeg"; \
	  if [ -n "$$missing" ]; then \
	    echo "setup: $$missing from Debian's packages (apt-get) …"; $(STEP_T0); \
	    { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; } >/dev/null 2>&1 \
	      || { echo "error: could not install $$missing (apt-get install $$missing)" >&2; exit 1; }; \
	    $(call STEP_DONE,$$missing from apt); \
	  fi

# The arm64 bootstraps run here under qemu user emulation (with Debian's arm64 C library);
# nothing to install on an arm64 machine.
ARM64_HOST := $(filter aarch64 arm64,$(shell uname -m))
QEMU_RUNNER := $(if $(ARM64_HOST),,qemu-aarch64-static -L /usr/aarch64-linux-gnu)
qemu:
	@if [ -z "$(ARM64_HOST)" ] && ! { command -v qemu-aarch64-static >/dev/null && [ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ]; }; then \
	  echo "setup: qemu-user-static and libc6-arm64-cross from Debian's packages (apt-get) …"; \
	  { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq qemu-user-static libc6-arm64-cross; } >/dev/null 2>&1 \
	    || { echo "error: could not install qemu-user-static libc6-arm64-cross (apt-get install qemu-user-static libc6-arm64-cross)" >&2; exit 1; }; \
	fi

chromium:
	@command -v chromium >/dev/null || { echo "setup: chromium from Debian's packages (apt-get) …"; \
	  { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; } >/dev/null 2>&1 \
	    || { echo "error: could not install chromium (apt-get install chromium)" >&2; exit 1; }; }

# The demo page's vendored players (hls.js, tus-js-client) and playwright-core, from npm.
DEMO := infra/devstack/demo
$(DEMO)/node_modules/.installed: $(DEMO)/package-lock.json
	@command -v npm >/dev/null || { echo "error: npm not found (apt-get install nodejs npm, Node 20 or later)" >&2; exit 1; }
	@echo "setup: the demo page's scripts (hls.js, tus-js-client, Uppy, Redoc) from npm into $(DEMO)/node_modules …"; $(STEP_T0); \
	  (cd $(DEMO) && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
	    || { echo "error: npm could not install $(DEMO)/package.json" >&2; exit 1; }; \
	  touch $@; $(call STEP_DONE,npm packages)

npm: $(DEMO)/node_modules/.installed

# --- run --------------------------------------------------------------------------------------

# What the local cloud needs, the steps side by side: pip, apt and npm mostly wait on the
# network while cargo has the cores. One line with the set-up time once everything is there
# (the first run installs, later ones only check).
setup: venv-run system-tools npm build
	@echo "setup: ready in $$(( $$(date +%s) - $(SETUP_T0) )) s"

PORT ?= 8700
dev: tools
	@$(MAKE) --no-print-directory -j4 setup SETUP_T0=$(SETUP_T0)
	target/debug/devstack up --port $(PORT)

# The local cloud losing every provider event and every S3 event of an original: the reconciler
# finishes uploads, links expire in 60 s.
dev-lossy: tools
	@$(MAKE) --no-print-directory -j4 setup SETUP_T0=$(SETUP_T0)
	target/debug/devstack up --port $(PORT) --drop-provider-events 1 --reconcile-every 5 --upload-ttl 60

# One function, one event, as Lambda would run it (no stack).
invoke: tools venv-run
	$(CARGO) build -p playback -p devstack
	target/debug/devstack invoke playback --event tests/events/playback-get.json --seed tests/events/seed-playback.json

# --- test -------------------------------------------------------------------------------------

fmt-check: lint-tools
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check

clippy: lint-tools
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings
	CARGO_TARGET_DIR=target/fuzz $(CARGO) clippy --manifest-path fuzz/Cargo.toml --locked --all-targets -- -D warnings

# Every bootstrap binary: the local cloud runs the real ones (the default members' binaries:
# every function and devstack; bench-hello only `make bench` builds). `--timings` leaves each
# crate's share of the build in target/cargo-timings/cargo-timing.html.
build: tools
	@echo "setup: building every function and the local cloud (cargo build) …"; $(STEP_T0); \
	  $(CARGO) build --bins --timings; \
	  $(call STEP_DONE,cargo build (per crate: target/cargo-timings/cargo-timing.html))

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

# Load and faults on the local cloud (autocannon; duplicated and reordered events, provider
# 503s and hangs, a throttled table): every upload ends, nothing regresses, no undocumented 5xx.
# Bounded (about 2.5 min), loopback only; it prints its figures.
load: tools venv system-tools npm build
	@mkdir -p target
	cd $(DEMO) && node --test load.test.mjs 2>&1 | tee ../../../target/load-output.log
	@awk '/^# pass/ {p=$$3} /^# fail/ {f=$$3} END {printf "%d %d\n", p, f}' target/load-output.log > target/load-counts

# Coverage-guided fuzzing (libFuzzer on stable, fuzz/): every target for FUZZ_SECONDS each;
# `make test` runs each for FUZZ_SMOKE_SECONDS. A crash fails it and prints the input's path.
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 15
fuzz: tools
	infra/fuzz.sh $(FUZZ_SECONDS)

# A fixed seed: each run of the bounded stage walks the same inputs (only how far it gets in
# the time varies with the machine), so it does not fail one run in many on a new find.
FUZZ_SMOKE_SEED ?= 20261204
fuzz-smoke: tools
	@mkdir -p target; FUZZ_SEED=$(FUZZ_SMOKE_SEED) infra/fuzz.sh $(FUZZ_SMOKE_SECONDS) | tee target/fuzz-output.log

template: venv
	$(PY) infra/check_template.py
	$(PY) infra/test_check_template.py
	$(PY) infra/check_openapi.py
	$(PY) infra/check_links.py
	$(PY) infra/test_check_links.py
	$(PY) infra/moto_race.py --rounds 3 --switch-interval 0.00001

# Schemathesis against the running local cloud, as four roles, held to docs/openapi.yaml.
contract: venv system-tools build
	$(PY) infra/contract_fuzz.py

# What deploys, built and run: `sam validate --lint`, `sam build` (cargo lambda, arm64, one
# package at a time), then every built bootstrap under qemu behind the local Runtime API against
# moto, with the environment the built template gives it and fixture events of known answers
# (infra/devstack/src/deploy_check.rs). The parameters are the ones the probes need: intake on
# the MediaConvert path (a presigned PUT, no call to Bunny), and a Bunny library so the webhook
# function deploys.
DEPLOY_CHECK_PARAMETERS := VideoProvider=aws_mediaconvert BunnyStreamLibraryId=133 \
  BunnyStreamCdnHostname=vz-local.b-cdn.net JwtIssuer=https://auth.example.com/ JwtAudience=exvid-api
SAM := PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/sam
sam-build: tools venv-deploy
	@mkdir -p target
	@$(SAM) validate --lint >target/sam-validate.log 2>&1 \
	  || { cat target/sam-validate.log; echo "error: sam validate --lint refused template.yaml (above)" >&2; exit 1; }
	@echo "deploy: sam build (cargo lambda, arm64, each function by itself) …"
	@t0=$$(date +%s); $(SAM) build >target/sam-build.log 2>&1 \
	  || { tail -n 25 target/sam-build.log; echo "error: sam build failed (target/sam-build.log, last lines above)" >&2; exit 1; }; \
	  echo "$$(( $$(date +%s) - t0 ))" > target/sam-build-seconds

deploy-check: sam-build qemu build
	@t0=$$(date +%s); target/debug/devstack deploy-check --mutations --runner "$(QEMU_RUNNER)" \
	  $(foreach p,$(DEPLOY_CHECK_PARAMETERS),--parameter $(p)) | tee target/deploy-check.log; \
	  echo "deploy-check: sam build $$(cat target/sam-build-seconds) s, runs $$(( $$(date +%s) - t0 )) s" | tee -a target/deploy-check.log

test: fmt-check clippy unit fuzz-smoke edge browser load template contract deploy-check
	@read -r passed failed ignored < target/test-counts; read -r epassed efailed < target/edge-counts; \
	  read -r bpassed bfailed < target/browser-counts; read -r fuzzed ffailed < target/schemathesis-counts; \
	  read -r lpassed lfailed < target/load-counts; \
	  cat target/e2e-timing.txt 2>/dev/null || true; \
	  tail -n 1 target/deploy-check.log; tail -n 1 target/fuzz-output.log; \
	  grep -E '^# load: (intake storm|playback storm|webhook storm|lost)' target/load-output.log | sed 's/^# //' || true; \
	  echo "make test: fmt, clippy, template checks ok; schemathesis: $$fuzzed generated requests, $$ffailed failed runs"; \
	  echo "make test: cargo ($$passed), node ($$epassed), browser ($$bpassed) and load ($$lpassed) tests below"; \
	  echo "tests: $$((passed + epassed + bpassed + lpassed)) passed, $$((failed + efailed + bfailed + lfailed)) failed, $$ignored skipped"

# --- measure ----------------------------------------------------------------------------------

# Each package built by itself, as `sam build` (cargo lambda) builds it: one cargo invocation
# merges features across its packages, so devstack's (or another function's) would leak into a
# function and the bench would measure binaries nobody deploys.
# Sizes are the arm64 bootstraps of `sam build` (what deploys); init and RSS are measured on
# this machine's build of each package by itself. The list is every package under functions/
# (each directory is named as its package), so a new function cannot be left out of the bench.
BENCHED := bench-hello $(notdir $(wildcard functions/*))
bench: tools venv sam-build
	@for p in $(BENCHED); do echo "bench: building $$p by itself (release)"; $(CARGO) build --release -q -p $$p || exit 1; done
	@echo "bench: building the bench driver (release)"; $(CARGO) build --release -q -p devstack --bin bench
	target/release/bench

clean:
	$(CARGO) clean
	rm -rf $(VENV)
