# The two commands: `make dev` and `make test`. Each installs what it lacks.
SHELL := /bin/bash
.DEFAULT_GOAL := help

WASM_BINDGEN_VERSION := $(shell awk '/^name = "wasm-bindgen"$$/{getline; gsub(/"/,"",$$3); print $$3}' Cargo.lock)
WORKER_BUILD_VERSION := 0.8.7
BIN := $(HOME)/.cargo/bin
NODE_BIN := $(CURDIR)/node_modules/.bin

# worker-build would download these from GitHub, which is unreachable here:
# point it at local copies (docs/design.md §5).
export WASM_BINDGEN_BIN := $(BIN)/wasm-bindgen
export ESBUILD_BIN := $(NODE_BIN)/esbuild
export WASM_OPT_BIN := $(NODE_BIN)/wasm-opt
export WRANGLER_SEND_METRICS := false
# Offline: do not try to download the `request.cf` sample (an 8 s stall).
export CLOUDFLARE_CF_FETCH_ENABLED := false

.PHONY: help dev test tools geoip promtool moto build build-fault build-floor test-native test-fuzz test-worker test-e2e lint deploy-check clean sim

help:
	@echo "make dev   - build and serve the broker on http://127.0.0.1:8787/"
	@echo "make test  - run every test layer"

## Tools: each step is skipped when its tool is already there.
tools: node_modules/.installed geoip
	@rustup target list --installed | grep -qx wasm32-unknown-unknown \
	  || rustup target add wasm32-unknown-unknown
	@$(BIN)/worker-build --version 2>/dev/null | grep -q "$(WORKER_BUILD_VERSION)" \
	  || cargo install --quiet worker-build --version $(WORKER_BUILD_VERSION) --locked
	@$(WASM_BINDGEN_BIN) --version 2>/dev/null | grep -q " $(WASM_BINDGEN_VERSION)" \
	  || cargo install --quiet wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

## Tor's geoip tables (Debian package tor-geoipdb), unpacked into build/geoip:
## downloaded with apt-get, never installed (no tor service). build.rs embeds
## them; without them countries located by IP are `??`. Refresh: rm -rf build/geoip.
GEOIP_DIR := build/geoip
GEOIP_TOR := $(GEOIP_DIR)/usr/share/tor

geoip: $(GEOIP_TOR)/geoip

$(GEOIP_TOR)/geoip:
	@set -euo pipefail; \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	chown _apt "$$tmp" 2>/dev/null || true; \
	if ! (cd "$$tmp" && apt-get download tor-geoipdb); then \
	  echo "geoip: download failed; running apt-get update and retrying"; \
	  apt-get update -qq; \
	  (cd "$$tmp" && apt-get download tor-geoipdb); \
	fi; \
	deb=$$(ls "$$tmp"/tor-geoipdb_*.deb); \
	rm -rf $(GEOIP_DIR); mkdir -p $(GEOIP_DIR); \
	dpkg-deb -x "$$deb" $(GEOIP_DIR); \
	test -s $(GEOIP_TOR)/geoip && test -s $(GEOIP_TOR)/geoip6; \
	touch $(GEOIP_TOR)/geoip6 $(GEOIP_TOR)/geoip; \
	echo "geoip: $$(basename "$$deb") unpacked into $(GEOIP_DIR)"
# (`touch`: dpkg-deb keeps the package's old mtimes, and cargo compares
# mtimes to decide whether build.rs must run again.)

## promtool (Debian's prometheus package), unpacked, not installed, for the
## test that checks the live /prometheus text.
PROMTOOL := $(CURDIR)/build/prometheus/usr/bin/promtool
export PROMTOOL

promtool: $(PROMTOOL)

$(PROMTOOL):
	@set -euo pipefail; \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	chown _apt "$$tmp" 2>/dev/null || true; \
	(cd "$$tmp" && apt-get download prometheus) || { apt-get update -qq; (cd "$$tmp" && apt-get download prometheus); }; \
	mkdir -p build/prometheus; \
	dpkg-deb -x "$$tmp"/prometheus_*.deb build/prometheus; \
	touch $@; echo "promtool: unpacked into build/prometheus"

## moto (PyPI), an SQS-compatible server for the SQS tests, in its own virtualenv
## under build/moto, at the versions tests/support/moto-requirements.txt pins.
MOTO := $(CURDIR)/build/moto/bin/moto_server
export MOTO

moto: $(MOTO)

$(MOTO): tests/support/moto-requirements.txt
	@rm -rf build/moto
	python3 -m venv build/moto
	build/moto/bin/pip install --quiet --disable-pip-version-check -r tests/support/moto-requirements.txt
	@touch $@

## Build: build/entry.mjs (src/entry.mjs) around build/index.js + build/index_bg.wasm.
build: tools
	$(BIN)/worker-build --release
	cp src/entry.mjs build/entry.mjs

# The same Worker with the `fault-injection` feature (tests only, never deployed):
# build/fault/index.js. tests/worker/faults.test.mjs resets the matcher with it.
build-fault: tools
	$(BIN)/worker-build --release --no-opt --out-dir build/fault . --features fault-injection
	cp src/entry.mjs build/fault/entry.mjs

# NOT the broker: the benchmark's floor (bench/floor/README.md), a minimal matcher to measure
# the broker against: bench/floor/build/entry.mjs around index.js + index_bg.wasm.
build-floor: tools
	cd bench/floor && $(BIN)/worker-build --release
	cp bench/floor/entry.mjs bench/floor/build/entry.mjs

# wrangler runs the [build] command (make build) itself before serving.
dev: tools .dev.vars
	$(NODE_BIN)/wrangler dev --ip 127.0.0.1 --port 8787

# wrangler reads local overrides from .dev.vars (git-ignored); start with none.
.dev.vars:
	@printf '# Local overrides of wrangler.toml [vars], e.g.\n# PROXY_POLL_TIMEOUT_MS=2000\n' > $@

test: tools lint test-native test-fuzz build test-worker deploy-check test-e2e

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --target wasm32-unknown-unknown -- -D warnings
	cargo clippy --target wasm32-unknown-unknown --features fault-injection -- -D warnings

test-native:
	cargo test

# A short run of every fuzz target (FUZZ_SECONDS each, default 15); see fuzz/README.md.
test-fuzz:
	bash fuzz/run.sh

# Every Miniflare test on one shard, then the HTTP suite again on four (tests/worker/harness.mjs).
HTTP_SUITE = proxy client answer amp legacy cors-routing settings
test-worker: build build-fault promtool moto
	node --test --test-reporter=spec tests/worker/
	TEST_MATCHER_SHARDS=4 node --test --test-reporter=spec $(HTTP_SUITE:%=tests/worker/%.test.mjs)

# The sharded matcher at Snowflake's scale, simulated (examples/shard_sim.rs; bench/README.md).
sim:
	cargo run --release --quiet --example shard_sim

deploy-check: build
	rm -rf build/dry-run
	$(NODE_BIN)/wrangler deploy --dry-run --outdir build/dry-run

test-e2e: build
	@if [ -f tests/e2e/run.sh ]; then bash tests/e2e/run.sh; else echo "no e2e tests yet"; fi

clean:
	cargo clean
	rm -rf build node_modules .wrangler
