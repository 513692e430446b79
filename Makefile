# Parley — the two commands that matter: `make run` and `make test`.

GO        ?= go
BIN       := bin

.PHONY: help run build test test-race test-short bench lint fmt vet tidy clean

help: ## Show the targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

build: ## Build bin/parley and the load tools.
	$(GO) build -o $(BIN)/parley ./cmd/parley

run: build ## Run Parley with configs/parley.yaml (embedded store in ./data; MQTT :1883, WebSocket :8083, HTTP :8080).
	./$(BIN)/parley -config configs/parley.yaml

test: vet ## Run every test (race detector on), on the embedded store and the local Postgres.
	$(GO) test -race -count=1 -timeout 20m ./...

test-short: ## Run the tests without the race detector.
	$(GO) test -count=1 ./...

bench: ## Run the Go benchmarks of the store and publish paths.
	$(GO) test -run '^$$' -bench . -benchtime 3s -count 3 ./storage/... ./broker/... | tee bench.out

vet: ## go vet.
	$(GO) vet ./...

lint: vet ## gofmt check and go vet.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

fmt: ## Format the code.
	gofmt -w $$(git ls-files '*.go')

tidy: ## go mod tidy.
	$(GO) mod tidy

clean: ## Remove build output.
	rm -rf $(BIN) test-output
