# Waymark: two commands on a fresh machine.
#   make run    install what is missing, build, migrate, seed the demo, serve on :3000
#   make test   install what is missing, build, run every test (Rust + browser)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

export CARGO_TARGET_DIR ?= $(CURDIR)/target
TOOLS ?= $(HOME)/.cache/waymark/tools
export PATH := $(TOOLS)/bin:$(TOOLS)/node_modules/.bin:$(HOME)/.cargo/bin:$(PATH)
# Compiler flags (erase_components, the wasm's relocations) are in
# .cargo/config.toml, so a bare cargo command builds what make builds.
export LEPTOS_OUTPUT_NAME := waymark

# The debug site and the server e2e runs are kept per checkout: the target
# directory may be shared by several checkouts building at once.
SITE_DEBUG := $(CURDIR)/target/site-debug
E2E_BIN := $(CURDIR)/target/waymark-e2e
SITE_RELEASE := $(CARGO_TARGET_DIR)/site
DATABASE_URL ?= sqlite://data/waymark.db
ADDR ?= 127.0.0.1:3000

.PHONY: run test tools browser site-release site-debug unit pg e2e bench bench-editor reactflow-bench fmt lint clean

## run: build for release and serve the app with the demo flow
run: tools site-release
	cargo build -p server --release --locked
	LEPTOS_SITE_ROOT=$(SITE_RELEASE) $(CARGO_TARGET_DIR)/release/waymark --database-url $(DATABASE_URL) serve --addr $(ADDR)

## test: every test: unit, property, integration (real SQLite), CLI, browser (headless Chromium)
test: tools browser site-debug lint unit pg api-contract e2e

## tools: the wasm target, wasm-bindgen (same version as Cargo.lock), wasm-opt
tools:
	.ci/install-tools "$(TOOLS)"

## browser: Debian's Chromium and the Playwright runner
browser:
	.ci/install-browser "$(TOOLS)"

site-release:
	cargo build -p frontend --lib --target wasm32-unknown-unknown --profile wasm-release --locked
	.ci/package-site $(CARGO_TARGET_DIR)/wasm32-unknown-unknown/wasm-release/frontend.wasm $(SITE_RELEASE) optimize

site-debug:
	cargo build -p frontend --lib --target wasm32-unknown-unknown --locked
	.ci/package-site $(CARGO_TARGET_DIR)/wasm32-unknown-unknown/debug/frontend.wasm $(SITE_DEBUG)

# frontend is left out: testing it beside server would unify app's `hydrate`
# and `ssr` features into one build. Its code is app's, tested here.
unit:
	cargo test --workspace --exclude frontend --locked

## pg: the store, runtime, API, bulk and channel tests again on PostgreSQL
## (the local server, or a private one started here); a skip is announced
pg:
	@url=$$(.ci/postgres "$(HOME)/.cache/waymark/pg"); \
	if [ -z "$$url" ]; then \
		echo "################################################################"; \
		echo "## PostgreSQL half SKIPPED: no server could be found or started ##"; \
		echo "################################################################"; \
		exit 0; \
	fi; \
	echo "PostgreSQL tests against $$url"; \
	WAYMARK_TEST_POSTGRES=$$url cargo test -p server --locked \
		--test api --test runtime --test contacts --test channels --test security --test scale_out \
		--test ops \
		--test templating \
		--test secrets --test erasure --test concurrency --test events --test mailbox --test provider_hooks --test tracking --test pressure --test reports --test workspace \
		--test migrations

## api-contract: schemathesis against a running server (debug build, a
## fresh SQLite database, an API token, then an admin's session for the
## admin operations) over /api/v1/openapi.json: any 5xx or an answer the
## description does not allow fails it (about 35 s)
API_CONTRACT_BIN := $(CURDIR)/target/waymark-api-contract
.PHONY: api-contract
api-contract:
	cargo build -p server --locked
	mkdir -p $(dir $(API_CONTRACT_BIN)) && cp $(CARGO_TARGET_DIR)/debug/waymark $(API_CONTRACT_BIN)
	.ci/api-contract $(API_CONTRACT_BIN)

e2e:
	cargo build -p server --locked
	mkdir -p $(dir $(E2E_BIN)) && cp $(CARGO_TARGET_DIR)/debug/waymark $(E2E_BIN)
	cd end2end && WAYMARK_BIN=$(E2E_BIN) LEPTOS_SITE_ROOT=$(SITE_DEBUG) \
		NODE_PATH=$(TOOLS)/node_modules $(TOOLS)/node_modules/.bin/playwright test

