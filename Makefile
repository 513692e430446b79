# Parley — the two commands that matter: `make run` and `make test`.

GO        ?= go
BIN       := bin

.PHONY: help run build web test test-deps test-web test-e2e test-race test-short bench bench-go lint fmt vet tidy clean

help: ## Show the targets.
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

build: ## Build bin/parley and the load tools.
	$(GO) build -o $(BIN)/parley ./cmd/parley

run: web build ## Run Parley with configs/parley.yaml (embedded store in ./data; MQTT :1883, WebSocket :8083, HTTP :8080). Needs Go and Node.js >= 20.19.
	./$(BIN)/parley -config configs/parley.yaml

test: test-deps vet test-web test-e2e ## Run every test (race detector on), on the embedded store and the local Postgres; the web app's too.
	$(GO) test -race -count=1 -timeout 20m ./...

# The programs the tests run (Chromium, HAProxy, mosquitto_pub, openssl,
# createdb/dropdb) and the Node.js version: scripts/test-deps installs the
# missing ones from Debian's packages when it may (root, or passwordless
# sudo), or stops with the command that does. .ci/run calls it too.
test-deps: ## Install what the tests need (Debian packages), or say the command that does.
	@bash scripts/test-deps

# The web app (web/, an npm workspace with the SDK @parley/client in
# web/packages/client): npm ci when the lockfile changed, vite build when a
# source is newer than the build. parley embeds web/dist; without it, it
# serves a page saying to run `make web`.
SDK := web/packages/client
WEB_SRC := $(shell find web/src $(SDK)/src $(SDK)/typings web/public -type f 2>/dev/null) web/index.html web/package.json \
	web/vite.config.ts web/tsconfig.json $(SDK)/package.json $(SDK)/tsconfig.json $(SDK)/tsconfig.web.json
WEB_DEPS := web/node_modules/.package-lock.json

$(WEB_DEPS): web/package.json web/package-lock.json $(SDK)/package.json
	@command -v npm >/dev/null || { echo "make: the web app is built with npm: install Node.js >= 20.19 and npm (README.md, Prerequisites)" >&2; exit 1; }
	cd web && npm ci --no-audit --no-fund
	@touch $@

web/dist/index.html: $(WEB_DEPS) $(WEB_SRC)
	cd web && npm run build

web: web/dist/index.html ## Build the web app into web/dist (npm ci and vite build, when needed).

test-web: $(WEB_DEPS) ## Run the unit tests (Vitest) of the SDK @parley/client (its built package too) and of the web app.
	cd web && npm test

test-e2e: test-deps web ## Run the web app in headless Chromium against a real parley and Postgres.
	cd web && npm run test:e2e

test-short: test-deps ## Run the tests without the race detector.
	$(GO) test -count=1 ./...

# make bench: Parley side by side with bare mochi-mqtt and Mosquitto on this
# machine (raw MQTT QoS 0/1 throughput and latency with ratios, dm and group,
# the highest DM rate under p99 100 ms, idle connections), medians of three;
# about 10 minutes. Needs mosquitto and a Postgres on 127.0.0.1 where user
# postgres may create databases. BENCH_FLAGS=-quick checks the bench itself.
BENCH_FLAGS ?=
bench: ## Benchmark Parley against bare mochi-mqtt and Mosquitto (~10 min); results in bench/results/.
	$(GO) run ./loadtest/cmd/parley-bench -out bench/results $(BENCH_FLAGS)

bench-go: ## Run the Go benchmarks of the store and publish paths.
	$(GO) test -run '^$$' -bench . -benchtime 3s -count 3 ./storage/... ./broker/... | tee bench.out

vet: ## go vet.
	$(GO) vet ./...

lint: vet ## gofmt, go vet, staticcheck and go mod tidy checks (CI runs it).
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^third_party/')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) tool staticcheck ./...
	$(GO) mod tidy -diff

fmt: ## Format the code.
	gofmt -w $$(git ls-files '*.go')

tidy: ## go mod tidy.
	$(GO) mod tidy

clean: ## Remove build output.
	rm -rf $(BIN) test-output
	find web/dist -mindepth 1 ! -name .gitkeep -delete 2>/dev/null || true
	rm -rf $(SDK)/dist