## bench: validator figures (median of repeated runs), runtime throughput and lateness
bench:
	cargo bench -p app --bench validate --locked
	cargo bench -p server --bench runtime --locked
	cargo bench -p server --bench channels --locked

## bench-editor: the editor in headless Chromium against React Flow on the same
## 1,000-step flow (scripted drag, zoom, pan; frame times p50/p95 and their
## ratio), and the release wasm's gzip size against its budget. A measurement,
## not a test: `make test` never runs it.
bench-editor: tools browser site-release reactflow-bench
	cargo build -p server --locked
	cd end2end && WAYMARK_BIN=$(CARGO_TARGET_DIR)/debug/waymark LEPTOS_SITE_ROOT=$(SITE_RELEASE) \
		NODE_PATH=$(TOOLS)/node_modules $(TOOLS)/node_modules/.bin/playwright test -c playwright.bench.config.ts
	.ci/wasm-size $(SITE_RELEASE)/pkg/waymark.wasm

## reactflow-bench: the React Flow page the editor is measured against (npm, Vite).
## `npm install` keeps to the lockfile's versions; `npm ci` refuses this lockfile
## here, since it lists rollup's native packages for this platform only.
reactflow-bench:
	cd end2end/reactflow-bench && npm install --no-audit --no-fund && npm run build

## chaos: a real workload (a flow with waits, email and webhook to local
## servers, tens of thousands enrolled, 200,000-row CSV imports and bulk runs)
## across `serve` and two `worker` processes, which are killed (SIGKILL),
## paused past their lease (SIGSTOP/SIGCONT) or stopped (SIGTERM) at seeded
## moments and restarted, ROUNDS times; then the invariants, printed (exit 1
## if one fails). SEED replays the same faults; DB=sqlite|postgres|both;
## CHAOS_ARGS passes more (`--contacts`, `--import-rows`, … see `-- --help`).
## A measurement, not part of `make test`.
.PHONY: chaos
SEED ?= $(shell date +%s)
ROUNDS ?= 200
DB ?= both
chaos:
	@pg=""; \
	if [ "$(DB)" != sqlite ]; then \
		pg=$$(.ci/postgres "$(HOME)/.cache/waymark/pg"); \
		if [ -z "$$pg" ]; then echo "make chaos: no PostgreSQL server could be found or started"; exit 1; fi; \
	fi; \
	cargo bench -p server --bench chaos --locked -- --seed $(SEED) --rounds $(ROUNDS) --db $(DB) $${pg:+--postgres $$pg} $(CHAOS_ARGS)

## bench-engagement: the open pixel and the click redirect under wrk beside
## nginx's static GIF (requests/s, p99, paced 2,000 requests/s, every hit
## recorded, a SIGKILL mid-run), then 100,000 emails from the outbox to
## Postfix's smtp-sink beside smtp-source (emails/s), both on SQLite.
## Installs Debian's nginx, wrk and postfix first. A measurement, not a test.
.PHONY: bench-engagement
bench-engagement:
	.ci/install-bench-tools
	cargo bench -p server --bench tracking --locked
	cargo bench -p server --bench sending --locked

## dist: the one file to deploy: the release binary with the release site
## inside (the `embed-site` feature), stripped, in target/dist/ with its
## SHA-256 checksum; then .ci/check-dist runs it from an empty temporary
## folder and fetches the editor page, its wasm, JS, CSS and favicon (exit 1
## if one fails), and prints its size and start-up time.
DIST := $(CURDIR)/target/dist
.PHONY: dist
dist: tools site-release
	WAYMARK_EMBED_SITE=$(SITE_RELEASE) cargo build -p server --release --locked --features embed-site
	mkdir -p $(DIST)
	strip -o $(DIST)/waymark $(CARGO_TARGET_DIR)/release/waymark
	cd $(DIST) && sha256sum waymark > waymark.sha256
	.ci/check-dist $(DIST)/waymark

fmt:
	cargo fmt --all

lint:
	cargo clippy --workspace --exclude frontend --all-targets --locked -- -D warnings
	cargo clippy -p frontend --target wasm32-unknown-unknown --locked -- -D warnings

clean:
	rm -rf $(CARGO_TARGET_DIR)/site $(SITE_DEBUG)
